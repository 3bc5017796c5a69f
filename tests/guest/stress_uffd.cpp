// SPDX-License-Identifier: GPL-2.0
//
// The threads besides the workers: the userfaultfd handler, which fills the
// spare pages the workers touch as the model says (and fails the run on a
// fault nobody should have caused), and the compactor; the workers' start
// gate; and the final check after the run.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "stress_ops.hpp"

namespace dontunmap::stress {

void start_gate::arrive_and_wait() {
  std::unique_lock lock(mu_);
  ++arrived_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return open_; });
}

void start_gate::wait_arrived() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return arrived_ == workers_; });
}

void start_gate::open() {
  std::lock_guard lock(mu_);
  open_ = true;
  cv_.notify_all();
}

void start_gate::finished() {
  std::lock_guard lock(mu_);
  ++finished_;
  cv_.notify_all();
}

bool start_gate::wait_finished(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return finished_ == workers_; });
}

bool final_check(world &w) {
  ctx c{w, 0, rng(w.opt.seed, 0), scratch(w)};
  for (std::size_t k = 0; k < w.nslots; ++k) {
    slot &s = w.slots[k];
    std::lock_guard lock(s.mu);
    if (!check_slot(w, s, c.sc, false, "final check")) return false;
    // Every spare page is touched once: each absent one must reach the
    // handler (its registration survived every move) and come back as the
    // model says.
    s.touching.store(true);
    for (std::uint8_t h = 0; h < 2; ++h) {
      if (!s.mapped[h]) continue;
      for (std::size_t i = 0; i < s.pages; ++i)
        if (loc_of(s, i) != h && !touch_spare(w, s, h, i, false, "final check")) return false;
    }
    s.touching.store(false);
  }
  return true;
}

// ---------------------------------------------------------------------------
// The userfaultfd handler

namespace {

struct located {
  slot *s = nullptr;
  std::uint8_t h = 0;
  std::size_t i = 0;
};

std::optional<located> locate(world &w, std::uintptr_t addr) {
  if (!w.in_window(reinterpret_cast<void *>(addr))) return std::nullopt;
  const std::size_t area = (addr - reinterpret_cast<std::uintptr_t>(w.window)) / w.stride;
  if (area / 2 >= w.nslots) return std::nullopt;
  slot &s = w.slots[area / 2];
  const auto h = static_cast<std::uint8_t>(area % 2);
  const auto home = reinterpret_cast<std::uintptr_t>(s.home[h]);
  if (addr < home || (addr - home) / w.page >= s.pages) return std::nullopt;
  return located{&s, h, (addr - home) / w.page};
}

// Fills one faulting page: the zero page or a copy, as the model says.
void serve(world &w, const uffd_msg &msg, unsigned char *buf) {
  if (msg.event != UFFD_EVENT_PAGEFAULT) {
    fail(w, "unexpected userfaultfd event %u", msg.event);
    return;
  }
  const std::uintptr_t addr = msg.arg.pagefault.address & ~std::uintptr_t(w.page - 1);
  expect e;  // zeros unless the model says otherwise
  const auto at = locate(w, addr);
  if (!at) {
    fail(w, "userfaultfd fault at %p, in no slot's home", reinterpret_cast<void *>(addr));
  } else if (loc_of(*at->s, at->i) == at->h) {
    fail(w,
         "userfaultfd fault on slot %u page %zu in home %u, where its data is: a move's "
         "destination kept the source's registration?",
         at->s->id, at->i, at->h);
  } else if (!at->s->touching.load()) {
    fail(w, "userfaultfd fault on slot %u page %zu of home %u (spare) while no worker reads it",
         at->s->id, at->i, at->h);
  } else {
    e = expected_spare(w, *at->s, at->h, at->i, at->s->tag.load(std::memory_order_relaxed));
  }
  w.c.uffd_faults.fetch_add(1, std::memory_order_relaxed);
  trace(w, "uffd fault %p %s", reinterpret_cast<void *>(addr), describe(e).c_str());
  for (;;) {
    int rc;
    if (e.k == expect::kind::zero) {
      uffdio_zeropage z{};
      z.range.start = addr;
      z.range.len = w.page;
      rc = ::ioctl(w.uffd, UFFDIO_ZEROPAGE, &z);
    } else {
      fill_page(w, e, buf);
      uffdio_copy cp{};
      cp.dst = addr;
      cp.src = reinterpret_cast<std::uintptr_t>(buf);
      cp.len = w.page;
      rc = ::ioctl(w.uffd, UFFDIO_COPY, &cp);
    }
    if (rc == 0) return;
    if (errno == EAGAIN) {
      w.c.uffd_retries.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    // Already filled, or no longer there: wake the faulting thread to retry.
    if (errno == EEXIST || errno == ENOENT) {
      uffdio_range range{addr, w.page};
      (void)::ioctl(w.uffd, UFFDIO_WAKE, &range);
      return;
    }
    fail(w, "%s at %p: %s", e.k == expect::kind::zero ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
         reinterpret_cast<void *>(addr), std::strerror(errno));
    return;
  }
}

}  // namespace

void uffd_handler(world &w) {
  uffd_msg msgs[16];
  pollfd fds[2] = {{w.uffd, POLLIN, 0}, {w.uffd_stop, POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fail(w, "poll on the userfaultfd: %s", std::strerror(errno));
      return;
    }
    if (!(fds[0].revents & POLLIN)) {
      if (fds[1].revents & POLLIN) return;
      continue;
    }
    const ssize_t got = ::read(w.uffd, msgs, sizeof(msgs));
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      fail(w, "read from the userfaultfd: %s", std::strerror(errno));
      return;
    }
    for (std::size_t k = 0; k < static_cast<std::size_t>(got) / sizeof(uffd_msg); ++k)
      serve(w, msgs[k], w.uffd_page.data());
  }
}

// Writes with no allocation: the thread must not grow the heap the gauges
// measure.
void compactor(world &w) {
  while (!w.stop.load()) {
    const int fd = ::open("/proc/sys/vm/compact_memory", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::write(fd, "1", 1) == 1) w.c.compactions.fetch_add(1, std::memory_order_relaxed);
      ::close(fd);
    }
    for (int k = 0; k < 20 && !w.stop.load(); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace dontunmap::stress
