// SPDX-License-Identifier: GPL-2.0
//
// The pool: real mappings of every kind a call can be aimed at, in slots of
// the arena, plus the special mappings the kernel makes ([vdso], [vvar], an
// aio ring, an io_uring ring) and the struct zone. A slot a call has used
// is unmapped and mapped again as a new random kind, so that the pool
// changes through a run.
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fuzz.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_HUGETLB
#define MAP_HUGETLB 0x40000
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

namespace dontunmap::fuzz {
namespace {

constexpr std::uint64_t kPmd = std::uint64_t(2) << 20;

void *map_at(std::uint64_t at, std::uint64_t len, int prot, int flags, int fd = -1, off_t off = 0) {
  auto *want = reinterpret_cast<void *>(at);
  void *p = ::mmap(want, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
  if (p == MAP_FAILED) return nullptr;
  if (p != want) {  // a kernel without MAP_FIXED_NOREPLACE took it as a hint
    ::munmap(p, len);
    return nullptr;
  }
  return p;
}

bool file_kind(kind k) {
  return k == kind::memfd_shared || k == kind::memfd_private || k == kind::file_shared ||
         k == kind::file_private;
}

}  // namespace

const char *to_string(kind k) {
  switch (k) {
    case kind::anon: return "anon";
    case kind::anon_unpopulated: return "anon_unpopulated";
    case kind::anon_partial: return "anon_partial";
    case kind::anon_readonly: return "anon_readonly";
    case kind::anon_none: return "anon_none";
    case kind::anon_thp: return "anon_thp";
    case kind::shared_anon: return "shared_anon";
    case kind::memfd_shared: return "memfd_shared";
    case kind::memfd_private: return "memfd_private";
    case kind::file_shared: return "file_shared";
    case kind::file_private: return "file_private";
    case kind::devzero_private: return "devzero_private";
    case kind::devzero_shared: return "devzero_shared";
    case kind::mlocked: return "mlocked";
    case kind::mlocked_onfault: return "mlocked_onfault";
    case kind::cluster: return "cluster";
    case kind::hugetlb: return "hugetlb";
    case kind::count_: break;
  }
  return "?";
}

// Each page of slot i starts with its own header (slot, generation, page)
// and is filled with a byte of its own: a page that arrives at the wrong
// offset, or from another slot, hashes differently.
void pool::fill_page(std::uint64_t addr, std::size_t i, std::size_t pg_index) const {
  auto *p = reinterpret_cast<unsigned char *>(addr);
  const std::uint64_t gen = slots_[i].generation;
  std::memset(p, static_cast<int>((i * 31 + pg_index * 7 + gen) & 0xff), page());
  const std::uint64_t header[2] = {0xf022'0000'0000'0000ULL | (std::uint64_t(i) << 32) | gen,
                                   pg_index};
  std::memcpy(p, header, sizeof(header));
}

bool pool::build_piece(std::size_t i, rng &r, kind k, std::uint64_t at, std::size_t pages,
                       std::uint64_t file_page) {
  const std::size_t pg = page();
  const std::uint64_t len = pages * pg;
  slot &s = slots_[i];
  const std::size_t first_index = (at - s.base) / pg;
  const auto fill = [&](unsigned percent) {
    for (std::size_t j = 0; j < pages; ++j)
      if (percent >= 100 || r.chance(percent)) fill_page(at + j * pg, i, first_index + j);
  };
  const int rw = PROT_READ | PROT_WRITE;
  const int priv = MAP_PRIVATE | MAP_ANONYMOUS;
  switch (k) {
    case kind::anon:
    case kind::anon_partial:
    case kind::anon_unpopulated:
    case kind::anon_readonly:
    case kind::anon_none:
    case kind::mlocked:
    case kind::mlocked_onfault: {
      if (!map_at(at, len, rw, priv)) return false;
      const unsigned percent =
          k == kind::anon_unpopulated                                                       ? 0
          : (k == kind::anon_partial || k == kind::anon_none || k == kind::mlocked_onfault) ? 50
                                                                                            : 100;
      fill(percent);
      if (k == kind::anon_readonly) ::mprotect(reinterpret_cast<void *>(at), len, PROT_READ);
      if (k == kind::anon_none) ::mprotect(reinterpret_cast<void *>(at), len, PROT_NONE);
      if (k == kind::mlocked || k == kind::mlocked_onfault) {
        lock_range l{at, len, k == kind::mlocked_onfault};
        if (pages > 2 && r.chance(40)) {  // a part: the VMA is split around it
          const std::size_t first = r.below(pages - 1);
          l.addr = at + first * pg;
          l.len = r.range(1, pages - first - 1) * pg;
        }
        const long rc = l.onfault ? ::syscall(SYS_mlock2, l.addr, l.len, MLOCK_ONFAULT)
                                  : ::mlock(reinterpret_cast<void *>(l.addr), l.len);
        if (rc == 0) s.locks.push_back(l);
      }
      break;
    }
    case kind::anon_thp:
      if (!map_at(at, len, rw, priv)) return false;
      ::madvise(reinterpret_cast<void *>(at), len, MADV_HUGEPAGE);
      fill(100);
      break;
    case kind::shared_anon:
      if (!map_at(at, len, rw, MAP_SHARED | MAP_ANONYMOUS)) return false;
      fill(r.chance(50) ? 100 : 50);
      break;
    case kind::devzero_private:
    case kind::devzero_shared:
      if (!map_at(at, len, rw, k == kind::devzero_shared ? MAP_SHARED : MAP_PRIVATE, zerofd_))
        return false;
      fill(r.chance(50) ? 100 : 50);
      break;
    case kind::memfd_shared:
    case kind::memfd_private:
    case kind::file_shared:
    case kind::file_private: {
      const int fd = (k == kind::memfd_shared || k == kind::memfd_private) ? memfd_ : tmpfd_;
      const bool shared = k == kind::memfd_shared || k == kind::file_shared;
      // The file's pages first (some left holes), then the mapping.
      std::vector<unsigned char> buf(pg);
      for (std::size_t j = 0; j < pages; ++j) {
        const off_t off = static_cast<off_t>((file_page + j) * pg);
        if (r.chance(80)) {
          auto *p = buf.data();
          const std::uint64_t gen = s.generation;
          std::memset(p, static_cast<int>((i * 31 + (first_index + j) * 7 + gen) & 0xff), pg);
          const std::uint64_t header[2] = {
              0xf022'0000'0000'0000ULL | (std::uint64_t(i) << 32) | gen, first_index + j};
          std::memcpy(p, header, sizeof(header));
          if (::pwrite(fd, p, pg, off) != static_cast<ssize_t>(pg)) return false;
        } else {
          ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, static_cast<off_t>(pg));
        }
      }
      const int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | (r.chance(40) ? MAP_POPULATE : 0);
      if (!map_at(at, len, rw, flags, fd, static_cast<off_t>(file_page * pg))) return false;
      if (!shared && r.chance(50)) fill(30);  // private copies of some pages
      break;
    }
    case kind::hugetlb:
      if (!huge_size_ || !map_at(at, huge_size_, rw, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB))
        return false;
      fill_page(at, i, first_index);
      break;
    case kind::cluster:
    case kind::count_: return false;
  }
  // A piece with another protection splits the VMA: moves then meet several.
  const bool plain =
      k == kind::anon || k == kind::anon_partial || k == kind::shared_anon || file_kind(k);
  if (plain && pages > 2 && r.chance(15)) {
    const std::size_t first = r.range(1, pages - 1);
    ::mprotect(reinterpret_cast<void *>(at + first * pg), r.range(1, pages - first) * pg,
               PROT_READ);
  }
  return true;
}

void pool::build(std::size_t i, rng &r, kind k, std::size_t pages) {
  const std::size_t pg = page();
  slot &s = slots_[i];
  s.k = k;
  s.locks.clear();
  ++s.generation;
  const std::uint64_t file_base = i * kFilePagesPerSlot;
  if (pages == 0) {
    static constexpr unsigned pw[] = {70, 25, 5};
    switch (r.weighted(pw)) {
      case 0: pages = r.range(1, 16); break;
      case 1: pages = r.range(17, 64); break;
      default: pages = r.range(65, 256); break;
    }
  }
  if (file_kind(k)) pages = std::min<std::size_t>(pages, 64);
  if (k == kind::anon_thp) pages = kPmd / pg;
  if (k == kind::hugetlb) pages = huge_size_ / pg;

  bool ok = true;
  if (k == kind::cluster) {
    static constexpr kind parts[] = {
        kind::anon,         kind::anon_unpopulated, kind::shared_anon, kind::memfd_shared,
        kind::file_private, kind::anon_readonly,    kind::anon_partial};
    std::uint64_t at = s.base, file_page = file_base;
    const std::size_t n = r.range(2, 4);
    for (std::size_t j = 0; j < n && ok; ++j) {
      const std::size_t piece = r.range(1, 8);
      ok = build_piece(i, r, r.pick(parts), at, piece, file_page);
      at += piece * pg;
      file_page += piece;
      if (j + 1 < n) at += r.below(3) * pg;
    }
    s.len = at - s.base;
  } else {
    ok = build_piece(i, r, k, s.base, pages, file_base);
    s.len = (k == kind::hugetlb ? huge_size_ : pages * pg);
  }
  if (!ok) {  // hugetlb pool exhausted, say: an anonymous slot instead
    ::munmap(reinterpret_cast<void *>(s.base), kSlotStride);
    s.k = kind::anon;
    s.locks.clear();
    pages = std::min<std::size_t>(pages, 16);
    build_piece(i, r, kind::anon, s.base, pages, file_base);
    s.len = pages * pg;
  }
}

void pool::rebuild(std::size_t i, rng &r, std::optional<kind> k, std::size_t pages) {
  ::munmap(reinterpret_cast<void *>(slots_[i].base), kSlotStride);
  if (!k) {
    static constexpr unsigned kw[] = {
        14,  // anon
        6,   // anon_unpopulated
        8,   // anon_partial
        4,   // anon_readonly
        3,   // anon_none
        3,   // anon_thp
        8,   // shared_anon
        7,   // memfd_shared
        4,   // memfd_private
        6,   // file_shared
        4,   // file_private
        3,   // devzero_private
        3,   // devzero_shared
        5,   // mlocked
        3,   // mlocked_onfault
        10,  // cluster
        3,   // hugetlb
    };
    static_assert(std::size(kw) == static_cast<std::size_t>(kind::count_));
    kind pick = static_cast<kind>(r.weighted(kw));
    if (pick == kind::hugetlb && !huge_size_) pick = kind::anon;
    k = pick;
  }
  build(i, r, *k, pages);
}

std::vector<std::size_t> pool::slots_in(std::uint64_t lo, std::uint64_t hi) const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].base < hi && slots_[i].base + kSlotStride > lo) out.push_back(i);
  return out;
}

