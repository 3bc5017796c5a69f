// SPDX-License-Identifier: LGPL-2.1-or-later
//
// unique_fd, and the module backend: ioctls on /dev/dontunmap.
#include <dontunmap/dontunmap.hpp>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "internal.hpp"

namespace dontunmap {

unique_fd &unique_fd::operator=(unique_fd &&o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

unique_fd::~unique_fd() { reset(); }

void unique_fd::reset(int fd) noexcept {
  // close() may set errno; a destructor running while the caller inspects
  // errno must not change it.
  const int saved_errno = errno;
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
  errno = saved_errno;
}

std::expected<device, std::error_code> device::open(const char *path) noexcept {
  const int fd = ::open(path ? path : DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::unexpected(detail::last_error());
  return device(unique_fd(fd));
}

std::expected<dontunmap_info, std::error_code> device::info() const noexcept {
  dontunmap_info info{};
  if (::ioctl(fd_.get(), DONTUNMAP_IOC_INFO, &info) != 0)
    return std::unexpected(detail::last_error());
  return info;
}

std::expected<void *, std::error_code> device::remap(const remap_request &req) const noexcept {
  struct dontunmap_remap args = {
      .old_addr = reinterpret_cast<std::uintptr_t>(req.old_addr),
      .old_len = req.old_len,
      .new_len = req.new_len,
      .flags = req.flags,
      .new_addr = reinterpret_cast<std::uintptr_t>(req.new_addr),
  };
  if (::ioctl(fd_.get(), DONTUNMAP_IOC_REMAP, &args) != 0)
    return std::unexpected(detail::last_error());
  return reinterpret_cast<void *>(static_cast<std::uintptr_t>(args.new_addr));
}

}  // namespace dontunmap
