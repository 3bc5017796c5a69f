// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The native backend: mremap(2) of the running kernel, and the once-per-
// process probe of what its MREMAP_DONTUNMAP supports.
#include <dontunmap/dontunmap.hpp>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "internal.hpp"

namespace dontunmap {
namespace {

long sys_mremap(void *old_addr, std::size_t old_len, std::size_t new_len,
                unsigned long flags, void *new_addr) noexcept {
  // The raw system call, not libc's variadic mremap(): some wrappers (glibc
  // on arm64) pass new_addr only with MREMAP_FIXED, which would turn a hint
  // into NULL behind the caller's back.
  return ::syscall(SYS_mremap, old_addr, old_len, new_len, flags, new_addr);
}

// Tries mremap(MAYMOVE | DONTUNMAP) of a fresh one-page anonymous mapping
// (MAP_PRIVATE or MAP_SHARED) to new_len bytes, then unmaps whatever it made.
bool kernel_accepts(int share, std::size_t new_len) noexcept {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void *src = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, share | MAP_ANONYMOUS, -1, 0);
  if (src == MAP_FAILED) return false;
  const long dst = sys_mremap(src, page, new_len, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, nullptr);
  if (dst != -1) ::munmap(reinterpret_cast<void *>(dst), page);
  ::munmap(src, page);
  return dst != -1;
}

// Tries a MREMAP_FIXED DONTUNMAP move of two one-page VMAs (a private
// mapping whose halves differ in protection, so they cannot merge) onto a
// reserved two-page hole, then unmaps everything. Only 6.17+ moves a range
// spanning several VMAs; older kernels refuse it with EFAULT.
bool kernel_moves_several_vmas() noexcept {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void *src = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (src == MAP_FAILED) return false;
  void *hole = ::mmap(nullptr, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
  bool moved = false;
  if (hole != MAP_FAILED &&
      ::mprotect(static_cast<char *>(src) + page, page, PROT_READ) == 0) {
    moved = sys_mremap(src, 2 * page, 2 * page,
                       MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, hole) != -1;
  }
  if (hole != MAP_FAILED) ::munmap(hole, 2 * page);
  ::munmap(src, 2 * page);
  return moved;
}

}  // namespace

std::expected<void *, std::error_code> remap_native(const remap_request &req) noexcept {
  const long r = sys_mremap(req.old_addr, req.old_len, req.new_len, req.flags, req.new_addr);
  if (r == -1) return std::unexpected(detail::last_error());
  return reinterpret_cast<void *>(r);
}

const native_support &probe_native() noexcept {
  static const native_support support = [] {
    const int saved_errno = errno;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    native_support s;
    s.private_anon = kernel_accepts(MAP_PRIVATE, page);
    s.shared = kernel_accepts(MAP_SHARED, page);
    // 4096 vs 4000 on 4 KiB pages: only 6.17+ page-aligns before comparing.
    s.aligned_lengths = kernel_accepts(MAP_PRIVATE, page - 96);
    s.multi_vma = s.private_anon && kernel_moves_several_vmas();
    errno = saved_errno;
    return s;
  }();
  return support;
}

}  // namespace dontunmap
