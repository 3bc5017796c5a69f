// SPDX-License-Identifier: LGPL-2.1-or-later
//
// unique_fd owns exactly one descriptor and closes it exactly once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <optional>

#include "test_util.hpp"

namespace dontunmap::test {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }
int open_null() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

TEST(UniqueFd, DefaultHoldsNothing) {
  unique_fd fd;
  EXPECT_EQ(fd.get(), -1);
  EXPECT_FALSE(fd);
}

TEST(UniqueFd, DestructionCloses) {
  const int raw = open_null();
  ASSERT_GE(raw, 0);
  { unique_fd fd(raw); EXPECT_TRUE(fd); }
  EXPECT_FALSE(is_open(raw)) << "fd " << raw << " still open";
}

TEST(UniqueFd, MoveConstructionTransfersOwnership) {
  const int raw = open_null();
  ASSERT_GE(raw, 0);
  unique_fd a(raw);
  unique_fd b(std::move(a));
  EXPECT_EQ(a.get(), -1);
  EXPECT_EQ(b.get(), raw);
}

// A moved-from owner destroyed after the descriptor's number was reused
// must not close the newcomer.
TEST(UniqueFd, MovedFromOwnerClosesNothing) {
  std::optional<unique_fd> a(std::in_place, open_null());
  const int raw = a->get();
  ASSERT_GE(raw, 0);
  unique_fd b(std::move(*a));
  b.reset();
  const int reused = open_null();
  ASSERT_GE(reused, 0);
  a.reset();
  EXPECT_TRUE(is_open(reused)) << "fd " << reused << " (was " << raw << ") closed twice";
  ::close(reused);
}

TEST(UniqueFd, MoveAssignmentClosesPrevious) {
  const int first = open_null(), second = open_null();
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  unique_fd a(first), b(second);
  a = std::move(b);
  EXPECT_FALSE(is_open(first)) << "fd " << first << " still open";
  EXPECT_EQ(a.get(), second);
  EXPECT_EQ(b.get(), -1);
}

TEST(UniqueFd, SelfMoveAssignmentKeepsDescriptor) {
  const int raw = open_null();
  ASSERT_GE(raw, 0);
  unique_fd a(raw);
  unique_fd &alias = a;
  a = std::move(alias);
  EXPECT_EQ(a.get(), raw);
  EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
  const int raw = open_null();
  ASSERT_GE(raw, 0);
  { unique_fd fd(raw); EXPECT_EQ(fd.release(), raw); EXPECT_EQ(fd.get(), -1); }
  EXPECT_TRUE(is_open(raw)) << "released fd " << raw << " was closed";
  ::close(raw);
}

TEST(UniqueFd, ResetClosesOldAndTakesNew) {
  const int first = open_null(), second = open_null();
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  unique_fd fd(first);
  fd.reset(second);
  EXPECT_FALSE(is_open(first)) << "fd " << first << " still open";
  EXPECT_EQ(fd.get(), second);
}

TEST(UniqueFd, ClosingPreservesErrno) {
  unique_fd fd(open_null());
  ASSERT_TRUE(fd);
  errno = EXDEV;
  fd.reset();
  EXPECT_EQ(errno, EXDEV);
}

}  // namespace
}  // namespace dontunmap::test
