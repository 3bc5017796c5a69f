// SPDX-License-Identifier: LGPL-2.1-or-later
//
// swap_region: the swap-out pattern (dontunmap/swap.hpp).
//
// Every page of the range is in one of three places, kept in page_:
//   resident  in the range (or dropped by the process: then it reads zeros)
//   moved     in the moved copy at moved_, between the move and the write
//   out       in the file at its offset
// mu_ guards page_, moved_ and the counters. The handler takes it for each
// fault; swap_out() takes it for the move and for the release, not while it
// writes the file, so that faults are served during the write (from the
// moved copy). The lock order is mu_, then the mmap lock (taken inside the
// move and inside UFFDIO_COPY): neither is ever held while waiting for the
// other. The context asks for no events, so the move never waits for the
// handler (an EVENT_REMAP would have it wait for a read while mu_ is held).
#include <dontunmap/swap.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "internal.hpp"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

namespace dontunmap {

using detail::errc;
using detail::last_error;

namespace {

enum class where : std::uint8_t { resident, moved, out };

std::size_t page_size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// userfaultfd(2), a full context where the caller may have one (root, or
// vm.unprivileged_userfaultfd=1), so that the kernel's own accesses to the
// range (a read() into it, a futex in it) wait for the handler too; else
// one for user-mode faults only (5.11+), under which such an access fails
// with EFAULT. UFFDIO_API done, no features asked.
std::expected<unique_fd, std::error_code> open_userfaultfd() noexcept {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0 && errno == EPERM)
    fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0) return std::unexpected(last_error());
  unique_fd uffd(fd);
  uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) return std::unexpected(last_error());
  return uffd;
}

// pwrite()/pread() of all of [buf, buf + len) at off: 0 or an errno (EIO for
// a file that ended early).
int write_all(int fd, const char *buf, std::size_t len, off_t off) noexcept {
  while (len) {
    const ssize_t n = ::pwrite(fd, buf, len, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    buf += n, len -= static_cast<std::size_t>(n), off += n;
  }
  return 0;
}

int read_all(int fd, char *buf, std::size_t len, off_t off) noexcept {
  while (len) {
    const ssize_t n = ::pread(fd, buf, len, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    buf += n, len -= static_cast<std::size_t>(n), off += n;
  }
  return 0;
}

}  // namespace

struct swap_region::state {
  const remapper *r = nullptr;
  char *addr = nullptr;
  std::size_t len = 0;
  std::size_t page = 0;
  unique_fd file, uffd, stop;  // stop: an eventfd, readable once the handler must end
  std::thread handler;
  bool closed = false;

  mutable std::mutex op_mu;  // one swap_out() or close() at a time
  mutable std::mutex mu;
  std::vector<where> page_;
  char *moved_ = nullptr;  // the moved copy, while any page is `moved`
  std::vector<char> buf_;  // one page, for reads of the file (handler, close())
  swap_stats stats_;
  std::error_code handler_error_;
  bool handler_ended_ = false;  // run() returned on an error: nothing serves faults

  off_t offset(std::size_t i) const noexcept { return static_cast<off_t>(i * page); }

  // UFFDIO_COPY of one page from src to page i: 0, kPresent, or an errno.
  // EEXIST (a second message for a page served already) is no error: the
  // page is there, and waking its waiters is all that is left (a failed
  // copy wakes nobody). EAGAIN (the layout was changing) is retried; the
  // kernel writes it, or the bytes done, into copy.copy.
  static constexpr int kPresent = -1;

  int copy_in(std::size_t i, const char *src) noexcept {
    uffdio_copy copy{.dst = reinterpret_cast<std::uintptr_t>(addr + i * page),
                     .src = reinterpret_cast<std::uintptr_t>(src),
                     .len = page,
                     .mode = 0,
                     .copy = 0};
    while (::ioctl(uffd.get(), UFFDIO_COPY, &copy) != 0) {
      if (errno == EEXIST) return woken(i);
      if (errno != EAGAIN) return errno;
      if (copy.copy > 0) {
        copy.dst += static_cast<std::uint64_t>(copy.copy);
        copy.src += static_cast<std::uint64_t>(copy.copy);
        copy.len -= static_cast<std::uint64_t>(copy.copy);
      }
      copy.copy = 0;
    }
    return 0;
  }

  int zero_in(std::size_t i) noexcept {
    uffdio_zeropage zero{.range = {.start = reinterpret_cast<std::uintptr_t>(addr + i * page),
                                   .len = page},
                         .mode = 0,
                         .zeropage = 0};
    while (::ioctl(uffd.get(), UFFDIO_ZEROPAGE, &zero) != 0) {
      if (errno == EEXIST) return woken(i);
      if (errno != EAGAIN) return errno;
      zero.zeropage = 0;  // a single page: nothing was done
    }
    return 0;
  }

  int woken(std::size_t i) noexcept {
    const int err = wake(i);
    return err ? err : kPresent;
  }

  int wake(std::size_t i) noexcept {
    uffdio_range range{.start = reinterpret_cast<std::uintptr_t>(addr + i * page), .len = page};
    return ::ioctl(uffd.get(), UFFDIO_WAKE, &range) == 0 ? 0 : errno;
  }

  // Serves a fault on page i, mu held: 0 or an errno. A second message for
  // a page served already only wakes, and is not counted.
  int serve(std::size_t i) noexcept {
    int err = 0;
    std::uint64_t *filled = nullptr;
    switch (page_[i]) {
      case where::moved:
        err = copy_in(i, moved_ + i * page);
        filled = &stats_.pages_from_moved;
        break;
      case where::out:
        err = read_all(file.get(), buf_.data(), page, offset(i));
        if (!err) err = copy_in(i, buf_.data());
        filled = &stats_.pages_from_file;
        break;
      case where::resident:
        // Missing although in the range: never touched, or dropped by the
        // process (MADV_DONTNEED) after it came back. Either reads zeros,
        // as it would unregistered.
        err = zero_in(i);
        filled = &stats_.zero_pages;
        break;
    }
    if (err == kPresent) {
      page_[i] = where::resident;
      return 0;
    }
    if (!err) {
      page_[i] = where::resident;
      ++*filled;
      ++stats_.faults_served;
    }
    return err;
  }

  void run() noexcept {
    pollfd fds[2] = {{.fd = uffd.get(), .events = POLLIN, .revents = 0},
                     {.fd = stop.get(), .events = POLLIN, .revents = 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return fail(errno);
      }
      if (fds[1].revents) return;
      uffd_msg msg;
      const ssize_t n = ::read(uffd.get(), &msg, sizeof msg);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n != sizeof msg) return fail(n < 0 ? errno : EIO);
      if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
      const auto at = static_cast<std::uintptr_t>(msg.arg.pagefault.address);
      const auto start = reinterpret_cast<std::uintptr_t>(addr);
      if (at < start || at - start >= len) continue;  // cannot be: only the range is registered
      std::lock_guard lock(mu);
      if (const int err = serve((at - start) / page); err && !handler_error_)
        handler_error_ = errc(err);
    }
  }

  void fail(int err) noexcept {
    std::lock_guard lock(mu);
    if (!handler_error_) handler_error_ = errc(err);
    handler_ended_ = true;
  }

  // Puts the pages `moved` back into the range from the moved copy and
  // releases the copy, mu held: 0, or the first errno, with the pages that
  // could not go back still `moved` and the copy kept for them.
  int put_back_moved() noexcept {
    int first = 0;
    for (std::size_t i = 0; i < page_.size(); ++i) {
      if (page_[i] != where::moved) continue;
      const int err = copy_in(i, moved_ + i * page);
      if (err > 0) {
        first = first ? first : err;
        continue;
      }
      page_[i] = where::resident;
    }
    if (first) return first;
    ::munmap(moved_, len);
    moved_ = nullptr;
    return 0;
  }
};

