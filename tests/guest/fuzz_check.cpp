// SPDX-License-Identifier: GPL-2.0
//
// What a call leaves behind. The page states of the ranges it may change
// are taken before and after it: presence from /proc/self/pagemap, content
// as a hash read where the page is present (directly, or through
// /proc/self/mem where the VMA is not readable), so that looking never
// faults a page in. Every other VMA of the process must come out of the
// call unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <tuple>

#include "fuzz.hpp"

namespace dontunmap::fuzz {
namespace {

// A page's first 64 bytes (the pool's header) and one word of every
// further 64: a page from elsewhere, or one torn by a partial copy, hashes
// differently, at an eighth of the cost of every word (TCG guests are slow).
std::uint64_t hash_page(const unsigned char *p, std::size_t n) {
  std::uint64_t h = 0xcbf2'9ce4'8422'2325ULL;
  for (std::size_t i = 0; i + 8 <= n; i += i < 64 ? 8 : 64) {
    std::uint64_t w;
    std::memcpy(&w, p + i + (i < 64 ? 0 : (i / 64) % 8 * 8), 8);
    h = (h ^ w) * 0x100'0000'01b3ULL;
    h ^= h >> 29;
  }
  return h;
}

bool is_special(const pool &p, const procfs::vma &v) {
  return std::any_of(p.specials().begin(), p.specials().end(),
                     [&](const special &s) { return s.start == v.start; });
}

// A VMA as compared: everything of its maps line.
auto key(const procfs::vma &v) {
  return std::make_tuple(v.start, v.end, v.perms, v.offset, v.inode, v.path);
}

bool same_page(const page_state &a, const page_state &b) {
  return a.present == b.present && a.hash == b.hash;
}

}  // namespace

const page_state *snapshot::at(std::uint64_t addr) const {
  auto it = std::lower_bound(pages.begin(), pages.end(), addr,
                             [](const page_state &p, std::uint64_t a) { return p.addr < a; });
  return it != pages.end() && it->addr == addr ? &*it : nullptr;
}

const procfs::vma *snapshot::vma_at(std::uint64_t addr) const {
  for (const auto &v : maps)
    if (addr >= v.start && addr < v.end) return &v;
  return nullptr;
}

snapshot take(const std::vector<span> &ranges, const pool &p, std::vector<procfs::vma> maps,
              const std::vector<span> &anywhere) {
  static const int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  static const int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
  const std::size_t pg = page();
  // Beyond this, a call is judged by its maps alone (a huge range that
  // covers the whole pool).
  constexpr std::size_t kMaxPages = 16384;
  snapshot s;
  s.maps = std::move(maps);
  std::vector<std::uint64_t> pm;
  std::vector<unsigned char> buf(pg);
  for (const auto &v : s.maps) {
    // Meeting the arena is enough: a moved piece landing next to it may
    // merge with a VMA of it (the last piece of a move across several
    // VMAs with an emptied first source, say).
    const bool pool_vma = v.end > kArenaBase && v.start < kFairEnd;
    const bool special = is_special(p, v);
    std::vector<span> here = anywhere;
    if (pool_vma || special) here.insert(here.end(), ranges.begin(), ranges.end());
    for (const span &r : here) {
      const std::uint64_t lo = std::max<std::uint64_t>(v.start, r.lo);
      const std::uint64_t hi = std::min<std::uint64_t>(v.end, r.hi);
      if (lo >= hi || s.pages.size() > kMaxPages) continue;
      const std::size_t n = (hi - lo) / pg;
      pm.assign(n, 0);
      if (::pread(pagemap, pm.data(), n * 8, static_cast<off_t>(lo / pg * 8)) !=
          static_cast<ssize_t>(n * 8))
        pm.assign(n, 0);
      for (std::size_t i = 0; i < n; ++i) {
        page_state ps;
        ps.addr = lo + i * pg;
        ps.present = pm[i] >> 63;
        ps.perms = v.perms;
        if (ps.present && !special) {
          if (v.perms[0] == 'r') {
            ps.hash = hash_page(reinterpret_cast<const unsigned char *>(ps.addr), pg);
          } else if (::pread(mem, buf.data(), pg, static_cast<off_t>(ps.addr)) ==
                     static_cast<ssize_t>(pg)) {
            ps.hash = hash_page(buf.data(), pg);
          } else {
            ps.hash = 1;  // present but unreadable (7.x refuses PROT_NONE reads)
          }
        }
        s.pages.push_back(std::move(ps));
      }
    }
  }
  std::sort(s.pages.begin(), s.pages.end(),
            [](const page_state &a, const page_state &b) { return a.addr < b.addr; });
  s.pages.erase(
      std::unique(s.pages.begin(), s.pages.end(),
                  [](const page_state &a, const page_state &b) { return a.addr == b.addr; }),
      s.pages.end());
  return s;
}

// Every VMA `compared` picks is in both lists, unchanged; `problem` hears
// of each that is not.
template <typename Pick, typename Problem>
void same_vmas(const std::vector<procfs::vma> &pre, const std::vector<procfs::vma> &post,
               const Pick &compared, const Problem &problem) {
  std::set<decltype(key(pre[0]))> before, after;
  for (const auto &v : pre)
    if (compared(v)) before.insert(key(v));
  for (const auto &v : post)
    if (compared(v)) after.insert(key(v));
  for (const auto &v : pre)
    if (compared(v) && !after.count(key(v))) problem("VMA changed or gone: " + v.line);
  for (const auto &v : post)
    if (compared(v) && !before.count(key(v))) problem("VMA appeared: " + v.line);
}

std::vector<std::string> check_outcome(const dontunmap_remap &a, const snapshot &pre,
                                       const snapshot &post, const outcome &got) {
  const std::uint64_t pg = page();
  const std::uint64_t old = untag(a.old_addr) & ~(pg - 1);
  const std::uint64_t alen = page_align(a.old_len);
  const bool fixed = a.flags & MREMAP_FIXED;
  const auto sources = source_spans(a);
  const auto targets = target_spans(a);
  std::vector<std::string> problems;
  const auto problem = [&](std::string t) {
    if (problems.size() < 6) problems.push_back(std::move(t));
  };
  const auto in = [](const std::vector<span> &ss, std::uint64_t x) {
    return std::any_of(ss.begin(), ss.end(), [&](const span &s) { return x >= s.lo && x < s.hi; });
  };

  std::vector<span> touched = sources;
  touched.insert(touched.end(), targets.begin(), targets.end());
  if (got.err == 0) {
    const std::uint64_t ret = got.addr;
    touched.push_back({ret, ret + alen});
    if (ret % pg) problem("destination " + hex(ret) + " not page aligned");
    if (fixed && ret != a.new_addr) problem("MREMAP_FIXED move landed at " + hex(ret));
    for (const page_state &p : pre.pages) {
      if (!in(sources, p.addr)) continue;
      const page_state *d = post.at(ret + (p.addr - old));
      const page_state *s = post.at(p.addr);
      if (!d)
        problem("page " + hex(p.addr) + " has no destination");
      else if (!same_page(p, *d))
        problem("page " + hex(p.addr) + " arrived changed at " + hex(d->addr));
      else if (p.perms != d->perms)
        problem("page " + hex(p.addr) + " arrived " + d->perms + ", was " + p.perms);
      if (!s)
        problem("source page " + hex(p.addr) + " no longer mapped");
      else if (s->present)
        problem("source page " + hex(p.addr) + " still present");
      else if (s->perms != p.perms)
        problem("source page " + hex(p.addr) + " now " + s->perms + ", was " + p.perms);
    }
    // Where the source had no VMA, the destination holds what it held.
    for (const page_state &d : post.pages) {
      if (d.addr < ret || d.addr - ret >= alen || pre.at(old + (d.addr - ret))) continue;
      const page_state *before = pre.at(d.addr);
      if (!before || !same_page(*before, d))
        problem("destination page " + hex(d.addr) + " mapped where the source had none");
    }
  } else {
    std::size_t source_vmas = 0;
    for (const auto &v : pre.maps)
      for (const span &s : sources)
        if (v.end > s.lo && v.start < s.hi) ++source_vmas;
    bool moved_any = false;
    for (const page_state &p : pre.pages) {
      if (!in(sources, p.addr)) continue;
      const page_state *s = post.at(p.addr);
      if (s && same_page(p, *s) && s->perms == p.perms) continue;
      // A FIXED move across several VMAs that stopped at a later one keeps
      // the VMAs before it moved, whole.
      const page_state *d = fixed ? post.at(a.new_addr + (p.addr - old)) : nullptr;
      if (d && same_page(p, *d) && s && !s->present && source_vmas > 1) {
        moved_any = true;
        continue;
      }
      problem("refused call changed source page " + hex(p.addr));
    }
    if (!moved_any && source_vmas <= 1) {
      for (const page_state &p : pre.pages) {
        if (!in(targets, p.addr) || in(sources, p.addr)) continue;
        const page_state *s = post.at(p.addr);
        if (!s || !same_page(p, *s)) problem("refused call changed target page " + hex(p.addr));
      }
    }
    if (!fixed) touched.clear();  // a refused hint move changes no VMA at all
  }

  // VMAs away from the call's ranges (not meeting or touching them) are
  // the same before and after. [heap] and [stack] may grow meanwhile.
  const auto near = [&](const procfs::vma &v) {
    return std::any_of(touched.begin(), touched.end(),
                       [&](const span &s) { return v.start <= s.hi && v.end >= s.lo; });
  };
  const auto compared = [&](const procfs::vma &v) {
    return !near(v) && v.path != "[heap]" && v.path != "[stack]";
  };
  same_vmas(pre.maps, post.maps, compared, problem);
  return problems;
}

std::vector<std::string> check_unchanged(const snapshot &pre, const snapshot &post) {
  std::vector<std::string> problems;
  const auto problem = [&](std::string t) {
    if (problems.size() < 6) problems.push_back(std::move(t));
  };
  for (const page_state &p : pre.pages) {
    const page_state *s = post.at(p.addr);
    if (!s)
      problem("page " + hex(p.addr) + " no longer mapped");
    else if (!same_page(p, *s) || s->perms != p.perms)
      problem("page " + hex(p.addr) + " changed");
  }
  for (const page_state &s : post.pages)
    if (!pre.at(s.addr)) problem("page " + hex(s.addr) + " mapped anew");
  const auto compared = [](const procfs::vma &v) {
    return v.path != "[heap]" && v.path != "[stack]";
  };
  same_vmas(pre.maps, post.maps, compared, problem);
  return problems;
}

std::vector<procfs::vma> without(std::vector<procfs::vma> maps, const std::vector<span> &spans) {
  std::erase_if(maps, [&](const procfs::vma &v) {
    return std::any_of(spans.begin(), spans.end(),
                       [&](const span &s) { return v.start < s.hi && v.end > s.lo; });
  });
  return maps;
}

}  // namespace dontunmap::fuzz
