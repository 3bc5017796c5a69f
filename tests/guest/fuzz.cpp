// SPDX-License-Identifier: GPL-2.0
//
// dontunmap-fuzz: throws random and adversarial DONTUNMAP_IOC_REMAP,
// DONTUNMAP_IOC_REMAP_BATCH and DONTUNMAP_IOC_INFO calls, wrong ioctl
// numbers and racing struct rewrites at /dev/dontunmap, and checks every
// answer and every outcome (fuzz.hpp).
//
//   dontunmap-fuzz [--seed S] [--count N] [--seconds T] [--verbose]
//                  [--print-limit K] [--no-race] [--no-batch] [--self-check]
//
// --self-check sends the remap calls whose struct is well placed to the
// kernel's own mremap() instead of the module (and skips the others), and a
// batch's elements as single mremap() calls in order, stopping at the first
// that fails (headers are not fuzzed): a mismatch is then the fuzzer's own.
// It needs no module, and leaves vm.nr_hugepages alone.
//
// Batches (where the module reports DONTUNMAP_FEAT_BATCH; --no-batch: never)
// are drawn from a stream of their own, seeded from the same seed: a fifth
// of the remap calls drawn are made as an element of a batch (fuzz_batch.cpp)
// instead of alone, and before a tenth of the draws a batch of good elements
// with an adversarial header, or with a failing element among them, is made.
// The remap calls drawn are the same with or without them, the same as
// before batches were fuzzed, as far as the pool the batches leave behind
// is the same.
//
// Runs N calls (2000 by default), or for T seconds, whichever ends first.
// One seed names one run: `--seed S --count I --verbose` replays it up to
// call I (what a racy call moved depends on timing, but the pool is built
// anew after each, so the calls that follow replay the same). Runs as root
// in the guests of tests/vm with dontunmap.ko loaded, and exits 77 when
// /dev/dontunmap is absent.
//
// Before the pool is built and after it is unmapped again, the process's
// map count (which must not drift), Committed_AS and the vm_area_struct
// slab's objects in use (which must not grow; counted where the cache is
// not merged with others) are printed; where the kernel has kmemleak, a
// scan must find nothing whose backtrace names the module. The last line is
//   fuzz: PASS seed=S calls=C ok=K errors=E racy=R seconds=T
// or `fuzz: FAIL ...` with the first mismatch; the status is 0 or 1. The
// kernel must stay silent too: tests/vm/run fails (90) on any splat.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "expectations.hpp"
#include "fuzz.hpp"

