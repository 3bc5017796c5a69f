// SPDX-License-Identifier: GPL-2.0
//
// One child of a scenario: builds the layout at its fixed addresses, makes
// the one call through its side (native mremap or the module), and reports
// what it observes before and after as lines on a pipe.
//
// Observing must not change what is observed: pages are read only where
// /proc/self/pagemap says they are present (a read of an absent private
// page would populate it, and one of a userfaultfd-registered range would
// block), through /proc/self/mem (which also reads PROT_NONE pages); and
// the Committed_AS reads around the call do not allocate.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <malloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dontunmap/dontunmap.hpp>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "batch_one.hpp"
#include "difftest.hpp"
#include "procfs.hpp"
#include "text.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

namespace dontunmap::difftest {
namespace procfs = test::procfs;
using test::errname;
using test::hex;
namespace {

constexpr long kSysMseal = 462;  // the same number on every architecture
// A child that has not finished by then is stuck (a fault on a
// userfaultfd range nobody serves, say): SIGALRM ends it, and the parent
// reports the death.
constexpr unsigned kChildTimeoutSeconds = 120;
// Pages of context kept around each observed range.
constexpr std::size_t kMarginPages = 16;

// The report, written to the pipe as it grows.
class out_stream {
 public:
  explicit out_stream(int fd) : fd_(fd) {}
  void line(std::string_view section, std::string_view text) {
    buf_.append(section);
    if (!text.empty()) buf_.append(" ").append(text);
    buf_.push_back('\n');
    if (buf_.size() > 32768) flush();
  }
  void flush() {
    const char *p = buf_.data();
    std::size_t left = buf_.size();
    while (left) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    buf_.clear();
  }
  [[noreturn]] void finish() {
    line("end", "");
    flush();
    ::_exit(0);
  }

