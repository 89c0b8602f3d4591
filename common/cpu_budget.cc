#include "common/cpu_budget.h"

#include <sched.h>

#include <cmath>
#include <fstream>
#include <sstream>

namespace yolo {

int CpusFromCgroupMax(const std::string& cpu_max) {
  std::istringstream in(cpu_max);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  double q = 0;
  try {
    q = std::stod(quota);
  } catch (...) {
    return 0;
  }
  return q > 0 ? static_cast<int>(std::ceil(q / period)) : 0;
}

int UsableCpus(const std::string& cgroup_root) {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = 1;
  // The process's own cgroup, from /proc/self/cgroup ("0::/path").
  std::ifstream self("/proc/self/cgroup");
  std::string line, path = "/";
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  for (std::string dir = path;; dir = dir.substr(0, dir.rfind('/'))) {
    std::ifstream max(cgroup_root + (dir == "/" ? "" : dir) + "/cpu.max");
    std::string text;
    if (max && std::getline(max, text)) {
      const int limit = CpusFromCgroupMax(text);
      if (limit > 0 && limit < cpus) cpus = limit;
    }
    if (dir.empty() || dir == "/" || dir.find('/') == std::string::npos) break;
  }
  return cpus;
}

}  // namespace yolo
