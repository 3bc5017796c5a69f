// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The swap-out pattern of ChromeOS's userspace swap, as a component: a live
// range of the calling process is moved aside with MREMAP_DONTUNMAP (so it
// stays reserved, and its userfaultfd registration stays on it), the moved
// pages are written to a file and released, and every later touch of the
// range is served from that file by a handler thread the component owns
// (UFFDIO_COPY). The process keeps running throughout: a thread touching a
// page while it is out just waits for the handler.
//
// A page's content goes where the range's pages go, and comes back only
// through the handler or close(): nothing is lost, duplicated or stale as
// long as the rules below hold. userlib/README.md, "Swapping a range out".
#pragma once

#include <dontunmap/dontunmap.hpp>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <system_error>

namespace dontunmap {

// What a swap_region has done since it was created.
struct swap_stats {
  std::uint64_t swap_outs = 0;         // swap_out() calls that moved the range
  std::uint64_t pages_out = 0;         // pages written to the file, every call
  std::uint64_t bytes_written = 0;     // bytes written to the file, every call
  std::uint64_t faults_served = 0;     // faults the handler resolved
  std::uint64_t pages_from_file = 0;   // of those, pages read back from the file
  std::uint64_t pages_from_moved = 0;  // ... copied from the moved pages before release
  std::uint64_t zero_pages = 0;        // ... filled with zeros (never written, or dropped)
  std::uint64_t pages_in_at_close = 0; // pages close() read back from the file
};

// One range [addr, addr + len) of private anonymous memory, swapped out to
// `file` (offset i * page size holds page i) on request.
//
// Rules for the caller, each the same as for any userfaultfd MISSING
// registration: the range is not unmapped, remapped or mprotect()ed away
// while the region lives; the process does not fork() while pages are out
// (a child does not inherit the registration and would read zeros there);
// the file is not written by anyone else. A page the process drops itself
// (MADV_DONTNEED) after it came back reads zeros, as without the component;
// dropping a page that is out does nothing (it holds no memory to drop), and
// it comes back with its content. Every page that was in the range is
// written, so a sparse range comes back whole (zero pages included).
//
// The context is a full one where the process may have it (root, or
// vm.unprivileged_userfaultfd=1): then the kernel's own accesses to a page
// that is out (a read() into the range, a futex in it) wait for the handler
// like the process's. Otherwise it handles user-mode faults only (5.11+),
// and such an access fails with EFAULT.
class DONTUNMAP_API swap_region {
 public:
  // Registers the range with a new userfaultfd context (MISSING faults,
  // user-mode faults only where the kernel allows it) and starts the
  // handler thread. `r` makes the moves and must outlive the region; `file`
  // must be open for reading and writing. EINVAL for an address or length
  // not page-aligned, a length of 0, or a range that is not inside one
  // mapping of private anonymous memory (/proc/self/maps); userfaultfd()'s
  // and UFFDIO_API's errno (EPERM without the right to use it);
  // UFFDIO_REGISTER's (EBUSY: the range is registered with another
  // context).
  [[nodiscard]] static std::expected<swap_region, std::error_code>
  create(const remapper &r, void *addr, std::size_t len, unique_fd file) noexcept;

  swap_region(swap_region &&) noexcept;
  swap_region &operator=(swap_region &&) noexcept;
  swap_region(const swap_region &) = delete;
  swap_region &operator=(const swap_region &) = delete;
  // close(), its error ignored: call close() to see it.
  ~swap_region();

  // Moves the range's pages aside with one DONTUNMAP move (the range stays
  // mapped and registered, and now empty), writes every page that was in
  // the range to the file, and releases the moved pages. Pages still out
  // from an earlier call stay in the file as they are. Threads may touch
  // the range meanwhile: the handler serves them from the moved pages until
  // they are written, then from the file. Returns the pages written. On an
  // error of the move (the remapper's errno) nothing changed; on an error
  // writing the file, every page of this call is put back into the range
  // before the errno is returned (a page that could not go back stays
  // served from the moved copy, and the next call or close() retries; until
  // then swap_out() fails with EBUSY). EIO once the handler has stopped on
  // an error (handler_error()); EBADF after close().
  [[nodiscard]] std::expected<std::size_t, std::error_code> swap_out() noexcept;

  // Puts every page still out back into the range from the file, stops the
  // handler, removes the registration and closes the context and the file.
  // The first error met is returned; the rest of the work is done anyway (a
  // page that could not be read back then reads zeros). Afterwards the
  // range is ordinary memory again. Idempotent.
  std::error_code close() noexcept;

  swap_stats stats() const noexcept;
  // The first error the handler met serving a fault (a read of the file,
  // UFFDIO_COPY); empty if none. The thread whose fault it could not serve
  // stays blocked until close() puts the page back or the process ends.
  std::error_code handler_error() const noexcept;

  void *address() const noexcept;
  std::size_t length() const noexcept;

 private:
  struct state;
  explicit swap_region(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

}  // namespace dontunmap
