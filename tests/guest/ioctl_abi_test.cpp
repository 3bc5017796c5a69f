// SPDX-License-Identifier: GPL-2.0
//
// DONTUNMAP_IOC_REMAP as an ABI, below the library: where the caller's
// struct may lie. The destination is written back into it after the move,
// so a struct the call could not write, or one in a range the move empties
// (the source) or replaces (a FIXED target), is refused with EFAULT before
// anything moves: never a move reported as failed, an emptied source
// populated again, moved data overwritten, or a wait on a userfaultfd
// monitor that is the caller itself.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "support.hpp"

namespace dontunmap::test {
namespace {

// A generous bound for a call that must return at once: it turns a hang
// into a failure, it orders nothing.
constexpr unsigned kHangSeconds = 20;

class ioctl_abi_test : public device_test {
 protected:
  void SetUp() override {
    device_test::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    len_ = 4 * page_size();
    src_ = guarded::anon(len_);
    hole_ = guarded::hole(len_);
    ASSERT_TRUE(src_ && hole_);
    fill(src_.get(), len_, per_page('a'));
  }

  // The raw ioctl: 0, or -1 with errno.
  int remap(dontunmap_remap *args) const { return ::ioctl(fd_, DONTUNMAP_IOC_REMAP, args); }

  static dontunmap_remap move_args(const void *from, std::size_t len, const void *to,
                                   std::uint64_t extra_flags = MREMAP_FIXED) {
    return {.old_addr = reinterpret_cast<std::uintptr_t>(from),
            .old_len = len,
            .new_len = len,
            .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | extra_flags,
            .new_addr = reinterpret_cast<std::uintptr_t>(to)};
  }

  // Every test moves src_ (populated, page i holding 'a' + i) to hole_.
  std::size_t len_ = 0;
  guarded src_, hole_;
};

TEST_F(ioctl_abi_test, RemapStoresTheDestinationItChose) {
  dontunmap_remap args = move_args(src_.get(), len_, hole_.get(), 0);  // a hint

  ASSERT_EQ(remap(&args), 0) << std::strerror(errno);
  mapping moved(reinterpret_cast<void *>(args.new_addr), len_);
  EXPECT_TRUE(holds(moved.get(), len_, per_page('a'))) << "new_addr does not hold the moved pages";
}

// The struct sits in the first page of the range it moves. Before the fix
// the move happened and the write-back faulted a page into the emptied
// source.
TEST_F(ioctl_abi_test, ArgumentsInsideTheSourceAreRefusedBeforeMoving) {
  auto *args = reinterpret_cast<dontunmap_remap *>(src_.get());
  *args = move_args(src_.get(), len_, hole_.get());
  const dontunmap_remap sent = *args;

  EXPECT_EQ(remap(args), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_EQ(std::memcmp(args, &sent, sizeof(sent)), 0) << "the struct changed";
  EXPECT_TRUE(holds(src_.get() + page_size(), len_ - page_size(), per_page('b')))
      << "the source lost its pages";
  EXPECT_FALSE(procfs::vma_at(hole_.get()).has_value())
      << "something was mapped at the target" << procfs::maps_excerpt({{hole_.get(), len_}});
}

// mremap()'s own argument rules answer first: a call they refuse is refused
// with their errno wherever its struct lies, and its struct is untouched.
TEST_F(ioctl_abi_test, ArgumentRulesAnswerBeforeTheStructChecks) {
  auto *args = reinterpret_cast<dontunmap_remap *>(src_.get());
  *args = move_args(src_.get(), len_, hole_.get());
  args->new_len = 2 * len_;  // DONTUNMAP does not resize: EINVAL
  const dontunmap_remap sent = *args;

  EXPECT_EQ(remap(args), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(std::memcmp(args, &sent, sizeof(sent)), 0) << "the struct changed";
}

// The same inside a source registered with userfaultfd (MISSING), and the
// caller is the only thread that could serve a fault there: a write-back
// that faults waits forever. A child registers (a fork would not inherit
// the registration) and calls under an alarm, so that a hang fails the test.
TEST_F(ioctl_abi_test, ArgumentsInARegisteredSourceDoNotWaitForTheMonitor) {
  enum child_exit { refused = 0, not_refused = 1, no_uffd = 2, setup_failed = 3 };
  auto *args = reinterpret_cast<dontunmap_remap *>(src_.get());
  *args = move_args(src_.get(), len_, hole_.get());

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    const int uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC));
    if (uffd < 0) ::_exit(no_uffd);
    uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
    uffdio_register reg{};
    reg.range = {.start = reinterpret_cast<std::uintptr_t>(src_.get()), .len = len_};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd, UFFDIO_API, &api) != 0 || ::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
      ::_exit(setup_failed);
    ::alarm(kHangSeconds);
    ::_exit(remap(args) == -1 && errno == EFAULT ? refused : not_refused);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == no_uffd) GTEST_SKIP() << "no userfaultfd";
  EXPECT_FALSE(WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      << "the call waited " << kHangSeconds << " s on its own userfaultfd";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == refused)
      << "the child's call was not refused with EFAULT (status " << status << ")";
}

// The struct lies in the FIXED target, which the move replaces. Before the
// fix the write-back landed in the moved data.
TEST_F(ioctl_abi_test, ArgumentsInsideAFixedTargetAreRefusedBeforeMoving) {
  auto target = guarded::anon(len_);
  ASSERT_TRUE(target);
  fill(target.get(), len_, per_page('t'));
  auto *args = reinterpret_cast<dontunmap_remap *>(target.get() + page_size() - sizeof(dontunmap_remap));
  *args = move_args(src_.get(), len_, target.get());

  EXPECT_EQ(remap(args), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_TRUE(holds(src_.get(), len_, per_page('a'))) << "the source lost its pages";
  EXPECT_TRUE(holds(target.get() + page_size(), len_ - page_size(), per_page('u')))
      << "the target was replaced";
}

// A struct the caller may read but not write: refused before the move,
// rather than moved and then reported as failed.
TEST_F(ioctl_abi_test, ReadOnlyArgumentsAreRefusedBeforeMoving) {
  auto arg_page = guarded::anon(page_size());
  ASSERT_TRUE(arg_page);
  auto *args = reinterpret_cast<dontunmap_remap *>(arg_page.get());
  *args = move_args(src_.get(), len_, hole_.get());
  ASSERT_EQ(::mprotect(arg_page.get(), page_size(), PROT_READ), 0) << std::strerror(errno);

  EXPECT_EQ(remap(args), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_TRUE(holds(src_.get(), len_, per_page('a'))) << "the source lost its pages";
  EXPECT_FALSE(procfs::vma_at(hole_.get()).has_value())
      << "something was mapped at the target" << procfs::maps_excerpt({{hole_.get(), len_}});
}

}  // namespace
}  // namespace dontunmap::test
