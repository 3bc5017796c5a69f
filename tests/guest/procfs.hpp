// SPDX-License-Identifier: GPL-2.0
//
// What /proc says about the calling process: its VMAs (maps, smaps), its
// status fields, the system's meminfo, and sysctls. Small readers for the
// guest tests; the ones used around a measurement do not allocate, so that
// they cannot disturb Committed_AS or the map count they measure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dontunmap::test::procfs {

// One line of /proc/self/maps.
struct vma {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  std::string perms;  // "rw-p"
  std::uint64_t offset = 0;
  std::uint64_t inode = 0;
  std::string path;  // "", "[vdso]", "/memfd:x (deleted)", ...
  std::string line;  // the line as read, for messages

  std::size_t size() const { return end - start; }
  bool contains(const void *addr) const;
};

std::vector<vma> read_maps();
// The VMA containing addr.
std::optional<vma> vma_at(const void *addr);
// Every VMA overlapping [addr, addr + len).
std::vector<vma> vmas_in(const void *addr, std::size_t len);
// The first VMA whose path is exactly `path` ("[vdso]").
std::optional<vma> vma_named(std::string_view path);

// A range to show in a failure message.
struct range {
  const void *addr;
  std::size_t len;
};
// The maps lines within a few pages of each range, with a heading: what a
// failing assertion prints so that the reader sees the layout it judged.
std::string maps_excerpt(std::initializer_list<range> ranges);

// mm->map_count: the lines of /proc/self/maps less the gate VMA
// ([vsyscall] on x86_64), which is not in the mm. Does not allocate.
std::size_t map_count();

// One VMA's block of /proc/self/smaps.
struct smaps_entry {
  vma area;
  std::vector<std::pair<std::string, std::uint64_t>> fields_kb;  // "Rss", "Locked", ...
  std::vector<std::string> vm_flags;                             // "rd", "wr", "lo", "um", ...
  std::string text;                                              // the block, for messages

  std::optional<std::uint64_t> kb(std::string_view field) const;
  bool has_flag(std::string_view flag) const;
};
// The smaps block of the VMA containing addr.
std::optional<smaps_entry> smaps_at(const void *addr);
// Every block of /proc/self/smaps, in address order.
std::vector<smaps_entry> read_smaps();

// A "Name:   123 kB" field of /proc/self/status or /proc/meminfo, in kB.
// Neither allocates.
std::optional<std::uint64_t> status_kb(std::string_view field);
std::optional<std::uint64_t> meminfo_kb(std::string_view field);
// Several fields from one read of the file (each read makes the kernel
// generate all of it), in the order asked.
std::vector<std::optional<std::uint64_t>> status_kb(std::initializer_list<std::string_view> fields);
std::vector<std::optional<std::uint64_t>> meminfo_kb(std::initializer_list<std::string_view> fields);

// Whole small files (sysctls), trailing newline stripped.
std::optional<std::string> read_text(const std::string &path);
bool write_text(const std::string &path, std::string_view value);
// The same without allocating: what puts vm.overcommit_* back must work
// while they refuse every new charge (a std::string path may need heap).
bool write_text(const char *path, std::string_view value);

// Kernel-wide, not the process's.
//
// The vm_area_struct slab's objects in use, once the cache has been shrunk
// (kmem_cache_shrink(): SLUB flushes its per-CPU slabs, generic KASAN lets
// go of the cache's quarantined objects), so that freed VMAs do not count.
// nullopt where the count would not be the VMAs' alone (the cache merged
// with others: its "aliases" is not 0) or SLUB's sysfs files cannot be
// used. Does not allocate.
std::optional<std::uint64_t> vma_slab_objects();
// vma_slab_objects() until it is at most `limit`, for up to five seconds:
// with per-VMA locks (6.4+) a freed VMA reaches the slab only after an RCU
// grace period. The last count read; one reading without a limit.
std::optional<std::uint64_t> vma_slab_objects_down_to(std::optional<std::uint64_t> limit);
// After two kmemleak scans (it wants two), the blocks of its report whose
// text contains `needle` ("dontunmap": a backtrace through the module).
// nullopt where the kernel has no kmemleak.
std::optional<std::vector<std::string>> kmemleak_reports_naming(std::string_view needle);

}  // namespace dontunmap::test::procfs
