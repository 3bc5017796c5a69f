// SPDX-License-Identifier: GPL-2.0
//
// The VMAs a move leaves behind, as /proc/self/maps shows them.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "support.hpp"

namespace dontunmap::test {
namespace {

std::uintptr_t at(const void *p) { return reinterpret_cast<std::uintptr_t>(p); }

class VmaLayout : public backend_test {
 protected:
  void move_next_to_its_source(bool source_first, bool faulted_neighbour);
};

// DONTUNMAP unmaps nothing, so an unlocked source is not split: the range
// taken from its middle is left as page-table-less memory inside the same
// VMA, and only the destination is new. (A locked source is split in
// three: Mlock.PartialMoveKeepsTheRestLocked.)
TEST_P(VmaLayout, MiddleOfAVmaMovesWithoutSplittingTheSource) {
  const std::size_t page = page_size();
  auto src = guarded::anon(10 * page);
  auto hole = guarded::hole(3 * page);
  ASSERT_TRUE(src && hole);
  fill(src.get(), 10 * page, uniform('m'));
  const auto r = move(src.get() + 3 * page, 3 * page, hole.get());
  ASSERT_TRUE(r) << describe(r);
  ASSERT_EQ(*r, static_cast<void *>(hole.get())) << "the free hint was not honoured";
  const auto layout = procfs::maps_excerpt({{src.get(), 10 * page}, {hole.get(), 3 * page}});

  const auto source = procfs::vmas_in(src.get(), 10 * page);
  ASSERT_EQ(source.size(), 1u) << layout;
  EXPECT_EQ(source[0].start, at(src.get())) << layout;
  EXPECT_EQ(source[0].end, at(src.get() + 10 * page)) << layout;
  const auto dest = procfs::vmas_in(hole.get(), 3 * page);
  ASSERT_EQ(dest.size(), 1u) << layout;
  EXPECT_EQ(dest[0].start, at(hole.get())) << layout;
  EXPECT_EQ(dest[0].end, at(hole.get() + 3 * page)) << layout;
  EXPECT_EQ(dest[0].perms, source[0].perms) << layout;

  EXPECT_TRUE(holds(src.get(), 3 * page, uniform('m')));
  EXPECT_TRUE(holds(src.get() + 3 * page, 3 * page, zeros()));
  EXPECT_TRUE(holds(src.get() + 6 * page, 4 * page, uniform('m')));
  EXPECT_TRUE(holds(hole.get(), 3 * page, uniform('m')));
}

// 6.17+: with MREMAP_FIXED the range may cover several VMAs; each moves,
// keeping its own protection.
TEST_P(VmaLayout, FixedMoveSpansAdjacentVmas) {
  const std::size_t page = page_size();
  auto src = guarded::anon(4 * page);
  auto target = guarded::hole(4 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 4 * page, per_page('f'));
  ASSERT_EQ(::mprotect(src.get() + 2 * page, 2 * page, PROT_READ), 0);
  ASSERT_EQ(procfs::vmas_in(src.get(), 4 * page).size(), 2u)
      << procfs::maps_excerpt({{src.get(), 4 * page}});

  const auto r = move_fixed(src.get(), 4 * page, target.get());
  const auto e = expect(rule::fixed_move_spans_vmas);
  if (e.what == behaviour::legacy) {
    EXPECT_TRUE(refused_with(r, EFAULT, 4 * page)) << e.why;
    EXPECT_TRUE(holds(src.get(), 4 * page, per_page('f')));
    return;
  }
  ASSERT_TRUE(r) << describe(r) << "\n" << e.why;
  EXPECT_EQ(*r, static_cast<void *>(target.get()));
  const auto layout = procfs::maps_excerpt({{src.get(), 4 * page}, {target.get(), 4 * page}});
  const auto dest = procfs::vmas_in(target.get(), 4 * page);
  ASSERT_EQ(dest.size(), 2u) << layout;
  EXPECT_EQ(dest[0].end, at(target.get() + 2 * page)) << layout;
  EXPECT_EQ(dest[0].perms, "rw-p") << layout;
  EXPECT_EQ(dest[1].perms, "r--p") << layout;
  EXPECT_EQ(procfs::vmas_in(src.get(), 4 * page).size(), 2u) << "the source VMAs stay" << layout;
  EXPECT_TRUE(holds(target.get(), 4 * page, per_page('f')));
  EXPECT_TRUE(holds(src.get(), 4 * page, zeros()));
}

// 6.17+: a FIXED range may reach a hugetlb VMA, whose placement is known
// (vma_multi_allowed()), so the move goes on to it and check_prep_vma()
// refuses it with EINVAL, as it refuses any hugetlb source; the VMAs before
// it have moved. Older kernels refuse a range of several VMAs (EFAULT).
TEST_P(VmaLayout, FixedMoveReachingAHugetlbVmaIsEinval) {
  const std::size_t page = page_size();
  hugetlb_reservation pool;
  const std::size_t huge = pool.page_size();
  if (!huge) GTEST_SKIP() << "this kernel has no hugetlbfs";
  ASSERT_TRUE(pool.reserve_one()) << "cannot reserve a huge page";
  // [one anonymous page][one huge page], the huge page aligned, and a
  // target laid out alike.
  auto area = guarded::aligned_hole(2 * huge, huge);
  auto target = guarded::aligned_hole(2 * huge, huge);
  ASSERT_TRUE(area && target);
  char *const start = area.get() + huge - page;
  ASSERT_NE(::mmap(start, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                   -1, 0),
            MAP_FAILED)
      << std::strerror(errno);
  ASSERT_TRUE(pool.map_private_at(area.get() + huge)) << "MAP_HUGETLB: " << std::strerror(errno);
  fill(start, page, uniform('a'));
  fill(area.get() + huge, huge, uniform('h'));

  const auto r = move_fixed(start, page + huge, target.get() + huge - page);
  const auto layout = procfs::maps_excerpt({{start, page + huge}, {target.get(), 2 * huge}});
  const auto e = expect(rule::fixed_move_spans_vmas);
  EXPECT_TRUE(refused_with(r, e.what == behaviour::legacy ? EFAULT : EINVAL, page + huge))
      << e.why << layout;
  EXPECT_TRUE(holds(area.get() + huge, huge, uniform('h'))) << "the hugetlb source changed";
}

// A hugetlb source is refused (VM_DONTEXPAND: EINVAL) before a FIXED target
// is unmapped. Source and target aligned to the huge page size pass the
// alignment checks that come first (5.16+); up to 6.16 mremap_to() then
// unmaps the target (from 5.16 over the length rounded up to a huge page)
// before refusing.
TEST_P(VmaLayout, HugetlbSourceIsRefusedBeforeTheFixedTargetGoes) {
  const std::size_t page = page_size();
  hugetlb_reservation pool;
  const std::size_t huge = pool.page_size();
  if (!huge) GTEST_SKIP() << "this kernel has no hugetlbfs";
  ASSERT_TRUE(pool.reserve_one()) << "cannot reserve a huge page";
  auto area = guarded::aligned_hole(huge, huge);
  auto target = guarded::aligned_anon(huge, huge);
  ASSERT_TRUE(area && target);
  ASSERT_TRUE(pool.map_private_at(area.get())) << "MAP_HUGETLB: " << std::strerror(errno);
  fill(area.get(), huge, uniform('h'));
  fill(target.get(), huge, per_page('t'));

  // One page: the kernels that unmap first take the whole huge page's length.
  const auto r = move_fixed(area.get(), page, target.get());
  const auto layout = procfs::maps_excerpt({{area.get(), huge}, {target.get(), huge}});
  EXPECT_TRUE(refused_with(r, EINVAL, page)) << layout;
  EXPECT_TRUE(holds(area.get(), huge, uniform('h'))) << "the hugetlb source changed";
  const auto e = expect(rule::source_checked_before_target_unmap);
  if (e.what == behaviour::newest) {
    EXPECT_TRUE(holds(target.get(), huge, per_page('t')))
        << "a refused move changed the target\n" << e.why << layout;
  } else if (e.what == behaviour::legacy) {
    EXPECT_FALSE(procfs::vma_at(target.get()))
        << "the target's first page survived\n" << e.why << layout;
  }
}

// 6.17+: the VMAs of a FIXED range keep their distances at the target. A
// gap in the source is a gap in the move: what the target held there stays.
TEST_P(VmaLayout, FixedMoveKeepsTheGapsBetweenVmas) {
  const std::size_t page = page_size();
  auto src = guarded::anon(5 * page);
  auto target = guarded::anon(5 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 5 * page, per_page('g'));
  fill(target.get(), 5 * page, uniform('t'));
  ASSERT_EQ(::munmap(src.get() + 2 * page, page), 0);

  const auto r = move_fixed(src.get(), 5 * page, target.get());
  const auto layout = procfs::maps_excerpt({{src.get(), 5 * page}, {target.get(), 5 * page}});
  const auto e = expect(rule::fixed_move_spans_vmas);
  if (e.what == behaviour::legacy) {
    EXPECT_TRUE(refused_with(r, EFAULT, 5 * page)) << e.why;
    EXPECT_TRUE(holds(src.get(), 2 * page, per_page('g')));
    return;
  }
  ASSERT_TRUE(r) << describe(r) << "\n" << e.why << layout;
  EXPECT_EQ(*r, static_cast<void *>(target.get()));
  EXPECT_TRUE(holds(target.get(), 2 * page, per_page('g'))) << layout;
  EXPECT_TRUE(holds(target.get() + 2 * page, page, uniform('t')))
      << "the target's page in the gap was replaced" << layout;
  EXPECT_TRUE(holds(target.get() + 3 * page, 2 * page, per_page('g' + 3))) << layout;
  EXPECT_TRUE(holds(src.get(), 2 * page, zeros())) << layout;
  EXPECT_TRUE(holds(src.get() + 3 * page, 2 * page, zeros())) << layout;
  EXPECT_FALSE(procfs::vma_at(src.get() + 2 * page)) << "the gap was filled" << layout;
}

// No VMA at the start of the range: EFAULT before anything moves or is
// unmapped (5.10's own mremap unmaps a FIXED target first).
TEST_P(VmaLayout, FixedMoveWithGapAtStartIsEfault) {
  const std::size_t page = page_size();
  auto src = guarded::anon(3 * page);
  auto target = guarded::anon(3 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 3 * page, per_page('s'));
  fill(target.get(), 3 * page, uniform('t'));
  ASSERT_EQ(::munmap(src.get(), page), 0);

  const auto r = move_fixed(src.get(), 3 * page, target.get());
  EXPECT_TRUE(refused_with(r, EFAULT, 3 * page));
  EXPECT_TRUE(holds(src.get() + page, 2 * page, per_page('s' + 1)));
  if (expect(rule::fixed_target_unmapped_first).allows_newest()) {
    EXPECT_TRUE(holds(target.get(), 3 * page, uniform('t'))) << "a refused move changed the target";
  }
}

// 6.17+: a VMA armed with userfaultfd moves only on its own (its events
// need the mmap lock dropped after it), so a range starting with one and
// covering more is EFAULT, and nothing moves.
TEST_P(VmaLayout, FixedMoveOfUffdArmedVmaAmongOthersIsEfault) {
  const std::size_t page = page_size();
  auto src = guarded::anon(4 * page);
  auto target = guarded::hole(4 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 4 * page, per_page('a'));
  ASSERT_EQ(::mprotect(src.get() + 2 * page, 2 * page, PROT_READ), 0);
  const int uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0) GTEST_SKIP() << "userfaultfd: " << std::strerror(errno);
  uffdio_api api{};
  api.api = UFFD_API;
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(src.get());
  reg.range.len = 2 * page;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  const bool registered =
      ::ioctl(uffd, UFFDIO_API, &api) == 0 && ::ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
  const int err = errno;
  if (registered) {
    const auto r = move_fixed(src.get(), 4 * page, target.get());
    EXPECT_TRUE(refused_with(r, EFAULT, 4 * page))
        << procfs::maps_excerpt({{src.get(), 4 * page}, {target.get(), 4 * page}});
    EXPECT_TRUE(holds(src.get(), 4 * page, per_page('a')));
    EXPECT_FALSE(procfs::vma_at(target.get())) << "something moved";
  }
  ::close(uffd);
  ASSERT_TRUE(registered) << "UFFDIO_API/REGISTER: " << std::strerror(err);
}

// A destination right next to its source, an unfaulted anonymous one:
// copy_vma() gives the destination the page offset of its own address, so
// it could continue the source. keep_source (7.3) leaves the source out of
// the merge, and only the source: the VMA on the destination's other side
// still takes it in, unfaulted or faulted, and the map count does not grow.
//
//   before the move    [S][ ][N]
//   newest             [S][D N]
//   6.1's keep_source  [S][D][N]  (adjacent_destination_merges_far_side)
//   no keep_source     [S D N]    (unfaulted_source_self_merge)
void VmaLayout::move_next_to_its_source(bool source_first, bool faulted_neighbour) {
  const std::size_t page = page_size();
  auto area = guarded::anon(3 * page);
  ASSERT_TRUE(area);
  char *const hole = area.get() + page;
  ASSERT_EQ(::munmap(hole, page), 0);
  char *const src = source_first ? area.get() : area.get() + 2 * page;
  char *const other = source_first ? area.get() + 2 * page : area.get();
  // Written only now that it is a VMA of its own: the source stays unfaulted.
  if (faulted_neighbour) fill(other, page, uniform('n'));
  const std::string before = procfs::maps_excerpt({{area.get(), 3 * page}});

  const std::size_t count = procfs::map_count();
  const auto r = move_fixed(src, page, hole);
  const std::size_t count_after = procfs::map_count();
  ASSERT_TRUE(r) << describe(r) << before;
  ASSERT_EQ(*r, static_cast<void *>(hole));
  const auto layout = before + procfs::maps_excerpt({{area.get(), 3 * page}});
  const auto vmas = procfs::vmas_in(area.get(), 3 * page);

  const auto self = expect(rule::unfaulted_source_self_merge);
  const bool self_merged = vmas.size() == 1;
  EXPECT_TRUE(allowed(self, !self_merged, self_merged)) << self.why << layout;
  if (self_merged) return;

  const auto e = expect(rule::adjacent_destination_merges_far_side);
  const bool merged = vmas.size() == 2;
  const bool alone = vmas.size() == 3;
  EXPECT_TRUE(allowed(e, merged, alone)) << e.why << layout;
  EXPECT_EQ(count_after, count + (merged ? 0 : 1)) << "map_count" << layout;
  if (merged) {
    const auto &source = source_first ? vmas[0] : vmas[1];
    const auto &dest = source_first ? vmas[1] : vmas[0];
    EXPECT_EQ(source.start, at(src)) << "the source changed" << layout;
    EXPECT_EQ(source.end, at(src + page)) << "the source changed" << layout;
    EXPECT_TRUE(dest.contains(hole) && dest.contains(other)) << layout;
  }
  EXPECT_TRUE(holds(src, page, zeros())) << layout;
  EXPECT_TRUE(holds(hole, page, zeros())) << layout;
  if (faulted_neighbour) {
    EXPECT_TRUE(holds(other, page, uniform('n'))) << layout;
  }
}

TEST_P(VmaLayout, DestinationAfterItsSourceMergesWithTheVmaAfterIt) {
  move_next_to_its_source(true, false);
}

TEST_P(VmaLayout, DestinationBeforeItsSourceMergesWithTheVmaBeforeIt) {
  move_next_to_its_source(false, false);
}

TEST_P(VmaLayout, DestinationNextToItsSourceMergesWithAFaultedNeighbour) {
  move_next_to_its_source(true, true);
}

// A source partly moved to right after itself keeps no anon_vma: it had
// none, and copy_vma()'s keep_source leaves the source alone. Made alike
// by madvise(), it then joins a faulted neighbour, as a VMA without an
// anon_vma may; one with an anon_vma of its own could not. (VM_DONTCOPY
// keeps the two apart until then: an anon_vma given to the source during
// the move cannot be the neighbour's, as anon_vma_compatible() ignores
// only the access flags.)
//
//   [F: written, MADV_DONTFORK][S S: never written][ ] -> move the second
//   S page into the hole, then MADV_DONTFORK the source: [F S S][D]
TEST_P(VmaLayout, UnfaultedSourceNextToItsDestinationStaysUnfaulted) {
  const std::size_t page = page_size();
  auto area = guarded::hole(4 * page);
  ASSERT_TRUE(area);
  char *const neighbour = area.get();
  char *const src = neighbour + page;
  char *const target = neighbour + 3 * page;
  ASSERT_NE(::mmap(neighbour, page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            MAP_FAILED)
      << std::strerror(errno);
  ASSERT_EQ(::madvise(neighbour, page, MADV_DONTFORK), 0) << std::strerror(errno);
  fill(neighbour, page, uniform('f'));
  ASSERT_NE(::mmap(src, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                   -1, 0),
            MAP_FAILED)
      << std::strerror(errno);
  const std::string before = procfs::maps_excerpt({{neighbour, 4 * page}});
  ASSERT_EQ(procfs::vmas_in(neighbour, 3 * page).size(), 2u) << before;

  const auto r = move_fixed(src + page, page, target);
  ASSERT_TRUE(r) << describe(r) << before;
  const std::string moved = before + procfs::maps_excerpt({{neighbour, 4 * page}});
  const auto source = procfs::vma_at(src);
  ASSERT_TRUE(source) << moved;
  const auto self = expect(rule::unfaulted_source_self_merge);
  const bool self_merged = source->contains(target);
  EXPECT_TRUE(allowed(self, !self_merged, self_merged)) << self.why << moved;
  if (self_merged) return;
  EXPECT_EQ(source->start, at(src)) << moved;
  EXPECT_EQ(source->end, at(src + 2 * page)) << moved;

  ASSERT_EQ(::madvise(src, 2 * page, MADV_DONTFORK), 0) << std::strerror(errno);
  const std::string after = moved + procfs::maps_excerpt({{neighbour, 4 * page}});
  const auto joined = procfs::vmas_in(neighbour, 3 * page);
  ASSERT_EQ(joined.size(), 1u) << "the source no longer joins its faulted neighbour: it "
                                  "gained an anon_vma in the move"
                               << after;
  EXPECT_EQ(joined[0].start, at(neighbour)) << after;
  EXPECT_EQ(joined[0].end, at(src + 2 * page)) << after;
  EXPECT_TRUE(holds(neighbour, page, uniform('f'))) << after;
  EXPECT_TRUE(holds(src, 2 * page, zeros())) << after;
  EXPECT_TRUE(holds(target, page, zeros())) << after;
}

DONTUNMAP_INSTANTIATE_BACKENDS(VmaLayout);

}  // namespace
}  // namespace dontunmap::test
