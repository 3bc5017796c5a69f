// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-fuzz: an ioctl fuzzer for /dev/dontunmap. Every field of struct
// dontunmap_remap is drawn random or adversarial, the struct itself is put
// where the call cannot read or write it, the ioctl number is wrong, and a
// second thread rewrites the struct (and unmaps its page) during the call.
// Where the module has DONTUNMAP_FEAT_BATCH, drawn calls are also made as
// elements of DONTUNMAP_IOC_REMAP_BATCH, after known-good moves, and batches
// with adversarial headers and failing elements are thrown at it.
// Each call's answer is compared with what it must be: the kernel's own
// mremap() run on the same layout in a forked child (exact where the
// running kernel has the newest semantics; elsewhere a difference must be
// one that difftest_rules.cpp's predicates explain, from the one table of
// expectations.cpp), and the outcome is checked: a move moved every page
// whole, a refused call changed nothing.
//
// The pieces: fuzz_pool.cpp (the mappings calls are aimed at),
// fuzz_gen.cpp (drawing a call), fuzz_check.cpp (what the call must answer,
// and what it must leave behind), fuzz_race.cpp (the racing thread),
// fuzz_batch.cpp (batches: drawing, placing, their whole-call rules and
// what they leave in memory) and fuzz.cpp (the driver).
#pragma once

#include <linux/dontunmap.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "procfs.hpp"
#include "text.hpp"

namespace dontunmap::fuzz {
namespace procfs = test::procfs;

// splitmix64, as difftest's: the same sequence everywhere, so that a seed
// names the same run on every machine.
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed ^ 0xf022'd0e5'5eed'a7a1ULL) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e37'79b9'7f4a'7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }  // [0, n)
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <std::size_t N>
  std::size_t weighted(const unsigned (&w)[N]) {
    unsigned total = 0;
    for (unsigned x : w) total += x;
    std::uint64_t r = below(total);
    for (std::size_t i = 0; i < N; ++i) {
      if (r < w[i]) return i;
      r -= w[i];
    }
    return N - 1;
  }
  template <typename T, std::size_t N>
  T pick(const T (&a)[N]) {
    return a[below(N)];
  }

 private:
  std::uint64_t s_;
};

std::size_t page();
using test::errname;  // "EINVAL"
using test::hex;
// A length rounded up to pages as mremap() does (0 when that wraps).
std::uint64_t page_align(std::uint64_t len);

// ---------------------------------------------------------------------------
// The machine

struct machine {
  std::uint64_t task_size = 0;  // probed: the first address no mapping may reach
  std::uint64_t stack_top = 0;  // end of [stack], for the report
  bool la57 = false;            // the CPU flag (x86_64)
};
// Probes TASK_SIZE with MAP_FIXED_NOREPLACE mappings of one page at ever
// higher addresses (EEXIST or success below it, ENOMEM above).
const machine &probe_machine();
const machine &env();
// old_addr as mremap() reads it: arm64 strips the pointer tag (bits
// 56-63), x86_64 without LAM changes nothing.
std::uint64_t untag(std::uint64_t addr);

// ---------------------------------------------------------------------------
// The arena: every mapping of the pool lies in it, far from the static
// binary, its heap, the stack and the mmap base. Sources and MREMAP_FIXED
// targets may lie anywhere in [kArenaBase, kFairEnd): slots, then free space
// for targets. The struct zone above holds the pages the ioctl's struct is
// put in, and is no call's source or target.
inline constexpr std::uint64_t kArenaBase = 0x2000'0000'0000ULL;
inline constexpr std::uint64_t kSlotStride = std::uint64_t(4) << 20;
inline constexpr std::size_t kSlots = 20;
inline constexpr std::uint64_t kTargetZone = kArenaBase + (std::uint64_t(128) << 20);
inline constexpr std::uint64_t kTargetZoneSize = std::uint64_t(256) << 20;
inline constexpr std::uint64_t kFairEnd = kTargetZone + kTargetZoneSize;
inline constexpr std::uint64_t kStructZone = kArenaBase + (std::uint64_t(448) << 20);
inline constexpr std::uint64_t kArenaEnd = kArenaBase + (std::uint64_t(512) << 20);
inline constexpr std::size_t kFilePagesPerSlot = 80;
// The scratch zone, between the target zone and the struct zone, 16 MiB
// from each: no slot's, and no drawn call's (one whose ranges reach it is not
// put in a batch with scratch elements). A batch's known-good elements move
// small private anonymous ranges mapped here for it, one stride each, so
// that the oracle's model of the pool does not change; the zone is unmapped
// again after every batch.
inline constexpr std::uint64_t kScratchZone = kFairEnd + (std::uint64_t(16) << 20);
inline constexpr std::uint64_t kScratchStride = std::uint64_t(1) << 20;
inline constexpr std::size_t kScratchSlots = 16;
inline constexpr std::uint64_t kScratchEnd = kScratchZone + kScratchSlots * kScratchStride;
static_assert(kScratchEnd + (std::uint64_t(16) << 20) <= kStructZone);

