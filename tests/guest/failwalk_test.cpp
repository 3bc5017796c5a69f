// SPDX-License-Identifier: GPL-2.0
//
// The allocation-failure walk: each representative move is made again and
// again, in a fresh child, with the n-th fault-injectable allocation of the
// calling thread failed (/proc/thread-self/fail-nth), n = 1, 2, ... until a
// call runs without reaching its n-th. Slab and page allocations that may
// sleep (GFP_KERNEL) are counted, order 0 included (the debugfs knobs below).
//
// Each call must end one of two ways: as the same move without injection
// ends (the data moved exactly, the source mapped and empty), or with
// ENOMEM and nothing changed: the source mapped and byte-identical, nothing
// new anywhere in the address space, a MREMAP_FIXED target either intact or
// unmapped (as mremap() unmaps it first), and Committed_AS, the map count,
// VmSize, VmLck and VmData as before the call. The one change a failed move
// may leave is upstream's too: a source split at its ends before the
// allocation that failed (mlocked sources are split ahead of the move).
//
// Needs CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC and
// debugfs: the debug rows of the matrix. Elsewhere every test skips. Each
// walk prints one "failwalk:" line with its figures.
#include <fcntl.h>
#include <malloc.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <cinttypes>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "batch_one.hpp"
#include "support.hpp"

namespace dontunmap::test {
namespace {

constexpr const char *kFailNth = "/proc/thread-self/fail-nth";
constexpr const char *kDebugfs = "/sys/kernel/debug";
// A walk longer than this is a walk that does not end.
constexpr int kMaxPoints = 2000;

// printf into a std::string (the guest toolchains' libstdc++ has no
// std::format).
template <typename... Args>
std::string strf(const char *fmt, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

// The fault-injection knobs a walk needs, set for the walk's lifetime: the
// allocations the kernel makes for a system call (GFP_KERNEL, which may
// sleep; order 0; highmem-capable user pages) counted too, and no report
// printed for an injected failure (it would read as a splat).
class fault_knobs {
 public:
  fault_knobs() {
    set("failslab/ignore-gfp-wait", "N");
    set("failslab/verbose", "0");
    set("fail_page_alloc/ignore-gfp-wait", "N");
    set("fail_page_alloc/ignore-gfp-highmem", "N");
    set("fail_page_alloc/min-order", "0");
    set("fail_page_alloc/verbose", "0");
  }
  fault_knobs(const fault_knobs &) = delete;
  fault_knobs &operator=(const fault_knobs &) = delete;
  ~fault_knobs() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it)
      procfs::write_text(it->first, it->second);
  }
  bool usable() const { return ok_; }
  const std::string &why() const { return why_; }

 private:
  void set(const std::string &knob, std::string_view value) {
    const std::string path = strf("%s/%s", kDebugfs, knob.c_str());
    const auto old = procfs::read_text(path);
    if (!old || !procfs::write_text(path, value)) {
      if (ok_) why_ = path + " is not writable";
      ok_ = false;
      return;
    }
    saved_.emplace_back(path, *old);
  }
  std::vector<std::pair<std::string, std::string>> saved_;
  bool ok_ = true;
  std::string why_;
};

std::size_t pagesz() { return page_size(); }

// What a failed call must leave as it found: the process's counters and
// the system's charge. Read without allocating. The checks between two
// readings allocate, and the heap they grow is charged, counts in VmSize and
// VmData, and is measured here (the program break) to be taken out.
struct counters {
  std::uint64_t committed_kb = 0, vm_size_kb = 0, vm_lck_kb = 0, vm_data_kb = 0;
  std::size_t map_count = 0;
  std::uint64_t heap_kb = 0;

