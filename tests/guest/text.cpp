// SPDX-License-Identifier: GPL-2.0
#include "text.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dontunmap::test {

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

std::string errname(int err) {
  const char *name = ::strerrorname_np(err);
  return name ? name : "errno " + std::to_string(err);
}

bool parse_u64(const char *s, std::uint64_t &v) {
  char *end = nullptr;
  errno = 0;
  v = std::strtoull(s, &end, 0);
  return errno == 0 && end && *end == '\0' && end != s;
}

}  // namespace dontunmap::test
