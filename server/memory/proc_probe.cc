#include "server/memory/proc_probe.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace yolo {
namespace {

// "MemTotal:       24534124 kB" -> bytes.
bool ParseKb(absl::string_view line, absl::string_view key, int64_t* out) {
  if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) return false;
  line = absl::StripAsciiWhitespace(line);
  absl::ConsumeSuffix(&line, " kB");
  int64_t kb = 0;
  if (!absl::SimpleAtoi(line, &kb)) return false;
  *out = kb * 1024;
  return true;
}

}  // namespace

absl::StatusOr<HostMemInfo> ProcProbe::Host() const {
  const std::string path = root_ + "/meminfo";
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  HostMemInfo info;
  bool total = false, available = false;
  for (std::string line; std::getline(in, line);) {
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

absl::StatusOr<ProcessMemInfo> ProcProbe::ReadStatus(const std::string& path) const {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  ProcessMemInfo info;
  for (std::string line; std::getline(in, line);) {
    absl::string_view v(line);
    if (absl::ConsumePrefix(&v, "Name:")) info.name = std::string(absl::StripAsciiWhitespace(v));
    ParseKb(line, "VmRSS", &info.rss_bytes);
    ParseKb(line, "VmHWM", &info.peak_rss_bytes);
  }
  return info;
}

absl::StatusOr<ProcessMemInfo> ProcProbe::Process(pid_t pid) const {
  return ReadStatus(absl::StrCat(root_, "/", pid, "/status"));
}

absl::StatusOr<ProcessMemInfo> ProcProbe::Self() const {
  return ReadStatus(root_ + "/self/status");
}

}  // namespace yolo
