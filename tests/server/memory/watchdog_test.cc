#include "server/memory/watchdog.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/temp_dir.h"

namespace yolo {
namespace {

// Records what the watchdog asks of the experiments (the real target, ExperimentManager, is
// exercised by the end-to-end tests).
class RecordingTarget final : public PressureTarget {
 public:
  void ApplyPressurePolicy(const std::string& reason) override {
    calls.push_back("policy: " + reason);
  }
  void EndPressurePolicy() override { calls.push_back("end policy"); }
  void HoldStarts(bool hold, const std::string&) override {
    calls.push_back(hold ? "hold" : "release");
  }
  std::string StopNewestForMemory(const std::string&) override {
    calls.push_back("stop");
    return running ? "exp-0000000a" : "";
  }
  std::vector<std::string> ResumeStoppedForMemory(const std::string&) override {
    calls.push_back("resume");
    return {"exp-0000000a"};
  }
  bool Called(const std::string& prefix) const {
    for (const auto& c : calls) {
      if (c.rfind(prefix, 0) == 0) return true;
    }
    return false;
  }
  std::vector<std::string> calls;
  bool running = true;
};

class WatchdogTest : public ::testing::Test {
 protected:
  // Host RAM of 10 GB with `used` percent in use; no cgroup limit.
  void SetUse(double used_percent) {
    const int64_t total_kb = 10'000'000;
    const int64_t available_kb = static_cast<int64_t>(total_kb * (1 - used_percent / 100));
    tmp_.Write("proc/meminfo",
               absl::StrCat("MemTotal: ", total_kb, " kB\nMemAvailable: ", available_kb, " kB\n"));
  }
  std::unique_ptr<Watchdog> Make(WatchdogOptions options = {}) {
    WatchdogProbes probes;
    probes.proc = std::make_shared<ProcProbe>((tmp_ / "proc").string());
    probes.cgroup =
        std::make_shared<CgroupProbe>((tmp_ / "sys").string(), (tmp_ / "proc").string());
    options.hysteresis = {0.05, 2};
    return std::make_unique<Watchdog>(
        probes, clock_, options, &target_,
        [this](const std::string& trigger) { cleanups_.push_back(trigger); });
  }
  void Tick(Watchdog& w, int seconds = 1) {
    clock_->Advance(std::chrono::seconds(seconds));
    w.SampleOnce();
  }
  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  RecordingTarget target_;
  std::vector<std::string> cleanups_;
};

TEST_F(WatchdogTest, NoticeIsAnEventOnly) {
  SetUse(75);
  auto w = Make();
  Tick(*w);
  EXPECT_EQ(w->Latest()->ram_level, Level::kNotice);
  EXPECT_TRUE(target_.calls.empty());
  EXPECT_TRUE(cleanups_.empty());
  ASSERT_FALSE(w->Events().empty());
  EXPECT_EQ(w->Events().back().kind, "level");
  EXPECT_NE(w->Events().back().message.find("RAM 75.0 %"), std::string::npos);
}

TEST_F(WatchdogTest, WarningCleansUpAndAppliesThePolicyOncePerEpisode) {
  SetUse(50);
  auto w = Make();
  Tick(*w);
  SetUse(85);
  Tick(*w);  // the action comes at the first sample above the threshold
  EXPECT_EQ(cleanups_, std::vector<std::string>{"warning"});
  ASSERT_TRUE(target_.Called("policy: RAM 85.0 %")) << target_.calls.size();
  for (int i = 0; i < 5; ++i) Tick(*w);  // staying at warning does nothing more
  EXPECT_EQ(target_.calls.size(), 1u);
  SetUse(60);
  Tick(*w);
  Tick(*w);
  EXPECT_TRUE(target_.Called("end policy"));
  EXPECT_EQ(w->Counters().actions.at("policy"), 1);
  EXPECT_EQ(w->Counters().cleanups.at("warning"), 1);
}

TEST_F(WatchdogTest, DangerHoldsStartsThenStopsTheNewestAndResumesAtOk) {
  SetUse(50);
  WatchdogOptions o;
  o.danger_stop_after = std::chrono::seconds(10);
  auto w = Make(o);
  Tick(*w);
  SetUse(95);
  Tick(*w);
  EXPECT_TRUE(target_.Called("hold"));
  EXPECT_TRUE(w->starts_held());
  EXPECT_FALSE(target_.Called("stop"));
  EXPECT_EQ(cleanups_, std::vector<std::string>{"danger"});
  for (int i = 0; i < 9; ++i) Tick(*w);
  EXPECT_FALSE(target_.Called("stop")) << "stopped before danger lasted 10 s";
  Tick(*w);
  EXPECT_TRUE(target_.Called("stop"));
  // Back below danger: starts go again; at ok (after the hysteresis) the stopped run resumes.
  SetUse(50);
  Tick(*w);
  Tick(*w);
  EXPECT_TRUE(target_.Called("release"));
  EXPECT_FALSE(w->starts_held());
  EXPECT_TRUE(target_.Called("resume"));
  EXPECT_EQ(w->Latest()->ram_level, Level::kOk);
}

TEST_F(WatchdogTest, TheCgroupLimitIsTheEffectiveLimit) {
  SetUse(10);  // the host is nearly empty
  tmp_.Write("proc/self/cgroup", "0::/job\n");
  tmp_.Write("sys/job/memory.current", "900000000\n");
  tmp_.Write("sys/job/memory.max", "1000000000\n");
  tmp_.Write("sys/job/memory.stat", "anon 850000000\ninactive_file 50000000\n");
  auto w = Make();
  Tick(*w);
  const MemorySample s = *w->Latest();
  EXPECT_EQ(s.ram_limit_bytes, 1000000000);
  EXPECT_EQ(s.ram_used_bytes, 850000000);  // the working set
  EXPECT_NEAR(s.ram_ratio, 0.85, 1e-9);
  EXPECT_EQ(s.ram_level, Level::kWarning);
}

TEST_F(WatchdogTest, PsiFullStallRaisesTheRamLevel) {
  SetUse(50);
  tmp_.Write("proc/pressure/memory",
             "some avg10=60.00 avg60=10.00 avg300=1.00 total=9\n"
             "full avg10=35.00 avg60=5.00 avg300=1.00 total=9\n");
  auto w = Make();
  Tick(*w);
  EXPECT_TRUE(w->Latest()->stalling);
  EXPECT_EQ(w->Latest()->ram_level, Level::kNotice);
}

TEST_F(WatchdogTest, ThresholdsSetAtRunTimeApplyAtTheNextSample) {
  SetUse(40);
  auto w = Make();
  Tick(*w);
  EXPECT_EQ(w->Latest()->ram_level, Level::kOk);
  w->SetThresholds(Thresholds{0.1, 0.2, 0.9}, std::nullopt);
  Tick(*w);
  EXPECT_EQ(w->Latest()->ram_level, Level::kWarning);
  EXPECT_TRUE(target_.Called("policy"));
  EXPECT_EQ(w->gpu_thresholds().ToString(), "80,90,95");
}

TEST_F(WatchdogTest, TrendIsTheSlopeOfRamInUse) {
  auto w = Make();
  for (int i = 0; i < 20; ++i) {
    SetUse(30 + i * 0.1);  // 10,000 kB more every second
    Tick(*w);
  }
  const MemoryTrend t = w->Trend(std::chrono::seconds(60));
  EXPECT_EQ(t.samples, 20);
  EXPECT_NEAR(t.ram_bytes_per_second, 10'000 * 1024, 0.01e6);
}

TEST_F(WatchdogTest, AMalformedProbeIsAnErrorNotACrash) {
  tmp_.Write("proc/meminfo", "MemTotal: lots\n");
  auto w = Make();
  Tick(*w);
  const MemorySample s = *w->Latest();
  EXPECT_FALSE(s.host.has_value());
  ASSERT_FALSE(s.errors.empty());
  EXPECT_NE(s.errors[0].find("meminfo"), std::string::npos);
  EXPECT_EQ(s.ram_level, Level::kOk);
}

TEST_F(WatchdogTest, HistoryIsBounded) {
  SetUse(20);
  WatchdogOptions o;
  o.history = 5;
  auto w = Make(o);
  for (int i = 0; i < 12; ++i) Tick(*w);
  EXPECT_EQ(w->History().size(), 5u);
  EXPECT_EQ(w->Counters().samples, 12);
}

}  // namespace
}  // namespace yolo