std::vector<lock_range> pool::locks() const {
  std::vector<lock_range> out;
  for (const auto &s : slots_) out.insert(out.end(), s.locks.begin(), s.locks.end());
  return out;
}

std::string pool::describe() const {
  std::string t;
  for (const auto &sp : specials_) t += " " + sp.name;
  if (!dropped_.empty()) t += " (not copied by fork, so dropped:" + dropped_ + ")";
  t += huge_size_ ? " hugetlb=" + std::to_string(huge_size_ >> 10) + "kB" : " hugetlb=no";
  return t.empty() ? t : t.substr(1);
}

void pool::poke(std::uint64_t addr, const void *data, std::size_t n) const {
  const std::uint64_t pg = page();
  const std::uint64_t ro[] = {zone_.ro, zone_.rw_then_ro + pg};
  for (std::uint64_t p : ro)
    if (addr < p + pg && addr + n > p)
      ::mprotect(reinterpret_cast<void *>(p), pg, PROT_READ | PROT_WRITE);
  // Only what is mapped: a struct running into the hole is cut there.
  std::size_t len = n;
  const std::uint64_t hole = zone_.rw_then_hole + pg;
  if (addr < hole && addr + n > hole) len = hole - addr;
  std::memcpy(reinterpret_cast<void *>(addr), data, len);
  for (std::uint64_t p : ro)
    if (addr < p + pg && addr + n > p) ::mprotect(reinterpret_cast<void *>(p), pg, PROT_READ);
}

