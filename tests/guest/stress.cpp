// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-stress: DONTUNMAP moves under concurrency, checked against a
// model of every page (stress.hpp describes the pieces).
//
//   dontunmap-stress [--seed N] [--seconds S] [--ops N] [--threads N]
//                    [--slots N] [--backend module|native|auto]
//                    [--keep-system] [--commit-tolerance KB] [--verbose] [--trace]
//
//   --seed N        every thread's random stream and every page's content
//                   derive from it (default 1); the interleaving of the
//                   threads is the scheduler's, so a seed names a mix of
//                   operations, not a replayable schedule
//   --seconds S     run for S seconds (default 30) ...
//   --ops N         ... or until N operations are done (default 1000000)
//   --threads N     worker threads (default 4), besides the userfaultfd
//                   handler and the compaction thread
//   --slots N       slots of memory (default 16: about 19 MiB of data; half
//                   of them one PMD, THP-backed, the others 1-192 pages at
//                   misaligned addresses; each has two homes, so with the
//                   spare pages served and fork children's copies the run
//                   stays under 64 MiB)
//   --backend B     module: /dev/dontunmap; native: the kernel's own mremap();
//                   auto (default): the module if its device opens, else
//                   native. (Not the library's "automatic", which would send
//                   every private anonymous move to the kernel's own mremap.)
//   --keep-system   touch no sysfs knob and start no compaction (for a shared
//                   machine: ksmd and khugepaged would scan everyone's
//                   memory); without it, as root, khugepaged scans without
//                   sleeping and collapses only fully populated ranges, ksmd
//                   runs, THP is at least "madvise", and
//                   /proc/sys/vm/compact_memory is written every second. Every
//                   knob is put back at exit, also on SIGINT/SIGTERM and on a
//                   crash.
//   --commit-tolerance KB
//                   Committed_AS slack (default 0: a quiet guest, where
//                   nothing else commits memory; a busy host needs some)
//   --verbose       the slots' layout
//   --trace         every operation on a slot, and every userfaultfd fault,
//                   one line each on stderr (slows the run down)
//
// Before the slots are mapped and after they are all unmapped again it
// reads Committed_AS, the map count, VmLck, VmPTE and the vm_area_struct
// slab's objects in use (the cache shrunk first; counted where it is not
// merged with other caches). The map count must come back exactly, and the
// slab must not have grown; Committed_AS exactly up to what our own [heap]
// and [stack] grew by (the run allocates nothing else: malloc has one
// arena, every thread's buffers exist before the first reading and every
// thread lives until after the last), and VmLck to zero change, each unless
// the running kernel's own mremap() is known to leak it (expectations.cpp:
// source_keeps_vm_account, locked_vm_unchanged). Where the kernel has
// kmemleak, a scan at the end must find nothing that names the module.
//
// The last line is `stress: PASS seed=N threads=T ops=O moves=M forks=F
// uffd_faults=U seconds=S map_count_delta=D committed_delta_kb=C` or the same
// with FAIL and the first failure after a colon. Exit status 0 on pass, 1 on
// failure, 77 when the backend is unavailable, 2 on a usage error.
#include "stress.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <malloc.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "expectations.hpp"
#include "procfs.hpp"
#include "text.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace dontunmap::stress {
namespace {

namespace procfs = test::procfs;
using test::parse_u64;

// The slots' window, far below the mmap base (top-down allocations never
// reach it, bottom-up ones start above it), so that a hole the run leaves
// in it is never given to anyone else.
constexpr std::uintptr_t kWindowBase = 0x2400'0000'0000;
constexpr std::size_t kMaxSmallPages = 192;
// After the run is told to stop, workers that have not finished by then
// are stuck (a fault nobody serves, a call that never returns).
constexpr auto kStopGrace = std::chrono::seconds(120);
constexpr auto kProgressInterval = std::chrono::seconds(10);

// ---------------------------------------------------------------------------
// Options

std::optional<options> parse(int argc, char **argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    std::uint64_t v = 0;
    if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--trace") {
      o.trace = true;
    } else if (a == "--keep-system") {
      o.keep_system = true;
    } else if (a == "--seed" && has_value && parse_u64(argv[i + 1], v)) {
      o.seed = v;
      ++i;
    } else if (a == "--seconds" && has_value && parse_u64(argv[i + 1], v) && v > 0) {
      o.seconds = static_cast<double>(v);
      ++i;
    } else if (a == "--ops" && has_value && parse_u64(argv[i + 1], v) && v > 0) {
      o.ops = v;
      ++i;
    } else if (a == "--threads" && has_value && parse_u64(argv[i + 1], v) && v > 0 && v <= 64) {
      o.threads = static_cast<unsigned>(v);
      ++i;
    } else if (a == "--slots" && has_value && parse_u64(argv[i + 1], v) && v > 0 && v <= 256) {
      o.slots = static_cast<unsigned>(v);
      ++i;
    } else if (a == "--commit-tolerance" && has_value && parse_u64(argv[i + 1], v)) {
      o.commit_tolerance_kb = v;
      ++i;
    } else if (a == "--backend" && has_value) {
      const std::string_view b = argv[++i];
      if (b == "module")
        o.backend = options::which::module;
      else if (b == "native")
        o.backend = options::which::native;
      else if (b == "auto")
        o.backend = options::which::automatic;
      else
        return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return o;
}

void usage() {
  std::fprintf(stderr,
               "usage: dontunmap-stress [--seed N] [--seconds S] [--ops N] [--threads N] "
               "[--slots N]\n"
               "                        [--backend module|native|auto] [--keep-system]\n"
               "                        [--commit-tolerance KB] [--verbose] [--trace]\n");
}

// ---------------------------------------------------------------------------
// The run

struct backend_choice {
  std::unique_ptr<remapper> r;
  backend which = backend::native;
  bool multi_vma = false;
  std::string text;     // for the header
  std::string missing;  // why there is none
};

backend_choice choose_backend(options::which want) {
  backend_choice c;
  if (want != options::which::native) {
    auto dev = device::open();
    if (dev) {
      auto info = dev->info();
      auto r = remapper::create(backend::module);
      if (r && info) {
        c.r = std::make_unique<remapper>(std::move(*r));
        c.which = backend::module;
        c.multi_vma = info->features & DONTUNMAP_FEAT_MULTI_VMA;
        char buf[96];
        std::snprintf(buf, sizeof(buf), "module (ABI %u, features 0x%llx)", info->abi_version,
                      static_cast<unsigned long long>(info->features));
        c.text = buf;
        return c;
      }
    }
    if (want == options::which::module) {
      c.missing = std::string(DONTUNMAP_DEVICE) + ": " +
                  (dev ? "INFO failed" : dev.error().message()) + " (is the module loaded?)";
      return c;
    }
  }
  const native_support &n = probe_native();
  if (!n.private_anon) {
    c.missing = "the kernel's own mremap() refuses MREMAP_DONTUNMAP (before 5.7)";
    return c;
  }
  auto r = remapper::create(backend::native);
  if (!r) {
    c.missing = "native remapper: " + r.error().message();
    return c;
  }
  c.r = std::make_unique<remapper>(std::move(*r));
  c.which = backend::native;
  c.multi_vma = n.aligned_lengths;  // the same release (6.17) as multi-VMA moves
  c.text = want == options::which::automatic ? "native (no module)" : "native";
  return c;
}

std::size_t thp_pmd_size() {
  const auto v = file_value("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  return v ? static_cast<std::size_t>(*v) : 0;
}

// The slots' sizes, kinds and homes. Even slots are one PMD, aligned and
// THP-backed where THP exists; odd ones are small and misaligned. Every
// third is mergeable.
void lay_out(world &w, bool thp_ok, std::size_t area) {
  rng r(w.opt.seed, 0x5107);
  const std::size_t area_pages = area / w.page;
  for (std::size_t k = 0; k < w.nslots; ++k) {
    slot &s = w.slots[k];
    s.id = static_cast<std::uint32_t>(k);
    s.thp = thp_ok && k % 2 == 0;
    s.mergeable = k % 3 == 1;
    s.pages = k % 2 == 0 ? area_pages : 1 + r.below(std::min(kMaxSmallPages, area_pages - 1));
    for (int h = 0; h < 2; ++h) {
      const std::size_t offset = s.pages == area_pages ? 0 : r.below(area_pages - s.pages + 1);
      s.home[h] = w.window + (2 * k + h) * w.stride + offset * w.page;
    }
    s.pg = std::make_unique<page_state[]>(s.pages);
  }
}

// The PROT_NONE reservation the homes are mapped over: the gaps between
// them stay in it, so no two homes' VMAs can ever merge.
bool map_window(world &w) {
  void *p = ::mmap(w.window, w.window_len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) {
    fail(w, "mmap of the window at %p: %s", static_cast<void *>(w.window), std::strerror(errno));
    return false;
  }
  if (p != w.window) {
    ::munmap(p, w.window_len);
    fail(w, "the window at %p is taken", static_cast<void *>(w.window));
    return false;
  }
  return true;
}

void unmap_everything(world &w, bool window_mapped) {
  for (std::size_t k = 0; k < w.nslots; ++k)
    if (w.slots[k].away) ::munmap(w.slots[k].away, w.slots[k].len(w.page));
  if (window_mapped) ::munmap(w.window, w.window_len);
}

void print_counts(const world &w) {
  const counters &c = w.c;
  const auto n = [](const std::atomic<std::uint64_t> &a) {
    return static_cast<unsigned long long>(a.load());
  };
  std::printf(
      "stress: moves=%llu (partial %llu, away %llu, hinted %llu, into a hole %llu; source "
      "registered before %llu, after %llu; multi-VMA refusals %llu; as a batch of one %llu, of "
      "two halves %llu) child_moves=%llu\n",
      n(c.moves), n(c.partial_moves), n(c.away_moves), n(c.hinted_moves), n(c.moves_into_hole),
      n(c.register_before), n(c.register_after), n(c.multi_fallbacks), n(c.batched_moves),
      n(c.batched_halves), n(c.child_moves));
  std::printf(
      "stress: writes=%llu (/proc/self/mem %llu, forced into PROT_READ %llu) pages_verified=%llu "
      "spare_touches=%llu uffd_faults=%llu (expected at least %llu, EAGAIN retries %llu)\n",
      n(c.writes), n(c.mem_writes), n(c.forced_writes), n(c.pages_verified), n(c.spare_touches),
      n(c.uffd_faults), n(c.uffd_expected), n(c.uffd_retries));
  std::printf(
      "stress: madvise DONTNEED=%llu FREE=%llu COLD=%llu PAGEOUT=%llu (NO)HUGEPAGE=%llu "
      "COLLAPSE=%llu/%llu failed POPULATE_WRITE=%llu spare DONTNEED=%llu; mprotect=%llu "
      "mlock=%llu (refused %llu) munlock=%llu home unmaps=%llu remaps=%llu neutral=%llu "
      "sweeps=%llu compactions=%llu\n",
      n(c.dontneed), n(c.madv_free), n(c.cold), n(c.pageout), n(c.hugepage), n(c.collapse_ok),
      n(c.collapse_failed), n(c.populate), n(c.spare_dontneed), n(c.mprotects), n(c.mlocks),
      n(c.mlock_refused), n(c.munlocks), n(c.home_unmaps), n(c.home_remaps), n(c.neutral),
      n(c.sweeps), n(c.compactions));
}

int run(const options &o) {
  world w;
  w.opt = o;
  w.page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  w.run_key = mix64(o.seed ^ 0x7374'7265'7373'0000ULL);
  install_signal_handlers(w);

  struct utsname u {};
  ::uname(&u);
  const std::size_t pmd = thp_pmd_size();
  const bool thp_ok = pmd && pmd <= (std::size_t(4) << 20) && pmd / w.page > kMaxSmallPages;
  const std::size_t area = thp_ok ? pmd : std::size_t(2) << 20;
  w.pmd = area;
  w.stride = 2 * area;

  auto chosen = choose_backend(o.backend);
  if (!chosen.r) {
    std::printf("stress: SKIP seed=%" PRIu64 ": %s\n", o.seed, chosen.missing.c_str());
    return 77;
  }
  w.remapper = std::move(chosen.r);
  w.backend = chosen.which;
  w.multi_vma = chosen.multi_vma;

  // userfaultfd: MISSING mode, no features (no fork, remap or unmap events).
  std::string uffd_text = "yes";
  w.uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (w.uffd >= 0) {
    uffdio_api api{};
    api.api = UFFD_API;
    if (::ioctl(w.uffd, UFFDIO_API, &api) != 0) {
      uffd_text = std::string("no (UFFDIO_API: ") + std::strerror(errno) + ")";
      ::close(w.uffd);
      w.uffd = -1;
    }
  } else {
    uffd_text = std::string("no (") + std::strerror(errno) + ")";
  }
  w.uffd_stop = ::eventfd(0, EFD_CLOEXEC);
  w.mem_fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  w.pagemap_fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (w.mem_fd < 0 || w.pagemap_fd < 0 || w.uffd_stop < 0) {
    std::printf("stress: FAIL seed=%" PRIu64 ": cannot open /proc/self/mem or pagemap: %s\n",
                o.seed, std::strerror(errno));
    return 1;
  }

  system_tuning tuning;
  tuning.apply(!o.keep_system);

  // The model exists before the gauges are read; the window is mapped after.
  w.nslots = o.slots;
  w.window = reinterpret_cast<char *>(kWindowBase);
  w.window_len = w.nslots * 2 * w.stride;
  w.slots = std::make_unique<slot[]>(w.nslots);
  lay_out(w, thp_ok, area);
  w.uffd_page.resize(w.page);
  std::size_t data_pages = 0;
  for (std::size_t k = 0; k < w.nslots; ++k) data_pages += w.slots[k].pages;

  const auto thp_mode = procfs::read_text("/sys/kernel/mm/transparent_hugepage/enabled");
  std::printf(
      "stress: kernel %s, page %zu, THP %s (PMD %zu kB), backend %s, multi-VMA moves %s, "
      "userfaultfd %s\n",
      u.release, w.page, thp_mode ? selected(*thp_mode).c_str() : "absent", pmd / 1024,
      chosen.text.c_str(), w.multi_vma ? "yes" : "no", uffd_text.c_str());
  std::printf("stress: system: %s\n",
              tuning.summary.empty() ? "unchanged" : tuning.summary.c_str());
  std::printf("stress: seed %" PRIu64 ", %u threads, %zu slots (%zu kB of data), %.0f s or %" PRIu64
              " ops\n",
              o.seed, o.threads, w.nslots, data_pages * w.page / 1024, o.seconds, o.ops);
  if (o.verbose)
    for (std::size_t k = 0; k < w.nslots; ++k)
      std::printf(
          "stress: slot %zu: %zu pages%s%s, homes +0x%zx +0x%zx\n", k, w.slots[k].pages,
          w.slots[k].thp ? ", THP" : "", w.slots[k].mergeable ? ", mergeable" : "",
          static_cast<std::size_t>(w.slots[k].home[0] - reinterpret_cast<char *>(kWindowBase)),
          static_cast<std::size_t>(w.slots[k].home[1] - reinterpret_cast<char *>(kWindowBase)));
  const auto keep_account =
      test::expected_behaviour(test::rule::source_keeps_vm_account, w.backend);
  const auto locked_vm = test::expected_behaviour(test::rule::locked_vm_unchanged, w.backend);
  std::fflush(stdout);

  // One malloc arena: a thread's first allocation would otherwise map one.
  ::mallopt(M_ARENA_MAX, 1);
  start_gate gate(o.threads);
  std::vector<std::thread> threads;
  threads.reserve(o.threads + 2);
  for (unsigned i = 0; i < o.threads; ++i)
    threads.emplace_back(worker, std::ref(w), i, std::ref(gate));
  if (w.uffd_on()) threads.emplace_back(uffd_handler, std::ref(w));
  if (tuning.compaction) threads.emplace_back(compactor, std::ref(w));
  gate.wait_arrived();
  grow_stack();

  const activity act_before = activity::read();
  const gauges before = measure();
  print_gauges("before:", before);
  std::fflush(stdout);

  rng build_rng(o.seed, 0xb011d);
  const bool window_mapped = map_window(w);
  for (std::size_t k = 0; window_mapped && k < w.nslots && !w.failed; ++k)
    build_slot(w, w.slots[k], build_rng);

  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(o.seconds));
  auto next_progress = t0 + kProgressInterval;
  std::uint64_t peak_thp_kb = 0, peak_sharing = 0;
  gate.open();
  bool finished = false;
  std::optional<std::chrono::steady_clock::time_point> stop_at;
  while (!finished) {
    finished = gate.wait_finished(std::chrono::milliseconds(500));
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) w.stop.store(true);
    if (w.stop.load() && !stop_at) stop_at = now;
    if (!finished && stop_at && now - *stop_at > kStopGrace) break;
    peak_thp_kb =
        std::max(peak_thp_kb, line_value("/proc/self/smaps_rollup", "AnonHugePages").value_or(0));
    if (tuning.ksm)
      peak_sharing =
          std::max(peak_sharing, file_value("/sys/kernel/mm/ksm/pages_sharing").value_or(0));
    if (now >= next_progress) {
      next_progress += kProgressInterval;
      std::printf("stress: %.0f s: ops=%llu moves=%llu forks=%llu uffd_faults=%llu\n",
                  std::chrono::duration<double>(now - t0).count(),
                  static_cast<unsigned long long>(w.c.ops.load()),
                  static_cast<unsigned long long>(w.c.moves.load()),
                  static_cast<unsigned long long>(w.c.forks.load()),
                  static_cast<unsigned long long>(w.c.uffd_faults.load()));
      std::fflush(stdout);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!finished) {
    fail(w,
         "workers still busy %lld s after the stop (a fault nobody serves, or a call that "
         "never returns)",
         static_cast<long long>(kStopGrace.count()));
    print_counts(w);
    std::printf("stress: FAIL seed=%" PRIu64 ": %s\n", o.seed, first_failure().c_str());
    std::fflush(stdout);
    restore_knobs();
    ::_exit(1);
  }

  if (!w.failed) final_check(w);
  if (!w.failed && w.c.uffd_faults.load() < w.c.uffd_expected.load())
    fail(w,
         "%llu touches of absent spare pages, but only %llu userfaultfd faults: a source "
         "lost its registration",
         static_cast<unsigned long long>(w.c.uffd_expected.load()),
         static_cast<unsigned long long>(w.c.uffd_faults.load()));
  unmap_everything(w, window_mapped);

  const gauges after = measure(&before);
  const activity act_after = activity::read();
  const std::uint64_t one = 1;
  (void)!::write(w.uffd_stop, &one, sizeof(one));
  w.stop.store(true);
  for (auto &t : threads) t.join();
  restore_knobs();

  if (stop_signal())
    std::printf("stress: stopped early by signal %s\n", ::strsignal(stop_signal()));
  print_counts(w);
  print_activity(act_before, act_after, peak_thp_kb, peak_sharing);
  print_gauges("after: ", after);

  // The gauges.
  const long long map_delta =
      static_cast<long long>(after.map_count) - static_cast<long long>(before.map_count);
  const long long commit_delta = delta(before.committed_kb, after.committed_kb);
  const long long own_kb = static_cast<long long>(after.heap_kb + after.stack_kb) -
                           static_cast<long long>(before.heap_kb + before.stack_kb);
  const long long commit_drift = commit_delta - own_kb;
  const long long lck_delta = delta(before.vmlck_kb, after.vmlck_kb);
  std::printf(
      "stress: deltas: map_count %+lld, Committed_AS %+lld kB (own [heap]+[stack] %+lld kB, "
      "drift %+lld kB, tolerance %" PRIu64
      " kB), VmLck %+lld kB, VmPTE %+lld kB, "
      "vm_area_struct %+lld\n",
      map_delta, commit_delta, own_kb, commit_drift, o.commit_tolerance_kb, lck_delta,
      delta(before.vmpte_kb, after.vmpte_kb), delta(before.vma_objs, after.vma_objs));
  if (!w.failed) {
    if (map_delta != 0)
      fail(w, "map_count %zu before, %zu after every stress mapping was unmapped", before.map_count,
           after.map_count);
    else if (std::llabs(commit_drift) > static_cast<long long>(o.commit_tolerance_kb)) {
      if (keep_account.allows_legacy())
        std::printf("stress: Committed_AS drift tolerated: %s\n", keep_account.why.c_str());
      else
        fail(w,
             "Committed_AS drifted by %+lld kB beyond our own [heap]/[stack] change "
             "(tolerance %" PRIu64 " kB)",
             commit_drift, o.commit_tolerance_kb);
    } else if (lck_delta != 0) {
      if (locked_vm.allows_legacy())
        std::printf("stress: VmLck drift tolerated: %s\n", locked_vm.why.c_str());
      else
        fail(w, "VmLck %+lld kB after everything was unmapped", lck_delta);
    } else if (before.vma_objs && after.vma_objs && *after.vma_objs > *before.vma_objs) {
      fail(w, "vm_area_struct objects in use: %" PRIu64 " before, %" PRIu64
           " after every stress mapping was unmapped and the slab shrunk",
           *before.vma_objs, *after.vma_objs);
    }
  }
  if (const auto leaks = procfs::kmemleak_reports_naming("dontunmap")) {
    std::printf("stress: kmemleak: %zu unreferenced objects naming the module\n", leaks->size());
    for (const auto &b : *leaks) std::printf("%s", b.c_str());
    if (!leaks->empty() && !w.failed) fail(w, "kmemleak reports the module's objects");
  } else {
    std::printf("stress: kmemleak: not in this kernel, leaks not checked\n");
  }

  std::printf("stress: %s seed=%" PRIu64
              " threads=%u ops=%llu moves=%llu forks=%llu "
              "uffd_faults=%llu seconds=%.1f map_count_delta=%lld committed_delta_kb=%lld%s%s\n",
              w.failed ? "FAIL" : "PASS", o.seed, o.threads,
              static_cast<unsigned long long>(std::min(w.c.ops.load(), o.ops)),
              static_cast<unsigned long long>(w.c.moves.load()),
              static_cast<unsigned long long>(w.c.forks.load()),
              static_cast<unsigned long long>(w.c.uffd_faults.load()), seconds, map_delta,
              commit_delta, w.failed ? ": " : "", w.failed ? first_failure().c_str() : "");
  if (failure_count() > 1)
    std::printf("stress: (%llu failures in all; the first is shown)\n",
                static_cast<unsigned long long>(failure_count()));
  return w.failed ? 1 : 0;
}

}  // namespace
}  // namespace dontunmap::stress

int main(int argc, char **argv) {
  const auto o = dontunmap::stress::parse(argc, argv);
  if (!o) {
    dontunmap::stress::usage();
    return 2;
  }
  return dontunmap::stress::run(*o);
}
