#include "server/memory/cgroup_probe.h"

#include <filesystem>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"

namespace yolo {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxCgroupFile = 1 << 20;
// v1 reports "no limit" as the largest page-aligned signed value.
constexpr int64_t kV1Unlimited = int64_t{1} << 62;

absl::StatusOr<std::string> Read(const std::string& path) {
  std::string text;
  absl::Status read = ReadFile(path, &text, kMaxCgroupFile);
  if (!read.ok()) return read;
  return std::string(absl::StripAsciiWhitespace(text));
}

// A file holding one number, or "max" (nullopt).
absl::StatusOr<std::optional<int64_t>> ReadLimit(const std::string& path) {
  auto text = Read(path);
  if (!text.ok()) return text.status();
  if (*text == "max") return std::optional<int64_t>();
  int64_t v = 0;
  if (!absl::SimpleAtoi(*text, &v) || v < 0) {
    return absl::DataLossError(absl::StrCat(path, ": '", text->substr(0, 40), "' is not a number"));
  }
  return std::optional<int64_t>(v);
}

// "key value" lines (memory.stat, memory.events, memory.oom_control).
absl::StatusOr<std::map<std::string, int64_t>> ReadKeyed(const std::string& path) {
  auto text = Read(path);
  if (!text.ok()) return text.status();
  std::map<std::string, int64_t> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    std::vector<absl::string_view> kv = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    int64_t v = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &v)) {
      return absl::DataLossError(absl::StrCat(path, ": line ", line_no, ": expected 'key value'"));
    }
    out[std::string(kv[0])] = v;
  }
  return out;
}

int64_t Get(const std::map<std::string, int64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

bool IsDir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

}  // namespace

absl::StatusOr<CgroupMemory> CgroupProbe::Read() const {
  // /proc/self/cgroup: "0::/path" for v2, "N:memory:/path" (or "N:a,memory:/path") for v1.
  std::string v2_path, v1_path;
  bool has_v2 = false, has_v1 = false;
  if (auto text = yolo::Read(proc_root_ + "/self/cgroup"); text.ok()) {
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
      if (parts.size() != 3) continue;
      if (parts[0] == "0" && parts[1].empty()) {
        has_v2 = true, v2_path = parts[2];
      }
      for (absl::string_view c : absl::StrSplit(parts[1], ',')) {
        if (c == "memory") has_v1 = true, v1_path = parts[2];
      }
    }
  }
  // Inside a container the group's own folder is often the mount's root.
  auto folder = [](const std::string& base, const std::string& rel, const char* probe_file) {
    const std::string full = base + (rel == "/" ? "" : rel);
    if (IsDir(full) && fs::exists(full + "/" + probe_file)) return full;
    return fs::exists(base + "/" + probe_file) ? base : std::string();
  };
  if (has_v2) {
    const std::string dir = folder(sys_root_, v2_path, "memory.current");
    if (!dir.empty()) return ReadV2(dir);
  }
  if (has_v1) {
    const std::string dir = folder(sys_root_ + "/memory", v1_path, "memory.usage_in_bytes");
    if (!dir.empty()) return ReadV1(dir);
  }
  return absl::NotFoundError(
      absl::StrCat("no cgroup memory controller under ", sys_root_, " for this process"));
}

absl::StatusOr<CgroupMemory> CgroupProbe::ReadV2(const std::string& dir) const {
  CgroupMemory m;
  m.version = 2;
  m.path = dir;
  auto current = ReadLimit(dir + "/memory.current");
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    return absl::DataLossError(absl::StrCat(dir, "/memory.current: 'max' is not a usage"));
  }
  m.usage_bytes = **current;
  if (auto max = ReadLimit(dir + "/memory.max"); max.ok()) {
    m.limit_bytes = *max;
  } else if (max.status().code() != absl::StatusCode::kNotFound) {
    return max.status();  // the root group has no memory.max: unlimited
  }
  if (auto high = ReadLimit(dir + "/memory.high"); high.ok()) {
    m.high_bytes = *high;
  } else if (high.status().code() != absl::StatusCode::kNotFound) {
    return high.status();
  }
  auto stat = ReadKeyed(dir + "/memory.stat");
  if (!stat.ok()) return stat.status();
  m.anon_bytes = Get(*stat, "anon");
  m.file_bytes = Get(*stat, "file");
  m.inactive_file_bytes = Get(*stat, "inactive_file");
  if (auto events = ReadKeyed(dir + "/memory.events"); events.ok()) {
    m.high_events = Get(*events, "high");
    m.max_events = Get(*events, "max");
    m.oom_events = Get(*events, "oom");
    m.oom_kill_events = Get(*events, "oom_kill");
  } else if (events.status().code() != absl::StatusCode::kNotFound) {
    return events.status();
  }
  if (auto text = yolo::Read(dir + "/memory.pressure"); text.ok()) {
    auto p = ParseMemoryPressure(*text, dir + "/memory.pressure");
    if (!p.ok()) return p.status();
    m.pressure = *p;
  }
  m.working_set_bytes = std::max<int64_t>(m.usage_bytes - m.inactive_file_bytes, 0);
  return m;
}

absl::StatusOr<CgroupMemory> CgroupProbe::ReadV1(const std::string& dir) const {
  CgroupMemory m;
  m.version = 1;
  m.path = dir;
  auto usage = ReadLimit(dir + "/memory.usage_in_bytes");
  if (!usage.ok()) return usage.status();
  m.usage_bytes = usage->value_or(0);
  auto limit = ReadLimit(dir + "/memory.limit_in_bytes");
  if (!limit.ok()) return limit.status();
  if (limit->has_value() && **limit < kV1Unlimited) m.limit_bytes = **limit;
  auto stat = ReadKeyed(dir + "/memory.stat");
  if (!stat.ok()) return stat.status();
  m.anon_bytes = Get(*stat, "total_rss");
  m.file_bytes = Get(*stat, "total_cache");
  m.inactive_file_bytes = Get(*stat, "total_inactive_file");
  if (auto oom = ReadKeyed(dir + "/memory.oom_control"); oom.ok()) {
    m.oom_kill_events = Get(*oom, "oom_kill");
  }
  if (auto failcnt = ReadLimit(dir + "/memory.failcnt"); failcnt.ok()) {
    m.max_events = failcnt->value_or(0);
  }
  m.working_set_bytes = std::max<int64_t>(m.usage_bytes - m.inactive_file_bytes, 0);
  return m;
}

}  // namespace yolo
