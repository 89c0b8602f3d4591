#include "server/memory/effective_ram.h"

#include <algorithm>

namespace yolo {

RamUse EffectiveRam(const std::optional<HostMemInfo>& host,
                    const std::optional<CgroupMemory>& cgroup) {
  RamUse r;
  double host_ratio = 0, group_ratio = 0;
  if (host && host->total_bytes > 0) {
    r.limit_bytes = host->total_bytes;
    r.used_bytes = std::max<int64_t>(host->total_bytes - host->available_bytes, 0);
    r.available_bytes = std::max<int64_t>(host->available_bytes, 0);
    host_ratio = static_cast<double>(r.used_bytes) / static_cast<double>(r.limit_bytes);
  }
  if (cgroup && cgroup->limit_bytes && *cgroup->limit_bytes > 0 &&
      (r.limit_bytes == 0 || *cgroup->limit_bytes < r.limit_bytes)) {
    group_ratio =
        static_cast<double>(cgroup->working_set_bytes) / static_cast<double>(*cgroup->limit_bytes);
    r.limit_bytes = *cgroup->limit_bytes;
    if (group_ratio >= host_ratio) r.used_bytes = cgroup->working_set_bytes;
    const int64_t group_left =
        std::max<int64_t>(*cgroup->limit_bytes - cgroup->working_set_bytes, 0);
    r.available_bytes = host ? std::min(r.available_bytes, group_left) : group_left;
  }
  r.ratio = std::max(host_ratio, group_ratio);
  return r;
}

RamUse ReadEffectiveRam(const ProcProbe& proc, const CgroupProbe& cgroup) {
  std::optional<HostMemInfo> host;
  std::optional<CgroupMemory> group;
  if (auto h = proc.Host(); h.ok()) host = *h;
  if (auto g = cgroup.Read(); g.ok()) group = *g;
  return EffectiveRam(host, group);
}

}  // namespace yolo