  static counters read() {
    const auto brk = reinterpret_cast<std::uintptr_t>(::sbrk(0));
    return {procfs::meminfo_kb("Committed_AS").value_or(0),
            procfs::status_kb("VmSize").value_or(0),
            procfs::status_kb("VmLck").value_or(0),
            procfs::status_kb("VmData").value_or(0),
            procfs::map_count(),
            ((brk + pagesz() - 1) & ~(pagesz() - 1)) / 1024};
  }
};

// The address space as a failed call must leave it, but for the child's
// heap and stack (which the checks themselves grow): each VMA as start, end,
// permissions and whether it is VM_ACCOUNT, with neighbours that a split
// separated (same permissions, backing and accounting, contiguous) joined.
std::vector<std::string> layout_of(const std::vector<procfs::smaps_entry> &smaps,
                                   std::size_t *lines) {
  struct area {
    procfs::vma v;
    bool account;
  };
  std::vector<area> kept;
  for (const auto &e : smaps) {
    const auto &v = e.area;
    const bool account = e.has_flag("ac");
    if (v.path == "[heap]" || v.path == "[stack]" || v.path == "[vsyscall]") continue;
    ++*lines;
    if (!kept.empty()) {
      const auto &k = kept.back();
      if (k.v.end == v.start && k.v.perms == v.perms && k.v.path == v.path &&
          k.v.inode == v.inode && k.account == account &&
          (v.inode == 0 || k.v.offset + k.v.size() == v.offset)) {
        kept.back().v.end = v.end;
        continue;
      }
    }
    kept.push_back({v, account});
  }
  std::vector<std::string> out;
  for (const auto &k : kept)
    out.push_back(strf("%" PRIxPTR "-%" PRIxPTR " %s%s %s", k.v.start, k.v.end, k.v.perms.c_str(),
                       k.account ? " ac" : "", k.v.path.c_str()));
  return out;
}

// One move of a scenario, made in the child: what the scenario set up.
struct scene {
  char *src = nullptr;
  std::size_t len = 0;
  pattern content = per_page('a');
  // What the source reads after a move: zeros for private anonymous
  // memory, the file's data for a shared or file-backed source.
  pattern after_move = zeros();
  char *target = nullptr;  // hint, or MREMAP_FIXED target
  unsigned long flags = 0;
  // A MREMAP_FIXED target over a mapping: its content, and how to map it
  // again (for the counters) if the failed call left it unmapped.
  bool target_mapped = false;
  pattern target_content = uniform('t');
  int target_prot = PROT_READ | PROT_WRITE;
  int target_flags = MAP_PRIVATE | MAP_ANONYMOUS;
  // Pieces of a multi-VMA move: offset and length of each from src; one
  // piece of len by default.
  std::vector<std::pair<std::size_t, std::size_t>> pieces;
  int uffd = -1;  // the source is registered with it (EVENT_REMAP)
  std::vector<guarded> keep;
};

using setup_fn = std::function<bool(scene &)>;

struct walk_scenario {
  const char *name;
  setup_fn setup;
  bool overcommit_never = false;  // a charge the move cannot get
};

// A child's report of one call.
struct report {
  int injected = 0;          // the n-th allocation was reached (and failed)
  int left_destination = 0;  // the documented double failure, see attempt()
  int err = 0;               // 0: the move was made
  int completed = 0;         // a batch's elements moved
  char problem[768] = {};
};

// The first byte of [addr, addr + len) that is not as `p` says, as text.
std::string first_difference(const char *addr, std::size_t len, pattern p) {
  for (std::size_t i = 0; i < len; ++i) {
    const char want = p.at(i / pagesz());
    if (addr[i] != want)
      return strf("byte %#zx of %p is %#x, expected %#x", i, static_cast<const void *>(addr),
                  static_cast<unsigned char>(addr[i]), static_cast<unsigned char>(want));
  }
  return {};
}

// Reads userfaultfd messages while the call runs: EVENT_REMAP waits for
// its reader. Constructed before anything is measured, and back only once
// the thread runs and has its malloc arena (a new mapping, and a charge).
class uffd_reader {
 public:
  explicit uffd_reader(int uffd) : uffd_(uffd), thread_([this] { run(); }) {
    while (!ready_) std::this_thread::yield();
  }
  ~uffd_reader() { finish(); }
  // Stops reading; every message the call produced has been read.
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int remaps() const { return remaps_; }
  std::uint64_t from() const { return from_; }
  std::uint64_t to() const { return to_; }

 private:
  void run() {
    msg_ = std::make_unique<uffd_msg>();  // the thread's first malloc()
    ready_ = true;
    while (!stop_) {
      pollfd p{uffd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      uffd_msg &msg = *msg_;
      if (::read(uffd_, &msg, sizeof(msg)) != sizeof(msg)) continue;
      if (msg.event == UFFD_EVENT_REMAP) {
        from_ = msg.arg.remap.from;
        to_ = msg.arg.remap.to;
        ++remaps_;
      }
    }
  }
  int uffd_;
  std::unique_ptr<uffd_msg> msg_;
  std::atomic<bool> stop_{false}, ready_{false};
  std::atomic<int> remaps_{0};
  std::atomic<std::uint64_t> from_{0}, to_{0};
  std::thread thread_;
};

// The checks allocate: keep the heap to the program break (counters) and
// from shrinking between the two readings of the counters. The heap exists
// (map_count) from here on; through a volatile pointer, as the compiler
// drops a malloc()/free() pair.
void settle_heap() {
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  void *volatile heap = std::malloc(1);
  std::free(heap);
}

// /proc/thread-self/fail-nth of the calling thread: arm(n) fails its n-th
// allocation from then on (n = 0: none); disarm() says whether it was
// reached.
class injection {
 public:
  injection() : fd_(::open(kFailNth, O_RDWR | O_CLOEXEC)) {}
  injection(const injection &) = delete;
  injection &operator=(const injection &) = delete;
  ~injection() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::string error() const {
    return fd_ < 0 ? strf("%s: %s", kFailNth, std::strerror(errno)) : std::string();
  }
  bool arm(int n) {
    if (n == 0) return true;
    char buf[16];
    const int len = std::snprintf(buf, sizeof(buf), "%d", n);
    armed_ = ::pwrite(fd_, buf, len, 0) == len;
    return armed_;
  }
  bool disarm() {
    if (!armed_) return false;
    char buf[16] = {};
    const ssize_t got = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    ::pwrite(fd_, "0", 1, 0);
    armed_ = false;
    return got > 0 && std::atoi(buf) == 0;
  }

