// SPDX-License-Identifier: GPL-2.0
//
// DONTUNMAP_IOC_REMAP_BATCH as an ABI, below the library (docs/batch.md):
// elements move in order, each all or nothing; the first failure ends the
// call and says which element and why; a call refused as a whole moves
// nothing; userfaultfd-registered sources move and their events arrive in
// element order; the sysfs counters count what ran.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "batch_one.hpp"
#include "support.hpp"

namespace dontunmap::test {
namespace {

constexpr char kStats[] = "/sys/class/misc/dontunmap/stats/";

// Does any mapping cover [addr, addr + len)? msync() fails with ENOMEM on
// an unmapped page.
bool unmapped(const void *addr, std::size_t len) {
  return ::msync(const_cast<void *>(addr), len, MS_ASYNC) != 0 && errno == ENOMEM;
}

class batch_test : public device_test, protected fixed_ranges {
 protected:
  // The raw ioctl: 0, or -1 with errno.
  int batch(dontunmap_remap_batch *hdr) const {
    return ::ioctl(fd_, DONTUNMAP_IOC_REMAP_BATCH, hdr);
  }
  static dontunmap_remap_batch header(std::vector<dontunmap_remap> &v) {
    return batch_header(v.data(), static_cast<std::uint32_t>(v.size()));
  }

