// SPDX-License-Identifier: LGPL-2.1-or-later
//
// remapper::capability_of(): the native column follows probe_native(), the
// module column the module's feature bits, and the automatic column is
// where route() and remap_batch() really send a move of that kind.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>
#include <optional>
#include <string>

#include "internal.hpp"
#include "test_util.hpp"

namespace dontunmap::test {
namespace {

constexpr mapping_kind kinds[] = {mapping_kind::private_anon, mapping_kind::shared_anon,
                                  mapping_kind::shmem, mapping_kind::file};
constexpr feature features[] = {feature::move, feature::aligned_lengths, feature::multi_vma,
                                feature::uffd_kept, feature::batch};

const char *name(mapping_kind k) {
  switch (k) {
    case mapping_kind::private_anon: return "private_anon";
    case mapping_kind::shared_anon: return "shared_anon";
    case mapping_kind::shmem: return "shmem";
    case mapping_kind::file: return "file";
  }
  return "?";
}

const char *name(feature f) {
  switch (f) {
    case feature::move: return "move";
    case feature::aligned_lengths: return "aligned_lengths";
    case feature::multi_vma: return "multi_vma";
    case feature::uffd_kept: return "uffd_kept";
    case feature::batch: return "batch";
  }
  return "?";
}

std::string describe(mapping_kind k, feature f, const capability &c) {
  return std::string(name(k)) + "/" + name(f) + ": native " + (c.native ? "yes" : "no") +
         ", module " + (c.module ? "yes" : "no") + ", automatic " + to_string(c.automatic);
}

constexpr native_support linux_5_4{};
constexpr native_support linux_5_10{.private_anon = true};
constexpr native_support linux_6_1{.private_anon = true, .shared = true};
constexpr native_support linux_6_17{
    .private_anon = true, .shared = true, .aligned_lengths = true, .multi_vma = true};

using module_bits = std::optional<detail::module_support>;
constexpr module_bits module_with(std::uint64_t features,
                                  std::uint32_t minor = DONTUNMAP_ABI_MINOR) {
  return detail::module_support{.features = features, .abi_minor = minor};
}
constexpr module_bits full_module = module_with(all_module_features);

// What the kernel alone does, per probe_native().
bool natively(const native_support &k, mapping_kind kind, feature f) {
  const bool moves = kind == mapping_kind::private_anon ? k.private_anon : k.shared;
  switch (f) {
    case feature::move: return moves;
    case feature::aligned_lengths: return moves && k.aligned_lengths;
    case feature::multi_vma: return moves && k.multi_vma;
    case feature::uffd_kept: return moves;
    case feature::batch: return false;
  }
  return false;
}

TEST(CapabilityOf, NativeColumnFollowsProbeNative) {
  auto r = remapper::create(backend::native);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const capability c = r->capability_of(k, f);
      EXPECT_EQ(c.native, natively(probe_native(), k, f)) << describe(k, f, c);
    }
}

TEST(CapabilityOf, WithoutModuleAutomaticIsNativeWhereTheKernelDoesItElseNone) {
  auto r = remapper::create(backend::automatic, "/nonexistent/dontunmap");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const capability c = r->capability_of(k, f);
      EXPECT_FALSE(c.module) << describe(k, f, c);
      EXPECT_EQ(c.automatic, c.native ? std::optional(backend::native) : std::nullopt)
          << describe(k, f, c);
    }
}

TEST(CapabilityOf, ModuleColumnIsYesForEveryKindWithEveryFeatureBit) {
  auto r = remapper::create(fake_module(), backend::automatic);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const capability c = r->capability_of(k, f);
      EXPECT_TRUE(c.module) << describe(k, f, c);
      EXPECT_TRUE(c.automatic.has_value()) << describe(k, f, c);
    }
}

