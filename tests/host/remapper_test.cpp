// SPDX-License-Identifier: LGPL-2.1-or-later
//
// device and remapper on a host without the module: opening fails the way
// open() does, a file that is not the device is refused by the ABI
// handshake (ENOTTY), automatic falls back to native and says why, and the
// ioctl path passes the kernel's errno through (shown with a stand-in
// device over /dev/null, which knows no ioctls).
#include <gtest/gtest.h>

#include "internal.hpp"
#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr const char *missing = "/nonexistent/dontunmap";

bool kernel_covers_everything() {
  const auto &k = probe_native();
  return k.private_anon && k.shared && k.aligned_lengths && k.multi_vma;
}

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::size_t open_descriptors() {
  std::size_t n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += is_open(fd);
  return n;
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

TEST(Device, OpenOfFileThatIsNotTheDeviceIsEnotty) {
  EXPECT_TRUE(fails_with(device::open("/dev/null"), ENOTTY));
}

TEST(Device, FromFdOfNonDeviceIsEnottyAndLeavesFdOpen) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_TRUE(fails_with(device::from_fd(fd), ENOTTY));
  EXPECT_TRUE(is_open(fd)) << "from_fd closed the caller's descriptor " << fd;
  ::close(fd);
}

TEST(Device, FromFdOfRegularFileIsEnotty) {
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_TRUE(fails_with(device::from_fd(fd), ENOTTY));
  ::close(fd);
}

TEST(Device, FromFdOfClosedDescriptorIsEbadf) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  EXPECT_TRUE(fails_with(device::from_fd(fd), EBADF));
  EXPECT_TRUE(fails_with(device::from_fd(-1), EBADF));
}

TEST(Device, FromFdLeavesNoDuplicateBehindOnFailure) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::size_t before = open_descriptors();
  ASSERT_FALSE(device::from_fd(fd).has_value());
  EXPECT_EQ(open_descriptors(), before) << "a duplicate of fd " << fd << " was left open";
  ::close(fd);
}

// The handshake's rules, on the answers only a module could give.
TEST(Handshake, AcceptsSameAbiVersionWithAnyMinor) {
  dontunmap_info info{.abi_version = DONTUNMAP_ABI_VERSION, .abi_minor = 0, .features = 0,
                      .reserved = {}};
  EXPECT_FALSE(detail::handshake_error(0, info)) << detail::handshake_error(0, info).message();
  info.abi_minor = DONTUNMAP_ABI_MINOR + 5;
  EXPECT_FALSE(detail::handshake_error(0, info)) << detail::handshake_error(0, info).message();
}

TEST(Handshake, RefusesOtherAbiVersionWithEproto) {
  for (std::uint32_t v : {0u, DONTUNMAP_ABI_VERSION + 1u}) {
    const dontunmap_info info{.abi_version = v, .abi_minor = 0, .features = 0, .reserved = {}};
    EXPECT_EQ(detail::handshake_error(0, info), std::error_code(EPROTO, std::system_category()))
        << "abi_version " << v;
  }
}

TEST(Handshake, UnknownIoctlAnswersMeanNotTheDevice) {
  const dontunmap_info info{};
  EXPECT_EQ(detail::handshake_error(ENOTTY, info), std::error_code(ENOTTY, std::system_category()));
  EXPECT_EQ(detail::handshake_error(EINVAL, info), std::error_code(ENOTTY, std::system_category()));
}

TEST(Handshake, OtherIoctlErrnoPassesThrough) {
  const dontunmap_info info{};
  EXPECT_EQ(detail::handshake_error(EPERM, info), std::error_code(EPERM, std::system_category()));
}

TEST(Device, InfoPassesIoctlErrnoThrough) {
  const device dev = fake_module();
  EXPECT_TRUE(fails_with(dev.info(), ENOTTY));
}

TEST(Device, ReportsFeaturesAndMinorOfHandshake) {
  const device dev = fake_module(DONTUNMAP_FEAT_PRIVATE_ANON | DONTUNMAP_FEAT_BATCH, 1);
  EXPECT_EQ(dev.features(), DONTUNMAP_FEAT_PRIVATE_ANON | DONTUNMAP_FEAT_BATCH);
  EXPECT_EQ(dev.abi_minor(), 1u);
  EXPECT_TRUE(dev.has_batch());
}

