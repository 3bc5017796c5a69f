// SPDX-License-Identifier: LGPL-2.1-or-later
//
// remapper::remap_batch() on a host without the module: one move at a time
// through the kernel's own mremap(), in order, each destination written
// back, stopped at the first element that fails; and the batch ioctl used
// only where the module's feature bits allow it (shown with a stand-in
// device over /dev/null: a batch that reaches it fails with ENOTTY).
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr unsigned long dontunmap_move = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;

bool kernel_covers_everything() {
  const auto &k = probe_native();
  return k.private_anon && k.shared && k.aligned_lengths && k.multi_vma;
}

// Three populated two-page sources, each with its own pattern (the pattern
// shifted by the element's index), and their batch of moves.
class BatchTest : public ::testing::Test {
 protected:
  static constexpr std::size_t count = 3;
  const std::size_t len = 2 * page_size();

  void SetUp() override {
    for (std::size_t i = 0; i < count; ++i) {
      sources_.emplace_back(len);
      ASSERT_TRUE(sources_.back().ok());
      fill(i);
      reqs_[i] = {.old_addr = reinterpret_cast<std::uintptr_t>(sources_[i].get()),
                  .old_len = len,
                  .new_len = len,
                  .flags = dontunmap_move,
                  .new_addr = 0};
    }
  }
  void TearDown() override {
    for (std::size_t i = 0; i < count; ++i)
      if (reqs_[i].new_addr && reqs_[i].new_addr != reqs_[i].old_addr)
        ::munmap(reinterpret_cast<void *>(reqs_[i].new_addr), len);
  }

  void fill(std::size_t i) {
    for (std::size_t b = 0; b < len; ++b) sources_[i].bytes()[b] = pattern_byte(b + i);
  }
  ::testing::AssertionResult holds(const void *p, std::size_t i) const {
    const auto *bytes = static_cast<const unsigned char *>(p);
    for (std::size_t b = 0; b < len; ++b)
      if (bytes[b] != pattern_byte(b + i))
        return ::testing::AssertionFailure()
               << "element " << i << ": byte " << b << " at " << p << " is " << int(bytes[b])
               << ", expected " << int(pattern_byte(b + i)) << "\n"
               << maps();
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult moved(std::size_t i) const {
    if (reqs_[i].new_addr == 0 || reqs_[i].new_addr == reqs_[i].old_addr)
      return ::testing::AssertionFailure() << "element " << i << " has no destination";
    if (!all_zero(sources_[i].bytes(), len))
      return ::testing::AssertionFailure() << "element " << i << ": source still holds data";
    return holds(reinterpret_cast<void *>(reqs_[i].new_addr), i);
  }
  ::testing::AssertionResult untouched(std::size_t i, std::uint64_t new_addr = 0) const {
    if (reqs_[i].new_addr != new_addr)
      return ::testing::AssertionFailure()
             << "element " << i << ": new_addr changed to 0x" << std::hex << reqs_[i].new_addr;
    return holds(sources_[i].get(), i);
  }

  std::vector<mapping> sources_;
  std::array<dontunmap_remap, count> reqs_{};
};

::testing::AssertionResult succeeded(const batch_result &r, std::size_t completed) {
  if (r && r.completed == completed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "completed " << r.completed << " of " << completed << ", error " << r.error.value()
         << " (" << r.error.message() << ")";
}

::testing::AssertionResult stopped(const batch_result &r, std::size_t completed, int err) {
  if (!r && r.completed == completed && r.error == std::error_code(err, std::system_category()))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "completed " << r.completed << ", error " << r.error.value() << " ("
         << r.error.message() << "); expected completed " << completed << ", error " << err << " ("
         << std::strerror(err) << ")";
}

TEST_F(BatchTest, NativeMovesEveryElementInOrderAndWritesBackDestinations) {
  auto r = remapper::create(backend::native);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(moved(i));
}

TEST_F(BatchTest, NativeFallbackStopsAtFailingMiddleElement) {
  auto r = remapper::create(backend::native);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  reqs_[1].old_addr += 1;  // unaligned: EINVAL
  EXPECT_TRUE(stopped(r->remap_batch(reqs_), 1, EINVAL));
  EXPECT_TRUE(moved(0));
  reqs_[1].old_addr -= 1;
  EXPECT_TRUE(untouched(1));
  EXPECT_TRUE(untouched(2)) << "the element after the failed one moved";
}

TEST_F(BatchTest, AutomaticWithoutDeviceMovesOneAtATime) {
  auto r = remapper::create(backend::automatic, "/nonexistent/dontunmap");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(moved(i));
}

TEST_F(BatchTest, EmptyBatchMovesNothingAndSucceeds) {
  auto r = remapper::create(backend::native);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(std::span<dontunmap_remap>()), 0));
}

TEST_F(BatchTest, AutomaticGoesThroughTheBatchIoctlOfAModuleWithEveryFeature) {
  auto r = remapper::create(fake_module(), backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(stopped(r->remap_batch(reqs_), 0, ENOTTY));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(untouched(i));
}

TEST_F(BatchTest, ModuleBackendPassesTheIoctlErrnoWithNothingCompleted) {
  auto r =
      remapper::create(fake_module(all_module_features & ~DONTUNMAP_FEAT_BATCH), backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(stopped(r->remap_batch(reqs_), 0, ENOTTY));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(untouched(i));
}

// Each of these modules lacks something automatic's batch needs, so the
// elements go one at a time by remap()'s rule: native on this host.
TEST_F(BatchTest, AutomaticMovesOneAtATimeWhenTheModuleLacksTheBatchBit) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(fake_module(all_module_features & ~DONTUNMAP_FEAT_BATCH),
                            backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(moved(i));
}

TEST_F(BatchTest, AutomaticMovesOneAtATimeWhenTheModuleIsOfAbiMinorZero) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(fake_module(all_module_features, 0), backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(moved(i));
}

TEST_F(BatchTest, AutomaticMovesOneAtATimeWhenTheModuleLacksAMoveFeature) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(fake_module(all_module_features & ~DONTUNMAP_FEAT_MULTI_VMA),
                            backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  for (std::size_t i = 0; i < count; ++i) EXPECT_TRUE(moved(i));
}

TEST_F(BatchTest, AutomaticMovesOneAtATimeWhenAnElementIsAPlainMove) {
  if (!kernel_covers_everything()) GTEST_SKIP() << "host kernel lacks some DONTUNMAP support";
  auto r = remapper::create(fake_module(), backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  reqs_[2].flags = MREMAP_MAYMOVE;  // the kernel's own job, which the module refuses
  EXPECT_TRUE(succeeded(r->remap_batch(reqs_), count));
  EXPECT_TRUE(moved(0));
  EXPECT_TRUE(moved(1));
  // The kernel's plain mremap() leaves a range of unchanged size in place.
  EXPECT_EQ(reqs_[2].new_addr, reqs_[2].old_addr);
  EXPECT_TRUE(holds(sources_[2].get(), 2));
}

}  // namespace
}  // namespace dontunmap::test
