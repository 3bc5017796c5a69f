// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-stress: a seeded, bounded concurrency stress of DONTUNMAP moves.
// Worker threads move slots of memory back and forth between two fixed
// homes (and sometimes to an address the kernel picks) while other workers
// write, verify, madvise, mprotect, mlock, unmap and fork; a userfaultfd
// handler serves the faults on the emptied sources; khugepaged, ksmd and
// compaction run against all of it. A model of every page says what it must
// hold, and every check compares whole pages against it.
//
// The pieces: stress_model.cpp (page contents, comparison, the checks, the
// failure record), stress_ops.cpp (the workers' loop and their operations,
// with stress_move.cpp for the moves and stress_fork.cpp for fork),
// stress_uffd.cpp (the userfaultfd handler, the compactor, the final
// check), stress_system.cpp (sysfs knobs, signals, the gauges) and
// stress.cpp (options, setup, the run, the summary).
#pragma once

#include <dontunmap/dontunmap.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dontunmap::stress {

struct options {
  std::uint64_t seed = 1;
  double seconds = 30;
  std::uint64_t ops = 1'000'000;
  unsigned threads = 4;
  unsigned slots = 16;
  enum class which { module, native, automatic } backend = which::automatic;
  bool keep_system = false;               // no sysfs knob, no compaction
  std::uint64_t commit_tolerance_kb = 0;  // Committed_AS slack (a busy host needs some)
  bool verbose = false;
  bool trace = false;  // every operation on a slot, on stderr
};

// ---------------------------------------------------------------------------
// Randomness: every thread has its own stream, derived from --seed.

std::uint64_t mix64(std::uint64_t z);

class rng {
 public:
  rng(std::uint64_t seed, std::uint64_t stream);
  std::uint64_t next();
  // Uniform in [0, n); n > 0.
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  // True with probability 1/n.
  bool one_in(std::uint64_t n) { return below(n) == 0; }

 private:
  std::uint64_t s_[4];
};

// ---------------------------------------------------------------------------
// The model

inline constexpr std::uint8_t kAway = 2;  // page_state::loc: at the slot's away address

// One page of a slot. Its data is in home `loc` (or away); the other home's
// copy of this page index is a spare page: absent (shadow 0) or filled by
// the userfaultfd handler with the content of tag shadow[h].
struct page_state {
  std::uint32_t gen = 0;             // 0: zeros; else the data of this generation
  bool maybe_zero = false;           // MADV_FREE since the last write: gen's data or zeros
  std::atomic<std::uint8_t> loc{0};  // read by the handler too
  std::uint32_t shadow[2] = {0, 0};  // per home, while that home is spare for this page
};

// Served spare pages that the handler filled with the zero page, not a copy
// (userfaultfd unavailable: every spare page read is the zero page).
inline constexpr std::uint32_t kZeroTag = 0xffff'ffff;

struct slot {
  std::mutex mu;
  std::uint32_t id = 0;
  std::size_t pages = 0;
  char *home[2] = {nullptr, nullptr};
  bool mapped[2] = {true, true};
  char *away = nullptr;               // the data's address while every loc == kAway
  bool thp = false;                   // PMD sized and aligned, MADV_HUGEPAGE
  bool mergeable = false;             // MADV_MERGEABLE, duplicate content in even generations
  bool maybe_locked = false;          // mlocked since the last munlock of the whole slot
  std::atomic<std::uint32_t> tag{1};  // what the handler serves now; bumped by each move
  std::atomic<bool> touching{false};  // a worker reads a spare page of this slot
  std::unique_ptr<page_state[]> pg;

  std::size_t len(std::size_t page) const { return pages * page; }
  char *where(std::uint8_t loc, std::size_t i, std::size_t page) const {
    return (loc == kAway ? away : home[loc]) + i * page;
  }
  char *data(std::size_t i, std::size_t page) const {
    return where(pg[i].loc.load(std::memory_order_relaxed), i, page);
  }
};

// What a page must hold.
struct expect {
  enum class kind : std::uint8_t { zero, data, dup, shadow } k = kind::zero;
  std::uint32_t slot = 0;
  std::uint32_t page = 0;
  std::uint32_t value = 0;  // data, dup: the generation; shadow: the tag
  std::uint8_t home = 0;    // shadow: the home it was served in
  bool or_zero = false;     // MADV_FREE: the content, or zeros
};