 private:
  int fd_;
  std::string buf_;
};

// ---------------------------------------------------------------------------
// Building the layout

void write_page(char *p, const scenario &sc, int m, std::size_t i, bool dup) {
  std::memset(p, content_byte(sc, m, i, dup), page());
  if (!dup) {
    const std::uint64_t header[3] = {sc.seed, static_cast<std::uint64_t>(m), i};
    std::memcpy(p, header, sizeof(header));
  }
}

struct built {
  int memfd = -1;
  int tmpfd = -1;
  int uffd = -1;
};

// Why a build stopped: a feature the kernel lacks (skip) or a step that
// failed (setup).
struct stop {
  bool skip;
  std::string what;
};

std::optional<stop> make_file(int &fd, const scenario &sc, bool memfd) {
  const std::size_t pages = memfd ? sc.memfd_pages : sc.tmpfs_pages;
  const auto &prefill = memfd ? sc.memfd_prefill : sc.tmpfs_prefill;
  if (memfd) {
    fd = ::memfd_create("difftest", MFD_CLOEXEC);
    if (fd < 0) return stop{errno == ENOSYS, "memfd_create: " + errname(errno)};
  } else {
    // The same name in both children (they run one after the other), so
    // /proc/self/maps shows the same path; unlinked at once, so nothing is
    // left behind.
    const char *path = "/tmp/difftest.tmpfs";
    ::unlink(path);
    fd = ::open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return stop{false, std::string("open ") + path + ": " + errname(errno)};
    ::unlink(path);
  }
  if (::ftruncate(fd, static_cast<off_t>(pages * page())) != 0)
    return stop{false, "ftruncate: " + errname(errno)};
  std::string buf(page(), '\0');
  for (std::size_t i : prefill) {
    write_page(buf.data(), sc, memfd ? 100 : 200, i, false);
    if (::pwrite(fd, buf.data(), page(), static_cast<off_t>(i * page())) !=
        static_cast<ssize_t>(page()))
      return stop{false, "pwrite: " + errname(errno)};
  }
  return std::nullopt;
}

// Starts ksmd, waits until it has merged what the layout offers, stops it.
// Four full scans from now: the one under way may not include this process
// (a new mm is queued behind the scan cursor), the next only checksums its
// pages, the one after merges them, and one more for good measure. ksmd has
// no completion to wait for, so this polls its scan counter (bounded).
bool g_system_allowed = true;

bool ksm_settle() {
  if (!g_system_allowed) return false;
  const auto scans = [] {
    const auto t = procfs::read_text("/sys/kernel/mm/ksm/full_scans");
    return t ? std::strtoull(t->c_str(), nullptr, 10) : 0ULL;
  };
  if (!procfs::write_text("/sys/kernel/mm/ksm/run", "1")) return false;
  const auto start = scans();
  for (int i = 0; i < 4000 && scans() < start + 4; ++i) ::usleep(5000);
  const bool merged = scans() >= start + 4;
  procfs::write_text("/sys/kernel/mm/ksm/run", "0");
  return merged;
}

// The call after `c` in the scenario's sequence (sc.call, then sc.more),
// or nullptr after the last.
const call_desc *next_call(const scenario &sc, const call_desc *c) {
  if (c == &sc.call) return sc.more.empty() ? nullptr : sc.more.data();
  const auto i = static_cast<std::size_t>(c - sc.more.data()) + 1;
  return i < sc.more.size() ? &sc.more[i] : nullptr;
}

std::optional<stop> build(const scenario &sc, built &b) {
  const std::size_t pg = page();
  const auto fail = [](std::string step, int err) {
    return stop{false, std::move(step) + ": " + errname(err)};
  };
  const bool need_memfd = std::any_of(sc.maps.begin(), sc.maps.end(),
                                      [](const auto &m) { return is_memfd(m.k); });
  const bool need_tmpfs = std::any_of(sc.maps.begin(), sc.maps.end(), [](const auto &m) {
    return is_file(m.k) && !is_memfd(m.k);
  });
  if (need_memfd)
    if (auto s = make_file(b.memfd, sc, true)) return s;
  if (need_tmpfs)
    if (auto s = make_file(b.tmpfd, sc, false)) return s;

  for (std::size_t i = 0; i < sc.maps.size(); ++i) {
    const mapping_desc &d = sc.maps[i];
    const int m = static_cast<int>(i);
    const std::string name = "map " + std::to_string(i);
    int flags = MAP_FIXED_NOREPLACE;
    int fd = -1;
    switch (d.k) {
      case kind::private_anon: flags |= MAP_PRIVATE | MAP_ANONYMOUS; break;
      case kind::shared_anon: flags |= MAP_SHARED | MAP_ANONYMOUS; break;
      case kind::memfd_shared: flags |= MAP_SHARED; fd = b.memfd; break;
      case kind::memfd_private: flags |= MAP_PRIVATE; fd = b.memfd; break;
      case kind::tmpfs_shared: flags |= MAP_SHARED; fd = b.tmpfd; break;
      case kind::tmpfs_private: flags |= MAP_PRIVATE; fd = b.tmpfd; break;
      case kind::hugetlb_private: flags |= MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB; break;
      case kind::hugetlb_shared: flags |= MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB; break;
    }
    if (d.how == fill::populate) flags |= MAP_POPULATE;
    const int initial = d.how == fill::touched ? PROT_READ | PROT_WRITE : d.prot;
    const off_t off = is_file(d.k) ? static_cast<off_t>(d.file_pgoff * pg) : 0;
    auto *want = reinterpret_cast<char *>(d.start());
    // A hugetlb mapping is made a huge page per mmap(), one VMA each (they
    // never merge), so that no step of a scenario splits a hugetlb VMA:
    // 6.1's backported hugetlb_split() (6.1.147+) runs before
    // __vma_adjust() takes the i_mmap lock, and a lockdep kernel warns on
    // every split, the native call's included (docs/semantics.md).
    const std::size_t chunk = is_hugetlb(d.k) ? hugetlb_size() : d.pages * pg;
    for (std::size_t done = 0; done < d.pages * pg; done += chunk) {
      void *p = ::mmap(want + done, chunk, initial, flags, fd, off);
      // The driver reserved the huge pages a scenario needs: a refusal is
      // the pool's (someone else took them), the same in both children.
      if (p == MAP_FAILED && is_hugetlb(d.k))
        return stop{true, "hugetlb: mmap " + name + ": " + errname(errno)};
      if (p == MAP_FAILED) return fail("mmap " + name, errno);
      if (p != want + done)
        return stop{false, "mmap " + name + ": placed at " + hex(std::uintptr_t(p))};
    }
    if (d.how == fill::touched) {
      if (is_hugetlb(d.k)) {
        // Whole huge pages, each base page with its own header.
        const std::size_t per = hugetlb_size() / pg;
        for (std::size_t t : d.touched)
          for (std::size_t i = t * per; i < (t + 1) * per; ++i)
            write_page(want + i * pg, sc, m, i, false);
      } else {
        for (std::size_t t : d.touched) write_page(want + t * pg, sc, m, t, d.dup_content);
      }
      if (d.prot != initial && ::mprotect(want, d.pages * pg, d.prot) != 0)
        return fail("mprotect " + name, errno);
    }
    for (const piece &pc : d.protect)
      if (::mprotect(want + pc.first * pg, pc.pages * pg, pc.prot) != 0)
        return fail("mprotect piece of " + name, errno);
    if (d.mergeable && ::madvise(want, d.pages * pg, MADV_MERGEABLE) != 0)
      return stop{errno == EINVAL, "madvise(MADV_MERGEABLE) " + name + ": " + errname(errno)};
    if (d.locked != lock::none) {
      char *at = want + d.lock_range.first * pg;
      const std::size_t len = d.lock_range.pages * pg;
      const long rc = d.locked == lock::mlock ? ::mlock(at, len)
                                              : ::syscall(SYS_mlock2, at, len, MLOCK_ONFAULT);
      // mlock() of a range with PROT_NONE parts locks all of it but cannot
      // populate those parts, and says ENOMEM (5.10 also for
      // MLOCK_ONFAULT): the layout is still the intended one, and the same
      // in both children.
      if (rc != 0 && errno != ENOMEM)
        return fail("mlock " + name, errno);
    }
  }

  if (sc.uses_uffd()) {
    b.uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (b.uffd < 0) return stop{errno == ENOSYS, "userfaultfd: " + errname(errno)};
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = sc.uffd_features;
    if (::ioctl(b.uffd, UFFDIO_API, &api) != 0)
      return stop{errno == EINVAL, "UFFDIO_API: " + errname(errno)};
    // Without uffd-wp (arm64 before 6.10) both children register MISSING
    // alone; the pagemap shows the uffd-wp bit where the kernel has one.
    const bool have_wp = api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    for (std::size_t i = 0; i < sc.maps.size(); ++i) {
      const mapping_desc &d = sc.maps[i];
      if (!d.uffd) continue;
      const bool wp = d.uffd_wp && have_wp;
      uffdio_register reg{};
      reg.range.start = d.start() + d.uffd_range.first * pg;
      reg.range.len = d.uffd_range.pages * pg;
      reg.mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0);
      if (::ioctl(b.uffd, UFFDIO_REGISTER, &reg) != 0)
        return fail("UFFDIO_REGISTER map " + std::to_string(i), errno);
      if (!wp) continue;
      // One VMA at a time: before 5.19 the range had to lie in one.
      const std::uintptr_t lo = d.start() + d.wp_range.first * pg;
      const std::uintptr_t hi = lo + d.wp_range.pages * pg;
      for (const auto &v : procfs::vmas_in(reinterpret_cast<void *>(lo), hi - lo)) {
        uffdio_writeprotect protect{};
        protect.range.start = std::max<std::uintptr_t>(v.start, lo);
        protect.range.len = std::min<std::uintptr_t>(v.end, hi) - protect.range.start;
        protect.mode = UFFDIO_WRITEPROTECT_MODE_WP;
        if (::ioctl(b.uffd, UFFDIO_WRITEPROTECT, &protect) != 0)
          return fail("UFFDIO_WRITEPROTECT map " + std::to_string(i), errno);
      }
    }
  }

