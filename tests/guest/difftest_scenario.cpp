// SPDX-License-Identifier: GPL-2.0
//
// Scenario generation: a layout of 1-4 mappings close together in the
// window and one MREMAP_DONTUNMAP call aimed at it, all drawn from one seed
// with a generator of our own (the standard distributions are not the same
// across library versions, and a seed must mean the same scenario
// everywhere).
#include <sys/mman.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "difftest.hpp"
#include "text.hpp"

namespace dontunmap::difftest {
using test::hex;

std::size_t page() {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

std::size_t pmd_size() {
  static const std::size_t s = [] {
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    std::size_t v = 0;
    if (in >> v && v) return v;
    return std::size_t(2) << 20;
  }();
  return s;
}

namespace {
// SIZE_MAX: not read yet.
std::size_t g_hugetlb_size = ~std::size_t(0);
}  // namespace

std::size_t hugetlb_size() {
  if (g_hugetlb_size == ~std::size_t(0)) {
    std::ifstream in("/proc/meminfo");
    std::size_t kb = 0;
    for (std::string line; std::getline(in, line);)
      if (line.rfind("Hugepagesize:", 0) == 0) kb = std::strtoull(line.c_str() + 13, nullptr, 10);
    g_hugetlb_size = kb * 1024;
  }
  return g_hugetlb_size;
}

void set_hugetlb_size(std::size_t bytes) { g_hugetlb_size = bytes; }

std::uint64_t page_align(std::uint64_t len) {
  const std::uint64_t pg = page();
  return len > ~std::uint64_t(0) - (pg - 1) ? 0 : (len + pg - 1) & ~(pg - 1);
}

namespace {

// splitmix64: small, fast, and the same sequence on every platform.
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed ^ 0x5eed'd0e5'0f0d'a7a1ULL) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e37'79b9'7f4a'7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11ebULL;
    return z ^ (z >> 31);
  }
  // [0, n); 0 when n is 0.
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }
  // [lo, hi]
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned percent) { return below(100) < percent; }
  // An index drawn with the given weights.
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

 private:
  std::uint64_t s_;
};

std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) & ~(a - 1); }

// A sub-range of `pages` pages: the whole of it, or a random part.
piece some_piece(rng &r, std::size_t pages, unsigned whole_percent) {
  if (pages <= 1 || r.chance(whole_percent)) return {0, pages, 0};
  const std::size_t first = r.below(pages);
  return {first, r.range(1, pages - first), 0};
}

int random_prot(rng &r) {
  static constexpr unsigned w[] = {75, 15, 10};
  switch (r.weighted(w)) {
    case 0: return PROT_READ | PROT_WRITE;
    case 1: return PROT_READ;
    default: return PROT_NONE;
  }
}

std::string prot_str(int prot) {
  std::string s = "---";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  return s;
}

std::string piece_str(const piece &p) {
  return "[" + std::to_string(p.first) + "+" + std::to_string(p.pages) + "]";
}

