// SPDX-License-Identifier: GPL-2.0
//
// The argument rules of semantics.md, one test each, with the errno the
// newest kernel gives. Each call breaks exactly one rule, so the order in
// which a kernel checks them does not matter; every refused call must also
// leave the source's data where it was.
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

#include "support.hpp"

namespace dontunmap::test {
namespace {

class ArgumentRules : public backend_test {
 protected:
  void SetUp() override {
    backend_test::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    src_ = guarded::anon(len());
    ASSERT_TRUE(src_);
    fill(src_.get(), len(), per_page('s'));
  }

  std::size_t len() const { return 4 * page_size(); }
  char *src() const { return src_.get(); }

  // The refused call left the source as it was.
  void expect_source_intact() const {
    EXPECT_TRUE(holds(src(), len(), per_page('s'))) << "a refused move changed the source";
  }

  remap_result call(std::size_t old_len, std::size_t new_len, unsigned long flags,
                    void *new_addr = nullptr, void *old_addr = nullptr) const {
    remap_request req;
    req.old_addr = old_addr ? old_addr : src();
    req.old_len = old_len;
    req.new_len = new_len;
    req.flags = flags;
    req.new_addr = new_addr;
    return remap(req);
  }

 private:
  guarded src_;
};

constexpr unsigned long kMove = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;

TEST_P(ArgumentRules, UnknownFlagIsEinval) {
  const auto r = call(len(), len(), kMove | 8UL);
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, FixedWithoutMaymoveIsEinval) {
  auto target = guarded::hole(len());
  ASSERT_TRUE(target);
  const auto r = call(len(), len(), MREMAP_FIXED | MREMAP_DONTUNMAP, target.get());
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, DontunmapWithoutMaymoveIsEinval) {
  const auto r = call(len(), len(), MREMAP_DONTUNMAP);
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, ResizeIsEinval) {
  const auto grow = call(len() - page_size(), len(), kMove);
  EXPECT_TRUE(refused_with(grow, EINVAL, len())) << "growing";
  const auto shrink = call(len(), len() - page_size(), kMove);
  EXPECT_TRUE(refused_with(shrink, EINVAL, len())) << "shrinking";
  expect_source_intact();
}

// 4096 vs 4000: equal once page-aligned. The newest rule aligns first.
TEST_P(ArgumentRules, LengthsAreComparedAfterPageAlignment) {
  const std::size_t page = page_size();
  const auto e = expect(rule::aligned_length_compare);
  for (const auto &[old_len, new_len] : {std::pair{page, page - 96}, std::pair{page - 96, page}}) {
    SCOPED_TRACE("old_len " + std::to_string(old_len) + ", new_len " + std::to_string(new_len));
    const auto r = call(old_len, new_len, kMove);
    if (e.what == behaviour::legacy) {
      EXPECT_TRUE(refused_with(r, EINVAL, page)) << e.why;
      continue;
    }
    ASSERT_TRUE(r) << describe(r) << "\n" << e.why;
    auto dst = adopt(r, page);
    EXPECT_TRUE(holds(dst.get(), page, uniform('s'))) << "one whole page must have moved";
    EXPECT_EQ(procfs::vma_at(dst.get())->size(), page) << procfs::maps_excerpt({{dst.get(), page}});
    EXPECT_TRUE(holds(src(), page, zeros())) << "the moved page stayed at the source";
    fill(src(), page, uniform('s'));  // for the next round
  }
}

TEST_P(ArgumentRules, UnalignedOldAddressIsEinval) {
  const auto r = call(len() - page_size(), len() - page_size(), kMove, nullptr, src() + 1);
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, ZeroLengthIsEinval) {
  const auto r = call(0, 0, kMove);
  EXPECT_TRUE(refused_with(r, EINVAL, page_size()));
  expect_source_intact();
}

// Unlike mmap()'s hint, DONTUNMAP's new_addr is checked even without FIXED.
TEST_P(ArgumentRules, UnalignedHintIsEinval) {
  auto hole = guarded::hole(len());
  ASSERT_TRUE(hole);
  const auto r = call(len(), len(), kMove, hole.get() + 1);
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

void *beyond_task_size() {
  // Page aligned and above every TASK_SIZE (47, 48, 52 or 56 bits).
  return reinterpret_cast<void *>(std::numeric_limits<std::uintptr_t>::max() & ~(page_size() - 1));
}

TEST_P(ArgumentRules, FixedTargetBeyondTaskSizeIsEinval) {
  const auto r = call(len(), len(), kMove | MREMAP_FIXED, beyond_task_size());
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, HintBeyondTaskSizeIsEinval) {
  const auto r = call(len(), len(), kMove, beyond_task_size());
  EXPECT_TRUE(refused_with(r, EINVAL, len()));
  expect_source_intact();
}

TEST_P(ArgumentRules, FixedTargetOverlappingSourceIsEinval) {
  const auto half = call(len(), len(), kMove | MREMAP_FIXED, src() + 2 * page_size());
  EXPECT_TRUE(refused_with(half, EINVAL, len())) << "target overlaps the source's upper half";
  const auto same = call(len(), len(), kMove | MREMAP_FIXED, src());
  EXPECT_TRUE(refused_with(same, EINVAL, len())) << "target is the source";
  expect_source_intact();
}

TEST_P(ArgumentRules, UnmappedSourceIsEfault) {
  auto hole = guarded::hole(len());
  ASSERT_TRUE(hole);
  const auto r = call(len(), len(), kMove, nullptr, hole.get());
  EXPECT_TRUE(refused_with(r, EFAULT, len())) << procfs::maps_excerpt({{hole.get(), len()}});
}

TEST_P(ArgumentRules, RangePastEndOfVmaIsEfault) {
  // A mapping followed by unmapped space: [guard][len mapped][len free][guard].
  auto area = guarded::hole(2 * len());
  ASSERT_TRUE(area);
  ASSERT_NE(::mmap(area.get(), len(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            MAP_FAILED);
  fill(area.get(), len(), uniform('e'));
  const auto r = call(2 * len(), 2 * len(), kMove, nullptr, area.get());
  EXPECT_TRUE(refused_with(r, EFAULT, 2 * len()))
      << procfs::maps_excerpt({{area.get(), 2 * len()}});
  EXPECT_TRUE(holds(area.get(), len(), uniform('e')));
}

// Without MREMAP_FIXED a move is single-VMA on every kernel, the newest too.
TEST_P(ArgumentRules, RangeSpanningTwoVmasWithoutFixedIsEfault) {
  ASSERT_EQ(::mprotect(src() + 2 * page_size(), 2 * page_size(), PROT_READ), 0);
  ASSERT_EQ(procfs::vmas_in(src(), len()).size(), 2u) << procfs::maps_excerpt({{src(), len()}});
  const auto r = call(len(), len(), kMove);
  EXPECT_TRUE(refused_with(r, EFAULT, len())) << procfs::maps_excerpt({{src(), len()}});
  expect_source_intact();
}

// Special mappings carry VM_DONTEXPAND ([vvar] also VM_PFNMAP). A sealed
// one (CONFIG_MSEAL_SYSTEM_MAPPINGS) is refused earlier, with EPERM.
void expect_special_mapping_refused(const remap_result &r, const procfs::vma &v, bool sealed) {
  EXPECT_TRUE(refused_with(r, sealed ? EPERM : EINVAL, v.size()))
      << v.line << (sealed ? " (sealed)" : "");
}

TEST_P(ArgumentRules, VdsoSourceIsEinval) {
  const auto vdso = procfs::vma_named("[vdso]");
  if (!vdso) GTEST_SKIP() << "this process has no [vdso]";
  const auto smaps = procfs::smaps_at(reinterpret_cast<void *>(vdso->start));
  ASSERT_TRUE(smaps);
  const auto r =
      call(vdso->size(), vdso->size(), kMove, nullptr, reinterpret_cast<void *>(vdso->start));
  expect_special_mapping_refused(r, *vdso, smaps->has_flag("sl"));
}

TEST_P(ArgumentRules, VvarSourceIsEinval) {
  const auto vvar = procfs::vma_named("[vvar]");
  if (!vvar) GTEST_SKIP() << "this process has no [vvar]";
  const auto smaps = procfs::smaps_at(reinterpret_cast<void *>(vvar->start));
  ASSERT_TRUE(smaps);
  const auto r =
      call(vvar->size(), vvar->size(), kMove, nullptr, reinterpret_cast<void *>(vvar->start));
  expect_special_mapping_refused(r, *vvar, smaps->has_flag("sl"));
}

// An aio ring is a plain shared file mapping but for VM_DONTEXPAND.
TEST_P(ArgumentRules, AioRingSourceIsEinval) {
  aio_context_t ctx = 0;
  if (::syscall(SYS_io_setup, 1, &ctx) != 0) GTEST_SKIP() << "io_setup: " << std::strerror(errno);
  const auto ring = procfs::vma_at(reinterpret_cast<void *>(ctx));
  ASSERT_TRUE(ring) << "no VMA at the aio ring " << reinterpret_cast<void *>(ctx);
  const auto r =
      call(ring->size(), ring->size(), kMove, nullptr, reinterpret_cast<void *>(ring->start));
  EXPECT_TRUE(refused_with(r, EINVAL, ring->size())) << ring->line;
  ::syscall(SYS_io_destroy, ctx);
}

// hugetlbfs mappings carry VM_DONTEXPAND (and need huge-page alignment,
// which this one has): DONTUNMAP never takes them.
TEST_P(ArgumentRules, HugetlbSourceIsEinval) {
  hugetlb_reservation pool;
  const std::size_t huge = pool.page_size();
  if (!huge) GTEST_SKIP() << "this kernel has no hugetlbfs";
  ASSERT_TRUE(pool.reserve_one()) << "cannot reserve a huge page";
  void *const p = ::mmap(nullptr, huge, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  ASSERT_NE(p, MAP_FAILED) << "MAP_HUGETLB: " << std::strerror(errno);
  mapping hugetlb(p, huge);
  fill(hugetlb.get(), huge, uniform('h'));
  const auto r = call(huge, huge, kMove, nullptr, hugetlb.get());
  EXPECT_TRUE(refused_with(r, EINVAL, huge)) << procfs::maps_excerpt({{hugetlb.get(), huge}});
  EXPECT_TRUE(holds(hugetlb.get(), huge, uniform('h')));
}

// A page of /dev/mem outside RAM (x86: below 1 MiB, where STRICT_DEVMEM
// lets root map; arm64: a device's registers) is a VM_PFNMAP | VM_IO
// mapping with no struct page behind it. It is only mapped, never touched.
TEST_P(ArgumentRules, PfnMapSourceIsEinval) {
  const int fd = ::open("/dev/mem", O_RDONLY | O_CLOEXEC);
  if (fd < 0) GTEST_SKIP() << "/dev/mem: " << std::strerror(errno);
  void *p = MAP_FAILED;
  std::ifstream iomem("/proc/iomem");
  std::string line, tried;
  // Top-level regions, in address order: the first that maps.
  while (p == MAP_FAILED && std::getline(iomem, line)) {
    if (line.empty() || line[0] == ' ' || line.find("System RAM") != std::string::npos) continue;
    const auto start = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    if (start % page_size() != 0) continue;
    p = ::mmap(nullptr, page_size(), PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
    tried += "\n  " + line + (p == MAP_FAILED ? ": " + std::string(std::strerror(errno)) : "");
  }
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED) << "no /proc/iomem region outside RAM could be mapped:" << tried;
  mapping pfnmap(p, page_size());
  const auto smaps = procfs::smaps_at(pfnmap.get());
  ASSERT_TRUE(smaps);
  ASSERT_TRUE(smaps->has_flag("pf")) << "not a PFN map\n" << smaps->text;
  const auto r = call(page_size(), page_size(), kMove, nullptr, pfnmap.get());
  EXPECT_TRUE(refused_with(r, EINVAL, page_size())) << smaps->text;
  EXPECT_EQ(procfs::vmas_in(pfnmap.get(), page_size()).size(), 1u)
      << procfs::maps_excerpt({{pfnmap.get(), page_size()}});
}

#ifndef SYS_mseal
#define SYS_mseal 462
#endif

TEST_P(ArgumentRules, SealedSourceIsEperm) {
  // A sealed range can never be unmapped: seal a mapping of its own.
  auto sealed = guarded::anon(page_size());
  ASSERT_TRUE(sealed);
  fill(sealed.get(), page_size(), uniform('m'));
  if (::syscall(SYS_mseal, sealed.get(), page_size(), 0) != 0)
    GTEST_SKIP() << "mseal: " << std::strerror(errno)
                 << " (sealing came with 6.10; nothing to refuse)";
  const auto r = call(page_size(), page_size(), kMove, nullptr, sealed.get());
  EXPECT_TRUE(refused_with(r, EPERM, page_size()))
      << procfs::maps_excerpt({{sealed.get(), page_size()}});
  EXPECT_TRUE(holds(sealed.get(), page_size(), uniform('m')));
}

DONTUNMAP_INSTANTIATE_BACKENDS(ArgumentRules);

}  // namespace
}  // namespace dontunmap::test
