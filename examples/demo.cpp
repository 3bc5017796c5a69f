// SPDX-License-Identifier: LGPL-2.1-or-later
//
// dontunmap-demo: the job MREMAP_DONTUNMAP exists for, step by step.
//
// A buffer is filled and registered with userfaultfd. Its pages are moved
// away with MREMAP_DONTUNMAP: the buffer stays mapped (nobody else can map
// into it) but is empty. A thread then reads the buffer; every first touch
// of a page faults, and a handler thread serves the fault by copying that
// page back from the moved copy (UFFDIO_COPY). This is how Android's
// userfaultfd garbage collector and ChromeOS userspace swap use it.
//
//   usage: dontunmap-demo [native|module|auto] [MiB]     (default: auto 64)
//
// Exit status 0 when every page read back holds what was written.
#include <dontunmap/dontunmap.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

namespace {

using dontunmap::backend;

[[noreturn]] void die(const char *what, int err) {
  std::printf("error: %s: %s\n", what, std::strerror(err));
  std::printf("result: FAIL\n");
  std::exit(1);
}

// The value of the 8-byte word at index i: differs per word and per page.
std::uint64_t pattern(std::size_t i) { return i * 0x9E3779B97F4A7C15ull + 0xD0'47'00'00; }

double now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// userfaultfd(2), user-mode faults only where the kernel allows it (5.11+,
// works without root), else a full descriptor (root or
// vm.unprivileged_userfaultfd=1).
int open_userfaultfd() {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0 && errno == EINVAL) fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) die("userfaultfd", errno);
  uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
  if (::ioctl(fd, UFFDIO_API, &api) != 0) die("UFFDIO_API", errno);
  return fd;
}

struct fault_server {
  int uffd;
  int stop;  // eventfd: the handler returns once it is readable
  char *buffer;
  const char *moved;
  std::size_t page;
  std::atomic<std::size_t> served{0};
  int error = 0;

