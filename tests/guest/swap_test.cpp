// SPDX-License-Identifier: GPL-2.0
//
// swap_region, the swap-out pattern (dontunmap/swap.hpp), through both
// backends: pages moved aside, written to a file, released, and served
// back by the component's handler while the process keeps using the range.
#include <dontunmap/swap.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace dontunmap::test {
namespace {

constexpr std::size_t kPages = 64;

class swap_test : public backend_test {
 protected:
  void SetUp() override {
    backend_test::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    page_ = page_size();
    range_ = guarded::anon(kPages * page_);
    ASSERT_TRUE(range_);
    fill(range_.get(), range_.size(), per_page('s'));
  }

  // A memfd for the pages, its second descriptor kept to read it back.
  std::expected<swap_region, std::error_code> make(int open_flags = O_RDWR) {
    const int fd = ::memfd_create("dontunmap-swap", MFD_CLOEXEC);
    if (fd < 0) return std::unexpected(std::error_code(errno, std::system_category()));
    file_ = unique_fd(fd);
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    unique_fd other(::open(path.c_str(), open_flags | O_CLOEXEC));
    if (!other) return std::unexpected(std::error_code(errno, std::system_category()));
    auto region = swap_region::create(remapper(), range_.get(), range_.size(), std::move(other));
    if (!region && region.error() == std::errc::operation_not_permitted)
      skip_reason_ = "userfaultfd: not permitted here";
    return region;
  }

  // Pages of [addr, addr + pages * page) resident in memory (mincore()).
  std::size_t resident(const char *addr, std::size_t pages) const {
    std::vector<unsigned char> vec(pages);
    if (::mincore(const_cast<char *>(addr), pages * page_, vec.data()) != 0) return SIZE_MAX;
    std::size_t n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  }

  // Page i of the file holds what page i of the range held.
  ::testing::AssertionResult file_holds(std::size_t first, std::size_t pages, pattern p) const {
    std::vector<char> buf(pages * page_);
    if (::pread(file_.get(), buf.data(), buf.size(), static_cast<off_t>(first * page_)) !=
        static_cast<ssize_t>(buf.size()))
      return ::testing::AssertionFailure() << "pread: " << std::strerror(errno);
    for (std::size_t i = 0; i < pages; ++i)
      for (std::size_t b = 0; b < page_; ++b)
        if (buf[i * page_ + b] != p.at(first + i))
          return ::testing::AssertionFailure() << "file page " << first + i << " byte " << b;
    return ::testing::AssertionSuccess();
  }

