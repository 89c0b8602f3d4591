// The memory probes' files (/proc/meminfo, pressure/memory, <pid>/status, smaps_rollup, a
// cgroup's memory.* files, /proc/self/cgroup) and the level thresholds: each parses or is an
// error, never a crash; what parses is within bounds.
#include <filesystem>

#include "fuzz/fuzz_util.h"
#include "server/memory/cgroup_probe.h"
#include "server/memory/levels.h"
#include "server/memory/proc_probe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto t = yolo::ParseThresholds(text, "ram"); t.ok()) {
    yolo::fuzz::Require(t->notice > 0 && t->notice < t->warning && t->warning < t->danger &&
                        t->danger <= 1);
  }
  (void)yolo::ParseMemoryPressure(text, "pressure/memory");
  // The same bytes as every file a probe reads.
  const fs::path root = yolo::fuzz::ScratchDir() / "root";
  for (const char* f :
       {"proc/meminfo", "proc/pressure/memory", "proc/7/status", "proc/7/smaps_rollup",
        "proc/self/cgroup", "sys/memory.current", "sys/memory.max", "sys/memory.high",
        "sys/memory.stat", "sys/memory.events", "sys/memory.pressure",
        "sys/memory/memory.usage_in_bytes", "sys/memory/memory.limit_in_bytes",
        "sys/memory/memory.stat", "sys/memory/memory.oom_control"}) {
    fs::create_directories((root / f).parent_path());
    yolo::fuzz::WriteInput((fs::path("root") / f).string(), data, size);
  }
  yolo::ProcProbe proc((root / "proc").string());
  if (auto h = proc.Host(); h.ok()) yolo::fuzz::Require(h->total_bytes >= 0);
  (void)proc.Pressure();
  if (auto p = proc.Process(7); p.ok()) yolo::fuzz::Require(p->rss_bytes >= 0);
  auto cg = yolo::CgroupProbe((root / "sys").string(), (root / "proc").string()).Read();
  if (cg.ok()) yolo::fuzz::Require(cg->working_set_bytes >= 0);
  return 0;
}
