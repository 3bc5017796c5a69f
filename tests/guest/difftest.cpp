// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-difftest: is the module indistinguishable from the newest
// upstream mremap(MREMAP_DONTUNMAP)? Random but reproducible scenarios, each
// replayed in two fresh children - native mremap(2) and the module's ioctl -
// whose observations must agree (on older kernels: up to the documented
// differences of expectations.cpp).
//
//   dontunmap-difftest [--seed S] [--count N] [--verbose] [--print-limit K]
//   dontunmap-difftest --show S      print scenario S and exit
//   dontunmap-difftest --help        the options
//   dontunmap-difftest --self-check  both children native: any difference is
//                                    the tester's own (needs no module)
//   --dump                           print both reports of every scenario
//   --commit-tolerance KB            Committed_AS slack (default 0: a quiet
//                                    guest; a busy machine needs some)
//   --keep-system                    touch no sysfs knob (ksmd, khugepaged,
//                                    vm.nr_hugepages); KSM scenarios are
//                                    skipped, and hugetlb ones unless the
//                                    pool has huge pages free
//
// Scenario i of a run uses seed S + i, so `--seed S+i --count 1 --verbose`
// replays one. Runs as root in the guests of tests/vm with dontunmap.ko
// loaded. The last line is `difftest: N passed, N failed, N skipped`; the
// status is non-zero on any failure.
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dontunmap/dontunmap.hpp>
#include <linux/mman.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "difftest.hpp"
#include "expectations.hpp"
#include "procfs.hpp"
#include "text.hpp"

namespace dontunmap::difftest {
namespace procfs = test::procfs;
using test::parse_u64;
namespace {

// A sysfs knob set for the run and put back at the end.
class knob {
 public:
  knob(std::string path, std::string_view value) : path_(std::move(path)) {
    old_ = procfs::read_text(path_);
    if (old_) set_ = procfs::write_text(path_, value);
  }
  knob(const knob &) = delete;
  knob &operator=(const knob &) = delete;
  ~knob() {
    if (set_ && old_) procfs::write_text(path_, *old_);
  }

