// SPDX-License-Identifier: GPL-2.0
//
// Shared and file-backed sources (5.13+ natively, every kernel through the
// module): after the move both ranges map the same object, so the source
// reads the data again from the page cache, the destination holds the same
// data, and for MAP_SHARED a write through one is seen through the other.
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support.hpp"

namespace dontunmap::test {
namespace {

bool is_writable_tmpfs(const std::string &dir) {
  struct statfs fs {};
  return !dir.empty() && ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
         ::access(dir.c_str(), W_OK) == 0;
}

// A writable tmpfs directory: $TMPDIR, /dev/shm, /tmp, /run or / when one
// is tmpfs (an initramfs root is); else a tmpfs of our own, mounted over
// /mnt in a private mount namespace of this process, out of sight of the
// rest of the system.
std::optional<std::string> tmpfs_dir(std::string &why_not) {
  static std::optional<std::string> found;
  if (found) return found;
  std::vector<std::string> candidates;
  if (const char *t = std::getenv("TMPDIR")) candidates.emplace_back(t);
  for (const char *d : {"/dev/shm", "/tmp", "/run", "/"}) candidates.emplace_back(d);
  for (const auto &d : candidates)
    if (is_writable_tmpfs(d)) return found = d;
  if (::unshare(CLONE_NEWNS) != 0 ||
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("tmpfs", "/mnt", "tmpfs", 0, "size=16m") != 0) {
    why_not =
        std::string("no tmpfs among $TMPDIR, /dev/shm, /tmp, /run, / and mounting one failed: ") +
        std::strerror(errno);
    return std::nullopt;
  }
  return found = "/mnt";
}

class SharedMappings : public backend_test {
 protected:
  // Moves `src` and checks both ranges show `p`. Returns the destination,
  // empty when the backend (legacy native) refused as it must.
  mapping move_and_expect_data(const guarded &src, pattern p) {
    const std::size_t len = src.size();
    const auto e = expect(rule::non_anonymous_sources);
    const auto r = move(src.get(), len);
    if (e.what == behaviour::legacy) {
      EXPECT_TRUE(refused_with(r, EINVAL, len)) << e.why;
      EXPECT_TRUE(holds(src.get(), len, p));
      return {};
    }
    EXPECT_TRUE(r) << describe(r) << "\n" << e.why;
    auto dst = adopt(r, len);
    if (!dst) return dst;
    EXPECT_TRUE(holds(dst.get(), len, p)) << "the destination lacks the data";
    EXPECT_TRUE(holds(src.get(), len, p)) << "the source must read the object's data again";
    return dst;
  }

  // MAP_SHARED: one object behind both ranges.
  void expect_same_pages(char *src, char *dst) {
    dst[0] = 'Z';
    EXPECT_EQ(src[0], 'Z') << "a write through the destination is not seen at the source"
                           << procfs::maps_excerpt({{src, page_size()}, {dst, page_size()}});
  }

  static std::size_t len() { return 8 * page_size(); }
};

TEST_P(SharedMappings, SharedAnonymousSourceReadsTheDataAgain) {
  auto src = guarded::anon(len(), MAP_SHARED);
  ASSERT_TRUE(src);
  fill(src.get(), len(), per_page('A'));
  auto dst = move_and_expect_data(src, per_page('A'));
  if (dst) expect_same_pages(src.get(), dst.get());
}

TEST_P(SharedMappings, MemfdSourceReadsTheDataAgain) {
  const int fd = ::memfd_create("dontunmap-guest", MFD_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(len())), 0);
  auto src = guarded::file(fd, len(), MAP_SHARED);
  ::close(fd);
  ASSERT_TRUE(src);
  fill(src.get(), len(), per_page('M'));
  auto dst = move_and_expect_data(src, per_page('M'));
  if (dst) expect_same_pages(src.get(), dst.get());
}

// The file is written with pwrite(), not through the mapping: what the
// source reads afterwards comes from the page cache.
class tmpfs_file {
 public:
  tmpfs_file(std::size_t len, pattern p, std::string &why_not) {
    const auto dir = tmpfs_dir(why_not);
    if (!dir) return;
    fd_ = ::open(dir->c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      why_not = "O_TMPFILE in " + *dir + ": " + std::strerror(errno);
      return;
    }
    std::vector<char> data(len);
    fill(data.data(), len, p);
    if (::pwrite(fd_, data.data(), len, 0) != static_cast<ssize_t>(len)) {
      why_not = std::string("pwrite: ") + std::strerror(errno);
      ::close(std::exchange(fd_, -1));
    }
  }
  ~tmpfs_file() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

TEST_P(SharedMappings, TmpfsFileSourceReadsTheFileAgain) {
  std::string why_not;
  tmpfs_file file(len(), per_page('T'), why_not);
  if (file.fd() < 0) GTEST_SKIP() << why_not;
  auto src = guarded::file(file.fd(), len(), MAP_SHARED);
  ASSERT_TRUE(src);
  auto dst = move_and_expect_data(src, per_page('T'));
  if (dst) expect_same_pages(src.get(), dst.get());
}

// MAP_PRIVATE: the copied-on-write pages move, the source sees the file.
TEST_P(SharedMappings, PrivateFileSourceReadsTheFileAgain) {
  std::string why_not;
  tmpfs_file file(len(), uniform('F'), why_not);
  if (file.fd() < 0) GTEST_SKIP() << why_not;
  auto src = guarded::file(file.fd(), len(), MAP_PRIVATE);
  ASSERT_TRUE(src);
  const std::size_t page = page_size();
  std::memset(src.get() + page, 'P', page);  // page 1 becomes a private copy

  const auto e = expect(rule::non_anonymous_sources);
  const auto r = move(src.get(), len());
  if (e.what == behaviour::legacy) {
    EXPECT_TRUE(refused_with(r, EINVAL, len())) << e.why;
    return;
  }
  ASSERT_TRUE(r) << describe(r) << "\n" << e.why;
  auto dst = adopt(r, len());
  EXPECT_TRUE(holds(dst.get(), page, uniform('F')));
  EXPECT_TRUE(holds(dst.get() + page, page, uniform('P'))) << "the private copy did not move";
  EXPECT_TRUE(holds(dst.get() + 2 * page, len() - 2 * page, uniform('F')));
  EXPECT_TRUE(holds(src.get(), len(), uniform('F'))) << "the source must read the file again";
}

DONTUNMAP_INSTANTIATE_BACKENDS(SharedMappings);

}  // namespace
}  // namespace dontunmap::test
