#include "server/memory/proc_probe.h"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

constexpr size_t kMaxProcFile = 1 << 20;
constexpr size_t kMaxTree = 4096;  // processes summed at most: a fork bomb is not a worker

// "MemTotal:       24534124 kB" -> bytes.
bool ParseKb(absl::string_view line, absl::string_view key, int64_t* out) {
  if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) return false;
  line = absl::StripAsciiWhitespace(line);
  absl::ConsumeSuffix(&line, " kB");
  int64_t kb = 0;
  if (!absl::SimpleAtoi(line, &kb) || kb < 0) return false;
  *out = kb * 1024;
  return true;
}

// A /proc or /sys file, read whole and bounded; NOT_FOUND when it is missing.
absl::StatusOr<std::string> ReadSmall(const std::string& path) {
  std::string text;
  absl::Status read = ReadFile(path, &text, kMaxProcFile);
  if (!read.ok()) return read;
  return text;
}

}  // namespace

absl::StatusOr<MemoryPressure> ParseMemoryPressure(absl::string_view text,
                                                   const std::string& path) {
  MemoryPressure p;
  bool some = false;  // a "full" line may be missing (older kernels' cpu file): its values stay 0
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.empty()) continue;
    const bool is_some = fields[0] == "some", is_full = fields[0] == "full";
    if (!is_some && !is_full) continue;  // a newer kernel's extra line
    double avg10 = -1, avg60 = -1;
    int64_t total = -1;
    for (size_t i = 1; i < fields.size(); ++i) {
      absl::string_view f = fields[i];
      if (absl::ConsumePrefix(&f, "avg10=")) {
        if (!absl::SimpleAtod(f, &avg10)) avg10 = -1;
      } else if (absl::ConsumePrefix(&f, "avg60=")) {
        if (!absl::SimpleAtod(f, &avg60)) avg60 = -1;
      } else if (absl::ConsumePrefix(&f, "total=")) {
        if (!absl::SimpleAtoi(f, &total)) total = -1;
      }
    }
    if (avg10 < 0 || avg60 < 0 || total < 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": line ", line_no, ": expected avg10=, avg60= and total= values"));
    }
    if (is_some) {
      p.some_avg10 = avg10, p.some_avg60 = avg60, p.some_total_us = total, some = true;
    } else {
      p.full_avg10 = avg10, p.full_avg60 = avg60, p.full_total_us = total;
    }
  }
  if (!some) return absl::DataLossError(absl::StrCat(path, ": no 'some' line"));
  return p;
}

absl::StatusOr<HostMemInfo> ProcProbe::Host() const {
  const std::string path = root_ + "/meminfo";
  auto text = ReadSmall(path);
  if (!text.ok()) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  HostMemInfo info;
  bool total = false, available = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    total |= ParseKb(line, "MemTotal", &info.total_bytes);
    available |= ParseKb(line, "MemAvailable", &info.available_bytes);
    ParseKb(line, "SwapTotal", &info.swap_total_bytes);
    ParseKb(line, "SwapFree", &info.swap_free_bytes);
  }
  if (!total || !available) {
    return absl::DataLossError(absl::StrCat(path, ": no MemTotal or MemAvailable line"));
  }
  return info;
}

absl::StatusOr<MemoryPressure> ProcProbe::Pressure() const {
  const std::string path = root_ + "/pressure/memory";
  auto text = ReadSmall(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("no PSI: cannot read ", path));
  return ParseMemoryPressure(*text, path);
}

absl::StatusOr<ProcessMemInfo> ProcProbe::ReadProcess(const std::string& dir) const {
  const std::string path = dir + "/status";
  auto text = ReadSmall(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  ProcessMemInfo info;  // a kernel thread or a zombie has no VmRSS: 0, it holds none
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    absl::string_view v = line;
    if (absl::ConsumePrefix(&v, "Name:")) info.name = std::string(absl::StripAsciiWhitespace(v));
    ParseKb(line, "VmRSS", &info.rss_bytes);
    ParseKb(line, "VmHWM", &info.peak_rss_bytes);
  }
  if (auto rollup = ReadSmall(dir + "/smaps_rollup"); rollup.ok()) {
    bool pss = false;
    for (absl::string_view line : absl::StrSplit(*rollup, '\n')) {
      pss |= ParseKb(line, "Pss", &info.pss_bytes);
      ParseKb(line, "Anonymous", &info.anon_bytes);
      ParseKb(line, "Swap", &info.swap_bytes);
    }
    info.has_smaps = pss;
  }
  return info;
}

absl::StatusOr<ProcessMemInfo> ProcProbe::Process(pid_t pid) const {
  return ReadProcess(absl::StrCat(root_, "/", pid));
}

absl::StatusOr<ProcessMemInfo> ProcProbe::Self() const { return ReadProcess(root_ + "/self"); }

absl::StatusOr<ProcessMemInfo> ProcProbe::Tree(pid_t pid) const {
  return ReadTree(absl::StrCat(root_, "/", pid), pid);
}

absl::StatusOr<ProcessMemInfo> ProcProbe::SelfTree() const {
  return ReadTree(root_ + "/self", getpid());
}

absl::StatusOr<ProcessMemInfo> ProcProbe::ReadTree(const std::string& dir, pid_t pid) const {
  auto total = ReadProcess(dir);
  if (!total.ok()) return total;
  total->processes = 1;
  // Children are listed under the thread that forked them, so every task's file is read.
  std::set<std::string> seen = {std::to_string(pid)};
  std::vector<std::string> pending;
  auto add_children = [&](const std::string& process_dir) {
    std::error_code ec;
    for (fs::directory_iterator it(process_dir + "/task", ec), end; !ec && it != end;
         it.increment(ec)) {
      auto text = ReadSmall((it->path() / "children").string());
      if (!text.ok()) continue;
      for (absl::string_view child : absl::StrSplit(*text, ' ', absl::SkipWhitespace())) {
        child = absl::StripAsciiWhitespace(child);
        int64_t n = 0;
        if (absl::SimpleAtoi(child, &n) && n > 0 && seen.insert(std::string(child)).second) {
          pending.push_back(absl::StrCat(root_, "/", child));
        }
      }
    }
  };
  add_children(dir);
  while (!pending.empty() && seen.size() <= kMaxTree) {
    const std::string child = std::move(pending.back());
    pending.pop_back();
    auto info = ReadProcess(child);
    if (!info.ok()) continue;  // gone meanwhile
    total->rss_bytes += info->rss_bytes;
    total->peak_rss_bytes += info->peak_rss_bytes;
    total->pss_bytes += info->pss_bytes;
    total->anon_bytes += info->anon_bytes;
    total->swap_bytes += info->swap_bytes;
    total->has_smaps = total->has_smaps && info->has_smaps;
    ++total->processes;
    add_children(child);
  }
  return total;
}

}  // namespace yolo
