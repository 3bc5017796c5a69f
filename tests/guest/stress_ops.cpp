// SPDX-License-Identifier: GPL-2.0
//
// What the threads of dontunmap-stress do. Every operation on a slot holds
// that slot's lock, so the model is exact: the races are between slots (one
// mm, one mmap lock, neighbouring page tables, per-VMA locks), with the
// kernel's own threads (khugepaged, ksmd, kcompactd and compaction), with
// the userfaultfd handler, with unlocked content-neutral madvise()s, and
// with fork children that read their copy while the parent carries on.
//
// Invariants the operations keep (stress.hpp has the model):
//  - a slot's data pages are in VMAs without userfaultfd registration (a
//    move's destination loses it), its spare pages in registered ones (a
//    source is registered before or after its move, a placeholder when it
//    is mapped);
//  - in a home without data nothing ever populates a spare page but a
//    worker's touch, served by the handler;
//  - without multi-VMA moves (native before 6.17) a slot's data is always
//    whole in one VMA: no partial moves, and no flag change on part of it.
#include "stress_ops.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>

#include "procfs.hpp"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

namespace dontunmap::stress {

namespace procfs = test::procfs;

std::uint8_t single_loc(const slot &s) {
  const std::uint8_t l = loc_of(s, 0);
  for (std::size_t i = 1; i < s.pages; ++i)
    if (loc_of(s, i) != l) return kMixed;
  return l;
}

bool has_data_in(const slot &s, std::uint8_t h) {
  for (std::size_t i = 0; i < s.pages; ++i)
    if (loc_of(s, i) == h) return true;
  return false;
}

run pick_data_run(const world &w, const slot &s, rng &r) {
  const std::size_t i = r.below(s.pages);
  const std::uint8_t loc = loc_of(s, i);
  std::size_t a = i, b = i + 1;
  while (a > 0 && loc_of(s, a - 1) == loc) --a;
  while (b < s.pages && loc_of(s, b) == loc) ++b;
  if (w.multi_vma && loc != kAway && r.one_in(2)) {
    const std::size_t len = 1 + r.below(b - a);
    a += r.below(b - a - len + 1);
    b = a + len;
  }
  return {a, b, loc};
}

std::optional<run> pick_spare_run(const slot &s, rng &r, std::uint8_t h) {
  if (!s.mapped[h]) return std::nullopt;
  for (int tries = 0; tries < 8; ++tries) {
    const std::size_t i = r.below(s.pages);
    if (loc_of(s, i) == h) continue;
    std::size_t a = i, b = i + 1;
    while (a > 0 && loc_of(s, a - 1) != h) --a;
    while (b < s.pages && loc_of(s, b) != h) ++b;
    const std::size_t len = 1 + r.below(b - a);
    a += r.below(b - a - len + 1);
    return run{a, a + len, h};
  }
  return std::nullopt;
}

const char *loc_name(std::uint8_t loc) {
  return loc == 0 ? "home 0" : loc == 1 ? "home 1" : loc == kAway ? "away" : "mixed";
}

std::string excerpt(const void *a, std::size_t alen, const void *b, std::size_t blen) {
  if (b) return procfs::maps_excerpt({{a, alen}, {b, blen}});
  return procfs::maps_excerpt({{a, alen}});
}

int uffd_unregister(const world &w, void *addr, std::size_t len) {
  uffdio_range range{};
  range.start = reinterpret_cast<std::uintptr_t>(addr);
  range.len = len;
  return ::ioctl(w.uffd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : errno;
}

bool check_source_empty(world &w, slot &s, const char *from, std::size_t pages, scratch &sc,
                        const char *when) {
  const std::size_t bytes = pages * sizeof(std::uint64_t);
  const off_t at = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(from) / w.page * 8);
  if (::pread(w.pagemap_fd, sc.pagemap.data(), bytes, at) != static_cast<ssize_t>(bytes)) {
    fail(w, "pread /proc/self/pagemap: %s", std::strerror(errno));
    return false;
  }
  for (std::size_t i = 0; i < pages; ++i) {
    if (!(sc.pagemap[i] >> 62)) continue;
    fail(w,
         "%s: slot %u: page %zu of the source %p is still %s after the move (pagemap 0x%016" PRIx64
         "): a page left behind or duplicated",
         when, s.id, i, static_cast<const void *>(from),
         sc.pagemap[i] >> 63 ? "present" : "swapped", sc.pagemap[i]);
    return false;
  }
  return true;
}

bool check_some(ctx &c, slot &s, std::size_t a, std::size_t b, const char *when) {
  if (!check_data_page(c.w, s, a, c.sc, false, when)) return false;
  if (b - a > 1 && !check_data_page(c.w, s, b - 1, c.sc, c.r.one_in(3), when)) return false;
  for (int k = 0; k < 4 && b - a > 2; ++k)
    if (!check_data_page(c.w, s, a + c.r.below(b - a), c.sc, c.r.one_in(3), when)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Contents

std::uint32_t next_gen(std::uint32_t g) { return g + 1 ? g + 1 : 1; }

bool write_page(ctx &c, slot &s, std::size_t i, std::uint32_t gen, bool via_mem) {
  world &w = c.w;
  page_state &p = s.pg[i];
  const std::uint32_t old_gen = p.gen;
  p.gen = gen;
  const expect e = expected_data(s, i);
  char *at = s.data(i, w.page);
  if (via_mem) {
    fill_page(w, e, c.sc.page_buf.data());
    const ssize_t n = ::pwrite(w.mem_fd, c.sc.page_buf.data(), w.page,
                               static_cast<off_t>(reinterpret_cast<std::uintptr_t>(at)));
    if (n != static_cast<ssize_t>(w.page)) {
      p.gen = old_gen;
      fail(w, "pwrite /proc/self/mem of slot %u page %zu at %p: %s", s.id, i,
           static_cast<void *>(at), n < 0 ? std::strerror(errno) : "short write");
      return false;
    }
    w.c.mem_writes.fetch_add(1, std::memory_order_relaxed);
  } else {
    fill_page(w, e, at);
  }
  p.maybe_zero = false;
  w.c.writes.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool touch_spare(world &w, slot &s, std::uint8_t h, std::size_t i, bool write, const char *when) {
  page_state &p = s.pg[i];
  char *at = s.home[h] + i * w.page;
  if (p.shadow[h] == 0) {
    const std::uint32_t tag = w.uffd_on() ? s.tag.load(std::memory_order_relaxed) : kZeroTag;
    trace(w, "s%u touch home %u page %zu tag %u %s", s.id, h, i, tag, write ? "write" : "read");
    if (w.uffd_on()) w.c.uffd_expected.fetch_add(1, std::memory_order_relaxed);
    auto *word = reinterpret_cast<std::uint64_t *>(at);
    if (write)
      __atomic_fetch_add(word, 0, __ATOMIC_RELAXED);
    else
      (void)*reinterpret_cast<volatile std::uint64_t *>(word);
    p.shadow[h] = tag;
    w.c.spare_touches.fetch_add(1, std::memory_order_relaxed);
  }
  const expect e = expected_spare(w, s, h, i, p.shadow[h]);
  w.c.pages_verified.fetch_add(1, std::memory_order_relaxed);
  if (first_mismatch(w, e, at) < 0) return true;
  fail(w, "%s: slot %u page %zu of home %u at %p (spare, %s): expected %s, saw %s", when, s.id, i,
       h, static_cast<void *>(at), w.uffd_on() ? "served by the handler" : "no userfaultfd",
       describe(e).c_str(), describe_seen(w, at).c_str());
  return false;
}

namespace {

constexpr auto kSweepInterval = std::chrono::seconds(5);

void op_write(ctx &c, slot &s) {
  if (s.mergeable && c.r.one_in(4)) {
    // A run rewritten with one even generation: duplicates for KSM.
    const run r = pick_data_run(c.w, s, c.r);
    std::uint32_t g = 0;
    for (std::size_t i = r.a; i < r.b; ++i) g = std::max(g, s.pg[i].gen);
    g = (g + 2) & ~1u;
    for (std::size_t i = r.a; i < r.b; ++i)
      if (!write_page(c, s, i, g, false)) return;
    check_some(c, s, r.a, r.b, "after a write");
    return;
  }
  const std::size_t n = 1 + c.r.below(8);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = c.r.below(s.pages);
    if (!write_page(c, s, i, next_gen(s.pg[i].gen), c.r.one_in(4))) return;
    if (!check_data_page(c.w, s, i, c.sc, c.r.one_in(2), "after a write")) return;
  }
}

void op_verify(ctx &c, slot &s) {
  for (int k = 0; k < 8; ++k)
    if (!check_data_page(c.w, s, c.r.below(s.pages), c.sc, c.r.one_in(3), "verify")) return;
}

void op_touch_spare(ctx &c, slot &s) {
  std::uint8_t h = static_cast<std::uint8_t>(c.r.below(2));
  if (!s.mapped[h]) h = static_cast<std::uint8_t>(1 - h);
  if (!s.mapped[h]) return;
  s.touching.store(true);
  const std::size_t n = 1 + c.r.below(8);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = c.r.below(s.pages);
    if (loc_of(s, i) == h) continue;
    if (!touch_spare(c.w, s, h, i, c.r.one_in(2), "spare touch")) break;
  }
  s.touching.store(false);
}

// ---------------------------------------------------------------------------
// madvise, mprotect, mlock, munmap

// [addr, len) of every mapped part of a slot: both homes, and away.
template <typename F>
void for_each_range(const world &w, const slot &s, F f) {
  for (int h = 0; h < 2; ++h)
    if (s.mapped[h]) f(s.home[h], s.len(w.page));
  if (s.away) f(s.away, s.len(w.page));
}

void op_madvise(ctx &c, slot &s) {
  world &w = c.w;
  const std::size_t pg = w.page;
  const run r = pick_data_run(w, s, c.r);
  char *const at = s.where(r.loc, r.a, pg);
  const std::size_t len = (r.b - r.a) * pg;
  const auto advice = c.r.below(9);
  trace(w, "s%u madvise case %llu run [%zu,%zu) %s", s.id, static_cast<unsigned long long>(advice),
        r.a, r.b, loc_name(r.loc));
  switch (advice) {
    case 0:
    case 1:
      if (s.maybe_locked) break;  // EINVAL on VM_LOCKED: a model it cannot keep
      if (::madvise(at, len, MADV_DONTNEED) != 0) {
        fail(w, "MADV_DONTNEED of slot %u [%zu, %zu) at %p: %s", s.id, r.a, r.b,
             static_cast<void *>(at), std::strerror(errno));
        return;
      }
      for (std::size_t i = r.a; i < r.b; ++i) {
        s.pg[i].gen = 0;
        s.pg[i].maybe_zero = false;
      }
      w.c.dontneed.fetch_add(1, std::memory_order_relaxed);
      check_some(c, s, r.a, r.b, "after MADV_DONTNEED");
      return;
    case 2:
      if (s.maybe_locked) break;
      if (::madvise(at, len, MADV_FREE) != 0) {
        if (errno == EINVAL) break;  // before 4.5
        fail(w, "MADV_FREE of slot %u at %p: %s", s.id, static_cast<void *>(at),
             std::strerror(errno));
        return;
      }
      for (std::size_t i = r.a; i < r.b; ++i) s.pg[i].maybe_zero = s.pg[i].gen != 0;
      w.c.madv_free.fetch_add(1, std::memory_order_relaxed);
      return;
    case 3:
      (void)::madvise(at, len, MADV_COLD);  // EINVAL when locked, or before 5.4
      w.c.cold.fetch_add(1, std::memory_order_relaxed);
      return;
    case 4:
      for_each_range(w, s, [](char *a, std::size_t l) { (void)::madvise(a, l, MADV_PAGEOUT); });
      w.c.pageout.fetch_add(1, std::memory_order_relaxed);
      check_some(c, s, r.a, r.b, "after MADV_PAGEOUT");
      return;
    case 5: {
      // Whole homes only: a flag on part of a VMA would split it.
      const int thp = s.thp || c.r.one_in(2) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
      for_each_range(w, s, [&](char *a, std::size_t l) { (void)::madvise(a, l, thp); });
      w.c.hugepage.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    case 6:
      if (single_loc(s) == kMixed) break;
      if (::madvise(s.data(0, pg), s.len(pg), MADV_COLLAPSE) == 0)
        w.c.collapse_ok.fetch_add(1, std::memory_order_relaxed);
      else
        w.c.collapse_failed.fetch_add(1, std::memory_order_relaxed);
      check_some(c, s, 0, s.pages, "after MADV_COLLAPSE");
      return;
    case 7:
      (void)::madvise(at, len, MADV_POPULATE_WRITE);  // EINVAL before 5.14
      w.c.populate.fetch_add(1, std::memory_order_relaxed);
      check_some(c, s, r.a, r.b, "after MADV_POPULATE_WRITE");
      return;
    case 8: {
      const auto spare = pick_spare_run(s, c.r, static_cast<std::uint8_t>(c.r.below(2)));
      if (!spare) break;
      char *const sat = s.home[spare->loc] + spare->a * pg;
      if (::madvise(sat, (spare->b - spare->a) * pg, MADV_DONTNEED) != 0) {
        fail(w, "MADV_DONTNEED of slot %u's spare pages [%zu, %zu) in home %u: %s%s", s.id,
             spare->a, spare->b, spare->loc, std::strerror(errno),
             excerpt(sat, (spare->b - spare->a) * pg, nullptr, 0).c_str());
        return;
      }
      trace(w, "s%u spare dontneed [%zu,%zu) home %u", s.id, spare->a, spare->b, spare->loc);
      for (std::size_t i = spare->a; i < spare->b; ++i) s.pg[i].shadow[spare->loc] = 0;
      w.c.spare_dontneed.fetch_add(1, std::memory_order_relaxed);
      check_spare_absent(w, s, spare->loc, c.sc, "after MADV_DONTNEED of spare pages");
      return;
    }
  }
  (void)::madvise(at, len, MADV_COLD);
  w.c.cold.fetch_add(1, std::memory_order_relaxed);
}

// A round trip through PROT_READ (with a forced write through
// /proc/self/mem, which breaks COW as ptrace does) or PROT_NONE.
void op_mprotect(ctx &c, slot &s) {
  world &w = c.w;
  const std::size_t pg = w.page;
  const run r = pick_data_run(w, s, c.r);
  char *const at = s.where(r.loc, r.a, pg);
  const std::size_t len = (r.b - r.a) * pg;
  const bool read_only = c.r.one_in(2);
  trace(w, "s%u mprotect [%zu,%zu) %s ro=%d", s.id, r.a, r.b, loc_name(r.loc), read_only);
  if (::mprotect(at, len, read_only ? PROT_READ : PROT_NONE) != 0) {
    fail(w, "mprotect of slot %u [%zu, %zu) at %p: %s", s.id, r.a, r.b, static_cast<void *>(at),
         std::strerror(errno));
    return;
  }
  const std::size_t i = r.a + c.r.below(r.b - r.a);
  bool ok = true;
  if (read_only) {
    ok = check_some(c, s, r.a, r.b, "while PROT_READ");
    if (ok && c.r.one_in(2)) {
      const std::uint32_t old_gen = s.pg[i].gen;
      s.pg[i].gen = next_gen(old_gen);
      fill_page(w, expected_data(s, i), c.sc.page_buf.data());
      const ssize_t n =
          ::pwrite(w.mem_fd, c.sc.page_buf.data(), pg,
                   static_cast<off_t>(reinterpret_cast<std::uintptr_t>(at + (i - r.a) * pg)));
      if (n == static_cast<ssize_t>(pg)) {
        s.pg[i].maybe_zero = false;
        w.c.forced_writes.fetch_add(1, std::memory_order_relaxed);
      } else {
        s.pg[i].gen = old_gen;  // refused (proc_mem.force_override): nothing changed
      }
    }
  }
  if (::mprotect(at, len, PROT_READ | PROT_WRITE) != 0) {
    fail(w, "mprotect back to read-write of slot %u at %p: %s", s.id, static_cast<void *>(at),
         std::strerror(errno));
    return;
  }
  w.c.mprotects.fetch_add(1, std::memory_order_relaxed);
  if (ok) check_data_page(w, s, i, c.sc, false, "after an mprotect round trip");
}

// mlock (or MLOCK_ONFAULT) the data, or munlock the whole slot.
void op_mlock(ctx &c, slot &s) {
  world &w = c.w;
  trace(w, "s%u mlock locked=%d", s.id, s.maybe_locked);
  if (s.maybe_locked) {
    for_each_range(w, s, [](char *a, std::size_t l) { (void)::munlock(a, l); });
    s.maybe_locked = false;
    w.c.munlocks.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const run r = pick_data_run(w, s, c.r);
  char *const at = s.where(r.loc, r.a, w.page);
  const std::size_t len = (r.b - r.a) * w.page;
  const long rc = c.r.one_in(2) ? ::mlock(at, len) : ::mlock2(at, len, MLOCK_ONFAULT);
  s.maybe_locked = true;  // a refused populate still leaves VM_LOCKED set
  if (rc != 0)
    w.c.mlock_refused.fetch_add(1, std::memory_order_relaxed);
  else
    w.c.mlocks.fetch_add(1, std::memory_order_relaxed);
  check_some(c, s, r.a, r.b, "after mlock");
}

// Unmaps a home that holds no data (a FIXED move or a hint may then target
// the hole), or maps a hole again as an empty registered placeholder.
void op_home(ctx &c, slot &s) {
  world &w = c.w;
  const std::size_t len = s.len(w.page);
  for (std::uint8_t h = 0; h < 2; ++h) {
    if (s.mapped[h]) continue;
    void *p = ::mmap(s.home[h], len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != s.home[h]) {
      fail(w, "mmap of slot %u's home %u at %p: %s", s.id, h, static_cast<void *>(s.home[h]),
           p == MAP_FAILED ? std::strerror(errno) : "placed elsewhere");
      return;
    }
    if (w.uffd_on())
      if (const int err = uffd_register(w, p, len)) {
        fail(w, "UFFDIO_REGISTER of slot %u's new placeholder: %s", s.id, std::strerror(err));
        return;
      }
    s.mapped[h] = true;
    trace(w, "s%u remap home %u", s.id, h);
    for (std::size_t i = 0; i < s.pages; ++i) s.pg[i].shadow[h] = 0;
    w.c.home_remaps.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto h = static_cast<std::uint8_t>(c.r.below(2));
  for (const std::uint8_t k : {h, static_cast<std::uint8_t>(1 - h)}) {
    if (has_data_in(s, k)) continue;
    if (::munmap(s.home[k], len) != 0) {
      fail(w, "munmap of slot %u's home %u: %s", s.id, k, std::strerror(errno));
      return;
    }
    s.mapped[k] = false;
    trace(w, "s%u unmap home %u", s.id, k);
    for (std::size_t i = 0; i < s.pages; ++i) s.pg[i].shadow[k] = 0;
    w.c.home_unmaps.fetch_add(1, std::memory_order_relaxed);
    return;
  }
}

// Content-neutral and fault-free, so it needs no lock: it races moves of
// the very slots it touches.
void op_neutral(ctx &c) {
  world &w = c.w;
  const std::size_t pages = w.window_len / w.page;
  char *const at = w.window + c.r.below(pages) * w.page;
  const std::size_t len =
      std::min<std::size_t>(1 + c.r.below(1024), pages - (at - w.window) / w.page) * w.page;
  switch (c.r.below(4)) {
    case 0:
      (void)::madvise(at, len, MADV_COLD);
      break;
    case 1:
      (void)::madvise(at, len, MADV_PAGEOUT);
      break;
    case 2:
      (void)::mincore(w.window, w.window_len, c.sc.mincore.data());
      break;
    case 3: {
      const int fd = ::open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      while (::read(fd, c.sc.page_buf.data(), c.sc.page_buf.size()) > 0) {
      }
      ::close(fd);
      break;
    }
  }
  w.c.neutral.fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------

void sweep(ctx &c) {
  for (std::size_t k = 0; k < c.w.nslots && !c.w.stop.load(); ++k) {
    slot &s = c.w.slots[k];
    std::lock_guard lock(s.mu);
    if (!check_slot(c.w, s, c.sc, false, "periodic sweep")) return;
  }
  c.w.c.sweeps.fetch_add(1, std::memory_order_relaxed);
}

void one_op(ctx &c) {
  const std::uint64_t pick = c.r.below(100);
  if (pick < 2) return op_fork(c);
  if (pick < 6) return op_neutral(c);
  slot &s = c.w.slots[c.r.below(c.w.nslots)];
  std::lock_guard lock(s.mu);
  const std::uint64_t op = c.r.below(100);
  if (op < 30) return op_move(c, s);
  if (op < 46) return op_write(c, s);
  if (op < 60) return op_verify(c, s);
  if (op < 72) return op_touch_spare(c, s);
  if (op < 84) return op_madvise(c, s);
  if (op < 88) return op_mprotect(c, s);
  if (op < 92) return op_mlock(c, s);
  if (op < 96) return op_home(c, s);
  check_slot(c.w, s, c.sc, false, "slot check");
}

}  // namespace

int uffd_register(const world &w, void *addr, std::size_t len) {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(addr);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  return ::ioctl(w.uffd, UFFDIO_REGISTER, &reg) == 0 ? 0 : errno;
}

bool build_slot(world &w, slot &s, rng &r) {
  const std::size_t len = s.len(w.page);
  for (std::uint8_t h = 0; h < 2; ++h) {
    void *p = ::mmap(s.home[h], len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != s.home[h]) {
      fail(w, "mmap of slot %u's home %u at %p: %s", s.id, h, static_cast<void *>(s.home[h]),
           std::strerror(errno));
      return false;
    }
  }
  if (s.thp) (void)::madvise(s.home[0], len, MADV_HUGEPAGE);
  if (s.mergeable) (void)::madvise(s.home[0], len, MADV_MERGEABLE);  // EINVAL without KSM
  for (std::size_t i = 0; i < s.pages; ++i) {
    page_state &p = s.pg[i];
    p.loc.store(0, std::memory_order_relaxed);
    p.gen = r.one_in(8) ? 0 : s.mergeable ? 2 : 1;
    if (p.gen) fill_page(w, expected_data(s, i), s.home[0] + i * w.page);
  }
  if (w.uffd_on())
    if (const int err = uffd_register(w, s.home[1], len)) {
      fail(w, "UFFDIO_REGISTER of slot %u's home 1: %s", s.id, std::strerror(err));
      return false;
    }
  return true;
}

void worker(world &w, unsigned index, start_gate &gate) {
  ctx c{w, index, rng(w.opt.seed, index + 1), scratch(w)};
  gate.arrive_and_wait();
  auto next_sweep = std::chrono::steady_clock::now() + kSweepInterval;
  while (!w.stop.load(std::memory_order_relaxed)) {
    if (w.c.ops.fetch_add(1, std::memory_order_relaxed) >= w.opt.ops) {
      w.stop.store(true);
      break;
    }
    if (index == 0 && std::chrono::steady_clock::now() >= next_sweep) {
      sweep(c);
      next_sweep = std::chrono::steady_clock::now() + kSweepInterval;
      continue;
    }
    one_op(c);
  }
  gate.finished();
}

}  // namespace dontunmap::stress