TEST(CapabilityOf, OnLinux510WithModuleSharedKindsGoToTheModule) {
  for (mapping_kind k : kinds) {
    const bool priv = k == mapping_kind::private_anon;
    const auto move = detail::capability_of(linux_5_10, full_module, k, feature::move);
    EXPECT_EQ(move.automatic, priv ? backend::native : backend::module)
        << describe(k, feature::move, move);
    const auto uffd = detail::capability_of(linux_5_10, full_module, k, feature::uffd_kept);
    EXPECT_EQ(uffd.automatic, priv ? backend::native : backend::module)
        << describe(k, feature::uffd_kept, uffd);
    for (feature f : {feature::aligned_lengths, feature::multi_vma, feature::batch}) {
      const auto c = detail::capability_of(linux_5_10, full_module, k, f);
      EXPECT_EQ(c.automatic, backend::module) << describe(k, f, c);
    }
  }
}

TEST(CapabilityOf, OnLinux617NativeDoesEverythingButBatch) {
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const auto c = detail::capability_of(linux_6_17, full_module, k, f);
      EXPECT_EQ(c.automatic, f == feature::batch ? backend::module : backend::native)
          << describe(k, f, c);
    }
}

TEST(CapabilityOf, ModuleLackingSharedIsNeverAutomaticForSharedKinds) {
  const auto m = module_with(all_module_features & ~DONTUNMAP_FEAT_SHARED);
  for (mapping_kind k : {mapping_kind::shared_anon, mapping_kind::shmem, mapping_kind::file})
    for (feature f : features) {
      const auto c = detail::capability_of(linux_5_10, m, k, f);
      EXPECT_FALSE(c.module) << describe(k, f, c);
      EXPECT_FALSE(c.automatic.has_value()) << describe(k, f, c);
    }
}

TEST(CapabilityOf, UffdKeptThroughModuleNeedsItsUffdBit) {
  const auto m = module_with(all_module_features & ~DONTUNMAP_FEAT_UFFD);
  const auto shared = detail::capability_of(linux_5_10, m, mapping_kind::shmem, feature::uffd_kept);
  EXPECT_FALSE(shared.module) << describe(mapping_kind::shmem, feature::uffd_kept, shared);
  EXPECT_FALSE(shared.automatic.has_value())
      << describe(mapping_kind::shmem, feature::uffd_kept, shared);
  const auto priv =
      detail::capability_of(linux_5_10, m, mapping_kind::private_anon, feature::uffd_kept);
  EXPECT_EQ(priv.automatic, backend::native)
      << describe(mapping_kind::private_anon, feature::uffd_kept, priv);
}

TEST(CapabilityOf, BatchNeedsTheBatchBitAndAbiMinorOne) {
  for (const module_bits &m : {module_with(all_module_features & ~DONTUNMAP_FEAT_BATCH),
                               module_with(all_module_features, 0)}) {
    const auto c = detail::capability_of(linux_6_17, m, mapping_kind::private_anon, feature::batch);
    EXPECT_FALSE(c.native);
    EXPECT_FALSE(c.module) << describe(mapping_kind::private_anon, feature::batch, c);
    EXPECT_FALSE(c.automatic.has_value())
        << describe(mapping_kind::private_anon, feature::batch, c);
  }
}

TEST(CapabilityOf, AutomaticBatchesOnlyThroughAModuleWithEveryMoveFeature) {
  const auto m = module_with(all_module_features & ~DONTUNMAP_FEAT_MULTI_VMA);
  const auto c = detail::capability_of(linux_6_17, m, mapping_kind::private_anon, feature::batch);
  EXPECT_TRUE(c.module) << describe(mapping_kind::private_anon, feature::batch, c);
  EXPECT_FALSE(c.automatic.has_value()) << describe(mapping_kind::private_anon, feature::batch, c);
}

TEST(CapabilityOf, NoBackendOnKernelWithoutDontunmapAndWithoutModule) {
  for (mapping_kind k : kinds)
    for (feature f : features) {
      const auto c = detail::capability_of(linux_5_4, std::nullopt, k, f);
      EXPECT_FALSE(c.native || c.module || c.automatic) << describe(k, f, c);
    }
}