  for (std::size_t i = 0; i < sc.maps.size(); ++i) {
    const mapping_desc &d = sc.maps[i];
    if (!d.seal) continue;
    if (::syscall(kSysMseal, d.start() + d.seal_range.first * pg, d.seal_range.pages * pg, 0) !=
        0)
      return stop{errno == ENOSYS, "mseal map " + std::to_string(i) + ": " + errname(errno)};
  }

  // A MREMAP_FIXED target reaching out of the window may cover the tester
  // itself (its text at 0x400000, heap, stack): a kernel that unmaps the
  // target first leaves a child that cannot live to report. Both children
  // see the same layout, so both skip.
  // Likewise a FIXED source range reaching out of the window: the newest
  // semantics move every VMA of it up to the first that refuses, which
  // may be the tester's own memory (seed 5308 on 6.1: the module child
  // moved what lay above the window and died of SIGABRT; native 6.1
  // refuses such a range whole).
  // (Every call of a sequence: the layout is the one before the first.)
  for (const call_desc *call = &sc.call; call; call = next_call(sc, call)) {
    if (!(call->flags & MREMAP_FIXED)) continue;
    const std::pair<std::uintptr_t, std::uint64_t> ranges[] = {{call->new_addr, call->new_len},
                                                               {call->old_addr, call->old_len}};
    const char *what[] = {"fixed_target_over_tester", "fixed_source_over_tester"};
    for (std::size_t i = 0; i < std::size(ranges); ++i) {
      const std::uintptr_t lo = ranges[i].first & ~std::uintptr_t(pg - 1);
      const std::uint64_t len = page_align(ranges[i].second);
      const std::uintptr_t hi = lo + len < lo ? ~std::uintptr_t(0) : lo + len;
      for (const auto &v : procfs::vmas_in(reinterpret_cast<void *>(lo), hi - lo)) {
        if (v.path == "[vsyscall]") continue;  // never unmapped or moved
        if (v.start < kWindowBase || v.end > kWindowBase + kWindowSize)
          return stop{true, std::string(what[i]) + ": covers its " +
                                (v.path.empty() ? std::string("mapping") : v.path)};
      }
    }
  }

  if (sc.uses_ksm() && !ksm_settle()) return stop{true, "ksm: ksmd cannot be run or is too slow"};
  if (sc.lim == limit::map_count && !g_system_allowed)
    return stop{true, "max_map_count: system knobs left alone"};
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Observing

struct region {
  std::uintptr_t lo, hi;
};

region around(std::uintptr_t addr, std::uint64_t len) {
  const std::uintptr_t margin = kMarginPages * page();
  const std::uintptr_t lo = addr > margin ? addr - margin : 0;
  const std::uintptr_t end = addr + len < addr ? ~std::uintptr_t(0) : addr + len;
  const std::uintptr_t hi = end + margin < end ? ~std::uintptr_t(0) : end + margin;
  return {lo, hi};
}

region exactly(std::uintptr_t addr, std::uint64_t len) {
  const std::uintptr_t end = addr + len < addr ? ~std::uintptr_t(0) : addr + len;
  return {addr, end};
}

std::vector<region> merged(std::vector<region> rs) {
  std::sort(rs.begin(), rs.end(), [](const region &a, const region &b) { return a.lo < b.lo; });
  std::vector<region> out;
  for (const region &r : rs) {
    if (!out.empty() && r.lo <= out.back().hi)
      out.back().hi = std::max(out.back().hi, r.hi);
    else
      out.push_back(r);
  }
  return out;
}

struct page_rec {
  std::uintptr_t addr = 0;
  std::uint64_t bits = 0;  // pagemap bits 55-63, shifted down
  std::uint64_t hash = 0;  // content, when present
  std::size_t vma = 0;     // index into snapshot::vmas

  bool present() const { return bits & (1u << 8); }
};

struct snapshot {
  std::vector<procfs::smaps_entry> vmas;
  // Per VMA: whether it meets a region whose pages are read. The others are
  // the tester's own (its text, heap, stack) seen in a margin; their maps
  // lines are compared, their smaps are not: how much of its own text a
  // child has faulted in depends on the code path its backend took.
  std::vector<bool> compared;
  std::vector<page_rec> pages;  // sorted by address
  std::string status;

