// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-difftest: differential conformance of the module against the
// kernel's own mremap(). A scenario (a small layout of mappings and one
// MREMAP_DONTUNMAP call) is generated from a seed, replayed in two fresh
// forked children at the same addresses - one calling mremap(2), one the
// module's ioctl - and what each observes afterwards is compared. Some seeds
// also get a sequence of calls, made through the module one by one and as
// one DONTUNMAP_IOC_REMAP_BATCH, whose reports must be identical.
//
// The pieces: difftest_scenario.cpp (generation and the readable form),
// difftest_child.cpp (building, calling, observing), difftest_rules.cpp
// (which differences an older kernel's own mremap() legitimately shows) and
// difftest.cpp (the driver).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "expectations.hpp"

namespace dontunmap::difftest {

// The scenario's mappings live in this window, far from the static binary,
// its heap, the stack and the mmap base (near the top of the 47-bit space):
// the parent maps nothing there, so both children find it empty.
inline constexpr std::uintptr_t kWindowBase = 0x200000000000;
inline constexpr std::size_t kWindowSize = std::size_t(64) << 20;
// Mappings go in [base + kLayoutStart, base + kLayoutEnd); the rest of the
// window stays free for hints and MREMAP_FIXED targets.
inline constexpr std::size_t kLayoutStart = std::size_t(2) << 20;
inline constexpr std::size_t kFreeStart = std::size_t(48) << 20;

std::size_t page();
std::size_t pmd_size();  // THP size (hpage_pmd_size), 2 MiB on x86_64
// The default huge page size (/proc/meminfo Hugepagesize) the scenarios'
// hugetlb mappings use; 0 where there is no hugetlbfs, or where the driver
// could not reserve huge pages for the run (set_hugetlb_size(0)): then no
// scenario gets one.
std::size_t hugetlb_size();
void set_hugetlb_size(std::size_t bytes);
// A length rounded up to pages as mremap() does (0 when that overflows).
std::uint64_t page_align(std::uint64_t len);

// ---------------------------------------------------------------------------
// Scenarios

enum class kind : std::uint8_t {
  private_anon,
  shared_anon,
  memfd_shared,
  memfd_private,
  tmpfs_shared,  // a file in /tmp (tmpfs in the guests)
  tmpfs_private,
  hugetlb_private,  // MAP_ANONYMOUS | MAP_HUGETLB, the default huge page size
  hugetlb_shared,
};
std::string_view to_string(kind k);
bool is_file(kind k);  // backed by the scenario's memfd or tmpfs file
bool is_memfd(kind k);
bool is_hugetlb(kind k);

enum class fill : std::uint8_t { none, populate, touched };
enum class lock : std::uint8_t { none, mlock, onfault };

// A page range inside one mapping.
struct piece {
  std::size_t first = 0;
  std::size_t pages = 0;
  int prot = 0;  // protect pieces only
};

struct mapping_desc {
  std::size_t offset = 0;  // bytes from kWindowBase, page aligned
  std::size_t pages = 0;
  kind k = kind::private_anon;
  std::size_t file_pgoff = 0;  // file kinds: pages into the scenario's file
  int prot = 0;                // protection after setup
  fill how = fill::none;
  std::vector<std::size_t> touched;  // pages written (fill::touched); hugetlb: huge pages
  bool thp = false;                  // PMD-aligned start, PMD-multiple length
  bool dup_content = false;          // pages repeat (KSM can merge them)
  lock locked = lock::none;
  piece lock_range;
  std::vector<piece> protect;  // mprotect()ed sub-ranges (VMA splits)
  bool mergeable = false;      // MADV_MERGEABLE
  bool uffd = false;           // registered MISSING with the scenario's context
  piece uffd_range;
  bool uffd_wp = false;        // registered WP too (private anon; kernels with uffd-wp)
  piece wp_range;              // then UFFDIO_WRITEPROTECTed, inside uffd_range
  bool seal = false;  // mseal()ed (6.10+)
  piece seal_range;

