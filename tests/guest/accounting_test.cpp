// SPDX-License-Identifier: GPL-2.0
//
// What a move costs the process and the system: the destination is a new
// VMA (map_count + 1), grows total_vm by its length, and is charged to
// Committed_AS in full, while the source keeps its own charge. Both
// backends must give the same numbers; each test holds them to the kernel's.
//
// The moves are 64 MiB (16384 pages of 4 KiB) so that a miscounted charge
// is unmistakable. The map count and VmSize are the process's own and
// exact. Committed_AS is system wide: in a guest nothing else runs, on a
// developer's machine other processes may move it between the two reads,
// so it is compared within kCommitTolerancePages (256 KiB, 0.4% of the
// move), far above a quiet system's drift and far below any accounting
// mistake, which is a multiple of the whole length. meminfo has summed the
// per-CPU counter exactly since 5.8, and the readers below do not allocate
// (a heap that grew would be charged too).
#include <sys/mman.h>

#include <cstdint>

#include "support.hpp"

namespace dontunmap::test {
namespace {

constexpr std::int64_t kCommitTolerancePages = 64;

class Accounting : public backend_test {
 protected:
  static constexpr std::size_t kLen = std::size_t(64) << 20;

  static std::int64_t pages_of_kb(std::int64_t kb) {
    return kb * 1024 / static_cast<std::int64_t>(page_size());
  }
  static std::int64_t len_pages() { return static_cast<std::int64_t>(kLen / page_size()); }

  std::int64_t committed_kb() const {
    const auto v = procfs::meminfo_kb("Committed_AS");
    EXPECT_TRUE(v) << "no Committed_AS in /proc/meminfo";
    return v ? static_cast<std::int64_t>(*v) : 0;
  }
};

TEST_P(Accounting, DestinationIsChargedInFull) {
  auto src = guarded::anon(kLen);
  ASSERT_TRUE(src);
  const auto before = committed_kb();
  const auto r = move(src.get(), kLen);
  const auto after = committed_kb();
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, kLen);

  EXPECT_NEAR(pages_of_kb(after - before), len_pages(), kCommitTolerancePages)
      << "Committed_AS " << before << " kB -> " << after << " kB around a " << kLen / 1024
      << " kB move of a VM_ACCOUNT source"
      << procfs::maps_excerpt({{src.get(), kLen}, {dst.get(), kLen}});
}

TEST_P(Accounting, SourceKeepsItsCharge) {
  auto src = guarded::anon(kLen);
  ASSERT_TRUE(src);
  const auto r = move(src.get(), kLen);
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, kLen);

  const auto smaps = procfs::smaps_at(src.get());
  ASSERT_TRUE(smaps);
  const bool has_account = smaps->has_flag("ac");
  // Unmapping the source must give its charge back: it kept it.
  const auto before = committed_kb();
  src.reset();  // the guards are PROT_NONE and MAP_NORESERVE: not charged
  const auto after = committed_kb();
  const auto released = pages_of_kb(before - after);

  const auto e = expect(rule::source_keeps_vm_account);
  const bool newest = has_account && released > len_pages() - kCommitTolerancePages &&
                      released < len_pages() + kCommitTolerancePages;
  const bool legacy =
      !has_account && released > -kCommitTolerancePages && released < kCommitTolerancePages;
  EXPECT_TRUE(allowed(e, newest, legacy))
      << "source VM_ACCOUNT " << (has_account ? "kept" : "lost") << ", unmapping it released "
      << released << " of " << len_pages() << " pages (Committed_AS " << before << " kB -> "
      << after << " kB)\n"
      << smaps->text << e.why;
}

TEST_P(Accounting, TotalVmGrowsByTheMove) {
  auto src = guarded::anon(kLen);
  ASSERT_TRUE(src);
  const auto before = procfs::status_kb("VmSize");
  const auto r = move(src.get(), kLen);
  const auto after = procfs::status_kb("VmSize");
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, kLen);
  ASSERT_TRUE(before && after);
  EXPECT_EQ(*after - *before, kLen / 1024) << "VmSize " << *before << " kB -> " << *after << " kB";
}

TEST_P(Accounting, FreeHintIsHonoured) {
  const std::size_t len = 4 * page_size();
  auto src = guarded::anon(len);
  auto hole = guarded::hole(len);
  ASSERT_TRUE(src && hole);
  const auto r = move(src.get(), len, hole.get());
  ASSERT_TRUE(r) << describe(r);
  EXPECT_EQ(*r, static_cast<void *>(hole.get()))
      << "the hint was free" << procfs::maps_excerpt({{hole.get(), len}, {*r, len}});
  if (*r != hole.get()) ::munmap(*r, len);
}

// Into a free hole between two PROT_NONE guards the destination cannot
// merge, and a whole-VMA move splits nothing: exactly one VMA more.
TEST_P(Accounting, MoveAddsOneVma) {
  auto src = guarded::anon(kLen);
  auto hole = guarded::hole(kLen);
  ASSERT_TRUE(src && hole);
  const auto before = procfs::map_count();
  const auto r = move(src.get(), kLen, hole.get());
  const auto after = procfs::map_count();
  ASSERT_TRUE(r) << describe(r);
  if (*r != hole.get()) {
    ::munmap(*r, kLen);
    FAIL() << "the destination missed the free hint " << static_cast<void *>(hole.get());
  }
  EXPECT_EQ(after, before + 1) << procfs::maps_excerpt({{src.get(), kLen}, {hole.get(), kLen}});
}

DONTUNMAP_INSTANTIATE_BACKENDS(Accounting);

}  // namespace
}  // namespace dontunmap::test
