// SPDX-License-Identifier: LGPL-2.1-or-later
//
// probe_native() agrees with the host kernel's release, runs once, and
// leaves no scratch mapping behind.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>

#include "test_util.hpp"

namespace dontunmap::test {
namespace {

// The running kernel's release as major * 1000 + minor (6.18 -> 6018).
int kernel_version(std::string &release) {
  utsname u{};
  ::uname(&u);
  release = u.release;
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  return major * 1000 + minor;
}

TEST(ProbeNative, MatchesKernelRelease) {
  std::string release;
  const int v = kernel_version(release);
  const native_support &s = probe_native();
  EXPECT_EQ(s.private_anon, v >= 5007) << "kernel " << release;
  EXPECT_EQ(s.shared, v >= 5013) << "kernel " << release;
  EXPECT_EQ(s.aligned_lengths, v >= 6017) << "kernel " << release;
  EXPECT_EQ(s.multi_vma, v >= 6017) << "kernel " << release;
}

TEST(ProbeNative, IsComputedOnce) {
  EXPECT_EQ(&probe_native(), &probe_native());
}

std::size_t count_mappings() {
  std::FILE *f = std::fopen("/proc/self/maps", "re");
  if (!f) return 0;
  std::size_t lines = 0;
  for (int c; (c = std::getc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  return lines;
}

// In a fresh process (threadsafe death tests re-execute the binary), so the
// probe really runs here.
TEST(ProbeNative, LeavesNoScratchMappings) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const std::size_t before = count_mappings();
        (void)probe_native();
        const std::size_t after = count_mappings();
        std::fprintf(stderr, "mappings before %zu after %zu\n", before, after);
        std::exit(before == after ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace dontunmap::test
