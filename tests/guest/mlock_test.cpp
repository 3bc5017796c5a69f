// SPDX-License-Identifier: GPL-2.0
//
// An mlocked source: the lock follows the pages. The source loses
// VM_LOCKED (and VM_LOCKONFAULT), the destination keeps them, and
// mm->locked_vm (VmLck) stays what it was: the locked pages merely moved.
// Both backends must give the same numbers; where the kernel's own mremap
// differs (see expectations.cpp), native is held to its kernel's numbers.
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "support.hpp"

namespace dontunmap::test {
namespace {

class Mlock : public backend_test {
 protected:
  static std::size_t len() { return 16 * page_size(); }
  static std::uint64_t len_kb() { return len() / 1024; }

  // A filled private anonymous source, locked with mlock2(flags).
  guarded locked_source(std::size_t bytes, unsigned flags) {
    auto src = guarded::anon(bytes);
    EXPECT_TRUE(src);
    if (!src) return src;
    if (flags & MLOCK_ONFAULT) {
      EXPECT_EQ(::mlock2(src.get(), bytes, flags), 0) << "mlock2: " << std::strerror(errno);
      fill(src.get(), bytes, per_page('l'));  // faults the pages in, locked
    } else {
      fill(src.get(), bytes, per_page('l'));
      EXPECT_EQ(::mlock2(src.get(), bytes, flags), 0) << "mlock2: " << std::strerror(errno);
    }
    return src;
  }
};

TEST_P(Mlock, SourceLosesLock) {
  auto src = locked_source(len(), 0);
  ASSERT_FALSE(HasFailure());
  const auto r = move(src.get(), len());
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len());

  const auto s = procfs::smaps_at(src.get());
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->has_flag("lo")) << "the emptied source is still VM_LOCKED\n" << s->text;
  EXPECT_EQ(s->kb("Locked"), 0u) << s->text;
}

TEST_P(Mlock, DestinationKeepsLock) {
  auto src = locked_source(len(), 0);
  ASSERT_FALSE(HasFailure());
  const auto r = move(src.get(), len());
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len());

  const auto d = procfs::smaps_at(dst.get());
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->has_flag("lo")) << "the moved pages lost VM_LOCKED\n" << d->text;
  EXPECT_EQ(d->kb("Locked"), len_kb()) << "all moved pages must be locked at the destination\n"
                                       << d->text;
  EXPECT_TRUE(holds(dst.get(), len(), per_page('l')));
}

// How smaps shows VM_LOCKONFAULT: "lf" on newer kernels, "??" on older
// ones (6.1 has no mnemonic for it). "??" counts only if a mapping locked
// in full lacks it, so that another unnamed flag is not taken for it.
std::optional<std::string> lockonfault_mnemonic(const procfs::smaps_entry &locked_on_fault) {
  if (locked_on_fault.has_flag("lf")) return "lf";
  if (!locked_on_fault.has_flag("??")) return std::nullopt;
  auto control = guarded::anon(page_size());
  if (!control || ::mlock2(control.get(), page_size(), 0) != 0) return std::nullopt;
  const auto c = procfs::smaps_at(control.get());
  if (!c || c->has_flag("??")) return std::nullopt;
  return "??";
}

TEST_P(Mlock, LockOnFaultMovesWithThePages) {
  auto src = locked_source(len(), MLOCK_ONFAULT);
  ASSERT_FALSE(HasFailure());
  const auto before = procfs::smaps_at(src.get());
  ASSERT_TRUE(before);
  const auto lf = lockonfault_mnemonic(*before);
  ASSERT_TRUE(lf) << "smaps shows no VM_LOCKONFAULT after mlock2(MLOCK_ONFAULT)\n" << before->text;
  const auto r = move(src.get(), len());
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len());

  const auto s = procfs::smaps_at(src.get());
  const auto d = procfs::smaps_at(dst.get());
  ASSERT_TRUE(s && d);
  EXPECT_FALSE(s->has_flag("lo") || s->has_flag(*lf))
      << "source (VM_LOCKONFAULT is \"" << *lf << "\"):\n"
      << s->text;
  EXPECT_TRUE(d->has_flag("lo") && d->has_flag(*lf))
      << "destination (VM_LOCKONFAULT is \"" << *lf << "\"):\n"
      << d->text;
}

TEST_P(Mlock, LockedVmUnchanged) {
  auto src = locked_source(len(), 0);
  ASSERT_FALSE(HasFailure());
  const auto before = procfs::status_kb("VmLck");
  const auto r = move(src.get(), len());
  const auto after = procfs::status_kb("VmLck");
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len());
  ASSERT_TRUE(before && after);

  // Newest: the lock moved, locked_vm did not change. Legacy (the 6.15
  // rework until its fix): locked_vm grew by the moved length.
  const auto e = expect(rule::locked_vm_unchanged);
  const bool newest = *after == *before;
  const bool legacy = *after == *before + len_kb();
  EXPECT_TRUE(allowed(e, newest, legacy)) << "VmLck " << *before << " kB -> " << *after
                                          << " kB around a move of " << len_kb() << " kB locked\n"
                                          << e.why;
}

// Only the moved part loses its lock: the newest kernels split the source
// at the range first, so three VMAs remain, the outer two still locked.
TEST_P(Mlock, PartialMoveKeepsTheRestLocked) {
  const std::size_t page = page_size();
  auto src = locked_source(10 * page, 0);
  ASSERT_FALSE(HasFailure());
  char *const moved = src.get() + 3 * page;
  const auto r = move(moved, 3 * page);
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, 3 * page);
  const auto layout = procfs::maps_excerpt({{src.get(), 10 * page}, {dst.get(), 3 * page}});

  const auto e = expect(rule::mlocked_source_split_ahead);
  const auto vmas = procfs::vmas_in(src.get(), 10 * page);
  const auto head = procfs::smaps_at(src.get());
  const auto middle = procfs::smaps_at(moved);
  const auto tail = procfs::smaps_at(src.get() + 6 * page);
  ASSERT_TRUE(head && middle && tail) << layout;
  // Legacy: one VMA, unlocked as a whole.
  const bool split = vmas.size() == 3;
  EXPECT_TRUE(allowed(e, split, vmas.size() == 1 && !head->has_flag("lo")))
      << vmas.size() << " source VMAs, the first " << (head->has_flag("lo") ? "locked" : "unlocked")
      << layout << e.why;
  if (split) {
    EXPECT_EQ(vmas[0].start, reinterpret_cast<std::uintptr_t>(src.get())) << layout;
    EXPECT_EQ(vmas[1].start, reinterpret_cast<std::uintptr_t>(moved)) << layout;
    EXPECT_EQ(vmas[2].start, reinterpret_cast<std::uintptr_t>(moved + 3 * page)) << layout;
    EXPECT_EQ(vmas[2].end, reinterpret_cast<std::uintptr_t>(src.get() + 10 * page)) << layout;
    EXPECT_TRUE(head->has_flag("lo")) << head->text;
    EXPECT_FALSE(middle->has_flag("lo")) << middle->text;
    EXPECT_TRUE(tail->has_flag("lo")) << tail->text;
  }
  const auto d = procfs::smaps_at(dst.get());
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->has_flag("lo")) << d->text;
  EXPECT_TRUE(holds(dst.get(), 3 * page, pattern{static_cast<char>('l' + 3), true}));
}

DONTUNMAP_INSTANTIATE_BACKENDS(Mlock);

}  // namespace
}  // namespace dontunmap::test
