// SPDX-License-Identifier: GPL-2.0
//
// The limits a move is charged against: RLIMIT_AS and RLIMIT_DATA (the
// destination grows total_vm and data_vm, nothing is unmapped), the commit
// limit under vm.overcommit_memory=2, and the vm.max_map_count headroom.
// Each refused move runs in a forked child, so that neither the lowered
// rlimit nor the moment of a tiny system limit touches the test process;
// sysctls are put back by guards as soon as the child has answered, and
// again when the test ends however it ends.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "support.hpp"

namespace dontunmap::test {
namespace {

// A child's answer: 0 for success, an errno, or setup_failed + errno.
constexpr int setup_failed = 1000;

int outcome(const remap_result &r) { return r ? 0 : r.error().value(); }

std::string text(int outcome) {
  if (outcome == 0) return "success";
  if (outcome >= setup_failed)
    return std::string("child setup failed: ") + std::strerror(outcome - setup_failed);
  return "errno " + std::to_string(outcome) + " (" + std::strerror(outcome) + ")";
}

class ResourceLimits : public backend_test {
 protected:
  static constexpr std::size_t kLen = 1 << 20;

  void SetUp() override {
    backend_test::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    src_ = guarded::anon(kLen);
    ASSERT_TRUE(src_);
    fill(src_.get(), kLen, per_page('r'));
  }

  // In a child: lower `resource` to what the process uses now ("VmSize" or
  // "VmData" of /proc/self/status) plus half the move, then move.
  int move_under_rlimit(int resource, const char *status_field) const {
    const auto used_kb = procfs::status_kb(status_field);
    if (!used_kb) return setup_failed + ENODATA;
    const rlim_t limit = *used_kb * 1024 + kLen / 2;
    const struct rlimit rl = {limit, limit};
    if (::setrlimit(resource, &rl) != 0) return setup_failed + errno;
    return outcome(move(src_.get(), kLen));
  }

  // The move in a child whose map count is `free_slots` below a lowered
  // vm.max_map_count: the child's answer (0 or an errno); nullopt, with a
  // failure, if none.
  std::optional<int> move_with_free_slots(int free_slots) {
    sysctl_guard max_map_count("vm/max_map_count");
    if (!max_map_count.readable()) {
      ADD_FAILURE() << "no /proc/sys/vm/max_map_count";
      return std::nullopt;
    }
    child_process child([this] { return outcome(move(src(), kLen)); },
                        [] { return static_cast<long>(procfs::map_count()); });
    const auto count = child.started() ? child.prepared() : std::nullopt;
    if (!count) {
      ADD_FAILURE() << "the child died";
      return std::nullopt;
    }
    if (!max_map_count.set(std::to_string(*count + free_slots))) {
      ADD_FAILURE() << "cannot set vm.max_map_count";
      return std::nullopt;
    }
    child.go();
    const auto r = child.result();
    max_map_count.restore();
    if (!r) ADD_FAILURE() << "the child died";
    return r;
  }

  // The move, in a child under that lowered limit, fails with ENOMEM.
  void expect_refused_under_rlimit(int resource, const char *status_field) const {
    child_process child([=, this] { return move_under_rlimit(resource, status_field); });
    ASSERT_TRUE(child.started());
    child.go();
    const auto r = child.result();
    ASSERT_TRUE(r) << "the child died";
    EXPECT_EQ(*r, ENOMEM) << "rlimit one half move above " << status_field << ": " << text(*r);
  }

  // The child's answer to `call`, made while vm.overcommit_memory=2 with
  // ratio 0 refuses every new charge (CommitLimit is the swap alone, below
  // Committed_AS), then passed through `check`, which runs only once the
  // limit is lifted again: what it reads of /proc allocates, and under the
  // limit even a malloc() of the child's can fail. The child is forked
  // before the limit drops: fork charges the child's copy too. nullopt,
  // with a failure, if the child dies.
  static std::optional<int> with_charges_refused(
      overcommit_guard &overcommit, std::function<int()> call,
      std::function<int(int)> check = [](int r) { return r; }) {
    int answered[2], lifted[2];
    if (::pipe2(answered, O_CLOEXEC) != 0) return std::nullopt;
    if (::pipe2(lifted, O_CLOEXEC) != 0) {
      ::close(answered[0]);
      ::close(answered[1]);
      return std::nullopt;
    }
    child_process child([&] {
      const int r = call();
      char byte = 0;
      if (::write(answered[1], &r, sizeof(r)) != sizeof(r) || ::read(lifted[0], &byte, 1) != 1)
        return setup_failed + EPIPE;
      return check(r);
    });
    ::close(answered[1]);
    ::close(lifted[0]);
    std::optional<int> r;
    if (child.started() && child.prepared() && overcommit.set_never(0)) {
      child.go();
      int answer = 0;
      const bool ok = ::read(answered[0], &answer, sizeof(answer)) == sizeof(answer);
      overcommit.restore();
      if (ok && ::write(lifted[1], "", 1) == 1) r = child.result();
    }
    ::close(answered[0]);
    ::close(lifted[1]);
    overcommit.restore();
    if (!r) ADD_FAILURE() << "the child died or vm.overcommit_* could not be set: "
                          << child.ending();
    return r;
  }

  char *src() const { return src_.get(); }

