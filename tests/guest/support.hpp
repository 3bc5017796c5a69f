// SPDX-License-Identifier: GPL-2.0
//
// Shared pieces of the guest tests: the backend-parameterised fixture,
// owned mappings with guard pages, byte patterns, sysctl guards and a
// forked child for changes that must not touch the test process.
#pragma once

#include <dontunmap/dontunmap.hpp>
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "expectations.hpp"
#include "procfs.hpp"

namespace dontunmap {
// Test names and failure messages say "native"/"module", not bytes.
inline void PrintTo(backend b, std::ostream *os) { *os << to_string(b); }
}  // namespace dontunmap

namespace dontunmap::test {

using remap_result = std::expected<void *, std::error_code>;

std::size_t page_size();

// Set by main(): --require-module or DONTUNMAP_REQUIRE_MODULE=1 turn an
// absent /dev/dontunmap from a skip into a failure (the guests set it).
void set_module_required(bool required);
bool module_required();

// ---------------------------------------------------------------------------
// Mappings

// A mapping this test owns, unmapped when it goes.
class mapping {
 public:
  mapping() = default;
  mapping(void *addr, std::size_t len) : addr_(static_cast<char *>(addr)), len_(len) {}
  mapping(mapping &&o) noexcept;
  mapping &operator=(mapping &&o) noexcept;
  mapping(const mapping &) = delete;
  mapping &operator=(const mapping &) = delete;
  ~mapping();

  char *get() const { return addr_; }
  std::size_t size() const { return len_; }
  explicit operator bool() const { return addr_ != nullptr; }
  void reset();

 private:
  char *addr_ = nullptr;
  std::size_t len_ = 0;
};

// The destination of a successful move, owned; empty after a failure.
mapping adopt(const remap_result &r, std::size_t len);

// `len` bytes of payload between two PROT_NONE guard pages: the payload
// cannot merge with a neighbour, so its VMA bounds are exactly known.
// Everything, payload and guards, is unmapped when it goes.
class guarded {
 public:
  // Private or shared anonymous memory (flags: MAP_PRIVATE or MAP_SHARED,
  // plus e.g. MAP_LOCKED), or a file mapping when fd >= 0.
  static guarded anon(std::size_t len, int flags = MAP_PRIVATE, int prot = PROT_READ | PROT_WRITE);
  static guarded file(int fd, std::size_t len, int flags, int prot = PROT_READ | PROT_WRITE);
  // The payload range left unmapped: a free hole of exactly `len` bytes
  // between the guards, for hints and MREMAP_FIXED targets.
  static guarded hole(std::size_t len);
  // Like anon() and hole(), with the payload's start aligned to `align`.
  static guarded aligned_anon(std::size_t len, std::size_t align);
  static guarded aligned_hole(std::size_t len, std::size_t align);

  char *get() const { return payload_; }
  std::size_t size() const { return len_; }
  explicit operator bool() const { return payload_ != nullptr; }
  // Unmaps everything now.
  void reset();

 private:
  static guarded make(std::size_t len, std::size_t align, int fd, int flags, int prot,
                      bool leave_hole);
  mapping whole_;
  char *payload_ = nullptr;
  std::size_t len_ = 0;
};

// ---------------------------------------------------------------------------
// Contents

// Page i of a range holds seed + i (per_page) or seed everywhere.
struct pattern {
  char seed;
  bool per_page;
  char at(std::size_t page) const { return per_page ? static_cast<char>(seed + page) : seed; }
};
constexpr pattern uniform(char c) { return {c, false}; }
constexpr pattern per_page(char seed) { return {seed, true}; }
constexpr pattern zeros() { return {0, false}; }

void fill(void *addr, std::size_t len, pattern p);
// Every byte of [addr, addr + len) as `p` says; the failure names the first
// wrong byte and shows the maps around it.
::testing::AssertionResult holds(const void *addr, std::size_t len, pattern p);

// ---------------------------------------------------------------------------
// Results

std::string describe(const remap_result &r);

// Judges an observed outcome against `e`: `newest` and `legacy` say which of
// the rule's two complete outcomes was seen (neither if the result is
// something else altogether).
::testing::AssertionResult allowed(const expectation &e, bool newest, bool legacy);
// r failed with errno `err`. If it succeeded instead, the destination
// (len bytes) is unmapped so that the failing test leaks nothing.
::testing::AssertionResult refused_with(const remap_result &r, int err, std::size_t len);

// ---------------------------------------------------------------------------
// The fixture

class backend_test : public ::testing::TestWithParam<backend> {
 protected:
  void SetUp() override;

  backend which() const { return GetParam(); }
  const dontunmap::remapper &remapper() const { return *remapper_; }

  remap_result remap(const remap_request &req) const { return remapper_->remap(req); }
  // mremap(old, len, len, MAYMOVE | DONTUNMAP | extra_flags, new_addr).
  remap_result move(void *old_addr, std::size_t len, void *new_addr = nullptr,
                    unsigned long extra_flags = 0) const;
  remap_result move_fixed(void *old_addr, std::size_t len, void *target) const {
    return move(old_addr, len, target, MREMAP_FIXED);
  }