namespace dontunmap::fuzz {
using test::parse_u64;
namespace {

struct options {
  std::uint64_t seed = 1;
  std::uint64_t count = 2000;
  double seconds = 0;  // 0: no bound
  bool verbose = false;
  bool race = true;
  bool batch = true;
  bool self_check = false;
  std::uint64_t print_limit = 5;
};

struct run_state {
  run_state(const options &o_, int fd_, int fd_ro_, int fd_path_, pool &p_, rng &r_, rng &rb_,
            racer *rc_)
      : o(o_), fd(fd_), fd_ro(fd_ro_), fd_path(fd_path_), p(p_), r(r_), rb(rb_), rc(rc_) {}
  const options &o;
  int fd = -1, fd_ro = -1, fd_path = -1;
  pool &p;
  rng &r;
  rng &rb;             // the batches' draws, apart from the calls'
  bool batch = false;  // DONTUNMAP_IOC_REMAP_BATCH is fuzzed
  racer *rc = nullptr;
  stats st;
  std::uint64_t calls = 0, ok = 0, errors = 0, racy = 0, mismatches = 0;
  std::string first_mismatch;
  std::map<std::string, std::uint64_t> outcomes, rules, racy_outcomes, places, batch_kinds,
      batch_outcomes;
};

// A call whose answer or outcome is wrong: printed in full (up to
// --print-limit) with the maps around `spans`, remembered for the summary
// line if it is the first.
void report(run_state &s, const std::string &what, const std::string &expected,
            const std::string &got, const std::vector<std::string> &problems,
            const std::vector<span> &spans) {
  ++s.mismatches;
  const std::string head =
      "call " + std::to_string(s.calls) + ": " + what + ": expected " + expected + ", got " + got;
  if (s.first_mismatch.empty())
    s.first_mismatch = head + (problems.empty() ? "" : "; " + problems.front());
  if (s.mismatches > s.o.print_limit) return;
  std::printf("\nMISMATCH %s\n", head.c_str());
  for (const auto &pr : problems) std::printf("  %s\n", pr.c_str());
  std::string excerpt;
  for (const span &sp : spans)
    if (sp.hi - sp.lo < (std::uint64_t(1) << 32))
      excerpt += procfs::maps_excerpt({{reinterpret_cast<void *>(sp.lo), sp.hi - sp.lo}});
  std::printf("%s", excerpt.c_str());
  std::printf("  (replay: dontunmap-fuzz --seed %" PRIu64 " --count %" PRIu64 " --verbose)\n\n",
              s.o.seed, s.calls);
  std::fflush(stdout);
}

void mismatch(run_state &s, const call &c, const std::string &expected, const std::string &got,
              const std::vector<std::string> &problems) {
  std::vector<span> spans;
  if (c.what == op::remap) {
    spans = source_spans(c.args);
    const auto t = target_spans(c.args);
    spans.insert(spans.end(), t.begin(), t.end());
  }
  report(s, describe(c), expected, got, problems, spans);
}

// Whether a call's answer `got` is wrong: not `expected_err` where the
// answer is not the native one (`via_native` false), else not the native
// answer nor one that differs from it by a rule of expectations.cpp.
// `expected` says what was expected, for messages.
bool wrong_answer(run_state &s, const dontunmap_remap &a, bool via_native, int expected_err,
                  const std::string &from, const std::optional<native_answer> &native,
                  const outcome &got, std::string &expected) {
  if (!via_native) {
    expected = errname(expected_err) + " (" + from + ")";
    return got.err != expected_err;
  }
  expected = to_string(native->o) + " (" + from + ")";
  if (native->o == got) return false;
  const auto rule =
      native_is_newest() ? std::nullopt : explained_difference(a, native->facts, native->o, got);
  if (rule) {
    ++s.rules[*rule];
    if (s.o.verbose) expected += ", differs by rule " + *rule;
    return false;
  }
  if (!native->facts.empty()) expected += " [" + native->facts + "]";
  return true;
}

void tally(run_state &s, int err) {
  ++(err ? s.errors : s.ok);
  ++s.outcomes[err ? errname(err) : "ok"];
}

// Where a successful or part-done move left pages, unmapped again; the
// slots it used are mapped anew.
void clean_up(run_state &s, const call &c, const outcome &got, bool args_passed) {
  const dontunmap_remap &a = c.args;
  const std::uint64_t alen = page_align(a.old_len);
  std::set<std::size_t> dirty;
  const auto mark = [&](std::uint64_t lo, std::uint64_t hi) {
    for (std::size_t i : s.p.slots_in(lo, hi)) dirty.insert(i);
  };
  if (got.err == 0) {
    ::munmap(reinterpret_cast<void *>(got.addr), alen);
    mark(got.addr, got.addr + alen);
    for (const span &sp : source_spans(a)) mark(sp.lo, sp.hi);
  } else if ((a.flags & MREMAP_FIXED) && args_passed) {
    // A move across several VMAs may have moved some before it failed. Its
    // target held nothing but the pool's mappings and free space
    // (fuzz_gen.cpp), so all of it goes.
    for (const span &sp : target_spans(a)) {
      ::munmap(reinterpret_cast<void *>(sp.lo), sp.hi - sp.lo);
      mark(sp.lo, sp.hi);
    }
    for (const span &sp : source_spans(a)) mark(sp.lo, sp.hi);
  }
  if (s.r.chance(3)) dirty.insert(s.r.below(s.p.size()));
  for (std::size_t i : dirty) s.p.rebuild(i, s.r);
}

void run_remap(run_state &s, const call &c, const std::vector<procfs::vma> &maps) {
  const dontunmap_remap &a = c.args;
  place_struct(s.p, c);
  ++s.places[to_string(c.where)];

  // What the call must answer, in the order the module meets it.
  std::string from;
  int expected_err = 0;
  std::optional<native_answer> native;
  bool via_native = false;
  const int rules = argument_rules(a);
  const bool writable = c.where == place::normal || c.where == place::misaligned ||
                        c.where == place::in_source || c.where == place::in_target;
  if (!readable(c.where)) {
    expected_err = EFAULT, from = "the struct cannot be read";
  } else if (rules) {
    expected_err = rules, from = "mremap()'s argument rules";
  } else if (!writable || struct_in_moved_ranges(c.ptr, a)) {
    expected_err = EFAULT, from = "the struct cannot take the destination";
  } else {
    via_native = true;
    from = "native mremap()";
  }
  // The native answer: the oracle, or (for a quarter of the calls they
  // refuse, where the native answer is the newest) a check of
  // argument_rules() itself.
  const bool cross_check = rules && (a.flags & MREMAP_DONTUNMAP) && readable(c.where) &&
                           writable && s.r.chance(25) && native_is_newest();
  if (via_native || cross_check) {
    std::string why;
    native = native_mremap(a, s.p.locks(), !native_is_newest(), why);
    if (!native) {
      mismatch(s, c, "an answer from the native oracle", why, {});
      return;
    }
    if (!via_native && native->o.err != rules)
      mismatch(s, c, "native mremap() to agree with argument_rules() (" + errname(rules) + ")",
               to_string(native->o), {"the fuzzer's argument_rules() is wrong"});
  }

  const auto sources = source_spans(a), targets = target_spans(a);
  std::vector<span> ranges = sources;
  ranges.insert(ranges.end(), targets.begin(), targets.end());
  // A target the argument rules let through holds nothing but the pool's
  // mappings and free space (fuzz_gen.cpp): pieces of a move may land
  // there, outside the arena too.
  std::vector<span> anywhere = rules ? std::vector<span>() : targets;
  const snapshot pre = take(ranges, s.p, maps, anywhere);

  outcome got;
  if (s.o.self_check) {
    const long ret = ::syscall(SYS_mremap, a.old_addr, a.old_len, a.new_len, a.flags, a.new_addr);
    got.err = ret == -1 ? errno : 0;
    got.addr = ret == -1 ? 0 : static_cast<std::uint64_t>(ret);
  } else {
    const int ret = ::ioctl(s.fd, DONTUNMAP_IOC_REMAP, reinterpret_cast<void *>(c.ptr));
    got.err = ret == 0 ? 0 : errno;
    if (ret == 0) std::memcpy(&got.addr, reinterpret_cast<const void *>(c.ptr + 32), 8);
  }
  tally(s, got.err);

  if (got.err == 0) anywhere.push_back({got.addr, got.addr + page_align(a.old_len)});
  const snapshot post = take(ranges, s.p, procfs::read_maps(), anywhere);
  const auto problems = check_outcome(a, pre, post, got);

  std::string expected;
  const bool wrong = wrong_answer(s, a, via_native, expected_err, from, native, got, expected);
  if (s.o.verbose)
    std::printf("call %" PRIu64 ": %s -> %s (expected %s)\n", s.calls, describe(c).c_str(),
                to_string(got).c_str(), expected.c_str());
  if (wrong || !problems.empty()) mismatch(s, c, expected, to_string(got), problems);
  clean_up(s, c, got, rules == 0);
}

// One DONTUNMAP_IOC_REMAP_BATCH call. `c`: the generated call it holds (a
// wrapped batch), or null. That call is judged as run_remap() judges it
// alone, with the oracle's child making the elements before it first, its
// outcome checked the same way (nothing changed where the call did not get
// to it), and it is cleaned up after as there, with the same draws of the
// calls' stream. The good elements are checked against a model of the
// scratch zone, the header and the array byte by byte, the module's
// counters by how far the call got.
void run_batch(run_state &s, const batch &b, const call *c) {
  const bool alone = b.elems.size() == 1;
  ++s.batch_kinds[b.kind == batch::variant::wrapped ? (alone ? "alone" : "among_good")
                                                     : to_string(b.kind)];
  const std::vector<span> zone = {{kScratchZone, kScratchEnd}};
  if (!b.mapped_ok) {
    report(s, describe(b), "a free scratch zone", "a scratch range that could not be mapped", {},
           zone);
    drop_scratch();
    if (c) run_remap(s, *c, procfs::read_maps());
    return;
  }
  place_batch(s.p, b);
  const auto maps = procfs::read_maps();
  const batch_expect x = expect_whole(b, maps);
  const snapshot pre_scratch = take({}, s.p, maps, zone);

  // The generated element: what the single call's oracle says it answers.
  const dontunmap_remap a = c ? c->args : dontunmap_remap{};
  const std::size_t j = c ? static_cast<std::size_t>(b.generated) : 0;
  int rules = 0;
  bool via_native = false;
  std::optional<native_answer> native;
  std::vector<span> ranges, anywhere;
  snapshot pre_c;
  if (c) {
    rules = argument_rules(a);
    const bool writable = c->where == place::normal || c->where == place::misaligned ||
                          c->where == place::in_source || c->where == place::in_target;
    // run_remap()'s draw, made alike: the calls' stream stays the same.
    const bool cross_check = rules && (a.flags & MREMAP_DONTUNMAP) && readable(c->where) &&
                             writable && s.r.chance(25) && native_is_newest();
    via_native = x.err == 0 && rules == 0;
    if (via_native || cross_check) {
      std::vector<dontunmap_remap> before;
      for (std::size_t i = 0; via_native && i < j; ++i) before.push_back(b.elems[i].args);
      std::string why;
      native = native_mremap(a, s.p.locks(), !native_is_newest(), why, before);
      if (!native) {
        report(s, describe(b), "an answer from the native oracle", why, {}, zone);
        drop_scratch();
        return;
      }
      if (!via_native && native->o.err != rules)
        report(s, describe(b),
               "native mremap() to agree with argument_rules() (" + errname(rules) + ")",
               to_string(native->o), {"the fuzzer's argument_rules() is wrong"}, {});
    }
    ranges = source_spans(a);
    const auto targets = target_spans(a);
    ranges.insert(ranges.end(), targets.begin(), targets.end());
    if (!rules) anywhere = targets;
    pre_c = take(ranges, s.p, without(maps, zone), anywhere);
  }

  const auto counted = s.o.self_check ? std::nullopt : module_counters();
  const batch_result got =
      s.o.self_check ? emulate_batch(b) : make_batch(s.fd, s.fd_path, b, maps);
  const auto counted_after = counted ? module_counters() : std::nullopt;
  tally(s, got.err);
  // What the call says it moved (nothing, where it must have been refused).
  const std::uint32_t completed = x.err ? 0 : got.completed;

  // The generated element's own answer, where the call got to it.
  outcome got_c{ECANCELED, 0};
  bool tried = false;
  if (c && x.err == 0 && got.header_read && got.completed >= j) {
    tried = true;
    if (got.completed > j)
      got_c = {0, got.dest[j]};
    else
      got_c.err = got.err ? got.err : ECANCELED;
  }

  const auto post_maps = procfs::read_maps();
  const std::vector<span> spans = scratch_spans(b, completed, got.dest);
  const snapshot post_scratch = take({}, s.p, post_maps, spans);
  std::vector<std::string> problems =
      check_scratch(b, pre_scratch, post_scratch, completed, got.dest);
  const auto add = [&](const std::vector<std::string> &more) {
    problems.insert(problems.end(), more.begin(), more.end());
  };
  if (c) {
    if (got_c.err == 0) anywhere.push_back({got_c.addr, got_c.addr + page_align(a.old_len)});
    const snapshot post_c = take(ranges, s.p, without(post_maps, spans), anywhere);
    pre_c.maps = without(std::move(pre_c.maps), spans);
    add(tried ? check_outcome(a, pre_c, post_c, got_c) : check_unchanged(pre_c, post_c));
  }
  if (!s.o.self_check) add(check_batch_memory(b, x, got));
  if (counted && counted_after) {
    const std::uint64_t moves = counted_after->first - counted->first;
    const std::uint64_t batches = counted_after->second - counted->second;
    const std::uint64_t want_moves = x.err ? 0 : got.completed, want_batches = x.err ? 0 : 1;
    if (moves != want_moves || batches != want_batches)
      problems.push_back("stats: moves +" + std::to_string(moves) + ", batches +" +
                         std::to_string(batches) + "; expected +" + std::to_string(want_moves) +
                         ", +" + std::to_string(want_batches));
  }

  // The answer: a whole refusal, or element by element (a good one moves,
  // a bad one fails with its errno, the generated one answers as judged).
  std::string expected;
  bool wrong = false;
  if (x.err) {
    expected = "refused whole with " + errname(x.err) + " (" + x.why + ")";
    wrong = got.err != x.err;
  } else {
    const std::size_t n = std::min<std::size_t>(b.hdr.count, b.elems.size());
    std::size_t want = n;
    int want_err = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const element &e = b.elems[i];
      int err = e.what == role::bad ? e.err : 0;
      if (e.what == role::generated) {
        std::string ce;
        const char *from = rules ? "mremap()'s argument rules" : "native mremap()";
        const bool c_wrong =
            tried && wrong_answer(s, a, via_native, rules, from, native, got_c, ce);
        if (c_wrong)
          problems.insert(problems.begin(), "element " + std::to_string(i) + " answered " +
                                                to_string(got_c) + ", expected " + ce);
        err = tried && !c_wrong ? got_c.err : (rules ? rules : native->o.err);
      }
      if (err) {
        want = i, want_err = err;
        break;
      }
    }
    expected = want_err ? "element " + std::to_string(want) + " to fail: completed " +
                              std::to_string(want) + ", error -" + errname(want_err)
                        : "all " + std::to_string(n) + " moved";
    wrong = got.err != want_err || !got.header_read || got.completed != want ||
            got.error != -want_err;
  }
  const std::string got_text =
      (got.err ? errname(got.err) : std::string("ok")) +
      (got.header_read ? ": completed " + std::to_string(got.completed) + ", error " +
                             (got.error < 0 ? "-" + errname(-got.error)
                                            : std::to_string(got.error))
                       : ": header unreadable");
  ++s.batch_outcomes[x.err ? "refused_" + errname(x.err)
                           : (got.err ? "stopped_" + errname(got.err) : std::string("all_moved"))];
  if (s.o.verbose)
    std::printf("call %" PRIu64 ": %s -> %s (expected %s)\n", s.calls, describe(b).c_str(),
                got_text.c_str(), expected.c_str());
  if (wrong || !problems.empty()) {
    std::vector<span> show = ranges;
    show.push_back(zone.front());
    report(s, describe(b), expected, got_text, problems, show);
  }
  drop_scratch();
  if (c) clean_up(s, *c, tried ? got_c : outcome{x.err ? x.err : EFAULT, 0}, rules == 0);
}

void run_info(run_state &s, const call &c) {
  place_struct(s.p, c);
  const int fd = s.r.chance(20) ? s.fd_ro : s.fd;
  const int ret = ::ioctl(fd, DONTUNMAP_IOC_INFO, reinterpret_cast<void *>(c.ptr));
  const int err = ret == 0 ? 0 : errno;
  tally(s, err);
  const bool writable = c.where == place::normal || c.where == place::misaligned;
  const int expected = writable ? 0 : EFAULT;
  std::vector<std::string> problems;
  if (err == 0 && writable) {
    dontunmap_info info;
    std::memcpy(&info, reinterpret_cast<const void *>(c.ptr), sizeof(info));
    const std::uint64_t known = (DONTUNMAP_FEAT_BATCH << 1) - 1;
    if (info.abi_version != DONTUNMAP_ABI_VERSION)
      problems.push_back("abi_version " + std::to_string(info.abi_version));
    if (info.abi_minor != DONTUNMAP_ABI_MINOR)
      problems.push_back("abi_minor " + std::to_string(info.abi_minor));
    if (info.reserved[0] || info.reserved[1] || info.reserved[2] ||
        info.reserved[3])
      problems.push_back("reserved fields not zero");
    if (info.features & ~known) problems.push_back("unknown feature bits " + hex(info.features));
    if (!(info.features & DONTUNMAP_FEAT_PRIVATE_ANON)) problems.push_back("no PRIVATE_ANON");
    // The 16 bytes after it (inside the page) still hold the sentinel.
    const std::uint64_t page_end = s.p.structs().rw + page();
    for (std::uint64_t x = c.ptr + sizeof(info); x < c.ptr + sizeof(info) + 16 && x < page_end; ++x)
      if (*reinterpret_cast<const unsigned char *>(x) != 0xa5) {
        problems.push_back("wrote past the struct at " + hex(x));
        break;
      }
  }
  if (s.o.verbose)
    std::printf("call %" PRIu64 ": %s -> %s\n", s.calls, describe(c).c_str(),
                err ? errname(err).c_str() : "ok");
  if (err != expected || !problems.empty())
    mismatch(s, c, expected ? errname(expected) : "ok", err ? errname(err) : "ok", problems);
}

void run_bad_cmd(run_state &s, const call &c) {
  const int fd = c.path_fd ? s.fd_path : (s.r.chance(20) ? s.fd_ro : s.fd);
  const int ret = ::ioctl(fd, c.cmd, reinterpret_cast<void *>(c.ptr));
  const int err = ret == 0 ? 0 : errno;
  tally(s, err);
  const int expected = c.path_fd ? EBADF : ENOTTY;
  if (s.o.verbose)
    std::printf("call %" PRIu64 ": %s -> %s\n", s.calls, describe(c).c_str(),
                err ? errname(err).c_str() : "ok");
  if (err != expected) mismatch(s, c, errname(expected), err ? errname(err) : "ok", {});
}

void run_racy(run_state &s, const call &c) {
  ++s.racy;
  const race_result res = racy_call(*s.rc, s.fd, s.p, s.r);
  tally(s, res.err);
  ++s.racy_outcomes[(res.err ? errname(res.err) : std::string("ok")) + (res.moved ? "+moved" : "")];
  if (s.o.verbose)
    std::printf("call %" PRIu64 ": racy REMAP -> %s%s\n", s.calls,
                res.err ? errname(res.err).c_str() : "ok",
                res.moved ? (", moved " + res.how).c_str() : "");
  if (!res.problems.empty())
    mismatch(s, c, "a legal errno and a whole move or none", res.err ? errname(res.err) : "ok",
             res.problems);
}

std::string counts(const std::map<std::string, std::uint64_t> &m) {
  std::string t;
  for (const auto &[k, v] : m) t += " " + k + "=" + std::to_string(v);
  return t.empty() ? " none" : t;
}

std::optional<options> parse(int argc, char **argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    std::uint64_t v = 0;
    const bool value = i + 1 < argc && parse_u64(argv[i + 1], v);
    if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--no-race") {
      o.race = false;
    } else if (a == "--no-batch") {
      o.batch = false;
    } else if (a == "--self-check") {
      o.self_check = true;
      o.race = false;
    } else if (a == "--seed" && value) {
      o.seed = v, ++i;
    } else if (a == "--count" && value) {
      o.count = v, ++i;
    } else if (a == "--seconds" && value) {
      o.seconds = static_cast<double>(v), ++i;
    } else if (a == "--print-limit" && value) {
      o.print_limit = v, ++i;
    } else {
      std::fprintf(stderr,
                   "usage: dontunmap-fuzz [--seed S] [--count N] [--seconds T] [--verbose]\n"
                   "                      [--print-limit K] [--no-race] [--no-batch]\n"
                   "                      [--self-check]\n");
      return std::nullopt;
    }
  }
  return o;
}