bool pool::open_specials() {
  for (const auto &v : procfs::read_maps())
    if (v.path == "[vdso]" || v.path.rfind("[vvar", 0) == 0)
      specials_.push_back({v.path, v.start, v.end});

  const auto before = procfs::read_maps();
  const auto added = [&](std::string_view what) -> std::optional<procfs::vma> {
    for (auto &v : procfs::read_maps()) {
      if (std::any_of(before.begin(), before.end(),
                      [&](const procfs::vma &b) { return b.start == v.start; }))
        continue;
      if (what.empty() || v.path.find(what) != std::string::npos) return v;
    }
    return std::nullopt;
  };
  if (::syscall(SYS_io_setup, 8, &aio_ctx_) == 0) {
    if (auto v = added("[aio]")) {
      specials_.push_back({"[aio]", v->start, v->end});
    } else {
      ::syscall(SYS_io_destroy, aio_ctx_);
      aio_ctx_ = 0;
    }
  } else {
    aio_ctx_ = 0;
  }
#ifdef SYS_io_uring_setup
  io_uring_params params{};
  uring_fd_ = static_cast<int>(::syscall(SYS_io_uring_setup, 4, &params));
  if (uring_fd_ >= 0) {
    uring_len_ = (params.sq_off.array + params.sq_entries * sizeof(std::uint32_t) + page() - 1) &
                 ~std::uint64_t(page() - 1);
    void *m = ::mmap(nullptr, uring_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     uring_fd_, IORING_OFF_SQ_RING);
    if (m != MAP_FAILED) {
      uring_map_ = reinterpret_cast<std::uint64_t>(m);
      specials_.push_back({"[io_uring]", uring_map_, uring_map_ + uring_len_});
    }
  }
#endif
  // The oracle's child must see each of them: a mapping fork() does not
  // copy (VM_DONTCOPY, "dc": 7.3's aio ring) would answer EFAULT there, and
  // leave the child a hole the parent lacks, where the kernel then places
  // moves differently. Such a mapping is no source, and goes.
  const auto smaps = procfs::read_smaps();
  const auto not_copied = [&](const special &sp) {
    for (const auto &e : smaps)
      if (e.area.start == sp.start) return e.has_flag("dc");
    return true;
  };
  for (const special &sp : specials_) {
    if (!not_copied(sp)) continue;
    dropped_ += " " + sp.name + "(dc)";
    if (sp.name == "[aio]") {
      ::syscall(SYS_io_destroy, aio_ctx_);
      aio_ctx_ = 0;
    } else if (sp.name == "[io_uring]") {
      ::munmap(reinterpret_cast<void *>(uring_map_), uring_len_);
      uring_map_ = 0;
    }
  }
  std::erase_if(specials_, not_copied);
  return true;
}

