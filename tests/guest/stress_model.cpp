// SPDX-License-Identifier: GPL-2.0
//
// The model's side of dontunmap-stress: what each page must hold, whole-page
// comparison, a readable account of what was seen instead, and the record of
// the first failure.
//
// A data page of generation g holds a header (magic, slot and page index,
// generation, its key) and a body of words derived from the key, so a page
// that arrives at the wrong index, from the wrong slot, from an older
// generation or torn is told apart from the right one. Mergeable slots hold,
// in even generations, the same content in every page of that generation
// (no header), so that KSM has pages to merge. A spare page served by the
// userfaultfd handler holds a shadow page named by its slot, home, index and
// the tag of the move it followed, or, for one in four, the zero page.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "stress.hpp"

namespace dontunmap::stress {
namespace {

constexpr std::uint64_t kDataMagic = 0x7374'7265'7373'2d44;    // "stress-D"
constexpr std::uint64_t kShadowMagic = 0x7374'7265'7373'2d53;  // "stress-S"
constexpr std::size_t kHeaderWords = 4;
// describe_seen() looks this far for the generation of a duplicate page.
constexpr std::uint32_t kDupSearch = 1u << 16;

std::uint64_t key_of(const world &w, const expect &e) {
  const bool dup = e.k == expect::kind::dup;
  const std::uint64_t a =
      std::uint64_t(e.k) | std::uint64_t(e.home) << 8 | (dup ? 0 : std::uint64_t(e.slot) << 16);
  const std::uint64_t b = (dup ? 0 : std::uint64_t(e.page) << 32) | e.value;
  return mix64(w.run_key ^ mix64(a) ^ mix64(b ^ 0x2545'f491'4f6c'dd1dULL));
}

std::uint64_t word_of(const expect &e, std::uint64_t key, std::size_t j) {
  switch (e.k) {
    case expect::kind::zero:
      return 0;
    case expect::kind::dup:
      return mix64(key + j);
    case expect::kind::data:
    case expect::kind::shadow:
      break;
  }
  switch (j) {
    case 0:
      return e.k == expect::kind::data ? kDataMagic : kShadowMagic;
    case 1:
      return std::uint64_t(e.slot) << 32 | e.page;
    case 2:
      return std::uint64_t(e.home) << 32 | e.value;
    case 3:
      return key;
    default:
      return mix64(key + j);
  }
}

long compare_words(const world &w, const expect &e, const std::uint64_t *p) {
  const std::size_t n = w.page / 8;
  if (e.k == expect::kind::zero) {
    for (std::size_t j = 0; j < n; ++j)
      if (p[j]) return static_cast<long>(j);
    return -1;
  }
  const std::uint64_t key = key_of(w, e);
  for (std::size_t j = 0; j < n; ++j)
    if (p[j] != word_of(e, key, j)) return static_cast<long>(j);
  return -1;
}

// The first failure, kept without a lock: a fork child may inherit any lock
// held, and the first writer wins.
std::atomic<int> g_failure_state{0};  // 0 none, 1 being written, 2 written
char g_failure[4096];
std::atomic<std::uint64_t> g_failures{0};

}  // namespace

std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e37'79b9'7f4a'7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11ebULL;
  return z ^ (z >> 31);
}

rng::rng(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t x = mix64(seed) ^ mix64(stream + 0x6a09'e667'f3bc'c909ULL);
  for (auto &s : s_) s = x = mix64(x);
}

// xoshiro256**
std::uint64_t rng::next() {
  const auto rotl = [](std::uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

scratch::scratch(const world &w)
    : page_buf(w.page), pagemap(w.pmd / w.page + 1), mincore(w.window_len / w.page + 1) {}

// ---------------------------------------------------------------------------
// Expectations

expect expected_data(const slot &s, std::size_t i) {
  const page_state &p = s.pg[i];
  expect e;
  e.slot = s.id;
  e.page = static_cast<std::uint32_t>(i);
  e.value = p.gen;
  if (p.gen == 0)
    e.k = expect::kind::zero;
  else if (s.mergeable && p.gen % 2 == 0)
    e.k = expect::kind::dup;
  else
    e.k = expect::kind::data;
  e.or_zero = p.maybe_zero && p.gen != 0;
  return e;
}

bool served_as_zero(const world &w, std::uint32_t slot, std::uint8_t h, std::size_t i,
                    std::uint32_t tag) {
  const std::uint64_t where = std::uint64_t(slot) << 40 | std::uint64_t(h) << 32 | i;
  return (mix64(w.run_key ^ mix64(where) ^ (std::uint64_t(tag) << 1)) & 3) == 0;
}

expect expected_spare(const world &w, const slot &s, std::uint8_t h, std::size_t i,
                      std::uint32_t tag) {
  expect e;
  e.slot = s.id;
  e.page = static_cast<std::uint32_t>(i);
  if (tag == kZeroTag || served_as_zero(w, s.id, h, i, tag)) return e;
  e.k = expect::kind::shadow;
  e.value = tag;
  e.home = h;
  return e;
}

void fill_page(const world &w, const expect &e, void *dst) {
  auto *p = static_cast<std::uint64_t *>(dst);
  const std::size_t n = w.page / 8;
  if (e.k == expect::kind::zero) {
    std::memset(dst, 0, w.page);
    return;
  }
  const std::uint64_t key = key_of(w, e);
  for (std::size_t j = 0; j < n; ++j) p[j] = word_of(e, key, j);
}

long first_mismatch(const world &w, const expect &e, const void *page) {
  const auto *p = static_cast<const std::uint64_t *>(page);
  const long bad = compare_words(w, e, p);
  if (bad >= 0 && e.or_zero && compare_words(w, expect{}, p) < 0) return -1;
  return bad;
}

std::string describe(const expect &e) {
  char buf[160];
  switch (e.k) {
    case expect::kind::zero:
      return "zeros";
    case expect::kind::data:
      std::snprintf(buf, sizeof(buf), "data of slot %u page %u gen %u", e.slot, e.page, e.value);
      break;
    case expect::kind::dup:
      std::snprintf(buf, sizeof(buf), "duplicate-content page of gen %u", e.value);
      break;
    case expect::kind::shadow:
      std::snprintf(buf, sizeof(buf), "shadow of slot %u home %u page %u tag %u", e.slot, e.home,
                    e.page, e.value);
      break;
  }
  return std::string(buf) + (e.or_zero ? " (or zeros: MADV_FREE)" : "");
}

std::string describe_seen(const world &w, const void *page) {
  const auto *p = static_cast<const std::uint64_t *>(page);
  char buf[256];
  if (compare_words(w, expect{}, p) < 0) return "zeros";
  const auto intact = [&](const expect &e) {
    const long bad = compare_words(w, e, p);
    if (bad < 0) return describe(e) + " (intact)";
    std::snprintf(buf, sizeof(buf), " with a corrupt body from byte %ld", bad * 8);
    return describe(e) + buf;
  };
  if (p[0] == kDataMagic || p[0] == kShadowMagic) {
    expect e;
    e.k = p[0] == kDataMagic ? expect::kind::data : expect::kind::shadow;
    e.slot = static_cast<std::uint32_t>(p[1] >> 32);
    e.page = static_cast<std::uint32_t>(p[1]);
    e.home = static_cast<std::uint8_t>(p[2] >> 32);
    e.value = static_cast<std::uint32_t>(p[2]);
    return intact(e);
  }
  for (std::uint32_t g = 0; g < kDupSearch; g += 2) {
    expect e;
    e.k = expect::kind::dup;
    e.value = g;
    if (p[0] == word_of(e, key_of(w, e), 0)) return intact(e);
  }
  std::snprintf(buf, sizeof(buf),
                "unrecognised content (words 0x%016" PRIx64 " 0x%016" PRIx64 " 0x%016" PRIx64
                " 0x%016" PRIx64 ")",
                p[0], p[1], p[2], p[3]);
  return buf;
}

// ---------------------------------------------------------------------------
// Failures

void trace(const world &w, const char *fmt, ...) {
  if (!w.opt.trace) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  const std::size_t len = std::min<std::size_t>(static_cast<std::size_t>(n), sizeof(buf) - 2);
  buf[len] = '\n';
  (void)!::write(2, buf, len + 1);
}

void fail(world &w, const char *fmt, ...) {
  g_failures.fetch_add(1);
  int none = 0;
  if (g_failure_state.compare_exchange_strong(none, 1)) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g_failure, sizeof(g_failure), fmt, ap);
    va_end(ap);
    g_failure_state.store(2, std::memory_order_release);
  }
  w.failed.store(true);
  w.stop.store(true);
}

std::string first_failure() {
  return g_failure_state.load(std::memory_order_acquire) == 2 ? g_failure : "";
}

std::uint64_t failure_count() { return g_failures.load(); }

// ---------------------------------------------------------------------------
// Checks

namespace {

const char *place(const slot &s, std::size_t i) {
  switch (s.pg[i].loc.load(std::memory_order_relaxed)) {
    case 0:
      return "home 0";
    case 1:
      return "home 1";
    default:
      return "away";
  }
}

// pagemap entries of [addr, addr + pages * page) into sc.pagemap.
bool read_pagemap(world &w, const char *addr, std::size_t pages, scratch &sc) {
  const std::size_t bytes = pages * sizeof(std::uint64_t);
  const off_t at = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(addr) / w.page * 8);
  if (::pread(w.pagemap_fd, sc.pagemap.data(), bytes, at) == static_cast<ssize_t>(bytes))
    return true;
  fail(w, "pread /proc/self/pagemap at %p: %s", static_cast<const void *>(addr),
       std::strerror(errno));
  return false;
}

constexpr std::uint64_t kPresent = 1ULL << 63;
constexpr std::uint64_t kSwapped = 1ULL << 62;

}  // namespace

bool check_data_page(world &w, slot &s, std::size_t i, scratch &sc, bool via_mem,
                     const char *when) {
  const expect e = expected_data(s, i);
  const char *at = s.data(i, w.page);
  const void *seen = at;
  if (via_mem) {
    const ssize_t n = ::pread(w.mem_fd, sc.page_buf.data(), w.page,
                              static_cast<off_t>(reinterpret_cast<std::uintptr_t>(at)));
    if (n != static_cast<ssize_t>(w.page)) {
      fail(w, "%s: pread /proc/self/mem of slot %u page %zu at %p: %s", when, s.id, i,
           static_cast<const void *>(at), n < 0 ? std::strerror(errno) : "short read");
      return false;
    }
    seen = sc.page_buf.data();
  }
  w.c.pages_verified.fetch_add(1, std::memory_order_relaxed);
  const long bad = first_mismatch(w, e, seen);
  if (bad < 0) return true;
  fail(w, "%s: slot %u page %zu at %p (%s%s): expected %s, saw %s", when, s.id, i,
       static_cast<const void *>(at), place(s, i), via_mem ? ", read through /proc/self/mem" : "",
       describe(e).c_str(), describe_seen(w, seen).c_str());
  return false;
}

bool check_spare_absent(world &w, slot &s, std::uint8_t h, scratch &sc, const char *when) {
  if (!s.mapped[h]) return true;
  if (!read_pagemap(w, s.home[h], s.pages, sc)) return false;
  for (std::size_t i = 0; i < s.pages; ++i) {
    const page_state &p = s.pg[i];
    if (p.loc.load(std::memory_order_relaxed) == h || p.shadow[h] != 0) continue;
    if (sc.pagemap[i] & (kPresent | kSwapped)) {
      fail(w,
           "%s: slot %u page %zu of home %u at %p is a spare page the model has absent "
           "(moved away, never touched since), but pagemap says %s (0x%016" PRIx64
           "): a stale page left in the source",
           when, s.id, i, h, static_cast<const void *>(s.home[h] + i * w.page),
           sc.pagemap[i] & kPresent ? "present" : "swapped", sc.pagemap[i]);
      return false;
    }
  }
  return true;
}

bool check_slot(world &w, slot &s, scratch &sc, bool in_child, const char *when) {
  for (std::size_t i = 0; i < s.pages; ++i)
    if (!check_data_page(w, s, i, sc, false, when)) return false;
  for (std::uint8_t h = 0; h < 2; ++h) {
    if (!s.mapped[h]) continue;
    // A fork child's copies are not registered, so khugepaged may collapse
    // a partly served spare range there, filling its absent pages with
    // zeros: in a child they are read (zeros either way), not looked up.
    if (!in_child && !check_spare_absent(w, s, h, sc, when)) return false;
    s.touching.store(true);
    for (std::size_t i = 0; i < s.pages; ++i) {
      page_state &p = s.pg[i];
      if (p.loc.load(std::memory_order_relaxed) == h) continue;
      // In the parent an absent spare page would fault to the handler;
      // those are the spare touches' business.
      if (p.shadow[h] == 0 && !in_child) continue;
      const expect e = p.shadow[h] ? expected_spare(w, s, h, i, p.shadow[h]) : expect{};
      const char *at = s.home[h] + i * w.page;
      w.c.pages_verified.fetch_add(1, std::memory_order_relaxed);
      if (first_mismatch(w, e, at) < 0) {
        // The child's read mapped the zero page there (in its own model).
        if (!p.shadow[h]) p.shadow[h] = kZeroTag;
        continue;
      }
      s.touching.store(false);
      fail(w, "%s: slot %u page %zu of home %u at %p (spare%s): expected %s, saw %s", when, s.id, i,
           h, static_cast<const void *>(at),
           p.shadow[h] ? ", served" : ", absent: a fork child reads zeros", describe(e).c_str(),
           describe_seen(w, at).c_str());
      return false;
    }
    s.touching.store(false);
  }
  return true;
}

}  // namespace dontunmap::stress
