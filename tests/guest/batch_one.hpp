// SPDX-License-Identifier: GPL-2.0
//
// A move made as DONTUNMAP_IOC_REMAP_BATCH with one element, its answer
// read as a single call's: the errno, or the destination written back. The
// differential tester, the stress test and the allocation-failure walk make
// some of their module moves this way: a batch of one must answer exactly
// as DONTUNMAP_IOC_REMAP does.
#pragma once

#include <dontunmap/dontunmap.hpp>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <expected>
#include <system_error>

namespace dontunmap::test {

inline dontunmap_remap_batch batch_header(const dontunmap_remap *remaps, std::uint32_t count) {
  dontunmap_remap_batch h{};
  h.remaps = reinterpret_cast<std::uintptr_t>(remaps);
  h.count = count;
  return h;
}

inline std::expected<void *, std::error_code> remap_batch_of_one(int dev_fd,
                                                                 const remap_request &req) {
  dontunmap_remap one{.old_addr = reinterpret_cast<std::uintptr_t>(req.old_addr),
                      .old_len = req.old_len,
                      .new_len = req.new_len,
                      .flags = req.flags,
                      .new_addr = reinterpret_cast<std::uintptr_t>(req.new_addr)};
  dontunmap_remap_batch hdr = batch_header(&one, 1);
  if (::ioctl(dev_fd, DONTUNMAP_IOC_REMAP_BATCH, &hdr) != 0)
    return std::unexpected(std::error_code(errno, std::system_category()));
  return reinterpret_cast<void *>(one.new_addr);
}

}  // namespace dontunmap::test
