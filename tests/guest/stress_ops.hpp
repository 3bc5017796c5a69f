// SPDX-License-Identifier: GPL-2.0
//
// What the operations of dontunmap-stress share: a worker's context, runs
// of pages, and the helpers that every operation uses. stress_ops.cpp
// lists the invariants they keep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "stress.hpp"

namespace dontunmap::stress {

inline constexpr std::uint8_t kMixed = 3;  // single_loc(): the data is in both homes

// One worker: its index, its random stream, its buffers.
struct ctx {
  world &w;
  unsigned index;
  rng r;
  scratch sc;
};

// Pages [a, b) of a slot, whose data is all at `loc`.
struct run {
  std::size_t a = 0, b = 0;
  std::uint8_t loc = 0;
};

inline std::uint8_t loc_of(const slot &s, std::size_t i) {
  return s.pg[i].loc.load(std::memory_order_relaxed);
}
// The one place every page's data is, or kMixed.
std::uint8_t single_loc(const slot &s);
bool has_data_in(const slot &s, std::uint8_t h);
// The maximal run around a random page, or (half the time, where parts of
// a VMA may be moved or changed) a random part of it.
run pick_data_run(const world &w, const slot &s, rng &r);
// A run of spare pages of home h (pages whose data is elsewhere).
std::optional<run> pick_spare_run(const slot &s, rng &r, std::uint8_t h);
const char *loc_name(std::uint8_t loc);
// The maps lines around one or two ranges, for a failure message.
std::string excerpt(const void *a, std::size_t alen, const void *b = nullptr, std::size_t blen = 0);
int uffd_unregister(const world &w, void *addr, std::size_t len);

// The source of a move must be empty afterwards: nothing present, nothing
// swapped (pagemap, so that the check itself faults nothing in).
bool check_source_empty(world &w, slot &s, const char *from, std::size_t pages, scratch &sc,
                        const char *when);
// Checks a few pages of [a, b): the ends and some in between.
bool check_some(ctx &c, slot &s, std::size_t a, std::size_t b, const char *when);

std::uint32_t next_gen(std::uint32_t g);
// Writes generation `gen` into page i: stores, or through /proc/self/mem.
bool write_page(ctx &c, slot &s, std::size_t i, std::uint32_t gen, bool via_mem);
// Touches spare page i of home h: an absent one faults to the handler,
// which fills it as the model says (a load, or an atomic add of zero: a
// write fault that changes nothing); a served one must still hold that.
bool touch_spare(world &w, slot &s, std::uint8_t h, std::size_t i, bool write, const char *when);

// stress_move.cpp: a move of the slot, of one kind or another.
void op_move(ctx &c, slot &s);
// stress_fork.cpp: fork() with some slots locked; the child checks them.
void op_fork(ctx &c);

}  // namespace dontunmap::stress
