// SPDX-License-Identifier: LGPL-2.1-or-later
//
// libdontunmap: move a range's pages to a new address and keep the source
// mapped but empty (mremap MREMAP_MAYMOVE | MREMAP_DONTUNMAP), through the
// kernel's own mremap() or through the dontunmap module's /dev/dontunmap.
//
// Every call returns std::expected (or, for batches, a batch_result); an
// error is the errno the kernel gave, in std::system_category(), except
// where a comment below names one the library gives itself. Nothing here
// throws. userlib/README.md has the details: capabilities, EOPNOTSUPP,
// sandboxes, ABI policy.
#pragma once

#include <linux/dontunmap.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <system_error>
#include <utility>

// What libdontunmap.so exports; everything else is hidden.
#ifndef DONTUNMAP_API
#define DONTUNMAP_API __attribute__((visibility("default")))
#endif

namespace dontunmap {

// Which implementation performs the move.
enum class backend {
  native,     // mremap(2) of the running kernel
  module,     // ioctl(DONTUNMAP_IOC_REMAP) on /dev/dontunmap
  automatic,  // native where the kernel's own support covers the call, else module
};

// "native", "module" or "automatic"; "none" for an empty optional.
DONTUNMAP_API const char *to_string(backend b) noexcept;
DONTUNMAP_API const char *to_string(std::optional<backend> b) noexcept;

// The arguments of mremap(). flags default to a DONTUNMAP move.
struct remap_request {
  void *old_addr = nullptr;
  std::size_t old_len = 0;
  std::size_t new_len = 0;
  unsigned long flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  void *new_addr = nullptr;  // hint, or target with MREMAP_FIXED
};

// What the running kernel's own mremap(MREMAP_DONTUNMAP) supports, probed
// once per process by trying it on scratch mappings (as the upstream
// selftest does), which are unmapped again before it returns.
struct native_support {
  bool private_anon = false;     // 5.7+
  bool shared = false;           // shared anon, shmem, files: 5.13+
  bool aligned_lengths = false;  // lengths compared after page alignment: 6.17+
  bool multi_vma = false;        // MREMAP_FIXED over several VMAs: 6.17+
};
DONTUNMAP_API const native_support &probe_native() noexcept;

// The kinds of source mapping whose support differs between kernels.
enum class mapping_kind {
  private_anon,  // MAP_PRIVATE | MAP_ANONYMOUS (heap, stacks, [anon:...])
  shared_anon,   // MAP_SHARED | MAP_ANONYMOUS
  shmem,         // memfd, tmpfs, SysV shm
  file,          // any other file mapping, MAP_SHARED or MAP_PRIVATE
};

// What a DONTUNMAP move may need beyond moving that kind at all.
enum class feature {
  move,             // a DONTUNMAP move of that kind (equal lengths, one VMA)
  aligned_lengths,  // old_len != new_len but equal once page-aligned (6.17)
  multi_vma,        // MREMAP_FIXED over a range spanning several VMAs (6.17)
  uffd_kept,        // the source keeps its userfaultfd registration, UFFD_EVENT_REMAP
  batch,            // many moves in one system call (DONTUNMAP_IOC_REMAP_BATCH)
};

// One answer of remapper::capability_of().
struct capability {
  bool native = false;  // the running kernel's own mremap() does it (probe_native())
  bool module = false;  // the open module says it does (DONTUNMAP_IOC_INFO's feature bits)
  // The backend through which backend::automatic does it; empty: neither does.
  std::optional<backend> automatic;
};

// Move-only owner of a file descriptor.
class DONTUNMAP_API unique_fd {
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

// The outcome of a batch of moves, made in order and stopped at the first
// that fails.
struct batch_result {
  // Elements moved, from the first; each one's new_addr holds its destination.
  std::size_t completed = 0;
  // Empty when every element moved. Otherwise the errno of element
  // `completed`, or of a call refused as a whole (an array the kernel
  // could not read or write: nothing of that call moved).
  std::error_code error;
  explicit operator bool() const noexcept { return !error; }
};

class device;
namespace detail {
// For the library's own tests: a device around fd as if DONTUNMAP_IOC_INFO
// had answered info, without asking. Not exported from the shared library.
device make_unchecked_device(unique_fd fd, const dontunmap_info &info) noexcept;
}  // namespace detail

// An open /dev/dontunmap whose module speaks this header's ABI.
class DONTUNMAP_API device {
 public:
  // open(path, O_RDWR | O_CLOEXEC), nullptr meaning DONTUNMAP_DEVICE, then
  // the ABI handshake (DONTUNMAP_IOC_INFO). Fails with open()'s errno; with
  // ENOTTY for a file that is not the device (the ioctl's ENOTTY or EINVAL);
  // with EPROTO for a module of another DONTUNMAP_ABI_VERSION, which is
  // never called again; with another errno of the ioctl as it came.
  [[nodiscard]] static std::expected<device, std::error_code>
  open(const char *path = DONTUNMAP_DEVICE) noexcept;

  // The same from a descriptor opened earlier (before entering a sandbox,
  // or passed by another process): fd is duplicated (F_DUPFD_CLOEXEC), the
  // device owns the duplicate, and fd stays the caller's to close. EBADF for
  // a descriptor that is not open; ENOTTY and EPROTO as for open().
  [[nodiscard]] static std::expected<device, std::error_code> from_fd(int fd) noexcept;

