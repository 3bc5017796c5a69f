// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Helpers shared by the host tests: an owned mapping, page-sized patterns,
// and assertions that print the values involved.
#pragma once

#include <dontunmap/dontunmap.hpp>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace dontunmap::test {

inline std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// An mmap()ed range, unmapped on destruction.
class mapping {
 public:
  explicit mapping(std::size_t len, int flags = MAP_PRIVATE | MAP_ANONYMOUS)
      : len_(len), addr_(::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0)) {}
  // Takes ownership of an existing range (a remap's destination).
  static mapping adopt(void *addr, std::size_t len) { return mapping(addr, len); }
  mapping(mapping &&o) noexcept : len_(o.len_), addr_(std::exchange(o.addr_, MAP_FAILED)) {}
  mapping &operator=(mapping &&) = delete;
  ~mapping() {
    if (addr_ != MAP_FAILED) ::munmap(addr_, len_);
  }
  bool ok() const { return addr_ != MAP_FAILED; }
  void *get() const { return addr_; }
  unsigned char *bytes() const { return static_cast<unsigned char *>(addr_); }
  std::size_t size() const { return len_; }

 private:
  mapping(void *addr, std::size_t len) : len_(len), addr_(addr) {}
  std::size_t len_;
  void *addr_;
};

// A byte that differs by offset and page, so misplaced pages show.
inline unsigned char pattern_byte(std::size_t i) {
  return static_cast<unsigned char>((i * 131 + i / 4096 * 7 + 1) & 0xff);
}

inline void fill_pattern(unsigned char *p, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) p[i] = pattern_byte(i);
}

inline ::testing::AssertionResult holds_pattern(const unsigned char *p, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i)
    if (p[i] != pattern_byte(i))
      return ::testing::AssertionFailure()
             << "byte " << i << " at " << static_cast<const void *>(p + i) << " is "
             << int(p[i]) << ", expected " << int(pattern_byte(i));
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult all_zero(const unsigned char *p, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i)
    if (p[i] != 0)
      return ::testing::AssertionFailure() << "byte " << i << " at "
                                           << static_cast<const void *>(p + i) << " is "
                                           << int(p[i]) << ", expected 0";
  return ::testing::AssertionSuccess();
}

inline std::string maps() {
  std::ifstream f("/proc/self/maps");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Whether every page of [addr, addr+len) is mapped (mincore fails with
// ENOMEM on a hole).
inline bool is_mapped(const void *addr, std::size_t len) {
  unsigned char vec[64];
  return len / page_size() <= sizeof vec && ::mincore(const_cast<void *>(addr), len, vec) == 0;
}

// r failed with err in the system category.
template <typename T>
::testing::AssertionResult fails_with(const std::expected<T, std::error_code> &r, int err) {
  if (r.has_value())
    return ::testing::AssertionFailure() << "succeeded, expected errno " << err << " ("
                                         << std::strerror(err) << ")";
  if (r.error().category() != std::system_category())
    return ::testing::AssertionFailure() << "error category is " << r.error().category().name()
                                         << ", expected system";
  if (r.error().value() != err)
    return ::testing::AssertionFailure()
           << "errno " << r.error().value() << " (" << r.error().message() << "), expected "
           << err << " (" << std::strerror(err) << ")";
  return ::testing::AssertionSuccess();
}

// Every DONTUNMAP_FEAT_* bit a module of ABI minor 1 may report.
constexpr std::uint64_t all_module_features =
    DONTUNMAP_FEAT_PRIVATE_ANON | DONTUNMAP_FEAT_SHARED | DONTUNMAP_FEAT_UFFD |
    DONTUNMAP_FEAT_KSM_UNMERGE | DONTUNMAP_FEAT_ALIGNED_LEN | DONTUNMAP_FEAT_DIRECT_CALLS |
    DONTUNMAP_FEAT_MULTI_VMA | DONTUNMAP_FEAT_BATCH;

// A stand-in for the module on a host without it: /dev/null, which fails
// every ioctl with ENOTTY, wrapped as if DONTUNMAP_IOC_INFO had reported
// `features` and `abi_minor`. A call that reaches it fails with ENOTTY; one
// that does not, did not go to the module.
inline device fake_module(std::uint64_t features = all_module_features,
                          std::uint32_t abi_minor = DONTUNMAP_ABI_MINOR) {
  return detail::make_unchecked_device(unique_fd(::open("/dev/null", O_RDWR | O_CLOEXEC)),
                                       dontunmap_info{.abi_version = DONTUNMAP_ABI_VERSION,
                                                      .abi_minor = abi_minor,
                                                      .features = features,
                                                      .reserved = {}});
}

}  // namespace dontunmap::test
