// SPDX-License-Identifier: LGPL-2.1-or-later
//
// device and remapper on a host without the module: opening fails the way
// open() does, automatic falls back to native, and the ioctl path passes the
// kernel's errno through (shown with /dev/null, which knows no ioctls).
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr const char *missing = "/nonexistent/dontunmap";

bool kernel_covers_everything() {
  const auto &k = probe_native();
  return k.private_anon && k.shared && k.aligned_lengths;
}

TEST(Device, OpenOfMissingPathIsEnoent) {
  EXPECT_TRUE(fails_with(device::open(missing), ENOENT));
}

TEST(Device, OpenOfNullptrOpensDefaultDevice) {
  auto by_null = device::open(nullptr);
  auto by_name = device::open(DONTUNMAP_DEVICE);
  ASSERT_EQ(by_null.has_value(), by_name.has_value());
  if (!by_null) {
    EXPECT_EQ(by_null.error(), by_name.error()) << by_null.error().message();
  }
}

TEST(Device, InfoPassesIoctlErrnoThrough) {
  auto dev = device::open("/dev/null");
  ASSERT_TRUE(dev.has_value()) << dev.error().message();
  EXPECT_TRUE(fails_with(dev->info(), ENOTTY));
}

TEST(Device, RemapPassesIoctlErrnoThrough) {
  auto dev = device::open("/dev/null");
  ASSERT_TRUE(dev.has_value()) << dev.error().message();
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(
      dev->remap({.old_addr = src.get(), .old_len = page_size(), .new_len = page_size()}),
      ENOTTY));
}

TEST(Remapper, ModuleBackendWithoutDeviceFailsWithOpenErrno) {
  EXPECT_TRUE(fails_with(remapper::create(backend::module, missing), ENOENT));
}

TEST(Remapper, NativeBackendOpensNoDevice) {
  auto r = remapper::create(backend::native, missing);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_FALSE(r->has_module());
  EXPECT_EQ(r->module_device(), nullptr);
}

TEST(Remapper, AutomaticWithoutDeviceChoosesNative) {
  auto r = remapper::create(backend::automatic, missing);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_FALSE(r->has_module());
  mapping shared(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_TRUE(shared.ok());
  const remap_request uneven{
      .old_addr = shared.get(), .old_len = page_size(), .new_len = page_size() - 96};
  EXPECT_EQ(r->choose(uneven), backend::native) << to_string(r->choose(uneven));
}

TEST(Remapper, ModuleBackendRemapsThroughDevice) {
  auto r = remapper::create(backend::module, "/dev/null");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  const remap_request req{.old_addr = src.get(), .old_len = page_size(), .new_len = page_size()};
  EXPECT_EQ(r->choose(req), backend::module) << to_string(r->choose(req));
  EXPECT_TRUE(fails_with(r->remap(req), ENOTTY));
}

TEST(Remapper, AutomaticWithDeviceChoosesNativeWhereKernelCoversRequest) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(backend::automatic, "/dev/null");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_TRUE(r->has_module());
  mapping shared(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_TRUE(shared.ok());
  const remap_request req{
      .old_addr = shared.get(), .old_len = page_size(), .new_len = page_size() - 96};
  EXPECT_EQ(r->choose(req), backend::native) << to_string(r->choose(req));
  auto dst = r->remap(req);  // must not reach /dev/null's ioctl
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  mapping moved = mapping::adopt(*dst, page_size());
}

TEST(Remapper, RequestedReportsCreationBackend) {
  auto r = remapper::create(backend::automatic, missing);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->requested(), backend::automatic) << to_string(r->requested());
}

TEST(Backend, ToStringNamesEachBackend) {
  EXPECT_STREQ(to_string(backend::native), "native");
  EXPECT_STREQ(to_string(backend::module), "module");
  EXPECT_STREQ(to_string(backend::automatic), "automatic");
}

}  // namespace
}  // namespace dontunmap::test
