// SPDX-License-Identifier: GPL-2.0
#include "procfs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace dontunmap::test::procfs {
namespace {

std::uintptr_t as_uint(const void *p) { return reinterpret_cast<std::uintptr_t>(p); }

// "start-end perms offset dev inode   path"
std::optional<vma> parse_maps_line(const std::string &line) {
  vma v;
  char perms[8] = {};
  unsigned long long start = 0, end = 0, offset = 0, inode = 0;
  unsigned major = 0, minor = 0;
  int path_at = 0;
  if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &offset,
                  &major, &minor, &inode, &path_at) < 7)
    return std::nullopt;
  v.start = start;
  v.end = end;
  v.perms = perms;
  v.offset = offset;
  v.inode = inode;
  if (path_at > 0 && static_cast<std::size_t>(path_at) <= line.size())
    v.path = line.substr(path_at);
  v.line = line;
  return v;
}

bool is_smaps_header(const std::string &line) {
  // Headers start with "hex-hex "; field lines with "Name:".
  const auto dash = line.find('-');
  const auto colon = line.find(':');
  return dash != std::string::npos && dash > 0 && (colon == std::string::npos || dash < colon) &&
         std::isxdigit(static_cast<unsigned char>(line[0]));
}

// Reads a small file into buf (NUL-terminated) with no allocation.
ssize_t read_into(const char *path, char *buf, std::size_t cap) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t used = 0;
  while (used + 1 < cap) {
    const ssize_t n = ::read(fd, buf + used, cap - 1 - used);
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[used] = '\0';
  return static_cast<ssize_t>(used);
}

// Finds "field:" at the start of a line of buf and parses the number after it.
std::optional<std::uint64_t> field_kb(const char *buf, std::string_view field) {
  for (const char *line = buf; line && *line;) {
    if (std::strncmp(line, field.data(), field.size()) == 0 && line[field.size()] == ':') {
      std::uint64_t value = 0;
      if (std::sscanf(line + field.size() + 1, " %" SCNu64, &value) == 1) return value;
      return std::nullopt;
    }
    line = std::strchr(line, '\n');
    if (line) ++line;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> file_field_kb(const char *path, std::string_view field) {
  char buf[16384];
  if (read_into(path, buf, sizeof(buf)) < 0) return std::nullopt;
  return field_kb(buf, field);
}

std::vector<std::optional<std::uint64_t>> file_fields_kb(
    const char *path, std::initializer_list<std::string_view> fields) {
  char buf[16384];
  const bool read = read_into(path, buf, sizeof(buf)) >= 0;
  std::vector<std::optional<std::uint64_t>> out;
  for (const std::string_view f : fields) out.push_back(read ? field_kb(buf, f) : std::nullopt);
  return out;
}

}  // namespace

bool vma::contains(const void *addr) const { return as_uint(addr) >= start && as_uint(addr) < end; }

std::vector<vma> read_maps() {
  std::vector<vma> out;
  std::ifstream in("/proc/self/maps");
  for (std::string line; std::getline(in, line);)
    if (auto v = parse_maps_line(line)) out.push_back(std::move(*v));
  return out;
}

std::optional<vma> vma_at(const void *addr) {
  for (auto &v : read_maps())
    if (v.contains(addr)) return v;
  return std::nullopt;
}

std::vector<vma> vmas_in(const void *addr, std::size_t len) {
  std::vector<vma> out;
  const std::uintptr_t lo = as_uint(addr), hi = lo + len;
  for (auto &v : read_maps())
    if (v.end > lo && v.start < hi) out.push_back(std::move(v));
  return out;
}

std::optional<vma> vma_named(std::string_view path) {
  for (auto &v : read_maps())
    if (v.path == path) return v;
  return std::nullopt;
}

std::string maps_excerpt(std::initializer_list<range> ranges) {
  const std::uintptr_t slack = 4 * static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto maps = read_maps();
  std::ostringstream out;
  out << "\n/proc/self/maps near";
  for (const auto &r : ranges)
    out << " [" << r.addr << ", +0x" << std::hex << r.len << std::dec << ")";
  out << ":\n";
  for (const auto &v : maps) {
    for (const auto &r : ranges) {
      const std::uintptr_t lo = as_uint(r.addr) > slack ? as_uint(r.addr) - slack : 0;
      const std::uintptr_t hi = as_uint(r.addr) + r.len + slack;
      if (v.end > lo && v.start < hi) {
        out << "  " << v.line << "\n";
        break;
      }
    }
  }
  return out.str();
}

std::size_t map_count() {
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t lines = 0, gate = 0;
  char buf[4096];
  // Keep the tail of the previous chunk so that "[vsyscall]" split across
  // two reads is still seen.
  constexpr std::string_view gate_name = "[vsyscall]";
  char window[2 * sizeof(buf)];
  std::size_t carry = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i)
      if (buf[i] == '\n') ++lines;
    std::memcpy(window + carry, buf, static_cast<std::size_t>(n));
    const std::size_t total = carry + static_cast<std::size_t>(n);
    for (std::size_t i = 0; i + gate_name.size() <= total; ++i)
      if (std::memcmp(window + i, gate_name.data(), gate_name.size()) == 0 &&
          i + gate_name.size() > carry)
        ++gate;
    carry = std::min(total, gate_name.size() - 1);
    std::memmove(window, window + total - carry, carry);
  }
  ::close(fd);
  return lines - gate;
}

