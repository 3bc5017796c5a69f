// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The automatic backend's rule (detail::route) for kernels of every age and
// modules with any feature bits, and the /proc/<pid>/maps reading it relies
// on where the kernel and the module differ by kind of source or by VMAs.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>
#include <optional>
#include <string>

#include "internal.hpp"
#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr native_support linux_5_4{};
constexpr native_support linux_5_10{
    .private_anon = true, .shared = false, .aligned_lengths = false};
constexpr native_support linux_6_1{.private_anon = true, .shared = true, .aligned_lengths = false};
constexpr native_support linux_6_17{
    .private_anon = true, .shared = true, .aligned_lengths = true, .multi_vma = true};

using module_bits = std::optional<detail::module_support>;
constexpr module_bits no_module;
constexpr module_bits full_module =
    detail::module_support{.features = all_module_features, .abi_minor = DONTUNMAP_ABI_MINOR};
constexpr module_bits module_without(std::uint64_t bits) {
  return detail::module_support{.features = all_module_features & ~bits,
                                .abi_minor = DONTUNMAP_ABI_MINOR};
}

constexpr unsigned long dontunmap_move = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;

remap_request request(const mapping &src, std::size_t new_len = 0) {
  return {.old_addr = src.get(), .old_len = src.size(), .new_len = new_len ? new_len : src.size()};
}

remap_request fixed_request(const void *src, std::size_t len, void *target) {
  return {.old_addr = const_cast<void *>(src),
          .old_len = len,
          .new_len = len,
          .flags = dontunmap_move | MREMAP_FIXED,
          .new_addr = target};
}

// Where automatic sends req, with that module and kernel.
std::optional<backend> automatic(const module_bits &m, const native_support &k,
                                 const remap_request &req) {
  return detail::route(backend::automatic, m, k, req);
}

::testing::AssertionResult routes(std::optional<backend> want, std::optional<backend> got) {
  if (want == got) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "routed to " << to_string(got) << ", expected " << to_string(want);
}

// Two VMAs side by side: a private mapping whose halves differ in
// protection. The FIXED target is a reserved hole of the same length.
struct two_vmas {
  two_vmas() : src(2 * page_size()), hole(2 * page_size(), MAP_PRIVATE | MAP_ANONYMOUS) {
    ok =
        src.ok() && hole.ok() && ::mprotect(src.bytes() + page_size(), page_size(), PROT_READ) == 0;
  }
  mapping src, hole;
  bool ok = false;
};

TEST(Route, RequestedBackendIsUsedAsAsked) {
  mapping src(page_size());
  EXPECT_TRUE(routes(backend::native,
                     detail::route(backend::native, full_module, linux_5_4, request(src))));
  EXPECT_TRUE(routes(backend::module,
                     detail::route(backend::module, full_module, linux_6_17, request(src))));
  EXPECT_TRUE(
      routes(backend::module, detail::route(backend::module, module_without(DONTUNMAP_FEAT_SHARED),
                                            linux_5_4, request(src))));
}

TEST(Route, AutomaticWithoutModuleIsNativeWhereKernelMovesTheKind) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_6_1, request(src))));
}

TEST(Route, AutomaticWithoutDontunmapFlagIsNative) {
  mapping src(page_size());
  auto req = request(src);
  req.flags = MREMAP_MAYMOVE;
  EXPECT_TRUE(routes(backend::native, automatic(full_module, linux_5_4, req)));
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_4, req)));
}

TEST(Route, AutomaticOnKernelWithoutDontunmapIsModule) {
  mapping src(page_size());
  EXPECT_TRUE(routes(backend::module, automatic(full_module, linux_5_4, request(src))));
}

TEST(Route, AutomaticOnKernelWithoutDontunmapAndWithoutModuleIsNone) {
  mapping src(page_size());
  EXPECT_TRUE(routes(std::nullopt, automatic(no_module, linux_5_4, request(src))));
}

TEST(Route, AutomaticWithEqualLengthsIsNative) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(routes(backend::native, automatic(full_module, linux_6_1, request(src))));
}

TEST(Route, AutomaticWithUnalignedLengthBeforeLinux617IsModule) {
  mapping src(page_size());
  EXPECT_TRUE(
      routes(backend::module, automatic(full_module, linux_6_1, request(src, page_size() - 96))));
}