 private:
  int fd_;
  bool armed_ = false;
};

// The address space and the counters before a call, to be compared with
// them once what the call did is undone: the same layout (but for splits,
// each one more VMA), the same Committed_AS (less `uncharged_kb`), VmSize,
// VmLck and VmData.
class snapshot {
 public:
  snapshot() : layout_(layout_of(procfs::read_smaps(), &lines_)), counters_(counters::read()) {}

  template <typename Problem>
  void compare(Problem &&problem, std::uint64_t uncharged_kb = 0) const {
    const counters after = counters::read();
    std::size_t lines_after = 0;
    const auto layout_after = layout_of(procfs::read_smaps(), &lines_after);
    if (layout_after != layout_) {
      std::string diff;
      for (const auto &l : layout_)
        if (std::find(layout_after.begin(), layout_after.end(), l) == layout_after.end())
          diff += " -" + l;
      for (const auto &l : layout_after)
        if (std::find(layout_.begin(), layout_.end(), l) == layout_.end()) diff += " +" + l;
      problem("the address space changed:" + diff);
    }
    const counters &before = counters_;
    auto same = [&](const char *what, std::uint64_t b0, std::uint64_t a0) {
      if (b0 != a0) problem(strf("%s %" PRIu64 " -> %" PRIu64, what, b0, a0));
    };
    const std::uint64_t heap_kb = after.heap_kb - before.heap_kb;
    same("Committed_AS kB", before.committed_kb - uncharged_kb, after.committed_kb - heap_kb);
    same("VmSize kB", before.vm_size_kb, after.vm_size_kb - heap_kb);
    same("VmLck kB", before.vm_lck_kb, after.vm_lck_kb);
    same("VmData kB", before.vm_data_kb, after.vm_data_kb - heap_kb);
    // Splits that a failed move may leave show as extra lines of the same
    // layout: the map count grows by exactly those.
    if (after.map_count - before.map_count != lines_after - lines_)
      problem(strf("map_count %zu -> %zu with %zu -> %zu VMAs of the same layout",
                   before.map_count, after.map_count, lines_, lines_after));
  }