  const page_rec *at(std::uintptr_t a) const {
    auto it = std::lower_bound(pages.begin(), pages.end(), a,
                               [](const page_rec &p, std::uintptr_t x) { return p.addr < x; });
    return it != pages.end() && it->addr == a ? &*it : nullptr;
  }
  const procfs::smaps_entry *vma_at(std::uintptr_t a) const {
    for (const auto &v : vmas)
      if (a >= v.area.start && a < v.area.end) return &v;
    return nullptr;
  }
};

std::uint64_t hash_bytes(const unsigned char *p, std::size_t n) {
  std::uint64_t h = 0xcbf2'9ce4'8422'2325ULL;
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100'0000'01b3ULL;
    h ^= h >> 29;
  }
  return h;
}

// `view`: the VMAs whose maps and smaps lines are reported; `pages`: where
// their pages are read (the window and the exact hint and result ranges,
// not the margins: beyond the window, neighbours are the child's own memory,
// whose contents differ between the children).
snapshot take(const std::vector<region> &view, const std::vector<region> &pages) {
  static const int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  // Also reads PROT_NONE pages where the kernel allows it (7.x does not:
  // those hash as 1, "present but unreadable", in both children alike).
  static const int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
  const std::size_t pg = page();
  snapshot s;
  for (auto &e : procfs::read_smaps()) {
    const bool in = std::any_of(view.begin(), view.end(), [&](const region &r) {
      return e.area.end > r.lo && e.area.start < r.hi;
    });
    if (!in) continue;
    s.compared.push_back(std::any_of(pages.begin(), pages.end(), [&](const region &r) {
      return e.area.end > r.lo && e.area.start < r.hi;
    }));
    s.vmas.push_back(std::move(e));
  }
  std::vector<std::uint64_t> pm;
  // Present pages are read a run at a time (one pread of /proc/self/mem,
  // one mmap-lock round trip, for up to `most` pages); a page the kernel
  // refuses ends the read short and is read alone, as unreadable. On the
  // stack, which run_child() grew beforehand: nothing maps or grows while
  // the child observes.
  alignas(64) unsigned char buf[128 << 10];
  const std::size_t most = std::max<std::size_t>(sizeof(buf) / pg, 1);
  for (std::size_t vi = 0; vi < s.vmas.size(); ++vi) {
    const auto &v = s.vmas[vi].area;
    for (const region &r : pages) {
      const std::uintptr_t lo = std::max<std::uintptr_t>(v.start, r.lo);
      const std::uintptr_t hi = std::min<std::uintptr_t>(v.end, r.hi);
      if (lo >= hi) continue;
      const std::size_t n = (hi - lo) / pg;
      pm.assign(n, 0);
      const ssize_t got = ::pread(pagemap, pm.data(), n * 8, static_cast<off_t>(lo / pg * 8));
      if (got != static_cast<ssize_t>(n * 8)) pm.assign(n, 0);
      const std::size_t first = s.pages.size();
      for (std::size_t i = 0; i < n; ++i) {
        page_rec p;
        p.addr = lo + i * pg;
        p.bits = pm[i] >> 55;
        p.vma = vi;
        s.pages.push_back(p);
      }
      for (std::size_t i = 0; i < n;) {
        if (!s.pages[first + i].present()) {
          ++i;
          continue;
        }
        std::size_t run = 1;
        while (run < most && i + run < n && s.pages[first + i + run].present()) ++run;
        const ssize_t got = ::pread(mem, buf, run * pg,
                                    static_cast<off_t>(s.pages[first + i].addr));
        const std::size_t whole = got > 0 ? static_cast<std::size_t>(got) / pg : 0;
        for (std::size_t k = 0; k < whole; ++k)
          s.pages[first + i + k].hash = hash_bytes(buf + k * pg, pg);
        if (whole == run) {
          i += run;
          continue;
        }
        // The page the read stopped at, alone: unreadable, or readable after all.
        page_rec &p = s.pages[first + i + whole];
        if (::pread(mem, buf, pg, static_cast<off_t>(p.addr)) == static_cast<ssize_t>(pg))
          p.hash = hash_bytes(buf, pg);
        else
          p.hash = 1;  // present but unreadable
        i += whole + 1;
      }
    }
  }
  std::sort(s.pages.begin(), s.pages.end(),
            [](const page_rec &a, const page_rec &b) { return a.addr < b.addr; });

  // Each file read once: the kernel generates all of it for every read.
  std::string st;
  const auto field = [&st](std::string_view name, const std::optional<std::uint64_t> &v) {
    st += std::string(name) + "=" + (v ? std::to_string(*v) : "?") + " ";
  };
  const auto status =
      procfs::status_kb({"VmSize", "VmData", "VmLck", "VmPin", "VmPTE", "HugetlbPages"});
  for (std::size_t i = 0; const char *f : {"VmSize", "VmData", "VmLck", "VmPin", "VmPTE",
                                            "HugetlbPages"})
    field(f, status[i++]);
  // The hugetlb pool is system wide, but the children run one after the
  // other and the driver holds it steady: what a move took from it or gave
  // back (a replaced target's pages, its reservation) shows here.
  const auto pool = procfs::meminfo_kb({"HugePages_Free", "HugePages_Rsvd"});
  field("HugePages_Free", pool[0]);
  field("HugePages_Rsvd", pool[1]);
  // mm->map_count: the VMAs less the gate VMA (procfs::map_count()).
  const auto maps = procfs::read_maps();
  st += "map_count=" + std::to_string(std::count_if(maps.begin(), maps.end(), [](const auto &v) {
          return v.path != "[vsyscall]";
        }));
  for (const auto &v : maps)
    if (v.path == "[heap]" || v.path == "[stack]")
      st += " " + v.path.substr(1, v.path.size() - 2) + "=" + std::to_string(v.size() / 1024);
  s.status = st;
  return s;
}

// Inode numbers differ between the children (each makes its own files);
// the order in which files first appear does not. Files are told apart by
// device and inode: the shmem mount behind memfds and shared anonymous
// memory and the /tmp tmpfs number their inodes independently.
class inode_names {
 public:
  std::string operator()(const procfs::vma &v) {
    if (!v.inode) return "0";
    // "start-end perms offset dev inode path": the fourth field.
    std::string dev;
    std::size_t at = 0;
    for (int field = 0; field < 3 && at != std::string::npos; ++field) {
      at = v.line.find(' ', at);
      if (at != std::string::npos) at = v.line.find_first_not_of(' ', at);
    }
    if (at != std::string::npos) dev = v.line.substr(at, v.line.find(' ', at) - at);
    auto [it, fresh] = names_.try_emplace({dev, v.inode}, names_.size() + 1);
    (void)fresh;
    return "ino#" + std::to_string(it->second);
  }