  expectation expect(rule r) const { return expected_behaviour(r, which()); }

 private:
  std::optional<dontunmap::remapper> remapper_;
};

std::string backend_name(const ::testing::TestParamInfo<backend> &info);

// Tests of the raw ioctls: /dev/dontunmap open in fd_ (skipped where the
// device is absent and the module is not required). A derived SetUp calls
// this one first and returns if it skipped or failed.
class device_test : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  int fd_ = -1;
};

// The ranges of the batch tests, a mixin for their fixtures: n populated
// private anonymous sources of `pages` pages each (source i holding
// content(i)) and n holes, their MREMAP_FIXED targets.
class fixed_ranges {
 protected:
  // Fails the test (fatally) when a range cannot be mapped.
  void make_ranges(std::size_t n, std::size_t pages = 2);
  static pattern content(std::size_t i) { return per_page(static_cast<char>('a' + 4 * i)); }
  // Element i moves srcs_[i] to holes_[i], MREMAP_FIXED.
  std::vector<dontunmap_remap> fixed_moves() const;
  // Range i moved: its hole holds its pages, its source is mapped and empty.
  ::testing::AssertionResult moved(std::size_t i) const;
  // Range i did not move: its source keeps its pages.
  ::testing::AssertionResult source_kept(std::size_t i) const;

  std::size_t len_ = 0;
  std::vector<guarded> srcs_, holes_;
};

inline std::uint64_t to_u64(const void *p) { return reinterpret_cast<std::uintptr_t>(p); }

#define DONTUNMAP_INSTANTIATE_BACKENDS(suite)                                                 \
  INSTANTIATE_TEST_SUITE_P(                                                                   \
      , suite, ::testing::Values(::dontunmap::backend::native, ::dontunmap::backend::module), \
      ::dontunmap::test::backend_name)

// ---------------------------------------------------------------------------
// System state

// Sets a sysctl (path under /proc/sys) for the guard's lifetime and puts the
// old value back when it goes, however the test ends.
class sysctl_guard {
 public:
  explicit sysctl_guard(std::string name);
  sysctl_guard(const sysctl_guard &) = delete;
  sysctl_guard &operator=(const sysctl_guard &) = delete;
  ~sysctl_guard();

  bool readable() const { return original_.has_value(); }
  const std::string &original() const { return *original_; }
  [[nodiscard]] bool set(std::string_view value);
  // Puts the old value back now (also done when the guard goes).
  void restore();

 private:
  std::string path_;
  std::optional<std::string> original_;
  bool changed_ = false;
};

// One more page in the hugetlb pool (vm.nr_hugepages) for the
// reservation's lifetime, for tests that map MAP_HUGETLB.
class hugetlb_reservation {
 public:
  hugetlb_reservation();

  // The huge page size; 0 where the kernel has no hugetlbfs.
  std::size_t page_size() const { return size_; }
  // Grows the pool by one page; false if the kernel would not.
  [[nodiscard]] bool reserve_one();
  // Maps one private, writable huge page at `at` (MAP_FIXED); false with
  // errno set if mmap() refused.
  [[nodiscard]] bool map_private_at(void *at) const;

 private:
  sysctl_guard nr_hugepages_{"vm/nr_hugepages"};
  std::size_t size_ = 0;
};

// vm.overcommit_memory/_ratio/_kbytes as one: writing the ratio zeroes the
// kbytes and the other way round, so restoring needs to know which was set.
class overcommit_guard {
 public:
  overcommit_guard();
  overcommit_guard(const overcommit_guard &) = delete;
  overcommit_guard &operator=(const overcommit_guard &) = delete;
  ~overcommit_guard();

  bool readable() const;
  // OVERCOMMIT_NEVER with CommitLimit = ratio% of RAM + swap.
  [[nodiscard]] bool set_never(int ratio);
  // Puts the old values back now (also done when the guard goes).
  void restore();
  // A child process may have changed them: restore() puts them back.
  void changed_elsewhere() { changed_ = true; }

 private:
  std::optional<std::string> memory_, ratio_, kbytes_;
  bool changed_ = false;
};

// A forked child for calls that need process-wide (rlimits) or system-wide
// (sysctls) changes the test process must not live under. The child runs
// `prepare` at once and reports its value, then waits for go() and reports
// what `body` returns (an errno, 0 for success). Neither may use gtest.
class child_process {
 public:
  explicit child_process(std::function<int()> body, std::function<long()> prepare = {});
  child_process(const child_process &) = delete;
  child_process &operator=(const child_process &) = delete;
  ~child_process();

  bool started() const { return pid_ > 0; }
  std::optional<long> prepared();  // prepare()'s value
  void go();
  std::optional<int> result();  // body()'s value; nullopt if the child died
  // After result(): how the child ended ("exit status 126 (an exception)",
  // "signal 11"), for a message when it died.
  std::string ending() const;

 private:
  int pid_ = -1;
  int status_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::optional<long> prepared_;
};

}  // namespace dontunmap::test