enum class kind : std::uint8_t {
  anon,              // private anonymous, every page written
  anon_unpopulated,  // never touched
  anon_partial,      // some pages written
  anon_readonly,     // written, then PROT_READ
  anon_none,         // some pages written, then PROT_NONE
  anon_thp,          // 2 MiB aligned, MADV_HUGEPAGE, written
  shared_anon,
  memfd_shared,
  memfd_private,
  file_shared,  // a file in /tmp (tmpfs in the guests)
  file_private,
  devzero_private,  // /dev/zero
  devzero_shared,
  mlocked,          // private anonymous, mlock()ed whole or in part
  mlocked_onfault,  // mlock2(MLOCK_ONFAULT)
  cluster,          // 2-4 small mappings of mixed kinds, gaps of 0-2 pages
  hugetlb,          // MAP_HUGETLB | MAP_SHARED, where vm.nr_hugepages can be raised
  count_
};
const char *to_string(kind k);

// An mlock()ed range: fork() does not carry VM_LOCKED to the oracle's
// child, which locks these again before its call.
struct lock_range {
  std::uint64_t addr = 0, len = 0;
  bool onfault = false;
};

struct slot {
  kind k = kind::anon;
  std::uint64_t base = 0;  // kArenaBase + i * kSlotStride
  std::uint64_t len = 0;   // extent of its mappings from base
  std::uint32_t generation = 0;
  std::vector<lock_range> locks;
};

// A mapping the kernel made and owns ([vdso], [vvar], an aio ring, an
// io_uring ring): a source only, for ranges inside it.
struct special {
  std::string name;
  std::uint64_t start = 0, end = 0;
};

class pool {
 public:
  pool() = default;
  pool(const pool &) = delete;
  pool &operator=(const pool &) = delete;
  ~pool() { close(); }

  // Files, the struct zone, the kernel's special mappings and every slot.
  bool open(rng &r, std::string &why);
  // Unmaps everything open() and the calls made; puts vm.nr_hugepages back.
  void close();

  std::size_t size() const { return slots_.size(); }
  const slot &at(std::size_t i) const { return slots_[i]; }
  // Unmaps slot i's stride and maps a new random kind (or `k`) there.
  void rebuild(std::size_t i, rng &r, std::optional<kind> k = std::nullopt, std::size_t pages = 0);
  // Slots whose stride meets [lo, hi).
  std::vector<std::size_t> slots_in(std::uint64_t lo, std::uint64_t hi) const;
  const std::vector<special> &specials() const { return specials_; }
  // Every mlock()ed range of the pool.
  std::vector<lock_range> locks() const;
  bool hugetlb() const { return huge_size_ != 0; }
  // Before open(): leave vm.nr_hugepages as it is (no hugetlb slots).
  void leave_hugetlb_alone(bool yes) { keep_hugetlb_ = yes; }
  std::string describe() const;

  // The struct zone: where the ioctl's struct can be put.
  struct zone {
    std::uint64_t rw;            // a writable page
    std::uint64_t ro;            // a read-only page
    std::uint64_t hole;          // an unmapped page
    std::uint64_t rw_then_hole;  // a writable page followed by an unmapped one
    std::uint64_t rw_then_ro;    // a writable page followed by a read-only one
    std::uint64_t none;          // a PROT_NONE page
    std::uint64_t race;          // the page the racing thread rewrites, unmaps, maps again
  };
  const zone &structs() const { return zone_; }
  // Writes n bytes at addr, which may lie in a read-only page of the zone.
  void poke(std::uint64_t addr, const void *data, std::size_t n) const;

