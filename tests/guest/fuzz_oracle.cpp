// SPDX-License-Identifier: GPL-2.0
//
// What a call must answer. Three sources, in the order the module meets
// them: a struct the call cannot read is EFAULT; the argument rules of
// mremap() are EINVAL; a struct the call could not write the destination
// back into is EFAULT (uapi/linux/dontunmap.h). Past those, the answer is
// the kernel's own mremap() with the same arguments, made in a forked child
// that has the same layout. On a kernel whose mremap() is the newest for
// every rule of expectations.cpp that answer is exact; on older ones a
// difference must be one that difftest_rules.cpp's predicates (the same
// judge the differential tester uses) explain.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstring>

#include "difftest.hpp"
#include "expectations.hpp"
#include "fuzz.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

namespace dontunmap::fuzz {
namespace {

machine g_machine;

// Whether [a, a + page) can be mapped: a page below TASK_SIZE maps (or is
// taken already); one above it is ENOMEM.
bool mappable(std::uint64_t a) {
  void *p = ::mmap(reinterpret_cast<void *>(a), page(), PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return errno == EEXIST;
  ::munmap(p, page());
  return p == reinterpret_cast<void *>(a);
}

// The layout facts difftest_rules.cpp's predicates read: the same keys,
// computed the same way as difftest_child.cpp's emit_facts().
std::string layout_facts(const dontunmap_remap &a) {
  const std::uint64_t pg = page();
  const std::uint64_t old = a.old_addr & ~(pg - 1);
  const std::uint64_t alen = page_align(a.old_len);
  const std::uint64_t end = old + alen < old ? ~std::uint64_t(0) : old + alen;
  const std::uint64_t dst_end =
      a.new_addr + alen < a.new_addr ? ~std::uint64_t(0) : a.new_addr + alen;
  const auto smaps = procfs::read_smaps();
  const procfs::smaps_entry *first = nullptr;
  std::size_t vmas = 0;
  bool dst_mapped = false;
  for (const auto &e : smaps) {
    if (old >= e.area.start && old < e.area.end) first = &e;
    if (e.area.end > old && e.area.start < end) ++vmas;
    if (alen && e.area.end > a.new_addr && e.area.start < dst_end) dst_mapped = true;
  }
  std::string cls = "none";
  if (first) {
    const auto &v = first->area;
    const bool shared = v.perms.size() > 3 && v.perms[3] == 's';
    if (v.path.rfind("/dev/zero", 0) == 0)
      cls = "shared_anon";
    else if (v.inode == 0)
      cls = shared ? "shared_anon" : "private_anon";
    else
      cls = shared ? "file_shared" : "file_private";
  }
  const auto flag = [&](const char *f) { return first && first->has_flag(f) ? "1" : "0"; };
  std::string t = "src=" + cls + " vmas=" + std::to_string(vmas);
  t += std::string(" beyond_first=") + (first && end > first->area.end ? "1" : "0");
  t += std::string(" partial=") +
       (first && (first->area.start != old || first->area.end > end) ? "1" : "0");
  t += std::string(" locked=") + flag("lo") + " uffd=" + flag("um") + " account=" + flag("ac");
  t += std::string(" dst_mapped=") + (dst_mapped ? "1" : "0");
  const bool special = first && (first->has_flag("de") || first->has_flag("pf"));
  t += std::string(" special=") + (special ? "1" : "0");
  return t;
}

std::string result_line(const outcome &o) {
  return o.err ? "err " + errname(o.err) : "ok " + hex(o.addr);
}

std::vector<span> spans_of(std::uint64_t start, std::uint64_t len) {
  const std::uint64_t alen = page_align(len);
  if (!alen) return {};
  const std::uint64_t end = start + alen;
  if (end > start) return {{start, end}};
  std::vector<span> out{{start, ~std::uint64_t(0)}};  // wraps: both ends of the space
  if (end) out.push_back({0, end});
  return out;
}

}  // namespace

std::size_t page() { return difftest::page(); }
std::uint64_t page_align(std::uint64_t len) { return difftest::page_align(len); }

std::string to_string(const outcome &o) { return result_line(o); }

const machine &env() { return g_machine; }

const machine &probe_machine() {
  const std::uint64_t pg = page();
  std::uint64_t lo = (std::uint64_t(1) << 32) / pg;  // a page number below TASK_SIZE
  std::uint64_t hi = (std::uint64_t(1) << 63) / pg;  // one above it
  while (hi - lo > 1) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    (mappable(mid * pg) ? lo : hi) = mid;
  }
  g_machine.task_size = hi * pg;
  for (const auto &v : procfs::read_maps())
    if (v.path == "[stack]") g_machine.stack_top = v.end;
  const auto cpuinfo = procfs::read_text("/proc/cpuinfo");
  g_machine.la57 = cpuinfo && cpuinfo->find(" la57") != std::string::npos;
  return g_machine;
}

std::uint64_t untag(std::uint64_t addr) {
#if defined(__aarch64__)
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(addr << 8) >> 8);
#else
  return addr;
#endif
}