TEST(Route, AutomaticWithUnalignedLengthOnLinux617IsNative) {
  mapping src(page_size());
  EXPECT_TRUE(
      routes(backend::native, automatic(full_module, linux_6_17, request(src, page_size() - 96))));
}

TEST(Route, AutomaticWithUnalignedLengthAndModuleLackingAlignedLenIsNone) {
  mapping src(page_size());
  EXPECT_TRUE(routes(std::nullopt, automatic(module_without(DONTUNMAP_FEAT_ALIGNED_LEN), linux_6_1,
                                             request(src, page_size() - 96))));
}

TEST(Route, AutomaticWithUnalignedLengthBeforeLinux617WithoutModuleIsNone) {
  mapping src(page_size());
  EXPECT_TRUE(
      routes(std::nullopt, automatic(no_module, linux_6_1, request(src, page_size() - 96))));
}

TEST(Route, AutomaticWithLengthsDifferingByPagesIsLeftToTheKernel) {
  // EINVAL on every kernel: not a missing feature.
  mapping src(page_size());
  EXPECT_TRUE(
      routes(backend::native, automatic(no_module, linux_6_1, request(src, 2 * page_size()))));
}

TEST(Route, AutomaticLeavesWhatEveryKernelRefusesToTheKernelEvenWhereNothingMovesTheKind) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  auto req = request(src);
  req.flags = MREMAP_DONTUNMAP;  // without MAYMOVE
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, req)));
  req = request(src);
  req.flags |= 1ul << 20;  // unknown flag
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, req)));
  req = request(src);
  req.old_addr = src.bytes() + 1;  // unaligned
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, req)));
  req = request(src);
  req.flags |= MREMAP_FIXED;
  req.new_addr = reinterpret_cast<void *>(0x10001);  // unaligned target
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, req)));
}

TEST(Route, AutomaticWithPrivateAnonSourceBeforeLinux513IsNative) {
  mapping src(page_size());
  EXPECT_TRUE(routes(backend::native, automatic(full_module, linux_5_10, request(src)))) << maps();
}

TEST(Route, AutomaticWithSharedSourceBeforeLinux513IsModule) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(routes(backend::module, automatic(full_module, linux_5_10, request(src)))) << maps();
}

TEST(Route, AutomaticWithSharedSourceBeforeLinux513WithoutModuleIsNone) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(routes(std::nullopt, automatic(no_module, linux_5_10, request(src)))) << maps();
}

TEST(Route, AutomaticNeverRoutesSharedSourceToModuleWithoutSharedFeature) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(routes(std::nullopt,
                     automatic(module_without(DONTUNMAP_FEAT_SHARED), linux_5_10, request(src))))
      << maps();
}

TEST(Route, AutomaticWithPrivateSourceBeforeLinux513WithoutModuleIsNative) {
  mapping src(page_size());
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, request(src)))) << maps();
}

TEST(Route, AutomaticWithUnmappedSourceIsLeftToABackendsEfault) {
  void *gone =
      ::mmap(nullptr, page_size(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(gone, MAP_FAILED);
  ASSERT_EQ(::munmap(gone, page_size()), 0);
  const remap_request req{.old_addr = gone, .old_len = page_size(), .new_len = page_size()};
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_5_10, req)));
  EXPECT_TRUE(routes(backend::module, automatic(full_module, linux_5_10, req)));
}

TEST(Route, AutomaticFixedRangeSpanningTwoVmasBeforeLinux617IsModule) {
  two_vmas v;
  ASSERT_TRUE(v.ok) << maps();
  EXPECT_TRUE(routes(
      backend::module,
      automatic(full_module, linux_6_1, fixed_request(v.src.get(), v.src.size(), v.hole.get()))))
      << maps();
}

TEST(Route, AutomaticFixedRangeInOneVmaBeforeLinux617IsNative) {
  mapping src(2 * page_size()), hole(2 * page_size());
  ASSERT_TRUE(src.ok() && hole.ok());
  EXPECT_TRUE(routes(backend::native, automatic(full_module, linux_6_1,
                                                fixed_request(src.get(), src.size(), hole.get()))))
      << maps();
}

