// Memory readings from /proc: the host's (meminfo), its memory pressure (PSI) and a process's
// (status, smaps_rollup). The root is a parameter so that tests read fixture files. Every
// error names the file; nothing here throws. Any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace yolo {

struct HostMemInfo {
  int64_t total_bytes = 0;      // MemTotal
  int64_t available_bytes = 0;  // MemAvailable
  int64_t swap_total_bytes = 0;
  int64_t swap_free_bytes = 0;
};

struct ProcessMemInfo {
  std::string name;            // Name: of status
  int64_t rss_bytes = 0;       // VmRSS
  int64_t peak_rss_bytes = 0;  // VmHWM
  // From smaps_rollup, when the kernel has it (has_smaps).
  bool has_smaps = false;
  int64_t pss_bytes = 0;   // Pss: this process's share of the pages it maps
  int64_t anon_bytes = 0;  // Anonymous
  int64_t swap_bytes = 0;  // Swap
  // 1 for one process; for a tree (ProcProbe::Tree), how many were summed.
  int processes = 1;
};

// Pressure stall information, /proc/pressure/memory or a cgroup's memory.pressure: the share
// of time (percent) some / all tasks waited for memory over 10 and 60 s, and the total stall.
struct MemoryPressure {
  double some_avg10 = 0, some_avg60 = 0;
  double full_avg10 = 0, full_avg60 = 0;
  int64_t some_total_us = 0, full_total_us = 0;
};
// Parses the PSI format ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and a "full" line);
// `path` names the file in errors.
absl::StatusOr<MemoryPressure> ParseMemoryPressure(absl::string_view text, const std::string& path);

class ProcProbe {
 public:
  explicit ProcProbe(std::string root = "/proc") : root_(std::move(root)) {}
  absl::StatusOr<HostMemInfo> Host() const;
  // NOT_FOUND when the kernel has no PSI (before 4.20, or psi=0).
  absl::StatusOr<MemoryPressure> Pressure() const;
  // NOT_FOUND once the process is gone.
  absl::StatusOr<ProcessMemInfo> Process(pid_t pid) const;
  absl::StatusOr<ProcessMemInfo> Self() const;
  // The process and its descendants (a data-parallel worker and the ranks it started), summed:
  // RSS, PSS, anonymous and swap add up, and peak_rss_bytes is the sum of the peaks (a bound,
  // they need not have peaked together). The children come from /proc/<pid>/task/*/children
  // (CONFIG_PROC_CHILDREN); without that file it is the process alone. A descendant that exits
  // while it is read is left out. NOT_FOUND once the process itself is gone.
  absl::StatusOr<ProcessMemInfo> Tree(pid_t pid) const;
  absl::StatusOr<ProcessMemInfo> SelfTree() const;
  const std::string& root() const { return root_; }

 private:
  absl::StatusOr<ProcessMemInfo> ReadProcess(const std::string& dir) const;
  absl::StatusOr<ProcessMemInfo> ReadTree(const std::string& dir, pid_t pid) const;
  std::string root_;
};

}  // namespace yolo