void add_mappings(rng &r, scenario &s) {
  const std::size_t pg = page();
  const std::size_t n = r.range(1, 4);
  std::size_t cursor = kLayoutStart + pg * r.below(8);
  std::size_t memfd_cursor = 0, tmpfs_cursor = 0;
  for (std::size_t m = 0; m < n; ++m) {
    mapping_desc d;
    std::size_t gap = 0;
    if (m > 0) {
      static constexpr unsigned gw[] = {45, 40, 15};
      switch (r.weighted(gw)) {
        case 0: gap = 0; break;
        case 1: gap = r.range(1, 3); break;
        default: gap = r.range(8, 32); break;
      }
    }
    cursor += gap * pg;
    // A neighbour cloned from the previous mapping, right after it (and
    // continuing its file offset): the kernel may merge the two.
    const bool clone = m > 0 && gap == 0 && r.chance(35);
    if (clone) {
      const mapping_desc &prev = s.maps.back();
      d.k = prev.k;
      d.prot = prev.prot;
      d.file_pgoff = prev.file_pgoff + prev.pages;
    } else {
      static constexpr unsigned kw[] = {40, 14, 14, 8, 14, 10};
      d.k = static_cast<kind>(r.weighted(kw));
      d.prot = random_prot(r);
    }
    if (d.k == kind::private_anon && !clone && r.chance(20)) {
      d.thp = true;
      cursor = align_up(cursor, pmd_size());
      d.pages = (pmd_size() / pg) * r.range(1, 2);
    } else {
      static constexpr unsigned pw[] = {70, 25, 5};
      switch (r.weighted(pw)) {
        case 0: d.pages = r.range(1, 16); break;
        case 1: d.pages = r.range(17, 64); break;
        default: d.pages = r.range(65, 256); break;
      }
    }
    if (cursor + d.pages * pg > kFreeStart - (std::size_t(1) << 20)) break;
    d.offset = cursor;
    cursor += d.pages * pg;

    if (is_file(d.k)) {
      std::size_t &fc = is_memfd(d.k) ? memfd_cursor : tmpfs_cursor;
      if (!clone) d.file_pgoff = fc + r.below(4);
      fc = std::max(fc, d.file_pgoff + d.pages);
    }

    static constexpr unsigned fw[] = {35, 20, 45};
    d.how = static_cast<fill>(r.weighted(fw));
    if (d.how == fill::touched) {
      for (std::size_t i = 0; i < d.pages; ++i)
        if (r.chance(d.thp ? 3 : 50)) d.touched.push_back(i);
      if (d.touched.empty()) d.touched.push_back(r.below(d.pages));
    }

    static constexpr unsigned lw[] = {80, 12, 8};
    d.locked = static_cast<lock>(r.weighted(lw));
    if (d.locked != lock::none) d.lock_range = some_piece(r, d.pages, 70);

    static constexpr unsigned prw[] = {65, 25, 10};
    const std::size_t pieces = r.weighted(prw);
    for (std::size_t i = 0; i < pieces; ++i) {
      piece p = some_piece(r, d.pages, 10);
      p.prot = random_prot(r);
      d.protect.push_back(p);
    }

    const bool anon_pages = d.k == kind::private_anon || d.k == kind::memfd_private ||
                            d.k == kind::tmpfs_private;
    if (anon_pages && r.chance(5)) {
      d.mergeable = true;
      d.dup_content = r.chance(80);
    }
    s.maps.push_back(std::move(d));
  }
  s.memfd_pages = memfd_cursor + r.below(4);
  s.tmpfs_pages = tmpfs_cursor + r.below(4);
  for (std::size_t i = 0; i < s.memfd_pages; ++i)
    if (r.chance(15)) s.memfd_prefill.push_back(i);
  for (std::size_t i = 0; i < s.tmpfs_pages; ++i)
    if (r.chance(15)) s.tmpfs_prefill.push_back(i);
}

void add_uffd_and_seal(rng &r, scenario &s, int src) {
  const int n = static_cast<int>(s.maps.size());
  if (r.chance(18)) {
    static constexpr unsigned fw[] = {35, 45, 20};
    switch (r.weighted(fw)) {
      case 0: s.uffd_features = 0; break;
      case 1: s.uffd_features = UFFD_FEATURE_EVENT_REMAP; break;
      default: s.uffd_features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP; break;
    }
    bool any = false;
    for (int m = 0; m < n; ++m) {
      if (r.chance(m == src ? 70 : 30)) {
        s.maps[m].uffd = true;
        s.maps[m].uffd_range = some_piece(r, s.maps[m].pages, 70);
        any = true;
      }
    }
    if (!any) {
      const int m = src >= 0 ? src : 0;
      s.maps[m].uffd = true;
      s.maps[m].uffd_range = {0, s.maps[m].pages, 0};
    }
  }
  if (r.chance(6)) {
    const int m = (src >= 0 && r.chance(60)) ? src : static_cast<int>(r.below(n));
    s.maps[m].seal = true;
    s.maps[m].seal_range = some_piece(r, s.maps[m].pages, 60);
  }
}

// Addresses in the window no mapping covers.
std::vector<std::uintptr_t> unmapped_pages(const scenario &s) {
  std::vector<std::uintptr_t> out;
  const std::size_t pg = page();
  const std::uintptr_t first = s.maps.front().start();
  if (first - kWindowBase >= pg) out.push_back(first - pg);
  for (std::size_t i = 0; i + 1 < s.maps.size(); ++i)
    if (s.maps[i].end() < s.maps[i + 1].start()) out.push_back(s.maps[i].end());
  out.push_back(s.maps.back().end());
  return out;
}

