// Memory readings from /proc: the host's (meminfo) and a process's (status). The root is a
// parameter so that tests read fixture files.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

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
};

class ProcProbe {
 public:
  explicit ProcProbe(std::string root = "/proc") : root_(std::move(root)) {}
  absl::StatusOr<HostMemInfo> Host() const;
  // NOT_FOUND once the process is gone.
  absl::StatusOr<ProcessMemInfo> Process(pid_t pid) const;
  absl::StatusOr<ProcessMemInfo> Self() const;

 private:
  absl::StatusOr<ProcessMemInfo> ReadStatus(const std::string& path) const;
  std::string root_;
};

}  // namespace yolo