 private:
  std::size_t lines_ = 0;
  std::vector<std::string> layout_;
  counters counters_;
};

// The child's side of one call with the n-th allocation failed (n = 0: no
// injection). Returns what it saw; never uses gtest.
// How the move is made: native mremap(), the module's single ioctl, or the
// module's batch ioctl with the move as its one element (which adds the
// copy of the array and the header's write-back to what can fail).
enum class way { native, module, batch };

const char *to_string(way w) {
  switch (w) {
    case way::native: return "native";
    case way::module: return "module";
    case way::batch: return "batch";
  }
  return "?";
}

backend backend_of(way w) { return w == way::native ? backend::native : backend::module; }

std::expected<void *, std::error_code> remap_by(way w, const dontunmap::remapper &r,
                                                const remap_request &req) {
  if (w != way::batch) return r.remap(req);
  return remap_batch_of_one(r.module_device()->fd(), req);
}

report attempt(way w, const walk_scenario &sc, int n, bool charge_after_copy) {
  report rep;
  auto problem = [&rep](const std::string &s) {
    if (!rep.problem[0]) std::snprintf(rep.problem, sizeof(rep.problem), "%s", s.c_str());
  };
  settle_heap();
  auto remapper = dontunmap::remapper::create(backend_of(w));
  if (!remapper) {
    problem("backend: " + remapper.error().message());
    return rep;
  }
  scene s;
  if (!sc.setup(s)) {
    problem(strf("setup failed: %s", std::strerror(errno)));
    return rep;
  }
  if (s.pieces.empty()) s.pieces.push_back({0, s.len});
  injection inject;
  if (const auto e = inject.error(); !e.empty()) {
    problem(e);
    return rep;
  }
  if (sc.overcommit_never) {
    // CommitLimit a little above what is charged now: the move's charge
    // (len) cannot be had, everything else the child does can.
    const auto committed = procfs::meminfo_kb("Committed_AS").value_or(0);
    if (!procfs::write_text("/proc/sys/vm/overcommit_kbytes",
                            std::to_string(committed + s.len / 1024 / 2)) ||
        !procfs::write_text("/proc/sys/vm/overcommit_memory", "2")) {
      problem("could not set vm.overcommit_memory=2");
      return rep;
    }
  }
  std::optional<uffd_reader> reader;
  if (s.uffd >= 0) reader.emplace(s.uffd);

  const remap_request req{s.src, s.len, s.len, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | s.flags,
                          s.target};
  const snapshot before;

  if (!inject.arm(n)) {
    problem(strf("write %s: %s", kFailNth, std::strerror(errno)));
    return rep;
  }
  const auto r = remap_by(w, *remapper, req);
  rep.injected = inject.disarm();
  rep.err = r ? 0 : r.error().value();
  if (reader) reader->finish();
  const int remaps = reader ? reader->remaps() : 0;

  // Piece by piece: moved (the data at the destination, the source mapped
  // and as a move leaves it) or untouched (the source as it was).
  auto seed_of = [&](pattern p, std::size_t off) {
    return p.per_page ? per_page(static_cast<char>(p.seed + off / pagesz())) : p;
  };
  auto check_moved = [&](char *dst, std::size_t off, std::size_t plen) {
    if (auto d = first_difference(dst + off, plen, seed_of(s.content, off)); !d.empty())
      problem("moved data wrong: " + d);
    if (!procfs::vma_at(s.src + off)) problem("the source is not mapped after the move");
    // A registered source faults to its monitor, which has stopped.
    else if (s.uffd < 0)
      if (auto d = first_difference(s.src + off, plen, seed_of(s.after_move, off)); !d.empty())
        problem("the source after the move: " + d);
  };
  if (r) {
    char *dst = static_cast<char *>(*r);
    for (const auto &[off, plen] : s.pieces) check_moved(dst, off, plen);
    if (s.uffd >= 0 && (remaps != 1 || reader->from() != reinterpret_cast<std::uintptr_t>(s.src) ||
                        reader->to() != reinterpret_cast<std::uintptr_t>(dst)))
      problem(strf("%d UFFD_EVENT_REMAP messages (%#" PRIx64 " -> %#" PRIx64 ") for the move",
                   remaps, reader->from(), reader->to()));
    return rep;
  }

  // A failed call. A multi-VMA move stops at the VMA that failed, as
  // upstream's remap_move() does: the ones before it have moved. Those
  // destinations are unmapped, and then nothing may have changed.
  if (remaps) problem(strf("%d UFFD_EVENT_REMAP messages for a failed move", remaps));
  bool stopped = false;
  for (const auto &[off, plen] : s.pieces) {
    char *dst = s.target + off;
    if (s.pieces.size() > 1 && !stopped && procfs::vma_at(dst)) {
      check_moved(s.target, off, plen);
      ::munmap(dst, plen);
      continue;
    }
    stopped = true;
    if (auto d = first_difference(s.src + off, plen, seed_of(s.content, off)); !d.empty())
      problem("the source after a failed move: " + d);
  }
  // The module's path without vm_committed_as (docs/locking.md, "Failure"):
  // a refused charge whose removal of the new VMA failed too leaves it
  // mapped and empty. Split from the neighbour it merged into, it has no
  // VM_ACCOUNT and no charge; still one VMA with it, it shares the
  // neighbour's VM_ACCOUNT, and unmapping it returns pages never charged.
  std::uint64_t uncharged_kb = 0;
  if (charge_after_copy && sc.overcommit_never && procfs::vma_at(s.target)) {
    const auto smaps = procfs::smaps_at(s.target);
    if (smaps && smaps->has_flag("ac") &&
        smaps->area.start < reinterpret_cast<std::uintptr_t>(s.target))
      uncharged_kb = s.len / 1024;
    else if (!smaps || smaps->has_flag("ac"))
      problem("the destination left by a refused charge is VM_ACCOUNT on its own");
    if (auto d = first_difference(s.target, s.len, zeros()); !d.empty())
      problem("the destination left by a refused charge is not empty: " + d);
    ::munmap(s.target, s.len);
    rep.left_destination = 1;
  }
  if (s.target_mapped && !procfs::vma_at(s.target)) {
    // mremap() unmaps a FIXED target first: map it again, as it was, for
    // the counters and the layout.
    if (::mmap(s.target, s.len, s.target_prot, s.target_flags | MAP_FIXED, -1, 0) == MAP_FAILED)
      problem(strf("mapping the target again: %s", std::strerror(errno)));
  } else if (s.target_mapped) {
    if (auto d = first_difference(s.target, s.len, s.target_content); !d.empty())
      problem("the FIXED target survived but changed: " + d);
  }
  before.compare(problem, uncharged_kb);
  return rep;
}

// Runs `attempt` in a child and brings its report back.
std::optional<report> in_child(const std::function<report()> &attempt) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC)) return std::nullopt;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    report rep;
    try {
      rep = attempt();
    } catch (const std::exception &e) {
      std::snprintf(rep.problem, sizeof(rep.problem), "the child threw: %s", e.what());
    }
    const bool ok = ::write(fds[1], &rep, sizeof(rep)) == sizeof(rep);
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  report rep;
  const bool got = pid > 0 && ::read(fds[0], &rep, sizeof(rep)) == sizeof(rep);
  ::close(fds[0]);
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  if (!got) return std::nullopt;
  return rep;
}

std::optional<report> attempt_in_child(way w, const walk_scenario &sc, int n,
                                       bool charge_after_copy) {
  return in_child([&] { return attempt(w, sc, n, charge_after_copy); });
}

// ---------------------------------------------------------------------------
// The scenarios

constexpr std::size_t kLen = std::size_t(1) << 20;

// The shape most scenarios share: the source (len bytes, already mapped)
// moved into a hole of its size, with `flags`. The scene keeps both
// mappings; the caller fills the source.
bool source_and_hole(scene &s, guarded src, guarded hole, std::size_t len,
                     unsigned long flags = 0) {
  if (!src || !hole) return false;
  s.src = src.get();
  s.len = len;
  s.target = hole.get();
  s.flags = flags;
  s.keep.push_back(std::move(src));
  s.keep.push_back(std::move(hole));
  return true;
}

