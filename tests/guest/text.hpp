// SPDX-License-Identifier: GPL-2.0
//
// Small text helpers the guest programs share: numbers as they print them
// and as their command lines give them.
#pragma once

#include <cstdint>
#include <string>

namespace dontunmap::test {

// "0x7f0000001000"
std::string hex(std::uint64_t v);
// "EINVAL", or "errno N" for a number the C library cannot name.
std::string errname(int err);
// A whole command-line word as an unsigned number (decimal, 0x hex or 0
// octal, as strtoull reads it); false for anything else, overflow included.
bool parse_u64(const char *s, std::uint64_t &v);

}  // namespace dontunmap::test