void add_call(rng &r, scenario &s, int src) {
  const std::size_t pg = page();
  call_desc &c = s.call;
  const std::uint64_t huge_lens[] = {std::uint64_t(1) << 46, (std::uint64_t(1) << 47) + pg,
                                     ~std::uint64_t(0), ~std::uint64_t(0) - pg + 2,
                                     std::uint64_t(1) << 56};

  c.flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  if (r.chance(55)) c.flags |= MREMAP_FIXED;
  if (r.chance(2)) c.flags &= ~std::uint64_t(MREMAP_MAYMOVE);
  if (r.chance(2)) {
    const std::uint64_t bits[] = {8, 0x10, 0x80, std::uint64_t(1) << 31, std::uint64_t(1) << 40};
    c.flags |= bits[r.below(std::size(bits))];
  }

  // Source.
  static constexpr unsigned sw[] = {90, 6, 4};
  c.src = static_cast<src_choice>(r.weighted(sw));
  std::size_t src_page = 0;  // page of mapping `src` the range starts at
  if (c.src == src_choice::unmapped) {
    const auto holes = unmapped_pages(s);
    c.old_addr = holes[r.below(holes.size())];
  } else {
    c.src_mapping = src;
    const mapping_desc &m = s.maps[src];
    src_page = r.chance(50) ? 0 : r.below(m.pages);
    c.old_addr = m.start() + src_page * pg;
    if (c.src == src_choice::unaligned) c.old_addr += r.range(1, pg - 1);
  }

  // Length, in pages from the start of the range.
  static constexpr unsigned lw[] = {35, 28, 20, 8, 3, 3};
  c.len = static_cast<len_choice>(r.weighted(lw));
  const std::size_t left = c.src_mapping >= 0 ? s.maps[src].pages - src_page : r.range(1, 8);
  const std::uintptr_t aligned_old = c.old_addr & ~std::uintptr_t(pg - 1);
  switch (c.len) {
    case len_choice::partial: c.old_len = r.range(1, left) * pg; break;
    case len_choice::to_end: c.old_len = left * pg; break;
    case len_choice::spanning: {
      // To a page of a later mapping, or to its end.
      const std::size_t from = c.src_mapping >= 0 ? static_cast<std::size_t>(src) + 1 : 0;
      std::vector<std::size_t> later;
      for (std::size_t i = from; i < s.maps.size(); ++i)
        if (s.maps[i].start() > aligned_old) later.push_back(i);
      if (later.empty()) {
        c.len = len_choice::to_end;
        c.old_len = left * pg;
        break;
      }
      const mapping_desc &m = s.maps[later[r.below(later.size())]];
      const std::uintptr_t end = r.chance(50) ? m.end() : m.start() + r.range(1, m.pages) * pg;
      c.old_len = end - aligned_old;
      break;
    }
    case len_choice::past_end:
      c.old_len = s.maps.back().end() + r.range(1, 8) * pg - aligned_old;
      break;
    case len_choice::zero: c.old_len = 0; break;
    case len_choice::huge: c.old_len = huge_lens[r.below(std::size(huge_lens))]; break;
  }

  // The new length.
  static constexpr unsigned nw[] = {87, 6, 3, 2, 2};
  c.nlen = static_cast<new_len_choice>(r.weighted(nw));
  c.new_len = c.old_len;
  switch (c.nlen) {
    case new_len_choice::equal: break;
    case new_len_choice::aligned_equal:
      // 4096 vs 4000: equal once page aligned, not before.
      if (c.old_len == 0 || c.old_len % pg != 0 || c.old_len > (std::uint64_t(1) << 57)) {
        c.nlen = new_len_choice::equal;
        break;
      }
      switch (r.below(3)) {
        case 0: c.new_len = c.old_len - r.range(1, pg - 1); break;
        case 1: c.old_len = c.old_len - r.range(1, pg - 1); break;
        default:
          c.old_len -= r.range(1, pg / 2);
          c.new_len -= r.range(pg / 2 + 1, pg - 1);
          break;
      }
      break;
    case new_len_choice::unequal:
      c.new_len = r.chance(50) || c.old_len < pg ? c.old_len + pg : c.old_len - pg;
      break;
    case new_len_choice::zero: c.new_len = 0; break;
    case new_len_choice::huge: c.new_len = huge_lens[r.below(std::size(huge_lens))]; break;
  }

  // Destination.
  const std::uint64_t alen = page_align(c.old_len);
  const std::uint64_t span = alen && alen <= (std::uint64_t(1) << 30) ? alen : pg;
  static constexpr unsigned dw[] = {18, 28, 14, 20, 6, 5, 6};
  c.dst = static_cast<dst_choice>(r.weighted(dw));
  // Address 0 with FIXED is rarely interesting: mostly aim elsewhere.
  if (c.dst == dst_choice::null && (c.flags & MREMAP_FIXED) && r.chance(75))
    c.dst = dst_choice::free;
  const std::uintptr_t free_at = kWindowBase + kFreeStart + pg * r.below(256);
  switch (c.dst) {
    case dst_choice::null: c.new_addr = 0; break;
    case dst_choice::free: c.new_addr = free_at; break;
    case dst_choice::adjacent: {
      const mapping_desc &m = s.maps[r.below(s.maps.size())];
      c.new_addr = r.chance(50) || m.start() < kWindowBase + span ? m.end() : m.start() - span;
      break;
    }
    case dst_choice::occupied: {
      // Mostly another mapping than the source's (overlap_src covers that).
      std::size_t j = r.below(s.maps.size());
      if (s.maps.size() > 1 && static_cast<int>(j) == src && r.chance(75))
        j = (j + 1 + r.below(s.maps.size() - 1)) % s.maps.size();
      const mapping_desc &m = s.maps[j];
      c.new_addr = m.start() + pg * r.below(m.pages);
      break;
    }
    case dst_choice::overlap_src: {
      const std::uint64_t pages = span / pg;
      const std::int64_t delta = static_cast<std::int64_t>(r.below(2 * pages - 1)) -
                                 static_cast<std::int64_t>(pages - 1);
      c.new_addr = aligned_old + delta * static_cast<std::int64_t>(pg);
      break;
    }
    case dst_choice::beyond_task: {
      // Above 47 bits is only valid with 5-level paging; the last two
      // are beyond any TASK_SIZE.
      const std::uint64_t la57_top = (std::uint64_t(1) << 56) - pg;
      const std::uint64_t at[] = {std::uint64_t(1) << 47, std::uint64_t(1) << 48,
                                  la57_top > span ? la57_top - span : 0, std::uint64_t(1) << 56,
                                  ~std::uint64_t(pg - 1)};
      c.new_addr = at[r.below(std::size(at))];
      break;
    }
    case dst_choice::unaligned: c.new_addr = free_at + r.range(1, pg - 1); break;
  }
}