bool private_anon(scene &s) {
  if (!source_and_hole(s, guarded::anon(kLen), guarded::hole(kLen), kLen)) return false;
  fill(s.src, s.len, s.content);
  return true;
}

bool thp(scene &s) {
  constexpr std::size_t huge = std::size_t(2) << 20;
  if (!source_and_hole(s, guarded::aligned_anon(2 * huge, huge),
                       guarded::aligned_hole(2 * huge, huge), 2 * huge, MREMAP_FIXED))
    return false;
  ::madvise(s.src, s.len, MADV_HUGEPAGE);
  fill(s.src, s.len, s.content);
  return true;
}

bool shmem(scene &s) {
  const int fd = ::memfd_create("failwalk", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, kLen)) return false;
  auto src = guarded::file(fd, kLen, MAP_SHARED);
  ::close(fd);
  if (!source_and_hole(s, std::move(src), guarded::hole(kLen), kLen)) return false;
  s.after_move = s.content;
  fill(s.src, s.len, s.content);
  return true;
}

// A private mapping of a file whose first half the process has written
// (anonymous copies) and whose second half is the file's own pages.
bool private_file(scene &s) {
  char name[] = "/tmp/failwalk.XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) return false;
  ::unlink(name);
  std::vector<char> data(kLen);
  fill(data.data(), kLen, s.content);
  if (::write(fd, data.data(), kLen) != static_cast<ssize_t>(kLen)) return false;
  auto src = guarded::file(fd, kLen, MAP_PRIVATE);
  ::close(fd);
  if (!source_and_hole(s, std::move(src), guarded::hole(kLen), kLen)) return false;
  s.after_move = s.content;  // the written half reads the file again: same bytes
  fill(s.src, kLen / 2, s.content);
  for (std::size_t i = kLen / 2; i < kLen; i += pagesz())
    (void)*static_cast<volatile char *>(s.src + i);
  return true;
}

// The middle third of an mlocked mapping: split ahead of the move.
bool mlocked_split(scene &s) {
  auto whole = guarded::anon(3 * kLen, MAP_PRIVATE | MAP_LOCKED);
  auto hole = guarded::hole(kLen);
  if (!whole || !hole) return false;
  s.src = whole.get() + kLen;
  s.len = kLen;
  s.target = hole.get();
  fill(whole.get(), 3 * kLen, uniform('m'));
  fill(s.src, s.len, s.content);
  s.keep.push_back(std::move(whole));
  s.keep.push_back(std::move(hole));
  return true;
}

bool fixed_over_mapping(scene &s) {
  auto src = guarded::anon(kLen);
  auto target = guarded::anon(kLen);
  if (!src || !target) return false;
  s.src = src.get();
  s.len = kLen;
  s.target = target.get();
  s.flags = MREMAP_FIXED;
  s.target_mapped = true;
  fill(s.src, s.len, s.content);
  fill(s.target, s.len, s.target_content);
  s.keep.push_back(std::move(src));
  s.keep.push_back(std::move(target));
  return true;
}

// Three VMAs (read-write, read-only, a gap, read-write) moved by one
// MREMAP_FIXED call.
bool multi_vma(scene &s) {
  const std::size_t piece = kLen / 4;
  if (!source_and_hole(s, guarded::anon(kLen), guarded::hole(kLen), kLen, MREMAP_FIXED))
    return false;
  fill(s.src, s.len, s.content);
  if (::mprotect(s.src + piece, piece, PROT_READ) || ::munmap(s.src + 2 * piece, piece))
    return false;
  s.pieces = {{0, piece}, {piece, piece}, {3 * piece, piece}};
  return true;
}

bool uffd_source(scene &s) {
  if (!private_anon(s)) return false;
  s.uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (s.uffd < 0) return false;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMAP;
  if (::ioctl(s.uffd, UFFDIO_API, &api)) return false;
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(s.src);
  reg.range.len = s.len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  return ::ioctl(s.uffd, UFFDIO_REGISTER, &reg) == 0;
}

// The destination right after an unfaulted anonymous VMA it merges with.
bool adjacent_unfaulted_of(scene &s, std::size_t len) {
  auto src = guarded::anon(len);
  auto area = guarded::hole(2 * len);
  if (!src || !area) return false;
  if (::mmap(area.get(), len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
             0) == MAP_FAILED)
    return false;
  s.src = src.get();
  s.len = len;
  s.target = area.get() + len;
  s.flags = MREMAP_FIXED;
  fill(s.src, s.len, s.content);
  s.keep.push_back(std::move(src));
  s.keep.push_back(std::move(area));
  return true;
}

bool adjacent_unfaulted(scene &s) { return adjacent_unfaulted_of(s, kLen); }

// The same, 16 MiB, under a CommitLimit the move's charge exceeds by half
// its length: more than the per-CPU slack of Committed_AS (up to 4 MiB a
// CPU under OVERCOMMIT_NEVER on the guests), so the check sees the charge.
bool adjacent_unfaulted_large(scene &s) { return adjacent_unfaulted_of(s, 16 * kLen); }

