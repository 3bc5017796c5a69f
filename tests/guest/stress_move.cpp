// SPDX-License-Identifier: GPL-2.0
//
// The moves of dontunmap-stress: a whole slot or part of it to its other
// home (MREMAP_FIXED, onto spare pages or into a hole), to wherever the
// kernel puts it, or with a hint; each followed by the checks that the
// source is empty and the pages arrived, and by the model's update.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "batch_one.hpp"
#include "procfs.hpp"
#include "stress_ops.hpp"

namespace dontunmap::stress {
namespace {

namespace procfs = test::procfs;

enum class dest { fixed, kernel_picks, hint };

// The move as a batch of two elements, the first half of the range and then
// the second, each to its part of the FIXED target: it must end as the
// single call ends (but for the source split at the half way, as a partial
// move leaves it). A batch that stops after the first half ends where no
// single call can, and fails the run.
std::expected<void *, std::error_code> remap_in_halves(world &w, int fd, const remap_request &req) {
  const auto addr = [](const void *p) { return reinterpret_cast<std::uintptr_t>(p); };
  const std::size_t half = req.old_len / w.page / 2 * w.page;
  dontunmap_remap halves[2] = {{.old_addr = addr(req.old_addr),
                                .old_len = half,
                                .new_len = half,
                                .flags = req.flags,
                                .new_addr = addr(req.new_addr)},
                               {.old_addr = addr(req.old_addr) + half,
                                .old_len = req.old_len - half,
                                .new_len = req.old_len - half,
                                .flags = req.flags,
                                .new_addr = addr(req.new_addr) + half}};
  dontunmap_remap_batch header = test::batch_header(halves, 2);
  if (::ioctl(fd, DONTUNMAP_IOC_REMAP_BATCH, &header) != 0) {
    const int err = errno;
    if (header.completed != 0)
      fail(w, "a batch of two halves of %p stopped after the first: %s", req.old_addr,
           std::strerror(err));
    return std::unexpected(std::error_code(err, std::system_category()));
  }
  if (halves[1].new_addr != halves[0].new_addr + half)
    fail(w, "a batch of two halves of %p landed at %#llx and %#llx", req.old_addr,
         static_cast<unsigned long long>(halves[0].new_addr),
         static_cast<unsigned long long>(halves[1].new_addr));
  w.c.batched_halves.fetch_add(1, std::memory_order_relaxed);
  return reinterpret_cast<void *>(halves[0].new_addr);
}

// With the module, one move in eight goes through DONTUNMAP_IOC_REMAP_BATCH
// as a batch of one element, which must behave as the single call does,
// under the same races, and one FIXED move of a source of one VMA in eight
// as a batch of its two halves.
std::expected<void *, std::error_code> remap(ctx &c, const remap_request &req) {
  world &w = c.w;
  const device *dev = w.remapper->module_device();
  if (!dev || w.remapper->requested() != backend::module) return w.remapper->remap(req);
  switch (c.r.below(8)) {
    case 0:
      w.c.batched_moves.fetch_add(1, std::memory_order_relaxed);
      return test::remap_batch_of_one(dev->fd(), req);
    case 1:
      if ((req.flags & MREMAP_FIXED) && req.old_len >= 2 * w.page &&
          procfs::vmas_in(req.old_addr, req.old_len).size() == 1)
        return remap_in_halves(w, dev->fd(), req);
      break;
  }
  return w.remapper->remap(req);
}

// Moves pages [src.a, src.b) from src.loc to home `to` (dest::fixed, or
// dest::hint into a hole, which the kernel may or may not honour) or to an
// address the kernel picks (dest::kernel_picks, the whole slot).
bool move_run(ctx &c, slot &s, const run &src, std::uint8_t to, dest how) {
  world &w = c.w;
  const std::size_t pg = w.page;
  const std::size_t pages = src.b - src.a;
  const std::size_t len = pages * pg;
  char *const from = s.where(src.loc, src.a, pg);
  char *const target = how == dest::kernel_picks ? nullptr : s.home[to] + src.a * pg;
  const bool fixed = how == dest::fixed;

  // The source is registered for missing faults before the move (it keeps
  // the registration) or after it. An away source is unmapped afterwards.
  // Before, only when the destination is a whole home or away: a
  // destination that carries the registration and merges with registered
  // spare neighbours (same context, contiguous pgoff, as a slot's pieces
  // are) makes mremap_userfaultfd_prep() drop the registration of the whole
  // merged VMA, neighbours included - upstream behaviour (seen on 6.18),
  // which the model does not follow.
  const bool whole = src.a == 0 && src.b == s.pages;
  bool before = w.uffd_on() && src.loc != kAway && whole && c.r.one_in(2);
  if (before) {
    if (const int err = uffd_register(w, from, len)) {
      fail(w, "UFFDIO_REGISTER of slot %u pages [%zu, %zu) at %p before a move: %s%s", s.id, src.a,
           src.b, static_cast<void *>(from), std::strerror(err),
           excerpt(from, len, nullptr, 0).c_str());
      return false;
    }
  }
  trace(w, "s%u move [%zu,%zu) %s %p -> %s %p %s reg_before=%d", s.id, src.a, src.b,
        loc_name(src.loc), static_cast<void *>(from),
        how == dest::kernel_picks ? "any" : loc_name(to), static_cast<void *>(target),
        fixed ? "FIXED" : "nofixed", before);
  remap_request req{.old_addr = from,
                    .old_len = len,
                    .new_len = len,
                    .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | (fixed ? MREMAP_FIXED : 0u),
                    .new_addr = target};
  auto moved = remap(c, req);
  // EFAULT without a move is the answer for a source of several VMAs that
  // the move may not span: userfaultfd-armed ones (a registration made
  // just now), or any without MREMAP_FIXED. Only a source of several VMAs
  // may get it.
  if (!moved && moved.error().value() == EFAULT && procfs::vmas_in(from, len).size() > 1 &&
      (w.multi_vma || !fixed)) {
    if (before && uffd_unregister(w, from, len) != 0) {
      fail(w, "UFFDIO_UNREGISTER of slot %u at %p: %s", s.id, static_cast<void *>(from),
           std::strerror(errno));
      return false;
    }
    before = false;
    w.c.multi_fallbacks.fetch_add(1, std::memory_order_relaxed);
    if (!fixed) return true;  // the slot stays where it is
    moved = remap(c, req);
  }
  if (!moved) {
    fail(w, "move of slot %u pages [%zu, %zu) from %s %p to %s %p (%s) failed: %s%s", s.id, src.a,
         src.b, loc_name(src.loc), static_cast<void *>(from),
         how == dest::kernel_picks ? "anywhere" : loc_name(to), static_cast<void *>(target),
         fixed ? "FIXED" : "hint", moved.error().message().c_str(),
         excerpt(from, len, target, target ? len : 0).c_str());
    return false;
  }
  char *const dst = static_cast<char *>(*moved);
  if (fixed && dst != target) {
    fail(w, "FIXED move of slot %u to %p landed at %p", s.id, static_cast<void *>(target),
         static_cast<void *>(dst));
    return false;
  }
  std::uint8_t now = how == dest::kernel_picks || dst != target ? kAway : to;
  if (now == kAway) {
    // The kernel's choice must not be in the window, where holes are ours.
    if (w.in_window(dst) || src.a != 0 || src.b != s.pages) {
      fail(w, "move of slot %u pages [%zu, %zu) placed at %p, inside the stress window", s.id,
           src.a, src.b, static_cast<void *>(dst));
      return false;
    }
    s.away = dst;
  }

  // The model: a new tag for the spare pages served from now on; the moved
  // pages' source copies are absent; the destination was replaced.
  s.tag.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t i = src.a; i < src.b; ++i) {
    page_state &p = s.pg[i];
    p.loc.store(now, std::memory_order_relaxed);
    if (src.loc != kAway) p.shadow[src.loc] = 0;
    if (now != kAway) p.shadow[now] = 0;
  }
  if (now != kAway) {
    if (!s.mapped[now]) w.c.moves_into_hole.fetch_add(1, std::memory_order_relaxed);
    s.mapped[now] = true;
  }

