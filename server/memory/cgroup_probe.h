// The memory of the cgroup yolod runs in: cgroup v2 (memory.current, memory.max, memory.high,
// memory.stat, memory.events, memory.pressure) with a v1 fallback (memory.usage_in_bytes,
// memory.limit_in_bytes, memory.stat, memory.oom_control). The roots are parameters so that
// tests read fixture files. Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/memory/proc_probe.h"

namespace yolo {

struct CgroupMemory {
  int version = 2;                     // 1 or 2
  std::string path;                    // the cgroup's folder that was read
  int64_t usage_bytes = 0;             // memory.current (v1: memory.usage_in_bytes)
  std::optional<int64_t> limit_bytes;  // memory.max; none when "max" (unlimited)
  std::optional<int64_t> high_bytes;   // memory.high (v2 only); none when "max"
  int64_t anon_bytes = 0;              // memory.stat anon (v1: total_rss)
  int64_t file_bytes = 0;              // file (v1: total_cache)
  int64_t inactive_file_bytes = 0;     // inactive_file (v1: total_inactive_file)
  int64_t working_set_bytes = 0;       // usage - inactive_file, as the kubelet counts it
  // memory.events (v1: memory.oom_control's oom_kill and memory.failcnt as max).
  int64_t high_events = 0, max_events = 0, oom_events = 0, oom_kill_events = 0;
  std::optional<MemoryPressure> pressure;  // memory.pressure (v2 with PSI)
};

class CgroupProbe {
 public:
  // `sys_root`: where cgroupfs is mounted; `proc_root`: where self/cgroup says which group.
  explicit CgroupProbe(std::string sys_root = "/sys/fs/cgroup", std::string proc_root = "/proc")
      : sys_root_(std::move(sys_root)), proc_root_(std::move(proc_root)) {}
  // NOT_FOUND when there is no memory controller to read (absent, not zero); DATA_LOSS naming
  // the file when one is malformed.
  absl::StatusOr<CgroupMemory> Read() const;

 private:
  absl::StatusOr<CgroupMemory> ReadV2(const std::string& dir) const;
  absl::StatusOr<CgroupMemory> ReadV1(const std::string& dir) const;
  std::string sys_root_, proc_root_;
};

}  // namespace yolo