  // Element i did not move: its source keeps its pages, its hole is a hole.
  ::testing::AssertionResult untouched(std::size_t i) const {
    if (!unmapped(holes_[i].get(), len_))
      return ::testing::AssertionFailure() << "element " << i << ": its target is mapped";
    return source_kept(i);
  }
  // The hole i is mapped now: unmap the destination with the guards.
  void adopt_holes() {
    for (auto &h : holes_) h.reset();
  }
};

TEST_F(batch_test, InfoAnnouncesTheBatchIoctl) {
  dontunmap_info info{};
  ASSERT_EQ(::ioctl(fd_, DONTUNMAP_IOC_INFO, &info), 0) << std::strerror(errno);
  EXPECT_EQ(info.abi_version, DONTUNMAP_ABI_VERSION);
  EXPECT_GE(info.abi_minor, 1u);
  EXPECT_TRUE(info.features & DONTUNMAP_FEAT_BATCH);
}

TEST_F(batch_test, EveryElementMovesInOrder) {
  make_ranges(4);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  auto hdr = header(moves);
  hdr.completed = 77;
  hdr.error = 77;

  ASSERT_EQ(batch(&hdr), 0) << std::strerror(errno);
  EXPECT_EQ(hdr.completed, 4u);
  EXPECT_EQ(hdr.error, 0);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(moved(i));
    EXPECT_EQ(moves[i].new_addr, to_u64(holes_[i].get()));
  }
}

// Without MREMAP_FIXED each element gets an address of the kernel's choice,
// written back into its own new_addr.
TEST_F(batch_test, EachElementGetsItsDestinationWrittenBack) {
  make_ranges(3);
  if (HasFatalFailure()) return;
  std::vector<dontunmap_remap> moves = fixed_moves();
  for (auto &m : moves) {
    m.flags &= ~static_cast<std::uint64_t>(MREMAP_FIXED);
    m.new_addr = 0;
  }
  auto hdr = header(moves);

  ASSERT_EQ(batch(&hdr), 0) << std::strerror(errno);
  ASSERT_EQ(hdr.completed, 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    mapping dst(reinterpret_cast<void *>(moves[i].new_addr), len_);
    EXPECT_TRUE(holds(dst.get(), len_, content(i))) << "element " << i;
    EXPECT_TRUE(holds(srcs_[i].get(), len_, zeros())) << "element " << i;
  }
}

// Element 2 breaks a rule of the single call (lengths differ): elements 0
// and 1 have moved, 2 and 3 have not, and the header says so.
TEST_F(batch_test, TheFirstFailureEndsTheCallAndNamesItsElement) {
  make_ranges(4);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  moves[2].new_len = 2 * len_;
  auto hdr = header(moves);

  ASSERT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(hdr.completed, 2u);
  EXPECT_EQ(hdr.error, -EINVAL);
  EXPECT_TRUE(moved(0));
  EXPECT_TRUE(moved(1));
  EXPECT_TRUE(untouched(2));
  EXPECT_TRUE(untouched(3));
  EXPECT_EQ(moves[3].new_addr, to_u64(holes_[3].get())) << "an element after the failure was written";
}

// A failure found under the lock (no source VMA: EFAULT) ends the call the
// same way as one found in the arguments.
TEST_F(batch_test, AnElementWithoutASourceFailsWithEfaultAfterTheOnesBefore) {
  make_ranges(3);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  const guarded gone = guarded::hole(len_);
  moves[1].old_addr = to_u64(gone.get());
  auto hdr = header(moves);

  ASSERT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_EQ(hdr.completed, 1u);
  EXPECT_EQ(hdr.error, -EFAULT);
  EXPECT_TRUE(moved(0));
  EXPECT_TRUE(unmapped(holes_[1].get(), len_)) << "the failed element's FIXED target is mapped";
  EXPECT_TRUE(untouched(2));
}

// A header or count the call cannot take is refused before anything moves,
// with completed and error both 0.
TEST_F(batch_test, AMalformedHeaderIsRefusedWhole) {
  make_ranges(2);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  struct variant {
    const char *what;
    void (*spoil)(dontunmap_remap_batch &);
  };
  const variant variants[] = {
      {"count 0", [](dontunmap_remap_batch &h) { h.count = 0; }},
      {"count above the maximum", [](dontunmap_remap_batch &h) { h.count = DONTUNMAP_BATCH_MAX + 1; }},
      {"unknown flags", [](dontunmap_remap_batch &h) { h.flags = 1; }},
      {"reserved[0]", [](dontunmap_remap_batch &h) { h.reserved[0] = 1; }},
      {"reserved[1]", [](dontunmap_remap_batch &h) { h.reserved[1] = 1u << 31; }},
  };
  for (const auto &v : variants) {
    auto hdr = header(moves);
    v.spoil(hdr);
    EXPECT_EQ(batch(&hdr), -1) << v.what;
    EXPECT_EQ(errno, EINVAL) << v.what;
  }
  EXPECT_TRUE(untouched(0));
  EXPECT_TRUE(untouched(1));
}

TEST_F(batch_test, AnArrayTheCallCannotReadOrWriteIsRefusedWhole) {
  make_ranges(2);
  if (HasFatalFailure()) return;
  const auto moves = fixed_moves();

  const guarded nowhere = guarded::hole(page_size());
  auto hdr = batch_header(reinterpret_cast<const dontunmap_remap *>(nowhere.get()), 2);
  EXPECT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EFAULT) << "an unmapped array";

  // The array straddles into an unmapped page: its last element is unreadable.
  guarded edge = guarded::anon(page_size());
  ASSERT_TRUE(edge);
  auto *straddling = reinterpret_cast<dontunmap_remap *>(edge.get() + page_size()) - 1;
  *straddling = moves[0];
  hdr = batch_header(straddling, 2);
  EXPECT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EFAULT) << "an array running off its mapping";
  EXPECT_EQ(hdr.completed, 0u);

  // A read-only array could not take the destinations back.
  guarded ro = guarded::anon(page_size());
  ASSERT_TRUE(ro);
  std::memcpy(ro.get(), moves.data(), moves.size() * sizeof(moves[0]));
  ASSERT_EQ(::mprotect(ro.get(), page_size(), PROT_READ), 0);
  hdr = batch_header(reinterpret_cast<const dontunmap_remap *>(ro.get()), 2);
  hdr.completed = 5;
  hdr.error = 5;
  EXPECT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EFAULT) << "a read-only array";
  EXPECT_EQ(hdr.completed, 0u);
  EXPECT_EQ(hdr.error, 0);

  EXPECT_TRUE(untouched(0));
  EXPECT_TRUE(untouched(1));
}