  if (w.uffd_on() && src.loc != kAway) {
    if (!before) {
      if (const int err = uffd_register(w, from, len)) {
        fail(w, "UFFDIO_REGISTER of slot %u's emptied source [%zu, %zu) at %p: %s%s", s.id, src.a,
             src.b, static_cast<void *>(from), std::strerror(err),
             excerpt(from, len, nullptr, 0).c_str());
        return false;
      }
      w.c.register_after.fetch_add(1, std::memory_order_relaxed);
    } else {
      w.c.register_before.fetch_add(1, std::memory_order_relaxed);
    }
  }

  trace(w, "s%u moved to %p now=%s tag=%u", s.id, static_cast<void *>(dst), loc_name(now),
        s.tag.load());
  const char *when = "after a move";
  if (!check_source_empty(w, s, from, pages, c.sc, when)) return false;
  if (!check_some(c, s, src.a, src.b, when)) return false;
  if (src.loc == kAway) {
    if (::munmap(from, len) != 0) {
      fail(w, "munmap of slot %u's emptied away range %p: %s", s.id, static_cast<void *>(from),
           std::strerror(errno));
      return false;
    }
    s.away = nullptr;
  }
  w.c.moves.fetch_add(1, std::memory_order_relaxed);
  if (pages != s.pages) w.c.partial_moves.fetch_add(1, std::memory_order_relaxed);
  if (now == kAway) w.c.away_moves.fetch_add(1, std::memory_order_relaxed);
  if (how == dest::hint) w.c.hinted_moves.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace

void op_move(ctx &c, slot &s) {
  const std::uint8_t loc = single_loc(s);
  if (loc == kAway) {
    move_run(c, s, {0, s.pages, kAway}, static_cast<std::uint8_t>(c.r.below(2)), dest::fixed);
    return;
  }
  if (loc == kMixed) {
    const run r = pick_data_run(c.w, s, c.r);
    move_run(c, s, r, static_cast<std::uint8_t>(1 - r.loc), dest::fixed);
    return;
  }
  const auto other = static_cast<std::uint8_t>(1 - loc);
  const run whole{0, s.pages, loc};
  switch (c.r.below(10)) {
    case 0:
      move_run(c, s, whole, kAway, dest::kernel_picks);
      return;
    case 1:
      if (!s.mapped[other]) {
        move_run(c, s, whole, other, dest::hint);
        return;
      }
      break;
    case 2:
    case 3:
      if (c.w.multi_vma && s.mapped[other]) {
        move_run(c, s, pick_data_run(c.w, s, c.r), other, dest::fixed);
        return;
      }
      break;
  }
  move_run(c, s, whole, other, dest::fixed);
}

}  // namespace dontunmap::stress
