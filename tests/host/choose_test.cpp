// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The automatic backend's rule (detail::choose) for kernels of every age,
// and the /proc/<pid>/maps reading it relies on before 5.13.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>
#include <string>

#include "internal.hpp"
#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr native_support linux_5_10{.private_anon = true, .shared = false, .aligned_lengths = false};
constexpr native_support linux_6_1{.private_anon = true, .shared = true, .aligned_lengths = false};
constexpr native_support linux_6_17{.private_anon = true, .shared = true, .aligned_lengths = true};
constexpr native_support linux_5_4{};

remap_request request(const mapping &src, std::size_t new_len = 0) {
  return {.old_addr = src.get(), .old_len = src.size(), .new_len = new_len ? new_len : src.size()};
}

::testing::AssertionResult chooses(backend want, backend got) {
  if (want == got) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "chose " << to_string(got) << ", expected "
                                       << to_string(want);
}

TEST(Choose, RequestedBackendIsUsedAsAsked) {
  mapping src(page_size());
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::native, true, linux_5_4, request(src))));
  EXPECT_TRUE(chooses(backend::module, detail::choose(backend::module, true, linux_6_17, request(src))));
}

TEST(Choose, AutomaticWithoutModuleIsNative) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::automatic, false, linux_5_4, request(src))));
}

TEST(Choose, AutomaticWithoutDontunmapFlagIsNative) {
  mapping src(page_size());
  auto req = request(src);
  req.flags = MREMAP_MAYMOVE;
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::automatic, true, linux_5_4, req)));
}

TEST(Choose, AutomaticOnKernelWithoutDontunmapIsModule) {
  mapping src(page_size());
  EXPECT_TRUE(chooses(backend::module, detail::choose(backend::automatic, true, linux_5_4, request(src))));
}

TEST(Choose, AutomaticWithEqualLengthsIsNative) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::automatic, true, linux_6_1, request(src))));
}

TEST(Choose, AutomaticWithUnalignedLengthBeforeLinux617IsModule) {
  mapping src(page_size());
  EXPECT_TRUE(chooses(backend::module, detail::choose(backend::automatic, true, linux_6_1,
                                                      request(src, page_size() - 96))));
}

TEST(Choose, AutomaticWithUnalignedLengthOnLinux617IsNative) {
  mapping src(page_size());
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::automatic, true, linux_6_17,
                                                      request(src, page_size() - 96))));
}

TEST(Choose, AutomaticWithPrivateAnonSourceBeforeLinux513IsNative) {
  mapping src(page_size());
  EXPECT_TRUE(chooses(backend::native, detail::choose(backend::automatic, true, linux_5_10, request(src))))
      << maps();
}

TEST(Choose, AutomaticWithSharedSourceBeforeLinux513IsModule) {
  mapping src(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_TRUE(chooses(backend::module, detail::choose(backend::automatic, true, linux_5_10, request(src))))
      << maps();
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
    std::string(600, 'x') + "\n"
    "7f0000003000-7f0000004000 rw-p 00000000 00:00 0                          [anon:gc heap]\n"
    "7f0000005000-7f0000006000 rw-s 00000000 00:01 12                         /memfd:x (deleted)\n";

TEST(Maps, HeapIsPrivateAnon) { EXPECT_TRUE(private_anon_in(sample, 0x55d0c0000000)) << sample; }
TEST(Maps, SharedAnonIsNotPrivateAnon) { EXPECT_FALSE(private_anon_in(sample, 0x7f0000000800)) << sample; }
TEST(Maps, UnnamedPrivateMappingIsPrivateAnon) { EXPECT_TRUE(private_anon_in(sample, 0x7f0000001fff)) << sample; }
TEST(Maps, PrivateFileMappingIsNotPrivateAnon) { EXPECT_FALSE(private_anon_in(sample, 0x7f0000002000)) << sample; }
TEST(Maps, NamedAnonAfterLongLineIsPrivateAnon) { EXPECT_TRUE(private_anon_in(sample, 0x7f0000003000)) << sample; }
TEST(Maps, HoleIsNotPrivateAnon) { EXPECT_FALSE(private_anon_in(sample, 0x7f0000004000)) << sample; }
TEST(Maps, MemfdIsNotPrivateAnon) { EXPECT_FALSE(private_anon_in(sample, 0x7f0000005000)) << sample; }

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
