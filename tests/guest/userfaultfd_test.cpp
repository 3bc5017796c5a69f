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
#include <cstdint>
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
    features_ = api.features;
  }

  void register_range(void *addr, std::size_t len, std::uint64_t mode) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<std::uintptr_t>(addr);
    reg.range.len = len;
    reg.mode = mode;
    ASSERT_EQ(::ioctl(uffd_, UFFDIO_REGISTER, &reg), 0)
        << "UFFDIO_REGISTER: " << std::strerror(errno);
  }
  void register_missing(void *addr, std::size_t len) {
    register_range(addr, len, UFFDIO_REGISTER_MODE_MISSING);
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
  // What UFFDIO_API says the kernel supports.
  std::uint64_t features() const { return features_; }

  // move(), for a context with UFFD_FEATURE_EVENT_REMAP: the mover blocks
  // until the event has been read, so a monitor reads it on a thread of
  // its own; once the move has returned, `stop` tells it that nothing more
  // will come. The event, if any, goes to `msg`.
  remap_result move_reading_event(void *src, std::size_t len, void *hint,
                                  std::optional<uffd_msg> &msg) const {
    const int stop = ::eventfd(0, EFD_CLOEXEC);
    EXPECT_GE(stop, 0);
    std::thread monitor([&] { msg = next_message(stop); });
    const auto r = move(src, len, hint);
    const std::uint64_t one = 1;
    EXPECT_EQ(::write(stop, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    monitor.join();
    ::close(stop);
    return r;
  }

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
  std::uint64_t features_ = 0;
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

// A source registered without UFFD_FEATURE_EVENT_REMAP, moved into a gap
// between two VMAs registered with the same context that it could merge
// with (it came from between them): the destination loses the context, and
// must not take the neighbours' with it by merging with them first.
TEST_P(Userfaultfd, MoveIntoARegisteredGapLeavesTheNeighboursRegistered) {
  open_uffd(0);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t page = page_size();
  auto area = guarded::anon(3 * page);
  auto away = guarded::hole(page);
  ASSERT_TRUE(area && away);
  char *const a = area.get();
  fill(a, 3 * page, per_page('n'));
  // The middle page, moved out by a plain mremap(), keeps its anon_vma and
  // page offset: moved back, it fits between its old neighbours exactly.
  void *const s = ::mremap(a + page, page, page, MREMAP_MAYMOVE | MREMAP_FIXED, away.get());
  ASSERT_EQ(s, static_cast<void *>(away.get())) << "mremap: " << std::strerror(errno);
  register_missing(a, page);
  register_missing(a + 2 * page, page);
  register_missing(s, page);
  ASSERT_FALSE(HasFatalFailure());

  const auto r = move_fixed(s, page, a + page);
  ASSERT_TRUE(r) << describe(r);
  const auto before = procfs::smaps_at(a), after = procfs::smaps_at(a + 2 * page),
             dst = procfs::smaps_at(a + page);
  ASSERT_TRUE(before && after && dst);
  const bool kept = before->has_flag("um") && after->has_flag("um");
  const bool apart = before->area.end == reinterpret_cast<std::uintptr_t>(a + page) &&
                     dst->area.end == reinterpret_cast<std::uintptr_t>(a + 2 * page);
  const bool newest = kept && apart && !dst->has_flag("um");
  const bool legacy = !kept && !apart;  // one VMA, unregistered
  EXPECT_TRUE(allowed(expect(rule::uffd_dropped_destination_unmerged), newest, legacy))
      << "neighbours " << (kept ? "registered" : "unregistered") << ", destination "
      << (apart ? "apart" : "merged") << "\n"
      << procfs::maps_excerpt({{a, 3 * page}});
}

// 6.17+: a FIXED range over several VMAs moves them one at a time, with no
// rollback. An armed VMA moves only on its own, so one after the first
// stops the call with EFAULT - after the VMAs before it have moved, their
// sources left mapped and empty as by any DONTUNMAP move. Older kernels
// refuse the whole range first.
TEST_P(Userfaultfd, FixedMoveStoppedAtAnArmedVmaLeavesTheVmasBeforeItMoved) {
  open_uffd(0);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t page = page_size();
  auto src = guarded::anon(4 * page);
  auto target = guarded::hole(4 * page);
  ASSERT_TRUE(src && target);
  fill(src.get(), 4 * page, per_page('r'));
  register_missing(src.get() + 2 * page, 2 * page);
  ASSERT_EQ(procfs::vmas_in(src.get(), 4 * page).size(), 2u)
      << procfs::maps_excerpt({{src.get(), 4 * page}});

  const auto r = move_fixed(src.get(), 4 * page, target.get());
  const auto layout = procfs::maps_excerpt({{src.get(), 4 * page}, {target.get(), 4 * page}});
  EXPECT_TRUE(refused_with(r, EFAULT, 4 * page)) << layout;
  EXPECT_TRUE(holds(src.get() + 2 * page, 2 * page, per_page('r' + 2)))
      << "the armed VMA lost pages" << layout;
  const auto e = expect(rule::fixed_move_spans_vmas);
  if (e.what == behaviour::legacy) {
    EXPECT_TRUE(holds(src.get(), 2 * page, per_page('r'))) << e.why;
    EXPECT_FALSE(procfs::vma_at(target.get())) << "something moved\n" << e.why << layout;
    return;
  }
  const auto dest = procfs::vmas_in(target.get(), 4 * page);
  ASSERT_EQ(dest.size(), 1u) << layout;
  EXPECT_EQ(dest[0].start, reinterpret_cast<std::uintptr_t>(target.get())) << layout;
  EXPECT_EQ(dest[0].end, reinterpret_cast<std::uintptr_t>(target.get() + 2 * page)) << layout;
  EXPECT_TRUE(holds(target.get(), 2 * page, per_page('r'))) << layout;
  EXPECT_TRUE(holds(src.get(), 2 * page, zeros())) << layout;
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
    const auto r = move_reading_event(m.src.get(), len, nullptr, m.msg);
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

// Bit 57 of /proc/self/pagemap: the entry is uffd-wp protected. nullopt
// where the file cannot be read.
std::optional<bool> pagemap_uffd_wp(const void *addr) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::uint64_t entry = 0;
  const auto offset = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(addr) / page_size() * 8);
  const bool ok = ::pread(fd, &entry, sizeof(entry), offset) == sizeof(entry);
  ::close(fd);
  if (!ok) return std::nullopt;
  return (entry >> 57) & 1;
}

// The uffd-wp state of moved entries (CVE-2025-21696): it moves with the
// registration. Without UFFD_FEATURE_EVENT_REMAP the destination is not
// registered, and its entries must not keep the bit, or registering it
// later gives write-protect faults on memory nobody protected. With the
// feature the destination stays registered and protected. Each test writes
// every page of the destination while it is registered for write-protect
// faults and counts the faults; /proc/self/pagemap shows the bit too where
// the kernel reports it (5.13+).
class UserfaultfdWriteProtect : public userfaultfd_test {
 protected:
  // Skips where the kernel has no uffd-wp (arm64 before 6.10).
  void open_wp(std::uint64_t features) {
    open_uffd(features);
    if (IsSkipped() || HasFatalFailure()) return;
    if (!(this->features() & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
      GTEST_SKIP() << "this kernel has no userfaultfd write-protect";
  }

  void write_protect(void *addr, std::size_t len, bool on) const {
    uffdio_writeprotect wp{};
    wp.range.start = reinterpret_cast<std::uintptr_t>(addr);
    wp.range.len = len;
    wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
    EXPECT_EQ(::ioctl(uffd(), UFFDIO_WRITEPROTECT, &wp), 0)
        << "UFFDIO_WRITEPROTECT: " << std::strerror(errno);
  }

  // A filled source of `len` bytes aligned to `align`, registered for
  // write-protect faults and protected. THP-sized ones must be a huge page
  // (skips otherwise).
  guarded protected_source(std::size_t len, std::size_t align) {
    auto src = guarded::aligned_anon(len, align);
    EXPECT_TRUE(src);
    if (!src) return src;
    if (len >= kHugePage) ::madvise(src.get(), len, MADV_HUGEPAGE);
    fill(src.get(), len, per_page('p'));
    if (len >= kHugePage) {
      const auto smaps = procfs::smaps_at(src.get());
      if (!smaps || smaps->kb("AnonHugePages").value_or(0) == 0) {
        src.reset();
        return src;
      }
    }
    register_range(src.get(), len, UFFDIO_REGISTER_MODE_WP);
    write_protect(src.get(), len, true);
    return src;
  }

  // A shared memfd mapping of `len` bytes whose first half is written and
  // whose second half was never touched, registered for write-protect
  // faults and protected: the written pages carry the uffd-wp bit, the
  // others a uffd-wp PTE marker (5.19+).
  guarded protected_shmem_source(std::size_t len) {
    const int fd = ::memfd_create("uffd-wp", MFD_CLOEXEC);
    EXPECT_GE(fd, 0) << "memfd_create: " << std::strerror(errno);
    if (fd < 0) return guarded();
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(len)), 0);
    auto src = guarded::file(fd, len, MAP_SHARED);
    ::close(fd);
    EXPECT_TRUE(src);
    if (!src) return src;
    fill(src.get(), len / 2, per_page('s'));
    register_range(src.get(), len, UFFDIO_REGISTER_MODE_WP);
    write_protect(src.get(), len, true);
    return src;
  }

  // How many pages of [addr, addr + len) the pagemap shows protected;
  // nullopt where it does not report uffd-wp (or cannot be read).
  static std::optional<std::size_t> protected_pages(const char *addr, std::size_t len,
                                                    bool reported) {
    if (!reported) return std::nullopt;
    std::size_t n = 0;
    for (std::size_t off = 0; off < len; off += page_size()) {
      const auto bit = pagemap_uffd_wp(addr + off);
      if (!bit) return std::nullopt;
      n += *bit;
    }
    return n;
  }

  // Writes one byte to every page of [addr, addr + len) on a thread while
  // this context has the range registered for write-protect faults; each
  // fault is counted and resolved by lifting the protection of the range.
  int write_faults(char *addr, std::size_t len) {
    const int done = ::eventfd(0, EFD_CLOEXEC);
    EXPECT_GE(done, 0);
    std::thread writer([=] {
      for (std::size_t off = 0; off < len; off += page_size())
        reinterpret_cast<volatile char *>(addr)[off] = 'w';
      const std::uint64_t one = 1;
      (void)!::write(done, &one, sizeof(one));
    });
    int faults = 0;
    while (const auto msg = next_message(done)) {
      EXPECT_EQ(msg->event, UFFD_EVENT_PAGEFAULT);
      EXPECT_TRUE(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
          << "a fault that is not a write-protect fault";
      ++faults;
      write_protect(addr, len, false);
    }
    write_protect(addr, len, false);  // a writer still held goes on
    writer.join();
    ::close(done);
    return faults;
  }

  // Moves a protected source of `len` bytes (aligned to `align`) without
  // UFFD_FEATURE_EVENT_REMAP and checks the destination's entries lost
  // the bit.
  void expect_protection_dropped(std::size_t len, std::size_t align) {
    open_wp(0);
    if (IsSkipped() || HasFatalFailure()) return;
    auto src = protected_source(len, align);
    if (!src && !HasFailure()) GTEST_SKIP() << "no transparent huge page for the source";
    ASSERT_TRUE(src);
    expect_moved_protection_dropped(src, len, align);
  }

  // The same for a protected source already made.
  void expect_moved_protection_dropped(const guarded &src, std::size_t len, std::size_t align) {
    const auto bit = pagemap_uffd_wp(src.get());
    const bool reported = bit && *bit;
    // The destination lives in the hole and goes with it.
    const auto dst = guarded::aligned_hole(len, align);
    ASSERT_TRUE(dst);
    const auto r = move_fixed(src.get(), len, dst.get());
    ASSERT_TRUE(r) << describe(r);
    const auto dst_smaps = procfs::smaps_at(dst.get());
    ASSERT_TRUE(dst_smaps);
    EXPECT_FALSE(dst_smaps->has_flag("uw"))
        << "the destination kept a registration its context cannot follow\n"
        << dst_smaps->text;
    const auto marked = protected_pages(dst.get(), len, reported);

    register_range(dst.get(), len, UFFDIO_REGISTER_MODE_WP);
    const int faults = write_faults(dst.get(), len);
    const bool newest = faults == 0 && marked.value_or(0) == 0;
    const bool legacy = faults > 0 && (!marked || *marked == len / page_size());
    EXPECT_TRUE(allowed(expect(rule::uffd_wp_cleared_on_move), newest, legacy))
        << faults << " write-protect faults on a destination nobody protected; pagemap: "
        << (marked ? std::to_string(*marked) + " of " + std::to_string(len / page_size()) +
                         " pages marked"
                   : std::string("no uffd-wp bit reported"));
  }

  static constexpr std::size_t kHugePage = std::size_t(2) << 20;
};

TEST_P(UserfaultfdWriteProtect, MovedPagesLoseProtectionWithoutEventRemap) {
  expect_protection_dropped(4 * page_size(), page_size());
}

TEST_P(UserfaultfdWriteProtect, MovedHugePageLosesProtectionWithoutEventRemap) {
  expect_protection_dropped(kHugePage, kHugePage);
}

// Shmem keeps the protection of a page not mapped as a uffd-wp PTE marker;
// markers move like entries and must go the same way (6.1.176's
// move_ptes() kept them).
TEST_P(UserfaultfdWriteProtect, MovedShmemMarkersLoseProtectionWithoutEventRemap) {
  open_wp(0);
  if (IsSkipped() || HasFatalFailure()) return;
  if (!(features() & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
    GTEST_SKIP() << "this kernel has no userfaultfd write-protect on shmem";
  const std::size_t len = 8 * page_size();
  const auto src = protected_shmem_source(len);
  ASSERT_TRUE(src);
  expect_moved_protection_dropped(src, len, page_size());
}

TEST_P(UserfaultfdWriteProtect, EventRemapKeepsTheProtection) {
  open_wp(UFFD_FEATURE_EVENT_REMAP);
  if (IsSkipped() || HasFatalFailure()) return;
  const std::size_t len = 4 * page_size();
  auto src = protected_source(len, page_size());
  ASSERT_TRUE(src);
  const auto bit = pagemap_uffd_wp(src.get());
  const bool reported = bit && *bit;
  std::optional<uffd_msg> event;
  const auto r = move_reading_event(src.get(), len, nullptr, event);
  ASSERT_TRUE(r) << describe(r);
  auto dst = adopt(r, len);
  ASSERT_TRUE(event) << "no UFFD_EVENT_REMAP arrived";
  EXPECT_EQ(event->event, UFFD_EVENT_REMAP);
  const auto marked = protected_pages(dst.get(), len, reported);
  if (marked) {
    EXPECT_EQ(*marked, len / page_size()) << "the pagemap lost the protection";
  }
  EXPECT_GT(write_faults(dst.get(), len), 0) << "writes to the protected destination did not fault";
}

DONTUNMAP_INSTANTIATE_BACKENDS(Userfaultfd);
DONTUNMAP_INSTANTIATE_BACKENDS(UserfaultfdEventRemap);
DONTUNMAP_INSTANTIATE_BACKENDS(UserfaultfdWriteProtect);

}  // namespace
}  // namespace dontunmap::test