  // DONTUNMAP_IOC_INFO, asked now.
  [[nodiscard]] std::expected<dontunmap_info, std::error_code> info() const noexcept;
  // What DONTUNMAP_IOC_INFO said at open: DONTUNMAP_FEAT_* bits, ABI minor.
  std::uint64_t features() const noexcept { return info_.features; }
  std::uint32_t abi_minor() const noexcept { return info_.abi_minor; }
  // Whether the module has DONTUNMAP_IOC_REMAP_BATCH (FEAT_BATCH, minor 1+).
  bool has_batch() const noexcept {
    return (info_.features & DONTUNMAP_FEAT_BATCH) && info_.abi_minor >= 1;
  }

  // DONTUNMAP_IOC_REMAP.
  [[nodiscard]] std::expected<void *, std::error_code>
  remap(const remap_request &req) const noexcept;

  // DONTUNMAP_IOC_REMAP_BATCH over reqs, as one call: elements in order,
  // each one's new_addr written back, stopping at the first that fails.
  // The kernel's answer as it came: EINVAL for an empty span or more than
  // DONTUNMAP_BATCH_MAX elements, ENOTTY from a module without the ioctl
  // (has_batch() false).
  [[nodiscard]] batch_result remap_batch(std::span<dontunmap_remap> reqs) const noexcept;

  int fd() const noexcept { return fd_.get(); }

 private:
  device(unique_fd fd, const dontunmap_info &info) noexcept : fd_(std::move(fd)), info_(info) {}
  friend device detail::make_unchecked_device(unique_fd fd, const dontunmap_info &info) noexcept;
  unique_fd fd_;
  dontunmap_info info_;
};

// mremap() through syscall(2), so that libc wrappers that drop new_addr
// without MREMAP_FIXED (glibc on arm64) cannot change the kernel's answer.
[[nodiscard]] DONTUNMAP_API std::expected<void *, std::error_code>
remap_native(const remap_request &req) noexcept;

// One entry point over both backends.
class DONTUNMAP_API remapper {
 public:
  // backend::module and backend::automatic open the device (path nullptr
  // means DONTUNMAP_DEVICE); module fails as device::open() does, automatic
  // falls back to native alone when the device does not open (module_error()
  // says why). native opens nothing. Creating probes the kernel
  // (probe_native()): create remappers before entering a sandbox.
  [[nodiscard]] static std::expected<remapper, std::error_code>
  create(backend b = backend::automatic, const char *path = DONTUNMAP_DEVICE) noexcept;
  // The same over a device opened earlier (device::from_fd()); b is module
  // or automatic (native: EINVAL).
  [[nodiscard]] static std::expected<remapper, std::error_code>
  create(device dev, backend b = backend::automatic) noexcept;

  // One move, by the backend route(req) names. When route(req) is empty
  // (automatic, and neither backend does what the request needs: see
  // route()), fails with EOPNOTSUPP having made no system call that could
  // change memory. Every other error is the backend's own.
  [[nodiscard]] std::expected<void *, std::error_code>
  remap(const remap_request &req) const noexcept;

  // Moves reqs in order, each one's new_addr written back, stopping at the
  // first that fails. Through DONTUNMAP_IOC_REMAP_BATCH (in calls of at
  // most DONTUNMAP_BATCH_MAX elements) when the requested backend is module
  // and the module has it, or automatic and capability_of(..., batch) says
  // module and every element is a MAYMOVE | DONTUNMAP move; otherwise one
  // remap() per element. An empty span moves nothing and succeeds.
  [[nodiscard]] batch_result remap_batch(std::span<dontunmap_remap> reqs) const noexcept;

  // The backend remap(req) uses. A requested native or module backend is
  // used as asked. automatic sends to native a request without
  // MREMAP_DONTUNMAP, and one every kernel refuses with EINVAL (unknown
  // flags, no MREMAP_MAYMOVE, old_addr or a FIXED new_addr off a page
  // boundary). Otherwise it takes the kernel's own mremap() when it does
  // everything the request needs, else the module when its feature bits say
  // it does, else nothing (EOPNOTSUPP). What a request needs: its source's kind, looked up
  // in /proc/self/maps only where the kernel and module differ by kind
  // (before 5.13); aligned lengths when old_len != new_len but equal once
  // page-aligned; several VMAs when a MREMAP_FIXED range with equal lengths
  // runs past the VMA at old_addr, looked up only where the module moves
  // several VMAs and the kernel does not (before 6.17). A range spanning
  // several VMAs that neither moves goes to the backend that moves its kind,
  // for its answer (EFAULT): the library cannot tell it from a range with
  // a hole, which is EFAULT on every kernel. userlib/README.md has it all.
  [[nodiscard]] std::optional<backend> route(const remap_request &req) const noexcept;
  // route(req), or native where that is empty (remap() then calls neither).
  [[nodiscard]] backend choose(const remap_request &req) const noexcept;

  // Does a move of `kind` with `what` work here: natively, through this
  // remapper's module (none: false), and through which backend automatic
  // does it. Consistent with route() and remap_batch().
  [[nodiscard]] capability capability_of(mapping_kind kind, feature what) const noexcept;

  backend requested() const noexcept { return requested_; }
  bool has_module() const noexcept { return dev_.has_value(); }
  // The open device (for info()), or nullptr.
  const device *module_device() const noexcept { return dev_ ? &*dev_ : nullptr; }
  // Why automatic has no device (device::open()'s error); empty otherwise.
  std::error_code module_error() const noexcept { return module_error_; }

 private:
  remapper(backend b, std::optional<device> dev, std::error_code module_error) noexcept
      : requested_(b), dev_(std::move(dev)), module_error_(module_error) {}
  backend requested_;
  std::optional<device> dev_;
  std::error_code module_error_;
};

}  // namespace dontunmap
