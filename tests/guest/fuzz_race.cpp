// SPDX-License-Identifier: GPL-2.0
//
// Racy calls: a second thread rewrites the struct's fields, write-protects
// its page and unmaps it (then maps it again) while the call runs. Which
// values the call read is not known, so its answer is judged by a legal
// set: success, EINVAL or EFAULT; and its outcome by what any mix of the
// values could do: either nothing changed, or one source (a prefix of it)
// moved whole to one target, its pages intact there and its source mapped
// and empty. Every value the thread writes keeps a call inside the arena.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <sched.h>
#include <thread>

#include "fuzz.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace dontunmap::fuzz {

class racer {
 public:
  racer() : thread_([this] { loop(); }) {}
  ~racer() {
    quit_.store(true);
    round_.fetch_add(1);
    round_.notify_all();
    thread_.join();
  }

  // The struct's page, what it holds first, the values each of its five
  // fields may take, and a seed for the thread's choices.
  using field_values = std::array<std::vector<std::uint64_t>, 5>;
  void arm(std::uint64_t page_addr, const dontunmap_remap &first, field_values values,
           std::uint64_t seed) {
    page_ = page_addr;
    first_ = first;
    values_ = std::move(values);
    seed_ = seed;
  }
  // Starts a round: the thread rewrites the struct until stop().
  void go() {
    actions_.store(0);
    running_.store(true);
    round_.fetch_add(1);
    round_.notify_all();
  }
  std::uint64_t actions() const { return actions_.load(); }
  // Ends the round and waits until the thread has left the page mapped and
  // writable, holding the first struct. False if it could not be mapped
  // again. Every round is finished, however early it is stopped.
  bool stop() {
    running_.store(false);
    const std::uint64_t round = round_.load();
    for (std::uint64_t d = done_.load(); d != round; d = done_.load()) done_.wait(d);
    return remapped_ok_;
  }

 private:
  void write_all() {
    auto *p = reinterpret_cast<volatile std::uint64_t *>(page_);
    const std::uint64_t f[5] = {first_.old_addr, first_.old_len, first_.new_len, first_.flags,
                                first_.new_addr};
    for (int i = 0; i < 5; ++i) p[i] = f[i];
  }