 private:
  std::map<std::pair<std::string, std::uint64_t>, std::size_t> names_;
};

// The smaps fields that are a property of this process's mappings alone.
// Pss, Pss_Dirty, Pss_Anon, ..., SwapPss divide each page by the number of
// processes mapping it, which other processes (KSM merges reach across
// them) can change. Referenced is page age: young bits and PG_referenced,
// which LRU aging, reclaim and the per-CPU LRU batches (drained on
// whichever CPU ran the child) set and clear on their own schedule; a
// mapping the call never touched once showed 60 kB in one child and 72 kB
// in the other (seed 86 on 6.1-arm64, identical on every earlier run).
bool compared_field(std::string_view field) {
  return field.rfind("Pss", 0) != 0 && field != "SwapPss" && field != "Referenced";
}

std::string range_str(std::uintptr_t a, std::uintptr_t b) { return hex(a) + "-" + hex(b); }

void emit(out_stream &out, std::string_view tag, const snapshot &s, inode_names &ino) {
  const std::string maps = std::string(tag) + ".maps";
  const std::string smaps = std::string(tag) + ".smaps";
  const std::string pages = std::string(tag) + ".pages";
  for (const auto &e : s.vmas) {
    const auto &v = e.area;
    out.line(maps, range_str(v.start, v.end) + " " + v.perms + " " + hex(v.offset) + " " +
                       ino(v) + " " + v.path);
  }
  for (std::size_t vi = 0; vi < s.vmas.size(); ++vi) {
    const auto &e = s.vmas[vi];
    if (!s.compared[vi]) continue;
    std::string t = range_str(e.area.start, e.area.end);
    for (const auto &[name, kb] : e.fields_kb)
      if (compared_field(name)) t += " " + name + "=" + std::to_string(kb);
    t += " VmFlags=";
    for (std::size_t i = 0; i < e.vm_flags.size(); ++i) t += (i ? "," : "") + e.vm_flags[i];
    out.line(smaps, t);
  }
  // Per run of consecutive pages (VMA boundaries play no part: splits and
  // merges show in the maps lines), the pages observed: "-" and the
  // pagemap bits if absent, else the bits and the content hash; runs of
  // the same token as token*N.
  std::size_t i = 0;
  while (i < s.pages.size()) {
    std::string t = hex(s.pages[i].addr) + ":";
    std::string prev;
    std::size_t run = 0;
    const auto flush_run = [&] {
      if (run) t += " " + prev + (run > 1 ? "*" + std::to_string(run) : "");
    };
    std::uintptr_t expect = s.pages[i].addr;
    for (; i < s.pages.size() && s.pages[i].addr == expect; ++i, expect += page()) {
      const page_rec &p = s.pages[i];
      char tok[48];
      if (p.present())
        std::snprintf(tok, sizeof(tok), "%03" PRIx64 ":%012" PRIx64, p.bits,
                      static_cast<std::uint64_t>(p.hash & 0xffff'ffff'ffffULL));
      else
        std::snprintf(tok, sizeof(tok), "-%03" PRIx64, p.bits);
      if (tok == prev) {
        ++run;
      } else {
        flush_run();
        prev = tok;
        run = 1;
      }
    }
    flush_run();
    out.line(pages, t);
  }
  out.line(std::string(tag) + ".status", s.status);
}

// ---------------------------------------------------------------------------
// Facts for the rules, from the layout before the call

std::string vma_class(const procfs::smaps_entry *v) {
  if (!v) return "none";
  const auto &a = v->area;
  if (a.path.rfind("/dev/zero", 0) == 0) return "shared_anon";
  if (a.inode == 0) return a.perms.size() > 3 && a.perms[3] == 's' ? "shared_anon" : "private_anon";
  return a.perms.size() > 3 && a.perms[3] == 's' ? "file_shared" : "file_private";
}

void emit_facts(out_stream &out, const scenario &sc, const snapshot &pre) {
  const call_desc &c = sc.call;
  const std::uintptr_t pg = page();
  const std::uintptr_t old = c.old_addr & ~(pg - 1);
  const std::uint64_t alen = page_align(c.old_len);
  const std::uintptr_t end = old + alen < old ? ~std::uintptr_t(0) : old + alen;
  const auto *first = pre.vma_at(old);
  std::size_t vmas = 0;
  for (const auto &v : pre.vmas)
    if (v.area.end > old && v.area.start < end) ++vmas;
  bool dst_mapped = false;
  const region dst = exactly(c.new_addr, alen);
  for (const auto &v : pre.vmas)
    if (alen && v.area.end > dst.lo && v.area.start < dst.hi) dst_mapped = true;
  std::string t = "src=" + vma_class(first);
  t += " vmas=" + std::to_string(vmas);
  t += std::string(" beyond_first=") + (first && end > first->area.end ? "1" : "0");
  t += std::string(" partial=") +
       (first && (first->area.start != old || first->area.end > end) ? "1" : "0");
  t += std::string(" locked=") + (first && first->has_flag("lo") ? "1" : "0");
  t += std::string(" uffd=") + (first && first->has_flag("um") ? "1" : "0");
  t += std::string(" account=") + (first && first->has_flag("ac") ? "1" : "0");
  t += std::string(" dst_mapped=") + (dst_mapped ? "1" : "0");
  // VM_DONTEXPAND or VM_PFNMAP (hugetlbfs, special mappings): never a
  // DONTUNMAP source.
  const bool special = first && (first->has_flag("de") || first->has_flag("pf"));
  t += std::string(" special=") + (special ? "1" : "0");
  out.line("fact", t);
}

// ---------------------------------------------------------------------------
// The newest semantics, checked on the outcome alone: a success moved every
// page of the range to the same offset from the result and left the source
// mapped and empty; a failure lost nothing (a FIXED move that failed part
// way across several VMAs may have moved the first ones, whole).

std::string check(const scenario &sc, const snapshot &pre, const snapshot &post,
                  const std::expected<void *, std::error_code> &r) {
  const call_desc &c = sc.call;
  const std::uintptr_t pg = page();
  const std::uintptr_t old = c.old_addr;
  const std::uint64_t alen = page_align(c.old_len);
  std::vector<std::string> problems;
  const auto problem = [&](std::string p) {
    if (problems.size() < 4) problems.push_back(std::move(p));
  };
  const auto same = [](const page_rec &a, const page_rec &b) {
    return a.present() == b.present() && a.hash == b.hash;
  };
  const auto in_range = [&](std::uintptr_t a) { return a >= old && a - old < alen; };

  if (r) {
    const auto ret = reinterpret_cast<std::uintptr_t>(*r);
    if (ret % pg) problem("result " + hex(ret) + " not page aligned");
    if ((c.flags & MREMAP_FIXED) && ret != c.new_addr) problem("FIXED result " + hex(ret));
    for (const page_rec &p : pre.pages) {
      if (!in_range(p.addr)) continue;
      const page_rec *d = post.at(ret + (p.addr - old));
      const page_rec *s = post.at(p.addr);
      if (!d)
        problem("page " + hex(p.addr) + " has no destination");
      else if (!same(p, *d))
        problem("page " + hex(p.addr) + " arrived changed");
      else if (pre.vmas[p.vma].area.perms != post.vmas[d->vma].area.perms)
        problem("page " + hex(p.addr) + " arrived with perms " + post.vmas[d->vma].area.perms);
      if (!s)
        problem("source page " + hex(p.addr) + " unmapped");
      else if (s->present())
        problem("source page " + hex(p.addr) + " still present");
    }
    // Where the source had a gap, the destination has what it had before
    // (a move across several VMAs moves each alone: the target's pages
    // between them are not unmapped) or nothing.
    for (const page_rec &d : post.pages) {
      if (d.addr < ret || d.addr - ret >= alen) continue;
      if (pre.at(old + (d.addr - ret))) continue;
      const page_rec *before = pre.at(d.addr);
      if (!before || !same(*before, d))
        problem("destination page " + hex(d.addr) + " mapped where the source had none");
    }
  } else {
    for (const page_rec &p : pre.pages) {
      if (!in_range(p.addr)) continue;
      const page_rec *s = post.at(p.addr);
      if (s && same(p, *s)) continue;
      if (c.flags & MREMAP_FIXED) {
        const page_rec *d = post.at(c.new_addr + (p.addr - old));
        if (d && same(p, *d) && s && !s->present()) continue;
      }
      problem("failed call changed source page " + hex(p.addr));
    }
  }
  if (problems.empty()) return "ok";
  std::string t = "FAIL:";
  for (const auto &p : problems) t += " " + p + ";";
  return t;
}

// ---------------------------------------------------------------------------
// userfaultfd events

// Reads the events a move raises. The mover blocks until each
// non-cooperative event (REMAP, UNMAP) has been read, so with those
// features a reader runs on a thread of its own; it does not allocate.
class uffd_monitor {
 public:
  uffd_monitor(int uffd, bool threaded) : uffd_(uffd) {
    if (!threaded) return;
    stop_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  // After the call: stops the reader, or reads what is queued.
  void finish() {
    if (thread_.joinable()) {
      // An eventfd write of 1 cannot fail short of a counter overflow.
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(stop_, &one, sizeof(one));
      thread_.join();
    } else {
      drain();
    }
  }
  void emit(out_stream &out) const {
    for (int i = 0; i < count_; ++i) {
      const uffd_msg &m = msgs_[i];
      switch (m.event) {
        case UFFD_EVENT_REMAP:
          out.line("uffd", "remap from=" + hex(m.arg.remap.from) + " to=" + hex(m.arg.remap.to) +
                               " len=" + hex(m.arg.remap.len));
          break;
        case UFFD_EVENT_UNMAP:
          out.line("uffd", "unmap start=" + hex(m.arg.remove.start) +
                               " end=" + hex(m.arg.remove.end));
          break;
        case UFFD_EVENT_PAGEFAULT:
          out.line("uffd", "pagefault address=" + hex(m.arg.pagefault.address));
          break;
        default: out.line("uffd", "event " + std::to_string(m.event)); break;
      }
    }
    if (overflow_) out.line("uffd", "more events than recorded");
  }

 private:
  void drain() {
    uffd_msg m;
    while (::read(uffd_, &m, sizeof(m)) == sizeof(m)) {
      if (count_ < kMax)
        msgs_[count_++] = m;
      else
        overflow_ = true;
    }
  }
  void loop() {
    pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
      drain();
      if (fds[1].revents & POLLIN) return;
    }
  }

