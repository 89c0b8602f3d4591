// yolod's memory logic: the watchdog, the memory report, the levels and the forced cleanup,
// over the probes and the workers. The gRPC service above it only translates. LibTorch-free.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/memory/cgroup_probe.h"
#include "server/memory/clock.h"
#include "server/memory/gpu_probe.h"
#include "server/memory/proc_probe.h"
#include "server/memory/watchdog.h"
#include "yolo/v1/memory.pb.h"

namespace yolo {

// What the memory side asks of the experiments: their workers' memory and their cleanups.
// ExperimentManager is the real one.
class WorkerFleet {
 public:
  virtual ~WorkerFleet() = default;
  // Memory of each running worker: /proc for RSS and PSS, the worker's reports for the rest.
  virtual std::vector<v1::WorkerMemory> WorkerMemory() const = 0;
  // Asks every worker to clean up and waits up to `timeout` for their answers (0: asks only).
  // `trigger` ("warning", "danger", "manual") labels the bytes the workers free in the metrics.
  virtual std::vector<v1::CleanupResult> CleanupWorkers(std::chrono::milliseconds timeout,
                                                        const std::string& trigger) = 0;
};

// yolod's cleanups since it started, by trigger ("warning", "danger": the watchdog's;
// "manual": ForceCleanup), and what yolod's own malloc_trim gave back in them.
struct CleanupCounters {
  std::map<std::string, int64_t> runs;
  std::map<std::string, int64_t> yolod_freed_bytes;
};

struct MemoryOptions {
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();
  std::shared_ptr<const CgroupProbe> cgroup = std::make_shared<CgroupProbe>();
  std::shared_ptr<const GpuProbe> gpu;  // null: GPUs are not read
  std::shared_ptr<const Clock> clock = std::make_shared<RealClock>();
  WatchdogOptions watchdog;
};

class MemoryManager {
 public:
  // `fleet` and `target` (both ExperimentManager in yolod) must outlive the manager.
  MemoryManager(WorkerFleet* fleet, PressureTarget* target, MemoryOptions options = {});
  ~MemoryManager();  // stops the watchdog

  void StartWatchdog();
  void StopWatchdog();

  // The host, the cgroup, PSI, the GPUs, yolod and each worker, their levels, the trend and the
  // watchdog's recent events. Any thread.
  v1::MemoryReport Report() const;
  v1::MemoryLevels Levels() const;
  // INVALID_ARGUMENT naming the field when a set of thresholds is not increasing in (0, 100].
  absl::StatusOr<v1::MemoryLevels> SetLevels(const v1::SetMemoryLevelsRequest& request);
  // malloc_trim in yolod, then a cleanup in every worker, waiting up to `timeout` for their
  // answers; the bytes freed per component and in all. Blocks: call it off the gRPC threads.
  v1::ForceCleanupResponse Cleanup(std::chrono::milliseconds timeout);

  Watchdog& watchdog() { return *watchdog_; }
  CleanupCounters Cleanups() const;

 private:
  // malloc_trim, counted under `trigger`.
  v1::CleanupResult TrimSelf(const std::string& trigger);

  WorkerFleet* fleet_;
  MemoryOptions options_;
  std::unique_ptr<Watchdog> watchdog_;
  mutable std::mutex counters_mu_;
  CleanupCounters cleanups_;  // guarded by counters_mu_
};

// The report in one line, for logs: "RAM ok 23.4 % of 24.0 GB, 18.4 GB available, yolod RSS
// 31.2 MB, 1 worker (812.0 MB), PSI full 0.0 %" (and the fullest GPU, with GPUs).
std::string ReportSummary(const v1::MemoryReport& report);

}  // namespace yolo