TEST(Route, AutomaticFixedRangeSpanningTwoVmasOnLinux617IsNative) {
  two_vmas v;
  ASSERT_TRUE(v.ok) << maps();
  EXPECT_TRUE(routes(
      backend::native,
      automatic(full_module, linux_6_17, fixed_request(v.src.get(), v.src.size(), v.hole.get()))));
}

TEST(Route, AutomaticSpanningVmasThatNoBackendMovesGetsTheKernelsAnswer) {
  two_vmas v;
  ASSERT_TRUE(v.ok) << maps();
  const auto req = fixed_request(v.src.get(), v.src.size(), v.hole.get());
  EXPECT_TRUE(routes(backend::native, automatic(no_module, linux_6_1, req)));
  EXPECT_TRUE(routes(
      backend::native,
      detail::route(backend::automatic, module_without(DONTUNMAP_FEAT_MULTI_VMA), linux_6_1, req)));
}

// Parses a maps text given as a string.
bool private_anon_in(const std::string &text, std::uintptr_t addr) {
  std::FILE *f = ::fmemopen(const_cast<char *>(text.data()), text.size(), "r");
  EXPECT_NE(f, nullptr);
  const bool anon = detail::is_private_anon_in(f, addr);
  std::fclose(f);
  return anon;
}

const std::string sample =
    "55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]\n"
    "7f0000000000-7f0000001000 rw-s 00000000 00:01 1031                       /dev/zero (deleted)\n"
    "7f0000001000-7f0000002000 rw-p 00000000 00:00 0 \n"
    "7f0000002000-7f0000003000 r--p 00000000 fe:01 393240                     /usr/lib/" +
    std::string(600, 'x') +
    "\n"
    "7f0000003000-7f0000004000 rw-p 00000000 00:00 0                          [anon:gc heap]\n"
    "7f0000005000-7f0000006000 rw-s 00000000 00:01 12                         /memfd:x (deleted)\n";

TEST(Maps, HeapIsPrivateAnon) { EXPECT_TRUE(private_anon_in(sample, 0x55d0c0000000)) << sample; }
TEST(Maps, SharedAnonIsNotPrivateAnon) {
  EXPECT_FALSE(private_anon_in(sample, 0x7f0000000800)) << sample;
}
TEST(Maps, UnnamedPrivateMappingIsPrivateAnon) {
  EXPECT_TRUE(private_anon_in(sample, 0x7f0000001fff)) << sample;
}
TEST(Maps, PrivateFileMappingIsNotPrivateAnon) {
  EXPECT_FALSE(private_anon_in(sample, 0x7f0000002000)) << sample;
}
TEST(Maps, NamedAnonAfterLongLineIsPrivateAnon) {
  EXPECT_TRUE(private_anon_in(sample, 0x7f0000003000)) << sample;
}
TEST(Maps, HoleIsNotPrivateAnon) {
  EXPECT_FALSE(private_anon_in(sample, 0x7f0000004000)) << sample;
}
TEST(Maps, MemfdIsNotPrivateAnon) {
  EXPECT_FALSE(private_anon_in(sample, 0x7f0000005000)) << sample;
}

TEST(Maps, FindVmaGivesTheBoundsOfTheLineHoldingAddr) {
  std::FILE *f = ::fmemopen(const_cast<char *>(sample.data()), sample.size(), "r");
  ASSERT_NE(f, nullptr);
  const auto vma = detail::find_vma_in(f, 0x7f0000003800);
  std::fclose(f);
  ASSERT_TRUE(vma.has_value()) << sample;
  EXPECT_EQ(vma->start, 0x7f0000003000u);
  EXPECT_EQ(vma->end, 0x7f0000004000u);
  EXPECT_TRUE(vma->private_anon);
}

TEST(Maps, OwnPrivateMappingIsPrivateAnon) {
  mapping m(page_size());
  EXPECT_TRUE(detail::is_private_anon(m.get())) << maps();
}

TEST(Maps, OwnSharedMappingIsNotPrivateAnon) {
  mapping m(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_FALSE(detail::is_private_anon(m.get())) << maps();
}

}  // namespace
}  // namespace dontunmap::test