  static constexpr int kMax = 16;
  int uffd_;
  int stop_ = -1;
  std::thread thread_;
  uffd_msg msgs_[kMax] = {};
  int count_ = 0;
  bool overflow_ = false;
};

// One byte written 512 KiB below this frame: the fault grows the stack VMA
// down to it (no kernel of the matrix checks the distance to the stack
// pointer), and none of the pages between is faulted in or, where the
// parent had touched them, copied.
[[gnu::noinline]] void grow_stack() {
  const auto frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  *reinterpret_cast<volatile char *>(frame - 512 * 1024) = 0;
}

// The scenario's limit, set right before the call and lifted right after
// it (the observation that follows allocates).
class call_limit {
 public:
  explicit call_limit(const scenario &sc) {
    const std::uint64_t slack = sc.lim_slack * page();
    switch (sc.lim) {
      case limit::none: break;
      case limit::as: set(RLIMIT_AS, procfs::status_kb("VmSize"), slack); break;
      case limit::data: set(RLIMIT_DATA, procfs::status_kb("VmData"), slack); break;
      case limit::map_count:
        old_max_ = procfs::read_text(kMaxMapCount);
        procfs::write_text(kMaxMapCount, std::to_string(procfs::map_count() + sc.lim_slack));
        break;
    }
  }
  ~call_limit() { lift(); }
  void lift() {
    if (resource_ >= 0) ::setrlimit(resource_, &saved_);
    resource_ = -1;
    if (old_max_) procfs::write_text(kMaxMapCount, *old_max_);
    old_max_.reset();
  }

