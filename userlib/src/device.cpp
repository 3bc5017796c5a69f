// SPDX-License-Identifier: LGPL-2.1-or-later
//
// unique_fd, and the module backend: ioctls on /dev/dontunmap.
#include <dontunmap/dontunmap.hpp>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
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

namespace detail {
device make_unchecked_device(unique_fd fd, const dontunmap_info &info) noexcept {
  return device(std::move(fd), info);
}

std::error_code handshake_error(int ioctl_errno, const dontunmap_info &info) noexcept {
  // What a file other than the device answers to an ioctl it does not know.
  if (ioctl_errno == ENOTTY || ioctl_errno == EINVAL) return errc(ENOTTY);
  if (ioctl_errno != 0) return errc(ioctl_errno);
  // Another major ABI may read the same ioctl numbers as other structs.
  if (info.abi_version != DONTUNMAP_ABI_VERSION) return errc(EPROTO);
  return {};
}

}  // namespace detail

namespace {

// Asks the module which ABI it speaks before anything else is sent to it; a
// module that fails the handshake is never called again.
std::expected<device, std::error_code> handshake(unique_fd fd) noexcept {
  dontunmap_info info{};
  const int err = ::ioctl(fd.get(), DONTUNMAP_IOC_INFO, &info) == 0 ? 0 : errno;
  if (auto e = detail::handshake_error(err, info)) return std::unexpected(e);
  return detail::make_unchecked_device(std::move(fd), info);
}

}  // namespace

std::expected<device, std::error_code> device::open(const char *path) noexcept {
  const int fd = ::open(path ? path : DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::unexpected(detail::last_error());
  return handshake(unique_fd(fd));
}

std::expected<device, std::error_code> device::from_fd(int fd) noexcept {
  const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return std::unexpected(detail::last_error());
  return handshake(unique_fd(own));
}

std::expected<dontunmap_info, std::error_code> device::info() const noexcept {
  dontunmap_info info{};
  if (::ioctl(fd_.get(), DONTUNMAP_IOC_INFO, &info) != 0)
    return std::unexpected(detail::last_error());
  return info;
}

std::expected<void *, std::error_code> device::remap(const remap_request &req) const noexcept {
  dontunmap_remap args = detail::to_uapi(req);
  if (::ioctl(fd_.get(), DONTUNMAP_IOC_REMAP, &args) != 0)
    return std::unexpected(detail::last_error());
  return reinterpret_cast<void *>(static_cast<std::uintptr_t>(args.new_addr));
}

batch_result device::remap_batch(std::span<dontunmap_remap> reqs) const noexcept {
  // More than a __u32 can count is more than DONTUNMAP_BATCH_MAX: the
  // kernel's own answer to too many elements.
  if (reqs.size() > UINT_MAX) return {.completed = 0, .error = detail::errc(EINVAL)};
  dontunmap_remap_batch batch{};
  batch.remaps = reinterpret_cast<std::uintptr_t>(reqs.data());
  batch.count = static_cast<std::uint32_t>(reqs.size());
  if (::ioctl(fd_.get(), DONTUNMAP_IOC_REMAP_BATCH, &batch) != 0)
    return {.completed = batch.completed, .error = detail::last_error()};
  return {.completed = reqs.size(), .error = {}};
}

}  // namespace dontunmap
