// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The C API: 0 or -errno, and the destination through *out.
#include <dontunmap/dontunmap.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>

#include "test_util.hpp"

extern "C" int c_api_unaligned_native_mremap(void);
extern "C" int c_api_batch_and_capability(void);

namespace dontunmap::test {
namespace {

constexpr int dontunmap_flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;

TEST(CApi, NativeMremapStoresDestination) {
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  fill_pattern(src.bytes(), page_size());
  void *out = nullptr;
  ASSERT_EQ(dontunmap_native_mremap(src.get(), page_size(), page_size(), dontunmap_flags,
                                    nullptr, &out),
            0);
  mapping moved = mapping::adopt(out, page_size());
  EXPECT_TRUE(holds_pattern(moved.bytes(), page_size()));
}

TEST(CApi, NativeMremapReturnsNegativeErrno) {
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(dontunmap_native_mremap(src.bytes() + 1, page_size(), page_size(), dontunmap_flags,
                                    nullptr, nullptr),
            -EINVAL);
}

TEST(CApi, WorksFromC) { EXPECT_EQ(c_api_unaligned_native_mremap(), -EINVAL); }

TEST(CApi, OneShotMremapMovesWithoutDevice) {
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  void *out = nullptr;
  ASSERT_EQ(dontunmap_mremap(src.get(), page_size(), page_size(), dontunmap_flags, nullptr, &out),
            0);
  mapping moved = mapping::adopt(out, page_size());
  EXPECT_NE(out, src.get());
}

TEST(CApi, CtxOpenOfModuleOnMissingPathIsNegativeEnoent) {
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_MODULE, "/nonexistent/dontunmap", &ctx),
            -ENOENT);
  EXPECT_EQ(ctx, nullptr);
}

TEST(CApi, CtxOpenOfUnknownBackendIsNegativeEinval) {
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_open(42, nullptr, &ctx), -EINVAL);
}

TEST(CApi, CtxMremapOfAutomaticWithoutDeviceMoves) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_AUTO, "/nonexistent/dontunmap", &ctx), 0);
  mapping src(page_size());
  ASSERT_TRUE(src.ok());
  void *out = nullptr;
  EXPECT_EQ(dontunmap_ctx_mremap(ctx, src.get(), page_size(), page_size(), dontunmap_flags,
                                 nullptr, &out),
            0);
  if (out) mapping::adopt(out, page_size());
  dontunmap_ctx_close(ctx);
}

TEST(CApi, CtxInfoWithoutDeviceIsNegativeEnodev) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_NATIVE, nullptr, &ctx), 0);
  dontunmap_info info{};
  EXPECT_EQ(dontunmap_ctx_info(ctx, &info), -ENODEV);
  dontunmap_ctx_close(ctx);
}

TEST(CApi, CtxOpenOfModuleOnFileThatIsNotTheDeviceIsNegativeEnotty) {
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_MODULE, "/dev/null", &ctx), -ENOTTY);
  EXPECT_EQ(ctx, nullptr);
}

TEST(CApi, CtxFromFdOfNonDeviceIsNegativeEnottyAndLeavesFdOpen) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_AUTO, fd, &ctx), -ENOTTY);
  EXPECT_EQ(dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_MODULE, fd, &ctx), -ENOTTY);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_NE(::fcntl(fd, F_GETFD), -1) << "fd " << fd << " was closed";
  ::close(fd);
}

TEST(CApi, CtxFromFdOfClosedDescriptorIsNegativeEbadf) {
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_MODULE, -1, &ctx), -EBADF);
}

TEST(CApi, CtxFromFdWithNativeBackendIsNegativeEinval) {
  const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  dontunmap_ctx *ctx = nullptr;
  EXPECT_EQ(dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_NATIVE, fd, &ctx), -EINVAL);
  EXPECT_EQ(dontunmap_ctx_from_fd(42, fd, &ctx), -EINVAL);
  ::close(fd);
}

std::string describe(int kind, int cap, const dontunmap_capability &c) {
  return "kind " + std::to_string(kind) + " cap " + std::to_string(cap) + ": native " +
         std::to_string(c.native) + " module " + std::to_string(c.module) + " automatic " +
         std::to_string(c.automatic);
}

