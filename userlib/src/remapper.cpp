// SPDX-License-Identifier: LGPL-2.1-or-later
//
// remapper: one entry point over the native and module backends, the rule
// that picks between them, and what it can do for each kind of mapping.
#include <dontunmap/dontunmap.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "internal.hpp"

namespace dontunmap {

const char *to_string(backend b) noexcept {
  switch (b) {
    case backend::native: return "native";
    case backend::module: return "module";
    case backend::automatic: return "automatic";
  }
  return "unknown";
}

const char *to_string(std::optional<backend> b) noexcept {
  return b ? to_string(*b) : "none";
}

namespace detail {
namespace {

std::size_t page_size() noexcept {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

// len rounded up to whole pages; 0 where that overflows (the kernel refuses
// such a length whatever the backend).
std::size_t page_align(std::size_t len) noexcept {
  const std::size_t page = page_size();
  return len > SIZE_MAX - (page - 1) ? 0 : (len + page - 1) & ~(page - 1);
}

std::optional<module_support> support_of(const std::optional<device> &dev) noexcept {
  if (!dev) return std::nullopt;
  return module_support{.features = dev->features(), .abi_minor = dev->abi_minor()};
}

// pick(), except that a range spanning several VMAs which neither backend
// moves goes to the backend that moves its kind, whose answer (EFAULT) it
// gets: such a range cannot be told from one with a hole in it.
std::optional<backend> settle(const native_support &kernel,
                              const std::optional<module_support> &module, needs n) noexcept {
  if (auto b = pick(kernel, module, n)) return b;
  if (!n.multi) return std::nullopt;
  n.multi = false;
  return pick(kernel, module, n);
}

}  // namespace

std::optional<vma_info> find_vma_in(std::FILE *maps, std::uintptr_t addr) noexcept {
  // Each line: start-end perms offset major:minor inode [path]
  unsigned long start, end, offset, inode;
  unsigned major, minor;
  char perms[5];
  while (std::fscanf(maps, "%lx-%lx %4s %lx %x:%x %lu", &start, &end, perms, &offset,
                     &major, &minor, &inode) == 7) {
    if (addr >= start && addr < end)
      return vma_info{.start = start, .end = end, .private_anon = perms[3] == 'p' && inode == 0};
    if (start > addr) break;  // the lines are sorted by address
    int c;
    while ((c = std::getc(maps)) != '\n' && c != EOF) {
    }
  }
  return std::nullopt;
}

std::optional<vma_info> find_vma(const void *addr) noexcept {
  std::FILE *maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return std::nullopt;
  auto vma = find_vma_in(maps, reinterpret_cast<std::uintptr_t>(addr));
  std::fclose(maps);
  return vma;
}

bool is_private_anon_in(std::FILE *maps, std::uintptr_t addr) noexcept {
  const auto vma = find_vma_in(maps, addr);
  return vma && vma->private_anon;
}

bool is_private_anon(const void *addr) noexcept {
  const auto vma = find_vma(addr);
  return vma && vma->private_anon;
}

bool native_does(const native_support &kernel, needs n) noexcept {
  return (n.shared ? kernel.shared : kernel.private_anon) &&
         (!n.uneven || kernel.aligned_lengths) && (!n.multi || kernel.multi_vma);
}

bool module_does(const std::optional<module_support> &module, needs n) noexcept {
  if (!module) return false;
  const std::uint64_t f = module->features;
  return (f & (n.shared ? DONTUNMAP_FEAT_SHARED : DONTUNMAP_FEAT_PRIVATE_ANON)) &&
         (!n.uneven || (f & DONTUNMAP_FEAT_ALIGNED_LEN)) &&
         (!n.multi || (f & DONTUNMAP_FEAT_MULTI_VMA));
}

std::optional<backend> pick(const native_support &kernel,
                            const std::optional<module_support> &module, needs n) noexcept {
  if (native_does(kernel, n)) return backend::native;
  if (module_does(module, n)) return backend::module;
  return std::nullopt;
}

bool module_batches_for_automatic(const std::optional<module_support> &module) noexcept {
  constexpr std::uint64_t every_move_feature =
      DONTUNMAP_FEAT_PRIVATE_ANON | DONTUNMAP_FEAT_SHARED | DONTUNMAP_FEAT_UFFD |
      DONTUNMAP_FEAT_ALIGNED_LEN | DONTUNMAP_FEAT_MULTI_VMA;
  return module && (module->features & DONTUNMAP_FEAT_BATCH) && module->abi_minor >= 1 &&
         (module->features & every_move_feature) == every_move_feature;
}

std::optional<backend> route(backend requested, const std::optional<module_support> &module,
                             const native_support &kernel, const remap_request &req) noexcept {
  if (requested != backend::automatic) return requested;
  // A move without DONTUNMAP is plain mremap(), the kernel's own job.
  if (!(req.flags & MREMAP_DONTUNMAP)) return backend::native;

  // What every kernel refuses with EINVAL, whatever it supports, is not a
  // missing feature: the kernel's own answer.
  constexpr unsigned long known = MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP;
  const std::uintptr_t off_page = page_size() - 1;
  if ((req.flags & ~known) || !(req.flags & MREMAP_MAYMOVE) ||
      (reinterpret_cast<std::uintptr_t>(req.old_addr) & off_page) ||
      ((req.flags & MREMAP_FIXED) && (reinterpret_cast<std::uintptr_t>(req.new_addr) & off_page)))
    return backend::native;

  const std::size_t old_len = page_align(req.old_len);
  const std::size_t new_len = page_align(req.new_len);
  needs n{.uneven = req.old_len != req.new_len && old_len != 0 && old_len == new_len};
  // Only a MREMAP_FIXED move with equal lengths may span several VMAs, and
  // only one longer than a page can.
  const bool may_span = (req.flags & MREMAP_FIXED) && old_len == new_len && old_len > page_size();

  auto answer = [&](bool shared, bool multi) {
    needs m = n;
    m.shared = shared;
    m.multi = multi;
    return settle(kernel, module, m);
  };
  // Look at the source only when its kind or VMAs change the answer.
  const auto first = answer(false, false);
  const bool depends = answer(true, false) != first ||
                       (may_span && (answer(false, true) != first || answer(true, true) != first));
  if (!depends) return first;

  const auto vma = find_vma(req.old_addr);
  // No VMA at old_addr: EFAULT, from the backend that answers as the
  // newest kernel does when there is one.
  if (!vma) return module ? backend::module : backend::native;
  const auto addr = reinterpret_cast<std::uintptr_t>(req.old_addr);
  return answer(!vma->private_anon, may_span && vma->end - addr < old_len);
}

capability capability_of(const native_support &kernel,
                         const std::optional<module_support> &module, mapping_kind kind,
                         feature what) noexcept {
  const needs base{.shared = kind != mapping_kind::private_anon};
  needs n = base;
  capability c;
  switch (what) {
    case feature::move:
      break;
    case feature::aligned_lengths:
      n.uneven = true;
      break;
    case feature::multi_vma:
      n.multi = true;
      break;
    case feature::uffd_kept: {
      // Every kernel's own DONTUNMAP keeps the source's registration; the
      // module says whether it does. automatic moves the kind one way.
      const bool module_keeps = module && (module->features & DONTUNMAP_FEAT_UFFD);
      c.native = native_does(kernel, base);
      c.module = module_does(module, base) && module_keeps;
      const auto b = pick(kernel, module, base);
      if (b == backend::native || (b == backend::module && module_keeps)) c.automatic = b;
      return c;
    }
    case feature::batch:
      // The kernel has no batch call of its own.
      c.module = module_does(module, base) && (module->features & DONTUNMAP_FEAT_BATCH) &&
                 module->abi_minor >= 1;
      if (c.module && module_batches_for_automatic(module)) c.automatic = backend::module;
      return c;
  }
  c.native = native_does(kernel, n);
  c.module = module_does(module, n);
  c.automatic = pick(kernel, module, n);
  return c;
}

namespace {

// Whether remap_batch() goes through DONTUNMAP_IOC_REMAP_BATCH.
bool batches_in_module(backend requested, const std::optional<device> &dev,
                       std::span<const dontunmap_remap> reqs) noexcept {
  if (!dev || !dev->has_batch()) return false;
  if (requested == backend::module) return true;
  if (requested != backend::automatic ||
      !module_batches_for_automatic(support_of(dev)))
    return false;
  // automatic sends a plain move to the kernel, which the module refuses.
  constexpr std::uint64_t move = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  return std::all_of(reqs.begin(), reqs.end(),
                     [](const dontunmap_remap &r) { return (r.flags & move) == move; });
}

}  // namespace
}  // namespace detail

std::expected<remapper, std::error_code> remapper::create(backend b, const char *path) noexcept {
  if (b == backend::native) return remapper(b, std::nullopt, {});
  auto dev = device::open(path);
  if (!dev && b == backend::module) return std::unexpected(dev.error());
  // Probe now, so that the first remap() costs only the move itself.
  if (b == backend::automatic) (void)probe_native();
  if (!dev) return remapper(b, std::nullopt, dev.error());
  return remapper(b, std::move(*dev), {});
}

std::expected<remapper, std::error_code> remapper::create(device dev, backend b) noexcept {
  if (b != backend::module && b != backend::automatic)
    return std::unexpected(detail::errc(EINVAL));
  if (b == backend::automatic) (void)probe_native();
  return remapper(b, std::move(dev), {});
}

std::optional<backend> remapper::route(const remap_request &req) const noexcept {
  if (requested_ != backend::automatic) return requested_;
  return detail::route(requested_, detail::support_of(dev_), probe_native(), req);
}

backend remapper::choose(const remap_request &req) const noexcept {
  return route(req).value_or(backend::native);
}

capability remapper::capability_of(mapping_kind kind, feature what) const noexcept {
  return detail::capability_of(probe_native(), detail::support_of(dev_), kind, what);
}

std::expected<void *, std::error_code> remapper::remap(const remap_request &req) const noexcept {
  const auto b = route(req);
  if (!b) return std::unexpected(detail::errc(EOPNOTSUPP));
  if (*b == backend::module) return dev_->remap(req);
  return remap_native(req);
}

batch_result remapper::remap_batch(std::span<dontunmap_remap> reqs) const noexcept {
  batch_result done;
  if (detail::batches_in_module(requested_, dev_, reqs)) {
    while (done.completed < reqs.size()) {
      const std::size_t n =
          std::min<std::size_t>(reqs.size() - done.completed, DONTUNMAP_BATCH_MAX);
      const batch_result r = dev_->remap_batch(reqs.subspan(done.completed, n));
      done.completed += r.completed;
      if (r.error) {
        done.error = r.error;
        break;
      }
    }
    return done;
  }
  for (dontunmap_remap &e : reqs) {
    const auto moved = remap(detail::from_uapi(e));
    if (!moved) {
      done.error = moved.error();
      break;
    }
    e.new_addr = reinterpret_cast<std::uintptr_t>(*moved);
    ++done.completed;
  }
  return done;
}

}  // namespace dontunmap