 private:
  guarded src_;
};

TEST_P(ResourceLimits, AddressSpaceLimitIsEnomem) {
  expect_refused_under_rlimit(RLIMIT_AS, "VmSize");
}

TEST_P(ResourceLimits, DataLimitIsEnomem) {
  expect_refused_under_rlimit(RLIMIT_DATA, "VmData");
}

// A private writable source is VM_ACCOUNT: a DONTUNMAP move charges the
// whole destination, since nothing is uncharged at the source.
TEST_P(ResourceLimits, OvercommitRefusalIsEnomem) {
  const auto smaps = procfs::smaps_at(src());
  ASSERT_TRUE(smaps && smaps->has_flag("ac")) << "the source is not VM_ACCOUNT\n"
                                              << (smaps ? smaps->text : "");
  overcommit_guard overcommit;
  if (!overcommit.readable()) GTEST_SKIP() << "no /proc/sys/vm/overcommit_*";

  const auto r =
      with_charges_refused(overcommit, [this] { return outcome(move(src(), kLen)); });
  if (!r) return;

  const auto e = expect(rule::overcommit_checked_first);
  if (e.what == behaviour::legacy)
    EXPECT_EQ(*r, 0) << text(*r) << "\n" << e.why;
  else
    EXPECT_EQ(*r, ENOMEM) << text(*r) << "\n" << e.why;
}

// The refused charge must leave no trace, even when the destination had
// already merged into its neighbour: an unfaulted source takes the
// target's page offset, so a FIXED target right after an unfaulted
// neighbour of the same kind merges with it. Afterwards the neighbour must
// be as it was, VM_ACCOUNT ("ac") included.
TEST_P(ResourceLimits, OvercommitRefusalLeavesMergedNeighbourAsItWas) {
  overcommit_guard overcommit;
  if (!overcommit.readable()) GTEST_SKIP() << "no /proc/sys/vm/overcommit_*";
  if (expect(rule::overcommit_checked_first).what == behaviour::legacy)
    GTEST_SKIP() << "this kernel's mremap charges without a check";

  // [neighbour][target hole][PROT_NONE stop] and an unfaulted source.
  mapping window(::mmap(nullptr, 3 * kLen, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                 3 * kLen);
  ASSERT_NE(window.get(), MAP_FAILED);
  char *neighbour = window.get();
  char *target = neighbour + kLen;
  ASSERT_EQ(::munmap(target, kLen), 0);
  ASSERT_EQ(::mprotect(target + kLen, kLen, PROT_NONE), 0);
  guarded src = guarded::anon(kLen);
  ASSERT_TRUE(src);
  const std::string before = procfs::maps_excerpt({{neighbour, 3 * kLen}, {src.get(), kLen}});

  const auto r = with_charges_refused(
      overcommit, [&] { return outcome(move_fixed(src.get(), kLen, target)); },
      [&](int r) {
        const auto n = procfs::smaps_at(neighbour);
        const std::string after =
            procfs::maps_excerpt({{neighbour, 3 * kLen}, {src.get(), kLen}});
        if (r != ENOMEM) return r;
        if (after != before || !n || !n->has_flag("ac")) {
          std::fprintf(stderr, "before:\n%s\nafter:\n%s\nneighbour:\n%s\n", before.c_str(),
                       after.c_str(), n ? n->text.c_str() : "(none)");
          return setup_failed - 1;
        }
        return ENOMEM;
      });
  if (!r) return;
  EXPECT_NE(*r, setup_failed - 1) << "the refused move changed the maps (see stderr)";
  EXPECT_EQ(*r, ENOMEM) << text(*r);
}

TEST_P(ResourceLimits, MapCountHeadroomIsEnomem) {
  if (!procfs::read_text("/proc/sys/vm/max_map_count"))
    GTEST_SKIP() << "no /proc/sys/vm/max_map_count";
  // Two free slots. Moving one whole VMA needs one, but a move must not
  // fail half way, so upstream keeps headroom for the worst case: 6.x
  // wants 6 free slots, 7.x 5 for a DONTUNMAP move.
  const auto r = move_with_free_slots(2);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, ENOMEM) << "two free slots: " << text(*r);
}

// The headroom at its boundary, as upstream's max_vma_count selftest probes
// it: the move in a child whose map count is `free_slots` below a lowered
// vm.max_map_count. 7.3's check_map_count_against_split_early() asks for
// map_count + 5 <= max_map_count (two slots for splitting a FIXED target,
// two for the move, one for the mlock pre-split it assumes of every
// DONTUNMAP); kernels up to 6.18 (seen: 6.12.118, 6.18.44) ask for six.
class MapCountBoundary : public ResourceLimits {};

TEST_P(MapCountBoundary, FiveFreeSlotsAreEnough) {
  const auto r = move_with_free_slots(5);
  ASSERT_TRUE(r);
  const auto e = expect(rule::map_count_headroom);
  EXPECT_TRUE(allowed(e, *r == 0, *r == ENOMEM)) << "five free slots: " << text(*r) << "\n"
                                                 << e.why;
}

TEST_P(MapCountBoundary, FourFreeSlotsAreEnomem) {
  const auto r = move_with_free_slots(4);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, ENOMEM) << "four free slots: " << text(*r);
}

TEST_P(MapCountBoundary, SixFreeSlotsAreEnoughEverywhere) {
  const auto r = move_with_free_slots(6);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0) << "six free slots: " << text(*r);
}

DONTUNMAP_INSTANTIATE_BACKENDS(ResourceLimits);
DONTUNMAP_INSTANTIATE_BACKENDS(MapCountBoundary);

}  // namespace
}  // namespace dontunmap::test
