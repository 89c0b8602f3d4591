// yolod's memory logic: the memory report and the forced cleanup, over the probes and the
// workers. The gRPC service above it only translates. LibTorch-free.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "server/memory/clock.h"
#include "server/memory/proc_probe.h"
#include "yolo/v1/memory.pb.h"

namespace yolo {

// What the memory side asks of the experiments: their workers' memory and their cleanups.
// ExperimentManager is the real one.
class WorkerFleet {
 public:
  virtual ~WorkerFleet() = default;
  // Memory of each running worker: /proc for RSS, the worker's reports for the rest.
  virtual std::vector<v1::WorkerMemory> WorkerMemory() const = 0;
  // Asks every worker to clean up and waits up to `timeout` for their answers.
  virtual std::vector<v1::CleanupResult> CleanupWorkers(std::chrono::milliseconds timeout) = 0;
};

struct MemoryOptions {
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();
  std::shared_ptr<const Clock> clock = std::make_shared<RealClock>();
};

class MemoryManager {
 public:
  // `fleet` must outlive the manager.
  MemoryManager(WorkerFleet* fleet, MemoryOptions options = {})
      : fleet_(fleet), options_(std::move(options)) {}

  // The host, yolod and each worker, now. Any thread.
  v1::MemoryReport Report() const;
  // malloc_trim in yolod, then a cleanup in every worker, waiting up to `timeout` for their
  // answers; the bytes freed per component and in all. Blocks: call it off the gRPC threads.
  v1::ForceCleanupResponse Cleanup(std::chrono::milliseconds timeout);

 private:
  WorkerFleet* fleet_;
  MemoryOptions options_;
};

}  // namespace yolo
