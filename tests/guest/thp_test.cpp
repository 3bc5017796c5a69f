// SPDX-License-Identifier: GPL-2.0
//
// Transparent huge pages: a PMD-aligned range moved to a PMD-aligned
// destination arrives intact, and its huge pages stay huge (the kernel
// moves whole PMDs), while the source reads zeros.
#include <sys/mman.h>

#include <cstdlib>
#include <string>

#include "support.hpp"

namespace dontunmap::test {
namespace {

std::size_t pmd_size() {
  if (const auto text = procfs::read_text("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"))
    if (const auto n = std::strtoull(text->c_str(), nullptr, 10)) return n;
  return std::size_t(2) << 20;
}

std::string thp_mode() {
  return procfs::read_text("/sys/kernel/mm/transparent_hugepage/enabled")
      .value_or("(no THP support)");
}

class TransparentHugepages : public backend_test {
 protected:
  void SetUp() override {
    backend_test::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    len_ = 2 * pmd_size();
    src_ = guarded::aligned_anon(len_, pmd_size());
    ASSERT_TRUE(src_);
    // EINVAL without CONFIG_TRANSPARENT_HUGEPAGE: then the data checks
    // still run and the huge page check skips.
    (void)::madvise(src_.get(), len_, MADV_HUGEPAGE);
    fill(src_.get(), len_, per_page('h'));
    const auto smaps = procfs::smaps_at(src_.get());
    ASSERT_TRUE(smaps);
    huge_kb_before_ = smaps->kb("AnonHugePages").value_or(0);
  }

  // Moves the source to a free PMD-aligned hint.
  void move_to_aligned_hint() {
    target_ = guarded::aligned_hole(len_, pmd_size());
    ASSERT_TRUE(target_);
    const auto r = move(src_.get(), len_, target_.get());
    ASSERT_TRUE(r) << describe(r);
    if (*r != target_.get()) {
      ::munmap(*r, len_);
      FAIL() << "the move missed the free aligned hint " << static_cast<void *>(target_.get());
    }
  }

  std::size_t len_ = 0;
  guarded src_;
  guarded target_;
  std::uint64_t huge_kb_before_ = 0;
};

TEST_P(TransparentHugepages, DataArrivesIntact) {
  move_to_aligned_hint();
  if (HasFatalFailure()) return;
  EXPECT_TRUE(holds(target_.get(), len_, per_page('h')))
      << "AnonHugePages at the source was " << huge_kb_before_ << " kB";
  EXPECT_TRUE(holds(src_.get(), len_, zeros())) << "the source kept its (huge) page tables";
}

TEST_P(TransparentHugepages, HugePagesStayHuge) {
  if (huge_kb_before_ == 0)
    GTEST_SKIP() << "the kernel gave the source no huge pages (THP " << thp_mode() << ")";
  move_to_aligned_hint();
  if (HasFatalFailure()) return;
  const auto dst = procfs::smaps_at(target_.get());
  ASSERT_TRUE(dst);
  EXPECT_EQ(dst->kb("AnonHugePages").value_or(0), huge_kb_before_)
      << "the huge pages were split on the way\n"
      << dst->text;
}

DONTUNMAP_INSTANTIATE_BACKENDS(TransparentHugepages);

}  // namespace
}  // namespace dontunmap::test
