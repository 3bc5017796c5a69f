// SPDX-License-Identifier: GPL-2.0
//
// fork() during the run: the forking worker holds the locks of a few slots
// (so the model of those is the snapshot the child gets) and lets them go
// as soon as fork() returns, so that the parent moves, writes and drops the
// very pages the child is reading. The child checks its copy against the
// model, works on one slot of its own (a write, MADV_DONTNEED, a move
// through the same backend), checks again and reports on a pipe.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "stress_ops.hpp"

namespace dontunmap::stress {
namespace {

// A fork child that has not reported by then is stuck: SIGALRM ends it and
// the parent reports the death.
constexpr unsigned kChildTimeoutSeconds = 120;
constexpr std::size_t kMaxForkSlots = 3;

// The child: its copy of the locked slots must be the snapshot the model
// had at fork(), however the parent carries on meanwhile; then it moves,
// writes and drops pages of its own copy and checks again.
[[noreturn]] void child_main(ctx &c, const std::size_t *ids, std::size_t n, int out) {
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGINT, SIGTERM, SIGALRM}) ::signal(sig, SIG_DFL);
  ::alarm(kChildTimeoutSeconds);
  world &w = c.w;
  // The inherited /proc/self files are the parent's: they name the mm of
  // whoever opened them.
  ::close(w.mem_fd);
  ::close(w.pagemap_fd);
  w.mem_fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  w.pagemap_fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (w.mem_fd < 0 || w.pagemap_fd < 0) {
    const char msg[] = "fork child: cannot open /proc/self/mem or pagemap\n";
    (void)!::write(out, msg, sizeof(msg) - 1);
    ::_exit(1);
  }
  std::uint64_t moves = 0;
  bool ok = true;
  for (std::size_t k = 0; ok && k < n; ++k)
    ok = check_slot(w, w.slots[ids[k]], c.sc, true, "fork child, at fork");
  if (ok) {
    slot &s = w.slots[ids[0]];
    const std::uint8_t loc = single_loc(s);
    for (int k = 0; ok && k < 2; ++k) {
      const std::size_t i = c.r.below(s.pages);
      ok = write_page(c, s, i, next_gen(s.pg[i].gen), false) &&
           check_data_page(w, s, i, c.sc, true, "fork child, after a write");
    }
    if (ok && c.r.one_in(2)) {
      const run r = pick_data_run(w, s, c.r);
      ok = ::madvise(s.where(r.loc, r.a, w.page), (r.b - r.a) * w.page, MADV_DONTNEED) == 0;
      if (!ok) fail(w, "fork child: MADV_DONTNEED: %s", std::strerror(errno));
      for (std::size_t i = r.a; ok && i < r.b; ++i) s.pg[i].gen = 0, s.pg[i].maybe_zero = false;
    }
    // The child's copies are not registered: its moves may span VMAs.
    if (ok && loc < 2) {
      const auto to = static_cast<std::uint8_t>(1 - loc);
      char *const from = s.home[loc];
      const std::size_t len = s.len(w.page);
      remap_request req{.old_addr = from,
                        .old_len = len,
                        .new_len = len,
                        .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED,
                        .new_addr = s.home[to]};
      const auto moved = w.remapper->remap(req);
      if (!moved || *moved != s.home[to]) {
        fail(w, "fork child: move of slot %u from home %u to %u: %s%s", s.id, loc, to,
             moved ? "landed elsewhere" : moved.error().message().c_str(),
             excerpt(from, len, s.home[to], len).c_str());
        ok = false;
      } else {
        ++moves;
        for (std::size_t i = 0; i < s.pages; ++i) {
          s.pg[i].loc.store(to, std::memory_order_relaxed);
          s.pg[i].shadow[0] = s.pg[i].shadow[1] = 0;
        }
        s.mapped[to] = true;
        ok = check_source_empty(w, s, from, s.pages, c.sc, "fork child, after a move");
      }
    }
  }
  // Again, now that the parent has had time to move, write and drop.
  for (std::size_t k = 0; ok && k < n; ++k)
    ok = check_slot(w, w.slots[ids[k]], c.sc, true, "fork child, at the end");
  char msg[4200];
  const int len = ok ? std::snprintf(msg, sizeof(msg), "ok %" PRIu64 "\n", moves)
                     : std::snprintf(msg, sizeof(msg), "%s\n", first_failure().c_str());
  if (len > 0) (void)!::write(out, msg, std::min<std::size_t>(len, sizeof(msg) - 1));
  ::_exit(ok ? 0 : 1);
}

std::atomic<bool> g_forking{false};

}  // namespace

void op_fork(ctx &c) {
  world &w = c.w;
  if (g_forking.exchange(true)) return;  // one child at a time
  std::size_t ids[kMaxForkSlots];
  const std::size_t want = 1 + c.r.below(std::min<std::size_t>(kMaxForkSlots, w.nslots));
  std::size_t n = 0;
  while (n < want) {
    const std::size_t id = c.r.below(w.nslots);
    if (std::find(ids, ids + n, id) == ids + n) ids[n++] = id;
  }
  // In order, as every lock order must be (by hand: GCC 12 warns about
  // std::sort on so small an array).
  for (std::size_t k = 1; k < n; ++k)
    for (std::size_t j = k; j > 0 && ids[j - 1] > ids[j]; --j) std::swap(ids[j - 1], ids[j]);
  std::unique_lock<std::mutex> locks[kMaxForkSlots];
  for (std::size_t k = 0; k < n; ++k) locks[k] = std::unique_lock(w.slots[ids[k]].mu);

  // What the child will check for absence must be absent here too: else
  // the parent's state, not fork(), is at fault.
  for (std::size_t k = 0; k < n; ++k)
    for (std::uint8_t h = 0; h < 2; ++h)
      if (!check_spare_absent(w, w.slots[ids[k]], h, c.sc, "before fork")) {
        g_forking = false;
        return;
      }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    g_forking = false;
    return;
  }
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    child_main(c, ids, n, pipe_fds[1]);
  }
  for (std::size_t k = 0; k < n; ++k) locks[k].unlock();
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    g_forking = false;
    return;  // EAGAIN: no fork this time
  }
  char msg[4200];
  std::size_t got = 0;
  for (;;) {
    const ssize_t r = ::read(pipe_fds[0], msg + got, sizeof(msg) - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  msg[got] = '\0';
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  char slots_text[64];
  int used = 0;
  for (std::size_t k = 0; k < n; ++k)
    used +=
        std::snprintf(slots_text + used, sizeof(slots_text) - used, "%s%zu", k ? "," : "", ids[k]);
  unsigned long long moves = 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && std::sscanf(msg, "ok %llu", &moves) == 1) {
    w.c.child_moves.fetch_add(moves, std::memory_order_relaxed);
  } else if (WIFSIGNALED(status)) {
    fail(w, "fork child (slots %s) killed by signal %s%s", slots_text,
         ::strsignal(WTERMSIG(status)), WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
  } else {
    if (got && msg[got - 1] == '\n') msg[got - 1] = '\0';
    fail(w, "fork child (slots %s): %s", slots_text, got ? msg : "exited without a report");
  }
  w.c.forks.fetch_add(1, std::memory_order_relaxed);
  g_forking = false;
}

}  // namespace dontunmap::stress
