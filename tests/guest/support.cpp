// SPDX-License-Identifier: GPL-2.0
#include "support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <sstream>
#include <utility>

namespace dontunmap::test {
namespace {

bool g_module_required = false;

std::uintptr_t align_up(std::uintptr_t x, std::size_t a) {
  return (x + a - 1) & ~(std::uintptr_t(a) - 1);
}

bool read_full(int fd, void *buf, std::size_t len) {
  auto *p = static_cast<char *>(buf);
  while (len) {
    const ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

bool write_full(int fd, const void *buf, std::size_t len) {
  auto *p = static_cast<const char *>(buf);
  while (len) {
    const ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::size_t page_size() {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

void set_module_required(bool required) { g_module_required = required; }
bool module_required() { return g_module_required; }

// ---------------------------------------------------------------------------

mapping::mapping(mapping &&o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}

mapping &mapping::operator=(mapping &&o) noexcept {
  if (this != &o) {
    reset();
    addr_ = std::exchange(o.addr_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

mapping::~mapping() { reset(); }

void mapping::reset() {
  if (addr_) ::munmap(addr_, len_);
  addr_ = nullptr;
  len_ = 0;
}

mapping adopt(const remap_result &r, std::size_t len) {
  if (!r) return {};
  return mapping(*r, len);
}

guarded guarded::make(std::size_t len, std::size_t align, int fd, int flags, int prot,
                      bool leave_hole) {
  guarded g;
  const std::size_t page = page_size();
  if (align < page) align = page;
  // Guard page, slack for the alignment, payload, guard page.
  const std::size_t total = len + 2 * page + (align - page);
  void *base =
      ::mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return g;
  g.whole_ = mapping(base, total);
  char *payload =
      reinterpret_cast<char *>(align_up(reinterpret_cast<std::uintptr_t>(base) + page, align));
  if (leave_hole) {
    if (::munmap(payload, len) != 0) return guarded{};
  } else {
    const int map_flags = flags | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0);
    if (::mmap(payload, len, prot, map_flags, fd, 0) == MAP_FAILED) return guarded{};
  }
  g.payload_ = payload;
  g.len_ = len;
  return g;
}

guarded guarded::anon(std::size_t len, int flags, int prot) {
  return make(len, 0, -1, flags, prot, false);
}
guarded guarded::file(int fd, std::size_t len, int flags, int prot) {
  return make(len, 0, fd, flags, prot, false);
}
guarded guarded::hole(std::size_t len) { return make(len, 0, -1, 0, 0, true); }
guarded guarded::aligned_anon(std::size_t len, std::size_t align) {
  return make(len, align, -1, MAP_PRIVATE, PROT_READ | PROT_WRITE, false);
}
guarded guarded::aligned_hole(std::size_t len, std::size_t align) {
  return make(len, align, -1, 0, 0, true);
}

void guarded::reset() {
  whole_.reset();
  payload_ = nullptr;
  len_ = 0;
}

// ---------------------------------------------------------------------------

void fill(void *addr, std::size_t len, pattern p) {
  auto *bytes = static_cast<char *>(addr);
  for (std::size_t off = 0; off < len; off += page_size())
    std::memset(bytes + off, p.at(off / page_size()), std::min(page_size(), len - off));
}

::testing::AssertionResult holds(const void *addr, std::size_t len, pattern p) {
  const auto *bytes = static_cast<const unsigned char *>(addr);
  for (std::size_t off = 0; off < len; ++off) {
    const auto want = static_cast<unsigned char>(p.at(off / page_size()));
    if (bytes[off] != want) {
      return ::testing::AssertionFailure()
             << "byte " << off << " (page " << off / page_size() << ") of [" << addr << ", +" << len
             << ") is 0x" << std::hex << unsigned(bytes[off]) << ", expected 0x" << unsigned(want)
             << std::dec << procfs::maps_excerpt({{addr, len}});
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------

std::string describe(const remap_result &r) {
  std::ostringstream out;
  if (r)
    out << "success at " << *r;
  else
    out << "error " << r.error().value() << " (" << r.error().message() << ")";
  return out.str();
}

::testing::AssertionResult allowed(const expectation &e, bool newest, bool legacy) {
  if ((newest && e.allows_newest()) || (legacy && e.allows_legacy()))
    return ::testing::AssertionSuccess();
  const char *seen = newest   ? "the newest outcome"
                     : legacy ? "the legacy outcome"
                              : "neither the newest nor the legacy outcome";
  return ::testing::AssertionFailure() << "observed " << seen << ", expected " << to_string(e.what);
}

::testing::AssertionResult refused_with(const remap_result &r, int err, std::size_t len) {
  if (!r && r.error() == std::error_code(err, std::system_category()))
    return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << "expected error " << err << " ("
                                               << std::strerror(err) << "), got " << describe(r);
  if (r) {
    failure << procfs::maps_excerpt({{*r, len}});
    ::munmap(*r, len);
  }
  return failure;
}

// ---------------------------------------------------------------------------

void backend_test::SetUp() {
  auto r = dontunmap::remapper::create(which());
  if (!r) {
    const bool absent = r.error() == std::error_code(ENOENT, std::system_category());
    if (which() == backend::module && absent && !module_required())
      GTEST_SKIP() << DONTUNMAP_DEVICE << " is absent (dontunmap.ko not loaded): module-backend "
                   << "test skipped. Guests load the module and pass --require-module.";
    FAIL() << "remapper::create(" << to_string(which()) << ") failed: " << r.error().message()
           << (absent ? " (the module is required here)" : "");
  }
  remapper_.emplace(std::move(*r));
}

void device_test::SetUp() {
  fd_ = ::open(DONTUNMAP_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd_ < 0 && errno == ENOENT && !module_required())
    GTEST_SKIP() << DONTUNMAP_DEVICE << " is absent (dontunmap.ko not loaded)";
  ASSERT_GE(fd_, 0) << DONTUNMAP_DEVICE << ": " << std::strerror(errno);
}

void device_test::TearDown() {
  if (fd_ >= 0) ::close(fd_);
}

void fixed_ranges::make_ranges(std::size_t n, std::size_t pages) {
  len_ = pages * page_size();
  for (std::size_t i = 0; i < n; ++i) {
    srcs_.push_back(guarded::anon(len_));
    holes_.push_back(guarded::hole(len_));
    ASSERT_TRUE(srcs_.back() && holes_.back());
    fill(srcs_.back().get(), len_, content(i));
  }
}

std::vector<dontunmap_remap> fixed_ranges::fixed_moves() const {
  std::vector<dontunmap_remap> v;
  for (std::size_t i = 0; i < srcs_.size(); ++i)
    v.push_back({.old_addr = to_u64(srcs_[i].get()),
                 .old_len = len_,
                 .new_len = len_,
                 .flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED,
                 .new_addr = to_u64(holes_[i].get())});
  return v;
}

::testing::AssertionResult fixed_ranges::moved(std::size_t i) const {
  if (auto r = holds(holes_[i].get(), len_, content(i)); !r) return r << " (element " << i << ")";
  if (auto r = holds(srcs_[i].get(), len_, zeros()); !r) return r << " (source " << i << ")";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult fixed_ranges::source_kept(std::size_t i) const {
  if (auto r = holds(srcs_[i].get(), len_, content(i)); !r) return r << " (source " << i << ")";
  return ::testing::AssertionSuccess();
}

remap_result backend_test::move(void *old_addr, std::size_t len, void *new_addr,
                                unsigned long extra_flags) const {
  remap_request req;
  req.old_addr = old_addr;
  req.old_len = len;
  req.new_len = len;
  req.flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP | extra_flags;
  req.new_addr = new_addr;
  return remap(req);
}

std::string backend_name(const ::testing::TestParamInfo<backend> &info) {
  return to_string(info.param);
}

// ---------------------------------------------------------------------------

sysctl_guard::sysctl_guard(std::string name) : path_("/proc/sys/" + std::move(name)) {
  original_ = procfs::read_text(path_);
}

sysctl_guard::~sysctl_guard() { restore(); }

void sysctl_guard::restore() {
  if (changed_ && original_) procfs::write_text(path_, *original_);
  changed_ = false;
}

bool sysctl_guard::set(std::string_view value) {
  if (!original_) return false;
  changed_ = true;  // a partial write still needs the restore
  return procfs::write_text(path_, value);
}

hugetlb_reservation::hugetlb_reservation() {
  const auto kb = procfs::meminfo_kb("Hugepagesize");
  if (kb && nr_hugepages_.readable()) size_ = *kb * 1024;
}

bool hugetlb_reservation::reserve_one() {
  return size_ != 0 &&
         nr_hugepages_.set(std::to_string(std::stoul(nr_hugepages_.original()) + 1));
}

bool hugetlb_reservation::map_private_at(void *at) const {
  return ::mmap(at, size_, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_FIXED, -1, 0) != MAP_FAILED;
}

overcommit_guard::overcommit_guard()
    : memory_(procfs::read_text("/proc/sys/vm/overcommit_memory")),
      ratio_(procfs::read_text("/proc/sys/vm/overcommit_ratio")),
      kbytes_(procfs::read_text("/proc/sys/vm/overcommit_kbytes")) {}

bool overcommit_guard::readable() const { return memory_ && ratio_ && kbytes_; }

bool overcommit_guard::set_never(int ratio) {
  if (!readable()) return false;
  changed_ = true;
  // The limit first, then the mode: never a moment of mode 2 with the old,
  // possibly generous, limit or of a tiny limit the heuristic mode ignores.
  return procfs::write_text("/proc/sys/vm/overcommit_ratio", std::to_string(ratio)) &&
         procfs::write_text("/proc/sys/vm/overcommit_memory", "2");
}

overcommit_guard::~overcommit_guard() { restore(); }

void overcommit_guard::restore() {
  if (!changed_) return;
  changed_ = false;
  // The mode first, so the system can allocate again at once.
  procfs::write_text("/proc/sys/vm/overcommit_memory", *memory_);
  if (*kbytes_ != "0")
    procfs::write_text("/proc/sys/vm/overcommit_kbytes", *kbytes_);
  else
    procfs::write_text("/proc/sys/vm/overcommit_ratio", *ratio_);
}

// ---------------------------------------------------------------------------

child_process::child_process(std::function<int()> body, std::function<long()> prepare) {
  int down[2], up[2];
  if (::pipe2(down, O_CLOEXEC) != 0) return;
  if (::pipe2(up, O_CLOEXEC) != 0) {
    ::close(down[0]);
    ::close(down[1]);
    return;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {down[0], down[1], up[0], up[1]}) ::close(fd);
    return;
  }
  if (pid == 0) {
    // Nothing may leave this block but _exit(): an exception thrown out of
    // `body` (bad_alloc under a refused charge, say) would otherwise land
    // in gtest, and the child would go on running the remaining tests.
    try {
      ::close(down[1]);
      ::close(up[0]);
      const long prepared = prepare ? prepare() : 0;
      char go = 0;
      if (!write_full(up[1], &prepared, sizeof(prepared)) || !read_full(down[0], &go, 1))
        ::_exit(127);
      const int result = body();
      ::_exit(write_full(up[1], &result, sizeof(result)) ? 0 : 127);
    } catch (const std::exception &e) {
      const char *what = e.what();
      (void)!::write(STDERR_FILENO, what, std::strlen(what));
      (void)!::write(STDERR_FILENO, "\n", 1);
      ::_exit(126);
    } catch (...) {
      ::_exit(126);
    }
  }
  ::close(down[0]);
  ::close(up[1]);
  pid_ = pid;
  to_child_ = down[1];
  from_child_ = up[0];
}

child_process::~child_process() {
  if (to_child_ >= 0) ::close(to_child_);
  if (from_child_ >= 0) ::close(from_child_);
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::optional<long> child_process::prepared() {
  if (!prepared_) {
    long value = 0;
    if (from_child_ < 0 || !read_full(from_child_, &value, sizeof(value))) return std::nullopt;
    prepared_ = value;
  }
  return prepared_;
}

void child_process::go() {
  const char go = 1;
  if (to_child_ >= 0) write_full(to_child_, &go, 1);
}

std::optional<int> child_process::result() {
  int value = 0;
  const bool ok = prepared() && read_full(from_child_, &value, sizeof(value));
  int status = 0;
  if (pid_ > 0 && ::waitpid(pid_, &status, 0) == pid_) {
    pid_ = -1;
    status_ = status;
  }
  if (!ok) return std::nullopt;
  return value;
}

std::string child_process::ending() const {
  if (status_ < 0) return "not reaped";
  if (WIFSIGNALED(status_)) return "signal " + std::to_string(WTERMSIG(status_));
  const int code = WEXITSTATUS(status_);
  return "exit status " + std::to_string(code) + (code == 126 ? " (an exception)" : "");
}

}  // namespace dontunmap::test