TEST(Device, BatchNeedsFeatureBitAndMinorOne) {
  EXPECT_FALSE(fake_module(DONTUNMAP_FEAT_BATCH, 0).has_batch());
  EXPECT_FALSE(fake_module(all_module_features & ~DONTUNMAP_FEAT_BATCH, 1).has_batch());
}

TEST(Device, RemapPassesIoctlErrnoThrough) {
  const device dev = fake_module();
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE(fails_with(
      dev.remap({.old_addr = src.get(), .old_len = page_size(), .new_len = page_size()}), ENOTTY));
}

TEST(Device, RemapBatchPassesIoctlErrnoThroughWithNothingCompleted) {
  const device dev = fake_module();
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  dontunmap_remap reqs[2] = {
      {.old_addr = reinterpret_cast<std::uintptr_t>(src.get()),
       .old_len = page_size(), .new_len = page_size(),
       .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP, .new_addr = 0},
      {}};
  const batch_result r = dev.remap_batch(reqs);
  EXPECT_EQ(r.completed, 0u);
  EXPECT_EQ(r.error, std::error_code(ENOTTY, std::system_category())) << r.error.message();
  EXPECT_FALSE(r);
}

TEST(Remapper, ModuleBackendWithoutDeviceFailsWithOpenErrno) {
  EXPECT_TRUE(fails_with(remapper::create(backend::module, missing), ENOENT));
}

TEST(Remapper, ModuleBackendOnFileThatIsNotTheDeviceFailsWithEnotty) {
  EXPECT_TRUE(fails_with(remapper::create(backend::module, "/dev/null"), ENOTTY));
}

TEST(Remapper, NativeBackendOpensNoDevice) {
  auto r = remapper::create(backend::native, missing);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_FALSE(r->has_module());
  EXPECT_EQ(r->module_device(), nullptr);
  EXPECT_FALSE(r->module_error()) << r->module_error().message();
}

TEST(Remapper, AutomaticWithoutDeviceSaysWhyInModuleError) {
  auto absent = remapper::create(backend::automatic, missing);
  ASSERT_TRUE(absent.has_value()) << absent.error().message();
  EXPECT_FALSE(absent->has_module());
  EXPECT_EQ(absent->module_error(), std::error_code(ENOENT, std::system_category()))
      << absent->module_error().message();

  auto not_device = remapper::create(backend::automatic, "/dev/null");
  ASSERT_TRUE(not_device.has_value()) << not_device.error().message();
  EXPECT_FALSE(not_device->has_module());
  EXPECT_EQ(not_device->module_error(), std::error_code(ENOTTY, std::system_category()))
      << not_device->module_error().message();
}

TEST(Remapper, AutomaticWithoutDeviceChoosesNative) {
  auto r = remapper::create(backend::automatic, missing);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_FALSE(r->has_module());
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  mapping shared(page_size(), MAP_SHARED | MAP_ANONYMOUS);
  ASSERT_TRUE(shared.ok());
  const remap_request uneven{
      .old_addr = shared.get(), .old_len = page_size(), .new_len = page_size() - 96};
  EXPECT_EQ(r->choose(uneven), backend::native) << to_string(r->choose(uneven));
  EXPECT_EQ(r->route(uneven), backend::native) << to_string(r->route(uneven));
}

TEST(Remapper, CreateFromDeviceRefusesNativeBackend) {
  EXPECT_TRUE(fails_with(remapper::create(fake_module(), backend::native), EINVAL));
}

TEST(Remapper, ModuleBackendRemapsThroughDevice) {
  auto r = remapper::create(fake_module(), backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  const remap_request req{.old_addr = src.get(), .old_len = page_size(), .new_len = page_size()};
  EXPECT_EQ(r->choose(req), backend::module) << to_string(r->choose(req));
  EXPECT_TRUE(fails_with(r->remap(req), ENOTTY));
}

TEST(Remapper, AutomaticWithDeviceChoosesNativeWhereKernelCoversRequest) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(fake_module(), backend::automatic);
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
  EXPECT_STREQ(to_string(std::optional<backend>()), "none");
  EXPECT_STREQ(to_string(std::optional<backend>(backend::module)), "module");
}

}  // namespace
}  // namespace dontunmap::test
