// SPDX-License-Identifier: GPL-2.0
//
// Drawing a call: each field of struct dontunmap_remap from a mix of sane
// values (a slot of the pool, its length, a free target) and adversarial
// ones (kernel and non-canonical addresses, TASK_SIZE edges, lengths that
// wrap or exceed the address space, unknown flag bits), and a place for the
// struct. A draw that would let a move reach the fuzzer's own memory (its
// text, heap or stack as a source or a MREMAP_FIXED target) is drawn again:
// only calls the argument rules refuse, or that stay in the arena, are made.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "fuzz.hpp"

namespace dontunmap::fuzz {
namespace {

constexpr std::uint64_t kStructSize = sizeof(dontunmap_remap);
constexpr std::uint64_t kInfoSize = sizeof(dontunmap_info);

std::uint64_t aligned(std::uint64_t a) { return a & ~std::uint64_t(page() - 1); }

const std::uint64_t kKernelAddrs[] = {0xffff'8000'0000'0000ULL,
                                      0xffff'8880'0000'0000ULL,
                                      0xffff'c900'0000'0000ULL,
                                      0xffff'ffff'8000'0000ULL,
                                      0xffff'ffff'ff60'0000ULL /* [vsyscall] */,
                                      0xffff'ffff'ffff'f000ULL,
                                      0xff00'0000'0000'0000ULL /* LA57 kernel half */};
const std::uint64_t kNonCanonical[] = {
    0x0000'8000'0000'0000ULL /* above 4-level user space: a user address with LA57 */,
    0x0100'0000'0000'0000ULL,
    0x1000'0000'0000'0000ULL,
    0x7fff'ffff'ffff'f000ULL,
    0x8000'0000'0000'0000ULL,
    0x00ff'ffff'ffff'f000ULL /* TASK_SIZE with LA57 */};

// Lengths a length field may take whatever the layout: the address space and
// beyond, and values that wrap once page aligned.
std::uint64_t huge_length(rng &r, std::uint64_t old) {
  const std::uint64_t pg = page(), t = env().task_size;
  const std::uint64_t v[] = {std::uint64_t(1) << 46,
                             std::uint64_t(1) << 47,
                             (std::uint64_t(1) << 47) + pg,
                             t,
                             t - pg,
                             t + pg,
                             t - aligned(old),
                             ~std::uint64_t(0),
                             ~std::uint64_t(0) - pg + 2,
                             std::uint64_t(1) << 56,
                             std::uint64_t(1) << 63};
  return r.pick(v);
}

struct drawn {
  std::uint64_t region_end = 0;  // end of the mapping old_addr was drawn in, or 0
  int slot = -1;
};

// `sane`: only values a well-meaning caller would pass, so that a good
// share of the calls gets past the argument rules and moves something.
std::uint64_t draw_source(rng &r, const pool &p, call &c, drawn &d, bool sane) {
  const std::uint64_t pg = page(), t = env().task_size;
  static constexpr unsigned sw[] = {55, 10, 4, 6, 5, 4, 5, 3, 2, 2, 4};
  static constexpr unsigned sane_w[] = {70, 20, 0, 10, 0, 0, 0, 0, 0, 0, 0};
  static_assert(std::size(sw) == std::size(sane_w));
  const std::size_t choice = sane ? r.weighted(sane_w) : r.weighted(sw);
  const auto &s = p.at(r.below(p.size()));
  const auto in_slot = [&](std::uint64_t a, const char *how) {
    d.slot = static_cast<int>((s.base - kArenaBase) / kSlotStride);
    d.region_end = s.base + s.len;
    c.how += std::string(how) + "(" + to_string(s.k) + ")";
    return a;
  };
  switch (choice) {
    case 0: return in_slot(s.base, "slot");
    case 1: return in_slot(s.base + r.below(s.len / pg) * pg, "slot_interior");
    case 2: return in_slot(s.base + r.below(s.len / pg) * pg + r.range(1, pg - 1), "misaligned");
    case 3: {
      if (p.specials().empty()) return in_slot(s.base, "slot");
      c.special = static_cast<int>(r.below(p.specials().size()));
      const special &sp = p.specials()[c.special];
      d.region_end = sp.end;
      c.how += "special(" + sp.name + ")";
      return sp.start + r.below((sp.end - sp.start) / pg) * pg;
    }
    case 4: c.how += "hole"; return s.base + s.len + r.below(8) * pg;
    case 5: {
      c.how += "task_size_edge";
      const std::uint64_t v[] = {t - pg, t - 4 * pg, t - 16 * pg, t, t + pg};
      return r.pick(v);
    }
    case 6:
      c.how += "kernel";
      return r.chance(80) ? r.pick(kKernelAddrs)
                          : (r.next() | (std::uint64_t(0xffff8) << 44)) & ~(pg - 1);
    case 7: {
      c.how += "low";
      const std::uint64_t v[] = {0, pg, 0x10000, 0x400000};
      return r.pick(v);
    }
    case 8: c.how += "noncanonical"; return r.pick(kNonCanonical);
    case 9: c.how += "tagged"; return in_slot(s.base | (r.range(1, 255) << 56), "+slot");
    default:
      c.how += "random";
      return r.chance(50) ? r.next() : r.next() & ((std::uint64_t(1) << 47) - 1) & ~(pg - 1);
  }
}

std::uint64_t draw_length(rng &r, const pool &p, call &c, const drawn &d, bool sane) {
  const std::uint64_t pg = page();
  const std::uint64_t old = aligned(untag(c.args.old_addr));
  const std::uint64_t left = d.region_end > old ? d.region_end - old : r.range(1, 8) * pg;
  static constexpr unsigned lw[] = {30, 20, 7, 6, 5, 4, 8, 5, 4, 3};
  static constexpr unsigned sane_w[] = {50, 35, 15, 0, 0, 0, 0, 0, 0, 0};
  static_assert(std::size(lw) == std::size(sane_w));
  switch (sane ? r.weighted(sane_w) : r.weighted(lw)) {
    case 0: c.how += " len=to_end"; return left;
    case 1: c.how += " len=partial"; return r.range(1, std::max<std::uint64_t>(left / pg, 1)) * pg;
    case 2: {
      // To a page of a later slot, or to its end: a move across VMAs and gaps.
      if (d.slot < 0 || d.slot + 1 >= static_cast<int>(p.size())) break;
      const slot &later = p.at(r.range(d.slot + 1, p.size() - 1));
      const std::uint64_t end =
          r.chance(50) ? later.base + later.len : later.base + r.range(1, later.len / pg) * pg;
      c.how += " len=spanning";
      return end - old;
    }
    case 3: c.how += " len=past_end"; return left + r.range(1, 8) * pg;
    case 4:
      c.how += " len=misaligned";
      return left >= pg && r.chance(50) ? left - r.range(1, pg - 1) : left + r.range(1, pg - 1);
    case 5: c.how += " len=0"; return 0;
    case 6: c.how += " len=huge"; return huge_length(r, old);
    case 7: c.how += " len=wrapping"; return (0 - old) + r.range(0, 8) * pg;  // old + len overflows
    case 8: c.how += " len=random"; return r.next();
    default: c.how += " len=small"; return r.range(1, pg - 1);
  }
  c.how += " len=to_end";
  return left;
}

std::uint64_t draw_new_len(rng &r, call &c, bool sane) {
  const std::uint64_t pg = page(), old_len = c.args.old_len;
  static constexpr unsigned nw[] = {78, 7, 4, 3, 4, 4};
  static constexpr unsigned sane_w[] = {90, 10, 0, 0, 0, 0};
  static_assert(std::size(nw) == std::size(sane_w));
  switch (sane ? r.weighted(sane_w) : r.weighted(nw)) {
    case 0: return old_len;
    case 1:
      // 4096 and 4000: equal once page aligned, not before.
      if (old_len && old_len % pg == 0 && old_len < (std::uint64_t(1) << 60)) {
        c.how += " new_len=aligned_equal";
        return old_len - r.range(1, pg - 1);
      }
      return old_len;
    case 2:
      c.how += " new_len=unequal";
      return r.chance(50) || old_len < pg ? old_len + pg : old_len - pg;
    case 3: c.how += " new_len=0"; return 0;
    case 4: c.how += " new_len=huge"; return huge_length(r, c.args.old_addr);
    default: c.how += " new_len=random"; return r.next();
  }
}

std::uint64_t draw_target(rng &r, const pool &p, call &c, bool sane) {
  const std::uint64_t pg = page(), t = env().task_size;
  const std::uint64_t old = aligned(untag(c.args.old_addr));
  const std::uint64_t alen = page_align(c.args.old_len);
  const std::uint64_t span = alen && alen <= kTargetZoneSize / 2 ? alen : pg;
  const std::uint64_t free_at = kTargetZone + r.below((kTargetZoneSize - span) / pg + 1) * pg;
  static constexpr unsigned dw[] = {36, 8, 8, 5, 5, 4, 9, 5, 4, 3, 3};
  static constexpr unsigned sane_w[] = {60, 15, 15, 0, 5, 0, 5, 0, 0, 0, 0};
  static_assert(std::size(dw) == std::size(sane_w));
  switch (sane ? r.weighted(sane_w) : r.weighted(dw)) {
    case 0: c.how += " dst=free"; return free_at;
    case 1: {
      const slot &s = p.at(r.below(p.size()));
      c.how += std::string(" dst=slot(") + to_string(s.k) + ")";
      return s.base + (r.chance(50) ? 0 : r.below(s.len / pg) * pg);
    }
    case 2: c.how += " dst=adjacent"; return r.chance(50) ? old + span : old - span;
    case 3: {
      c.how += " dst=overlap";
      const std::uint64_t pages = span / pg;
      return old + (r.below(2 * pages - 1) - (pages - 1)) * pg;
    }
    case 4: c.how += " dst=0"; return 0;
    case 5: c.how += " dst=misaligned"; return free_at + r.range(1, pg - 1);
    case 6: {
      c.how += " dst=task_size_edge";
      const std::uint64_t v[] = {t - span, t - span + pg, t - span - pg, t, t - pg, t - 2 * span};
      return r.pick(v);
    }
    case 7:
      c.how += " dst=kernel";
      return r.chance(50) ? r.pick(kKernelAddrs) : r.pick(kNonCanonical);
    case 8: {
      c.how += " dst=beyond";
      const std::uint64_t v[] = {std::uint64_t(1) << 47, std::uint64_t(1) << 48,
                                 (std::uint64_t(1) << 56) - pg - span, std::uint64_t(1) << 56,
                                 std::uint64_t(1) << 57};
      return r.pick(v);
    }
    case 9: c.how += " dst=random"; return r.chance(50) ? r.next() : r.next() & ~(pg - 1);
    default:
      if (p.specials().empty()) return free_at;
      c.how += " dst=special";
      return p.specials()[r.below(p.specials().size())].start;
  }
}

std::uint64_t draw_flags(rng &r, call &c, bool sane) {
  const std::uint64_t move = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  static constexpr unsigned fw[] = {70, 14, 10, 6};
  switch (sane ? 0 : r.weighted(fw)) {
    case 0: return move | (r.chance(50) ? MREMAP_FIXED : 0);
    case 1: c.how += " flags=combination"; return r.below(8);
    case 2: {
      c.how += " flags=unknown_bit";
      const std::uint64_t bits[] = {8,
                                    0x10,
                                    0x20,
                                    0x40,
                                    0x80,
                                    0x100,
                                    std::uint64_t(1) << 31,
                                    std::uint64_t(1) << 32,
                                    std::uint64_t(1) << 63,
                                    std::uint64_t(1) << r.range(3, 63)};
      return move | (r.chance(50) ? MREMAP_FIXED : 0) | r.pick(bits);
    }
    default: c.how += " flags=random"; return r.next();
  }
}

// A writable page of the pool in [lo, hi), for a struct inside the source
// or the target.
std::optional<std::uint64_t> writable_page_in(rng &r, const std::vector<procfs::vma> &maps,
                                              std::uint64_t lo, std::uint64_t hi) {
  std::vector<std::uint64_t> pages;
  for (const auto &v : maps) {
    if (v.end <= lo || v.start >= hi || v.perms.size() < 2 || v.perms[1] != 'w') continue;
    if (v.start < kArenaBase || v.end > kFairEnd) continue;
    const std::uint64_t a = std::max<std::uint64_t>(v.start, lo);
    const std::uint64_t b = std::min<std::uint64_t>(v.end, hi);
    for (std::uint64_t x = aligned(a); x < b && pages.size() < 64; x += page())
      if (x >= v.start) pages.push_back(x);
  }
  if (pages.empty()) return std::nullopt;
  return pages[r.below(pages.size())];
}

// Where the struct goes; `size` is the struct's.
std::uint64_t draw_place(rng &r, const pool &p, const std::vector<procfs::vma> &maps, call &c,
                         std::uint64_t size, bool with_ranges, bool sane) {
  const std::uint64_t pg = page();
  const auto &z = p.structs();
  static constexpr unsigned pw[] = {60, 6, 2, 2, 2, 1, 4, 2, 3, 3, 8, 7};
  static constexpr unsigned sane_w[] = {80, 5, 0, 0, 0, 0, 0, 0, 0, 0, 8, 7};
  static_assert(std::size(pw) == static_cast<std::size_t>(place::count_));
  static_assert(std::size(sane_w) == std::size(pw));
  c.where = static_cast<place>(sane ? r.weighted(sane_w) : r.weighted(pw));
  const std::uint64_t in_page = r.below((pg - size) / 8 + 1) * 8;
  switch (c.where) {
    case place::normal: return z.rw + in_page;
    case place::misaligned: return z.rw + (r.range(1, pg - size - 1) | 1);
    case place::null: return 0;
    case place::unmapped: return z.hole + in_page;
    case place::kernel: return r.pick(kKernelAddrs) + in_page;
    case place::noncanonical: return (r.range(1, 255) << 56) | (z.rw + in_page);
    case place::readonly: return z.ro + in_page;
    case place::prot_none: return z.none + in_page;
    case place::straddle_unmapped: return z.rw_then_hole + pg - r.range(1, size - 1);
    case place::straddle_readonly: return z.rw_then_ro + pg - r.range(1, size - 1);
    case place::in_source:
    case place::in_target: {
      const dontunmap_remap &a = c.args;
      const bool source = c.where == place::in_source;
      std::optional<std::uint64_t> at;
      if (with_ranges && (source || (a.flags & MREMAP_FIXED))) {
        const auto spans = source ? source_spans(a) : target_spans(a);
        for (const span &s : spans)
          if (!at) at = writable_page_in(r, maps, s.lo, s.hi);
      }
      if (!at) {
        c.where = place::normal;
        return z.rw + in_page;
      }
      return *at + in_page;
    }
    case place::count_: break;
  }
  return z.rw;
}

// Whether the call can only touch the arena (or the special mapping its
// source lies in): see the file comment.
bool safe(const call &c, const pool &p, const std::vector<procfs::vma> &maps) {
  const dontunmap_remap &a = c.args;
  if (argument_rules(a) != 0) return true;
  const auto fair = [](const procfs::vma &v) { return v.start >= kArenaBase && v.end <= kFairEnd; };
  for (const span &s : source_spans(a)) {
    for (const auto &v : maps) {
      if (v.end <= s.lo || v.start >= s.hi || v.path == "[vsyscall]" || fair(v)) continue;
      const bool own_special = c.special >= 0 && v.start == p.specials()[c.special].start &&
                               s.lo >= v.start && s.hi <= v.end;
      if (!own_special) return false;
    }
  }
  for (const span &s : target_spans(a))
    for (const auto &v : maps)
      if (v.end > s.lo && v.start < s.hi && !fair(v)) return false;
  return true;
}

call draw_remap(rng &r, const pool &p, const std::vector<procfs::vma> &maps) {
  call c;
  c.what = op::remap;
  drawn d;
  const bool sane = r.chance(40);
  c.how = sane ? "sane src=" : "src=";
  c.args.old_addr = draw_source(r, p, c, d, sane);
  c.args.old_len = draw_length(r, p, c, d, sane);
  c.args.new_len = draw_new_len(r, c, sane);
  c.args.flags = draw_flags(r, c, sane);
  c.args.new_addr = draw_target(r, p, c, sane);
  c.ptr = draw_place(r, p, maps, c, kStructSize, true, sane);
  return c;
}

call draw_info(rng &r, const pool &p, const std::vector<procfs::vma> &maps) {
  call c;
  c.what = op::info;
  c.cmd = DONTUNMAP_IOC_INFO;
  c.ptr = draw_place(r, p, maps, c, kInfoSize, false, false);
  c.how = "info";
  return c;
}

// An ioctl number the module does not know: ENOTTY whatever the argument.
// Numbers the VFS answers itself (FIOCLEX, FIONBIO, FIFREEZE, FS_IOC_*,
// FICLONE, ...: types 0x00, 0x15, 'T', 'X', 'f', 0x94) are not drawn.
call draw_bad_cmd(rng &r, const pool &p) {
  call c;
  c.what = op::bad_cmd;
  c.ptr = r.chance(80) ? p.structs().rw : r.pick(kKernelAddrs);
  const unsigned dirs[] = {_IOC_NONE, _IOC_READ, _IOC_WRITE, _IOC_READ | _IOC_WRITE};
  const unsigned magic = DONTUNMAP_IOC_MAGIC;
  unsigned long cmd = DONTUNMAP_IOC_REMAP;
  while (cmd == DONTUNMAP_IOC_REMAP || cmd == DONTUNMAP_IOC_INFO ||
         cmd == DONTUNMAP_IOC_REMAP_BATCH) {
    switch (r.below(5)) {
      case 0: cmd = _IOC(r.pick(dirs), magic, r.below(256), r.below(1 << 14)); break;
      case 1: cmd = _IOC(r.pick(dirs), magic, 1, r.chance(50) ? kStructSize : r.below(128)); break;
      case 2: cmd = _IOC(r.pick(dirs), magic, 2, r.chance(50) ? kInfoSize : r.below(128)); break;
      case 3: {
        unsigned type = 0;
        do type = static_cast<unsigned>(r.range(1, 255));
        while (type == 0x15 || type == 'T' || type == 'X' || type == 'f' || type == 0x94);
        cmd = _IOC(r.pick(dirs), type, r.below(256), r.below(1 << 14));
        break;
      }
      default: cmd = DONTUNMAP_IOC_REMAP; break;
    }
  }
  c.cmd = cmd;
  c.how = "cmd=" + hex(cmd);
  if (r.chance(10)) {  // the right number through a descriptor that allows none
    c.path_fd = true;
    c.cmd = r.chance(50) ? DONTUNMAP_IOC_REMAP : DONTUNMAP_IOC_INFO;
    c.how = "O_PATH fd, cmd=" + hex(c.cmd);
  }
  return c;
}

}  // namespace

const char *to_string(place p) {
  switch (p) {
    case place::normal: return "normal";
    case place::misaligned: return "misaligned";
    case place::null: return "null";
    case place::unmapped: return "unmapped";
    case place::kernel: return "kernel";
    case place::noncanonical: return "noncanonical";
    case place::readonly: return "readonly";
    case place::prot_none: return "prot_none";
    case place::straddle_unmapped: return "straddle_unmapped";
    case place::straddle_readonly: return "straddle_readonly";
    case place::in_source: return "in_source";
    case place::in_target: return "in_target";
    case place::count_: break;
  }
  return "?";
}

bool readable(place p) {
  switch (p) {
    case place::null:
    case place::unmapped:
    case place::kernel:
    case place::noncanonical:
    case place::prot_none:
    case place::straddle_unmapped: return false;
    default: return true;
  }
}

call generate(rng &r, const pool &p, const std::vector<procfs::vma> &maps, bool racy_allowed,
              stats &st) {
  static constexpr unsigned ow[] = {86, 5, 5, 4};
  switch (r.weighted(ow)) {
    case 1: return draw_info(r, p, maps);
    case 2: return draw_bad_cmd(r, p);
    case 3:
      if (racy_allowed) {
        call c;
        c.what = op::racy;
        return c;
      }
      break;
    default: break;
  }
  for (int attempt = 0; attempt < 64; ++attempt) {
    call c = draw_remap(r, p, maps);
    if (safe(c, p, maps)) return c;
    ++st.guarded;
  }
  // Unreachable in practice: a plain move of slot 0 to the target zone.
  call c;
  c.args = {p.at(0).base, p.at(0).len, p.at(0).len,
            MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, kTargetZone};
  c.ptr = p.structs().rw;
  c.how = "fallback";
  return c;
}

void place_struct(const pool &p, const call &c) {
  const void *data = &c.args;
  std::size_t n = sizeof(c.args);
  if (c.what == op::info) {
    // A sentinel the call must overwrite exactly: nothing past the struct.
    static unsigned char fill[sizeof(dontunmap_info) + 16];
    std::memset(fill, 0xa5, sizeof(fill));
    data = fill;
    n = sizeof(fill);
    if (c.where == place::normal || c.where == place::misaligned) {
      // The 16 bytes after it stay 0xa5 (checked by the driver).
      if (c.ptr + n > p.structs().rw + page()) n = p.structs().rw + page() - c.ptr;
    }
  }
  switch (c.where) {
    case place::normal:
    case place::misaligned:
    case place::readonly:
    case place::straddle_unmapped:
    case place::straddle_readonly: p.poke(c.ptr, data, n); break;
    case place::in_source:
    case place::in_target: std::memcpy(reinterpret_cast<void *>(c.ptr), data, n); break;
    default: break;
  }
}

std::string describe(const call &c) {
  char buf[512];
  switch (c.what) {
    case op::remap:
      std::snprintf(buf, sizeof(buf),
                    "REMAP old_addr=0x%llx old_len=0x%llx new_len=0x%llx flags=0x%llx "
                    "new_addr=0x%llx struct=%s@0x%" PRIx64 " [%s]",
                    static_cast<unsigned long long>(c.args.old_addr),
                    static_cast<unsigned long long>(c.args.old_len),
                    static_cast<unsigned long long>(c.args.new_len),
                    static_cast<unsigned long long>(c.args.flags),
                    static_cast<unsigned long long>(c.args.new_addr), to_string(c.where), c.ptr,
                    c.how.c_str());
      return buf;
    case op::info:
      std::snprintf(buf, sizeof(buf), "INFO struct=%s@0x%" PRIx64, to_string(c.where), c.ptr);
      return buf;
    case op::bad_cmd:
      std::snprintf(buf, sizeof(buf), "ioctl %s arg=0x%" PRIx64, c.how.c_str(), c.ptr);
      return buf;
    case op::racy: return "racy REMAP";
  }
  return "?";
}

}  // namespace dontunmap::fuzz