std::optional<std::uint64_t> smaps_entry::kb(std::string_view field) const {
  for (const auto &[name, value] : fields_kb)
    if (name == field) return value;
  return std::nullopt;
}

bool smaps_entry::has_flag(std::string_view flag) const {
  for (const auto &f : vm_flags)
    if (f == flag) return true;
  return false;
}

std::vector<smaps_entry> read_smaps() {
  std::vector<smaps_entry> out;
  std::ifstream in("/proc/self/smaps");
  std::optional<smaps_entry> cur;
  for (std::string line; std::getline(in, line);) {
    if (is_smaps_header(line)) {
      if (cur) out.push_back(std::move(*cur));
      cur.reset();
      if (auto v = parse_maps_line(line)) {
        cur.emplace();
        cur->area = std::move(*v);
        cur->text = line + "\n";
      }
      continue;
    }
    if (!cur) continue;
    cur->text += line + "\n";
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = line.substr(0, colon);
    std::istringstream rest(line.substr(colon + 1));
    if (name == "VmFlags") {
      for (std::string flag; rest >> flag;) cur->vm_flags.push_back(flag);
    } else {
      std::uint64_t value = 0;
      if (rest >> value) cur->fields_kb.emplace_back(name, value);
    }
  }
  if (cur) out.push_back(std::move(*cur));
  return out;
}

std::optional<smaps_entry> smaps_at(const void *addr) {
  for (auto &e : read_smaps())
    if (e.area.contains(addr)) return std::move(e);
  return std::nullopt;
}

std::optional<std::uint64_t> status_kb(std::string_view field) {
  return file_field_kb("/proc/self/status", field);
}

std::optional<std::uint64_t> meminfo_kb(std::string_view field) {
  return file_field_kb("/proc/meminfo", field);
}

std::vector<std::optional<std::uint64_t>> status_kb(std::initializer_list<std::string_view> fields) {
  return file_fields_kb("/proc/self/status", fields);
}

std::vector<std::optional<std::uint64_t>> meminfo_kb(
    std::initializer_list<std::string_view> fields) {
  return file_fields_kb("/proc/meminfo", fields);
}

std::optional<std::string> read_text(const std::string &path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool write_text(const std::string &path, std::string_view value) {
  return write_text(path.c_str(), value);
}

bool write_text(const char *path, std::string_view value) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  return ::close(fd) == 0 && ok;
}

std::optional<std::uint64_t> vma_slab_objects() {
  static constexpr char kDir[] = "/sys/kernel/slab/vm_area_struct/";
  char path[64], buf[4096];
  std::uint64_t n = 0;
  std::snprintf(path, sizeof(path), "%saliases", kDir);
  if (read_into(path, buf, sizeof(buf)) <= 0 || std::sscanf(buf, "%" SCNu64, &n) != 1 || n != 0)
    return std::nullopt;
  std::snprintf(path, sizeof(path), "%sshrink", kDir);
  if (!write_text(path, "1")) return std::nullopt;
  // "objects": the number in use, then one count per node ("N0=...").
  std::snprintf(path, sizeof(path), "%sobjects", kDir);
  if (read_into(path, buf, sizeof(buf)) <= 0 || std::sscanf(buf, "%" SCNu64, &n) != 1)
    return std::nullopt;
  return n;
}

std::optional<std::uint64_t> vma_slab_objects_down_to(std::optional<std::uint64_t> limit) {
  auto n = vma_slab_objects();
  for (int i = 0; i < 50 && n && limit && *n > *limit; ++i) {
    ::usleep(100 * 1000);
    n = vma_slab_objects();
  }
  return n;
}

std::optional<std::vector<std::string>> kmemleak_reports_naming(std::string_view needle) {
  const std::string path = "/sys/kernel/debug/kmemleak";
  if (!write_text(path, "scan") || !write_text(path, "scan")) return std::nullopt;
  const auto text = read_text(path);
  if (!text) return std::nullopt;
  std::vector<std::string> out;
  std::string block;
  const auto flush = [&] {
    if (block.find(needle) != std::string::npos) out.push_back(block);
    block.clear();
  };
  std::size_t i = 0;
  while (i < text->size()) {
    const std::size_t nl = text->find('\n', i);
    const std::string line = text->substr(i, nl == std::string::npos ? nl : nl - i);
    if (line.rfind("unreferenced object", 0) == 0) flush();
    block += line + "\n";
    if (nl == std::string::npos) break;
    i = nl + 1;
  }
  flush();
  return out;
}

}  // namespace dontunmap::test::procfs
