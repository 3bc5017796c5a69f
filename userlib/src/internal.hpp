// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Internals of libdontunmap shared between its sources and its host tests.
// Not installed; not part of the API, and hidden in the shared library.
#pragma once

#include <dontunmap/dontunmap.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <system_error>

namespace dontunmap::detail {

inline std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

inline std::error_code errc(int err) noexcept {
  return {err, std::system_category()};
}

// A remap_request as the module's struct dontunmap_remap, and back: the
// one conversion between the library's call and the ioctl's element.
inline dontunmap_remap to_uapi(const remap_request &req) noexcept {
  return {.old_addr = reinterpret_cast<std::uintptr_t>(req.old_addr),
          .old_len = req.old_len,
          .new_len = req.new_len,
          .flags = req.flags,
          .new_addr = reinterpret_cast<std::uintptr_t>(req.new_addr)};
}

inline remap_request from_uapi(const dontunmap_remap &e) noexcept {
  return {.old_addr = reinterpret_cast<void *>(static_cast<std::uintptr_t>(e.old_addr)),
          .old_len = static_cast<std::size_t>(e.old_len),
          .new_len = static_cast<std::size_t>(e.new_len),
          .flags = static_cast<unsigned long>(e.flags),
          .new_addr = reinterpret_cast<void *>(static_cast<std::uintptr_t>(e.new_addr))};
}

// The ABI handshake of device::open() and from_fd(), given the errno of
// DONTUNMAP_IOC_INFO (0: it succeeded) and what it wrote: empty if the
// device may be used; ENOTTY for a file that is not the device (ENOTTY or
// EINVAL); EPROTO for another DONTUNMAP_ABI_VERSION; any other errno as is.
std::error_code handshake_error(int ioctl_errno, const dontunmap_info &info) noexcept;

// One line of /proc/<pid>/maps, as far as routing needs it.
struct vma_info {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  bool private_anon = false;  // private, no backing inode
};

// The VMA holding addr according to a /proc/<pid>/maps text, if any.
std::optional<vma_info> find_vma_in(std::FILE *maps, std::uintptr_t addr) noexcept;
// The same for this process, from /proc/self/maps (empty if unreadable).
std::optional<vma_info> find_vma(const void *addr) noexcept;

// Whether addr lies in a private anonymous mapping (private, no backing
// inode: plain anon memory, [heap], [stack], [anon:name]) according to a
// /proc/<pid>/maps text. false when no mapping holds addr.
bool is_private_anon_in(std::FILE *maps, std::uintptr_t addr) noexcept;

// The same for this process, from /proc/self/maps.
bool is_private_anon(const void *addr) noexcept;

// What the open module does, as DONTUNMAP_IOC_INFO said; no module: empty.
struct module_support {
  std::uint64_t features = 0;
  std::uint32_t abi_minor = 0;
};

// What a DONTUNMAP move needs of a backend.
struct needs {
  bool shared = false;  // a source that is not private anonymous memory
  bool uneven = false;  // old_len != new_len, equal once page-aligned
  bool multi = false;   // a MREMAP_FIXED range past the VMA at old_addr
};

bool native_does(const native_support &kernel, needs n) noexcept;
bool module_does(const std::optional<module_support> &module, needs n) noexcept;
// The first of native and module that does n, if either.
std::optional<backend> pick(const native_support &kernel,
                            const std::optional<module_support> &module, needs n) noexcept;

// Whether automatic batches through DONTUNMAP_IOC_REMAP_BATCH: the module
// has it, and every move feature, so no element is sent where a single
// remap() would not have gone.
bool module_batches_for_automatic(const std::optional<module_support> &module) noexcept;

// remapper::route() without the remapper: which backend serves req, given
// the requested backend, the open module (if any) and what the kernel's own
// mremap() supports. Reads /proc/self/maps only when the answer depends on
// the source's kind or VMAs.
std::optional<backend> route(backend requested, const std::optional<module_support> &module,
                             const native_support &kernel, const remap_request &req) noexcept;

// remapper::capability_of() without the remapper.
capability capability_of(const native_support &kernel,
                         const std::optional<module_support> &module, mapping_kind kind,
                         feature what) noexcept;

}  // namespace dontunmap::detail