struct counters {
  std::atomic<std::uint64_t> ops{0}, moves{0}, partial_moves{0}, away_moves{0}, hinted_moves{0},
      moves_into_hole{0}, register_before{0}, register_after{0}, multi_fallbacks{0}, batched_moves{0},
      batched_halves{0}, child_moves{0},
      forks{0}, uffd_faults{0}, uffd_expected{0}, uffd_retries{0}, writes{0}, mem_writes{0},
      forced_writes{0}, pages_verified{0}, spare_touches{0}, dontneed{0}, madv_free{0}, cold{0},
      pageout{0}, hugepage{0}, collapse_ok{0}, collapse_failed{0}, populate{0}, spare_dontneed{0},
      mprotects{0}, mlocks{0}, mlock_refused{0}, munlocks{0}, home_unmaps{0}, home_remaps{0},
      neutral{0}, sweeps{0}, compactions{0};
};

// Everything the threads share.
struct world {
  options opt;
  std::size_t page = 0;
  std::size_t pmd = 0;        // THP size
  std::uint64_t run_key = 0;  // content keys depend on the seed
  std::unique_ptr<slot[]> slots;
  std::size_t nslots = 0;
  char *window = nullptr;  // the homes live here, a PROT_NONE reservation around them
  std::size_t window_len = 0;
  std::size_t stride = 0;  // bytes from one home's area to the next
  std::unique_ptr<dontunmap::remapper> remapper;
  dontunmap::backend backend = dontunmap::backend::native;
  bool multi_vma = false;                // the backend moves a FIXED range spanning VMAs (6.17)
  int uffd = -1;                         // MISSING mode on every spare page; -1: none
  int uffd_stop = -1;                    // eventfd that ends the handler
  int mem_fd = -1;                       // /proc/self/mem
  int pagemap_fd = -1;                   // /proc/self/pagemap
  std::vector<unsigned char> uffd_page;  // the handler's copy buffer
  counters c;
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};

  bool uffd_on() const { return uffd >= 0; }
  bool in_window(const void *p) const {
    const auto *c = static_cast<const char *>(p);
    return c >= window && c < window + window_len;
  }
};

// A worker's own scratch, allocated before the run (the run allocates
// nothing, so that the gauges see only what the moves did).
struct scratch {
  explicit scratch(const world &w);
  std::vector<unsigned char> page_buf;
  std::vector<std::uint64_t> pagemap;
  std::vector<unsigned char> mincore;
};

// The workers' start and end: each arrives once its scratch is allocated
// and waits until the main thread opens the gate; finished() counts the
// ends. Workers end without being joined, so that their stacks stay mapped
// until the gauges have been read.
class start_gate {
 public:
  explicit start_gate(unsigned workers) : workers_(workers) {}
  void arrive_and_wait();
  void wait_arrived();
  void open();
  void finished();
  // Waits until every worker has finished, or `timeout` passed.
  bool wait_finished(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned workers_;
  unsigned arrived_ = 0;
  unsigned finished_ = 0;
  bool open_ = false;
};

// ---------------------------------------------------------------------------
// stress_system.cpp

// The knobs the run tunes (as root, unless --keep-system): khugepaged scans
// without sleeping and collapses only fully populated ranges
// (max_ptes_none 0), ksmd runs, THP is at least "madvise"; and whether the
// compactor may write /proc/sys/vm/compact_memory. Each knob changed is put
// back by restore_knobs(): at exit, when the tuning goes, and from the
// crash handler.
class system_tuning {
 public:
  system_tuning() = default;
  system_tuning(const system_tuning &) = delete;
  system_tuning &operator=(const system_tuning &) = delete;
  ~system_tuning() { restore_knobs(); }

  void apply(bool allowed);
  static void restore_knobs() noexcept;

  std::string summary;  // what the run changed
  bool ksm = false;
  bool compaction = false;