 private:
  std::string path_;
  std::optional<std::string> old_;
  bool set_ = false;
};

struct child {
  pid_t pid = -1;
  int go = -1;   // the parent's end: one byte starts the child
  int out = -1;  // the parent's end of the report pipe
};

child spawn(const scenario &sc, side s, const std::vector<int> &foreign_fds) {
  int go[2], out[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return {};
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(go[0]);
    ::close(go[1]);
    return {};
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(go[1]);
    ::close(out[0]);
    for (int fd : foreign_fds) ::close(fd);
    char byte = 0;
    if (::read(go[0], &byte, 1) != 1) ::_exit(0);  // the parent gave up
    ::close(go[0]);
    run_child(sc, s, out[1]);
  }
  ::close(go[0]);
  ::close(out[1]);
  if (pid < 0) {
    ::close(go[1]);
    ::close(out[0]);
    return {};
  }
  return {pid, go[1], out[0]};
}

report collect(child &c) {
  report r;
  if (c.pid < 0) {
    r.death = "fork failed";
    return r;
  }
  const char byte = 1;
  if (::write(c.go, &byte, 1) != 1) r.death = "could not start";
  ::close(c.go);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(c.out, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(c.out);
  int status = 0;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t nl = text.find('\n', i);
    r.lines.emplace_back(text.substr(i, nl == std::string::npos ? std::string::npos : nl - i));
    if (nl == std::string::npos) break;
    i = nl + 1;
  }
  r.complete = !r.lines.empty() && r.lines.back() == "end";
  if (r.complete) r.lines.pop_back();
  if (WIFSIGNALED(status))
    r.death = std::string("killed by signal ") + ::strsignal(WTERMSIG(status)) +
              (WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
  else if (!r.complete)
    r.death = "exited with status " + std::to_string(WEXITSTATUS(status)) + " before the end";
  return r;
}

// Both children are forked before either runs, so that their address
// spaces start identical (the parent allocates in between).
std::pair<report, report> run_pair(const scenario &sc, bool self_check) {
  child n = spawn(sc, side::native, {});
  child m = spawn(sc, self_check ? side::native : side::module, {n.go, n.out});
  report rn = collect(n);
  report rm = collect(m);
  return {std::move(rn), std::move(rm)};
}

void print_report(std::string_view name, const report &r) {
  std::printf("--- %.*s report%s%s\n", static_cast<int>(name.size()), name.data(),
              r.death.empty() ? "" : ": ", r.death.c_str());
  for (const auto &l : r.lines) std::printf("  %s\n", l.c_str());
}

struct options {
  std::uint64_t seed = 1;
  std::uint64_t count = 750;
  bool verbose = false;
  bool self_check = false;
  bool dump = false;
  std::uint64_t commit_tolerance_kb = 0;
  bool keep_system = false;
  int print_limit = 10;
  std::optional<std::uint64_t> show;
  bool help = false;
};

void usage(std::FILE *to) {
  std::fprintf(to,
               "usage: dontunmap-difftest [--seed S] [--count N] [--verbose] "
               "[--print-limit K] [--dump] [--self-check] [--keep-system]\n"
               "       [--commit-tolerance KB] | --show S | --help\n"
               "  scenario i of a run uses seed S+i (defaults: --seed 1 --count 750)\n");
}

std::optional<options> parse(int argc, char **argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    std::uint64_t v = 0;
    const bool has_value = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--self-check") {
      o.self_check = true;
    } else if (a == "--dump") {
      o.dump = true;
    } else if (a == "--keep-system") {
      o.keep_system = true;
    } else if (a == "--seed" && has_value && parse_u64(argv[i + 1], v)) {
      o.seed = v;
      ++i;
    } else if (a == "--count" && has_value && parse_u64(argv[i + 1], v)) {
      o.count = v;
      ++i;
    } else if (a == "--commit-tolerance" && has_value && parse_u64(argv[i + 1], v)) {
      o.commit_tolerance_kb = v;
      ++i;
    } else if (a == "--print-limit" && has_value && parse_u64(argv[i + 1], v)) {
      o.print_limit = static_cast<int>(v);
      ++i;
    } else if (a == "--show" && has_value && parse_u64(argv[i + 1], v)) {
      o.show = v;
      ++i;
    } else {
      usage(stderr);
      return std::nullopt;
    }
  }
  return o;
}

// What the run exercised: the native outcomes, and the successful moves
// by the features of their layout, so that a reader can tell whether N
// was large enough.
// A report's result: "ok", the errno's name, or "none" (no result line).
std::string outcome(const report &r) {
  const std::string_view v = r.first("result");
  if (v.rfind("ok ", 0) == 0) return "ok";
  if (v.rfind("err ", 0) == 0) return std::string(v.substr(4));
  return "none";
}

// " what=count" for each entry, as the summary lines print tallies.
std::string counts(const std::map<std::string, std::uint64_t> &t) {
  std::string out;
  for (const auto &[what, count] : t) out += " " + what + "=" + std::to_string(count);
  return out;
}

void tally_coverage(const scenario &sc, const report &n, std::map<std::string, std::uint64_t> &t) {
  const std::string result = outcome(n);
  if (result == "none") return;
  ++t[result];
  if (result != "ok") return;
  const std::string_view fact = n.first("fact");
  const auto has = [&](std::string_view f) { return fact.find(f) != std::string_view::npos; };
  if (!has("vmas=1 ")) ++t["ok:multi_vma"];
  if (!has("src=private_anon")) ++t["ok:shared_or_file"];
  if (has("locked=1")) ++t["ok:mlocked"];
  if (has("uffd=1")) ++t["ok:uffd"];
  if (sc.call.flags & MREMAP_FIXED) ++t["ok:fixed"];
  const mapping_desc *src = sc.call.src_mapping >= 0 ? &sc.maps[sc.call.src_mapping] : nullptr;
  if (src && src->thp) ++t["ok:thp"];
  if (src && src->mergeable) ++t["ok:ksm"];
  if (src && src->uffd_wp) ++t["ok:uffd_wp"];
  if (!n.section("uffd").empty()) ++t["ok:uffd_events"];
}

// A skip tallied by feature ("mseal"), or by the setup step that failed
// and its errno, whatever the mapping ("setup mlock map *: EAGAIN").
std::string skip_kind(const std::string &why, bool feature) {
  if (feature) return why.substr(0, why.find_first_of(" :"));
  std::string k;
  for (std::size_t i = 0; i < why.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(why[i])) && i > 0 && why[i - 1] == ' ') {
      k += '*';
      while (i + 1 < why.size() && std::isdigit(static_cast<unsigned char>(why[i + 1]))) ++i;
    } else {
      k += why[i];
    }
  }
  return k;
}

