// SPDX-License-Identifier: LGPL-2.1-or-later
//
// libdontunmap: move a range's pages to a new address and keep the source
// mapped but empty (mremap MREMAP_MAYMOVE | MREMAP_DONTUNMAP), through the
// kernel's own mremap() or through the dontunmap module's /dev/dontunmap.
//
// Every call returns std::expected; an error is the errno the kernel gave,
// in std::system_category(). Nothing here throws.
#pragma once

#include <linux/dontunmap.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <system_error>
#include <utility>

namespace dontunmap {

// Which implementation performs the move.
enum class backend {
  native,     // mremap(2) of the running kernel
  module,     // ioctl(DONTUNMAP_IOC_REMAP) on /dev/dontunmap
  automatic,  // native where the kernel's own support covers the call, else module
};

// "native", "module" or "automatic".
const char *to_string(backend b) noexcept;

// The arguments of mremap(). flags default to a DONTUNMAP move.
struct remap_request {
  void *old_addr = nullptr;
  std::size_t old_len = 0;
  std::size_t new_len = 0;
  unsigned long flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  void *new_addr = nullptr;  // hint, or target with MREMAP_FIXED
};

// What the running kernel's own mremap(MREMAP_DONTUNMAP) supports, probed
// once per process by trying it on one-page scratch mappings (as the
// upstream selftest does), which are unmapped again before it returns.
struct native_support {
  bool private_anon = false;     // 5.7+
  bool shared = false;           // shared anon, shmem, files: 5.13+
  bool aligned_lengths = false;  // lengths compared after page alignment: 6.17+
};
const native_support &probe_native() noexcept;

// Move-only owner of a file descriptor.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd &operator=(unique_fd &&o) noexcept;
  unique_fd(const unique_fd &) = delete;
  unique_fd &operator=(const unique_fd &) = delete;
  ~unique_fd();

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// An open /dev/dontunmap.
class device {
 public:
  // open(path, O_RDWR | O_CLOEXEC); nullptr means DONTUNMAP_DEVICE.
  [[nodiscard]] static std::expected<device, std::error_code>
  open(const char *path = DONTUNMAP_DEVICE) noexcept;

  [[nodiscard]] std::expected<dontunmap_info, std::error_code> info() const noexcept;
  [[nodiscard]] std::expected<void *, std::error_code>
  remap(const remap_request &req) const noexcept;

  int fd() const noexcept { return fd_.get(); }

 private:
  explicit device(unique_fd fd) noexcept : fd_(std::move(fd)) {}
  unique_fd fd_;
};

// mremap() through syscall(2), so that libc wrappers that drop new_addr
// without MREMAP_FIXED (glibc on arm64) cannot change the kernel's answer.
[[nodiscard]] std::expected<void *, std::error_code>
remap_native(const remap_request &req) noexcept;

// One entry point over both backends.
class remapper {
 public:
  // backend::module and backend::automatic open the device (path nullptr
  // means DONTUNMAP_DEVICE); module fails with open()'s errno, automatic falls
  // back to native alone when the device cannot be opened. native opens
  // nothing.
  [[nodiscard]] static std::expected<remapper, std::error_code>
  create(backend b = backend::automatic, const char *path = DONTUNMAP_DEVICE) noexcept;

  [[nodiscard]] std::expected<void *, std::error_code>
  remap(const remap_request &req) const noexcept;

  // The backend that remap(req) would use. A requested native or module
  // backend is used as asked. automatic uses the kernel's own mremap() when
  // probe_native() says it covers the request -- lengths it accepts, and a
  // shared source only where the kernel moves shared mappings (before 5.13
  // the source is looked up in /proc/self/maps) -- and the module otherwise;
  // without the device it is always native.
  [[nodiscard]] backend choose(const remap_request &req) const noexcept;
  backend requested() const noexcept { return requested_; }
  bool has_module() const noexcept { return dev_.has_value(); }
  // The open device (for info()), or nullptr.
  const device *module_device() const noexcept { return dev_ ? &*dev_ : nullptr; }

 private:
  remapper(backend b, std::optional<device> dev) noexcept
      : requested_(b), dev_(std::move(dev)) {}
  backend requested_;
  std::optional<device> dev_;
};

}  // namespace dontunmap
