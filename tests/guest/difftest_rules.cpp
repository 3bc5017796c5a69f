// SPDX-License-Identifier: GPL-2.0
//
// Judging a pair of reports. On the newest kernels the two must agree line
// for line (Committed_AS within --commit-tolerance, 0 by default). On older ones the kernel's own
// mremap() differs from the newest upstream in known ways; each is a rule of
// the one table in expectations.cpp (native_expectation), where its reason
// is written. Here each rule only gets a predicate saying which scenarios
// it can explain, and what the native side must then show. The module's
// outcome is held to the newest semantics whatever the rule (its "check"
// line must be ok).
#include <linux/mman.h>
#include <linux/userfaultfd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "difftest.hpp"

namespace dontunmap::difftest {
namespace {

using test::rule;

// Committed_AS is system wide. The two children run one after the other,
// never together, and read it right before and after the call without
// allocating, so in a quiet guest the two deltas are equal and the default
// tolerance is 0; on a developer's machine other processes charge and
// uncharge meanwhile, and --commit-tolerance absorbs that.
long g_commit_tolerance_kb = 0;

using facts = std::map<std::string, std::string, std::less<>>;

facts parse_facts(std::string_view line) {
  facts f;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t sp = line.find(' ', i);
    const std::string_view tok = line.substr(i, sp == std::string_view::npos ? line.npos : sp - i);
    const std::size_t eq = tok.find('=');
    if (eq != std::string_view::npos)
      f.emplace(std::string(tok.substr(0, eq)), std::string(tok.substr(eq + 1)));
    if (sp == std::string_view::npos) break;
    i = sp + 1;
  }
  return f;
}

bool fact_is(const facts &f, std::string_view key, std::string_view value) {
  const auto it = f.find(key);
  return it != f.end() && it->second == value;
}

bool failed_with(const report &r, std::string_view err) {
  return r.first("result") == "err " + std::string(err);
}
bool succeeded(const report &r) { return r.first("result").rfind("ok ", 0) == 0; }

// What each rule can explain: the scenarios it applies to, what the native
// side then shows, and which parts of the reports it may make differ
// (empty: any, the native call having failed where the module's worked).
// The first that explains a difference is credited with it, so the more
// specific come first.
struct rule_predicate {
  rule r;
  bool (*explains)(const scenario &sc, const facts &f, const report &n, const report &m);
  std::vector<std::string_view> sections;
};

// A layout difference also changes how the afterwards faults are served (a
// VMA split below 2 MiB gets 4 KiB zero pages where the whole one got the
// huge zero page: seed 5694 on 5.10), so the pagemap bits of after.pages
// may differ too - never presence or contents ("after.pages.bits").
const std::vector<std::string_view> kLayoutAfterwards = {
    "post.maps",    "post.smaps",  "post.status",     "after.maps",
    "after.smaps", "after.status", "after.pages.bits"};
// Everything but the result.
const std::vector<std::string_view> kAllButResult = {
    "uffd",       "post.maps",   "post.smaps",  "post.pages",  "post.status", "after.maps",
    "after.smaps", "after.pages", "after.status", "commit"};

std::uint64_t hex_at(std::string_view s) {
  return std::strtoull(std::string(s).c_str(), nullptr, 16);
}

// The VMAs of a maps section: "0xstart-0xend perms ...".
std::vector<std::pair<std::uint64_t, std::uint64_t>> vmas(const report &r, std::string_view sec) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (auto line : r.section(sec)) {
    const auto dash = line.find('-');
    if (dash == std::string_view::npos) continue;
    out.emplace_back(hex_at(line.substr(0, dash)), hex_at(line.substr(dash + 1)));
  }
  return out;
}

// A pages section without its pagemap bits: per page "-" (absent) or the
// content hash, after the address each run starts at.
std::vector<std::string> contents(const report &r, std::string_view sec) {
  std::vector<std::string> out;
  for (auto line : r.section(sec)) {
    const auto colon = line.find(": ");
    if (colon == std::string_view::npos) {
      out.emplace_back(line);
      continue;
    }
    out.emplace_back(line.substr(0, colon));
    std::string_view rest = line.substr(colon + 2);
    while (!rest.empty()) {
      const auto sp = rest.find(' ');
      std::string_view tok = rest.substr(0, sp);
      rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
      std::size_t n = 1;
      if (const auto star = tok.find('*'); star != std::string_view::npos) {
        n = std::strtoul(std::string(tok.substr(star + 1)).c_str(), nullptr, 10);
        tok = tok.substr(0, star);
      }
      const auto hash = tok.find(':');
      const std::string page =
          tok.empty() || tok[0] == '-' || hash == std::string_view::npos
              ? std::string("-")
              : std::string(tok.substr(hash + 1));
      out.insert(out.end(), n, page);
    }
  }
  return out;
}

