// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-stress and the system around it: the sysfs knobs it tunes and
// puts back, the signals that stop it, and the gauges read before and after
// the run - read with no allocation (a static buffer, fixed fields), so
// that reading them does not move what they measure.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "procfs.hpp"
#include "stress.hpp"

namespace dontunmap::stress {
namespace {

namespace procfs = test::procfs;

// ---------------------------------------------------------------------------
// Knobs: each one changed is recorded in fixed buffers, so that the crash
// handler can put it back with open/write/close alone.

struct saved_knob {
  char path[128];
  char value[64];
  std::atomic<bool> active{false};
};
saved_knob g_knobs[8];
std::atomic<int> g_knob_count{0};

// Sets a knob for the run. Returns the value it has now, or nullopt when
// it is absent or cannot be written.
std::optional<std::string> set_knob(const char *path, std::string_view value) {
  const auto text = procfs::read_text(path);
  if (!text) return std::nullopt;
  const std::string old = selected(*text);
  if (old == value) return old;
  const int k = g_knob_count.load();
  if (k >= static_cast<int>(std::size(g_knobs)) || std::strlen(path) >= sizeof(g_knobs[k].path) ||
      old.size() >= sizeof(g_knobs[k].value))
    return old;
  std::snprintf(g_knobs[k].path, sizeof(g_knobs[k].path), "%s", path);
  std::snprintf(g_knobs[k].value, sizeof(g_knobs[k].value), "%s", old.c_str());
  g_knobs[k].active = true;
  g_knob_count = k + 1;
  if (!procfs::write_text(path, value)) {
    g_knobs[k].active = false;
    return old;
  }
  return std::string(value);
}

// ---------------------------------------------------------------------------
// Signals

world *g_world = nullptr;
std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  if (g_world) g_world->stop.store(true);
}

extern "C" void on_fatal_signal(int sig) {
  restore_knobs();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// ---------------------------------------------------------------------------
// /proc and /sys files into one static buffer

char g_text[1 << 20];

std::size_t slurp(const char *path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  std::size_t used = 0;
  if (fd >= 0) {
    for (;;) {
      const ssize_t n = ::read(fd, g_text + used, sizeof(g_text) - 1 - used);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      used += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  g_text[used] = '\0';
  return used;
}

// The size of the /proc/self/maps line ending in `name` ("[heap]").
std::uint64_t mapping_kb(std::string_view name) {
  slurp("/proc/self/maps");
  for (char *line = g_text; *line;) {
    char *nl = std::strchr(line, '\n');
    const std::string_view l(line, nl ? static_cast<std::size_t>(nl - line) : std::strlen(line));
    if (l.size() >= name.size() && l.substr(l.size() - name.size()) == name) {
      unsigned long long a = 0, b = 0;
      if (std::sscanf(line, "%llx-%llx", &a, &b) == 2) return (b - a) / 1024;
    }
    if (!nl) break;
    line = nl + 1;
  }
  return 0;
}

std::string opt_str(const std::optional<std::uint64_t> &v) {
  return v ? std::to_string(*v) : "n/a";
}

}  // namespace

void system_tuning::restore_knobs() noexcept {
  for (int k = g_knob_count.load() - 1; k >= 0; --k) {
    saved_knob &s = g_knobs[k];
    if (!s.active.exchange(false)) continue;
    const int fd = ::open(s.path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;
    (void)!::write(fd, s.value, std::strlen(s.value));
    ::close(fd);
  }
}

std::string selected(const std::string &text) {
  const auto open = text.find('['), close = text.find(']');
  if (open != std::string::npos && close != std::string::npos && close > open)
    return text.substr(open + 1, close - open - 1);
  return text;
}

void system_tuning::apply(bool allowed) {
  if (!allowed) {
    summary = "left alone (--keep-system)";
    return;
  }
  if (::geteuid() != 0) {
    summary = "left alone (not root)";
    return;
  }
  constexpr const char *kThp = "/sys/kernel/mm/transparent_hugepage/enabled";
  const auto enabled = procfs::read_text(kThp);
  if (enabled && selected(*enabled) == "never") note("THP", set_knob(kThp, "madvise"));
  note("khugepaged scan_sleep_millisecs",
       set_knob("/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs", "0"));
  note("pages_to_scan",
       set_knob("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan", "16384"));
  note("alloc_sleep_millisecs",
       set_knob("/sys/kernel/mm/transparent_hugepage/khugepaged/alloc_sleep_millisecs", "100"));
  // Collapse only fully populated ranges. With none PTEs allowed, a
  // collapse fills them with zeros: a source emptied by a move, not yet
  // registered with userfaultfd (the moves that register after), comes
  // back present, as it would under the kernel's own mremap() (seen once
  // on 6.1-arm64, 0.7 s into a run, right after a move).
  note("max_ptes_none",
       set_knob("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "0"));
  note("ksm pages_to_scan", set_knob("/sys/kernel/mm/ksm/pages_to_scan", "1000"));
  note("sleep_millisecs", set_knob("/sys/kernel/mm/ksm/sleep_millisecs", "10"));
  const auto run = set_knob("/sys/kernel/mm/ksm/run", "1");
  note("run", run);
  ksm = run && *run == "1";
  compaction = ::access("/proc/sys/vm/compact_memory", W_OK) == 0;
  summary += compaction ? "; compaction every second" : "; no compaction";
}

void system_tuning::note(const char *name, const std::optional<std::string> &value) {
  if (!value) return;
  summary += (summary.empty() ? "" : " ") + std::string(name) + "=" + *value;
}

void install_signal_handlers(world &w) {
  g_world = &w;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

int stop_signal() { return g_stop_signal.load(); }

// ---------------------------------------------------------------------------
// Gauges

std::optional<std::uint64_t> line_value(const char *path, std::string_view name) {
  if (!slurp(path)) return std::nullopt;
  for (char *line = g_text; *line;) {
    if (std::strncmp(line, name.data(), name.size()) == 0 &&
        (line[name.size()] == ' ' || line[name.size()] == ':')) {
      unsigned long long v = 0;
      const char *p = line + name.size() + 1;
      while (*p == ' ' || *p == ':') ++p;
      if (std::sscanf(p, "%llu", &v) == 1) return v;
      return std::nullopt;
    }
    char *nl = std::strchr(line, '\n');
    if (!nl) break;
    line = nl + 1;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> file_value(const char *path) {
  if (!slurp(path)) return std::nullopt;
  unsigned long long v = 0;
  if (std::sscanf(g_text, "%llu", &v) == 1) return v;
  return std::nullopt;
}

gauges measure(const gauges *before) {
  gauges g;
  g.heap_kb = mapping_kb("[heap]");
  g.stack_kb = mapping_kb("[stack]");
  g.map_count = procfs::map_count();
  g.vmlck_kb = procfs::status_kb("VmLck");
  g.vmpte_kb = procfs::status_kb("VmPTE");
  g.vma_objs = procfs::vma_slab_objects_down_to(before ? before->vma_objs : std::nullopt);
  g.committed_kb = procfs::meminfo_kb("Committed_AS");
  return g;
}

void print_gauges(const char *when, const gauges &g) {
  std::printf(
      "stress: %s Committed_AS=%s kB map_count=%zu vm_area_struct=%s VmLck=%s kB "
      "VmPTE=%s kB [heap]=%" PRIu64 " kB [stack]=%" PRIu64 " kB\n",
      when, opt_str(g.committed_kb).c_str(), g.map_count, opt_str(g.vma_objs).c_str(),
      opt_str(g.vmlck_kb).c_str(), opt_str(g.vmpte_kb).c_str(), g.heap_kb, g.stack_kb);
}

long long delta(const std::optional<std::uint64_t> &a, const std::optional<std::uint64_t> &b) {
  return a && b ? static_cast<long long>(*b) - static_cast<long long>(*a) : 0;
}

activity activity::read() {
  activity a;
  for (std::size_t k = 0; k < std::size(kVmstat); ++k)
    a.vmstat[k] = line_value("/proc/vmstat", kVmstat[k]);
  a.collapsed = file_value("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed");
  a.ksm_scans = file_value("/sys/kernel/mm/ksm/full_scans");
  return a;
}

void print_activity(const activity &a, const activity &b, std::uint64_t peak_thp_kb,
                    std::uint64_t peak_sharing) {
  std::string t;
  for (std::size_t k = 0; k < std::size(activity::kVmstat); ++k)
    if (a.vmstat[k] && b.vmstat[k])
      t += std::string(" ") + activity::kVmstat[k] + "=+" +
           std::to_string(*b.vmstat[k] - *a.vmstat[k]);
  if (a.collapsed && b.collapsed)
    t += " khugepaged_pages_collapsed=+" + std::to_string(*b.collapsed - *a.collapsed);
  if (a.ksm_scans && b.ksm_scans)
    t += " ksm_full_scans=+" + std::to_string(*b.ksm_scans - *a.ksm_scans);
  std::printf("stress: kernel:%s peak_AnonHugePages=%" PRIu64 " kB peak_ksm_pages_sharing=%" PRIu64
              "\n",
              t.c_str(), peak_thp_kb, peak_sharing);
}

void grow_stack() {
  volatile char buf[256 << 10];
  for (std::size_t i = 0; i < sizeof(buf); i += 1024) buf[i] = 0;
}

}  // namespace dontunmap::stress
