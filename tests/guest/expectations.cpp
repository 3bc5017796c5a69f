// SPDX-License-Identifier: GPL-2.0
#include "expectations.hpp"

#include <sys/utsname.h>

#include <charconv>
#include <iterator>

namespace dontunmap::test {
namespace {

// [legacy_from, legacy_until): the kernels whose own mremap() behaves the
// legacy way. `stable` marks a fix that reached stable series at sublevels
// the release string does not show: inside the range, either outcome.
// `newest` and `change` are the one-line summaries of docs/semantics.md.
using row = rule_info;

// Sources read: Debian linux-source 5.10.262, 6.1.192, 6.12.117, 7.3.4
// (mm/mremap.c), upstream history, and the development host's 6.18.44.
constexpr row table[] = {
    {rule::aligned_length_compare,
     "aligned_length_compare",
     {0, 0, 0},
     {6, 17, 0},
     false,
     "up to 6.16 check_mremap_params()/the syscall compared the raw lengths (4096 != 4000 -> "
     "EINVAL); 6.17 page-aligns old_len and new_len before comparing",
     "page-aligned lengths are compared: 4096 and 4000 are equal",
     "check_mremap_params() aligns old_len and new_len first"},
    {rule::non_anonymous_sources,
     "non_anonymous_sources",
     {0, 0, 0},
     {5, 13, 0},
     false,
     "5.7-5.12 refused every source but private anonymous memory with EINVAL; 5.13 (\"mm: extend "
     "MREMAP_DONTUNMAP to non-anonymous mappings\") widened it to shared and file mappings",
     "shared anonymous, shmem/memfd and file mappings move too",
     "\"mm: extend MREMAP_DONTUNMAP to non-anonymous mappings\""},
    {rule::overcommit_checked_first,
     "overcommit_checked_first",
     {0, 0, 0},
     {5, 11, 0},
     false,
     "5.10's move_vma() charged the new range after the move with vm_acct_memory() and no "
     "security_vm_enough_memory_mm() check (Debian 5.10.262 still does), so the move succeeds; "
     "5.11 checks the charge first -> ENOMEM",
     "the charge for the new range is checked first: ENOMEM under overcommit",
     "\"mm/mremap: for MREMAP_DONTUNMAP check security_vm_enough_memory_mm()\""},
    {rule::source_keeps_vm_account,
     "source_keeps_vm_account",
     {6, 15, 0},
     {6, 18, 0},
     true,
     "the 6.15 mremap rework cleared VM_ACCOUNT on the source in dontunmap_complete(), leaking "
     "its charge; fixed upstream (6.18 keeps it), possibly in 6.15-6.17 stable too",
     "the source keeps VM_ACCOUNT and its charge",
     "the mremap rework's dontunmap_complete() cleared it; maybe fixed in 6.15-6.17 stable"},
    {rule::mlocked_source_split_ahead,
     "mlocked_source_split_ahead",
     {0, 0, 0},
     {7, 3, 0},
     true,
     "newer kernels split an mlocked source at the moved range before clearing VM_LOCKED, so "
     "its unmoved parts stay locked; older ones clear VM_LOCKED on the whole VMA. Seen split: "
     "Debian 6.1.192, 6.12.117, 7.3.4; seen unsplit: Debian 5.10.262, 6.18.44 - a stable "
     "backport, so below 7.3 the version cannot tell",
     "an mlocked source is split first: its unmoved parts stay locked",
     "the first release seen with it; through stable also in 6.1.192 and 6.12.117"},
    {rule::locked_vm_unchanged,
     "locked_vm_unchanged",
     {6, 15, 0},
     {7, 3, 0},
     true,
     "the 6.15 rework's vrm_stat_account() adds the moved length to locked_vm before "
     "dontunmap_complete() clears the source's VM_LOCKED, so locked_vm grows by len (seen on "
     "6.18.44); older kernels return before that and 7.3.4 clears VM_LOCKED first. Where "
     "between 6.18 and 7.3 the fix landed, and which stable series have it, is not known",
     "locked_vm does not grow by the moved length",
     "the mremap rework's vrm_stat_account() counted it; fix release not known"},
    {rule::fixed_move_spans_vmas,
     "fixed_move_spans_vmas",
     {0, 0, 0},
     {6, 17, 0},
     false,
     "6.17 lets MREMAP_FIXED with equal lengths move a range that spans several VMAs; older "
     "kernels require one VMA (EFAULT)",
     "MREMAP_FIXED with equal lengths moves a range spanning several VMAs",
     "\"mm/mremap: permit mremap() move of multiple VMAs\""},
    {rule::call_checked_before_source,
     "call_checked_before_source",
     {0, 0, 0},
     {6, 15, 0},
     false,
     "the 6.15 rework's check_mremap_params() checks the destination (alignment, TASK_SIZE, "
     "overlap with the source) and do_mremap() the map-count headroom before the source is "
     "looked up; up to 6.14 the syscall looked the source up first (no VMA -> EFAULT, sealed -> "
     "EPERM) and mremap_to() checked the destination after it, so the same call fails with "
     "EFAULT/EPERM instead of EINVAL/ENOMEM (seen: Debian 6.12.118 against 7.3.4). A hugetlb "
     "source is checked for huge page alignment with that lookup (5.16+: its address and "
     "new_addr, even a hint): off it, EINVAL comes before mremap_to()'s map-count check, where "
     "7.3 says ENOMEM (difftest seeds 40188, 40244, 40513 on 6.1.0-57)",
     "destination and map-count checks precede the source lookup",
     "the mremap rework's check_mremap_params()"},
    {rule::map_count_headroom,
     "map_count_headroom",
     {0, 0, 0},
     {7, 3, 0},
     false,
     "a DONTUNMAP move needs free vm.max_map_count slots for the worst case it may split into. "
     "Up to 6.14 mremap_to() refused unless map_count + 2 < vm.max_map_count - 3 (six free); "
     "the 6.15 rework's __check_map_count_against_split() kept needing six (seen: Debian "
     "6.12.118 and the development host's 6.18.44 refuse with five free); Debian 7.3.4 checks "
     "map_count + 5 <= vm.max_map_count (two slots for splitting a FIXED target, two for the "
     "move, one for an mlock pre-split), so five free are enough. The change lies between "
     "6.19 and 7.3; its upstream release is not verified and no matrix kernel lies between",
     "five free vm.max_map_count slots are enough for a move (map_count + 5 <= max)",
     "first seen in Debian 7.3.4; six were needed up to 6.18 (6.12.118, 6.18.44)"},
    {rule::unfaulted_source_self_merge,
     "unfaulted_source_self_merge",
     {0, 0, 0},
     {7, 0, 0},
     true,
     "copy_vma() gives the destination of an unfaulted anonymous source the pgoff of its new "
     "address, so a destination right next to the source merges with it into one VMA; the fix "
     "(copy_vma()'s keep_source, \"mm/mremap: fix locked_vm leak from MREMAP_DONTUNMAP "
     "self-merge\") reached stable series at sublevels the release string cannot tell (Debian "
     "6.1.192 and 6.12.115+ have it, 5.10.262 and 6.1.176 do not; seen merged on 5.10.262). "
     "Upstream release of the fix not verified: 7.3 has it",
     "the destination never merges with the source it came from",
     "\"mm/mremap: fix locked_vm leak from MREMAP_DONTUNMAP self-merge\"; release not verified"},
    {rule::adjacent_destination_merges_far_side,
     "adjacent_destination_merges_far_side",
     {0, 0, 0},
     {6, 12, 0},
     false,
     "copy_vma()'s keep_source leaves only the source out of the merge when the source is "
     "unfaulted anonymous memory next to its destination: 7.3.4 and Debian 6.12.118 clear "
     "vmg.prev or vmg.next where it is the source (mm/vma.c), so the destination, which "
     "keeps the page offset of its own address, still merges with the VMA on its other side. "
     "6.1's backport of the fix (Debian 6.1.192, mm/mmap.c) cannot drop one side of "
     "vma_merge() and refuses every merge of such a destination, so it stays a VMA of its "
     "own. Kernels without the fix (5.10.262, 6.1.176, 6.12.95) merge all three "
     "(unfaulted_source_self_merge)",
     "a destination next to its unfaulted source still merges with its other neighbour",
     "copy_vma()'s keep_source as upstream has it; 6.1's backport refuses every merge"},
    {rule::next_vma_gains_vm_account,
     "next_vma_gains_vm_account",
     {0, 0, 0},
     {5, 11, 0},
     false,
     "5.10's move_vma() runs a DONTUNMAP move of the middle of a VM_ACCOUNT VMA through the "
     "split accounting of a plain move and sets VM_ACCOUNT on vma->vm_next, an unrelated VMA "
     "(seen: a shared mapping after the source gains \"ac\" on 5.10.262); 5.11 (\"mm/mremap: "
     "for MREMAP_DONTUNMAP check security_vm_enough_memory_mm()\", as overcommit_checked_first) "
     "keeps DONTUNMAP out of that path - Debian 6.1.192 no longer does it",
     "the VMA after a partly moved source keeps its flags",
     "\"mm/mremap: for MREMAP_DONTUNMAP check security_vm_enough_memory_mm()\""},
    {rule::emptied_source_drops_anon_vma,
     "emptied_source_drops_anon_vma",
     {0, 0, 0},
     {6, 1, 0},
     false,
     "a DONTUNMAP source VMA whose whole range moved keeps no pages, and later kernels unlink "
     "its anon_vma (unlink_anon_vmas() in move_vma(), later dontunmap_complete()); 5.10's "
     "move_vma() keeps it. An emptied source without an anon_vma no longer merges with a "
     "neighbour that still has one: after mprotect() made them alike, 5.10.262 merges the two "
     "and Debian 6.1.192 and 7.3.4 keep them apart (seed 3081). The upstream release is not "
     "verified: after 5.10, by 6.1",
     "a source moved whole lets go of its anon_vma",
     "move_vma() unlinks the emptied source's anon_vma; release after 5.10, not verified"},
    {rule::fixed_target_unmapped_first,
     "fixed_target_unmapped_first",
     {0, 0, 0},
     {5, 16, 0},
     false,
     "5.10's mremap_to() unmaps a MREMAP_FIXED target before it looks the source up, so a call "
     "refused for its source (no VMA: EFAULT) has already destroyed what was at the target "
     "(seen on 5.10.262); by 6.1 the syscall looks the source up first (added with hugetlb "
     "mremap support, 5.16 - the release is not verified, no matrix kernel lies between)",
     "the source is looked up before a FIXED target is unmapped",
     "hugetlb mremap support; release not verified"},
    {rule::uffd_wp_cleared_on_move,
     "uffd_wp_cleared_on_move",
     {0, 0, 0},
     {6, 14, 0},
     true,
     "\"mm: clear uffd-wp PTE/PMD state on mremap()\" (6.14, CVE-2025-21696) clears the uffd-wp "
     "bit of every moved entry when the destination is not kept registered (no "
     "UFFD_FEATURE_EVENT_REMAP); before it the bits stayed on entries of an unregistered VMA, "
     "and a later registration saw write-protect faults nobody asked for. Backported to stable "
     "series at sublevels the release string cannot tell: Debian 6.1.192, 6.12.95 and 6.12.118 have it "
     "(6.12 from 6.12.11), 5.10.262 and 6.1.176 do not",
     "moved entries lose uffd-wp unless the destination stays registered",
     "\"mm: clear uffd-wp PTE/PMD state on mremap()\" (CVE-2025-21696)"},
    {rule::uffd_dropped_destination_unmerged,
     "uffd_dropped_destination_unmerged",
     {0, 0, 0},
     {7, 3, 0},
     true,
     "a destination whose userfaultfd context stays behind (no UFFD_FEATURE_EVENT_REMAP) loses "
     "it in mremap_userfaultfd_prep(); if copy_vma() merged it with neighbours registered with "
     "the same context, they lose it too and their faults no longer reach the monitor. "
     "copy_vma() refuses such a merge in 7.3.4 and, through stable, Debian 6.12.118; Debian "
     "5.10.262, 6.1.176, 6.1.192 and 6.12.95 merge. The upstream release is not verified",
     "a destination whose userfaultfd context is dropped merges with no neighbour",
     "copy_vma() refuses the merge; release not verified, 7.3 has it"},
    {rule::source_checked_before_target_unmap,
     "source_checked_before_target_unmap",
     {0, 0, 0},
     {6, 17, 0},
     false,
     "up to 6.12 mremap_to() unmaps a MREMAP_FIXED target first and only then has "
     "vma_to_resize() refuse a VM_DONTEXPAND or VM_PFNMAP source for MREMAP_DONTUNMAP (EINVAL; "
     "5.10 refuses hugetlb there as not anonymous): a hugetlb source whose address and target "
     "pass the syscall's huge page alignment checks (5.16+) fails having destroyed the target, "
     "over the length rounded up to the huge page size (seen: difftest seed 256 on Debian "
     "6.1.0-57, one of seeds 1-750 on 6.12.118, HugetlbSourceIsRefusedBeforeTheFixedTargetGoes "
     "on 5.10.0-46 and 6.1.0-57). 7.3's check_prep_vma() refuses the source before "
     "mremap_to() unmaps anything; the move came with the 6.17 multi-VMA series (\"mm/mremap: "
     "check remap conditions earlier\") - the release is not verified, no matrix kernel lies "
     "between 6.12 and 7.3. The same order decides a range running past its first VMA: up to "
     "6.12 a target that cuts a hugetlb VMA off its huge page boundary fails the unmap first "
     "(EINVAL), where 7.3 refuses the range (EFAULT; difftest seeds 814 and 1600 on 6.1.176, "
     "1478 on 6.12.95)",
     "the source is checked whole (its VMAs, VM_DONTEXPAND) before a FIXED target is unmapped",
     "check_prep_vma() runs before mremap_to(); release not verified"},
};

constexpr bool every_row_summarised() {
  for (const auto &x : table)
    if (x.newest.empty() || x.change.empty()) return false;
  return true;
}
static_assert(every_row_summarised(), "every row needs its newest and change summaries");

const row &lookup(rule r) {
  for (const auto &x : table)
    if (x.r == r) return x;
  return table[0];  // unreachable: every rule has a row
}

}  // namespace

std::span<const rule_info> all_rules() { return table; }

std::string kernel_version::str() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

kernel_version parse_kernel_release(std::string_view s) {
  kernel_version v;
  int *parts[] = {&v.major, &v.minor, &v.patch};
  const char *p = s.data(), *end = s.data() + s.size();
  for (std::size_t i = 0; i < std::size(parts) && p < end; ++i) {
    auto [next, ec] = std::from_chars(p, end, *parts[i]);
    if (ec != std::errc()) break;
    p = next;
    if (p < end && *p == '.')
      ++p;
    else
      break;
  }
  return v;
}

kernel_version running_kernel() {
  static const kernel_version v = [] {
    struct utsname u {};
    ::uname(&u);
    return parse_kernel_release(u.release);
  }();
  return v;
}

std::string_view to_string(rule r) { return lookup(r).name; }

std::string_view to_string(behaviour b) {
  switch (b) {
    case behaviour::newest: return "newest";
    case behaviour::legacy: return "legacy";
    case behaviour::either: return "either";
  }
  return "?";
}

expectation native_expectation(rule r, kernel_version v) {
  const row &x = lookup(r);
  const bool in_range = v >= x.legacy_from && v < x.legacy_until;
  behaviour b = behaviour::newest;
  if (in_range) b = x.stable ? behaviour::either : behaviour::legacy;
  return {b, "native on " + v.str() + " expects " + std::string(to_string(b)) + " for " +
                 std::string(x.name) + ": " + std::string(x.why)};
}

expectation expected_behaviour(rule r, backend b) {
  if (b == backend::module)
    return {behaviour::newest, "the module gives the newest behaviour for " +
                                   std::string(to_string(r)) + " on " + running_kernel().str() +
                                   ": " + std::string(lookup(r).why)};
  return native_expectation(r, running_kernel());
}

}  // namespace dontunmap::test