bool pool::open(rng &r, std::string &why) {
  const std::size_t pg = page();
  if (env().task_size < kArenaEnd) {
    why = "TASK_SIZE " + hex(env().task_size) + " is below the arena";
    return false;
  }
  for (const auto &v : procfs::read_maps()) {
    if (v.end > kArenaBase && v.start < kArenaEnd) {
      why = "the arena is not free: " + v.line;
      return false;
    }
  }
  open_ = true;
  const off_t file_size = static_cast<off_t>(kSlots * kFilePagesPerSlot * pg);
  memfd_ = static_cast<int>(::syscall(SYS_memfd_create, "dontunmap-fuzz", MFD_CLOEXEC));
  char path[] = "/tmp/dontunmap-fuzz.XXXXXX";
  tmpfd_ = ::mkostemp(path, O_CLOEXEC);
  if (tmpfd_ >= 0) ::unlink(path);
  zerofd_ = ::open("/dev/zero", O_RDWR | O_CLOEXEC);
  if (memfd_ < 0 || tmpfd_ < 0 || zerofd_ < 0 || ::ftruncate(memfd_, file_size) != 0 ||
      ::ftruncate(tmpfd_, file_size) != 0) {
    why = std::string("files: ") + std::strerror(errno);
    return false;
  }

  // Two more hugetlb pages in the pool, where vm.nr_hugepages can be raised.
  const auto hp_kb = procfs::meminfo_kb("Hugepagesize");
  nr_hugepages_ = procfs::read_text("/proc/sys/vm/nr_hugepages");
  if (keep_hugetlb_) nr_hugepages_.reset();
  if (hp_kb && nr_hugepages_ && *hp_kb * 1024 <= kSlotStride / 2) {
    const unsigned long n = std::strtoul(nr_hugepages_->c_str(), nullptr, 10);
    if (procfs::write_text("/proc/sys/vm/nr_hugepages", std::to_string(n + 2)) &&
        procfs::meminfo_kb("HugePages_Free").value_or(0) >= 2)
      huge_size_ = *hp_kb * 1024;
  }

  // The struct zone (see pool::zone).
  const int rw = PROT_READ | PROT_WRITE, priv = MAP_PRIVATE | MAP_ANONYMOUS;
  const std::uint64_t z = kStructZone;
  zone_ = {z, z + pg, z + 2 * pg, z + 3 * pg, z + 5 * pg, z + 8 * pg, z + 10 * pg};
  const std::pair<std::uint64_t, int> zone_pages[] = {{zone_.rw, rw},
                                                      {zone_.ro, PROT_READ},
                                                      {zone_.rw_then_hole, rw},
                                                      {zone_.rw_then_ro, rw},
                                                      {zone_.rw_then_ro + pg, PROT_READ},
                                                      {zone_.none, PROT_NONE},
                                                      {zone_.race, rw}};
  for (const auto &[at, prot] : zone_pages) {
    if (!map_at(at, pg, prot, priv | MAP_POPULATE)) {
      why = "struct zone: " + std::string(std::strerror(errno));
      return false;
    }
  }

  open_specials();
  slots_.resize(kSlots);
  for (std::size_t i = 0; i < kSlots; ++i) {
    slots_[i].base = kArenaBase + i * kSlotStride;
    rebuild(i, r);
  }
  return true;
}

void pool::close() {
  if (!open_) return;
  open_ = false;
  ::munmap(reinterpret_cast<void *>(kArenaBase), kArenaEnd - kArenaBase);
  slots_.clear();
  if (aio_ctx_) ::syscall(SYS_io_destroy, aio_ctx_);
  aio_ctx_ = 0;
  if (uring_map_) ::munmap(reinterpret_cast<void *>(uring_map_), uring_len_);
  uring_map_ = 0;
  for (int *fd : {&uring_fd_, &memfd_, &tmpfd_, &zerofd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  specials_.clear();
  if (nr_hugepages_ && huge_size_) procfs::write_text("/proc/sys/vm/nr_hugepages", *nr_hugepages_);
  huge_size_ = 0;
}

}  // namespace dontunmap::fuzz