 private:
  void build(std::size_t i, rng &r, kind k, std::size_t pages);
  bool build_piece(std::size_t i, rng &r, kind k, std::uint64_t at, std::size_t pages,
                   std::uint64_t file_page);
  void fill_page(std::uint64_t addr, std::size_t i, std::size_t pg_index) const;
  bool open_specials();

  std::vector<slot> slots_;
  std::vector<special> specials_;
  std::string dropped_;  // special mappings fork() does not copy
  zone zone_{};
  int memfd_ = -1, tmpfd_ = -1, zerofd_ = -1;
  std::uint64_t huge_size_ = 0;
  std::optional<std::string> nr_hugepages_;  // the value to put back
  unsigned long aio_ctx_ = 0;
  int uring_fd_ = -1;
  std::uint64_t uring_map_ = 0, uring_len_ = 0;
  bool open_ = false;
  bool keep_hugetlb_ = false;
};

// ---------------------------------------------------------------------------
// A call

enum class op : std::uint8_t { remap, info, bad_cmd, racy };

// Where the struct is (for remap and info calls).
enum class place : std::uint8_t {
  normal,      // a writable page
  misaligned,  // a writable page, at an odd address
  null,
  unmapped,
  kernel,        // a kernel address
  noncanonical,  // not a user address on any paging mode
  readonly,      // readable, not writable
  prot_none,
  straddle_unmapped,  // runs from a writable page into an unmapped one
  straddle_readonly,  // runs from a writable page into a read-only one
  in_source,          // inside the source range
  in_target,          // inside the MREMAP_FIXED target
  count_
};
const char *to_string(place p);
bool readable(place p);  // whether copy_from_user() of the whole struct can succeed

struct call {
  op what = op::remap;
  dontunmap_remap args{};
  place where = place::normal;
  std::uint64_t ptr = 0;  // the ioctl's argument
  unsigned long cmd = DONTUNMAP_IOC_REMAP;
  bool path_fd = false;  // through an O_PATH descriptor (EBADF)
  std::string how;       // how each argument was chosen
  int special = -1;      // the special mapping the source lies in, or -1
};

struct stats {
  std::uint64_t guarded = 0;  // draws redrawn as unsafe for the fuzzer itself
};

// Draws the next call of a run. `maps` is the process's layout now.
call generate(rng &r, const pool &p, const std::vector<procfs::vma> &maps, bool racy_allowed,
              stats &st);
// The struct written where the call says (the zone's read-only pages
// included), so that the ioctl finds it there.
void place_struct(const pool &p, const call &c);
std::string describe(const call &c);

// ---------------------------------------------------------------------------
// What a call answers, and what it must answer

struct outcome {
  int err = 0;             // 0: success
  std::uint64_t addr = 0;  // the destination of a successful move
  bool operator==(const outcome &) const = default;
};
std::string to_string(const outcome &o);

// newest mremap()'s argument rules (check_mremap_params() of 7.3) plus the
// module's one of its own: flags must include MREMAP_DONTUNMAP. 0 or
// EINVAL; they need no lock and look at nothing but the arguments.
int argument_rules(const dontunmap_remap &a);
// Whether the struct at `ptr` lies in the range the call empties (the
// source) or replaces (a MREMAP_FIXED target): the module refuses those
// with EFAULT once the argument rules pass (uapi/linux/dontunmap.h).
bool struct_in_moved_ranges(std::uint64_t ptr, const dontunmap_remap &a);
// The same test for any `size` bytes at `ptr`, as module/device.c's
// dontunmap_touches() makes it for a batch's header and array: the source
// from old_addr untagged, a MREMAP_FIXED target, lengths page aligned, a
// range that wraps meeting nothing.
bool touches(const dontunmap_remap &a, std::uint64_t ptr, std::uint64_t size);

