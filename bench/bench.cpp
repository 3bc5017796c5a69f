// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-bench: what a DONTUNMAP move costs through each method, in one
// run on one machine (make bench runs it in guests, docs/benchmarks.md).
//
// Emulated guests make absolute times meaningless, so every cell measures
// its methods side by side on the same pages: each iteration moves a
// populated range once per method (native mremap(), the module's ioctl,
// and where the cell has them the copying fallback, UFFDIO_MOVE, the batch
// ioctl or a native multi-VMA move), in an order that rotates from one
// iteration to the next. Each repetition reports every method's time per
// move as a counter (us), so the report takes ratios pair by pair from the
// same repetition. Only the moves are timed: mapping, populating and
// registering are not.
//
// Cells (Google Benchmark names):
//   move/SIZE/THP/ALIGNED  one range of SIZE bytes: native, ioctl, and up to
//                          64 MiB copy (mmap'd target, memcpy,
//                          MADV_DONTNEED of the source) and uffd_move
//                          (UFFDIO_MOVE, 6.8+). THP 1: MADV_HUGEPAGE, 0:
//                          MADV_NOHUGEPAGE; ALIGNED 0: the source one page
//                          off a PMD boundary, the target on one (PTE-level
//                          moves all the way).
//   many/COUNT/SIZE        COUNT ranges of SIZE bytes: native and ioctl one
//                          call each, batch (DONTUNMAP_BATCH_MAX elements a
//                          call) and multi (one native MREMAP_FIXED call over
//                          all of them, 6.17+).
//   uffd/COUNT/REMAP       COUNT 4 KiB ranges registered with userfaultfd
//                          (MISSING), with UFFD_FEATURE_EVENT_REMAP (1) or
//                          without (0): native, ioctl and batch.
//   overhead               per call: getppid(), DONTUNMAP_IOC_INFO, and an
//                          mremap() that changes nothing (the mmap lock
//                          taken and dropped).
//
// The module's counters (/sys/class/misc/dontunmap/stats) are read around
// each cell: a cell whose module moves differ from what it made fails.
//
// usage: dontunmap-bench [--max-size BYTES] [Google Benchmark flags]
#include <benchmark/benchmark.h>
#include <dontunmap/dontunmap.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// UFFDIO_MOVE (6.8) is newer than some build hosts' headers.
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
  __u64 mode;
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