// The results are written back after the move: an array or header in a
// range some element empties (a source) or replaces (a FIXED target) is
// refused before anything moves, as a single call's struct is.
// Element 1's length runs past the end of the address space, over the
// header on this stack and the array on the heap: it breaks an argument rule,
// would move nothing, and gets that rule's EINVAL at its turn, as the single
// call does, rather than the whole call's EFAULT for an array inside a
// moved range (seen in difftest seeds 245, 473 and 1213 on 6.1-amd64).
TEST_F(batch_test, AnElementBreakingAnArgumentRuleGetsItsErrnoThoughItsRangeCoversTheArray) {
  make_ranges(2);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  moves[1].old_len = moves[1].new_len = 0x800000001000ull;
  moves[1].flags &= ~static_cast<std::uint64_t>(MREMAP_FIXED);
  auto hdr = header(moves);

  ASSERT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(hdr.completed, 1u);
  EXPECT_EQ(hdr.error, -EINVAL);
  EXPECT_TRUE(moved(0));
  EXPECT_TRUE(untouched(1));
  adopt_holes();
}

TEST_F(batch_test, AnArrayOrHeaderInsideAMovedRangeIsRefusedWhole) {
  make_ranges(3);
  if (HasFatalFailure()) return;
  const auto moves = fixed_moves();
  auto *in_source = reinterpret_cast<dontunmap_remap *>(srcs_[2].get() + len_ - page_size());
  std::memcpy(in_source, moves.data(), moves.size() * sizeof(moves[0]));
  auto hdr = batch_header(in_source, 3);
  EXPECT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EFAULT) << "the array in element 2's source";
  EXPECT_EQ(hdr.completed, 0u);
  EXPECT_EQ(hdr.error, 0);
  EXPECT_TRUE(untouched(0));
  EXPECT_TRUE(untouched(1));
  // The array overwrote the source's last page; its first still holds its own.
  EXPECT_TRUE(unmapped(holes_[2].get(), len_));
  EXPECT_TRUE(holds(srcs_[2].get(), page_size(), content(2)));

  // The header in a page that element 1's FIXED target replaces.
  auto target_moves = moves;
  guarded target = guarded::anon(len_);
  ASSERT_TRUE(target);
  target_moves[1].new_addr = to_u64(target.get());
  auto *in_target = reinterpret_cast<dontunmap_remap_batch *>(target.get());
  *in_target = header(target_moves);
  EXPECT_EQ(batch(in_target), -1);
  EXPECT_EQ(errno, EFAULT) << "the header in element 1's FIXED target";
  EXPECT_EQ(in_target->completed, 0u);
  EXPECT_TRUE(untouched(0));
  EXPECT_TRUE(untouched(1));
}

// The largest batch the ABI allows: page i of one source to page i of one
// target, in reverse order.
TEST_F(batch_test, TheLargestBatchMovesEveryPage) {
  const std::size_t n = DONTUNMAP_BATCH_MAX, ps = page_size();
  guarded src = guarded::anon(n * ps), dst = guarded::hole(n * ps);
  ASSERT_TRUE(src && dst);
  fill(src.get(), n * ps, per_page('A'));
  std::vector<dontunmap_remap> moves;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = n - 1 - k;
    moves.push_back({.old_addr = to_u64(src.get() + i * ps),
                     .old_len = ps,
                     .new_len = ps,
                     .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED,
                     .new_addr = to_u64(dst.get() + i * ps)});
  }
  auto hdr = header(moves);

  ASSERT_EQ(batch(&hdr), 0) << std::strerror(errno);
  EXPECT_EQ(hdr.completed, n);
  EXPECT_TRUE(holds(dst.get(), n * ps, per_page('A')));
  EXPECT_TRUE(holds(src.get(), n * ps, zeros()));
}