// Where the hugetlb mapping of a scenario meets the call: its source range,
// its MREMAP_FIXED target (page-aligned as mremap() takes them).
struct huge_overlap {
  bool source = false, target = false;
};

huge_overlap hugetlb_overlap(const scenario &sc) {
  huge_overlap o;
  if (sc.huge_mapping < 0) return o;
  const mapping_desc &h = sc.maps[sc.huge_mapping];
  const call_desc &c = sc.call;
  const std::uint64_t alen = page_align(c.old_len);
  const auto meets = [&](std::uint64_t a) {
    const std::uint64_t end = a + alen < a ? ~std::uint64_t(0) : a + alen;
    return alen && a < h.end() && end > h.start();
  };
  o.source = meets(c.old_addr & ~std::uint64_t(page() - 1));
  o.target = (c.flags & MREMAP_FIXED) && meets(c.new_addr);
  return o;
}

// The scenarios with a hugetlb mapping: how many, whether the call's
// ranges met it, and the outcomes by role ("native result", with the
// module's after a slash where it differs).
struct hugetlb_tally {
  std::uint64_t scenarios = 0, skipped = 0, in_source = 0, in_target = 0;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_role;

  void add(const scenario &sc, const report *n, const report *m) {
    if (sc.huge == huge_role::none) return;
    ++scenarios;
    if (!n || !m) {
      ++skipped;
      return;
    }
    const huge_overlap o = hugetlb_overlap(sc);
    in_source += o.source;
    in_target += o.target;
    std::string out = outcome(*n);
    if (const std::string mod = outcome(*m); mod != out) out += "/" + mod;
    ++by_role[std::string(to_string(sc.huge))][out];
  }
  void print() const {
    if (!scenarios) return;
    std::printf("difftest: hugetlb: %" PRIu64 " scenarios with a hugetlb mapping (%" PRIu64
                " skipped), %" PRIu64 " in the call's source range, %" PRIu64
                " in its FIXED target\n",
                scenarios, skipped, in_source, in_target);
    for (const auto &[role, outcomes] : by_role)
      std::printf("difftest: hugetlb as %s (native/module where they differ):%s\n", role.c_str(),
                  counts(outcomes).c_str());
  }
};

// Huge pages for the run: as many as one child maps at most, added to
// vm.nr_hugepages (put back at the end). Where that cannot be done the
// scenarios get no hugetlb mapping, and the run says so once.
constexpr std::uint64_t kHugePagesNeeded = 2;

std::uint64_t huge_pages_available() {
  const auto free = procfs::meminfo_kb("HugePages_Free");
  const auto rsvd = procfs::meminfo_kb("HugePages_Rsvd");
  return free && rsvd && *free > *rsvd ? *free - *rsvd : 0;
}

bool cpu_has_la57() {
  const auto text = procfs::read_text("/proc/cpuinfo");
  return text && text->find(" la57") != std::string::npos;
}