std::uint64_t result_addr(const report &r) { return hex_at(r.first("result").substr(3)); }

const rule_predicate predicates[] = {
    {rule::aligned_length_compare,
     [](const scenario &sc, const facts &, const report &n, const report &) {
       const call_desc &c = sc.call;
       return c.old_len != c.new_len && page_align(c.old_len) == page_align(c.new_len) &&
              failed_with(n, "EINVAL");
     },
     {}},
    {rule::non_anonymous_sources,
     [](const scenario &, const facts &f, const report &n, const report &) {
       return !fact_is(f, "src", "private_anon") && !fact_is(f, "src", "none") &&
              failed_with(n, "EINVAL");
     },
     {}},
    {rule::fixed_move_spans_vmas,
     [](const scenario &sc, const facts &f, const report &n, const report &) {
       // The old kernels check one VMA: the range runs past it (EFAULT),
       // unless a sealed source (EPERM, checked first) stops them earlier.
       return (sc.call.flags & MREMAP_FIXED) && fact_is(f, "beyond_first", "1") &&
              (failed_with(n, "EFAULT") || failed_with(n, "EPERM"));
     },
     {}},
    {rule::call_checked_before_source,
     [](const scenario &, const facts &f, const report &n, const report &m) {
       // The lookup of an old kernel also checks a hugetlb (VM_DONTEXPAND)
       // source's huge page alignment: EINVAL before the map-count check.
       return ((failed_with(n, "EFAULT") || failed_with(n, "EPERM")) &&
               (failed_with(m, "EINVAL") || failed_with(m, "ENOMEM"))) ||
              (fact_is(f, "special", "1") && failed_with(n, "EINVAL") &&
               failed_with(m, "ENOMEM"));
     },
     {"result"}},
    {rule::map_count_headroom,
     [](const scenario &sc, const facts &, const report &n, const report &) {
       return sc.lim == limit::map_count && failed_with(n, "ENOMEM");
     },
     {}},
    {rule::mlocked_source_split_ahead,
     [](const scenario &, const facts &f, const report &n, const report &m) {
       return fact_is(f, "locked", "1") && fact_is(f, "partial", "1") && succeeded(n) &&
              n.first("result") == m.first("result");
     },
     kLayoutAfterwards},
    {rule::unfaulted_source_self_merge,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       if (!fact_is(f, "src", "private_anon") || !succeeded(n) ||
           n.first("result") != m.first("result"))
         return false;
       const std::uint64_t src = sc.call.old_addr, dst = result_addr(n);
       for (const auto &[lo, hi] : vmas(n, "post.maps"))
         if (src >= lo && src < hi && dst >= lo && dst < hi) return true;
       return false;
     },
     kLayoutAfterwards},
    // 6.1's keep_source: a destination next to its unfaulted source merges
    // with nothing natively, where the module merges it with the VMA on its
    // other side.
    {rule::adjacent_destination_merges_far_side,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       if (!fact_is(f, "src", "private_anon") || !succeeded(n) ||
           n.first("result") != m.first("result"))
         return false;
       const std::uint64_t src = sc.call.old_addr, dst = result_addr(n);
       const std::uint64_t end = dst + page_align(sc.call.new_len);
       bool alone = false, beside = false, grown = false;
       for (const auto &[lo, hi] : vmas(n, "post.maps")) {
         if (lo == dst && hi == end) alone = true;
         if (src >= lo && src < hi && (hi == dst || lo == end)) beside = true;
       }
       for (const auto &[lo, hi] : vmas(m, "post.maps"))
         if (dst >= lo && dst < hi) grown = lo < dst || hi > end;
       return alone && beside && grown;
     },
     kLayoutAfterwards},
    {rule::emptied_source_drops_anon_vma,
     [](const scenario &, const facts &f, const report &n, const report &m) {
       return fact_is(f, "src", "private_anon") && fact_is(f, "vmas", "1") &&
              fact_is(f, "partial", "0") && succeeded(n) &&
              n.first("result") == m.first("result");
     },
     // Only the merges the afterwards operations make can tell.
     kLayoutAfterwards},
    {rule::next_vma_gains_vm_account,
     [](const scenario &, const facts &f, const report &n, const report &m) {
       return fact_is(f, "partial", "1") && fact_is(f, "account", "1") && succeeded(n) &&
              n.first("result") == m.first("result");
     },
     // The flag is in smaps; once mprotect() makes neighbours alike, it
     // also decides which of them merge.
     kLayoutAfterwards},
    {rule::fixed_target_unmapped_first,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       return (sc.call.flags & MREMAP_FIXED) && fact_is(f, "dst_mapped", "1") &&
              !succeeded(n) && n.first("result") == m.first("result");
     },
     kAllButResult},
    // A moved entry keeps its uffd-wp bit on the old kernels when the
    // context goes without UFFD_FEATURE_EVENT_REMAP; only the pagemap's
    // flags of the moved pages can differ (the same contents).
    {rule::uffd_wp_cleared_on_move,
     [](const scenario &sc, const facts &, const report &n, const report &m) {
       const bool wp = std::any_of(sc.maps.begin(), sc.maps.end(),
                                   [](const mapping_desc &d) { return d.uffd_wp; });
       return wp && !(sc.uffd_features & UFFD_FEATURE_EVENT_REMAP) && succeeded(n) &&
              n.first("result") == m.first("result");
     },
     {"post.pages.bits", "after.pages.bits"}},
    // A destination whose context stays behind, merged by the old kernels
    // with neighbours: registered with the same context, they lose it too.
    {rule::uffd_dropped_destination_unmerged,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       if (!fact_is(f, "uffd", "1") || (sc.uffd_features & UFFD_FEATURE_EVENT_REMAP) ||
           !succeeded(n) || n.first("result") != m.first("result"))
         return false;
       const std::uint64_t dst = result_addr(n), end = dst + page_align(sc.call.new_len);
       for (const auto &[lo, hi] : vmas(n, "post.maps"))
         if (dst >= lo && dst < hi) return lo < dst || hi > end;
       return false;
     },
     kLayoutAfterwards},
    // The same early unmap can fail itself, before the source is looked
    // up: a target that cuts a hugetlb VMA off its huge page boundary is
    // EINVAL (hugetlb_vm_op_split()), where the newest kernels refuse the
    // source first (no VMA: EFAULT; sealed: EPERM). Seen by dontunmap-fuzz
    // on 5.10.262.
    {rule::fixed_target_unmapped_first,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       return (sc.call.flags & MREMAP_FIXED) && fact_is(f, "dst_mapped", "1") &&
              failed_with(n, "EINVAL") && (failed_with(m, "EFAULT") || failed_with(m, "EPERM"));
     },
     {}},
    // Up to 6.16 a FIXED target is unmapped before vma_to_resize() refuses
    // a VM_DONTEXPAND source (hugetlb: after the syscall's huge page
    // alignment checks passed), so the call fails as the module's does but
    // the target is gone (seed 256 on 6.1).
    {rule::source_checked_before_target_unmap,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       return (sc.call.flags & MREMAP_FIXED) && fact_is(f, "special", "1") && !succeeded(n) &&
              n.first("result") == m.first("result");
     },
     kAllButResult},
    // The same order, the unmap failing: a target that cuts a hugetlb VMA
    // off its huge page boundary is EINVAL before an old kernel's
    // vma_to_resize() finds the range running past its first VMA, which
    // 7.3 refuses first (EFAULT: a gap, or a VMA that moves only on its
    // own). Seeds 814, 1600, 1696, 2000 on 6.1.176; 1478 on 6.12.95.
    {rule::source_checked_before_target_unmap,
     [](const scenario &sc, const facts &f, const report &n, const report &m) {
       return (sc.call.flags & MREMAP_FIXED) && sc.huge == huge_role::fixed_target &&
              fact_is(f, "beyond_first", "1") && failed_with(n, "EINVAL") &&
              failed_with(m, "EFAULT");
     },
     {"result"}},
};

