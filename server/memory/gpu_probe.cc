#include "server/memory/gpu_probe.h"

#include <dlfcn.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace yolo {
namespace {

// The few NVML declarations used, as nvml.h has them (ABI-stable since NVML 5).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlInsufficientSize = 7;
struct NvmlMemory {
  unsigned long long total, free, used;
};
struct NvmlProcessInfo {  // nvmlProcessInfo_t of the _v2 and _v3 calls
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};
struct NvmlProcessInfoV1 {  // of the unversioned call
  unsigned int pid;
  unsigned long long usedGpuMemory;
};
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;

class NvmlGpuProbe final : public GpuProbe {
 public:
  NvmlGpuProbe() {
    handle_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      error_ = absl::StrCat("no NVML (", dlerror(), ")");
      return;
    }
    auto sym = [this](const char* name) { return dlsym(handle_, name); };
    init_ = reinterpret_cast<nvmlReturn_t (*)()>(sym("nvmlInit_v2"));
    count_ = reinterpret_cast<nvmlReturn_t (*)(unsigned*)>(sym("nvmlDeviceGetCount_v2"));
    by_index_ = reinterpret_cast<nvmlReturn_t (*)(unsigned, nvmlDevice_t*)>(
        sym("nvmlDeviceGetHandleByIndex_v2"));
    uuid_ =
        reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned)>(sym("nvmlDeviceGetUUID"));
    name_ =
        reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned)>(sym("nvmlDeviceGetName"));
    memory_ = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, NvmlMemory*)>(
        sym("nvmlDeviceGetMemoryInfo"));
    procs_ = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned*, NvmlProcessInfo*)>(
        sym("nvmlDeviceGetComputeRunningProcesses_v3"));
    if (procs_ == nullptr) {
      procs_ = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned*, NvmlProcessInfo*)>(
          sym("nvmlDeviceGetComputeRunningProcesses_v2"));
    }
    procs_v1_ = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned*, NvmlProcessInfoV1*)>(
        sym("nvmlDeviceGetComputeRunningProcesses"));
    if (!init_ || !count_ || !by_index_ || !uuid_ || !name_ || !memory_) {
      error_ = "NVML lacks a function yolod needs";
    } else if (const nvmlReturn_t rc = init_(); rc != kNvmlSuccess) {
      error_ = absl::StrCat("nvmlInit failed (NVML error ", rc, ")");
    } else {
      ok_ = true;
    }
  }
  // The library stays loaded for the life of the process: NVML's threads may outlive a close.

  absl::StatusOr<std::vector<GpuInfo>> Read() const override {
    if (!ok_) return absl::UnavailableError(error_);
    std::lock_guard<std::mutex> lock(mu_);
    unsigned n = 0;
    if (count_(&n) != kNvmlSuccess) return absl::UnavailableError("nvmlDeviceGetCount failed");
    if (n == 0) return absl::UnavailableError("NVML sees no GPU");
    std::vector<GpuInfo> out;
    for (unsigned i = 0; i < n; ++i) {
      nvmlDevice_t dev = nullptr;
      if (by_index_(i, &dev) != kNvmlSuccess) continue;
      GpuInfo g;
      g.index = static_cast<int>(i);
      char text[96] = {};
      if (uuid_(dev, text, sizeof text) == kNvmlSuccess) g.uuid = text;
      char name[96] = {};
      if (name_(dev, name, sizeof name) == kNvmlSuccess) g.name = name;
      NvmlMemory m{};
      if (memory_(dev, &m) != kNvmlSuccess) continue;
      g.total_bytes = static_cast<int64_t>(m.total);
      g.used_bytes = static_cast<int64_t>(m.used);
      g.free_bytes = static_cast<int64_t>(m.free);
      ReadProcesses(dev, &g);
      out.push_back(std::move(g));
    }
    return out;
  }

 private:
  void ReadProcesses(nvmlDevice_t dev, GpuInfo* g) const {
    unsigned count = 64;
    if (procs_ != nullptr) {
      std::vector<NvmlProcessInfo> infos(count);
      nvmlReturn_t rc = procs_(dev, &count, infos.data());
      if (rc == kNvmlInsufficientSize) {
        infos.resize(count + 8);
        count = static_cast<unsigned>(infos.size());
        rc = procs_(dev, &count, infos.data());
      }
      if (rc != kNvmlSuccess) return;
      for (unsigned k = 0; k < count && k < infos.size(); ++k)
        Add(infos[k].pid, infos[k].usedGpuMemory, g);
    } else if (procs_v1_ != nullptr) {
      std::vector<NvmlProcessInfoV1> infos(count);
      if (procs_v1_(dev, &count, infos.data()) != kNvmlSuccess) return;
      for (unsigned k = 0; k < count && k < infos.size(); ++k)
        Add(infos[k].pid, infos[k].usedGpuMemory, g);
    }
  }
  static void Add(unsigned pid, unsigned long long used, GpuInfo* g) {
    GpuProcess p;
    p.pid = static_cast<pid_t>(pid);
    p.used_bytes = used == kNvmlValueNotAvailable ? 0 : static_cast<int64_t>(used);
    g->processes.push_back(p);
  }

  void* handle_ = nullptr;
  bool ok_ = false;
  std::string error_;
  mutable std::mutex mu_;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*count_)(unsigned*) = nullptr;
  nvmlReturn_t (*by_index_)(unsigned, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*uuid_)(nvmlDevice_t, char*, unsigned) = nullptr;
  nvmlReturn_t (*name_)(nvmlDevice_t, char*, unsigned) = nullptr;
  nvmlReturn_t (*memory_)(nvmlDevice_t, NvmlMemory*) = nullptr;
  nvmlReturn_t (*procs_)(nvmlDevice_t, unsigned*, NvmlProcessInfo*) = nullptr;
  nvmlReturn_t (*procs_v1_)(nvmlDevice_t, unsigned*, NvmlProcessInfoV1*) = nullptr;
};

}  // namespace

std::shared_ptr<GpuProbe> MakeNvmlGpuProbe() { return std::make_shared<NvmlGpuProbe>(); }

}  // namespace yolo