  std::size_t page_ = 0;
  guarded range_;
  unique_fd file_;
  std::string skip_reason_;
};

#define MAKE_REGION(region, ...)                          \
  auto region = make(__VA_ARGS__);                        \
  if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_; \
  ASSERT_TRUE(region) << region.error().message()

TEST_P(swap_test, SwappedOutPagesComeBackFromTheFileWithTheirContents) {
  MAKE_REGION(region);
  auto out = region->swap_out();
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(*out, kPages);
  EXPECT_EQ(resident(range_.get(), kPages), 0u) << "the range still holds pages";
  EXPECT_TRUE(file_holds(0, kPages, per_page('s')));

  EXPECT_TRUE(holds(range_.get(), range_.size(), per_page('s')));
  const swap_stats st = region->stats();
  EXPECT_EQ(st.swap_outs, 1u);
  EXPECT_EQ(st.pages_out, kPages);
  EXPECT_EQ(st.bytes_written, kPages * page_);
  EXPECT_EQ(st.faults_served, kPages);
  EXPECT_EQ(st.pages_from_file, kPages);
  EXPECT_FALSE(region->handler_error());
  EXPECT_FALSE(region->close());
}

TEST_P(swap_test, PagesNotTouchedSinceTheLastSwapOutStayInTheFile) {
  MAKE_REGION(region);
  ASSERT_TRUE(region->swap_out());
  // Eight pages come back, one of them rewritten; the rest stay out.
  ASSERT_TRUE(holds(range_.get(), 8 * page_, per_page('s')));
  std::memset(range_.get() + 3 * page_, 'W', page_);
  auto again = region->swap_out();
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(*again, 8u) << "only the pages in the range are written again";
  EXPECT_TRUE(file_holds(8, kPages - 8, per_page('s')));
  EXPECT_TRUE(holds(range_.get() + 3 * page_, page_, uniform('W')));
  EXPECT_TRUE(holds(range_.get(), 3 * page_, per_page('s')));
  EXPECT_TRUE(holds(range_.get() + 4 * page_, (kPages - 4) * page_, per_page(static_cast<char>('s' + 4))));
  EXPECT_EQ(region->stats().pages_out, kPages + 8);
  EXPECT_FALSE(region->close());
}

TEST_P(swap_test, APageDroppedAfterComingBackReadsZeros) {
  MAKE_REGION(region);
  ASSERT_TRUE(region->swap_out());
  ASSERT_TRUE(holds(range_.get(), page_, per_page('s')));
  ASSERT_EQ(::madvise(range_.get(), page_, MADV_DONTNEED), 0);
  EXPECT_TRUE(holds(range_.get(), page_, zeros())) << "as without the component";
  EXPECT_TRUE(holds(range_.get() + page_, (kPages - 1) * page_, per_page(static_cast<char>('s' + 1))));
  EXPECT_EQ(region->stats().zero_pages, 1u);
  EXPECT_FALSE(region->close());
}

TEST_P(swap_test, CloseBringsEveryPageBackAndUnregisters) {
  MAKE_REGION(region);
  ASSERT_TRUE(region->swap_out());
  ASSERT_TRUE(holds(range_.get(), 2 * page_, per_page('s')));
  EXPECT_FALSE(region->close());
  EXPECT_EQ(resident(range_.get(), kPages), kPages) << "close() left pages out";
  EXPECT_EQ(region->stats().pages_in_at_close, kPages - 2);
  EXPECT_TRUE(holds(range_.get(), range_.size(), per_page('s')));
  // Unregistered: a dropped page is an ordinary zero fill, with no handler.
  ASSERT_EQ(::madvise(range_.get(), page_, MADV_DONTNEED), 0);
  EXPECT_TRUE(holds(range_.get(), page_, zeros()));
  EXPECT_FALSE(region->close()) << "a second close() has nothing to do";
  auto late = region->swap_out();
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), std::errc::bad_file_descriptor);
}

TEST_P(swap_test, AFailedWriteToTheFilePutsEveryPageBack) {
  MAKE_REGION(region, O_RDONLY);
  auto out = region->swap_out();
  ASSERT_FALSE(out) << "wrote to a read-only descriptor";
  EXPECT_EQ(out.error(), std::errc::bad_file_descriptor);
  EXPECT_EQ(resident(range_.get(), kPages), kPages) << "pages left out after a failed write";
  EXPECT_TRUE(holds(range_.get(), range_.size(), per_page('s')));
  EXPECT_EQ(region->stats().pages_out, 0u);
  EXPECT_EQ(region->stats().faults_served, 0u);
  EXPECT_FALSE(region->close());
}

// A full context (the guests run as root): the kernel's own access to a
// page that is out, here write() reading the range, waits for the handler
// like a touch of the process's.
TEST_P(swap_test, AKernelAccessToAPageThatIsOutIsServedToo) {
  MAKE_REGION(region);
  ASSERT_TRUE(region->swap_out());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  unique_fd rd(fds[0]), wr(fds[1]);
  ASSERT_EQ(::write(wr.get(), range_.get() + 5 * page_, 64), 64) << std::strerror(errno);
  char got[64];
  ASSERT_EQ(::read(rd.get(), got, sizeof got), 64);
  EXPECT_EQ(std::string(got, sizeof got), std::string(64, per_page('s').at(5)));
  EXPECT_EQ(region->stats().pages_from_file, 1u);
  EXPECT_FALSE(region->close());
}

TEST_P(swap_test, CreateRefusesARangeThatIsNotOnePrivateAnonymousMapping) {
  guarded shared = guarded::anon(4 * page_, MAP_SHARED);
  ASSERT_TRUE(shared);
  auto on_shared = swap_region::create(remapper(), shared.get(), shared.size(),
                                       unique_fd(::memfd_create("dontunmap-swap", MFD_CLOEXEC)));
  ASSERT_FALSE(on_shared);
  EXPECT_EQ(on_shared.error(), std::errc::invalid_argument);
  // One page past the payload: a guard page, another mapping.
  auto past = swap_region::create(remapper(), range_.get(), range_.size() + page_,
                                  unique_fd(::memfd_create("dontunmap-swap", MFD_CLOEXEC)));
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error(), std::errc::invalid_argument);
}