 private:
  static constexpr const char *kMaxMapCount = "/proc/sys/vm/max_map_count";
  void set(int resource, std::optional<std::uint64_t> kb, std::uint64_t slack) {
    if (!kb || ::getrlimit(resource, &saved_) != 0) return;
    rlimit rl = saved_;
    rl.rlim_cur = *kb * 1024 + slack;
    if (::setrlimit(resource, &rl) == 0) resource_ = resource;
  }
  int resource_ = -1;
  rlimit saved_{};
  std::optional<std::string> old_max_;
};

// The after_ops: faults on every page the reader may touch (never one under
// userfaultfd, which would block), then mprotect() round trips over the
// source and destination ranges, which let VMAs merge.
void do_after(const scenario &sc, const snapshot &post, const std::vector<region> &pages,
              std::uintptr_t ret, bool moved) {
  const std::size_t pg = page();
  const std::uint64_t alen = page_align(sc.call.old_len);
  if (sc.after.touch) {
    for (const auto &v : post.vmas) {
      if (v.has_flag("um") || v.area.perms.empty() || v.area.perms[0] != 'r') continue;
      const bool writable = sc.after.write && v.area.perms.size() > 1 && v.area.perms[1] == 'w';
      for (const region &r : pages) {
        const std::uintptr_t lo = std::max<std::uintptr_t>(v.area.start, r.lo);
        const std::uintptr_t hi = std::min<std::uintptr_t>(v.area.end, r.hi);
        for (std::uintptr_t a = lo; a < hi; a += pg) {
          auto *p = reinterpret_cast<volatile unsigned char *>(a);
          const unsigned char byte = *p;
          if (writable) *p = static_cast<unsigned char>(byte + 1);
        }
      }
    }
  }
  if (sc.after.reprotect) {
    std::vector<region> ranges;
    if (alen && alen <= kWindowSize) {
      ranges.push_back(exactly(sc.call.old_addr & ~std::uintptr_t(pg - 1), alen));
      if (moved) ranges.push_back(exactly(ret, alen));
    }
    for (const region &r : ranges) {
      for (const auto &v : post.vmas) {
        const std::uintptr_t lo = std::max<std::uintptr_t>(v.area.start, r.lo);
        const std::uintptr_t hi = std::min<std::uintptr_t>(v.area.end, r.hi);
        if (lo >= hi) continue;
        int prot = PROT_NONE;
        if (v.area.perms[0] == 'r') prot |= PROT_READ;
        if (v.area.perms[1] == 'w') prot |= PROT_WRITE;
        if (v.area.perms[2] == 'x') prot |= PROT_EXEC;
        auto *at = reinterpret_cast<void *>(lo);
        if (::mprotect(at, hi - lo, PROT_NONE) == 0) ::mprotect(at, hi - lo, prot);
      }
    }
  }
  if (sc.after.flatten) {
    // VMA by VMA: one sealed VMA must not stop the others.
    for (const auto &v : post.vmas) {
      for (const region &r : pages) {
        const std::uintptr_t lo = std::max<std::uintptr_t>(v.area.start, r.lo);
        const std::uintptr_t hi = std::min<std::uintptr_t>(v.area.end, r.hi);
        if (lo < hi) ::mprotect(reinterpret_cast<void *>(lo), hi - lo, PROT_READ);
      }
    }
  }
}

std::int64_t committed_kb() {
  const auto v = procfs::meminfo_kb("Committed_AS");
  return v ? static_cast<std::int64_t>(*v) : -1;
}

}  // namespace

void set_system_allowed(bool allowed) { g_system_allowed = allowed; }

namespace {

using remap_result = std::expected<void *, std::error_code>;

remap_request request_of(const call_desc &c) {
  remap_request req;
  req.old_addr = reinterpret_cast<void *>(c.old_addr);
  req.old_len = c.old_len;
  req.new_len = c.new_len;
  req.flags = c.flags;
  req.new_addr = reinterpret_cast<void *>(c.new_addr);
  return req;
}

// The scenario's calls through `which`: one result per call made, up to
// and including the first that fails. side::batch makes them all as one
// DONTUNMAP_IOC_REMAP_BATCH and reads the same from its header.
std::vector<remap_result> make_calls(const scenario &sc, side which,
                                     const std::optional<dontunmap::device> &dev) {
  std::vector<remap_result> results;
  if (which == side::batch) {
    std::vector<dontunmap_remap> v;
    for (const call_desc *c = &sc.call; c; c = next_call(sc, c))
      v.push_back({.old_addr = c->old_addr,
                   .old_len = c->old_len,
                   .new_len = c->new_len,
                   .flags = c->flags,
                   .new_addr = c->new_addr});
    dontunmap_remap_batch hdr = test::batch_header(v.data(), static_cast<std::uint32_t>(v.size()));
    const int rc = ::ioctl(dev->fd(), DONTUNMAP_IOC_REMAP_BATCH, &hdr);
    const int err = errno;
    for (std::uint32_t i = 0; i < hdr.completed && i < v.size(); ++i)
      results.emplace_back(reinterpret_cast<void *>(static_cast<std::uintptr_t>(v[i].new_addr)));
    if (rc != 0)
      results.emplace_back(std::unexpected(
          std::error_code(hdr.error ? -hdr.error : err, std::system_category())));
    return results;
  }
  for (const call_desc *c = &sc.call; c; c = next_call(sc, c)) {
    const remap_request req = request_of(*c);
    if (which == side::native)
      results.push_back(remap_native(req));
    else if (sc.uses_batch() && !sc.uses_sequence())
      results.push_back(test::remap_batch_of_one(dev->fd(), req));
    else
      results.push_back(dev->remap(req));
    if (!results.back()) break;
  }
  return results;
}

}  // namespace

