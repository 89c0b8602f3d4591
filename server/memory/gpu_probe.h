// GPU memory through NVML, loaded at run time with dlopen so that yolod runs unchanged where
// there is no GPU or no driver (the probe is then absent, not zero). GpuProbe is the small
// interface the watchdog reads; tests give their own.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

struct GpuProcess {
  pid_t pid = 0;
  int64_t used_bytes = 0;  // what NVML says the process holds on this GPU
};

struct GpuInfo {
  int index = 0;
  std::string uuid;  // GPU-xxxxxxxx-...
  std::string name;  // "NVIDIA H200"
  int64_t total_bytes = 0, used_bytes = 0, free_bytes = 0;
  std::vector<GpuProcess> processes;  // compute processes, ours and others'
};

class GpuProbe {
 public:
  virtual ~GpuProbe() = default;
  // UNAVAILABLE when there is no NVML or no GPU: the caller reports GPUs as absent.
  virtual absl::StatusOr<std::vector<GpuInfo>> Read() const = 0;
};

// The real one: libnvidia-ml.so.1, opened once and kept. Thread-safe.
std::shared_ptr<GpuProbe> MakeNvmlGpuProbe();

}  // namespace yolo