TEST_P(swap_test, CreateRefusesAMisalignedOrEmptyRange) {
  unique_fd fd(::memfd_create("dontunmap-swap", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  auto empty = swap_region::create(remapper(), range_.get(), 0, unique_fd(::dup(fd.get())));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), std::errc::invalid_argument);
  auto odd = swap_region::create(remapper(), range_.get() + 1, page_, unique_fd(::dup(fd.get())));
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error(), std::errc::invalid_argument);
  auto short_len = swap_region::create(remapper(), range_.get(), page_ / 2, std::move(fd));
  ASSERT_FALSE(short_len);
  EXPECT_EQ(short_len.error(), std::errc::invalid_argument);
}

TEST_P(swap_test, ARangeRegisteredWithAnotherContextIsBusy) {
  unique_fd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd && errno == EPERM) GTEST_SKIP() << "userfaultfd: not permitted here";
  ASSERT_TRUE(uffd) << std::strerror(errno);
  uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_API, &api), 0);
  uffdio_register reg{.range = {.start = to_u64(range_.get()), .len = range_.size()},
                      .mode = UFFDIO_REGISTER_MODE_MISSING,
                      .ioctls = 0};
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_REGISTER, &reg), 0) << std::strerror(errno);
  auto region = make();
  ASSERT_FALSE(region);
  EXPECT_EQ(region.error(), std::errc::device_or_resource_busy);
}

// Four threads each rewrite and check pages of their own quarter of the
// range (a counter in the page's first and last words) while the main
// thread swaps the range out again and again: every read sees the thread's
// last write, before and after close().
TEST_P(swap_test, ThreadsUsingTheRangeDuringSwapOutsSeeTheirOwnWrites) {
  constexpr std::size_t kThreads = 4, kSlice = kPages / kThreads, kSwapOuts = 12;
  MAKE_REGION(region);
  const std::size_t words = page_ / sizeof(std::uint64_t);
  auto word = [&](std::size_t pg, std::size_t w) {
    return reinterpret_cast<volatile std::uint64_t *>(range_.get() + pg * page_) + w;
  };
  for (std::size_t pg = 0; pg < kPages; ++pg) {
    *word(pg, 0) = 0;
    *word(pg, words - 1) = 0;
  }
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> wrong{0}, ops{0}, started{0};
  std::vector<std::vector<std::uint64_t>> model(kThreads, std::vector<std::uint64_t>(kSlice, 0));
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::uint64_t next = (t + 1) << 40;
      for (std::size_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        const std::size_t i = rng() % kSlice, pg = t * kSlice + i;
        if (*word(pg, 0) != model[t][i] || *word(pg, words - 1) != model[t][i]) ++wrong;
        model[t][i] = ++next;
        *word(pg, 0) = next;
        *word(pg, words - 1) = next;
        ++ops;
        if (n == 100) ++started;
      }
    });
  }
  // Every worker is busy before the first swap-out, so that touches race
  // the moves and the writes (under TCG a thread may start late).
  while (started.load() < kThreads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::size_t written = 0;
  for (std::size_t n = 0; n < kSwapOuts; ++n) {
    auto out = region->swap_out();
    EXPECT_TRUE(out) << out.error().message();
    if (out) written += *out;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  for (auto &th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0u) << "of " << ops.load() << " reads";
  EXPECT_GT(ops.load(), kThreads * 100);
  EXPECT_FALSE(region->handler_error());
  EXPECT_GE(region->stats().faults_served, 1u);
  EXPECT_EQ(region->stats().pages_out, written);
  EXPECT_FALSE(region->close());
  for (std::size_t t = 0; t < kThreads; ++t)
    for (std::size_t i = 0; i < kSlice; ++i) {
      const std::size_t pg = t * kSlice + i;
      EXPECT_EQ(*word(pg, 0), model[t][i]) << "page " << pg;
      EXPECT_EQ(*word(pg, words - 1), model[t][i]) << "page " << pg;
    }
}

DONTUNMAP_INSTANTIATE_BACKENDS(swap_test);

}  // namespace
}  // namespace dontunmap::test