// A two-page mapping of each kind, its halves in two VMAs for multi_vma.
struct source {
  mapping_kind kind;
  void *addr = MAP_FAILED;
  std::size_t len = 2 * page_size();

  explicit source(mapping_kind k, bool two_vmas) : kind(k) {
    int fd = -1;
    int flags = MAP_SHARED;
    if (k == mapping_kind::private_anon) flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (k == mapping_kind::shared_anon) flags = MAP_SHARED | MAP_ANONYMOUS;
    if (k == mapping_kind::shmem) fd = ::memfd_create("capability_test", MFD_CLOEXEC);
    if (k == mapping_kind::file) {
      file_ = std::tmpfile();
      fd = file_ ? ::dup(::fileno(file_)) : -1;
    }
    if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(len)) != 0) return;
    addr = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (fd >= 0) ::close(fd);
    if (two_vmas && addr != MAP_FAILED)
      ::mprotect(static_cast<char *>(addr) + page_size(), page_size(), PROT_READ);
  }
  ~source() {
    if (addr != MAP_FAILED) ::munmap(addr, len);
    if (file_) std::fclose(file_);
  }
  source(const source &) = delete;
  source &operator=(const source &) = delete;

 private:
  std::FILE *file_ = nullptr;
};

TEST(CapabilityOf, AutomaticColumnIsWhereRouteSendsEachKindOfMapping) {
  const native_support kernels[] = {linux_5_4, linux_5_10, linux_6_1, linux_6_17};
  const module_bits modules[] = {std::nullopt, full_module,
                                 module_with(all_module_features & ~DONTUNMAP_FEAT_SHARED),
                                 module_with(all_module_features & ~DONTUNMAP_FEAT_ALIGNED_LEN),
                                 module_with(all_module_features & ~DONTUNMAP_FEAT_MULTI_VMA)};
  mapping hole(2 * page_size());
  ASSERT_TRUE(hole.ok());
  for (mapping_kind k : kinds) {
    source one(k, false), two(k, true);
    ASSERT_NE(one.addr, MAP_FAILED) << name(k) << ": " << std::strerror(errno);
    ASSERT_NE(two.addr, MAP_FAILED) << name(k) << ": " << std::strerror(errno);
    const remap_request move{.old_addr = one.addr, .old_len = one.len, .new_len = one.len};
    const remap_request uneven{.old_addr = one.addr, .old_len = one.len, .new_len = one.len - 96};
    const remap_request spanning{.old_addr = two.addr,
                                 .old_len = two.len,
                                 .new_len = two.len,
                                 .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED,
                                 .new_addr = hole.get()};
    for (std::size_t ki = 0; ki < std::size(kernels); ++ki)
      for (std::size_t mi = 0; mi < std::size(modules); ++mi) {
        const auto &kernel = kernels[ki];
        const auto &module = modules[mi];
        auto where = [&] {
          return "kernel model " + std::to_string(ki) + ", module model " + std::to_string(mi) +
                 "\n" + maps();
        };
        const auto c_move = detail::capability_of(kernel, module, k, feature::move);
        EXPECT_EQ(detail::route(backend::automatic, module, kernel, move), c_move.automatic)
            << describe(k, feature::move, c_move) << ", " << where();
        const auto c_uneven = detail::capability_of(kernel, module, k, feature::aligned_lengths);
        EXPECT_EQ(detail::route(backend::automatic, module, kernel, uneven), c_uneven.automatic)
            << describe(k, feature::aligned_lengths, c_uneven) << ", " << where();
        // Where no backend moves several VMAs, the one that moves the kind
        // answers (EFAULT).
        const auto c_multi = detail::capability_of(kernel, module, k, feature::multi_vma);
        EXPECT_EQ(detail::route(backend::automatic, module, kernel, spanning),
                  c_multi.automatic ? c_multi.automatic : c_move.automatic)
            << describe(k, feature::multi_vma, c_multi) << ", " << where();
      }
  }
}

}  // namespace
}  // namespace dontunmap::test