// A hugetlb mapping (MAP_HUGETLB, anonymous, private or shared; 1-2 huge
// pages at a huge-page-aligned address), drawn from a stream of its own
// after everything else, as add_write_protect() is: a seed the stream gives
// none keeps the scenario it always had. Where it gives one, the mapping
// goes where the call meets it, and the call is aimed at it:
//   source         the call's range starts in it (refused: hugetlbfs
//                  mappings carry VM_DONTEXPAND), sometimes with a target
//                  aligned to the huge page size (what older kernels check
//                  first) over the layout
//   in_span        a MREMAP_FIXED move of equal lengths from one of the
//                  layout's mappings into it or past it (a small private
//                  mapping may follow it): the VMAs before it move, it stops
//                  the move
//   fixed_target   the call's MREMAP_FIXED target lies in it: a cut off a
//                  huge page boundary cannot be made, whole huge pages (whole
//                  VMAs: none is ever split) can be replaced (by a source of that size: a THP mapping of
//                  the layout, or a private mapping added before it)
//   dst_neighbour  in the free part of the window, right before or after
//                  the destination (a merge candidate that never merges)
// Placed after the layout and after whatever the generated call reaches
// there; it never overlaps another mapping, nor the free part of the window
// but as dst_neighbour, where the call's destination is moved next to it.
void add_hugetlb(scenario &s) {
  const std::size_t huge = hugetlb_size();
  const std::size_t pg = page();
  if (!huge || huge % pg != 0 || huge > kFreeStart / 4) return;
  rng r(s.seed ^ 0x4855'4745'7462'6c00ULL);
  if (!r.chance(30)) return;
  static constexpr unsigned roles[] = {25, 30, 25, 20};
  const auto role = static_cast<huge_role>(r.weighted(roles) + 1);
  const std::size_t per = huge / pg;  // base pages per huge page

  mapping_desc d;
  d.k = r.chance(50) ? kind::hugetlb_private : kind::hugetlb_shared;
  const std::size_t huges = r.range(1, 2);
  d.pages = huges * per;
  d.prot = random_prot(r);
  static constexpr unsigned fw[] = {30, 25, 45};
  d.how = static_cast<fill>(r.weighted(fw));
  if (d.how == fill::touched) {
    for (std::size_t i = 0; i < huges; ++i)
      if (r.chance(50)) d.touched.push_back(i);
    if (d.touched.empty()) d.touched.push_back(r.below(huges));
  }
  // A second huge page with other protections (each huge page is a VMA
  // of its own: difftest_child.cpp).
  if (huges == 2 && r.chance(20)) d.protect.push_back({per, per, random_prot(r)});

  call_desc &c = s.call;
  const std::uint64_t alen = page_align(c.old_len);
  const std::uintptr_t window_end = kWindowBase + kWindowSize;
  const auto in_layout = [&](std::uintptr_t a) {
    return a >= kWindowBase && a < kWindowBase + kFreeStart;
  };
  // The first offset past the layout and past the generated call's ranges
  // that lie in the layout part of the window.
  std::size_t floor = s.maps.back().offset + s.maps.back().pages * pg;
  const std::uintptr_t old = c.old_addr & ~std::uintptr_t(pg - 1);
  if (in_layout(old) && alen <= kWindowSize)
    floor = std::max<std::size_t>(floor, old + alen - kWindowBase);
  if (in_layout(c.new_addr) && alen <= kWindowSize)
    floor = std::max<std::size_t>(floor, c.new_addr + alen - kWindowBase);
  const std::size_t gap = r.chance(50) ? 0 : r.range(1, 16) * pg;
  std::size_t at = align_up(floor + gap, huge);
  if (role == huge_role::dst_neighbour) at = kFreeStart + huge * r.range(1, 4);
  const std::size_t limit = role == huge_role::dst_neighbour
                                ? kWindowSize - (std::size_t(1) << 20)
                                : kFreeStart - (std::size_t(1) << 20);
  if (at + d.pages * pg > limit) return;
  d.offset = at;

  const int index = static_cast<int>(s.maps.size());
  std::optional<mapping_desc> feeder, tail;
  switch (role) {
    case huge_role::none: return;
    case huge_role::source: {
      c.src = src_choice::in_mapping;
      c.src_mapping = index;
      c.old_addr = d.start() + (r.chance(75) ? huge * r.below(huges) : pg * r.below(d.pages));
      const std::size_t left = (d.end() - c.old_addr) / pg;
      static constexpr unsigned lw[] = {35, 30, 35};
      switch (r.weighted(lw)) {
        case 0: c.len = len_choice::to_end; c.old_len = left * pg; break;
        case 1: c.len = len_choice::partial; c.old_len = std::min(left, per) * pg; break;
        default: c.len = len_choice::partial; c.old_len = r.range(1, left) * pg; break;
      }
      c.nlen = new_len_choice::equal;
      c.new_len = c.old_len;
      // Aligned to the huge page size, a target passes the alignment
      // checks that come before the source's flags are looked at.
      static constexpr unsigned dw[] = {40, 30, 30};
      switch (r.weighted(dw)) {
        case 0: break;  // as generated
        case 1:
          c.dst = dst_choice::free;
          c.new_addr = kWindowBase + kFreeStart + huge * r.below(2);
          break;
        default:
          c.dst = dst_choice::occupied;  // over the layout's first mappings
          c.new_addr = kWindowBase + align_up(kLayoutStart, huge);
          break;
      }
      break;
    }
    case huge_role::in_span: {
      const std::size_t j = r.below(s.maps.size());
      const mapping_desc &m = s.maps[j];
      c.src = src_choice::in_mapping;
      c.src_mapping = static_cast<int>(j);
      c.old_addr = m.start() + (r.chance(50) ? 0 : pg * r.below(m.pages));
      std::uintptr_t end = d.end();
      static constexpr unsigned ew[] = {40, 25, 35};
      switch (r.weighted(ew)) {
        case 0: break;
        case 1: end = d.start() + pg * r.range(1, d.pages); break;
        default: {
          // A small private mapping after it, reached by the range too.
          mapping_desc t;
          t.k = kind::private_anon;
          t.prot = PROT_READ | PROT_WRITE;
          t.pages = r.range(1, 16);
          t.how = fill::populate;
          t.offset = d.offset + d.pages * pg + (r.chance(50) ? 0 : r.range(1, 3) * pg);
          if (t.offset + t.pages * pg <= limit) {
            end = t.start() + pg * r.range(1, t.pages);
            tail = std::move(t);
          }
          break;
        }
      }
      c.flags = MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP;
      c.len = len_choice::spanning;
      c.old_len = end - (c.old_addr & ~std::uintptr_t(pg - 1));
      c.nlen = new_len_choice::equal;
      c.new_len = c.old_len;
      c.dst = dst_choice::free;
      c.new_addr = kWindowBase + kFreeStart + (r.chance(50) ? 0 : pg * r.below(256));
      if (c.new_addr + c.old_len > window_end) c.new_addr = kWindowBase + kFreeStart;
      break;
    }
    case huge_role::fixed_target: {
      c.flags |= MREMAP_MAYMOVE | MREMAP_FIXED;
      c.dst = dst_choice::occupied;
      static constexpr unsigned tw[] = {40, 30, 30};
      switch (r.weighted(tw)) {
        case 0: c.new_addr = d.start() + pg * r.below(d.pages); break;
        case 1: c.new_addr = d.start() + huge * r.below(huges); break;
        default: {
          // Replaces whole huge pages: a source of that size, from a
          // mapping long enough (a THP one) where the layout has one, else
          // from a private mapping of its own placed before it.
          int j = -1;
          for (std::size_t i = 0; i < s.maps.size() && j < 0; ++i)
            if (s.maps[i].pages >= per) j = static_cast<int>(i);
          if (j < 0) {
            mapping_desc f;
            f.k = kind::private_anon;
            f.prot = PROT_READ | PROT_WRITE;
            f.pages = huges * per;
            f.offset = at;
            static constexpr unsigned ffw[] = {30, 40, 30};
            f.how = static_cast<fill>(r.weighted(ffw));
            if (f.how == fill::touched)
              for (std::size_t i = 0; i < 4; ++i) f.touched.push_back(r.below(f.pages));
            std::sort(f.touched.begin(), f.touched.end());
            f.touched.erase(std::unique(f.touched.begin(), f.touched.end()), f.touched.end());
            const std::size_t moved = align_up(f.offset + f.pages * pg + gap, huge);
            if (moved + d.pages * pg > limit) {
              c.new_addr = d.start();  // no room: the call's own source
              break;
            }
            d.offset = moved;
            j = index;
            feeder = std::move(f);
          }
          const mapping_desc &m = feeder ? *feeder : s.maps[j];
          c.new_addr = d.start();
          c.src = src_choice::in_mapping;
          c.src_mapping = j;
          c.old_addr = m.start();
          c.len = m.pages == per ? len_choice::to_end : len_choice::partial;
          c.old_len = huge * std::min(huges, m.pages / per);
          c.nlen = new_len_choice::equal;
          c.new_len = c.old_len;
          break;
        }
      }
      break;
    }
    case huge_role::dst_neighbour: {
      c.dst = dst_choice::adjacent;
      const std::uint64_t span = page_align(c.new_len);
      if (span && span <= huge && r.chance(50))
        c.new_addr = d.start() - span;
      else
        c.new_addr = d.end();
      break;
    }
  }
  if (feeder) s.maps.push_back(std::move(*feeder));
  s.huge = role;
  s.huge_mapping = static_cast<int>(s.maps.size());
  s.maps.push_back(std::move(d));
  if (tail) s.maps.push_back(std::move(*tail));
}

}  // namespace

