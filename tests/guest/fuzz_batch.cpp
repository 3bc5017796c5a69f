// SPDX-License-Identifier: GPL-2.0
//
// Batches: DONTUNMAP_IOC_REMAP_BATCH calls, and what they must answer and
// leave behind (docs/batch.md, module/device.c). Three kinds are drawn:
//  - header: good elements behind an adversarial header or array; each is
//    refused whole, but a misaligned array, a count short of the array, or
//    nothing adversarial at all, which the call makes;
//  - wrapped: a call of generate() as an element, alone or among good
//    elements, answering what the single call's oracle says it answers;
//  - failing: good elements around one that fails with a known errno, after
//    which nothing may run.
// Good elements move small private anonymous ranges of the scratch zone, so
// that the pool the oracle models is not touched by them; afterwards their
// data is looked for at their destinations, and their sources must be
// mapped and empty. The whole-call rules are replayed in module/device.c's
// order on the layout as /proc/self/maps gives it, not on where each piece
// was meant to go.
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>

#include "fuzz.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace dontunmap::fuzz {
namespace {

constexpr std::uint64_t kHdrSize = sizeof(dontunmap_remap_batch);
constexpr std::uint64_t kElemSize = sizeof(dontunmap_remap);
constexpr std::uint64_t kNewAddrAt = offsetof(dontunmap_remap, new_addr);
constexpr std::uint64_t kOutFirst = offsetof(dontunmap_remap_batch, completed);
constexpr std::uint64_t kOutEnd = offsetof(dontunmap_remap_batch, reserved);
// Bytes on each side of a header or an array in the struct zone's writable
// page that the call must leave alone.
constexpr std::uint64_t kGuard = 16;
constexpr unsigned char kGuardByte = 0xa5;
constexpr std::uint64_t kMove = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
static_assert(kHdrSize == 40 && kElemSize == 40 && kOutEnd - kOutFirst == 8);

const std::uint64_t kKernelAddrs[] = {0xffff'8880'0000'0000ULL, 0xffff'c900'0000'0000ULL,
                                      0xffff'ffff'8000'0000ULL,
                                      0xffff'ffff'ff60'0000ULL /* [vsyscall] */,
                                      0xff00'0000'0000'0000ULL /* LA57 kernel half */};

// Element j's stride of the scratch zone: its source at the start, its
// target (or hint) half way.
std::uint64_t scratch_base(std::size_t j) { return kScratchZone + j * kScratchStride; }
std::uint64_t scratch_target(std::size_t j) { return scratch_base(j) + kScratchStride / 2; }

// `pages` pages at `at`, each with content of its own (the batch's serial,
// a tag, the page's index), so that a page from elsewhere hashes otherwise.
bool map_scratch(std::uint64_t at, std::size_t pages, std::uint64_t serial, unsigned tag) {
  const std::uint64_t pg = page(), len = pages * pg;
  void *want = reinterpret_cast<void *>(at);
  void *m = ::mmap(want, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (m == MAP_FAILED) return false;
  if (m != want) {  // a kernel without MAP_FIXED_NOREPLACE took it as a hint
    ::munmap(m, len);
    return false;
  }
  for (std::size_t i = 0; i < pages; ++i) {
    auto *q = static_cast<unsigned char *>(m) + i * pg;
    std::memset(q, static_cast<int>((serial * 13 + tag * 5 + i * 3 + 1) & 0xff), pg);
    const std::uint64_t head[2] = {0xba7c'0000'0000'0000ULL | (serial & 0xffff'ffffULL) << 16 | tag,
                                   i};
    std::memcpy(q, head, sizeof(head));
  }
  return true;
}

// Element j, good: a move of 1-4 pages (its length not page aligned at
// times), MREMAP_FIXED (over a mapping at times) or to a free hint in its
// stride. Its source is mapped here, or is the destination of element j - 1
// where that is a good FIXED move: element j then moves what j - 1 put there.
void add_good(rng &r, batch &b, std::uint64_t serial) {
  const std::uint64_t pg = page();
  const std::size_t j = b.elems.size();
  element e;
  std::size_t pages = r.range(1, 4);
  const element *prev = j ? &b.elems[j - 1] : nullptr;
  if (prev && prev->what == role::good && (prev->args.flags & MREMAP_FIXED) && r.chance(25)) {
    pages = r.range(1, page_align(prev->args.old_len) / pg);
    e.args.old_addr = prev->args.new_addr;
    e.how = "chained";
  } else {
    if (!map_scratch(scratch_base(j), pages, serial, static_cast<unsigned>(j))) b.mapped_ok = false;
    e.args.old_addr = scratch_base(j);
    e.how = "scratch";
  }
  e.args.old_len = e.args.new_len = pages * pg - (r.chance(20) ? r.range(1, pg - 1) : 0);
  const bool fixed = r.chance(60);
  e.args.flags = kMove | (fixed ? MREMAP_FIXED : 0);
  e.args.new_addr = scratch_target(j);
  e.how += fixed ? " fixed" : " hint";
  if (fixed && r.chance(30)) {
    if (!map_scratch(scratch_target(j), pages + r.below(2), serial, 0x80 | static_cast<unsigned>(j)))
      b.mapped_ok = false;
    e.how += " over_mapped";
  }
  e.how += " pages=" + std::to_string(pages);
  b.elems.push_back(std::move(e));
}

// Element j, bad: fails with a known errno, the same from the module and
// from mremap() (flags without MREMAP_DONTUNMAP: the module's own rule, for
// the module only). `covered`: the header's or the array's address, which a
// "covering" element's range holds: it fails the argument rules, so it may
// (docs/batch.md, step 3).
void add_bad(rng &r, batch &b, std::uint64_t serial, bool module, std::uint64_t covered) {
  const std::uint64_t pg = page();
  const std::size_t j = b.elems.size();
  const std::size_t pages = r.range(1, 4);
  const std::uint64_t src = scratch_base(j), len = pages * pg;
  element e;
  e.what = role::bad;
  e.args = {src, len, len, kMove, scratch_target(j)};
  const auto map_source = [&] {
    if (!map_scratch(src, pages, serial, static_cast<unsigned>(j))) b.mapped_ok = false;
  };
  static constexpr unsigned w[] = {3, 3, 2, 2, 2, 2, 1, 4, 2};
  std::size_t choice = r.weighted(w);
  if (choice == 8 && !module) choice = 3;
  switch (choice) {
    case 0:  // nothing mapped there: no VMA at old_addr
      e.how = "hole", e.err = EFAULT;
      break;
    case 1:  // one page more than the VMA has, not FIXED: across a VMA's end
      map_source();
      e.args.old_len = e.args.new_len = len + pg;
      e.how = "past_end", e.err = EFAULT;
      break;
    case 2:
      map_source();
      e.args.old_addr = src + r.range(1, pg - 1);
      e.how = "misaligned", e.err = EINVAL;
      break;
    case 3:
      map_source();
      e.args.new_len = len + pg;
      e.args.flags |= r.chance(50) ? MREMAP_FIXED : 0;
      e.how = "unequal_lengths", e.err = EINVAL;
      break;
    case 4:
      map_source();
      e.args.flags |= (r.chance(50) ? MREMAP_FIXED : 0) | std::uint64_t(1) << r.range(3, 63);
      e.how = "unknown_flag", e.err = EINVAL;
      break;
    case 5:
      map_source();
      e.args.flags |= MREMAP_FIXED;
      e.args.new_addr = src + r.below(pages) * pg;
      e.how = "overlap", e.err = EINVAL;
      break;
    case 6:
      map_source();
      e.args.old_len = e.args.new_len = 0;
      e.how = "zero_length", e.err = EINVAL;
      break;
    case 7: {
      // Its source (misaligned, or with unequal lengths) or its FIXED
      // target (unequal lengths) holds the header or the array.
      const std::uint64_t at = covered & ~(pg - 1), in = covered - at;
      e.err = EINVAL;
      switch (r.below(3)) {
        case 0:
          if (in) {
            e.args = {at + r.range(1, in), pg, pg, kMove, scratch_target(j)};
            e.how = "covering(misaligned source)";
            break;
          }
          [[fallthrough]];
        case 1:
          e.args = {at, pg, 2 * pg, kMove | (r.chance(50) ? MREMAP_FIXED : 0), scratch_target(j)};
          e.how = "covering(source, unequal lengths)";
          break;
        default:
          map_source();
          e.args = {src, pg, 2 * pg, kMove | MREMAP_FIXED, at};
          e.how = "covering(target, unequal lengths)";
          break;
      }
      break;
    }
    default:
      map_source();
      e.args.flags = MREMAP_MAYMOVE | MREMAP_FIXED;
      e.how = "no_dontunmap", e.err = EINVAL;
      break;
  }
  b.elems.push_back(std::move(e));
}

// A pointer for `size` bytes put at `w` in the struct zone: the header in
// the first half of a page, the array (`second`) in the second, each with
// room for its guard bytes.
std::uint64_t zone_ptr(rng &r, const pool &p, place w, std::uint64_t size, bool second) {
  const std::uint64_t pg = page(), half = pg / 2;
  const auto &z = p.structs();
  const std::uint64_t room = half - 2 * kGuard - size - 1;
  const std::uint64_t off = (second ? half : 0) + kGuard + r.below(room / 8 + 1) * 8;
  switch (w) {
    case place::misaligned: return z.rw + (off | 1);
    case place::null: return 0;
    case place::unmapped: return z.hole + off;
    case place::kernel: return r.pick(kKernelAddrs) + off;
    case place::noncanonical: return (r.range(1, 255) << 56) | (z.rw + off);
    case place::readonly: return z.ro + off;
    case place::prot_none: return z.none + off;
    case place::straddle_unmapped: return z.rw_then_hole + pg - r.range(1, size - 1);
    case place::straddle_readonly: return z.rw_then_ro + pg - r.range(1, size - 1);
    default: return z.rw + off;
  }
}

// completed and error are the call's to write: zero, as a careful caller
// leaves them, or anything, so that a header written or not tells.
dontunmap_remap_batch header_for(rng &r, std::uint64_t arr, std::size_t count) {
  dontunmap_remap_batch h{};
  h.remaps = arr;
  h.count = static_cast<std::uint32_t>(count);
  if (r.chance(50)) {
    h.completed = static_cast<std::uint32_t>(r.next());
    h.error = static_cast<std::int32_t>(r.next());
  }
  return h;
}

// A page of element i's ranges that holds something writable now: its
// source where it is mapped here, its target where it was mapped over.
std::optional<std::uint64_t> range_page(rng &r, const batch &b, place w) {
  std::vector<std::uint64_t> pages;
  for (std::size_t i = 0; i < b.elems.size(); ++i) {
    const element &e = b.elems[i];
    if (e.what != role::good) continue;
    if (w == place::in_source && e.how.starts_with("scratch")) pages.push_back(scratch_base(i));
    if (w == place::in_target && e.how.find("over_mapped") != std::string::npos)
      pages.push_back(scratch_target(i));
  }
  if (pages.empty()) return std::nullopt;
  return pages[r.below(pages.size())];
}

const procfs::vma *vma_of(const std::vector<procfs::vma> &maps, std::uint64_t x) {
  for (const auto &v : maps)
    if (x >= v.start && x < v.end) return &v;
  return nullptr;
}

// What copy_from_user() and copy_to_user() of [ptr, ptr + size) can do:
// every byte below TASK_SIZE, in a readable (writable) VMA. `prefix`: how
// many of the first bytes lie in writable VMAs.
struct reach {
  bool read = false, write = false;
  std::uint64_t prefix = 0;
};
reach reach_of(const std::vector<procfs::vma> &maps, std::uint64_t ptr, std::uint64_t size) {
  reach a;
  const std::uint64_t end = ptr + size;
  if (end < ptr || end > env().task_size) return a;
  a.read = a.write = true;
  bool prefix = true;
  for (std::uint64_t x = ptr; x < end;) {
    const procfs::vma *v = vma_of(maps, x);
    if (!v) {
      a.read = a.write = false;
      break;
    }
    const std::uint64_t upto = std::min<std::uint64_t>(end, v->end);
    if (v->perms.size() < 2 || v->perms[0] != 'r') a.read = false;
    if (v->perms.size() < 2 || v->perms[1] != 'w') a.write = prefix = false;
    if (prefix) a.prefix += upto - x;
    x = upto;
  }
  return a;
}

// The bytes at [ptr, ptr + size) that can be read (-1 for the others).
std::vector<int> read_back(const std::vector<procfs::vma> &maps, std::uint64_t ptr,
                           std::uint64_t size) {
  std::vector<int> out(size, -1);
  for (std::uint64_t i = 0; i < size; ++i) {
    const std::uint64_t x = ptr + i;
    if (x < ptr || x >= env().task_size) break;
    const procfs::vma *v = vma_of(maps, x);
    if (v && !v->perms.empty() && v->perms[0] == 'r')
      out[i] = *reinterpret_cast<const volatile unsigned char *>(x);
  }
  return out;
}

bool guarded(place w) { return w == place::normal || w == place::misaligned; }

void put(const pool &p, place w, std::uint64_t at, const void *data, std::size_t n) {
  switch (w) {
    case place::normal:
    case place::misaligned:
    case place::readonly:
    case place::straddle_unmapped:
    case place::straddle_readonly: p.poke(at, data, n); break;
    case place::in_source:
    case place::in_target: std::memcpy(reinterpret_cast<void *>(at), data, n); break;
    default: break;  // nowhere the fuzzer can write either
  }
}

const char *to_string(role r) {
  switch (r) {
    case role::good: return "good";
    case role::bad: return "bad";
    case role::generated: return "generated";
  }
  return "?";
}

// Whether a call's ranges (its hint too) come near the scratch zone: it is
// then made alone, so that good elements can neither disturb it nor be
// disturbed by it.
bool reaches_scratch(const call &c) {
  const std::uint64_t lo = kFairEnd, hi = kStructZone;
  std::vector<span> spans = source_spans(c.args);
  const auto t = target_spans(c.args);
  spans.insert(spans.end(), t.begin(), t.end());
  if (!(c.args.flags & MREMAP_FIXED)) {
    const std::uint64_t len = std::max<std::uint64_t>(page_align(c.args.old_len), page());
    if (c.args.new_addr + len < c.args.new_addr) return true;
    spans.push_back({c.args.new_addr, c.args.new_addr + len});
  }
  return std::any_of(spans.begin(), spans.end(),
                     [&](const span &s) { return s.lo < hi && s.hi > lo; });
}

}  // namespace

const char *to_string(batch::variant v) {
  switch (v) {
    case batch::variant::header: return "header";
    case batch::variant::wrapped: return "wrapped";
    case batch::variant::failing: return "failing";
  }
  return "?";
}

batch draw_header_batch(rng &r, const pool &p, std::uint64_t serial) {
  batch b;
  b.kind = batch::variant::header;
  const std::size_t k = r.range(1, 8);
  for (std::size_t i = 0; i < k; ++i) add_good(r, b, serial);
  b.hdr_ptr = zone_ptr(r, p, place::normal, kHdrSize, false);
  b.hdr = header_for(r, zone_ptr(r, p, place::normal, k * kElemSize, true), k);
  static constexpr place kPlaces[] = {
      place::null,     place::unmapped,  place::kernel,
      place::noncanonical, place::readonly, place::prot_none,
      place::straddle_unmapped, place::straddle_readonly, place::misaligned};
  enum { count_zero, count_above, count_huge, count_max, count_short, flags, reserved, array_at,
         header_at, array_in_range, header_in_range, path_fd, nothing };
  static constexpr unsigned w[] = {2, 2, 2, 1, 1, 2, 2, 6, 5, 2, 2, 1, 1};
  const int rounds = r.chance(20) ? 2 : 1;
  for (int round = 0; round < rounds; ++round) {
    switch (r.weighted(w)) {
      case count_zero:
        b.hdr.count = 0;
        b.how += " count=0";
        break;
      case count_above:
        b.hdr.count = DONTUNMAP_BATCH_MAX + 1;
        b.how += " count=MAX+1";
        break;
      case count_huge: {
        const std::uint32_t v[] = {DONTUNMAP_BATCH_MAX + 2,
                                   2 * DONTUNMAP_BATCH_MAX,
                                   0x7fff'ffff,
                                   0x8000'0000,
                                   0xffff'ffff,
                                   static_cast<std::uint32_t>(
                                       r.range(DONTUNMAP_BATCH_MAX + 1, 0xffff'ffff))};
        b.hdr.count = r.pick(v);
        b.how += " count=" + std::to_string(b.hdr.count);
        break;
      }
      case count_max:
        // Accepted by the count rule; the array then runs into what
        // cannot be read (EFAULT, not EINVAL).
        b.hdr.count = DONTUNMAP_BATCH_MAX;
        b.how += " count=MAX";
        break;
      case count_short:
        // Elements past count are not the call's: they must not run.
        if (k > 1) {
          b.hdr.count = static_cast<std::uint32_t>(r.range(1, k - 1));
          b.how += " count=" + std::to_string(b.hdr.count) + "<" + std::to_string(k);
        }
        break;
      case flags:
        b.hdr.flags = r.chance(50) ? std::uint32_t(1) << r.below(32)
                                   : static_cast<std::uint32_t>(r.next() | 1);
        b.how += " flags=" + hex(b.hdr.flags);
        break;
      case reserved: {
        const auto v = [&] { return r.chance(50) ? std::uint64_t(1) << r.below(64) : r.next() | 1; };
        const std::uint64_t which = r.below(3);
        if (which != 1) b.hdr.reserved[0] = v();
        if (which != 0) b.hdr.reserved[1] = v();
        b.how += " reserved=" + hex(b.hdr.reserved[0]) + "," + hex(b.hdr.reserved[1]);
        break;
      }
      case array_at:
        b.arr_where = r.pick(kPlaces);
        b.hdr.remaps = zone_ptr(r, p, b.arr_where, k * kElemSize, true);
        b.how += std::string(" array=") + to_string(b.arr_where);
        break;
      case header_at:
        b.hdr_where = r.pick(kPlaces);
        b.hdr_ptr = zone_ptr(r, p, b.hdr_where, kHdrSize, false);
        b.how += std::string(" header=") + to_string(b.hdr_where);
        break;
      case array_in_range:
      case header_in_range: {
        const bool array = r.chance(50);
        place w = r.chance(50) ? place::in_source : place::in_target;
        auto pg_at = range_page(r, b, w);
        if (!pg_at) pg_at = range_page(r, b, w = place::in_source);
        if (!pg_at) break;
        const std::uint64_t pg = page(), half = pg / 2;
        const std::uint64_t size = array ? k * kElemSize : kHdrSize;
        const std::uint64_t at =
            *pg_at + (array ? half : 0) + r.below((half - size) / 8 + 1) * 8;
        if (array) {
          b.arr_where = w;
          b.hdr.remaps = at;
        } else {
          b.hdr_where = w;
          b.hdr_ptr = at;
        }
        b.how += std::string(array ? " array=" : " header=") + to_string(w);
        break;
      }
      case path_fd:
        b.path_fd = true;
        b.how += " O_PATH";
        break;
      default: b.how += " none"; break;
    }
  }
  // Both straddling the same page end would overlap: the header moves.
  if (b.hdr_where == b.arr_where &&
      (b.hdr_where == place::straddle_unmapped || b.hdr_where == place::straddle_readonly)) {
    b.hdr_where = place::normal;
    b.hdr_ptr = zone_ptr(r, p, place::normal, kHdrSize, false);
  }
  b.how = b.how.empty() ? "none" : b.how.substr(1);
  return b;
}

batch draw_failing_batch(rng &r, const pool &p, std::uint64_t serial, bool module) {
  batch b;
  b.kind = batch::variant::failing;
  const std::size_t k = r.range(2, 8), bad = r.below(k - 1);
  b.arr_where = r.chance(20) ? place::misaligned : place::normal;
  b.hdr_ptr = zone_ptr(r, p, place::normal, kHdrSize, false);
  const std::uint64_t arr = zone_ptr(r, p, b.arr_where, k * kElemSize, true);
  for (std::size_t i = 0; i < k; ++i) {
    if (i == bad)
      add_bad(r, b, serial, module, r.chance(50) ? b.hdr_ptr : arr + r.below(k * kElemSize));
    else
      add_good(r, b, serial);
  }
  b.hdr = header_for(r, arr, k);
  b.how = "bad element " + std::to_string(bad) + " of " + std::to_string(k);
  return b;
}

batch wrap_call(rng &r, const pool &p, const call &c, std::uint64_t serial, bool several) {
  const std::uint64_t pg = page();
  const bool in_range = c.where == place::in_source || c.where == place::in_target;
  batch b;
  b.kind = batch::variant::wrapped;
  // In the call's own ranges only a batch of one: what a longer one writes
  // back there (new_addr of the good elements) would change the pages the
  // call's outcome is judged by.
  const std::size_t k =
      several && !in_range && !reaches_scratch(c) && r.chance(60) ? r.range(2, 8) : 1;
  const std::size_t at = k == 1 || r.chance(70) ? k - 1 : r.below(k - 1);
  for (std::size_t i = 0; i < k; ++i) {
    if (i != at) {
      add_good(r, b, serial);
      continue;
    }
    element e;
    e.what = role::generated;
    e.args = c.args;
    e.how = c.how;
    b.elems.push_back(std::move(e));
    b.generated = static_cast<int>(at);
  }
  const std::uint64_t size = k * kElemSize;
  b.hdr_ptr = zone_ptr(r, p, place::normal, kHdrSize, false);
  b.arr_where = c.where;
  std::uint64_t arr = 0;
  if (in_range) {
    const std::uint64_t there = c.ptr & ~(pg - 1);
    // The header there instead, only where the call passes the argument
    // rules: the batch is then refused whole and nothing is written to it.
    if (argument_rules(c.args) == 0 && r.chance(30)) {
      b.hdr_where = c.where;
      b.hdr_ptr = there + r.below((pg - kHdrSize) / 8 + 1) * 8;
      b.arr_where = place::normal;
      arr = zone_ptr(r, p, place::normal, size, true);
    } else {
      arr = there + r.below((pg - size) / 8 + 1) * 8;
    }
  } else {
    arr = zone_ptr(r, p, c.where, size, true);
  }
  b.hdr = header_for(r, arr, k);
  b.how = k == 1 ? "alone" : "element " + std::to_string(at) + " of " + std::to_string(k);
  return b;
}

void place_batch(const pool &p, const batch &b) {
  std::vector<dontunmap_remap> arr;
  for (const element &e : b.elems) arr.push_back(e.args);
  unsigned char guard[kGuard];
  std::memset(guard, kGuardByte, sizeof(guard));
  const std::uint64_t arr_size = arr.size() * kElemSize;
  if (guarded(b.arr_where)) {
    p.poke(b.hdr.remaps - kGuard, guard, kGuard);
    p.poke(b.hdr.remaps + arr_size, guard, kGuard);
  }
  if (guarded(b.hdr_where)) {
    p.poke(b.hdr_ptr - kGuard, guard, kGuard);
    p.poke(b.hdr_ptr + kHdrSize, guard, kGuard);
  }
  put(p, b.arr_where, b.hdr.remaps, arr.data(), arr_size);
  put(p, b.hdr_where, b.hdr_ptr, &b.hdr, kHdrSize);
}

std::string describe(const batch &b) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "BATCH(%s%s) header=%s@0x%" PRIx64 " {remaps=%s@0x%llx count=%u flags=0x%x "
                "completed=0x%x error=%d reserved=0x%llx,0x%llx} [%s]",
                to_string(b.kind), b.path_fd ? ", O_PATH" : "", to_string(b.hdr_where), b.hdr_ptr,
                to_string(b.arr_where), static_cast<unsigned long long>(b.hdr.remaps), b.hdr.count,
                b.hdr.flags, b.hdr.completed, b.hdr.error,
                static_cast<unsigned long long>(b.hdr.reserved[0]),
                static_cast<unsigned long long>(b.hdr.reserved[1]), b.how.c_str());
  std::string t = buf;
  for (std::size_t i = 0; i < b.elems.size(); ++i) {
    const element &e = b.elems[i];
    std::snprintf(buf, sizeof(buf),
                  "; #%zu %s%s old_addr=0x%llx old_len=0x%llx new_len=0x%llx flags=0x%llx "
                  "new_addr=0x%llx [%s]",
                  i, to_string(e.what),
                  e.what == role::bad ? ("(" + errname(e.err) + ")").c_str() : "",
                  static_cast<unsigned long long>(e.args.old_addr),
                  static_cast<unsigned long long>(e.args.old_len),
                  static_cast<unsigned long long>(e.args.new_len),
                  static_cast<unsigned long long>(e.args.flags),
                  static_cast<unsigned long long>(e.args.new_addr), e.how.c_str());
    t += buf;
  }
  return t;
}

std::vector<span> scratch_spans(const batch &b, std::uint32_t completed,
                                const std::vector<std::uint64_t> &dest) {
  std::vector<span> out = {{kScratchZone, kScratchEnd}};
  for (std::size_t i = 0; i < completed && i < b.elems.size() && i < dest.size(); ++i) {
    const element &e = b.elems[i];
    const std::uint64_t len = page_align(e.args.old_len);
    if (e.what != role::good || !len || dest[i] + len < dest[i]) continue;
    if (dest[i] < kScratchZone || dest[i] + len > kScratchEnd) out.push_back({dest[i], dest[i] + len});
  }
  return out;
}

batch_expect expect_whole(const batch &b, const std::vector<procfs::vma> &maps) {
  batch_expect x;
  const auto refuse = [&](int err, std::string why, header_after h) {
    x.err = err;
    x.why = std::move(why);
    x.hdr = h;
    return x;
  };
  if (b.path_fd) return refuse(EBADF, "an O_PATH descriptor", header_after::untouched);
  // 1. The header.
  const reach hdr = reach_of(maps, b.hdr_ptr, kHdrSize);
  if (!hdr.read) return refuse(EFAULT, "the header cannot be read", header_after::untouched);
  if (b.hdr.flags || b.hdr.reserved[0] || b.hdr.reserved[1])
    return refuse(EINVAL, "flags or reserved not zero", header_after::untouched);
  if (!b.hdr.count || b.hdr.count > DONTUNMAP_BATCH_MAX)
    return refuse(EINVAL, "count " + std::to_string(b.hdr.count), header_after::untouched);
  // 2. The array.
  const std::uint64_t size = std::uint64_t(b.hdr.count) * kElemSize;
  const reach arr = reach_of(maps, b.hdr.remaps, size);
  if (!arr.read) return refuse(EFAULT, "the array cannot be read", header_after::untouched);
  if (b.hdr.count > b.elems.size())  // drawn so that it cannot be read
    return refuse(-1, "the fuzzer: an array it did not write can be read", header_after::result);
  // 3. The header or the array in what an element that passes the
  // argument rules moves or replaces; then both are written back.
  for (std::size_t i = 0; i < b.hdr.count; ++i) {
    const dontunmap_remap &a = b.elems[i].args;
    if (argument_rules(a) == 0 &&
        (touches(a, untag(b.hdr_ptr), kHdrSize) || touches(a, untag(b.hdr.remaps), size)))
      return refuse(EFAULT, "the header or the array in element " + std::to_string(i) + "'s ranges",
                    header_after::untouched);
  }
  if (!hdr.write) {
    refuse(EFAULT, "the header cannot be written back", header_after::partly);
    x.hdr_writable = hdr.prefix;
    return x;
  }
  if (!arr.write) return refuse(EFAULT, "the array cannot be written back", header_after::zeroed);
  return x;
}

batch_result make_batch(int fd, int fd_path, const batch &b, const std::vector<procfs::vma> &maps) {
  batch_result got;
  const int ret = ::ioctl(b.path_fd ? fd_path : fd, DONTUNMAP_IOC_REMAP_BATCH,
                          reinterpret_cast<void *>(b.hdr_ptr));
  got.err = ret == 0 ? 0 : errno;
  got.hdr_bytes = read_back(maps, b.hdr_ptr, kHdrSize);
  got.arr_bytes = read_back(maps, b.hdr.remaps, b.elems.size() * kElemSize);
  const auto word = [](const std::vector<int> &bytes, std::uint64_t at, std::size_t n,
                       std::uint64_t &v) {
    unsigned char raw[8] = {};
    for (std::size_t i = 0; i < n; ++i) {
      if (at + i >= bytes.size() || bytes[at + i] < 0) return false;
      raw[i] = static_cast<unsigned char>(bytes[at + i]);
    }
    std::memcpy(&v, raw, 8);
    return true;
  };
  std::uint64_t completed = 0, error = 0;
  got.header_read =
      word(got.hdr_bytes, kOutFirst, 4, completed) && word(got.hdr_bytes, kOutFirst + 4, 4, error);
  got.completed = static_cast<std::uint32_t>(completed);
  got.error = static_cast<std::int32_t>(static_cast<std::uint32_t>(error));
  for (std::size_t i = 0; i < b.elems.size(); ++i) {
    std::uint64_t v = 0;
    got.dest.push_back(word(got.arr_bytes, i * kElemSize + kNewAddrAt, 8, v) ? v : 0);
  }
  return got;
}

batch_result emulate_batch(const batch &b) {
  batch_result got;
  got.header_read = true;
  for (const element &e : b.elems) got.dest.push_back(e.args.new_addr);
  for (std::size_t i = 0; i < b.elems.size() && i < b.hdr.count; ++i) {
    const dontunmap_remap &a = b.elems[i].args;
    const long ret = ::syscall(SYS_mremap, a.old_addr, a.old_len, a.new_len, a.flags, a.new_addr);
    if (ret == -1) {
      got.err = errno;
      got.error = -got.err;
      break;
    }
    got.dest[i] = static_cast<std::uint64_t>(ret);
    ++got.completed;
  }
  return got;
}

std::vector<std::string> check_batch_memory(const batch &b, const batch_expect &x,
                                            const batch_result &got) {
  std::vector<std::string> problems;
  const auto problem = [&](std::string t) {
    if (problems.size() < 6) problems.push_back(std::move(t));
  };
  const auto byte = [](int v) { return v < 0 ? std::string("?") : hex(static_cast<unsigned>(v)); };

  // The header: as placed, but for what the call writes into it.
  unsigned char want[kHdrSize];
  std::memcpy(want, &b.hdr, kHdrSize);
  static const char *const kStates[] = {"not written", "partly written back", "written back",
                                        "written"};
  const char *state = kStates[static_cast<int>(x.hdr)];
  for (std::uint64_t i = 0; i < kHdrSize && i < got.hdr_bytes.size(); ++i) {
    const int have = got.hdr_bytes[i];
    if (have < 0) continue;
    const bool out = i >= kOutFirst && i < kOutEnd;
    bool ok = have == want[i];
    switch (x.hdr) {
      case header_after::untouched: break;
      case header_after::partly: ok = ok || (out && i < x.hdr_writable && have == 0); break;
      case header_after::zeroed: ok = have == (out ? 0 : want[i]); break;
      case header_after::result: ok = ok || out; break;
    }
    if (!ok) {
      problem("header byte " + std::to_string(i) + " at " + hex(b.hdr_ptr + i) + " is " +
              byte(have) + ", was " + byte(want[i]) + " (the header must be " + state + ")");
      break;
    }
  }
  if (x.err == 0 && !got.header_read) problem("the header cannot be read back after the call");

  // The array: the completed elements' new_addr written, nothing else.
  const std::uint32_t completed = x.err ? 0 : got.completed;
  std::vector<unsigned char> arr(b.elems.size() * kElemSize);
  for (std::size_t i = 0; i < b.elems.size(); ++i)
    std::memcpy(arr.data() + i * kElemSize, &b.elems[i].args, kElemSize);
  for (std::uint64_t i = 0; i < arr.size() && i < got.arr_bytes.size(); ++i) {
    const int have = got.arr_bytes[i];
    const std::uint64_t el = i / kElemSize, off = i % kElemSize;
    if (have < 0 || have == arr[i] || (el < completed && off >= kNewAddrAt)) continue;
    problem("array byte " + std::to_string(i) + " (element " + std::to_string(el) + ") at " +
            hex(b.hdr.remaps + i) + " is " + byte(have) + ", was " + byte(arr[i]));
    break;
  }

  // Nothing around them.
  const auto guards = [&](place w, std::uint64_t at, std::uint64_t size, const char *what) {
    if (!guarded(w)) return;
    for (const std::uint64_t from : {at - kGuard, at + size})
      for (std::uint64_t q = from; q < from + kGuard; ++q)
        if (*reinterpret_cast<const volatile unsigned char *>(q) != kGuardByte) {
          problem(std::string("wrote next to the ") + what + " at " + hex(q));
          return;
        }
  };
  guards(b.hdr_where, b.hdr_ptr, kHdrSize, "header");
  guards(b.arr_where, b.hdr.remaps, b.elems.size() * kElemSize, "array");
  return problems;
}

std::vector<std::string> check_scratch(const batch &b, const snapshot &pre, const snapshot &post,
                                       std::uint32_t completed,
                                       const std::vector<std::uint64_t> &dest) {
  const std::uint64_t pg = page();
  std::vector<std::string> problems;
  const auto problem = [&](std::string t) {
    if (problems.size() < 6) problems.push_back(std::move(t));
  };
  // The pages as the completed good moves must have left them.
  std::map<std::uint64_t, std::optional<page_state>> model;
  for (const page_state &ps : pre.pages) model[ps.addr] = ps;
  const auto at = [&](std::uint64_t a) -> std::optional<page_state> {
    const auto it = model.find(a);
    return it == model.end() ? std::nullopt : it->second;
  };
  for (std::size_t i = 0; i < completed && i < b.elems.size() && i < dest.size(); ++i) {
    const element &e = b.elems[i];
    if (e.what != role::good) continue;
    const std::uint64_t src = untag(e.args.old_addr), to = dest[i];
    const std::uint64_t n = page_align(e.args.old_len) / pg;
    // A hint is free (nothing else is in the element's stride), and a free
    // hint is taken, as mremap() takes it.
    if (to != e.args.new_addr)
      problem("good element " + std::to_string(i) + " landed at " + hex(to) + ", not at its " +
              ((e.args.flags & MREMAP_FIXED) ? "MREMAP_FIXED target " : "free hint ") +
              hex(e.args.new_addr));
    if (to % pg) continue;
    std::vector<std::optional<page_state>> moving;
    for (std::uint64_t k = 0; k < n; ++k) moving.push_back(at(src + k * pg));
    for (std::uint64_t k = 0; k < n; ++k) {
      auto &m = model[src + k * pg];
      if (m) m->present = false, m->hash = 0;
    }
    for (std::uint64_t k = 0; k < n; ++k) model[to + k * pg] = moving[k];
  }
  for (const auto &[addr, m] : model) {
    const page_state *s = post.at(addr);
    if (!m) {
      if (s) problem("scratch page " + hex(addr) + " mapped, where nothing may be");
    } else if (!s) {
      problem("scratch page " + hex(addr) + (m->present ? " (data)" : " (empty)") +
              " not mapped");
    } else if (s->present != m->present || (m->present && s->hash != m->hash)) {
      problem("scratch page " + hex(addr) + (s->present ? " holds data" : " is empty") +
              (m->present ? ", expected what was moved there"
                          : ", expected empty (moved away, or never written)"));
    }
  }
  for (const page_state &s : post.pages)
    if (!model.count(s.addr)) problem("scratch page " + hex(s.addr) + " mapped anew");
  return problems;
}

void drop_scratch() {
  // A good move that landed elsewhere is a mismatch already; what it left
  // there stays (an address read back is not trusted with munmap()).
  ::munmap(reinterpret_cast<void *>(kScratchZone), kScratchEnd - kScratchZone);
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> module_counters() {
  const auto moves = procfs::read_text("/sys/class/misc/dontunmap/stats/moves");
  const auto batches = procfs::read_text("/sys/class/misc/dontunmap/stats/batches");
  if (!moves || !batches) return std::nullopt;
  return std::pair{std::strtoull(moves->c_str(), nullptr, 10),
                   std::strtoull(batches->c_str(), nullptr, 10)};
}

}  // namespace dontunmap::fuzz