// The process's map count and the system's Committed_AS, and the heap's
// size: its growth (64 MiB at a time, M_TOP_PAD) is charged too. The
// vm_area_struct slab's objects in use, where they can be told apart.
struct footprint {
  std::size_t map_count;
  std::uint64_t committed_kb;
  std::uint64_t heap_kb;
  std::optional<std::uint64_t> vma_objs;
};
// `before`: the footprint to come back to, for the slab to settle towards.
footprint measure(const footprint *before = nullptr) {
  std::uint64_t heap = 0;
  for (const auto &v : procfs::read_maps())
    if (v.path == "[heap]") heap += v.size() / 1024;
  return {procfs::map_count(), procfs::meminfo_kb("Committed_AS").value_or(0), heap,
          procfs::vma_slab_objects_down_to(before ? before->vma_objs : std::nullopt)};
}

std::string objects_str(const std::optional<std::uint64_t> &n) {
  return n ? std::to_string(*n) : std::string("not counted (a merged cache)");
}

int run(const options &o) {
  const int fd = o.self_check ? ::open("/dev/null", O_RDWR | O_CLOEXEC)
                              : ::open(DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::printf("fuzz: %s: %s\n", DONTUNMAP_DEVICE, std::strerror(err));
    if (err == ENOENT || err == ENODEV || err == ENXIO) {
      std::printf("fuzz: SKIP seed=%" PRIu64 ": the module is not loaded\n", o.seed);
      return 77;
    }
    return 1;
  }
  const int fd_ro = ::open(DONTUNMAP_DEVICE, O_RDONLY | O_CLOEXEC);
  const int fd_path = ::open(DONTUNMAP_DEVICE, O_PATH | O_CLOEXEC);

  const machine &m = probe_machine();
  struct utsname u {};
  ::uname(&u);
  std::printf("fuzz: kernel %s, page %zu, TASK_SIZE %s (stack ends %s), LA57 %s\n", u.release,
              page(), hex(m.task_size).c_str(), hex(m.stack_top).c_str(), m.la57 ? "yes" : "no");
  if (native_is_newest()) {
    std::printf("fuzz: native oracle exact: this kernel's mremap() is the newest for every rule\n");
  } else {
    std::string legacy;
    for (const auto &row : test::all_rules())
      if (test::native_expectation(row.r, test::running_kernel()).allows_legacy())
        legacy += " " + std::string(row.name);
    std::printf("fuzz: native oracle judged by difftest_rules; rules not newest here:%s\n",
                legacy.c_str());
  }

  // Batches where the module has them (--self-check: made of mremap() calls).
  bool batches = o.batch && o.self_check;
  if (o.batch && !o.self_check) {
    dontunmap_info info{};
    batches = ::ioctl(fd, DONTUNMAP_IOC_INFO, &info) == 0 && (info.features & DONTUNMAP_FEAT_BATCH);
  }
  std::printf("fuzz: batches: %s\n",
              !o.batch      ? "not fuzzed (--no-batch)"
              : !batches    ? "not fuzzed: the module lacks DONTUNMAP_FEAT_BATCH"
              : o.self_check ? "elements made as single mremap() calls, headers not fuzzed"
                             : "fuzzed");

  racer *rc = o.race ? start_racer() : nullptr;
  const footprint before = measure();
  std::printf("fuzz: before: map_count=%zu Committed_AS=%" PRIu64 " kB (heap %" PRIu64
              " kB) vm_area_struct=%s\n",
              before.map_count, before.committed_kb, before.heap_kb,
              objects_str(before.vma_objs).c_str());

  rng r(o.seed);
  pool p;
  p.leave_hugetlb_alone(o.self_check);
  std::string why;
  if (!p.open(r, why)) {
    std::printf("fuzz: FAIL seed=%" PRIu64 ": the pool: %s\n", o.seed, why.c_str());
    return 1;
  }
  std::printf("fuzz: pool: %zu slots, specials: %s\n", p.size(), p.describe().c_str());
  std::fflush(stdout);

  rng rb(o.seed ^ 0xba7c'4ed5'0000'0000ULL);
  run_state s(o, fd, fd_ro, fd_path, p, r, rb, rc);
  s.batch = batches;
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::uint64_t last_progress = 0;
  for (; s.calls < o.count; ++s.calls) {
    if (o.seconds > 0 && elapsed() >= o.seconds) break;
    if (s.calls && s.calls % 2000 == 0 && s.calls != last_progress) {
      last_progress = s.calls;
      std::printf("fuzz: %" PRIu64 " calls, %.0f s\n", s.calls, elapsed());
      std::fflush(stdout);
    }
    ::alarm(120);  // a call that hangs ends the run (SIGALRM)
    if (s.batch && s.rb.chance(10)) {
      run_batch(s,
                o.self_check || s.rb.chance(35) ? draw_failing_batch(s.rb, p, s.calls, !o.self_check)
                                                : draw_header_batch(s.rb, p, s.calls),
                nullptr);
      continue;
    }
    const auto maps = procfs::read_maps();
    const call c = generate(r, p, maps, rc != nullptr, s.st);
    if (o.self_check &&
        (c.what != op::remap || c.where != place::normal || !(c.args.flags & MREMAP_DONTUNMAP))) {
      --s.calls;  // not a call: the next draw takes its number
      continue;
    }
    switch (c.what) {
      case op::remap:
        if (s.batch && s.rb.chance(20))
          run_batch(s, wrap_call(s.rb, p, c, s.calls, true), &c);
        else
          run_remap(s, c, maps);
        break;
      case op::info: run_info(s, c); break;
      case op::bad_cmd: run_bad_cmd(s, c); break;
      case op::racy: run_racy(s, c); break;
    }
  }
  ::alarm(0);
  const double secs = elapsed();

  p.close();
  const footprint after = measure(&before);
  if (rc) stop_racer(rc);
  std::printf("fuzz: after: map_count=%zu Committed_AS=%" PRIu64 " kB (heap %" PRIu64
              " kB) vm_area_struct=%s\n",
              after.map_count, after.committed_kb, after.heap_kb,
              objects_str(after.vma_objs).c_str());
  if (after.map_count != before.map_count) {
    ++s.mismatches;
    const std::string t = "map_count drifted from " + std::to_string(before.map_count) + " to " +
                          std::to_string(after.map_count) + " with the pool unmapped";
    std::printf("MISMATCH %s\n", t.c_str());
    for (const auto &v : procfs::read_maps()) std::printf("  %s\n", v.line.c_str());
    if (s.first_mismatch.empty()) s.first_mismatch = t;
  }
  if (before.vma_objs && after.vma_objs && *after.vma_objs > *before.vma_objs) {
    ++s.mismatches;
    const std::string t = "vm_area_struct objects in use grew from " +
                          std::to_string(*before.vma_objs) + " to " +
                          std::to_string(*after.vma_objs) + " with the pool unmapped";
    std::printf("MISMATCH %s\n", t.c_str());
    if (s.first_mismatch.empty()) s.first_mismatch = t;
  }
  if (const auto leaks = procfs::kmemleak_reports_naming("dontunmap")) {
    std::printf("fuzz: kmemleak: %zu unreferenced objects naming the module\n", leaks->size());
    if (!leaks->empty()) {
      ++s.mismatches;
      for (const auto &b : *leaks) std::printf("%s", b.c_str());
      if (s.first_mismatch.empty()) s.first_mismatch = "kmemleak reports the module's objects";
    }
  } else {
    std::printf("fuzz: kmemleak: not in this kernel, leaks not checked\n");
  }
  std::printf("fuzz: outcomes:%s\n", counts(s.outcomes).c_str());
  std::printf("fuzz: struct places:%s\n", counts(s.places).c_str());
  std::printf("fuzz: batch calls:%s\n", counts(s.batch_kinds).c_str());
  std::printf("fuzz: batch outcomes:%s\n", counts(s.batch_outcomes).c_str());
  std::printf("fuzz: racy outcomes:%s\n", counts(s.racy_outcomes).c_str());
  std::printf("fuzz: native differences explained by rule:%s\n", counts(s.rules).c_str());
  std::printf("fuzz: draws redrawn as unsafe for the fuzzer: %" PRIu64 "\n", s.st.guarded);
  std::printf(
      "fuzz: %s seed=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64 " racy=%" PRIu64
      " seconds=%.0f%s%s\n",
      s.mismatches ? "FAIL" : "PASS", o.seed, s.calls, s.ok, s.errors, s.racy, secs,
      s.mismatches ? (" mismatches=" + std::to_string(s.mismatches) + " first: ").c_str() : "",
      s.first_mismatch.c_str());
  ::close(fd);
  if (fd_ro >= 0) ::close(fd_ro);
  if (fd_path >= 0) ::close(fd_path);
  return s.mismatches ? 1 : 0;
}

}  // namespace
}  // namespace dontunmap::fuzz

int main(int argc, char **argv) {
  using namespace dontunmap::fuzz;
  const auto o = parse(argc, argv);
  if (!o) return 2;
  ::signal(SIGPIPE, SIG_IGN);
  // Keep malloc off mmap() and in one arena, and never trim the heap: the
  // map count then changes only with what the calls do.
  ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
  ::mallopt(M_ARENA_MAX, 1);
  ::mallopt(M_TOP_PAD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // The heap exists, 64 MiB of it, before the first reading (through a
  // volatile pointer: the compiler drops a malloc()/free() pair).
  void *volatile heap = ::malloc(1);
  ::free(heap);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return run(*o);
}