  // Serves missing-page faults on the buffer from the moved copy.
  void run() {
    pollfd fds[2] = {{.fd = uffd, .events = POLLIN, .revents = 0},
                     {.fd = stop, .events = POLLIN, .revents = 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        error = errno;
        return;
      }
      if (fds[1].revents) return;
      uffd_msg msg;
      const ssize_t n = ::read(uffd, &msg, sizeof msg);
      if (n < 0 && errno == EAGAIN) continue;
      if (n != sizeof msg) {
        error = n < 0 ? errno : EIO;
        return;
      }
      if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
      const std::uintptr_t at = msg.arg.pagefault.address & ~(std::uintptr_t{page} - 1);
      const std::size_t offset = at - reinterpret_cast<std::uintptr_t>(buffer);
      uffdio_copy copy{.dst = at,
                       .src = reinterpret_cast<std::uintptr_t>(moved + offset),
                       .len = page,
                       .mode = 0,
                       .copy = 0};
      while (::ioctl(uffd, UFFDIO_COPY, &copy) != 0 && errno == EAGAIN) {
      }
      // EEXIST: another fault on the same page was served first.
      if (copy.copy < 0 && copy.copy != -EEXIST) {
        error = static_cast<int>(-copy.copy);
        return;
      }
      served.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

// Counts words of [p, p+len) that differ from the pattern.
std::size_t mismatches(const char *p, std::size_t len) {
  const auto *w = reinterpret_cast<const std::uint64_t *>(p);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < len / sizeof *w; ++i) bad += w[i] != pattern(i);
  return bad;
}

const char *how(backend b) {
  return b == backend::module ? "ioctl(DONTUNMAP_IOC_REMAP) on /dev/dontunmap"
                              : "the kernel's own mremap(2)";
}

}  // namespace

int main(int argc, char **argv) {
  const std::string_view arg = argc > 1 ? argv[1] : "auto";
  const backend wanted = arg == "native"   ? backend::native
                         : arg == "module" ? backend::module
                         : arg == "auto"   ? backend::automatic
                                           : backend(-1);
  const long mib = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 64;
  if (wanted == backend(-1) || mib <= 0 || argc > 3) {
    std::printf("usage: %s [native|module|auto] [MiB]\n", argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t len = static_cast<std::size_t>(mib) << 20;
  const std::size_t pages = len / page;

  utsname u{};
  ::uname(&u);
  const auto &kernel = dontunmap::probe_native();
  std::printf("step 1: kernel %s %s; its own MREMAP_DONTUNMAP moves private anon: %s, "
              "shared: %s, compares page-aligned lengths: %s\n",
              u.release, u.machine, kernel.private_anon ? "yes" : "no",
              kernel.shared ? "yes" : "no", kernel.aligned_lengths ? "yes" : "no");
  auto remapper = dontunmap::remapper::create(wanted);
  if (!remapper) die("open " DONTUNMAP_DEVICE, remapper.error().value());
  if (const dontunmap::device *dev = remapper->module_device()) {
    auto info = dev->info();
    if (!info) die("DONTUNMAP_IOC_INFO", info.error().value());
    std::printf("        backend %s; " DONTUNMAP_DEVICE " is open: ABI %" PRIu32
                ", features 0x%" PRIx64 "\n",
                to_string(wanted), info->abi_version, static_cast<std::uint64_t>(info->features));
  } else {
    std::printf("        backend %s; " DONTUNMAP_DEVICE " is %s\n", to_string(wanted),
                wanted == backend::native ? "not used" : "absent: only native moves are possible");
  }

  char *buffer = static_cast<char *>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (buffer == MAP_FAILED) die("mmap", errno);
  auto *words = reinterpret_cast<std::uint64_t *>(buffer);
  for (std::size_t i = 0; i < len / sizeof *words; ++i) words[i] = pattern(i);
  std::printf("step 2: mapped %ld MiB (%zu pages) at %p and filled it with a pattern\n", mib,
              pages, static_cast<void *>(buffer));

  const int uffd = open_userfaultfd();
  uffdio_register reg{.range = {.start = reinterpret_cast<std::uintptr_t>(buffer), .len = len},
                      .mode = UFFDIO_REGISTER_MODE_MISSING,
                      .ioctls = 0};
  if (::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("UFFDIO_REGISTER", errno);
  std::printf("step 3: registered the buffer with userfaultfd for missing-page faults\n");

  const dontunmap::remap_request req{.old_addr = buffer, .old_len = len, .new_len = len};
  const backend used = remapper->choose(req);
  const double t0 = now_us();
  auto moved_to = remapper->remap(req);
  const double us = now_us() - t0;
  if (!moved_to) die("remap", moved_to.error().value());
  const char *moved = static_cast<const char *>(*moved_to);
  std::printf("step 4: moved %zu pages to %p with %s in %.0f us (%.1f million pages/s)\n", pages,
              *moved_to, how(used), us, us > 0 ? pages / us : 0.0);

  std::vector<unsigned char> resident(pages);
  if (::mincore(buffer, len, resident.data()) != 0) die("mincore on the buffer", errno);
  std::size_t present = 0;
  for (unsigned char r : resident) present += r & 1;
  std::printf("step 5: the buffer is still mapped at %p, with %zu of %zu pages present\n",
              static_cast<void *>(buffer), present, pages);

  const std::size_t moved_bad = mismatches(moved, len);
  std::printf("step 6: the moved copy holds the pattern: %s\n",
              moved_bad ? "NO" : "yes");

  fault_server server{.uffd = uffd,
                      .stop = ::eventfd(0, EFD_CLOEXEC),
                      .buffer = buffer,
                      .moved = moved,
                      .page = page};
  if (server.stop < 0) die("eventfd", errno);
  std::thread handler([&] { server.run(); });
  std::size_t buffer_bad = 0;
  const double t1 = now_us();
  std::thread reader([&] { buffer_bad = mismatches(buffer, len); });
  reader.join();
  const double fault_us = now_us() - t1;
  const std::uint64_t one = 1;
  if (::write(server.stop, &one, sizeof one) != sizeof one) die("eventfd write", errno);
  handler.join();
  if (server.error) die("fault handler", server.error);
  std::printf("step 7: a thread read the whole buffer; the handler served %zu faults by copying "
              "pages back from the moved copy (%.0f ms)\n",
              server.served.load(), fault_us / 1e3);
  std::printf("step 8: every page read back holds the pattern: %s\n",
              buffer_bad ? "NO" : "yes");

  ::munmap(const_cast<char *>(moved), len);
  ::munmap(buffer, len);
  const bool ok = present == 0 && moved_bad == 0 && buffer_bad == 0 && server.served == pages;
  std::printf("result: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