swap_region::swap_region(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
swap_region::swap_region(swap_region &&) noexcept = default;

swap_region &swap_region::operator=(swap_region &&o) noexcept {
  if (this != &o) {
    close();
    s_ = std::move(o.s_);
  }
  return *this;
}

swap_region::~swap_region() { close(); }

std::expected<swap_region, std::error_code>
swap_region::create(const remapper &r, void *addr, std::size_t len, unique_fd file) noexcept {
  const std::size_t page = page_size();
  const auto start = reinterpret_cast<std::uintptr_t>(addr);
  if (!len || start % page || len % page) return std::unexpected(errc(EINVAL));
  // One mapping of private anonymous memory: the move takes one VMA, and
  // only private anonymous pages leave with it (shared ones stay in their
  // page cache).
  const auto vma = detail::find_vma(addr);
  if (!vma || !vma->private_anon || vma->start > start || vma->end - start < len)
    return std::unexpected(errc(EINVAL));
  std::unique_ptr<state> s(new (std::nothrow) state);
  if (!s) return std::unexpected(errc(ENOMEM));
  s->r = &r;
  s->addr = static_cast<char *>(addr);
  s->len = len;
  s->page = page;
  s->file = std::move(file);
  try {
    s->page_.assign(len / page, where::resident);
    s->buf_.resize(page);
  } catch (const std::bad_alloc &) {
    return std::unexpected(errc(ENOMEM));
  }
  auto uffd = open_userfaultfd();
  if (!uffd) return std::unexpected(uffd.error());
  s->uffd = std::move(*uffd);
  s->stop = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop) return std::unexpected(last_error());
  uffdio_register reg{.range = {.start = start, .len = len},
                      .mode = UFFDIO_REGISTER_MODE_MISSING,
                      .ioctls = 0};
  if (::ioctl(s->uffd.get(), UFFDIO_REGISTER, &reg) != 0) return std::unexpected(last_error());
  uffdio_range range{.start = start, .len = len};
  constexpr std::uint64_t needed = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);
  if ((reg.ioctls & needed) != needed) {
    ::ioctl(s->uffd.get(), UFFDIO_UNREGISTER, &range);
    return std::unexpected(errc(EINVAL));
  }
  // The handler takes no signals: a handler of the process's that touched
  // the range on the handler thread would wait for itself.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  std::error_code err;
  try {
    s->handler = std::thread([p = s.get()] { p->run(); });
  } catch (const std::system_error &e) {
    err = e.code();
  } catch (...) {
    err = errc(ENOMEM);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err) {
    ::ioctl(s->uffd.get(), UFFDIO_UNREGISTER, &range);
    return std::unexpected(err);
  }
  return swap_region(std::move(s));
}

