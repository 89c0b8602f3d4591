// The effective RAM limit: the smaller of the host's RAM and the memory cgroup's limit, so that
// "80 %" inside a container means 80 % of what the container may use. The watchdog's levels and
// the worker's pre-flight estimate both read RAM through it.
#pragma once

#include <cstdint>
#include <optional>

#include "server/memory/cgroup_probe.h"
#include "server/memory/proc_probe.h"

namespace yolo {

struct RamUse {
  int64_t limit_bytes = 0;      // 0: unknown (no meminfo and no cgroup limit)
  int64_t used_bytes = 0;       // of the more constrained side, against limit_bytes
  double ratio = 0;             // the larger of the host's and the cgroup's used ratio
  int64_t available_bytes = 0;  // the smaller of what the host and the cgroup have left
};

// Host use is MemTotal - MemAvailable; a cgroup's is its working set (usage - inactive_file,
// as the kubelet counts it), and it is the limit when it is below the host's RAM.
RamUse EffectiveRam(const std::optional<HostMemInfo>& host,
                    const std::optional<CgroupMemory>& cgroup);

// Reads both now (a probe that fails counts as absent).
RamUse ReadEffectiveRam(const ProcProbe& proc, const CgroupProbe& cgroup);

}  // namespace yolo