std::string_view to_string(kind k) {
  switch (k) {
    case kind::private_anon: return "private_anon";
    case kind::shared_anon: return "shared_anon";
    case kind::memfd_shared: return "memfd_shared";
    case kind::memfd_private: return "memfd_private";
    case kind::tmpfs_shared: return "tmpfs_shared";
    case kind::tmpfs_private: return "tmpfs_private";
    case kind::hugetlb_private: return "hugetlb_private";
    case kind::hugetlb_shared: return "hugetlb_shared";
  }
  return "?";
}

bool is_file(kind k) {
  return k != kind::private_anon && k != kind::shared_anon && !is_hugetlb(k);
}
bool is_memfd(kind k) { return k == kind::memfd_shared || k == kind::memfd_private; }
bool is_hugetlb(kind k) { return k == kind::hugetlb_private || k == kind::hugetlb_shared; }

std::string_view to_string(huge_role r) {
  switch (r) {
    case huge_role::none: return "none";
    case huge_role::source: return "source";
    case huge_role::in_span: return "in_span";
    case huge_role::fixed_target: return "fixed_target";
    case huge_role::dst_neighbour: return "dst_neighbour";
  }
  return "?";
}

std::string_view to_string(src_choice c) {
  switch (c) {
    case src_choice::in_mapping: return "in_mapping";
    case src_choice::unmapped: return "unmapped";
    case src_choice::unaligned: return "unaligned";
  }
  return "?";
}

