// SPDX-License-Identifier: GPL-2.0
//
// libdontunmap's reach with the module loaded: capability_of() reports the
// module for every kind of mapping, a device made from a duplicated
// descriptor works, remap_batch() moves ranges through the module's batch
// ioctl (in several calls past DONTUNMAP_BATCH_MAX) and stops at a bad
// element, and the C API does the same.
#include <dontunmap/dontunmap.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

namespace dontunmap::test {
namespace {

constexpr mapping_kind kinds[] = {mapping_kind::private_anon, mapping_kind::shared_anon,
                                  mapping_kind::shmem, mapping_kind::file};
constexpr feature features[] = {feature::move, feature::aligned_lengths, feature::multi_vma,
                                feature::uffd_kept, feature::batch};

std::string describe(mapping_kind k, feature f, const capability &c) {
  return "kind " + std::to_string(int(k)) + " feature " + std::to_string(int(f)) + ": native " +
         (c.native ? "yes" : "no") + ", module " + (c.module ? "yes" : "no") + ", automatic " +
         to_string(c.automatic);
}

// The module's count of batch calls (docs/batch.md), if it has one.
std::optional<std::uint64_t> batch_calls() {
  std::ifstream f("/sys/class/misc/dontunmap/stats/batches");
  std::uint64_t n = 0;
  if (f >> n) return n;
  return std::nullopt;
}

class library_test : public ::testing::Test, protected fixed_ranges {
 protected:
  void SetUp() override {
    auto dev = device::open();
    if (!dev && dev.error().value() == ENOENT && !module_required())
      GTEST_SKIP() << DONTUNMAP_DEVICE << " is absent (dontunmap.ko not loaded)";
    ASSERT_TRUE(dev.has_value()) << "device::open(): " << dev.error().message();
    auto info = dev->info();
    ASSERT_TRUE(info.has_value()) << "DONTUNMAP_IOC_INFO: " << info.error().message();
    info_ = *info;
  }

  // make_ranges(n, pages), and their moves in moves_.
  void make_moves(std::size_t n, std::size_t pages = 2) {
    make_ranges(n, pages);
    moves_ = fixed_moves();
  }

  // Element i moved: its destination was written back, its hole holds its
  // pages, its source is mapped and empty.
  ::testing::AssertionResult moved(std::size_t i) const {
    if (moves_[i].new_addr != to_u64(holes_[i].get()))
      return ::testing::AssertionFailure() << "element " << i << ": new_addr 0x" << std::hex
                                           << moves_[i].new_addr << ", expected its target";
    return fixed_ranges::moved(i);
  }