// An unfaulted anonymous source right before its MREMAP_FIXED target, and
// after the target an unfaulted VMA of the same kind: the destination
// merges with that VMA, never with the source (copy_vma()'s keep_source;
// below 7.3 the module lends the source the target's page offset for the
// call, and a failure inside copy_vma() must find it given back).
bool unfaulted_source_beside_target(scene &s) {
  auto area = guarded::anon(3 * kLen);
  if (!area || ::munmap(area.get() + kLen, kLen)) return false;
  s.src = area.get();
  s.len = kLen;
  s.content = zeros();  // never written: no anon_vma
  s.target = area.get() + kLen;
  s.flags = MREMAP_FIXED;
  s.keep.push_back(std::move(area));
  return true;
}

const walk_scenario kScenarios[] = {
    {"PopulatedPrivateAnon", private_anon},
    {"TransparentHugePages", thp},
    {"Shmem", shmem},
    {"PrivateFilePartlyWritten", private_file},
    {"MlockedMiddleSplitAhead", mlocked_split},
    {"FixedOverAMapping", fixed_over_mapping},
    {"MultiVmaFixed", multi_vma},
    {"UserfaultfdSourceWithEventRemap", uffd_source},
    {"AdjacentUnfaultedDestination", adjacent_unfaulted},
    {"ChargeRefusedNextToAMergeableNeighbour", adjacent_unfaulted_large, true},
    {"UnfaultedSourceBesideItsTarget", unfaulted_source_beside_target},
};

// ---------------------------------------------------------------------------
// A batch of several moves

// One DONTUNMAP_IOC_REMAP_BATCH call of three elements, each a move walked
// alone above: a uffd-registered source (EVENT_REMAP), MREMAP_FIXED over a
// mapping, and a populated source moved where the kernel chooses. A failure
// at element k must leave elements 0 .. k-1 moved and written back (the
// first one's REMAP event delivered), element k as its single call leaves a
// failure, the rest untouched (docs/batch.md, "What the caller sees"). Then
// the moved destinations are unmapped and the replaced target mapped again,
// and the address space and counters must be as before the call.
constexpr int kBatchElements = 3;

report attempt_batch(int n) {
  report rep;
  auto problem = [&rep](const std::string &s) {
    if (!rep.problem[0]) std::snprintf(rep.problem, sizeof(rep.problem), "%s", s.c_str());
  };
  settle_heap();
  auto remapper = dontunmap::remapper::create(backend::module);
  if (!remapper) {
    problem("backend: " + remapper.error().message());
    return rep;
  }
  const setup_fn setups[kBatchElements] = {uffd_source, fixed_over_mapping, private_anon};
  scene s[kBatchElements];
  for (int i = 0; i < kBatchElements; ++i) {
    if (!setups[i](s[i])) {
      problem(strf("setup of element %d failed: %s", i, std::strerror(errno)));
      return rep;
    }
    // Contents of their own, so that no element's data passes for another's.
    s[i].content = per_page(static_cast<char>('a' + 16 * i));
    fill(s[i].src, s[i].len, s[i].content);
  }
  injection inject;
  if (const auto e = inject.error(); !e.empty()) {
    problem(e);
    return rep;
  }
  uffd_reader reader(s[0].uffd);

  dontunmap_remap elements[kBatchElements];
  for (int i = 0; i < kBatchElements; ++i)
    elements[i] = {.old_addr = reinterpret_cast<std::uintptr_t>(s[i].src),
                   .old_len = s[i].len,
                   .new_len = s[i].len,
                   .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | s[i].flags,
                   .new_addr = reinterpret_cast<std::uintptr_t>(s[i].target)};
  dontunmap_remap_batch header = batch_header(elements, kBatchElements);
  const snapshot before;

  if (!inject.arm(n)) {
    problem(strf("write %s: %s", kFailNth, std::strerror(errno)));
    return rep;
  }
  const int rc = ::ioctl(remapper->module_device()->fd(), DONTUNMAP_IOC_REMAP_BATCH, &header);
  rep.err = rc ? errno : 0;
  rep.injected = inject.disarm();
  rep.completed = static_cast<int>(header.completed);
  reader.finish();

  // The header: every element on success; on a failure, the failed one's
  // errno beside the count moved, or (a whole refusal, before element 0)
  // the header as it was given.
  const int k = rep.completed;
  if (rc == 0 && (k != kBatchElements || header.error != 0))
    problem(strf("success with completed %d, error %d", k, header.error));
  else if (rc != 0 && (k >= kBatchElements || (header.error != -rep.err &&
                                               (header.error != 0 || k != 0))))
    problem(strf("failed with %s, but completed %d, error %d", std::strerror(rep.err), k,
                 header.error));
  if (rep.problem[0]) return rep;

  for (int i = 0; i < kBatchElements; ++i) {
    scene &e = s[i];
    char *const dst = reinterpret_cast<char *>(elements[i].new_addr);
    if (i < k) {
      if (auto d = first_difference(dst, e.len, e.content); !d.empty())
        problem(strf("element %d moved, its data wrong: ", i) + d);
      if (!procfs::vma_at(e.src))
        problem(strf("element %d moved, its source is not mapped", i));
      // A registered source faults to its monitor, which has stopped.
      else if (e.uffd < 0)
        if (auto d = first_difference(e.src, e.len, e.after_move); !d.empty())
          problem(strf("element %d moved, its source: ", i) + d);
      ::munmap(dst, e.len);
      if (e.target_mapped &&
          ::mmap(e.target, e.len, e.target_prot, e.target_flags | MAP_FIXED, -1, 0) == MAP_FAILED)
        problem(strf("mapping element %d's target again: %s", i, std::strerror(errno)));
      continue;
    }
    if (dst != e.target) problem(strf("element %d did not move, but new_addr changed", i));
    if (auto d = first_difference(e.src, e.len, e.content); !d.empty())
      problem(strf("element %d did not move, its source changed: ", i) + d);
    if (!e.target_mapped) continue;
    if (!procfs::vma_at(e.target)) {
      // The failed element's single call unmaps its FIXED target first.
      if (i != k) problem(strf("element %d was not reached, its target is gone", i));
      if (::mmap(e.target, e.len, e.target_prot, e.target_flags | MAP_FIXED, -1, 0) == MAP_FAILED)
        problem(strf("mapping element %d's target again: %s", i, std::strerror(errno)));
    } else if (auto d = first_difference(e.target, e.len, e.target_content); !d.empty()) {
      problem(strf("element %d's target survived but changed: ", i) + d);
    }
  }
  const bool first_moved = k > 0;
  if (reader.remaps() != (first_moved ? 1 : 0) ||
      (first_moved && (reader.from() != elements[0].old_addr || reader.to() != elements[0].new_addr)))
    problem(strf("%d UFFD_EVENT_REMAP messages (%#" PRIx64 " -> %#" PRIx64
                 ") with %d elements moved",
                 reader.remaps(), reader.from(), reader.to(), k));
  before.compare(problem);
  return rep;
}