// The lines of one report that the other lacks (as multisets), in order.
std::vector<std::string> only_in(const std::vector<std::string_view> &a,
                                 const std::vector<std::string_view> &b) {
  std::map<std::string_view, int> count;
  for (auto l : b) ++count[l];
  std::vector<std::string> out;
  for (auto l : a) {
    if (count[l] > 0)
      --count[l];
    else
      out.emplace_back(l);
  }
  return out;
}

// Appends the differences of one section to `why`; true if there were any.
bool differs(std::string_view name, const report &n, const report &m,
             std::vector<std::string> &why) {
  const auto a = n.section(name), b = m.section(name);
  if (a == b) return false;
  const std::size_t had = why.size();
  for (auto &l : only_in(a, b)) why.push_back("- native " + std::string(name) + " " + l);
  for (auto &l : only_in(b, a)) why.push_back("+ module " + std::string(name) + " " + l);
  if (why.size() == had) why.push_back(std::string(name) + ": same lines, different order");
  return true;
}

}  // namespace

void set_commit_tolerance_kb(long kb) { g_commit_tolerance_kb = kb; }

std::vector<std::string_view> report::section(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto &l : lines) {
    const std::string_view v(l);
    if (v.size() >= name.size() && v.substr(0, name.size()) == name &&
        (v.size() == name.size() || v[name.size()] == ' '))
      out.push_back(v.size() == name.size() ? std::string_view() : v.substr(name.size() + 1));
  }
  return out;
}

