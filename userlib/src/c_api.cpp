// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The C API: thin wrappers that turn std::expected into 0 / -errno.
#include <dontunmap/dontunmap.h>
#include <dontunmap/dontunmap.hpp>

#include <cerrno>
#include <new>

struct dontunmap_ctx {
  dontunmap::remapper remapper;
};

namespace {

dontunmap::remap_request make_request(void *old_addr, size_t old_len, size_t new_len,
                                      int flags, void *new_addr) noexcept {
  return {.old_addr = old_addr,
          .old_len = old_len,
          .new_len = new_len,
          .flags = static_cast<unsigned int>(flags),
          .new_addr = new_addr};
}

int to_c(const std::expected<void *, std::error_code> &r, void **out) noexcept {
  if (!r) return -r.error().value();
  if (out) *out = *r;
  return 0;
}

}  // namespace

extern "C" {

int dontunmap_native_mremap(void *old_addr, size_t old_len, size_t new_len, int flags,
                            void *new_addr, void **out) {
  return to_c(dontunmap::remap_native(make_request(old_addr, old_len, new_len, flags, new_addr)),
              out);
}

int dontunmap_mremap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr,
                     void **out) {
  auto r = dontunmap::remapper::create(dontunmap::backend::automatic);
  if (!r) return -r.error().value();
  return to_c(r->remap(make_request(old_addr, old_len, new_len, flags, new_addr)), out);
}

int dontunmap_ctx_open(int which, const char *path, struct dontunmap_ctx **out) {
  using dontunmap::backend;
  if (!out) return -EINVAL;
  backend b;
  switch (which) {
    case DONTUNMAP_BACKEND_AUTO: b = backend::automatic; break;
    case DONTUNMAP_BACKEND_NATIVE: b = backend::native; break;
    case DONTUNMAP_BACKEND_MODULE: b = backend::module; break;
    default: return -EINVAL;
  }
  auto r = dontunmap::remapper::create(b, path);
  if (!r) return -r.error().value();
  *out = new (std::nothrow) dontunmap_ctx{std::move(*r)};
  return *out ? 0 : -ENOMEM;
}

void dontunmap_ctx_close(struct dontunmap_ctx *ctx) { delete ctx; }

int dontunmap_ctx_mremap(const struct dontunmap_ctx *ctx, void *old_addr, size_t old_len,
                         size_t new_len, int flags, void *new_addr, void **out) {
  if (!ctx) return -EINVAL;
  return to_c(ctx->remapper.remap(make_request(old_addr, old_len, new_len, flags, new_addr)),
              out);
}

int dontunmap_ctx_info(const struct dontunmap_ctx *ctx, struct dontunmap_info *out) {
  if (!ctx || !out) return -EINVAL;
  const dontunmap::device *dev = ctx->remapper.module_device();
  if (!dev) return -ENODEV;
  auto info = dev->info();
  if (!info) return -info.error().value();
  *out = *info;
  return 0;
}

}  // extern "C"