namespace {

constexpr std::size_t kPmd = std::size_t{2} << 20;
constexpr std::size_t kMaxCopySize = std::size_t{64} << 20;
constexpr unsigned long kFixed = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED;

std::size_t page_size() {
  static const auto p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

std::uint64_t to_u64(const void *p) { return reinterpret_cast<std::uintptr_t>(p); }

std::string errname(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : std::to_string(err);
}

int device() {
  static const int fd = ::open(DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  return fd;
}

// The module's count of completed moves; nullopt without the module.
std::optional<std::uint64_t> module_moves() {
  std::ifstream f("/sys/class/misc/dontunmap/stats/moves");
  std::uint64_t n = 0;
  if (f >> n) return n;
  return std::nullopt;
}

// A PROT_NONE reservation, unmapped with everything in it when it goes.
class region {
 public:
  explicit region(std::size_t len)
      : len_(len),
        base_(::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                     0)) {}
  region(const region &) = delete;
  region &operator=(const region &) = delete;
  ~region() {
    if (ok()) ::munmap(base_, len_);
  }
  bool ok() const { return base_ != MAP_FAILED; }
  // The first PMD boundary inside, plus off.
  char *aligned(std::size_t off) const {
    const auto b = reinterpret_cast<std::uintptr_t>(base_);
    return reinterpret_cast<char *>((b + kPmd - 1) & ~(kPmd - 1)) + off;
  }

 private:
  std::size_t len_;
  void *base_;
};

// Maps [p, p + len) read-write over the reservation, with or without THP,
// and writes one byte a page (the page's number, plus seed), so it is
// populated. False on failure (errno set).
bool map_populated(char *p, std::size_t len, bool thp, unsigned seed) {
  if (::mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
      MAP_FAILED)
    return false;
  if (::madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0 && errno != EINVAL)
    return false;
  for (std::size_t off = 0; off < len; off += page_size())
    p[off] = static_cast<char>(off / page_size() + seed);
  return true;
}

// Whether [p, p + len) holds what map_populated() wrote (every page checked).
bool holds(const char *p, std::size_t len, unsigned seed) {
  for (std::size_t off = 0; off < len; off += page_size())
    if (p[off] != static_cast<char>(off / page_size() + seed)) return false;
  return true;
}

int native_move(void *from, std::size_t len, void *to) {
  return ::mremap(from, len, len, kFixed, to) == MAP_FAILED ? errno : 0;
}

int ioctl_move(void *from, std::size_t len, void *to) {
  dontunmap_remap r{.old_addr = to_u64(from),
                    .old_len = len,
                    .new_len = len,
                    .flags = kFixed,
                    .new_addr = to_u64(to)};
  return ::ioctl(device(), DONTUNMAP_IOC_REMAP, &r) == 0 ? 0 : errno;
}

// The copying fallback of a program without DONTUNMAP: the target is
// mapped already (as a program keeps its spare buffer), the pages are
// copied and the source's released.
int copy_move(void *from, std::size_t len, void *to) {
  std::memcpy(to, from, len);
  return ::madvise(from, len, MADV_DONTNEED) == 0 ? 0 : errno;
}

// A userfaultfd with features (0 if the kernel refuses them).
int open_uffd(std::uint64_t features) {
  const int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return -1;
  uffdio_api api{.api = UFFD_API, .features = features, .ioctls = 0};
  if (::ioctl(fd, UFFDIO_API, &api) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool uffd_register(int uffd, void *p, std::size_t len) {
  uffdio_register reg{.range = {.start = to_u64(p), .len = len},
                      .mode = UFFDIO_REGISTER_MODE_MISSING,
                      .ioctls = 0};
  return ::ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
}

int uffd_move(int uffd, void *from, std::size_t len, void *to) {
  uffdio_move m{.dst = to_u64(to), .src = to_u64(from), .len = len, .mode = 0, .move = 0};
  return ::ioctl(uffd, UFFDIO_MOVE, &m) == 0 ? 0 : errno;
}

bool kernel_has_uffd_move() {
  static const bool has = [] {
    const int fd = open_uffd(UFFD_FEATURE_MOVE);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }();
  return has;
}

// Reads and drops userfaultfd events until stopped: a monitor that only
// acknowledges (a REMAP event holds its mover until it is read).
class event_reader {
 public:
  explicit event_reader(int uffd) : uffd_(uffd), thread_([this] { run(); }) {}
  ~event_reader() {
    stop_ = true;
    thread_.join();
  }
  std::uint64_t events() const { return events_; }

 private:
  void run() {
    while (!stop_) {
      pollfd p{.fd = uffd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      uffd_msg msg[16];
      const ssize_t n = ::read(uffd_, msg, sizeof(msg));
      if (n > 0) events_ += static_cast<std::uint64_t>(n) / sizeof(uffd_msg);
    }
  }
  int uffd_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> events_{0};
  std::thread thread_;
};

// Time per method and moves per method of one repetition; reported as
// METHOD_us counters (microseconds per move, or per call for overhead).
class tally {
 public:
  explicit tally(std::vector<std::string> methods)
      : methods_(std::move(methods)), ns_(methods_.size()), n_(methods_.size()) {}
  std::size_t size() const { return methods_.size(); }
  const std::string &name(std::size_t m) const { return methods_[m]; }
  // Runs fn, timed, as `moves` moves of method m; returns fn's errno (0: ok)
  // and the seconds it took in *secs.
  int time(std::size_t m, std::uint64_t moves, double *secs, const std::function<int()> &fn) {
    const auto t0 = std::chrono::steady_clock::now();
    const int err = fn();
    const auto t1 = std::chrono::steady_clock::now();
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    ns_[m] += ns;
    n_[m] += moves;
    *secs += ns / 1e9;
    return err;
  }
  void report(benchmark::State &state) const {
    for (std::size_t m = 0; m < methods_.size(); ++m)
      if (n_[m]) state.counters[methods_[m] + "_us"] = ns_[m] / 1e3 / static_cast<double>(n_[m]);
  }

 private:
  std::vector<std::string> methods_;
  std::vector<double> ns_;
  std::vector<std::uint64_t> n_;
};

// Fails the cell unless the module counted exactly `expected` moves since
// `before`.
bool counters_agree(benchmark::State &state, std::optional<std::uint64_t> before,
                    std::uint64_t expected) {
  const auto after = module_moves();
  if (!before || !after) {
    state.SkipWithError("module counters unreadable");
    return false;
  }
  state.counters["module_moves"] = static_cast<double>(*after - *before);
  if (*after - *before != expected) {
    state.SkipWithError(("module counted " + std::to_string(*after - *before) +
                         " moves, the cell made " + std::to_string(expected))
                            .c_str());
    return false;
  }
  return true;
}

// The cell's iterations: in each, every method of t once, in an order that
// rotates from one iteration to the next; one(m, &secs) makes method m's
// moves (timing them with t.time()) and returns an errno, which fails the
// cell. False when it failed.
bool rotate(benchmark::State &state, const tally &t,
            const std::function<int(std::size_t, double *)> &one) {
  std::size_t rotation = 0;
  for (auto _ : state) {
    double secs = 0;
    for (std::size_t k = 0; k < t.size(); ++k) {
      const std::size_t m = (k + rotation) % t.size();
      if (const int err = one(m, &secs)) {
        state.SkipWithError((t.name(m) + ": " + errname(err)).c_str());
        return false;
      }
    }
    ++rotation;
    state.SetIterationTime(secs);
  }
  return true;
}

// ---------------------------------------------------------------------------
// move/SIZE/THP/ALIGNED

void bm_move(benchmark::State &state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const bool thp = state.range(1) != 0, aligned = state.range(2) != 0;
  const std::size_t skew = aligned ? 0 : page_size();
  const bool copies = size <= kMaxCopySize;
  const bool uffd_moves = copies && kernel_has_uffd_move();

  // a/b: native and ioctl ping-pong; c/d: copy; e/f: UFFDIO_MOVE. Each
  // pair in its own reservation, its second range on a PMD boundary at
  // least a PMD past the first.
  const std::size_t span = ((size + skew + kPmd - 1) & ~(kPmd - 1)) + kPmd;
  region r1(2 * span + kPmd), r2(copies ? 2 * span + kPmd : page_size()),
      r3(uffd_moves ? 2 * span + kPmd : page_size());
  if (!r1.ok() || !r2.ok() || !r3.ok()) return state.SkipWithError("mmap of the reservation");
  char *a = r1.aligned(skew), *b = r1.aligned(span);
  char *c = r2.aligned(skew), *d = r2.aligned(span);
  char *e = r3.aligned(skew), *f = r3.aligned(span);
  if (!map_populated(a, size, thp, 1) || (copies && !map_populated(c, size, thp, 2)) ||
      (copies && !map_populated(d, size, thp, 3)) || (uffd_moves && !map_populated(e, size, thp, 4)))
    return state.SkipWithError(("populating: " + errname(errno)).c_str());
  // The copy's target is a mapped buffer, as a program without DONTUNMAP
  // keeps one; both halves populated once, then released by each move.
  ::madvise(d, size, MADV_DONTNEED);
  int uffd = -1;
  if (uffd_moves) {
    uffd = open_uffd(UFFD_FEATURE_MOVE);
    if (uffd < 0 || ::mmap(f, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
        ::madvise(f, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0 ||
        !uffd_register(uffd, e, size) || !uffd_register(uffd, f, size))
      return state.SkipWithError(("userfaultfd set-up: " + errname(errno)).c_str());
  }

  std::vector<std::string> names{"native", "ioctl"};
  if (copies) names.push_back("copy");
  if (uffd_moves) names.push_back("uffd_move");
  tally t(names);
  const auto before = module_moves();
  std::uint64_t ioctl_moves = 0;
  // Where each pair's pages are now (true: in its first range).
  bool ab = true, cd = true, ef = true;
  const bool ok = rotate(state, t, [&](std::size_t m, double *secs) {
    const std::string &name = t.name(m);
    int err;
    if (name == "native" || name == "ioctl") {
      char *from = ab ? a : b, *to = ab ? b : a;
      err = t.time(m, 1, secs, [&] {
        return name == "native" ? native_move(from, size, to) : ioctl_move(from, size, to);
      });
      ioctl_moves += name == "ioctl";
      ab = !ab;
    } else if (name == "copy") {
      char *from = cd ? c : d, *to = cd ? d : c;
      err = t.time(m, 1, secs, [&] { return copy_move(from, size, to); });
      cd = !cd;
    } else {
      char *from = ef ? e : f, *to = ef ? f : e;
      err = t.time(m, 1, secs, [&] { return uffd_move(uffd, from, size, to); });
      ef = !ef;
    }
    return err;
  });
  if (uffd >= 0) ::close(uffd);
  if (!ok) return;
  if (!holds(ab ? a : b, size, 1) || (copies && !holds(cd ? c : d, size, 2)) ||
      (uffd_moves && !holds(ef ? e : f, size, 4)))
    return state.SkipWithError("the pages did not arrive intact");
  if (!counters_agree(state, before, ioctl_moves)) return;
  t.report(state);
}

// ---------------------------------------------------------------------------
// many/COUNT/SIZE and uffd/COUNT/REMAP: COUNT ranges in two reservations,
// range i at 2 i SIZE in each (PROT_NONE between, so no two merge).

struct ranges {
  ranges(std::size_t count, std::size_t size)
      : count(count), size(size), src(2 * count * size + kPmd), dst(2 * count * size + kPmd) {}
  bool ok() const { return src.ok() && dst.ok(); }
  char *at(bool first, std::size_t i) const {
    return (first ? src : dst).aligned(2 * i * size);
  }
  // All count moves from one side to the other, one call each.
  int each(bool from_first, int (*move)(void *, std::size_t, void *)) const {
    for (std::size_t i = 0; i < count; ++i)
      if (const int err = move(at(from_first, i), size, at(!from_first, i))) return err;
    return 0;
  }
  // The same as batch ioctls of DONTUNMAP_BATCH_MAX elements.
  int batch(bool from_first) const {
    std::vector<dontunmap_remap> v(std::min<std::size_t>(count, DONTUNMAP_BATCH_MAX));
    for (std::size_t done = 0; done < count;) {
      const std::size_t n = std::min(v.size(), count - done);
      for (std::size_t i = 0; i < n; ++i)
        v[i] = {.old_addr = to_u64(at(from_first, done + i)),
                .old_len = size,
                .new_len = size,
                .flags = kFixed,
                .new_addr = to_u64(at(!from_first, done + i))};
      dontunmap_remap_batch hdr{};
      hdr.remaps = to_u64(v.data());
      hdr.count = static_cast<std::uint32_t>(n);
      if (::ioctl(device(), DONTUNMAP_IOC_REMAP_BATCH, &hdr) != 0) return errno;
      done += n;
    }
    return 0;
  }
  // One native MREMAP_FIXED call over every range (and the gaps).
  int multi(bool from_first) const {
    const std::size_t len = 2 * count * size - size;
    return native_move(at(from_first, 0), len, at(!from_first, 0));
  }

  std::size_t count, size;
  region src, dst;
};

void bm_many(benchmark::State &state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  const auto size = static_cast<std::size_t>(state.range(1));
  ranges r(count, size);
  if (!r.ok()) return state.SkipWithError("mmap of the reservations");
  for (std::size_t i = 0; i < count; ++i)
    if (!map_populated(r.at(true, i), size, false, static_cast<unsigned>(i)))
      return state.SkipWithError(("populating: " + errname(errno)).c_str());
  // One round trip untimed, so that every timed move finds its target as
  // later ones do (a kept, empty range), and multi is tried.
  bool first = true;
  if (const int err = r.each(true, native_move); err)
    return state.SkipWithError(("native: " + errname(err)).c_str());
  std::vector<std::string> names{"native", "ioctl", "batch"};
  if (r.multi(false) == 0)
    names.push_back("multi");
  else if (r.each(false, native_move) != 0)
    return state.SkipWithError("moving back");
  tally t(names);
  const auto before = module_moves();
  std::uint64_t module_count = 0;
  const bool ok = rotate(state, t, [&](std::size_t m, double *secs) {
    const std::string &name = t.name(m);
    const int err = t.time(m, count, secs, [&] {
      if (name == "native") return r.each(first, native_move);
      if (name == "ioctl") return r.each(first, ioctl_move);
      if (name == "batch") return r.batch(first);
      return r.multi(first);
    });
    if (name == "ioctl" || name == "batch") module_count += count;
    first = !first;
    return err;
  });
  if (!ok) return;
  for (std::size_t i = 0; i < count; ++i)
    if (!holds(r.at(first, i), size, static_cast<unsigned>(i)))
      return state.SkipWithError("the pages did not arrive intact");
  if (!counters_agree(state, before, module_count)) return;
  t.report(state);
}

void bm_uffd(benchmark::State &state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  const bool remap_events = state.range(1) != 0;
  const std::size_t size = page_size();
  ranges r(count, size);
  const int uffd = open_uffd(remap_events ? UFFD_FEATURE_EVENT_REMAP : 0);
  if (!r.ok() || uffd < 0) return state.SkipWithError("mmap or userfaultfd");
  std::optional<event_reader> reader;
  if (remap_events) reader.emplace(uffd);
  for (std::size_t i = 0; i < count; ++i)
    if (!map_populated(r.at(true, i), size, false, static_cast<unsigned>(i)))
      return state.SkipWithError(("populating: " + errname(errno)).c_str());
  tally t({"native", "ioctl", "batch"});
  const auto before = module_moves();
  std::uint64_t module_count = 0;
  const bool ok = rotate(state, t, [&](std::size_t m, double *secs) {
    const std::string &name = t.name(m);
    // Untimed: the sources registered (again: without EVENT_REMAP a moved
    // range leaves its registration behind).
    for (std::size_t i = 0; i < count; ++i)
      if (!uffd_register(uffd, r.at(true, i), size)) return errno;
    const int err = t.time(m, count, secs, [&] {
      if (name == "native") return r.each(true, native_move);
      if (name == "ioctl") return r.each(true, ioctl_move);
      return r.batch(true);
    });
    if (name != "native") module_count += count;
    // Untimed: the pages back where the next method finds them.
    return err ? err : r.each(false, native_move);
  });
  reader.reset();
  ::close(uffd);
  if (!ok) return;
  for (std::size_t i = 0; i < count; ++i)
    if (!holds(r.at(true, i), size, static_cast<unsigned>(i)))
      return state.SkipWithError("the pages did not arrive intact");
  if (!counters_agree(state, before, module_count)) return;
  t.report(state);
}

// ---------------------------------------------------------------------------
// overhead: what a call costs before it moves anything.

void bm_overhead(benchmark::State &state) {
  static constexpr std::uint64_t kCalls = 1000;
  void *p = ::mmap(nullptr, page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (p == MAP_FAILED) return state.SkipWithError("mmap");
  tally t({"getppid", "info_ioctl", "mremap_noop"});
  const bool ok = rotate(state, t, [&](std::size_t m, double *secs) {
    return t.time(m, kCalls, secs, [m, p] {
      dontunmap_info info{};
      for (std::uint64_t i = 0; i < kCalls; ++i) {
        if (m == 0)
          benchmark::DoNotOptimize(::getppid());
        else if (m == 1 ? ::ioctl(device(), DONTUNMAP_IOC_INFO, &info) != 0
                        : ::mremap(p, page_size(), page_size(), 0) == MAP_FAILED)
          return errno;
      }
      return 0;
    });
  });
  ::munmap(p, page_size());
  if (!ok) return;
  t.report(state);
}

// Iterations per repetition, fixed so a cell's set-up (populating up to a
// GiB under emulation) runs once per repetition, never to calibrate.
std::int64_t iterations_for(std::size_t bytes) {
  if (bytes >= (std::size_t{1} << 30)) return 4;
  if (bytes >= (std::size_t{64} << 20)) return 8;
  if (bytes >= kPmd) return 32;
  return 128;
}

void register_all(std::size_t max_size) {
  for (const std::size_t size : {std::size_t{4} << 10, std::size_t{64} << 10, kPmd,
                                 std::size_t{64} << 20, std::size_t{1} << 30}) {
    if (size > max_size) continue;
    for (const bool thp : {true, false})
      for (const bool aligned : {true, false}) {
        // Below a PMD there is nothing for THP or alignment to change.
        if (size < kPmd && (!thp || !aligned)) continue;
        benchmark::RegisterBenchmark("move", bm_move)
            ->Args({static_cast<std::int64_t>(size), thp, aligned})
            ->ArgNames({"size", "thp", "aligned"})
            ->Iterations(iterations_for(size))
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
  }
  for (const std::int64_t count : {1024, 16384})
    for (const std::int64_t size : {4 << 10, 64 << 10}) {
      if (static_cast<std::size_t>(count * size) > max_size) continue;
      benchmark::RegisterBenchmark("many", bm_many)
          ->Args({count, size})
          ->ArgNames({"count", "size"})
          ->Iterations(count >= 16384 ? 2 : 6)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  for (const bool remap : {false, true})
    benchmark::RegisterBenchmark("uffd", bm_uffd)
        ->Args({1024, remap})
        ->ArgNames({"count", "remap"})
        ->Iterations(4)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("overhead", bm_overhead)
      ->Iterations(16)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

// Raises vm.max_map_count for the cells of 16,384 ranges (about four VMAs
// each with their gaps), as root; the old value is put back at exit.
void raise_map_count() {
  static std::string old;
  const char *const path = "/proc/sys/vm/max_map_count";
  std::ifstream in(path);
  long n = 0;
  if (!(in >> n) || n >= 262144) return;
  old = std::to_string(n);
  std::ofstream(path) << 262144;
  std::atexit([] { std::ofstream("/proc/sys/vm/max_map_count") << old; });
}

}  // namespace

int main(int argc, char **argv) {
  std::size_t max_size = std::size_t{1} << 30;
  // Our own flag first; the rest goes to Google Benchmark.
  std::vector<char *> args{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--max-size" && i + 1 < argc)
      max_size = std::strtoull(argv[++i], nullptr, 0);
    else
      args.push_back(argv[i]);
  }
  if (device() < 0) {
    std::fprintf(stderr, "dontunmap-bench: %s: %s (the module must be loaded)\n",
                 DONTUNMAP_DEVICE, std::strerror(errno));
    return 1;
  }
  raise_map_count();
  register_all(max_size);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 64;
  benchmark::AddCustomContext("uffdio_move", kernel_has_uffd_move() ? "yes" : "no");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