int argument_rules(const dontunmap_remap &a) {
  // The module's own rule: it only moves, keeping the source.
  if (!(a.flags & MREMAP_DONTUNMAP)) return EINVAL;
  // check_mremap_params() of Linux 7.3 (mm/mremap.c), on page-aligned
  // lengths, in its order; every one of them is EINVAL.
  const std::uint64_t pg = page(), t = env().task_size;
  const std::uint64_t addr = untag(a.old_addr);
  const std::uint64_t old_len = page_align(a.old_len), new_len = page_align(a.new_len);
  if (a.flags & ~std::uint64_t(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) return EINVAL;
  if (addr % pg) return EINVAL;
  if (!new_len || new_len > t) return EINVAL;
  if (a.new_addr > t - new_len) return EINVAL;
  if (a.new_addr % pg) return EINVAL;
  if (!(a.flags & MREMAP_MAYMOVE)) return EINVAL;
  if (old_len != new_len) return EINVAL;
  // vrm_overlaps(), in unsigned long arithmetic as the kernel does it.
  const std::uint64_t end_old = addr + old_len, end_new = a.new_addr + new_len;
  if (end_old > a.new_addr && end_new > addr) return EINVAL;
  return 0;
}

std::vector<span> source_spans(const dontunmap_remap &a) {
  return spans_of(untag(a.old_addr) & ~std::uint64_t(page() - 1), a.old_len);
}

std::vector<span> target_spans(const dontunmap_remap &a) {
  if (!(a.flags & MREMAP_FIXED)) return {};
  return spans_of(a.new_addr, a.new_len);
}

bool struct_in_moved_ranges(std::uint64_t ptr, const dontunmap_remap &a) {
  const std::uint64_t end = ptr + sizeof(dontunmap_remap);
  auto spans = source_spans(a);
  const auto t = target_spans(a);
  spans.insert(spans.end(), t.begin(), t.end());
  for (const span &s : spans)
    if (ptr < s.hi && end > s.lo) return true;
  return false;
}

bool touches(const dontunmap_remap &a, std::uint64_t ptr, std::uint64_t size) {
  const auto within = [&](std::uint64_t start, std::uint64_t len) {
    const std::uint64_t end = start + page_align(len);
    return end > start && ptr < end && ptr + size > start;
  };
  return within(untag(a.old_addr), a.old_len) ||
         ((a.flags & MREMAP_FIXED) && within(a.new_addr, a.new_len));
}

std::optional<native_answer> native_mremap(const dontunmap_remap &a,
                                           const std::vector<lock_range> &locks, bool facts,
                                           std::string &why,
                                           const std::vector<dontunmap_remap> &before) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    why = std::string("pipe: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(60);
    // fork() does not carry VM_LOCKED over: lock the same ranges again, so
    // that the child's VMAs are split and locked as the parent's. On fault
    // only: populating them would break copy-on-write page by page, for
    // nothing the call's answer depends on.
    for (const lock_range &l : locks) ::syscall(SYS_mlock2, l.addr, l.len, MLOCK_ONFAULT);
    // A batch's elements before the call, as the module makes them; the
    // first that fails is reported instead of an answer.
    for (std::size_t i = 0; i < before.size(); ++i) {
      const dontunmap_remap &b = before[i];
      if (::syscall(SYS_mremap, b.old_addr, b.old_len, b.new_len, b.flags, b.new_addr) == -1) {
        const std::int64_t msg[3] = {-1, errno, static_cast<std::int64_t>(i) + 1};
        [[maybe_unused]] ssize_t n = ::write(fds[1], msg, sizeof(msg));
        ::_exit(0);
      }
    }
    const long ret = ::syscall(SYS_mremap, a.old_addr, a.old_len, a.new_len, a.flags, a.new_addr);
    const std::int64_t msg[3] = {ret, ret == -1 ? errno : 0, 0};
    // Read after the call, and only after a refused one: the predicates
    // that read facts (non_anonymous_sources, fixed_move_spans_vmas)
    // explain a native refusal, the others need equal results and never
    // judge a difference here; and a refused call left the source as it
    // was. smaps is the slowest thing a call does in a TCG guest.
    const std::string f = facts && ret == -1 ? layout_facts(a) : std::string();
    [[maybe_unused]] ssize_t n = ::write(fds[1], msg, sizeof(msg));
    n = ::write(fds[1], f.data(), f.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    why = std::string("fork: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::int64_t msg[3];
  if (text.size() < sizeof(msg) || !WIFEXITED(status)) {
    why = WIFSIGNALED(status)
              ? std::string("native child killed by ") + ::strsignal(WTERMSIG(status))
              : "native child ended without an answer";
    return std::nullopt;
  }
  std::memcpy(msg, text.data(), sizeof(msg));
  if (msg[2]) {
    why = "native child: the batch's element " + std::to_string(msg[2] - 1) + " failed with " +
          errname(static_cast<int>(msg[1]));
    return std::nullopt;
  }
  native_answer n;
  n.o.err = static_cast<int>(msg[1]);
  n.o.addr = msg[1] ? 0 : static_cast<std::uint64_t>(msg[0]);
  n.facts = text.substr(sizeof(msg));
  return n;
}

bool native_is_newest() {
  static const bool newest = [] {
    for (const auto &row : test::all_rules())
      if (test::native_expectation(row.r, test::running_kernel()).allows_legacy()) return false;
    return true;
  }();
  return newest;
}

std::optional<std::string> explained_difference(const dontunmap_remap &a, const std::string &facts,
                                                const outcome &native, const outcome &module) {
  difftest::scenario sc;
  sc.call.old_addr = a.old_addr;
  sc.call.old_len = a.old_len;
  sc.call.new_len = a.new_len;
  sc.call.flags = a.flags;
  sc.call.new_addr = a.new_addr;
  sc.lim = difftest::limit::none;
  // Reports of the one thing both sides observed here: the call's result.
  // The module's outcome is checked separately (check_outcome), so its
  // "check" line is ok.
  const auto report_of = [&](const outcome &o) {
    difftest::report r;
    r.lines = {"fact " + facts, "result " + result_line(o), "check ok"};
    r.complete = true;
    return r;
  };
  const difftest::verdict v = difftest::judge(sc, report_of(native), report_of(module));
  if (v.same) return "same";
  if (v.expected) return std::string(test::to_string(v.rule));
  return std::nullopt;
}

}  // namespace dontunmap::fuzz