 private:
  void note(const char *name, const std::optional<std::string> &value);
};
inline void restore_knobs() noexcept { system_tuning::restore_knobs(); }
// "always [madvise] never" -> "madvise"; anything else as it is.
std::string selected(const std::string &text);
// SIGINT and SIGTERM stop the run (it then ends normally); a crash puts
// the knobs back first.
void install_signal_handlers(world &w);
// The signal that stopped the run, or 0.
int stop_signal();

// The number after `name` at the start of a line ("name value", "name:
// value"; for slabinfo the active objects), and the number a file holds.
std::optional<std::uint64_t> line_value(const char *path, std::string_view name);
std::optional<std::uint64_t> file_value(const char *path);

// What is read before the slots are mapped and after they are all gone.
struct gauges {
  std::optional<std::uint64_t> committed_kb, vmlck_kb, vmpte_kb, vma_objs;
  std::size_t map_count = 0;
  std::uint64_t heap_kb = 0, stack_kb = 0;  // ours, which malloc and the main stack grow
};
// After: the vm_area_struct slab is given time to come down to before's.
gauges measure(const gauges *before = nullptr);
void print_gauges(const char *when, const gauges &g);
long long delta(const std::optional<std::uint64_t> &a, const std::optional<std::uint64_t> &b);

// What the kernel did meanwhile, to show the run reached what it aims at.
struct activity {
  static constexpr const char *kVmstat[] = {"thp_fault_alloc", "thp_collapse_alloc",
                                            "thp_split_pmd", "pgmigrate_success",
                                            "compact_success"};
  std::optional<std::uint64_t> vmstat[std::size(kVmstat)];
  std::optional<std::uint64_t> collapsed, ksm_scans;
  static activity read();
};
void print_activity(const activity &before, const activity &after, std::uint64_t peak_thp_kb,
                    std::uint64_t peak_sharing);

// Grows the main thread's stack now, so that its growth during the run
// does not show in Committed_AS.
[[gnu::noinline]] void grow_stack();

// ---------------------------------------------------------------------------
// stress_model.cpp

// The model's expectation for page i's data, and for the spare copy in home h.
expect expected_data(const slot &s, std::size_t i);
expect expected_spare(const world &w, const slot &s, std::uint8_t h, std::size_t i,
                      std::uint32_t tag);
// Whether the handler serves (s, h, i) at `tag` with the zero page.
bool served_as_zero(const world &w, std::uint32_t slot, std::uint8_t h, std::size_t i,
                    std::uint32_t tag);

void fill_page(const world &w, const expect &e, void *dst);
// Index of the first 64-bit word that differs, or -1 when the page matches.
long first_mismatch(const world &w, const expect &e, const void *page);
std::string describe(const expect &e);
std::string describe_seen(const world &w, const void *page);

// With --trace: one line on stderr per operation (printf-style).
void trace(const world &w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Records the first failure (later ones are counted, not kept) and stops
// the run. printf-style.
void fail(world &w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The first failure's text, and how many there were.
std::string first_failure();
std::uint64_t failure_count();

// Checks page i of the data against the model, at its address, by loads
// (or, with via_mem, through /proc/self/mem); false after fail().
bool check_data_page(world &w, slot &s, std::size_t i, scratch &sc, bool via_mem, const char *when);
// Checks the spare pages of home h that the model says are absent with
// /proc/self/pagemap (no fault); false after fail().
bool check_spare_absent(world &w, slot &s, std::uint8_t h, scratch &sc, const char *when);
// Every data page, every served spare page, and pagemap for the absent
// ones. in_child: the spare homes are no longer registered (a fork child),
// so absent spare pages are read instead and must be zeros.
bool check_slot(world &w, slot &s, scratch &sc, bool in_child, const char *when);

// ---------------------------------------------------------------------------
// stress_ops.cpp

// One worker's whole run: operations on random slots until w.stop.
void worker(world &w, unsigned index, start_gate &gate);
// After the run: every slot checked whole, every spare page touched once
// (the handler still serving). False after fail().
bool final_check(world &w);
// Serves missing faults on the spare pages until w.uffd_stop is signalled.
void uffd_handler(world &w);
// Compacts memory now and then (root, not --keep-system) until w.stop.
void compactor(world &w);
// The initial layout of slot s: data in home 0 (generation 1, or 2 for
// mergeable slots; some pages left unwritten), home 1 an empty registered
// placeholder. False after fail().
bool build_slot(world &w, slot &s, rng &r);
// UFFDIO_REGISTER (MISSING) of [addr, addr + len); errno or 0.
int uffd_register(const world &w, void *addr, std::size_t len);

}  // namespace dontunmap::stress