std::string_view to_string(len_choice c) {
  switch (c) {
    case len_choice::partial: return "partial";
    case len_choice::to_end: return "to_end";
    case len_choice::spanning: return "spanning";
    case len_choice::past_end: return "past_end";
    case len_choice::zero: return "zero";
    case len_choice::huge: return "huge";
  }
  return "?";
}

std::string_view to_string(new_len_choice c) {
  switch (c) {
    case new_len_choice::equal: return "equal";
    case new_len_choice::aligned_equal: return "aligned_equal";
    case new_len_choice::unequal: return "unequal";
    case new_len_choice::zero: return "zero";
    case new_len_choice::huge: return "huge";
  }
  return "?";
}

std::string_view to_string(dst_choice c) {
  switch (c) {
    case dst_choice::null: return "null";
    case dst_choice::free: return "free";
    case dst_choice::adjacent: return "adjacent";
    case dst_choice::occupied: return "occupied";
    case dst_choice::overlap_src: return "overlap_src";
    case dst_choice::beyond_task: return "beyond_task";
    case dst_choice::unaligned: return "unaligned";
  }
  return "?";
}

std::string_view to_string(side s) {
  switch (s) {
    case side::native: return "native";
    case side::module: return "module";
    case side::batch: return "batch";
  }
  return "?";
}

