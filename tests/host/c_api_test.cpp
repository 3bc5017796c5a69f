// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The C API: 0 or -errno, and the destination through *out.
#include <dontunmap/dontunmap.h>
#include <gtest/gtest.h>

#include "test_util.hpp"

extern "C" int c_api_unaligned_native_mremap(void);

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

TEST(CApi, CtxInfoPassesIoctlErrnoThrough) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_MODULE, "/dev/null", &ctx), 0);
  dontunmap_info info{};
  EXPECT_EQ(dontunmap_ctx_info(ctx, &info), -ENOTTY);
  dontunmap_ctx_close(ctx);
}

}  // namespace
}  // namespace dontunmap::test