int run(const options &o) {
  bool sequences = false;  // the module has DONTUNMAP_IOC_REMAP_BATCH
  struct utsname u {};
  ::uname(&u);
  std::printf("difftest: kernel %s, page %zu, THP %s, LA57 %s\n", u.release, page(),
              procfs::read_text("/sys/kernel/mm/transparent_hugepage/enabled")
                  .value_or("absent")
                  .c_str(),
              cpu_has_la57() ? "cpu flag" : "no");
  if (o.self_check) {
    std::printf("difftest: self-check: both children call the native mremap()\n");
  } else {
    // Closed again at once: the children open their own.
    const auto dev = dontunmap::device::open();
    if (!dev) {
      std::printf("difftest: %s: %s - the module must be loaded\n", DONTUNMAP_DEVICE,
                  dev.error().message().c_str());
      std::printf("difftest: 0 passed, %" PRIu64 " failed, 0 skipped\n", o.count);
      return 1;
    }
    if (const auto info = dev->info()) {
      std::printf("difftest: %s ABI %u, features 0x%llx\n", DONTUNMAP_DEVICE, info->abi_version,
                  static_cast<unsigned long long>(info->features));
      sequences = (info->features & DONTUNMAP_FEAT_BATCH) != 0;
    }
  }
  std::printf("difftest: seeds %" PRIu64 "..%" PRIu64 "\n", o.seed, o.seed + o.count - 1);
  std::fflush(stdout);

  // ksmd scans fast while a KSM scenario waits for it (each child starts
  // and stops it). khugepaged could collapse pages in one child and not in
  // the other: it sleeps through the run.
  // --keep-system leaves them alone (KSM scenarios are then skipped).
  std::optional<knob> ksm_pages, ksm_sleep, ksm_run, khugepaged;
  set_system_allowed(!o.keep_system);
  set_commit_tolerance_kb(static_cast<long>(o.commit_tolerance_kb));
  if (!o.keep_system) {
    ksm_pages.emplace("/sys/kernel/mm/ksm/pages_to_scan", "2000");
    ksm_sleep.emplace("/sys/kernel/mm/ksm/sleep_millisecs", "1");
    ksm_run.emplace("/sys/kernel/mm/ksm/run", "0");
    khugepaged.emplace("/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs",
                       "3600000");
  }
  std::optional<knob> nr_hugepages;
  if (const std::size_t huge = hugetlb_size(); !huge) {
    std::printf("difftest: hugetlb: none (no hugetlbfs): no scenario gets a hugetlb mapping\n");
  } else {
    const char *const path = "/proc/sys/vm/nr_hugepages";
    const auto old = procfs::read_text(path);
    std::string why;
    if (huge_pages_available() >= kHugePagesNeeded) {
      // Enough free already (a host's own pool): nothing to change.
    } else if (o.keep_system) {
      why = "--keep-system, and fewer than " + std::to_string(kHugePagesNeeded) +
            " free huge pages";
    } else if (!old) {
      why = "vm.nr_hugepages unreadable";
    } else {
      nr_hugepages.emplace(path, std::to_string(std::strtoull(old->c_str(), nullptr, 10) +
                                                kHugePagesNeeded));
      if (huge_pages_available() < kHugePagesNeeded) {
        nr_hugepages.reset();  // puts the old value back
        why = "the pool did not grow by " + std::to_string(kHugePagesNeeded) + " pages";
      }
    }
    if (why.empty()) {
      std::printf("difftest: hugetlb: %zu kB pages, %" PRIu64
                  " free for the run (vm.nr_hugepages %s -> %s)\n",
                  huge / 1024, huge_pages_available(), old.value_or("?").c_str(),
                  procfs::read_text(path).value_or("?").c_str());
    } else {
      set_hugetlb_size(0);
      std::printf("difftest: hugetlb: none (%s): no scenario gets a hugetlb mapping\n",
                  why.c_str());
    }
  }
  std::fflush(stdout);
  // Children lower vm.max_map_count around their call and put it back;
  // should one die in between, this puts it back before the next.
  const auto max_map_count = procfs::read_text("/proc/sys/vm/max_map_count");

  std::uint64_t passed = 0, failed = 0, skipped = 0, printed = 0;
  std::uint64_t seq_passed = 0, seq_failed = 0, seq_skipped = 0;
  std::map<std::string, std::uint64_t> by_rule, by_skip, coverage;
  hugetlb_tally hugetlb;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < o.count; ++i) {
    if (i && i % 250 == 0) {
      std::printf("difftest: %" PRIu64 "/%" PRIu64 " done\n", i, o.count);
      std::fflush(stdout);
    }
    const std::uint64_t seed = o.seed + i;
    const scenario sc = generate(seed);
    auto [n, m] = run_pair(sc, o.self_check);
    if (sc.lim == limit::map_count && max_map_count && !o.keep_system)
      procfs::write_text("/proc/sys/vm/max_map_count", *max_map_count);

    // One seed in sixteen also makes a sequence of calls on the same
    // layout through the module, one by one and as one batch: the two
    // must be identical.
    if (sequences && has_sequence(seed)) {
      const scenario seq = with_sequence(sc);
      child a = spawn(seq, side::module, {});
      child b = spawn(seq, side::batch, {a.go, a.out});
      const report ra = collect(a), rb = collect(b);
      if (seq.lim == limit::map_count && max_map_count && !o.keep_system)
        procfs::write_text("/proc/sys/vm/max_map_count", *max_map_count);
      const auto askip = ra.first("skip"), asetup = ra.first("setup");
      const verdict sv = judge_sequence(ra, rb);
      if (ra.complete && rb.complete && ((!askip.empty() && askip == rb.first("skip")) ||
                                         (!asetup.empty() && asetup == rb.first("setup")))) {
        ++seq_skipped;
      } else if (sv.same) {
        ++seq_passed;
        if (o.verbose) std::printf("PASS seed %" PRIu64 " sequence of %zu\n", seed, seq.more.size() + 1);
      } else {
        ++seq_failed;
        std::printf("\nFAIL seed %" PRIu64 " (a sequence: single calls against one batch)\n%s",
                    seed, describe(seq).c_str());
        std::printf("differences (- single calls, + batch):\n");
        for (const auto &w : sv.why) std::printf("  %s\n", w.c_str());
        print_report("single calls", ra);
        print_report("batch", rb);
        std::fflush(stdout);
      }
    }

    // A feature the kernel lacks, or a setup step it refuses, the same way
    // in both children: nothing to compare.
    const auto nskip = n.first("skip"), mskip = m.first("skip");
    const auto nsetup = n.first("setup"), msetup = m.first("setup");
    if (n.complete && m.complete && ((!nskip.empty() && nskip == mskip) ||
                                     (!nsetup.empty() && nsetup == msetup))) {
      ++skipped;
      const std::string why =
          !nskip.empty() ? std::string(nskip) : "setup " + std::string(nsetup);
      ++by_skip[skip_kind(why, !nskip.empty())];
      hugetlb.add(sc, nullptr, nullptr);
      if (o.verbose) std::printf("SKIP seed %" PRIu64 ": %s\n", seed, why.c_str());
      continue;
    }

    tally_coverage(sc, n, coverage);
    hugetlb.add(sc, &n, &m);
    const verdict v = judge(sc, n, m);
    if (o.dump) {
      std::printf("\nseed %" PRIu64 "\n%s", seed, describe(sc).c_str());
      print_report("native", n);
      print_report("module", m);
    }
    if (v.same) {
      ++passed;
      if (o.verbose) std::printf("PASS seed %" PRIu64 ": %s\n", seed, n.first("result").data());
      continue;
    }
    if (v.expected) {
      ++passed;
      ++by_rule[std::string(test::to_string(v.rule))];
      if (o.verbose) {
        std::printf("PASS seed %" PRIu64 ": expected difference (rule %s)\n", seed,
                    std::string(test::to_string(v.rule)).c_str());
        for (const auto &w : v.why) std::printf("    %s\n", w.c_str());
      }
      continue;
    }
    ++failed;
    if (printed < static_cast<std::uint64_t>(o.print_limit) || o.verbose) {
      ++printed;
      std::printf("\nFAIL seed %" PRIu64 "\n%s", seed, describe(sc).c_str());
      std::printf("differences:\n");
      for (const auto &w : v.why) std::printf("  %s\n", w.c_str());
      print_report("native", n);
      print_report("module", m);
      std::printf("(replay: dontunmap-difftest --seed %" PRIu64 " --count 1 --verbose)\n\n", seed);
    } else {
      std::printf("FAIL seed %" PRIu64 ": %s\n", seed, v.why.empty() ? "" : v.why[0].c_str());
    }
    std::fflush(stdout);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("difftest: coverage (native outcomes; moves by feature):%s\n",
              counts(coverage).c_str());
  hugetlb.print();
  for (const auto &[r, count] : by_rule)
    std::printf("difftest: expected difference (rule %s): %" PRIu64 "\n", r.c_str(), count);
  for (const auto &[why, count] : by_skip)
    std::printf("difftest: skipped (%s): %" PRIu64 "\n", why.c_str(), count);
  std::printf("difftest: %" PRIu64 " scenarios in %.1f s (%.1f/s)\n", o.count, secs,
              secs > 0 ? static_cast<double>(o.count) / secs : 0.0);
  if (sequences)
    std::printf("difftest: sequences (single calls against one batch): %" PRIu64
                " passed, %" PRIu64 " failed, %" PRIu64 " skipped\n",
                seq_passed, seq_failed, seq_skipped);
  std::printf("difftest: %" PRIu64 " passed, %" PRIu64 " failed, %" PRIu64 " skipped\n", passed,
              failed, skipped);
  return failed || seq_failed ? 1 : 0;
}

}  // namespace
}  // namespace dontunmap::difftest

int main(int argc, char **argv) {
  using namespace dontunmap::difftest;
  const auto o = parse(argc, argv);
  if (!o) return 2;
  if (o->help) {
    usage(stdout);
    return 0;
  }
  if (o->show) {
    std::fputs(describe(generate(*o->show)).c_str(), stdout);
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);
  return run(*o);
}
