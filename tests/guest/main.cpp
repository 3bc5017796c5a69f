// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-guest-tests: the behaviour of MREMAP_DONTUNMAP through both
// backends, run as root inside each guest of the kernel matrix (and on a
// developer's machine, where the module tests skip unless required).
//
//   dontunmap-guest-tests [gtest flags] [--require-module]
//
// --require-module (or DONTUNMAP_REQUIRE_MODULE=1) makes an absent
// /dev/dontunmap a failure instead of a skip: a guest that booted without
// its module must not pass.
#include <dontunmap/dontunmap.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "expectations.hpp"
#include "support.hpp"

namespace {

void print_setup() {
  using namespace dontunmap;
  std::printf("dontunmap-guest-tests: kernel %s, page size %zu, module %s\n",
              test::running_kernel().str().c_str(), test::page_size(),
              test::module_required() ? "required" : "optional");
  if (auto dev = device::open()) {
    if (auto info = dev->info())
      std::printf("dontunmap-guest-tests: %s ABI %u, features 0x%llx\n", DONTUNMAP_DEVICE,
                  info->abi_version, static_cast<unsigned long long>(info->features));
    else
      std::printf("dontunmap-guest-tests: %s open, INFO failed: %s\n", DONTUNMAP_DEVICE,
                  info.error().message().c_str());
  } else {
    std::printf("dontunmap-guest-tests: %s: %s\n", DONTUNMAP_DEVICE, dev.error().message().c_str());
  }
  const auto &native = probe_native();
  std::printf(
      "dontunmap-guest-tests: native DONTUNMAP: private_anon=%d shared=%d aligned_lengths=%d\n",
      native.private_anon, native.shared, native.aligned_lengths);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char **argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--require-module") {
      dontunmap::test::set_module_required(true);
    } else {
      std::fprintf(stderr, "dontunmap-guest-tests: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (const char *e = std::getenv("DONTUNMAP_REQUIRE_MODULE");
      e && *e && std::string_view(e) != "0")
    dontunmap::test::set_module_required(true);

  print_setup();
  const int status = RUN_ALL_TESTS();
  const auto &u = *::testing::UnitTest::GetInstance();
  // The plain closing line that summaries read; a listing ran nothing.
  if (GTEST_FLAG_GET(list_tests)) return status;
  std::printf("guest: %d passed, %d failed, %d skipped\n", u.successful_test_count(),
              u.failed_test_count(), u.skipped_test_count());
  return status;
}
