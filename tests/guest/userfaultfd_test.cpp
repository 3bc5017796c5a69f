// SPDX-License-Identifier: GPL-2.0
//
// userfaultfd and DONTUNMAP, the pairing its users (Android's GC, ChromeOS
// swap) rely on: the source keeps its registration, so a touch there after
// the move reaches the handler, which fills it from the moved copy (as LTP's
// mremap07 does). The destination keeps the registration only for contexts
// with UFFD_FEATURE_EVENT_REMAP, which are told of the move.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

#include "support.hpp"

namespace dontunmap::test {
namespace {

// A generous bound on how long a handler waits for a message that should
// already be queued: it ends a broken run, it orders nothing.
constexpr int kPollTimeoutMs = 60'000;

class userfaultfd_test : public backend_test {
 protected:
  void TearDown() override {
    if (uffd_ >= 0) ::close(uffd_);
  }

  // Opens a context with `features`; skips when the kernel has none.
  void open_uffd(std::uint64_t features) {
    uffd_ = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (uffd_ < 0 && (errno == ENOSYS || errno == EOPNOTSUPP))
      GTEST_SKIP() << "userfaultfd: " << std::strerror(errno);
    ASSERT_GE(uffd_, 0) << "userfaultfd: " << std::strerror(errno);
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = features;
    ASSERT_EQ(::ioctl(uffd_, UFFDIO_API, &api), 0) << "UFFDIO_API: " << std::strerror(errno);
  }

  void register_missing(void *addr, std::size_t len) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<std::uintptr_t>(addr);
    reg.range.len = len;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    ASSERT_EQ(::ioctl(uffd_, UFFDIO_REGISTER, &reg), 0)
        << "UFFDIO_REGISTER: " << std::strerror(errno);
  }

  // The next message, or nullopt when none arrives (or `stop` is signalled
  // while none is queued).
  std::optional<uffd_msg> next_message(int stop_fd = -1) const {
    pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    for (;;) {
      const int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, kPollTimeoutMs);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      uffd_msg msg{};
      if (::read(uffd_, &msg, sizeof(msg)) == sizeof(msg)) return msg;
      if (errno != EAGAIN) return std::nullopt;
      if (stop_fd >= 0 && (fds[1].revents & POLLIN)) return std::nullopt;
    }
  }

  int uffd() const { return uffd_; }

  // A registered, filled private anonymous source, moved away.
  struct moved {
    guarded src;
    mapping dst;
  };
  moved register_and_move(std::size_t len) {
    moved m{guarded::anon(len), {}};
    EXPECT_TRUE(m.src);
    if (!m.src) return m;
    fill(m.src.get(), len, per_page('u'));
    register_missing(m.src.get(), len);
    const auto r = move(m.src.get(), len);
    EXPECT_TRUE(r) << describe(r);
    m.dst = adopt(r, len);
    return m;
  }

 private:
  int uffd_ = -1;
};

class Userfaultfd : public userfaultfd_test {};

TEST_P(Userfaultfd, SourceKeepsRegistration) {
  open_uffd(0);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t len = 4 * page_size();
  auto m = register_and_move(len);
  ASSERT_TRUE(m.dst);
  const auto smaps = procfs::smaps_at(m.src.get());
  ASSERT_TRUE(smaps);
  EXPECT_TRUE(smaps->has_flag("um")) << "the source lost its MISSING registration\n" << smaps->text;
}

