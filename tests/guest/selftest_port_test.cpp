// SPDX-License-Identifier: GPL-2.0
//
// The five cases of the kernel's selftest mm/mremap_dontunmap.c, written
// anew from what they check: after a DONTUNMAP move the destination holds
// the data and the source stays mapped, reading zeros (private anonymous)
// or the same data again (shmem).
#include <sys/mman.h>
#include <unistd.h>

#include "support.hpp"

namespace dontunmap::test {
namespace {

class SelftestPort : public backend_test {};

TEST_P(SelftestPort, SimpleMoveLeavesSourceMappedAndEmpty) {
  const std::size_t len = 5 * page_size();
  auto src = guarded::anon(len);
  ASSERT_TRUE(src);
  fill(src.get(), len, uniform('a'));

  const auto r = move(src.get(), len);
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len);

  EXPECT_TRUE(holds(dst.get(), len, uniform('a'))) << "the pages did not move";
  EXPECT_TRUE(procfs::vma_at(src.get()))
      << "the source was unmapped" << procfs::maps_excerpt({{src.get(), len}});
  EXPECT_TRUE(holds(src.get(), len, zeros())) << "the source kept page tables";
}

TEST_P(SelftestPort, SimpleShmemSourceStillSeesTheData) {
  const std::size_t len = 5 * page_size();
  const int fd = ::memfd_create("dontunmap-selftest", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(len)), 0);
  auto src = guarded::file(fd, len, MAP_SHARED);
  ::close(fd);
  ASSERT_TRUE(src);
  fill(src.get(), len, uniform('a'));

  const auto r = move(src.get(), len);
  const auto e = expect(rule::non_anonymous_sources);
  if (e.what == behaviour::legacy) {
    EXPECT_TRUE(refused_with(r, EINVAL, len)) << e.why;
    return;
  }
  ASSERT_TRUE(r) << describe(r) << "\n" << e.why;
  auto dst = adopt(r, len);
  EXPECT_TRUE(holds(dst.get(), len, uniform('a'))) << "the destination lost the shmem data";
  EXPECT_TRUE(holds(src.get(), len, uniform('a')))
      << "a shmem source must fault the same pages back in";
}

TEST_P(SelftestPort, SimpleFixedReplacesTheTarget) {
  const std::size_t len = 5 * page_size();
  auto target = guarded::anon(len);
  auto src = guarded::anon(len);
  ASSERT_TRUE(target && src);
  fill(target.get(), len, uniform('X'));
  fill(src.get(), len, uniform('a'));

  const auto r = move_fixed(src.get(), len, target.get());
  ASSERT_TRUE(r) << describe(r);
  EXPECT_EQ(*r, static_cast<void *>(target.get()))
      << "MREMAP_FIXED must place the move at the target";
  EXPECT_TRUE(holds(target.get(), len, uniform('a'))) << "the target's old contents survived";
  EXPECT_TRUE(holds(src.get(), len, zeros())) << "the source kept page tables";
}

TEST_P(SelftestPort, PartialMappingMovesOnlyTheRange) {
  const std::size_t page = page_size();
  auto src = guarded::anon(10 * page);
  ASSERT_TRUE(src);
  fill(src.get(), 10 * page, uniform('a'));

  const auto r = move(src.get() + 5 * page, 5 * page);
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, 5 * page);

  EXPECT_TRUE(holds(src.get(), 5 * page, uniform('a')))
      << "the first five pages were not part of the move";
  EXPECT_TRUE(holds(src.get() + 5 * page, 5 * page, zeros()))
      << "the moved five pages kept page tables";
  EXPECT_TRUE(holds(dst.get(), 5 * page, uniform('a'))) << "the destination lacks the moved pages";
}

TEST_P(SelftestPort, PartialMappingOverwriteKeepsTheRestOfTheTarget) {
  const std::size_t page = page_size();
  auto src = guarded::anon(5 * page);
  auto target = guarded::anon(10 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 5 * page, uniform('a'));
  fill(target.get(), 10 * page, uniform('X'));

  const auto r = move_fixed(src.get(), 5 * page, target.get());
  ASSERT_TRUE(r) << describe(r);
  EXPECT_EQ(*r, static_cast<void *>(target.get()));
  EXPECT_TRUE(holds(src.get(), 5 * page, zeros())) << "the source kept page tables";
  EXPECT_TRUE(holds(target.get(), 5 * page, uniform('a')))
      << "the target's first half lacks the moved pages";
  EXPECT_TRUE(holds(target.get() + 5 * page, 5 * page, uniform('X')))
      << "the target's second half was not part of the move";
}

DONTUNMAP_INSTANTIATE_BACKENDS(SelftestPort);

}  // namespace
}  // namespace dontunmap::test