// ---------------------------------------------------------------------------
// The walk

// Does the loaded module charge after copy_vma()? It does where it could not
// resolve vm_committed_as (kernels without CONFIG_KALLSYMS_ALL, and the test
// build that pretends so), and its load line lists the symbol as absent.
bool read_module_charges_after_copy() {
  const int size = ::klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, nullptr, 0);
  if (size <= 0) return false;
  std::string log(static_cast<std::size_t>(size), '\0');
  const int got = ::klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log.data(), size);
  if (got <= 0) return false;
  log.resize(static_cast<std::size_t>(got));
  const auto line = log.rfind("dontunmap: resolved via kallsyms_lookup_name");
  if (line == std::string::npos) return false;
  const auto end = log.find('\n', line);
  const auto absent = log.find("; absent:", line);
  return absent != std::string::npos && absent < end &&
         log.substr(absent, end - absent).find(" vm_committed_as") != std::string::npos;
}

// The module is loaded once per guest boot: its load line is read once.
bool module_charges_after_copy() {
  static const bool after_copy = read_module_charges_after_copy();
  return after_copy;
}

// Skips the test where the kernel has no fault injection (or the module is
// missing and a walk needs it); called from SetUp().
void require_fault_injection(const fault_knobs &knobs, bool module) {
  if (::access(kFailNth, F_OK)) GTEST_SKIP() << "no " << kFailNth << " (CONFIG_FAULT_INJECTION)";
  if (!knobs.usable()) GTEST_SKIP() << knobs.why() << " (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC)";
  if (module && ::access(DONTUNMAP_DEVICE, F_OK)) {
    if (module_required()) FAIL() << DONTUNMAP_DEVICE << " is missing";
    GTEST_SKIP() << DONTUNMAP_DEVICE << " is missing";
  }
}

class AllocationFailureWalk
    : public ::testing::TestWithParam<std::tuple<way, const walk_scenario *>> {
 protected:
  void SetUp() override { require_fault_injection(knobs_, std::get<0>(GetParam()) != way::native); }
  fault_knobs knobs_;
  overcommit_guard overcommit_;  // a scenario's child may set it
};