TEST_P(Userfaultfd, FaultOnMovedSourceReachesHandler) {
  open_uffd(0);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t page = page_size();
  const std::size_t len = 4 * page;
  auto m = register_and_move(len);
  ASSERT_TRUE(m.dst);
  ASSERT_TRUE(holds(m.dst.get(), len, per_page('u')));

  // The toucher blocks in the fault until the handler below resolves it.
  const std::size_t touched_page = 2;
  char *const touched = m.src.get() + touched_page * page + 100;
  std::atomic<int> seen{-1};
  std::thread toucher(
      [&] { seen = static_cast<unsigned char>(*reinterpret_cast<volatile char *>(touched)); });

  const auto msg = next_message();
  bool resolved = false;
  if (msg) {
    EXPECT_EQ(msg->event, UFFD_EVENT_PAGEFAULT);
    const auto fault_page = msg->arg.pagefault.address & ~std::uint64_t(page - 1);
    EXPECT_EQ(fault_page, reinterpret_cast<std::uintptr_t>(m.src.get() + touched_page * page))
        << "the fault was not reported at the touched source page";
    // Resolve it from the moved copy, as a GC or swap handler would.
    uffdio_copy copy{};
    copy.dst = reinterpret_cast<std::uintptr_t>(m.src.get() + touched_page * page);
    copy.src = reinterpret_cast<std::uintptr_t>(m.dst.get() + touched_page * page);
    copy.len = page;
    resolved = ::ioctl(uffd(), UFFDIO_COPY, &copy) == 0;
    EXPECT_TRUE(resolved) << "UFFDIO_COPY: " << std::strerror(errno);
  }
  if (!resolved) {
    // Let the toucher go so the test can end: a zero page, or the fault
    // was never held.
    uffdio_zeropage zero{};
    zero.range.start = reinterpret_cast<std::uintptr_t>(m.src.get() + touched_page * page);
    zero.range.len = page;
    ::ioctl(uffd(), UFFDIO_ZEROPAGE, &zero);
  }
  toucher.join();
  ASSERT_TRUE(msg) << "no fault reached the handler within " << kPollTimeoutMs << " ms"
                   << procfs::maps_excerpt({{m.src.get(), len}});
  EXPECT_EQ(seen.load(), static_cast<unsigned char>(per_page('u').at(touched_page)))
      << "the toucher did not see the original data";
}

TEST_P(Userfaultfd, DestinationUnregisteredWithoutEventRemap) {
  open_uffd(0);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t len = 4 * page_size();
  auto m = register_and_move(len);
  ASSERT_TRUE(m.dst);
  const auto smaps = procfs::smaps_at(m.dst.get());
  ASSERT_TRUE(smaps);
  EXPECT_FALSE(smaps->has_flag("um"))
      << "the destination kept a registration its context cannot follow\n"
      << smaps->text;
}

class UserfaultfdEventRemap : public userfaultfd_test {
 protected:
  struct moved_with_event {
    guarded src;
    mapping dst;
    std::optional<uffd_msg> msg;
  };

  moved_with_event register_and_move_with_event(std::size_t len) {
    moved_with_event m{guarded::anon(len), {}, {}};
    EXPECT_TRUE(m.src);
    if (!m.src) return m;
    fill(m.src.get(), len, per_page('v'));
    register_missing(m.src.get(), len);
    // The mover blocks until the event has been read, so the monitor reads
    // on a thread of its own; once the move has returned, `stop` tells it
    // that nothing more will come.
    const int stop = ::eventfd(0, EFD_CLOEXEC);
    EXPECT_GE(stop, 0);
    std::thread monitor([&] { m.msg = next_message(stop); });
    const auto r = move(m.src.get(), len);
    const std::uint64_t one = 1;
    EXPECT_EQ(::write(stop, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    monitor.join();
    ::close(stop);
    EXPECT_TRUE(r) << describe(r);
    m.dst = adopt(r, len);
    return m;
  }
};

TEST_P(UserfaultfdEventRemap, EventReportsTheMove) {
  open_uffd(UFFD_FEATURE_EVENT_REMAP);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t len = 4 * page_size();
  auto m = register_and_move_with_event(len);
  ASSERT_TRUE(m.dst);
  ASSERT_TRUE(m.msg) << "no UFFD_EVENT_REMAP arrived";
  EXPECT_EQ(m.msg->event, UFFD_EVENT_REMAP);
  EXPECT_EQ(m.msg->arg.remap.from, reinterpret_cast<std::uintptr_t>(m.src.get()));
  EXPECT_EQ(m.msg->arg.remap.to, reinterpret_cast<std::uintptr_t>(m.dst.get()));
  EXPECT_EQ(m.msg->arg.remap.len, len);
}

TEST_P(UserfaultfdEventRemap, DestinationKeepsRegistration) {
  open_uffd(UFFD_FEATURE_EVENT_REMAP);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t len = 4 * page_size();
  auto m = register_and_move_with_event(len);
  ASSERT_TRUE(m.dst);
  const auto dst = procfs::smaps_at(m.dst.get());
  const auto src = procfs::smaps_at(m.src.get());
  ASSERT_TRUE(dst && src);
  EXPECT_TRUE(dst->has_flag("um")) << "the destination lost the registration\n" << dst->text;
  EXPECT_TRUE(src->has_flag("um")) << "the source lost the registration\n" << src->text;
}

DONTUNMAP_INSTANTIATE_BACKENDS(Userfaultfd);
DONTUNMAP_INSTANTIATE_BACKENDS(UserfaultfdEventRemap);

}  // namespace
}  // namespace dontunmap::test
