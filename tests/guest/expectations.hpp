// SPDX-License-Identifier: GPL-2.0
//
// The one place that knows how the running kernel's own mremap() differs
// from the newest upstream behaviour. The module backend must always give
// the newest answer; the native backend gives whatever its kernel gives,
// and the tests expect exactly that, so that a native run on any kernel of
// the matrix checks the tests themselves.
#pragma once

#include <dontunmap/dontunmap.hpp>

#include <compare>
#include <span>
#include <string>
#include <string_view>

namespace dontunmap::test {

struct kernel_version {
  int major = 0;
  int minor = 0;
  int patch = 0;

  auto operator<=>(const kernel_version &) const = default;
  std::string str() const;
};

// "6.1.0-56-amd64" -> 6.1.0; "6.18.44-fc" -> 6.18.44. Debian's release
// string carries the ABI number, not the stable sublevel, so only
// major.minor are reliable and the table below uses no more than that.
kernel_version parse_kernel_release(std::string_view release);
kernel_version running_kernel();

// Behaviours whose native answer depends on the kernel.
enum class rule {
  aligned_length_compare,      // 4096 vs 4000 lengths
  non_anonymous_sources,       // shared anon, shmem/memfd, file mappings
  overcommit_checked_first,    // VM_ACCOUNT charge refused under overcommit -> ENOMEM
  source_keeps_vm_account,     // the source keeps VM_ACCOUNT and its charge
  mlocked_source_split_ahead,  // a partial move of an mlocked VMA splits it first
  locked_vm_unchanged,         // mm->locked_vm does not grow by the moved length
  fixed_move_spans_vmas,       // MREMAP_FIXED moves a range covering several VMAs
  call_checked_before_source,  // destination and map-count checks precede the source lookup
  map_count_headroom,          // free vm.max_map_count slots a move needs
  unfaulted_source_self_merge, // an unfaulted source merges with a destination next to it
  adjacent_destination_merges_far_side, // ... which still merges with its other neighbour
  next_vma_gains_vm_account,   // a partial move sets VM_ACCOUNT on the VMA after the source
  emptied_source_drops_anon_vma, // a source moved whole lets go of its anon_vma
  fixed_target_unmapped_first, // a FIXED target is unmapped before the source is looked up
  uffd_wp_cleared_on_move,     // moved entries lose uffd-wp unless the destination stays registered
  uffd_dropped_destination_unmerged, // a destination losing its uffd context merges with nothing
  source_checked_before_target_unmap, // a VM_DONTEXPAND source is refused before a FIXED target goes
};

// One row of the table: [legacy_from, legacy_until) are the kernels whose own
// mremap() behaves the legacy way; `stable` marks a fix that reached stable
// series at sublevels the release string does not show (inside the range,
// either outcome). `newest` and `change` are one-line summaries for
// docs/semantics.md, `why` the full reason.
struct rule_info {
  rule r;
  std::string_view name;
  kernel_version legacy_from;
  kernel_version legacy_until;
  bool stable;
  std::string_view why;
  std::string_view newest;  // what the newest kernel does
  std::string_view change;  // the upstream change that brought it
};

// Every row, in table order (dontunmap-semantics prints them).
std::span<const rule_info> all_rules();

// newest: what the newest upstream kernel does; legacy: what older kernels
// do (each test says what that means for its rule); either: the kernel's
// series got the fix through stable updates at a sublevel that the release
// string cannot tell, so both complete outcomes are accepted (the test still
// checks the outcome is one of the two, whole).
enum class behaviour { newest, legacy, either };

struct expectation {
  behaviour what;
  std::string why;  // printed with every assertion that uses it

  bool allows_newest() const { return what != behaviour::legacy; }
  bool allows_legacy() const { return what != behaviour::newest; }
};

std::string_view to_string(rule r);
std::string_view to_string(behaviour b);

// The running kernel's own answer (the table in expectations.cpp).
expectation native_expectation(rule r, kernel_version v);
// What `b` must do: the newest behaviour for the module, the running
// kernel's for native.
expectation expected_behaviour(rule r, backend b);

}  // namespace dontunmap::test
