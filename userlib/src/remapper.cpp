// SPDX-License-Identifier: LGPL-2.1-or-later
//
// remapper: one entry point over the native and module backends, and the
// rule that picks between them.
#include <dontunmap/dontunmap.hpp>

#include <cstdint>
#include <cstdio>

#include "internal.hpp"

namespace dontunmap {

const char *to_string(backend b) noexcept {
  switch (b) {
    case backend::native: return "native";
    case backend::module: return "module";
    case backend::automatic: return "automatic";
  }
  return "unknown";
}

namespace detail {

bool is_private_anon_in(std::FILE *maps, std::uintptr_t addr) noexcept {
  // Each line: start-end perms offset major:minor inode [path]
  unsigned long start, end, offset, inode;
  unsigned major, minor;
  char perms[5];
  while (std::fscanf(maps, "%lx-%lx %4s %lx %x:%x %lu", &start, &end, perms, &offset,
                     &major, &minor, &inode) == 7) {
    if (addr >= start && addr < end) return perms[3] == 'p' && inode == 0;
    int c;
    while ((c = std::getc(maps)) != '\n' && c != EOF) {
    }
  }
  return false;
}

bool is_private_anon(const void *addr) noexcept {
  std::FILE *maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return false;
  const bool anon = is_private_anon_in(maps, reinterpret_cast<std::uintptr_t>(addr));
  std::fclose(maps);
  return anon;
}

backend choose(backend requested, bool has_module, const native_support &kernel,
               const remap_request &req) noexcept {
  if (requested != backend::automatic) return requested;
  // Without the module the kernel's own answer, success or errno, is the
  // only one there is. A move without DONTUNMAP is plain mremap().
  if (!has_module || !(req.flags & MREMAP_DONTUNMAP)) return backend::native;
  if (!kernel.private_anon) return backend::module;
  if (!kernel.aligned_lengths && req.old_len != req.new_len) return backend::module;
  // Before 5.13 the kernel moves private anonymous memory only. Only then
  // is the source's kind worth a look at /proc/self/maps.
  if (!kernel.shared && !is_private_anon(req.old_addr)) return backend::module;
  return backend::native;
}

}  // namespace detail

std::expected<remapper, std::error_code> remapper::create(backend b, const char *path) noexcept {
  if (b == backend::native) return remapper(b, std::nullopt);
  auto dev = device::open(path);
  if (!dev && b == backend::module) return std::unexpected(dev.error());
  // Probe now, so that the first remap() costs only the move itself.
  if (b == backend::automatic) (void)probe_native();
  return remapper(b, dev ? std::optional<device>(std::move(*dev)) : std::nullopt);
}

backend remapper::choose(const remap_request &req) const noexcept {
  if (requested_ != backend::automatic) return requested_;
  return detail::choose(requested_, dev_.has_value(), probe_native(), req);
}

std::expected<void *, std::error_code> remapper::remap(const remap_request &req) const noexcept {
  if (choose(req) == backend::module) return dev_->remap(req);
  return remap_native(req);
}

}  // namespace dontunmap
