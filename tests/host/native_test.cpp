// SPDX-License-Identifier: LGPL-2.1-or-later
//
// MREMAP_DONTUNMAP through the native backend on the host kernel, reached
// each way the library offers: remap_native(), a native remapper, and an
// automatic remapper without the device (which must fall back to native).
#include <gtest/gtest.h>

#include <functional>

#include "test_util.hpp"

namespace dontunmap::test {
namespace {

using result = std::expected<void *, std::error_code>;

struct way {
  const char *name;
  std::function<result(const remap_request &)> remap;
};

void PrintTo(const way &w, std::ostream *os) { *os << w.name; }

// Through a remapper created with b and path (g++-12's std::expected has
// no and_then()).
result via_remapper(backend b, const char *path, const remap_request &r) {
  auto m = remapper::create(b, path);
  if (!m) return std::unexpected(m.error());
  return m->remap(r);
}

const way ways[] = {
    {"remap_native", [](const remap_request &r) { return remap_native(r); }},
    {"native_remapper",
     [](const remap_request &r) { return via_remapper(backend::native, nullptr, r); }},
    {"automatic_without_device",
     [](const remap_request &r) {
       return via_remapper(backend::automatic, "/nonexistent/dontunmap", r);
     }},
};

class NativeRemap : public ::testing::TestWithParam<way> {
 protected:
  result remap(const remap_request &r) const { return GetParam().remap(r); }
  static constexpr unsigned long dontunmap = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  const std::size_t len = 4 * page_size();
};

TEST_P(NativeRemap, MovesContentsToDestination) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  fill_pattern(src.bytes(), len);
  auto dst = remap({.old_addr = src.get(), .old_len = len, .new_len = len});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, len);
  EXPECT_NE(*dst, src.get());
  EXPECT_TRUE(holds_pattern(moved.bytes(), len)) << maps();
}

TEST_P(NativeRemap, LeavesSourceMappedAndReadingZero) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  fill_pattern(src.bytes(), len);
  auto dst = remap({.old_addr = src.get(), .old_len = len, .new_len = len});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, len);
  ASSERT_TRUE(is_mapped(src.get(), len)) << "source " << src.get() << " unmapped\n" << maps();
  EXPECT_TRUE(all_zero(src.bytes(), len));
}

TEST_P(NativeRemap, HonoursFreeHint) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  void *hint;
  {
    mapping hole(len);  // find a free range, then free it
    ASSERT_TRUE(hole.ok());
    hint = hole.get();
  }
  auto dst = remap({.old_addr = src.get(), .old_len = len, .new_len = len, .new_addr = hint});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, len);
  EXPECT_EQ(*dst, hint) << maps();
}

TEST_P(NativeRemap, FixedReplacesTarget) {
  mapping src(len), target(len);
  ASSERT_TRUE(src.ok() && target.ok());
  fill_pattern(src.bytes(), len);
  std::memset(target.bytes(), 0xee, len);
  auto dst = remap({.old_addr = src.get(),
                    .old_len = len,
                    .new_len = len,
                    .flags = dontunmap | MREMAP_FIXED,
                    .new_addr = target.get()});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  EXPECT_EQ(*dst, target.get());
  EXPECT_TRUE(holds_pattern(target.bytes(), len)) << maps();
}

TEST_P(NativeRemap, MovesSharedAnonymousMapping) {
  if (!probe_native().shared) GTEST_SKIP() << "kernel before 5.13 moves private anon only";
  mapping src(len, MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_TRUE(src.ok());
  fill_pattern(src.bytes(), len);
  auto dst = remap({.old_addr = src.get(), .old_len = len, .new_len = len});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, len);
  EXPECT_TRUE(holds_pattern(moved.bytes(), len)) << maps();
}

TEST_P(NativeRemap, AcceptsLengthsEqualAfterPageAlignment) {
  if (!probe_native().aligned_lengths) GTEST_SKIP() << "kernel before 6.17 compares raw lengths";
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  auto dst = remap({.old_addr = src.get(), .old_len = page_size(), .new_len = page_size() - 96});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, page_size());
}

TEST_P(NativeRemap, UnalignedOldAddrIsEinval) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(remap({.old_addr = src.bytes() + 1, .old_len = page_size(),
                                .new_len = page_size()}),
                         EINVAL));
}

TEST_P(NativeRemap, DontunmapWithoutMaymoveIsEinval) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(
      remap({.old_addr = src.get(), .old_len = len, .new_len = len, .flags = MREMAP_DONTUNMAP}),
      EINVAL));
}

TEST_P(NativeRemap, UnknownFlagIsEinval) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(
      remap({.old_addr = src.get(), .old_len = len, .new_len = len, .flags = dontunmap | 8}),
      EINVAL));
}

TEST_P(NativeRemap, DifferentPageLengthsIsEinval) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(remap({.old_addr = src.get(), .old_len = len, .new_len = len / 2}),
                         EINVAL));
}

TEST_P(NativeRemap, UnalignedHintIsEinval) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  mapping hint(len);
  ASSERT_TRUE(hint.ok());
  EXPECT_TRUE(fails_with(remap({.old_addr = src.get(), .old_len = len, .new_len = len,
                                .new_addr = hint.bytes() + 1}),
                         EINVAL));
}

TEST_P(NativeRemap, OverlappingFixedTargetIsEinval) {
  mapping src(2 * len);
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(remap({.old_addr = src.get(),
                                .old_len = len,
                                .new_len = len,
                                .flags = dontunmap | MREMAP_FIXED,
                                .new_addr = src.bytes() + page_size()}),
                         EINVAL));
}

TEST_P(NativeRemap, UnmappedSourceIsEfault) {
  void *gone;
  {
    mapping src(len);
    ASSERT_TRUE(src.ok());
    gone = src.get();
  }
  EXPECT_TRUE(fails_with(remap({.old_addr = gone, .old_len = len, .new_len = len}), EFAULT));
}

TEST_P(NativeRemap, RangePastEndOfMappingIsEfault) {
  mapping src(len);
  ASSERT_TRUE(src.ok());
  ASSERT_EQ(::munmap(src.bytes() + len / 2, len / 2), 0);
  EXPECT_TRUE(fails_with(remap({.old_addr = src.get(), .old_len = len, .new_len = len}), EFAULT))
      << maps();
}

INSTANTIATE_TEST_SUITE_P(Host, NativeRemap, ::testing::ValuesIn(ways),
                         [](const auto &info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dontunmap::test