  dontunmap_info info_{};
  std::vector<dontunmap_remap> moves_;
};

::testing::AssertionResult stopped_at(const batch_result &r, std::size_t k, int err) {
  if (!r && r.completed == k && r.error == std::error_code(err, std::system_category()))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "completed " << r.completed << ", error " << r.error.value() << " ("
         << r.error.message() << "); expected " << k << ", " << std::strerror(err);
}

TEST_F(library_test, OpenReportsTheModulesAbiVersionMinorAndBatch) {
  auto dev = device::open();
  ASSERT_TRUE(dev.has_value()) << dev.error().message();
  EXPECT_EQ(info_.abi_version, unsigned(DONTUNMAP_ABI_VERSION));
  EXPECT_EQ(dev->abi_minor(), unsigned(DONTUNMAP_ABI_MINOR));
  EXPECT_EQ(dev->features(), info_.features);
  EXPECT_TRUE(dev->has_batch()) << "features 0x" << std::hex << info_.features;
}

TEST_F(library_test, CapabilityOfReportsTheModuleForEveryKindAndFeature) {
  auto r = remapper::create(backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_TRUE(r->has_module()) << r->module_error().message();
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const capability c = r->capability_of(k, f);
      EXPECT_TRUE(c.module) << describe(k, f, c);
      // The module does everything, so automatic always has a way: the
      // kernel's own where it does it, else the module.
      const auto want = c.native ? backend::native : backend::module;
      EXPECT_EQ(c.automatic, want) << describe(k, f, c);
    }
}

TEST_F(library_test, CapabilityOfNativeColumnFollowsProbeNative) {
  auto r = remapper::create(backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const native_support &k = probe_native();
  for (mapping_kind kind : kinds) {
    const bool moves = kind == mapping_kind::private_anon ? k.private_anon : k.shared;
    EXPECT_EQ(r->capability_of(kind, feature::move).native, moves);
    EXPECT_EQ(r->capability_of(kind, feature::aligned_lengths).native, moves && k.aligned_lengths);
    EXPECT_EQ(r->capability_of(kind, feature::multi_vma).native, moves && k.multi_vma);
    EXPECT_EQ(r->capability_of(kind, feature::uffd_kept).native, moves);
    EXPECT_FALSE(r->capability_of(kind, feature::batch).native);
  }
}

TEST_F(library_test, FromFdOnADuplicatedDeviceDescriptorMovesAfterTheCallerClosesIt) {
  const int fd = ::open(DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const int dup = ::dup(fd);
  ASSERT_GE(dup, 0) << std::strerror(errno);
  auto dev = device::from_fd(dup);
  ::close(dup);
  ::close(fd);
  ASSERT_TRUE(dev.has_value()) << "from_fd: " << dev.error().message();
  EXPECT_EQ(dev->features(), info_.features);
  auto r = remapper::create(std::move(*dev), backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();

  make_moves(1);
  const auto &m = moves_[0];
  auto dst = r->remap({.old_addr = srcs_[0].get(),
                       .old_len = len_,
                       .new_len = len_,
                       .flags = m.flags,
                       .new_addr = holes_[0].get()});
  ASSERT_TRUE(dst.has_value()) << dst.error().message();
  moves_[0].new_addr = to_u64(*dst);
  EXPECT_TRUE(moved(0));
}

TEST_F(library_test, RemapBatchThroughTheModuleMovesEveryRangeWithItsContents) {
  auto r = remapper::create(backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  make_moves(8);
  if (HasFatalFailure()) return;
  const auto calls = batch_calls();

  const batch_result res = r->remap_batch(moves_);
  EXPECT_TRUE(res) << res.error.message();
  EXPECT_EQ(res.completed, moves_.size());
  for (std::size_t i = 0; i < moves_.size(); ++i) EXPECT_TRUE(moved(i));
  if (calls) {
    EXPECT_EQ(*batch_calls() - *calls, 1u) << "not one DONTUNMAP_IOC_REMAP_BATCH";
  }
}

TEST_F(library_test, RemapBatchThroughTheModuleStopsAtABadElementWithCompletedK) {
  auto r = remapper::create(backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  make_moves(6);
  if (HasFatalFailure()) return;
  constexpr std::size_t k = 3;
  moves_[k].old_addr += 1;  // unaligned: EINVAL

  EXPECT_TRUE(stopped_at(r->remap_batch(moves_), k, EINVAL));
  for (std::size_t i = 0; i < k; ++i) EXPECT_TRUE(moved(i));
  for (std::size_t i = k; i < moves_.size(); ++i) EXPECT_TRUE(source_kept(i));
  EXPECT_EQ(moves_[k + 1].new_addr, to_u64(holes_[k + 1].get())) << "a later element changed";
}

TEST_F(library_test, AutomaticBatchesThroughTheModuleAndStopsAtABadElement) {
  auto r = remapper::create(backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->capability_of(mapping_kind::private_anon, feature::batch).automatic,
            backend::module);
  make_moves(4);
  if (HasFatalFailure()) return;
  moves_[2].new_len = 2 * len_;  // DONTUNMAP does not resize: EINVAL
  const auto calls = batch_calls();

  EXPECT_TRUE(stopped_at(r->remap_batch(moves_), 2, EINVAL));
  EXPECT_TRUE(moved(0));
  EXPECT_TRUE(moved(1));
  EXPECT_TRUE(source_kept(2));
  EXPECT_TRUE(source_kept(3));
  if (calls) {
    EXPECT_EQ(*batch_calls() - *calls, 1u) << "not one DONTUNMAP_IOC_REMAP_BATCH";
  }
}

TEST_F(library_test, RemapBatchLargerThanBatchMaxMovesEveryElementInSeveralCalls) {
  auto r = remapper::create(backend::module);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  constexpr std::size_t n = DONTUNMAP_BATCH_MAX + DONTUNMAP_BATCH_MAX / 2;
  const std::size_t page = page_size();
  // One source of n pages (page i holding 'a' + i), one hole of n pages;
  // element i moves page i into page i of the hole.
  guarded src = guarded::anon(n * page), hole = guarded::hole(n * page);
  ASSERT_TRUE(src && hole);
  fill(src.get(), n * page, per_page('a'));
  std::vector<dontunmap_remap> pages(n);
  for (std::size_t i = 0; i < n; ++i)
    pages[i] = {.old_addr = to_u64(src.get() + i * page),
                .old_len = page,
                .new_len = page,
                .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED,
                .new_addr = to_u64(hole.get() + i * page)};
  const auto calls = batch_calls();

  const batch_result res = r->remap_batch(pages);
  EXPECT_TRUE(res) << res.error.message();
  EXPECT_EQ(res.completed, n);
  EXPECT_TRUE(holds(hole.get(), n * page, per_page('a')));
  EXPECT_TRUE(holds(src.get(), n * page, zeros()));
  if (calls) {
    EXPECT_EQ(*batch_calls() - *calls, 2u) << "not two DONTUNMAP_IOC_REMAP_BATCH calls";
  }
}

// The C API: the same reach, as 0 / -errno.

TEST_F(library_test, CtxFromFdOnADuplicatedDeviceDescriptorReportsInfo) {
  const int fd = ::open(DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const int dup = ::dup(fd);
  ASSERT_GE(dup, 0) << std::strerror(errno);
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_AUTO, dup, &ctx), 0);
  ::close(dup);
  ::close(fd);
  dontunmap_info info{};
  EXPECT_EQ(dontunmap_ctx_info(ctx, &info), 0);
  EXPECT_EQ(info.abi_version, unsigned(DONTUNMAP_ABI_VERSION));
  EXPECT_EQ(info.abi_minor, unsigned(DONTUNMAP_ABI_MINOR));
  EXPECT_EQ(info.features, info_.features);
  dontunmap_ctx_close(ctx);
}

TEST_F(library_test, CtxCapabilityReportsTheModuleForEveryKindAndFeature) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_AUTO, nullptr, &ctx), 0);
  for (int kind = DONTUNMAP_KIND_PRIVATE_ANON; kind <= DONTUNMAP_KIND_FILE; ++kind)
    for (int cap = DONTUNMAP_CAP_MOVE; cap <= DONTUNMAP_CAP_BATCH; ++cap) {
      dontunmap_capability c{};
      ASSERT_EQ(dontunmap_ctx_capability(ctx, kind, cap, &c), 0);
      EXPECT_EQ(c.module, 1) << "kind " << kind << " cap " << cap;
      EXPECT_EQ(c.automatic, c.native ? DONTUNMAP_BACKEND_NATIVE : DONTUNMAP_BACKEND_MODULE)
          << "kind " << kind << " cap " << cap << " native " << c.native;
    }
  dontunmap_ctx_close(ctx);
}

TEST_F(library_test, CtxRemapBatchMovesRangesAndStopsAtABadElementWithCompletedK) {
  dontunmap_ctx *ctx = nullptr;
  ASSERT_EQ(dontunmap_ctx_open(DONTUNMAP_BACKEND_MODULE, nullptr, &ctx), 0);
  make_moves(5);
  if (HasFatalFailure()) return dontunmap_ctx_close(ctx);
  unsigned completed = 99;
  moves_[4].old_addr = 0;  // no mapping there: EFAULT
  EXPECT_EQ(dontunmap_ctx_remap_batch(ctx, moves_.data(), 5, &completed), -EFAULT);
  EXPECT_EQ(completed, 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_TRUE(moved(i));
  EXPECT_EQ(moves_[4].new_addr, to_u64(holes_[4].get())) << "the failed element changed";
  dontunmap_ctx_close(ctx);
}

}  // namespace
}  // namespace dontunmap::test