// ART and ChromeOS move registered ranges; upstream's multi-VMA move
// refuses them. Each element keeps its registration and its
// UFFD_EVENT_REMAP arrives in element order, after the lock is dropped.
TEST_F(batch_test, RegisteredSourcesMoveAndTheirEventsArriveInOrder) {
  make_ranges(3);
  if (HasFatalFailure()) return;
  const int uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0 && (errno == ENOSYS || errno == EOPNOTSUPP)) GTEST_SKIP() << "no userfaultfd";
  ASSERT_GE(uffd, 0) << std::strerror(errno);
  uffdio_api api{.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMAP, .ioctls = 0};
  ASSERT_EQ(::ioctl(uffd, UFFDIO_API, &api), 0) << std::strerror(errno);
  for (const auto &s : srcs_) {
    uffdio_register reg{};
    reg.range = {.start = to_u64(s.get()), .len = len_};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    ASSERT_EQ(::ioctl(uffd, UFFDIO_REGISTER, &reg), 0) << std::strerror(errno);
  }

  // The mover waits for each event to be read: read them on a thread.
  const int stop = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(stop, 0);
  std::vector<uffd_msg> events;
  std::thread monitor([&] {
    pollfd fds[2] = {{uffd, POLLIN, 0}, {stop, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, 60'000) <= 0) return;
      uffd_msg msg{};
      if (::read(uffd, &msg, sizeof(msg)) == sizeof(msg)) {
        events.push_back(msg);
        continue;
      }
      if (fds[1].revents & POLLIN) return;
    }
  });
  auto moves = fixed_moves();
  auto hdr = header(moves);
  const int rc = batch(&hdr);
  const int err = errno;
  const std::uint64_t one = 1;
  EXPECT_EQ(::write(stop, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  monitor.join();
  ::close(stop);
  // Released, the context no longer catches reads of the emptied sources.
  ::close(uffd);

  ASSERT_EQ(rc, 0) << std::strerror(err);
  EXPECT_EQ(hdr.completed, 3u);
  ASSERT_EQ(events.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(moved(i));
    EXPECT_EQ(events[i].event, UFFD_EVENT_REMAP) << "event " << i;
    EXPECT_EQ(events[i].arg.remap.from, moves[i].old_addr) << "event " << i;
    EXPECT_EQ(events[i].arg.remap.to, moves[i].new_addr) << "event " << i;
    EXPECT_EQ(events[i].arg.remap.len, len_) << "event " << i;
  }
}

std::uint64_t stat_value(const char *name) {
  std::ifstream in(std::string(kStats) + name);
  std::uint64_t v = 0;
  in >> v;
  return v;
}

// "<errno> <count>" lines.
std::map<int, std::uint64_t> failures() {
  std::ifstream in(std::string(kStats) + "failures");
  std::map<int, std::uint64_t> m;
  int e;
  std::uint64_t n;
  while (in >> e >> n) m[e] = n;
  return m;
}

TEST_F(batch_test, CountersCountMovesBytesBatchesAndFailures) {
  if (::access((std::string(kStats) + "moves").c_str(), R_OK) != 0)
    GTEST_FAIL() << kStats << " is missing: " << std::strerror(errno);
  make_ranges(3);
  if (HasFatalFailure()) return;
  auto moves = fixed_moves();
  moves[2].flags |= 1u << 20;  // unknown flag: EINVAL
  const auto moves0 = stat_value("moves"), bytes0 = stat_value("bytes");
  const auto batches0 = stat_value("batches");
  const auto einval0 = failures()[EINVAL];

  auto hdr = header(moves);
  EXPECT_EQ(batch(&hdr), -1);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(hdr.completed, 2u);

  EXPECT_EQ(stat_value("moves") - moves0, 2u);
  EXPECT_EQ(stat_value("bytes") - bytes0, 2 * len_);
  EXPECT_EQ(stat_value("batches") - batches0, 1u);
  EXPECT_EQ(failures()[EINVAL] - einval0, 1u);
}

}  // namespace
}  // namespace dontunmap::test