void run_child(const scenario &sc, side which, int out_fd) {
  ::alarm(kChildTimeoutSeconds);
  // Keep malloc off mmap() and in one arena: the children's address spaces
  // then differ in nothing but what the scenario does.
  ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
  ::mallopt(M_ARENA_MAX, 1);
  // VmSize and VmData count the heap and the stack too, whose growth must
  // not depend on how many bytes a line of /proc happens to take: the heap
  // is grown by 64 MiB at once and never trimmed, the stack is touched
  // 512 KiB deep now, so neither changes size while the child observes.
  ::mallopt(M_TOP_PAD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // More than the heap the parent left free, so that the growth happens
  // now, before the scenario maps anything, and not in one child only
  // when its reports happen to need a little more (seen once on 7.3:
  // after.status differed by a second [heap] VMA of 64 MiB; and on 6.1,
  // seed 256, when the parent's heap had more than a fixed 1 MiB free).
  // Through a volatile pointer: the compiler drops a malloc()/free() pair
  // (it did, so this growth never happened until then).
  void *volatile grow = ::malloc(::mallinfo2().fordblks + (std::size_t(1) << 20));
  ::free(grow);
  grow_stack();
  out_stream out(out_fd);

  built b;
  if (auto s = build(sc, b)) {
    out.line(s->skip ? "skip" : "setup", s->what);
    out.finish();
  }
  std::optional<dontunmap::device> dev;
  if (which != side::native) {
    auto d = dontunmap::device::open();
    if (!d) {
      out.line("setup", std::string("open " DONTUNMAP_DEVICE ": ") + errname(d.error().value()));
      out.finish();
    }
    dev.emplace(std::move(*d));
  }

  std::vector<region> view = {around(kWindowBase, kWindowSize)};
  std::vector<region> pages = {{kWindowBase, kWindowBase + kWindowSize}};
  for (const call_desc *call = &sc.call; call; call = next_call(sc, call)) {
    const call_desc &c = *call;
    const std::uint64_t alen = page_align(c.old_len);
    if (((c.flags & MREMAP_FIXED) || c.new_addr) && alen <= kWindowSize) {
      view.push_back(around(c.new_addr, alen));
      pages.push_back(exactly(c.new_addr, alen));
    } else if (c.flags & MREMAP_FIXED) {
      // A range too long to observe whole (64 TiB, say) still moves the
      // window's VMAs it covers, and keeps them moved when a later VMA
      // refuses (seed 5308 on 7.3, before such ranges over the tester were
      // skipped: EINVAL at [vvar]): observe where the window's part lands.
      const std::uintptr_t old = c.old_addr & ~std::uintptr_t(page() - 1);
      const std::uintptr_t end = old + alen < old ? ~std::uintptr_t(0) : old + alen;
      const std::uintptr_t lo = std::max<std::uintptr_t>(old, kWindowBase);
      const std::uintptr_t hi = std::min<std::uintptr_t>(end, kWindowBase + kWindowSize);
      if (lo < hi && c.new_addr + (lo - old) >= c.new_addr) {
        view.push_back(exactly(c.new_addr + (lo - old), hi - lo));
        pages.push_back(exactly(c.new_addr + (lo - old), hi - lo));
      }
    }
  }
  view = merged(view);
  pages = merged(pages);

  inode_names ino;
  const snapshot pre = take(view, pages);
  emit_facts(out, sc, pre);
  emit(out, "pre", pre, ino);
  out.flush();

  std::optional<uffd_monitor> monitor;
  if (b.uffd >= 0)
    monitor.emplace(b.uffd, (sc.uffd_features &
                             (UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP)) != 0);
  call_limit lim(sc);
  const std::int64_t before = committed_kb();
  const std::vector<remap_result> results = make_calls(sc, which, dev);
  const std::int64_t after = committed_kb();
  lim.lift();
  if (monitor) monitor->finish();

  // One result line a call made (a sequence stops at the first failure).
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto &ri = results[i];
    if (!ri) {
      out.line("result", "err " + errname(ri.error().value()));
      continue;
    }
    out.line("result", "ok " + hex(reinterpret_cast<std::uintptr_t>(*ri)));
    const std::uint64_t alen = page_align(i ? sc.more[i - 1].old_len : sc.call.old_len);
    if (alen <= kWindowSize) {
      const auto ret = reinterpret_cast<std::uintptr_t>(*ri);
      view.push_back(around(ret, alen));
      pages.push_back(exactly(ret, alen));
    }
  }
  view = merged(view);
  pages = merged(pages);
  const remap_result &r = results.front();
  out.line("commit", std::to_string(before >= 0 && after >= 0 ? after - before : 0));
  if (monitor) monitor->emit(out);
  const snapshot post = take(view, pages);
  emit(out, "post", post, ino);
  // The newest semantics of one call. A sequence is held to its single
  // calls instead: the driver compares the two ways of making it.
  if (!sc.uses_sequence()) out.line("check", check(sc, pre, post, r));
  if (sc.after.touch || sc.after.reprotect || sc.after.flatten) {
    out.flush();
    do_after(sc, post, pages, r ? reinterpret_cast<std::uintptr_t>(*r) : 0, r.has_value());
    emit(out, "after", take(view, pages), ino);
  }
  out.finish();
}

}  // namespace dontunmap::difftest