bool scenario::uses_ksm() const {
  return std::any_of(maps.begin(), maps.end(), [](const auto &m) { return m.mergeable; });
}
bool scenario::uses_uffd() const {
  return std::any_of(maps.begin(), maps.end(), [](const auto &m) { return m.uffd; });
}
bool scenario::uses_seal() const {
  return std::any_of(maps.begin(), maps.end(), [](const auto &m) { return m.seal; });
}

std::uint8_t content_byte(const scenario &s, int m, std::size_t i, bool dup) {
  if (dup) return static_cast<std::uint8_t>(s.pattern + (i % 3));
  return static_cast<std::uint8_t>(s.pattern + 37 * m + 11 * i + 1);
}

// uffd-wp on registered private anonymous mappings, drawn from a stream of
// its own: the rest of a seed's scenario is what it was before write-protect
// joined the tester, so seeds reported earlier still name the same layouts.
void add_write_protect(scenario &s) {
  rng r(s.seed ^ 0x7766'0000'0000'0000ULL);
  for (auto &m : s.maps) {
    if (!m.uffd || m.k != kind::private_anon || !r.chance(50)) continue;
    m.uffd_wp = true;
    m.wp_range = some_piece(r, m.uffd_range.pages, 60);
    m.wp_range.first += m.uffd_range.first;
  }
}

scenario generate(std::uint64_t seed) {
  rng r(seed);
  scenario s;
  s.seed = seed;
  s.pattern = static_cast<std::uint8_t>(r.next());
  add_mappings(r, s);
  const int src = static_cast<int>(r.below(s.maps.size()));
  add_uffd_and_seal(r, s, src);
  add_call(r, s, src);
  if (r.chance(6)) {
    s.lim = static_cast<limit>(r.range(1, 3));
    s.lim_slack = s.lim == limit::map_count ? r.range(0, 8) : r.range(0, 64);
  }
  if (r.chance(55)) {
    s.after.touch = r.chance(70);
    s.after.write = s.after.touch && r.chance(50);
    s.after.reprotect = r.chance(35);
    s.after.flatten = (!s.after.touch && !s.after.reprotect) || r.chance(35);
  }
  // KSM where it matters: merged pages in the source range.
  mapping_desc &m = s.maps[src];
  if (!m.mergeable && r.chance(5) &&
      (m.k == kind::private_anon || m.k == kind::memfd_private || m.k == kind::tmpfs_private)) {
    m.mergeable = true;
    m.dup_content = true;
    if (m.how == fill::none) m.how = fill::populate;
  }
  add_write_protect(s);
  add_hugetlb(s);
  return s;
}

scenario with_sequence(const scenario &s) {
  rng r(s.seed ^ 0x5345'5155'454e'4345ULL);
  scenario seq = s;
  const std::size_t n = r.range(1, 3);
  for (std::size_t i = 0; i < n; ++i) {
    scenario one = s;
    one.call = {};
    add_call(r, one, static_cast<int>(r.below(s.maps.size())));
    seq.more.push_back(one.call);
  }
  return seq;
}

namespace {

void describe_call(std::ostringstream &out, const call_desc &c, std::string_view label) {
  std::string flags;
  if (c.flags & MREMAP_MAYMOVE) flags += "|MAYMOVE";
  if (c.flags & MREMAP_FIXED) flags += "|FIXED";
  if (c.flags & MREMAP_DONTUNMAP) flags += "|DONTUNMAP";
  if (const std::uint64_t other = c.flags & ~std::uint64_t(7)) flags += "|" + hex(other);
  out << "  " << label << ": mremap(" << hex(c.old_addr) << ", " << hex(c.old_len) << ", "
      << hex(c.new_len) << ", " << (flags.empty() ? "0" : flags.substr(1)) << ", "
      << hex(c.new_addr) << ")\n";
  out << "    source " << to_string(c.src);
  if (c.src_mapping >= 0) out << " (map " << c.src_mapping << ")";
  out << ", length " << to_string(c.len) << ", new length " << to_string(c.nlen)
      << ", destination " << to_string(c.dst) << "\n";
}

}  // namespace

std::string describe(const scenario &s) {
  std::ostringstream out;
  const std::size_t pg = page();
  out << "scenario seed " << s.seed << " (window " << hex(kWindowBase) << ", page " << pg
      << ")\n";
  if (s.uses_sequence())
    out << "  a sequence of " << s.more.size() + 1
        << " calls through the module: one by one, and as one DONTUNMAP_IOC_REMAP_BATCH\n";
  else if (s.uses_batch())
    out << "  module side: DONTUNMAP_IOC_REMAP_BATCH, one element\n";
  auto list = [](const std::vector<std::size_t> &v) {
    std::string t;
    for (std::size_t x : v) t += (t.empty() ? "" : ",") + std::to_string(x);
    return "{" + t + "}";
  };
  const auto uses = [&](bool memfd) {
    return std::any_of(s.maps.begin(), s.maps.end(),
                       [&](const auto &m) { return is_file(m.k) && is_memfd(m.k) == memfd; });
  };
  if (uses(true))
    out << "  memfd: " << s.memfd_pages << " pages, prefilled " << list(s.memfd_prefill) << "\n";
  if (uses(false))
    out << "  tmpfs file: " << s.tmpfs_pages << " pages, prefilled " << list(s.tmpfs_prefill)
        << "\n";
  for (std::size_t i = 0; i < s.maps.size(); ++i) {
    const mapping_desc &m = s.maps[i];
    out << "  map " << i << ": " << hex(m.start()) << "-" << hex(m.end()) << " (" << m.pages
        << " pages) " << to_string(m.k) << " " << prot_str(m.prot);
    if (is_file(m.k)) out << " pgoff " << m.file_pgoff;
    if (m.how == fill::populate) out << " MAP_POPULATE";
    if (m.how == fill::touched)
      out << (is_hugetlb(m.k) ? " touched huge pages" : " touched") << list(m.touched);
    if (m.thp) out << " thp";
    if (is_hugetlb(m.k)) {
      const std::size_t n = m.pages * pg / hugetlb_size();
      out << " (" << n << (n == 1 ? " huge page" : " huge pages, a VMA each,") << " of "
          << hugetlb_size() / 1024 << " kB)";
    }
    if (m.locked == lock::mlock) out << " mlock" << piece_str(m.lock_range);
    if (m.locked == lock::onfault) out << " mlock2-onfault" << piece_str(m.lock_range);
    for (const auto &p : m.protect) out << " mprotect" << piece_str(p) << ":" << prot_str(p.prot);
    if (m.mergeable) out << " MADV_MERGEABLE" << (m.dup_content ? "(dup pages)" : "");
    if (m.uffd) out << " uffd-missing" << piece_str(m.uffd_range);
    if (m.uffd_wp) out << " +wp, protected" << piece_str(m.wp_range);
    if (m.seal) out << " mseal" << piece_str(m.seal_range);
    out << "\n";
  }
  if (s.uses_uffd()) {
    out << "  uffd features:";
    if (!s.uffd_features) out << " none";
    if (s.uffd_features & UFFD_FEATURE_EVENT_REMAP) out << " EVENT_REMAP";
    if (s.uffd_features & UFFD_FEATURE_EVENT_UNMAP) out << " EVENT_UNMAP";
    out << "\n";
  }
  switch (s.lim) {
    case limit::none: break;
    case limit::as: out << "  RLIMIT_AS: VmSize + " << s.lim_slack << " pages\n"; break;
    case limit::data: out << "  RLIMIT_DATA: VmData + " << s.lim_slack << " pages\n"; break;
    case limit::map_count:
      out << "  vm.max_map_count: map count + " << s.lim_slack << "\n";
      break;
  }
  describe_call(out, s.call, "call");
  for (std::size_t i = 0; i < s.more.size(); ++i)
    describe_call(out, s.more[i], "then call " + std::to_string(i + 2));
  if (s.huge != huge_role::none)
    out << "    hugetlb map " << s.huge_mapping << ": " << to_string(s.huge) << "\n";
  if (s.after.touch || s.after.reprotect || s.after.flatten)
    out << "  afterwards:" << (s.after.touch ? " touch" : "") << (s.after.write ? "+write" : "")
        << (s.after.reprotect ? " reprotect" : "") << (s.after.flatten ? " flatten" : "")
        << "\n";
  return out.str();
}

}  // namespace dontunmap::difftest