TEST_P(AllocationFailureWalk, EveryInjectedFailureLeavesTheMoveWholeOrUndone) {
  const auto [b, sc] = GetParam();
  const bool after_copy = b != way::native && module_charges_after_copy();
  if (sc->overcommit_never) overcommit_.changed_elsewhere();
  const auto reference = attempt_in_child(b, *sc, 0, after_copy);
  overcommit_.restore();
  ASSERT_TRUE(reference) << "the child died";
  ASSERT_STREQ(reference->problem, "") << "without injection";
  if (sc->overcommit_never)
    ASSERT_EQ(reference->err, ENOMEM) << "CommitLimit did not refuse the move's charge";
  else if (reference->err)
    GTEST_SKIP() << to_string(b) << " refuses this move (" << std::strerror(reference->err) << ")";

  int points = 0, moved = 0, enomem = 0, left = 0;
  for (int n = 1; n <= kMaxPoints; ++n) {
    if (sc->overcommit_never) overcommit_.changed_elsewhere();
    const auto rep = attempt_in_child(b, *sc, n, after_copy);
    overcommit_.restore();
    ASSERT_TRUE(rep) << "the child died at n=" << n;
    if (!rep->injected) {
      EXPECT_EQ(rep->err, reference->err) << "n=" << n << " ran uninjected";
      EXPECT_STREQ(rep->problem, "") << "n=" << n << " ran uninjected";
      break;
    }
    ++points;
    if (rep->err == 0)
      ++moved;
    else if (rep->err == ENOMEM)
      ++enomem;
    left += rep->left_destination;
    EXPECT_STREQ(rep->problem, "") << "allocation " << n << " failed; the call gave "
                                   << (rep->err ? std::strerror(rep->err) : "success");
    if (rep->err != 0 && rep->err != ENOMEM && rep->err != reference->err)
      ADD_FAILURE() << "allocation " << n << " failed; the call gave " << std::strerror(rep->err)
                    << ", not ENOMEM";
  }
  ASSERT_LT(points, kMaxPoints) << "the walk did not end";
  std::printf(
      "failwalk: %s %s%s: %d injection points walked: %d moved anyway, %d ENOMEM%s, reference %s\n",
      sc->name, to_string(b), after_copy ? " (charge after copy_vma)" : "", points, moved, enomem,
      left ? strf(" (%d left the empty destination mapped)", left).c_str() : "",
      reference->err ? std::strerror(reference->err) : "moved");
  std::fflush(stdout);
}

std::string walk_name(
    const ::testing::TestParamInfo<std::tuple<way, const walk_scenario *>> &info) {
  return std::string(std::get<1>(info.param)->name) + "_" + to_string(std::get<0>(info.param));
}

std::vector<const walk_scenario *> all_scenarios() {
  std::vector<const walk_scenario *> v;
  for (const auto &s : kScenarios) v.push_back(&s);
  return v;
}

// The batch ioctl adds its own allocations and copies around the same
// engine: four scenarios cover them, the engine's paths are walked above.
std::vector<const walk_scenario *> batch_scenarios() {
  std::vector<const walk_scenario *> v;
  for (const auto &s : kScenarios)
    for (const char *name : {"PopulatedPrivateAnon", "FixedOverAMapping", "MultiVmaFixed",
                             "UserfaultfdSourceWithEventRemap"})
      if (std::strcmp(s.name, name) == 0) v.push_back(&s);
  return v;
}

INSTANTIATE_TEST_SUITE_P(, AllocationFailureWalk,
                         ::testing::Combine(::testing::Values(way::module, way::native),
                                            ::testing::ValuesIn(all_scenarios())),
                         walk_name);
INSTANTIATE_TEST_SUITE_P(Batch, AllocationFailureWalk,
                         ::testing::Combine(::testing::Values(way::batch),
                                            ::testing::ValuesIn(batch_scenarios())),
                         walk_name);

class BatchAllocationFailureWalk : public ::testing::Test {
 protected:
  void SetUp() override { require_fault_injection(knobs_, true); }
  fault_knobs knobs_;
};

TEST_F(BatchAllocationFailureWalk, AFailedElementLeavesTheOnesBeforeItMovedAndTheRestUntouched) {
  const auto reference = in_child([] { return attempt_batch(0); });
  ASSERT_TRUE(reference) << "the child died";
  ASSERT_STREQ(reference->problem, "") << "without injection";
  ASSERT_EQ(reference->err, 0) << "without injection: " << std::strerror(reference->err);

  int points = 0, moved = 0, failed_at[kBatchElements] = {};
  for (int n = 1; n <= kMaxPoints; ++n) {
    const auto rep = in_child([n] { return attempt_batch(n); });
    ASSERT_TRUE(rep) << "the child died at n=" << n;
    if (!rep->injected) {
      EXPECT_EQ(rep->err, 0) << "n=" << n << " ran uninjected";
      EXPECT_STREQ(rep->problem, "") << "n=" << n << " ran uninjected";
      break;
    }
    ++points;
    if (rep->err == 0)
      ++moved;
    else if (rep->completed >= 0 && rep->completed < kBatchElements)
      ++failed_at[rep->completed];
    EXPECT_STREQ(rep->problem, "") << "allocation " << n << " failed; the call gave "
                                   << (rep->err ? std::strerror(rep->err) : "success")
                                   << " with " << rep->completed << " elements moved";
    if (rep->err != 0 && rep->err != ENOMEM)
      ADD_FAILURE() << "allocation " << n << " failed; the call gave " << std::strerror(rep->err)
                    << ", not ENOMEM";
  }
  ASSERT_LT(points, kMaxPoints) << "the walk did not end";
  // Where the failures stop the batch varies from boot to boot on a debug
  // kernel (on 7.3-debug: element 1 in three runs of four, element 2 in
  // one), as does how many failed allocations a move rides out: the
  // figures are printed, and every outcome is checked above.
  std::printf(
      "failwalk: BatchOfThree batch: %d injection points walked: %d moved anyway, ENOMEM at "
      "element 0/1/2: %d/%d/%d\n",
      points, moved, failed_at[0], failed_at[1], failed_at[2]);
  std::fflush(stdout);
}

}  // namespace
}  // namespace dontunmap::test