std::expected<std::size_t, std::error_code> swap_region::swap_out() noexcept {
  if (!s_) return std::unexpected(errc(EBADF));
  state &s = *s_;
  std::lock_guard op(s.op_mu);
  if (s.closed) return std::unexpected(errc(EBADF));

  std::vector<std::size_t> staged;
  try {
    staged.reserve(s.page_.size());
  } catch (const std::bad_alloc &) {
    return std::unexpected(errc(ENOMEM));
  }
  {
    std::lock_guard lock(s.mu);
    // Nothing serves faults any more, or pages of a failed call could not
    // all go back: no more moves until close().
    if (s.handler_ended_) return std::unexpected(errc(EIO));
    if (s.moved_ && s.put_back_moved() != 0) return std::unexpected(errc(EBUSY));
    auto to = s.r->remap({.old_addr = s.addr, .old_len = s.len, .new_len = s.len});
    if (!to) return std::unexpected(to.error());
    s.moved_ = static_cast<char *>(*to);
    for (std::size_t i = 0; i < s.page_.size(); ++i) {
      if (s.page_[i] != where::resident) continue;  // out: the file has it already
      s.page_[i] = where::moved;
      staged.push_back(i);
    }
  }

  // The moved copy is read here and by the handler, and written by nobody:
  // no lock while the file is written, so faults are served meanwhile.
  int err = 0;
  std::size_t written = 0;
  for (std::size_t k = 0; k < staged.size() && !err;) {
    std::size_t run = 1;  // consecutive pages, one write
    while (k + run < staged.size() && staged[k + run] == staged[k] + run) ++run;
    err = write_all(s.file.get(), s.moved_ + staged[k] * s.page, run * s.page,
                    s.offset(staged[k]));
    if (!err) written += run;
    k += run;
  }
  if (!err && ::fdatasync(s.file.get()) != 0 && errno != EINVAL && errno != EROFS)
    err = errno;

  std::lock_guard lock(s.mu);
  if (err) {
    s.put_back_moved();  // what cannot go back now goes at the next call or close()
    return std::unexpected(errc(err));
  }
  for (std::size_t i : staged)
    if (s.page_[i] == where::moved) s.page_[i] = where::out;
  ::munmap(s.moved_, s.len);
  s.moved_ = nullptr;
  ++s.stats_.swap_outs;
  s.stats_.pages_out += written;
  s.stats_.bytes_written += written * s.page;
  return written;
}

std::error_code swap_region::close() noexcept {
  if (!s_) return {};
  state &s = *s_;
  std::lock_guard op(s.op_mu);
  if (s.closed) return {};
  s.closed = true;
  std::error_code first;
  const auto note = [&first](int err) {
    if (err && !first) first = errc(err);
  };
  {
    std::lock_guard lock(s.mu);
    if (s.moved_) note(s.put_back_moved());
    for (std::size_t i = 0; i < s.page_.size(); ++i) {
      if (s.page_[i] != where::out) continue;
      int err = read_all(s.file.get(), s.buf_.data(), s.page, s.offset(i));
      if (!err) err = s.copy_in(i, s.buf_.data());
      if (err > 0) {
        note(err);
        continue;
      }
      s.page_[i] = where::resident;
      ++s.stats_.pages_in_at_close;
    }
  }
  // The handler first, so that it meets no message about a range no longer
  // registered; the unregistration then wakes any fault still waiting,
  // which retries on ordinary memory: every page is back.
  const std::uint64_t one = 1;
  if (::write(s.stop.get(), &one, sizeof one) != sizeof one) note(errno);
  if (s.handler.joinable()) s.handler.join();
  uffdio_range range{.start = reinterpret_cast<std::uintptr_t>(s.addr), .len = s.len};
  if (::ioctl(s.uffd.get(), UFFDIO_UNREGISTER, &range) != 0) note(errno);
  s.uffd.reset();
  s.stop.reset();
  s.file.reset();
  return first;
}

swap_stats swap_region::stats() const noexcept {
  if (!s_) return {};
  std::lock_guard lock(s_->mu);
  return s_->stats_;
}

std::error_code swap_region::handler_error() const noexcept {
  if (!s_) return {};
  std::lock_guard lock(s_->mu);
  return s_->handler_error_;
}

void *swap_region::address() const noexcept { return s_ ? s_->addr : nullptr; }
std::size_t swap_region::length() const noexcept { return s_ ? s_->len : 0; }

}  // namespace dontunmap
