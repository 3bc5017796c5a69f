// SPDX-License-Identifier: LGPL-2.1-or-later
//
// dontunmap-swap: a program swaps its own working set out to a file while
// it keeps running, with libdontunmap's swap_region (dontunmap/swap.hpp).
//
// Two worker threads keep reading and rewriting the pages of a working set
// (each its own half, a counter per page). Every few milliseconds the main
// thread swaps the whole set out: one MREMAP_DONTUNMAP move takes its pages
// aside, they are written to a file and released, and each page a worker
// touches afterwards is faulted back from the file by the region's handler
// thread. At the end every page must hold the last value its worker wrote.
//
//   usage: dontunmap-swap [native|module|auto] [MiB] [rounds]   (default: auto 16 8)
//
// Exit status 0 when every page holds what its worker wrote last.
#include <dontunmap/swap.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using dontunmap::backend;

[[noreturn]] void die(const char *what, int err) {
  std::printf("error: %s: %s\n", what, std::strerror(err));
  std::printf("result: FAIL\n");
  std::exit(1);
}

std::size_t resident_pages(const char *addr, std::size_t pages, std::size_t page) {
  std::vector<unsigned char> vec(pages);
  if (::mincore(const_cast<char *>(addr), pages * page, vec.data()) != 0) die("mincore", errno);
  std::size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// A file for the pages, unlinked at once: it goes when its last descriptor does.
dontunmap::unique_fd swap_file() {
  const char *dir = std::getenv("TMPDIR");
  std::string path = std::string(dir && *dir ? dir : "/tmp") + "/dontunmap-swap.XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) die("mkstemp", errno);
  ::unlink(path.c_str());
  return dontunmap::unique_fd(fd);
}

}  // namespace

int main(int argc, char **argv) {
  const std::string_view arg = argc > 1 ? argv[1] : "auto";
  const backend wanted = arg == "native"   ? backend::native
                         : arg == "module" ? backend::module
                         : arg == "auto"   ? backend::automatic
                                           : backend(-1);
  const long mib = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 16;
  const long rounds = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 8;
  if (wanted == backend(-1) || mib <= 0 || rounds <= 0 || argc > 4) {
    std::printf("usage: %s [native|module|auto] [MiB] [rounds]\n", argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t len = static_cast<std::size_t>(mib) << 20;
  const std::size_t pages = len / page;

  auto remapper = dontunmap::remapper::create(wanted);
  if (!remapper) die("open " DONTUNMAP_DEVICE, remapper.error().value());
  char *set = static_cast<char *>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (set == MAP_FAILED) die("mmap", errno);
  // Each page holds its counter in its first and last words.
  const std::size_t words = page / sizeof(std::uint64_t);
  auto word = [&](std::size_t pg, std::size_t w) {
    return reinterpret_cast<volatile std::uint64_t *>(set + pg * page) + w;
  };
  std::vector<std::uint64_t> model(pages);
  for (std::size_t pg = 0; pg < pages; ++pg) {
    model[pg] = pg;
    *word(pg, 0) = pg;
    *word(pg, words - 1) = pg;
  }
  dontunmap::unique_fd file = swap_file();
  const int file_fd = file.get();
  auto region = dontunmap::swap_region::create(*remapper, set, len, std::move(file));
  if (!region) die("swap_region::create", region.error().value());
  const backend used = remapper->choose({.old_addr = set, .old_len = len, .new_len = len});
  std::printf("working set: %ld MiB (%zu pages) at %p, registered with userfaultfd; moves by %s\n",
              mib, pages, static_cast<void *>(set),
              used == backend::module ? "ioctl(DONTUNMAP_IOC_REMAP) on " DONTUNMAP_DEVICE
                                      : "the kernel's own mremap(2)");

  // Two workers, each rewriting random pages of its half after checking them.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> wrong{0}, touches{0};
  std::vector<std::thread> workers;
  for (std::size_t t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      const std::size_t first = t * pages / 2, n = pages / 2;
      std::mt19937_64 rng(t + 1);
      std::uint64_t next = (t + 1) << 40;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t pg = first + rng() % n;
        if (*word(pg, 0) != model[pg] || *word(pg, words - 1) != model[pg]) ++wrong;
        model[pg] = ++next;
        *word(pg, 0) = next;
        *word(pg, words - 1) = next;
        touches.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  for (long r = 1; r <= rounds; ++r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::size_t before = resident_pages(set, pages, page);
    auto out = region->swap_out();
    if (!out) die("swap_out", out.error().value());
    const std::size_t after = resident_pages(set, pages, page);
    const dontunmap::swap_stats st = region->stats();
    std::printf("round %ld: %zu pages resident, %zu written out and released, %zu resident "
                "after; faults served so far %" PRIu64 " (%" PRIu64 " from the file)\n",
                r, before, *out, after, st.faults_served, st.pages_from_file);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  for (auto &w : workers) w.join();

  struct stat file_stat {};
  if (::fstat(file_fd, &file_stat) != 0) die("fstat", errno);
  const std::size_t still_out = pages - resident_pages(set, pages, page);
  if (std::error_code e = region->close()) die("close", e.value());
  std::size_t bad = wrong.load();
  for (std::size_t pg = 0; pg < pages; ++pg)
    bad += *word(pg, 0) != model[pg] || *word(pg, words - 1) != model[pg];
  const dontunmap::swap_stats st = region->stats();
  std::printf("pages out: %" PRIu64 " (%" PRIu64 " bytes written) in %" PRIu64 " swap-outs\n",
              st.pages_out, st.bytes_written, st.swap_outs);
  std::printf("faults served: %" PRIu64 " (%" PRIu64 " from the file, %" PRIu64
              " from moved pages not yet written, %" PRIu64 " zero)\n",
              st.faults_served, st.pages_from_file, st.pages_from_moved, st.zero_pages);
  std::printf("the file: %lld bytes, %lld on disk; %zu pages were still out at the end and "
              "close() read %" PRIu64 " back\n",
              static_cast<long long>(file_stat.st_size),
              static_cast<long long>(file_stat.st_blocks) * 512, still_out, st.pages_in_at_close);
  std::printf("workers: %" PRIu64 " page touches, %zu pages wrong\n", touches.load(), bad);
  std::printf("result: %s\n", bad == 0 ? "PASS" : "FAIL");
  return bad == 0 ? 0 : 1;
}