// The kernel's own mremap() with the call's arguments, in a forked child
// of this process (the same layout, mlock()s applied again). `facts`: the
// layout facts difftest_rules.cpp's predicates read, wanted where the
// running kernel's mremap() is not the newest (given for refused calls).
// `before`: moves the child makes first, each of which must succeed (the
// elements a batch makes before the call).
struct native_answer {
  outcome o;
  std::string facts;
};
std::optional<native_answer> native_mremap(const dontunmap_remap &a,
                                           const std::vector<lock_range> &locks, bool facts,
                                           std::string &why,
                                           const std::vector<dontunmap_remap> &before = {});
// Whether the running kernel's own mremap() is the newest for every rule of
// expectations.cpp (then the native oracle is exact).
bool native_is_newest();
// Native and module differ: the rule of expectations.cpp that explains it,
// judged by difftest_rules.cpp, or nullopt.
std::optional<std::string> explained_difference(const dontunmap_remap &a, const std::string &facts,
                                                const outcome &native, const outcome &module);

// Page state of the ranges a call may change.
struct page_state {
  std::uint64_t addr = 0;
  bool present = false;
  std::uint64_t hash = 0;
  std::string perms;
};
struct snapshot {
  std::vector<procfs::vma> maps;
  std::vector<page_state> pages;  // sorted by address
  const page_state *at(std::uint64_t addr) const;
  const procfs::vma *vma_at(std::uint64_t addr) const;
};
struct span {
  std::uint64_t lo = 0, hi = 0;  // [lo, hi), hi > lo
};
// The page states of the pool's mappings (and of its special ones) in
// `ranges`, and of any mapping in `anywhere` (a destination the kernel
// chose). `maps` is the layout they are read from.
snapshot take(const std::vector<span> &ranges, const pool &p, std::vector<procfs::vma> maps,
              const std::vector<span> &anywhere = {});
// The source range, the FIXED target range of a call (empty if none).
std::vector<span> source_spans(const dontunmap_remap &a);
std::vector<span> target_spans(const dontunmap_remap &a);

// Checks a module call's outcome against the state before it: a success
// moved every page whole and left the source mapped and empty; a failure
// changed nothing (a FIXED move across several VMAs that stopped part way
// keeps the VMAs before the stop moved, whole); VMAs away from the call's
// ranges never change. Returns the problems found.
std::vector<std::string> check_outcome(const dontunmap_remap &a, const snapshot &pre,
                                       const snapshot &post, const outcome &got);
// A call that must not have been made (a batch refused whole, or stopped
// before the element): every page and every VMA as it was.
std::vector<std::string> check_unchanged(const snapshot &pre, const snapshot &post);
// The layout without the VMAs that meet `spans` (a batch's scratch moves,
// which the checks of its generated element do not judge).
std::vector<procfs::vma> without(std::vector<procfs::vma> maps, const std::vector<span> &spans);

// ---------------------------------------------------------------------------
// Batches: DONTUNMAP_IOC_REMAP_BATCH (docs/batch.md)

enum class role : std::uint8_t {
  good,       // a move of a scratch range that must complete
  bad,        // a scratch element that must fail with `err` at its turn
  generated,  // a call of generate(): the oracle says what it answers
};

struct element {
  role what = role::good;
  dontunmap_remap args{};
  int err = 0;      // bad: the errno it fails with
  std::string how;  // how it was chosen
};

struct batch {
  enum class variant : std::uint8_t {
    header,   // an adversarial header or array, and good elements
    wrapped,  // a generated call, alone or among good elements
    failing,  // good elements around a bad one: those after it must not run
  };
  variant kind = variant::wrapped;
  dontunmap_remap_batch hdr{};  // as put in place; hdr.remaps is the array's address
  std::vector<element> elems;   // the array as put in place
  place hdr_where = place::normal, arr_where = place::normal;
  std::uint64_t hdr_ptr = 0;  // the ioctl's argument
  bool path_fd = false;       // through an O_PATH descriptor (EBADF)
  int generated = -1;         // the generated element's index, or -1
  bool mapped_ok = true;      // every scratch range could be mapped
  std::string how;            // the adversarial choices
};
const char *to_string(batch::variant v);

