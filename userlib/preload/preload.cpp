// SPDX-License-Identifier: LGPL-2.1-or-later
//
// libdontunmap-preload.so: an LD_PRELOAD interposer for mremap(). A call
// carrying MREMAP_DONTUNMAP goes through libdontunmap's automatic rule (the
// kernel's own mremap() where it does what the call needs, else
// /dev/dontunmap), so that a program written for the newest kernel runs
// unchanged on an older one; every other call, and a DONTUNMAP call neither
// backend does, goes to the kernel's mremap() as it came. Results and errno
// as mremap() gives them. dontunmap-run(1) sets LD_PRELOAD for a command.
//
// What it cannot reach: calls that do not go through the dynamic symbol
// mremap (syscall(SYS_mremap, ...), inline system calls, glibc's own
// internal calls), and statically linked programs, which ignore LD_PRELOAD.
#include <dontunmap/dontunmap.hpp>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <optional>

namespace {

// The kernel's mremap(), new_addr passed whatever the flags (as the system
// call takes it).
void *kernel_mremap(void *old_addr, std::size_t old_len, std::size_t new_len, int flags,
                    void *new_addr) noexcept {
  return reinterpret_cast<void *>(::syscall(SYS_mremap, old_addr, old_len, new_len,
                                            static_cast<unsigned long>(static_cast<unsigned int>(flags)),
                                            new_addr));
}

// The process's automatic remapper, made at the first DONTUNMAP call: it
// opens /dev/dontunmap if it can (automatic falls back to native alone when
// it cannot) and probes the kernel once. Never destroyed, so that a call
// from a destructor at exit still finds it.
const dontunmap::remapper *the_remapper() noexcept {
  static const dontunmap::remapper *const r = [] () noexcept -> const dontunmap::remapper * {
    auto made = dontunmap::remapper::create(dontunmap::backend::automatic);
    if (!made) return nullptr;
    return new (std::nothrow) dontunmap::remapper(std::move(*made));
  }();
  return r;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void *
mremap(void *old_addr, std::size_t old_len, std::size_t new_len, int flags, ...) {
  void *new_addr = nullptr;
  // The kernel reads new_addr for MREMAP_FIXED (the target) and for
  // MREMAP_DONTUNMAP (a hint, which must be page-aligned): a caller making
  // either passes it, as the upstream selftests do.
  if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
    va_list ap;
    va_start(ap, flags);
    new_addr = va_arg(ap, void *);
    va_end(ap);
  }
  if (!(flags & MREMAP_DONTUNMAP)) return kernel_mremap(old_addr, old_len, new_len, flags, new_addr);

  const int saved = errno;
  const dontunmap::remapper *r = the_remapper();
  errno = saved;
  const dontunmap::remap_request req{.old_addr = old_addr,
                                     .old_len = old_len,
                                     .new_len = new_len,
                                     .flags = static_cast<unsigned int>(flags),
                                     .new_addr = new_addr};
  if (!r) return kernel_mremap(old_addr, old_len, new_len, flags, new_addr);
  auto moved = r->remap(req);
  // EOPNOTSUPP: neither backend does it, and remap() made no system call
  // that could change memory; the kernel's own answer, as without us.
  if (!moved && moved.error() == std::errc::operation_not_supported)
    return kernel_mremap(old_addr, old_len, new_len, flags, new_addr);
  if (!moved) {
    errno = moved.error().value();
    return MAP_FAILED;
  }
  errno = saved;  // as the system call leaves it on success
  return *moved;
}