TEST(CApi, CtxCapabilityAnswersAsCapabilityOf) {
  auto cpp = remapper::create(backend::native);
  ASSERT_TRUE(cpp.has_value()) << cpp.error().message();
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_AUTO, "/nonexistent/dontunmap", &ctx), 0);
  for (int kind = DONTUNMAP_KIND_PRIVATE_ANON; kind <= DONTUNMAP_KIND_FILE; ++kind)
    for (int cap = DONTUNMAP_CAP_MOVE; cap <= DONTUNMAP_CAP_BATCH; ++cap) {
      const capability want =
          cpp->capability_of(static_cast<mapping_kind>(kind), static_cast<feature>(cap));
      const int want_auto = !want.automatic ? DONTUNMAP_BACKEND_NONE
                            : *want.automatic == backend::native ? DONTUNMAP_BACKEND_NATIVE
                                                                 : DONTUNMAP_BACKEND_MODULE;
      for (const dontunmap_ctx *c : {static_cast<const dontunmap_ctx *>(nullptr),
                                     static_cast<const dontunmap_ctx *>(ctx)}) {
        dontunmap_capability got{-1, -1, -7};
        ASSERT_EQ(dontunmap_ctx_capability(c, kind, cap, &got), 0);
        EXPECT_EQ(got.native, int(want.native)) << describe(kind, cap, got);
        EXPECT_EQ(got.module, 0) << describe(kind, cap, got);
        EXPECT_EQ(got.automatic, want_auto) << describe(kind, cap, got);
      }
    }
  dontunmap_ctx_close(ctx);
}

TEST(CApi, CtxCapabilityOfUnknownKindOrCapIsNegativeEinval) {
  dontunmap_capability c{};
  EXPECT_EQ(dontunmap_ctx_capability(nullptr, DONTUNMAP_KIND_FILE + 1, DONTUNMAP_CAP_MOVE, &c),
            -EINVAL);
  EXPECT_EQ(dontunmap_ctx_capability(nullptr, -1, DONTUNMAP_CAP_MOVE, &c), -EINVAL);
  EXPECT_EQ(dontunmap_ctx_capability(nullptr, DONTUNMAP_KIND_SHMEM, DONTUNMAP_CAP_BATCH + 1, &c),
            -EINVAL);
  EXPECT_EQ(dontunmap_ctx_capability(nullptr, DONTUNMAP_KIND_SHMEM, DONTUNMAP_CAP_MOVE, nullptr),
            -EINVAL);
}

TEST(CApi, CtxRemapBatchStopsAtFailingMiddleElement) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_NATIVE, nullptr, &ctx), 0);
  mapping a(page_size()), b(page_size()), c(page_size());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  fill_pattern(c.bytes(), page_size());
  auto req = [](const mapping &m) {
    return dontunmap_remap{.old_addr = reinterpret_cast<std::uintptr_t>(m.get()),
                           .old_len = page_size(), .new_len = page_size(),
                           .flags = dontunmap_flags, .new_addr = 0};
  };
  dontunmap_remap reqs[3] = {req(a), req(b), req(c)};
  reqs[1].new_len = 2 * page_size();  // DONTUNMAP does not resize: EINVAL
  unsigned completed = 99;
  EXPECT_EQ(dontunmap_ctx_remap_batch(ctx, reqs, 3, &completed), -EINVAL);
  EXPECT_EQ(completed, 1u);
  ASSERT_NE(reqs[0].new_addr, 0u);
  mapping moved = mapping::adopt(reinterpret_cast<void *>(reqs[0].new_addr), page_size());
  EXPECT_EQ(reqs[2].new_addr, 0u);
  EXPECT_TRUE(holds_pattern(c.bytes(), page_size())) << "the element after the failed one moved";
  dontunmap_ctx_close(ctx);
}

TEST(CApi, CtxRemapBatchOfNothingSucceeds) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_NATIVE, nullptr, &ctx), 0);
  unsigned completed = 99;
  EXPECT_EQ(dontunmap_ctx_remap_batch(ctx, nullptr, 0, &completed), 0);
  EXPECT_EQ(completed, 0u);
  EXPECT_EQ(dontunmap_ctx_remap_batch(nullptr, nullptr, 0, &completed), -EINVAL);
  dontunmap_ctx_close(ctx);
}

TEST(CApi, BatchAndCapabilityWorkFromC) { EXPECT_EQ(c_api_batch_and_capability(), 0); }

}  // namespace
}  // namespace dontunmap::test