// A header-level adversarial batch of 1-8 good elements: count 0, above
// DONTUNMAP_BATCH_MAX or far above it, flags, reserved words, the array or
// the header unreadable, read-only, straddling a page end, or inside a good
// element's source or target; O_PATH. Maps the scratch ranges it moves.
batch draw_header_batch(rng &r, const pool &p, std::uint64_t serial);
// Good elements around a bad one (first or in the middle) with a known
// errno: a hole or a range past its VMA (EFAULT), a misaligned address,
// lengths that differ, an unknown flag, an overlap, length 0 (EINVAL), one
// whose range covers the header or the array (EINVAL: only an element that
// passes the argument rules can refuse a batch whole), and, for the module
// only, flags without MREMAP_DONTUNMAP.
batch draw_failing_batch(rng &r, const pool &p, std::uint64_t serial, bool module);
// `c` as an element: alone, or (`several` and its ranges clear of the
// scratch zone) among 1-7 good elements, last or before some of them. The
// array (or, for a struct drawn inside the call's ranges, sometimes the
// header) goes where c's struct was drawn.
batch wrap_call(rng &r, const pool &p, const call &c, std::uint64_t serial, bool several);
// Writes the header and the array where the batch says, with guard bytes
// around them where the struct zone's writable page holds them.
void place_batch(const pool &p, const batch &b);
std::string describe(const batch &b);
// The scratch zone's ranges and the destinations of the completed moves.
std::vector<span> scratch_spans(const batch &b, std::uint32_t completed,
                                const std::vector<std::uint64_t> &dest);

// What the call does before its first element (module/device.c's order):
// a refusal of the whole call, and what it leaves in the header.
enum class header_after : std::uint8_t {
  untouched,  // not written (refused at steps 1-3 before the write-back)
  partly,     // the write-back faulted: its writable first bytes may be zeroed
  zeroed,     // written back as read with completed and error zeroed
  result,     // completed and error of the elements
};
struct batch_expect {
  int err = 0;  // the whole call's errno, or 0: it goes on to its elements
  std::string why;
  header_after hdr = header_after::result;
  std::uint64_t hdr_writable = 0;  // partly: how many of its first bytes could be written
};
// `maps`: the layout with the batch in place.
batch_expect expect_whole(const batch &b, const std::vector<procfs::vma> &maps);

// What the call answered and left in the header and the array.
struct batch_result {
  int err = 0;  // the ioctl's errno, 0 on success
  std::uint32_t completed = 0;
  std::int32_t error = 0;
  bool header_read = false;            // completed and error could be read back
  std::vector<std::uint64_t> dest;     // new_addr of each element, as read back
  std::vector<int> hdr_bytes, arr_bytes;  // as read back, -1 where unreadable
};
// The ioctl, and what it left in memory.
batch_result make_batch(int fd, int fd_path, const batch &b,
                        const std::vector<procfs::vma> &maps);
// --self-check: the elements as single mremap() calls in order, stopping at
// the first that fails, reported as the ioctl would report them.
batch_result emulate_batch(const batch &b);
// The header, the array and the guard bytes as the call must have left them.
std::vector<std::string> check_batch_memory(const batch &b, const batch_expect &x,
                                            const batch_result &got);
// The scratch ranges: the completed good moves arrived whole at their
// destinations and left their sources mapped and empty; nothing else
// changed (the elements after a failed one did not run).
std::vector<std::string> check_scratch(const batch &b, const snapshot &pre, const snapshot &post,
                                       std::uint32_t completed,
                                       const std::vector<std::uint64_t> &dest);
// Unmaps the scratch zone.
void drop_scratch();

// The module's counters (/sys/class/misc/dontunmap/stats): moves, batches.
std::optional<std::pair<std::uint64_t, std::uint64_t>> module_counters();

// ---------------------------------------------------------------------------
// The racing thread

class racer;
// One call whose struct another thread rewrites, write-protects and unmaps
// while the call runs. The sources are slots a and b (rebuilt populated),
// the targets free places of the target zone. Returns the problems found.
struct race_result {
  int err = 0;
  bool moved = false;
  std::vector<std::string> problems;
  std::string how;
};
race_result racy_call(racer &rc, int fd, pool &p, rng &r);
racer *start_racer();
void stop_racer(racer *rc);

}  // namespace dontunmap::fuzz
