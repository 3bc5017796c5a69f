// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Internals of libdontunmap shared between its sources and its host tests.
// Not installed; not part of the API.
#pragma once

#include <dontunmap/dontunmap.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <system_error>

namespace dontunmap::detail {

inline std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

// Whether addr lies in a private anonymous mapping (private, no backing
// inode: plain anon memory, [heap], [stack], [anon:name]) according to a
// /proc/<pid>/maps text. false when no mapping holds addr.
bool is_private_anon_in(std::FILE *maps, std::uintptr_t addr) noexcept;

// The same for this process, from /proc/self/maps.
bool is_private_anon(const void *addr) noexcept;

// remapper::choose() without the remapper: which backend serves req, given
// the requested backend, whether the module is open and what the kernel's
// own mremap() supports. Reads /proc/self/maps only when the kernel lacks
// shared support and the answer depends on the kind of source mapping.
backend choose(backend requested, bool has_module, const native_support &kernel,
               const remap_request &req) noexcept;

}  // namespace dontunmap::detail