  void one_round() {
    rng r(seed_);
    const std::size_t pg = page();
    auto *p = reinterpret_cast<void *>(page_);
    bool mapped = true, writable = true;
    while (running_.load(std::memory_order_relaxed)) {
      switch (r.below(12)) {
        case 8:
          if (mapped && ::mprotect(p, pg, PROT_READ) == 0) writable = false;
          break;
        case 9:
          if (mapped && ::mprotect(p, pg, PROT_READ | PROT_WRITE) == 0) writable = true;
          break;
        case 10:
          if (mapped && ::munmap(p, pg) == 0) mapped = false;
          break;
        case 11:
          if (!mapped && ::mmap(p, pg, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == p) {
            mapped = writable = true;
            write_all();
          }
          break;
        default:
          if (mapped && writable) {
            const std::size_t field = r.below(5);
            const auto &v = values_[field];
            reinterpret_cast<volatile std::uint64_t *>(page_)[field] = v[r.below(v.size())];
          }
          break;
      }
      actions_.fetch_add(1, std::memory_order_relaxed);
    }
    remapped_ok_ = true;
    if (!mapped)
      remapped_ok_ = ::mmap(p, pg, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == p;
    else if (!writable)
      ::mprotect(p, pg, PROT_READ | PROT_WRITE);
    if (remapped_ok_) write_all();
  }

  void loop() {
    std::uint64_t seen = 0;
    for (;;) {
      round_.wait(seen);
      seen = round_.load();
      if (quit_.load()) return;
      one_round();
      done_.store(seen);
      done_.notify_all();
    }
  }

  std::atomic<std::uint64_t> round_{0};  // rounds started
  std::atomic<std::uint64_t> done_{0};   // the last round finished
  std::atomic<bool> running_{false};
  std::atomic<bool> quit_{false};
  std::atomic<std::uint64_t> actions_{0};
  bool remapped_ok_ = true;
  std::uint64_t page_ = 0;
  dontunmap_remap first_{};
  std::uint64_t seed_ = 0;
  field_values values_;
  std::thread thread_;
};

racer *start_racer() { return new racer(); }
void stop_racer(racer *rc) { delete rc; }

race_result racy_call(racer &rc, int fd, pool &p, rng &r) {
  const std::uint64_t pg = page();
  race_result res;
  const auto problem = [&](std::string t) {
    if (res.problems.size() < 6) res.problems.push_back(std::move(t));
  };

  // Two sources, every page written, of different lengths; two free targets.
  const std::size_t ia = r.below(p.size());
  std::size_t ib = (ia + 1 + r.below(p.size() - 1)) % p.size();
  const std::size_t la = r.range(2, 12), lb = la + r.range(1, 8);
  p.rebuild(ia, r, kind::anon, la);
  p.rebuild(ib, r, kind::anon, lb);
  const std::uint64_t a = p.at(ia).base, b = p.at(ib).base;
  const std::uint64_t la_b = p.at(ia).len, lb_b = p.at(ib).len;
  const std::uint64_t t1 = kTargetZone + r.below(4) * (std::uint64_t(16) << 20);
  const std::uint64_t t2 = t1 + (std::uint64_t(64) << 20);
  const std::uint64_t room = std::uint64_t(1) << 20;
  for (std::uint64_t t : {t1, t2}) ::munmap(reinterpret_cast<void *>(t), room);

  const std::uint64_t move = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
  const std::vector<std::uint64_t> lens = {
      la_b, lb_b, la_b - 100, 0, std::uint64_t(1) << 46, ~std::uint64_t(0)};
  const dontunmap_remap first{a, la_b, la_b, move | MREMAP_FIXED, t1};
  rc.arm(p.structs().race, first,
         {{{a, b, a + 1},
           lens,
           lens,
           {move, move | MREMAP_FIXED, move | MREMAP_FIXED | 8, MREMAP_DONTUNMAP},
           {t1, t2, t1 + 1, 0xffff'8000'0000'0000ULL}}},
         r.next());
  std::memcpy(reinterpret_cast<void *>(p.structs().race), &first, sizeof(first));

  const std::vector<span> spans = {
      {a, a + kSlotStride}, {b, b + kSlotStride}, {t1, t1 + room}, {t2, t2 + room}};
  const snapshot pre = take(spans, p, procfs::read_maps());

  // Let the thread get going, a random number of its steps in.
  const std::uint64_t head_start = r.below(40);
  rc.go();
  for (int spin = 0; rc.actions() < head_start && spin < 100000; ++spin) ::sched_yield();
  const int ret = ::ioctl(fd, DONTUNMAP_IOC_REMAP, reinterpret_cast<void *>(p.structs().race));
  res.err = ret == 0 ? 0 : errno;
  if (!rc.stop()) problem("the struct's page could not be mapped again (something took it)");
  const snapshot post = take(spans, p, procfs::read_maps());

  if (res.err != 0 && res.err != EINVAL && res.err != EFAULT)
    problem("errno " + errname(res.err) + " outside the legal set {0, EINVAL, EFAULT}");

  // Which source moved, how far, and where to.
  int moves = 0;
  for (const std::uint64_t s : {a, b}) {
    const std::uint64_t len = s == a ? la_b : lb_b;
    std::uint64_t k = 0;  // pages moved: a prefix
    bool prefix = true;
    for (std::uint64_t x = s; x < s + len; x += pg) {
      const page_state *before = pre.at(x), *after = post.at(x);
      if (!before || !after) {
        problem("source page " + hex(x) + (after ? " was not mapped" : " no longer mapped"));
        continue;
      }
      if (after->perms != before->perms) problem("source page " + hex(x) + " now " + after->perms);
      const bool emptied = before->present && !after->present;
      if (!emptied && (after->present != before->present || after->hash != before->hash))
        problem("source page " + hex(x) + " changed in place");
      if (emptied && !prefix) problem("source page " + hex(x) + " emptied after a kept one");
      if (emptied)
        ++k;
      else
        prefix = false;
    }
    if (!k) continue;
    ++moves;
    res.moved = true;
    int landed = 0;
    for (const std::uint64_t t : {t1, t2}) {
      bool here = true;
      for (std::uint64_t i = 0; i < k && here; ++i) {
        const page_state *d = post.at(t + i * pg), *from = pre.at(s + i * pg);
        here = d && from && d->present && d->hash == from->hash && d->perms == from->perms;
      }
      if (here) ++landed;
    }
    if (landed != 1)
      problem(std::to_string(k) + " pages of " + hex(s) + " left it but landed at " +
              std::to_string(landed) + " targets whole");
    res.how = hex(s) + " (" + std::to_string(k) + " pages)";
  }
  // Nothing but the one move's pages in the targets.
  std::size_t target_pages = 0;
  for (const page_state &d : post.pages)
    if ((d.addr >= t1 && d.addr < t1 + room) || (d.addr >= t2 && d.addr < t2 + room))
      ++target_pages;
  std::size_t moved_pages = 0;
  for (const std::uint64_t s : {a, b})
    for (std::uint64_t x = s; x < s + (s == a ? la_b : lb_b); x += pg)
      if (pre.at(x) && post.at(x) && pre.at(x)->present && !post.at(x)->present) ++moved_pages;
  if (target_pages != moved_pages)
    problem(std::to_string(target_pages) + " pages mapped in the targets, " +
            std::to_string(moved_pages) + " moved");
  if (moves > 1) problem("both sources moved in one call");
  if (res.err == 0 && moves == 0) problem("success, but nothing moved");
  if (res.err == EINVAL && moves) problem("EINVAL after a move");

  // Every VMA away from the sources, targets and the struct's page is as it was.
  const auto away = [&](const procfs::vma &v) {
    const std::uint64_t race = p.structs().race;
    const bool by = std::any_of(spans.begin(), spans.end(),
                                [&](const span &s) { return v.start <= s.hi && v.end >= s.lo; });
    return !by && !(v.start <= race + pg && v.end >= race) && v.path != "[heap]" &&
           v.path != "[stack]";
  };
  std::vector<std::string> before, after;
  for (const auto &v : pre.maps)
    if (away(v)) before.push_back(v.line);
  for (const auto &v : post.maps)
    if (away(v)) after.push_back(v.line);
  if (before != after) problem("VMAs away from the call changed");

  // The next call starts from a fresh pool: new sources, empty targets.
  for (const std::uint64_t t : {t1, t2}) ::munmap(reinterpret_cast<void *>(t), room);
  p.rebuild(ia, r);
  p.rebuild(ib, r);
  return res;
}

}  // namespace dontunmap::fuzz
