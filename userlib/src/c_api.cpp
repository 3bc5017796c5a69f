// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The C API: thin wrappers that turn std::expected into 0 / -errno.
#include <dontunmap/dontunmap.h>
#include <dontunmap/dontunmap.hpp>

#include <cerrno>
#include <new>
#include <span>

#include "internal.hpp"

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

bool to_backend(int which, dontunmap::backend *b) noexcept {
  using dontunmap::backend;
  switch (which) {
    case DONTUNMAP_BACKEND_AUTO: *b = backend::automatic; return true;
    case DONTUNMAP_BACKEND_NATIVE: *b = backend::native; return true;
    case DONTUNMAP_BACKEND_MODULE: *b = backend::module; return true;
    default: return false;
  }
}

int make_ctx(std::expected<dontunmap::remapper, std::error_code> r, dontunmap_ctx **out) noexcept {
  if (!r) return -r.error().value();
  *out = new (std::nothrow) dontunmap_ctx{std::move(*r)};
  return *out ? 0 : -ENOMEM;
}

// The C enums are the C++ ones, value for value.
using dontunmap::feature;
using dontunmap::mapping_kind;
static_assert(DONTUNMAP_KIND_PRIVATE_ANON == int(mapping_kind::private_anon) &&
              DONTUNMAP_KIND_SHARED_ANON == int(mapping_kind::shared_anon) &&
              DONTUNMAP_KIND_SHMEM == int(mapping_kind::shmem) &&
              DONTUNMAP_KIND_FILE == int(mapping_kind::file));
static_assert(DONTUNMAP_CAP_MOVE == int(feature::move) &&
              DONTUNMAP_CAP_ALIGNED_LEN == int(feature::aligned_lengths) &&
              DONTUNMAP_CAP_MULTI_VMA == int(feature::multi_vma) &&
              DONTUNMAP_CAP_UFFD_KEPT == int(feature::uffd_kept) &&
              DONTUNMAP_CAP_BATCH == int(feature::batch));

int to_c(std::optional<dontunmap::backend> b) noexcept {
  if (!b) return DONTUNMAP_BACKEND_NONE;
  return *b == dontunmap::backend::module ? DONTUNMAP_BACKEND_MODULE : DONTUNMAP_BACKEND_NATIVE;
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
  dontunmap::backend b;
  if (!out || !to_backend(which, &b)) return -EINVAL;
  return make_ctx(dontunmap::remapper::create(b, path), out);
}

int dontunmap_ctx_from_fd(int which, int fd, struct dontunmap_ctx **out) {
  dontunmap::backend b;
  if (!out || !to_backend(which, &b) || b == dontunmap::backend::native) return -EINVAL;
  auto dev = dontunmap::device::from_fd(fd);
  if (!dev) return -dev.error().value();
  return make_ctx(dontunmap::remapper::create(std::move(*dev), b), out);
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

int dontunmap_ctx_capability(const struct dontunmap_ctx *ctx, int kind, int cap,
                             struct dontunmap_capability *out) {
  if (!out || kind < DONTUNMAP_KIND_PRIVATE_ANON || kind > DONTUNMAP_KIND_FILE ||
      cap < DONTUNMAP_CAP_MOVE || cap > DONTUNMAP_CAP_BATCH)
    return -EINVAL;
  const auto k = static_cast<mapping_kind>(kind);
  const auto f = static_cast<feature>(cap);
  const dontunmap::capability c =
      ctx ? ctx->remapper.capability_of(k, f)
          : dontunmap::detail::capability_of(dontunmap::probe_native(), std::nullopt, k, f);
  *out = {.native = c.native, .module = c.module, .automatic = to_c(c.automatic)};
  return 0;
}

int dontunmap_ctx_remap_batch(const struct dontunmap_ctx *ctx, struct dontunmap_remap *reqs,
                              unsigned count, unsigned *completed) {
  if (completed) *completed = 0;
  if (!ctx || (!reqs && count)) return -EINVAL;
  const dontunmap::batch_result r =
      ctx->remapper.remap_batch(std::span<dontunmap_remap>(reqs, count));
  if (completed) *completed = static_cast<unsigned>(r.completed);
  return r ? 0 : -r.error.value();
}

}  // extern "C"
