#include "server/memory/memory_manager.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/experiments/experiment_manager.h"
#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

// A /proc of fixture files: the host and yolod itself.
std::shared_ptr<ProcProbe> FixtureProc(const TempDir& tmp) {
  tmp.Write("proc/meminfo",
            "MemTotal:  1000000 kB\nMemAvailable:  250000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
  tmp.Write("proc/self/status", "Name:\tyolod\nVmHWM:\t  3000 kB\nVmRSS:\t  2000 kB\n");
  return std::make_shared<ProcProbe>((tmp / "proc").string());
}

std::unique_ptr<ExperimentManager> IdleManager(const TempDir& tmp,
                                               std::shared_ptr<const ProcProbe> proc) {
  ManagerOptions options;
  options.state_dir = (tmp / "state").string();
  options.worker_path = "/bin/false";
  options.proc = std::move(proc);
  auto m =
      ExperimentManager::Create(options, [](const std::string&) { return SpecCheckOptions(); });
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// Fixture probes only: no cgroup, no GPU.
MemoryOptions Options(const TempDir& tmp, std::shared_ptr<const ProcProbe> proc,
                      std::shared_ptr<const Clock> clock) {
  MemoryOptions o;
  o.proc = std::move(proc);
  o.cgroup = std::make_shared<CgroupProbe>((tmp / "no-sys").string(), (tmp / "no-proc").string());
  o.clock = std::move(clock);
  return o;
}

TEST(MemoryManagerTest, ReportsTheHostAndYolodFromTheProbes) {
  TempDir tmp;
  auto proc = FixtureProc(tmp);
  auto experiments = IdleManager(tmp, proc);
  ASSERT_NE(experiments, nullptr);
  auto clock = std::make_shared<ManualClock>();
  MemoryManager memory(experiments.get(), experiments.get(), Options(tmp, proc, clock));
  const v1::MemoryReport report = memory.Report();
  EXPECT_EQ(report.host().total_bytes(), 1000000LL * 1024);
  EXPECT_EQ(report.host().used_bytes(), 750000LL * 1024);
  EXPECT_DOUBLE_EQ(report.host().used_ratio(), 0.75);
  EXPECT_EQ(report.daemon().rss_bytes(), 2000LL * 1024);
  EXPECT_EQ(report.daemon().peak_rss_bytes(), 3000LL * 1024);
  EXPECT_EQ(report.time().seconds(),
            std::chrono::duration_cast<std::chrono::seconds>(clock->WallNow().time_since_epoch())
                .count());
  EXPECT_EQ(report.workers_size(), 0);
  EXPECT_FALSE(report.has_cgroup());  // absent, not zero
  EXPECT_EQ(report.gpus_size(), 0);
  EXPECT_FALSE(report.has_gpu());
  EXPECT_DOUBLE_EQ(report.ram().used_ratio(), 0.75);
  EXPECT_EQ(report.ram().level(), v1::MEMORY_OK);  // no sample yet: levels come from samples
  EXPECT_EQ(report.ram().thresholds().warning_percent(), 80);
}

TEST(MemoryManagerTest, TheWatchdogsLevelsReachTheReport) {
  TempDir tmp;
  auto proc = FixtureProc(tmp);  // 75 % in use
  auto experiments = IdleManager(tmp, proc);
  ASSERT_NE(experiments, nullptr);
  MemoryManager memory(experiments.get(), experiments.get(),
                       Options(tmp, proc, std::make_shared<ManualClock>()));
  memory.watchdog().SampleOnce();
  v1::MemoryReport report = memory.Report();
  EXPECT_EQ(report.ram().level(), v1::MEMORY_NOTICE);
  EXPECT_EQ(report.ram().marker(), "\U0001F7E1");
  ASSERT_GT(report.events_size(), 0);
  EXPECT_EQ(report.events(report.events_size() - 1).kind(), "level");
  EXPECT_EQ(report.watchdog().samples(), 1);

  v1::SetMemoryLevelsRequest set;
  set.mutable_ram()->set_notice_percent(50);
  set.mutable_ram()->set_warning_percent(60);
  set.mutable_ram()->set_danger_percent(95);
  auto levels = memory.SetLevels(set);
  ASSERT_TRUE(levels.ok()) << levels.status();
  EXPECT_EQ(levels->ram().warning_percent(), 60);
  EXPECT_EQ(levels->gpu().danger_percent(), 95);  // unchanged
  memory.watchdog().SampleOnce();
  report = memory.Report();
  EXPECT_EQ(report.ram().level(), v1::MEMORY_WARNING);
  EXPECT_EQ(report.watchdog().cleanups().at("warning"), 1);

  set.mutable_ram()->set_warning_percent(40);  // not increasing
  auto bad = memory.SetLevels(set);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("ram"), std::string::npos);
  EXPECT_EQ(memory.Levels().ram().warning_percent(), 60);  // a refused change changes nothing
}

TEST(MemoryManagerTest, AMissingProbeLeavesItsPartOut) {
  TempDir tmp;
  auto proc = std::make_shared<ProcProbe>((tmp / "no-proc").string());
  auto experiments = IdleManager(tmp, proc);
  ASSERT_NE(experiments, nullptr);
  MemoryManager memory(experiments.get(), experiments.get(),
                       Options(tmp, proc, std::make_shared<ManualClock>()));
  const v1::MemoryReport report = memory.Report();
  EXPECT_FALSE(report.has_host());
  EXPECT_FALSE(report.has_daemon());
}

TEST(MemoryManagerTest, CleanupReportsYolodWithNoWorkers) {
  TempDir tmp;
  auto experiments = IdleManager(tmp, std::make_shared<ProcProbe>());
  ASSERT_NE(experiments, nullptr);
  MemoryManager memory(experiments.get(), experiments.get());
  const v1::ForceCleanupResponse r = memory.Cleanup(std::chrono::milliseconds(100));
  ASSERT_EQ(r.results_size(), 1);
  EXPECT_EQ(r.results(0).component(), "yolod");
  EXPECT_TRUE(r.results(0).answered());
  EXPECT_GT(r.results(0).rss_before_bytes(), 0);
  EXPECT_EQ(r.total_freed_bytes(), r.results(0).freed_bytes());
}

}  // namespace
}  // namespace yolo