  std::uintptr_t start() const { return kWindowBase + offset; }
  std::uintptr_t end() const { return start() + pages * page(); }
};

// How each argument of the call was chosen, for predicates and the
// readable form.
enum class src_choice : std::uint8_t { in_mapping, unmapped, unaligned };
enum class len_choice : std::uint8_t { partial, to_end, spanning, past_end, zero, huge };
enum class new_len_choice : std::uint8_t { equal, aligned_equal, unequal, zero, huge };
enum class dst_choice : std::uint8_t {
  null,          // 0: no hint (with FIXED: address 0)
  free,          // a free, aligned place in the window
  adjacent,      // right after or before a mapping (a merge candidate)
  occupied,      // inside a mapping (FIXED: replaces it)
  overlap_src,   // overlapping the source range
  beyond_task,   // above TASK_SIZE (or above 47 bits: valid only on LA57)
  unaligned,     // free + 1..page-1
};
std::string_view to_string(src_choice c);
std::string_view to_string(len_choice c);
std::string_view to_string(new_len_choice c);
std::string_view to_string(dst_choice c);

struct call_desc {
  std::uint64_t old_addr = 0;
  std::uint64_t old_len = 0;
  std::uint64_t new_len = 0;
  std::uint64_t flags = 0;
  std::uint64_t new_addr = 0;
  src_choice src = src_choice::in_mapping;
  len_choice len = len_choice::partial;
  new_len_choice nlen = new_len_choice::equal;
  dst_choice dst = dst_choice::null;
  int src_mapping = -1;  // the mapping old_addr was chosen in, or -1
};

// Where a scenario's hugetlb mapping (at most one) meets the call.
enum class huge_role : std::uint8_t {
  none,          // the scenario has none
  source,        // the call's source range starts in it
  in_span,       // inside the range of a multi-VMA MREMAP_FIXED move
  fixed_target,  // a MREMAP_FIXED target in it, replacing it or part of it
  dst_neighbour, // right before or after the destination
};
std::string_view to_string(huge_role r);

// A limit set right before the call (and lifted right after it).
enum class limit : std::uint8_t {
  none,
  as,         // RLIMIT_AS: VmSize + slack pages
  data,       // RLIMIT_DATA: VmData + slack pages
  map_count,  // vm.max_map_count: the map count + slack (system wide)
};

// What the child does after observing the outcome, and observes again:
// faults and VMA merges reveal state the first look cannot see (a wrong
// vm_pgoff reads the wrong file page, a stale anon_vma merges differently).
struct after_ops {
  bool touch = false;      // read every readable page not under userfaultfd
  bool write = false;      // and write one byte of every writable one
  bool reprotect = false;  // mprotect source and destination to PROT_NONE and back
  bool flatten = false;    // mprotect every VMA of the window to PROT_READ: neighbours
                           // merge where their anon_vma, pgoff and file allow it
};

struct scenario {
  std::uint64_t seed = 0;
  std::vector<mapping_desc> maps;
  std::size_t memfd_pages = 0, tmpfs_pages = 0;      // file sizes
  std::vector<std::size_t> memfd_prefill, tmpfs_prefill;  // pages pwrite()n first
  std::uint64_t uffd_features = 0;
  std::uint8_t pattern = 0;  // content seed
  call_desc call;
  limit lim = limit::none;
  std::size_t lim_slack = 0;
  after_ops after;
  huge_role huge = huge_role::none;
  int huge_mapping = -1;  // its index in maps

  bool uses_ksm() const;
  bool uses_uffd() const;
  bool uses_seal() const;
  // The module side makes its move as a batch of one element (odd seeds),
  // which must answer exactly as the single call does.
  bool uses_batch() const { return seed % 2 == 1; }

  // A sequence (with_sequence()): more calls after `call`, each generated
  // against the same layout, made in order until one fails.
  std::vector<call_desc> more;
  bool uses_sequence() const { return !more.empty(); }
};

scenario generate(std::uint64_t seed);
// Whether seed also gets a sequence: one seed in sixteen.
inline bool has_sequence(std::uint64_t seed) { return seed % 16 == 15; }
// The scenario with one to three more calls: the driver runs it through
// the module twice, the calls one by one and as one batch, whose reports
// must be identical (docs/batch.md: a batch equals its single calls, up to
// the first that fails). The scenario itself is unchanged.
scenario with_sequence(const scenario &s);
// The scenario as lines a reader (and a C reproducer) can follow.
std::string describe(const scenario &s);
// The byte page `i` of mapping `m` (or of a file) is filled with.
std::uint8_t content_byte(const scenario &s, int m, std::size_t i, bool dup);

// ---------------------------------------------------------------------------
// Children

// native: mremap(); module: DONTUNMAP_IOC_REMAP (a batch of one on odd
// seeds); batch: every call of a sequence in one DONTUNMAP_IOC_REMAP_BATCH.
enum class side : std::uint8_t { native, module, batch };
std::string_view to_string(side s);

// Runs the scenario in this (forked) process through `s` and writes the
// observed state to out_fd as lines; never returns. ksmd, if the scenario
// uses KSM, is started, waited for and stopped by the child itself, so that
// both children see the same merges and nothing merges while they look.
[[noreturn]] void run_child(const scenario &sc, side s, int out_fd);
// Whether children may change system-wide knobs: start and stop ksmd,
// lower vm.max_map_count (set before forking them). Without it those
// scenarios are skipped.
void set_system_allowed(bool allowed);

// ---------------------------------------------------------------------------
// What a child reports: lines "section text". Sections:
//   skip      a feature the kernel lacks (the scenario is skipped)
//   setup     a setup step failed (a generator bug, or a kernel refusal)
//   fact      properties of the layout before the call, for the rules
//   result    the call's return value or errno
//   pre/post  maps, smaps, pages (pagemap bits and content hashes), status
//   commit    the Committed_AS change around the call, kB
//   uffd      userfaultfd events read after the call
//   check     the newest-semantics invariants of the outcome (ok / FAIL)
//   after     maps, smaps, pages, status once the after_ops are done
struct report {
  std::vector<std::string> lines;
  bool complete = false;  // the child got to the end
  std::string death;      // how the child ended, if not normally

  std::vector<std::string_view> section(std::string_view name) const;
  std::string_view first(std::string_view name) const;  // "" if none
  bool has(std::string_view name) const { return !first(name).empty(); }
};

// ---------------------------------------------------------------------------
// Expected differences: scenarios where the running kernel's own mremap()
// legitimately differs from the newest upstream behaviour the module gives.

struct verdict {
  bool same = false;            // the two reports agree
  bool expected = false;        // they differ, explained by `rule`
  test::rule rule{};            // valid when expected
  std::vector<std::string> why; // the differing lines, or what failed
};

verdict judge(const scenario &sc, const report &native, const report &module);
// A sequence's two module reports: identical but for the Committed_AS
// change, which may differ by the tolerance.
verdict judge_sequence(const report &singles, const report &batch);
// How far the Committed_AS changes of the two children may differ (0: a
// quiet guest; more on a busy machine).
void set_commit_tolerance_kb(long kb);

}  // namespace dontunmap::difftest