std::string_view report::first(std::string_view name) const {
  for (const auto &l : lines) {
    const std::string_view v(l);
    if (v.size() > name.size() && v.substr(0, name.size()) == name && v[name.size()] == ' ')
      return v.substr(name.size() + 1);
  }
  return {};
}

verdict judge(const scenario &sc, const report &native, const report &module) {
  verdict v;
  if (!native.complete || !module.complete) {
    if (!native.complete) v.why.push_back("native child: " + native.death);
    if (!module.complete) v.why.push_back("module child: " + module.death);
    return v;
  }

  // The same layout must have been built in both: anything else is a
  // tester problem, and would make the rest meaningless.
  for (const char *s : {"fact", "pre.maps", "pre.smaps", "pre.pages", "pre.status"}) {
    if (differs(s, native, module, v.why)) {
      v.why.insert(v.why.begin(), "the layouts before the call differ (not reproducible)");
      return v;
    }
  }

  const std::string check = std::string(module.first("check"));
  if (check != "ok") v.why.push_back("module outcome breaks the newest semantics: " + check);

  std::vector<std::string_view> differing;
  for (const char *s : {"result", "uffd", "post.maps", "post.smaps", "post.pages", "post.status",
                        "check", "after.maps", "after.smaps", "after.pages", "after.status"})
    if (differs(s, native, module, v.why)) differing.push_back(s);
  for (auto &d : differing)
    if ((d == "post.pages" || d == "after.pages") && contents(native, d) == contents(module, d))
      d = d == "post.pages" ? "post.pages.bits" : "after.pages.bits";
  const long cn = std::strtol(std::string(native.first("commit")).c_str(), nullptr, 10);
  const long cm = std::strtol(std::string(module.first("commit")).c_str(), nullptr, 10);
  if (std::labs(cn - cm) > g_commit_tolerance_kb) {
    v.why.push_back("Committed_AS change: native " + std::to_string(cn) + " kB, module " +
                    std::to_string(cm) + " kB (tolerance " + std::to_string(g_commit_tolerance_kb) +
                    " kB)");
    differing.push_back("commit");
  }
  const bool any = !differing.empty();
  if (!any) {
    v.same = check == "ok";
    return v;
  }
  if (check != "ok") return v;

  // The rules that explain this scenario, together: each excuses its
  // sections (none listed: all), and every differing section must be
  // excused by one of them (an old kernel can differ by two rules at once,
  // as 6.1.176 does by mlocked_source_split_ahead and
  // uffd_wp_cleared_on_move). The tally counts the first.
  const facts f = parse_facts(native.first("fact"));
  const auto kernel = test::running_kernel();
  std::vector<std::string_view> excused;
  std::optional<rule> first;
  bool all = false;
  for (const auto &p : predicates) {
    if (!test::native_expectation(p.r, kernel).allows_legacy()) continue;
    if (!p.explains(sc, f, native, module)) continue;
    if (!first) first = p.r;
    all |= p.sections.empty();
    excused.insert(excused.end(), p.sections.begin(), p.sections.end());
  }
  const auto is_excused = [&](std::string_view d) {
    return std::find(excused.begin(), excused.end(), d) != excused.end();
  };
  // A rule that excuses a pages section excuses its flags alone too.
  const bool covered =
      all || std::all_of(differing.begin(), differing.end(), [&](std::string_view d) {
        return is_excused(d) || (d.ends_with(".bits") && is_excused(d.substr(0, d.size() - 5)));
      });
  if (first && covered) {
    v.expected = true;
    v.rule = *first;
  }
  return v;
}

verdict judge_sequence(const report &singles, const report &batch) {
  verdict v;
  if (!singles.complete || !batch.complete) {
    if (!singles.complete) v.why.push_back("child of single calls: " + singles.death);
    if (!batch.complete) v.why.push_back("batch child: " + batch.death);
    return v;
  }
  // Section by section, in the order the children write them; the
  // Committed_AS change may differ by the tolerance, as native and module
  // children's may.
  for (const char *s : {"fact", "pre.maps", "pre.smaps", "pre.pages", "pre.status", "result",
                        "uffd", "post.maps", "post.smaps", "post.pages", "post.status",
                        "after.maps", "after.smaps", "after.pages", "after.status"})
    differs(s, singles, batch, v.why);
  const long cs = std::strtol(std::string(singles.first("commit")).c_str(), nullptr, 10);
  const long cb = std::strtol(std::string(batch.first("commit")).c_str(), nullptr, 10);
  if (std::labs(cs - cb) > g_commit_tolerance_kb)
    v.why.push_back("Committed_AS change: single calls " + std::to_string(cs) + " kB, batch " +
                    std::to_string(cb) + " kB (tolerance " +
                    std::to_string(g_commit_tolerance_kb) + " kB)");
  v.same = v.why.empty();
  return v;
}

}  // namespace dontunmap::difftest
