// How many CPUs this process may use: its affinity mask, capped by the cgroup v2 quota.
#pragma once

#include <string>

namespace yolo {

// cpu.max of the cgroup (e.g. "200000 100000" -> 2, "max 100000" -> 0 = no limit), rounded up.
int CpusFromCgroupMax(const std::string& cpu_max);

// The CPUs this process may use (at least 1). `cgroup_root` is where cgroup v2 is mounted.
int UsableCpus(const std::string& cgroup_root = "/sys/fs/cgroup");

}  // namespace yolo
