// The memory watchdog: samples the host, the cgroup, PSI and the GPUs every interval, keeps a
// bounded history, derives levels and the trend, and acts:
//   notice  an event, logged and shown;
//   warning a cleanup, then the pressure policy at each running experiment's next safe point;
//   danger  a cleanup at once, new starts held, and if danger lasts `danger_stop_after` the
//           newest running experiment stopped with a checkpoint, resumed once memory is ok.
// LibTorch-free. One thread of its own (Start); tests call SampleOnce with a manual clock.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/memory/cgroup_probe.h"
#include "server/memory/clock.h"
#include "server/memory/gpu_probe.h"
#include "server/memory/levels.h"
#include "server/memory/proc_probe.h"

namespace yolo {

// What the watchdog does to the experiments; ExperimentManager is the real one. Called from
// the watchdog's thread, never with its lock held.
class PressureTarget {
 public:
  virtual ~PressureTarget() = default;
  // The pressure policy at each running experiment's next epoch boundary (and at the first of
  // those that start while it is in force): batch halved with accumulation doubled, workers
  // at most 2, cache off, save_period at least 20, plots off.
  virtual void ApplyPressurePolicy(const std::string& reason) = 0;
  // Memory fell below the warning level: experiments that start from now on run as asked.
  virtual void EndPressurePolicy() = 0;
  // Holds new starts (StartExperiment answers RESOURCE_EXHAUSTED with `reason`; queued ones
  // wait), or lets them go again.
  virtual void HoldStarts(bool hold, const std::string& reason) = 0;
  // Stops the newest running experiment gracefully (it checkpoints), marked to be resumed when
  // memory is back to ok; its id, or "" when none runs.
  virtual std::string StopNewestForMemory(const std::string& reason) = 0;
  // Resumes what StopNewestForMemory stopped; returns their ids.
  virtual std::vector<std::string> ResumeStoppedForMemory(const std::string& reason) = 0;
};

struct WatchdogOptions {
  std::chrono::milliseconds interval{1000};
  size_t history = 3600;  // samples kept: an hour at 1 Hz
  Thresholds ram = kDefaultRamThresholds;
  Thresholds gpu = kDefaultGpuThresholds;
  Hysteresis hysteresis;
  double psi_full_avg10 = 20;  // percent of time all tasks stalled (10 s); above: RAM level +1
  std::chrono::seconds danger_stop_after{30};  // then the newest run is stopped (0: never)
};

struct MemorySample {
  std::chrono::steady_clock::time_point time;
  std::chrono::system_clock::time_point wall;
  std::optional<HostMemInfo> host;
  std::optional<CgroupMemory> cgroup;
  std::optional<MemoryPressure> pressure;
  std::optional<std::vector<GpuInfo>> gpus;  // none: no NVML or no GPU
  // RAM against the effective limit: the smaller of host RAM and the cgroup's limit.
  int64_t ram_limit_bytes = 0;
  int64_t ram_used_bytes = 0;
  double ram_ratio = 0;
  double gpu_ratio = 0;   // the fullest GPU
  bool stalling = false;  // PSI full avg10 above its bound
  Level ram_level = Level::kOk;
  Level gpu_level = Level::kOk;
  double cpu_seconds = 0;           // the watchdog's own CPU time for this sample
  std::vector<std::string> errors;  // probes that failed (a malformed file), each naming it
};

struct WatchdogEvent {
  std::chrono::system_clock::time_point wall;
  std::string kind;      // "level", "cleanup", "policy", "hold", "release", "stop", "resume"
  std::string resource;  // "ram" or "gpu" ("" when not about one)
  Level level = Level::kOk;
  std::string message;
};

// Upper bounds (seconds) of the buckets of WatchdogCounters::sample_seconds_buckets.
inline constexpr double kSampleSecondsBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,  0.1,    0.25,  1};
inline constexpr size_t kSampleSecondsBuckets = std::size(kSampleSecondsBounds) + 1;  // and +Inf

// Counts since yolod started, for reports and metrics.
struct WatchdogCounters {
  int64_t samples = 0;
  // Each sample's wall time (probes read, levels derived, actions taken), bucketed by the
  // bounds above; not cumulative, the last bucket for longer ones.
  std::array<int64_t, kSampleSecondsBuckets> sample_seconds_buckets{};
  double sample_seconds_total = 0;
  std::map<std::string, int64_t> cleanups;  // by trigger: "warning", "danger"
  std::map<std::string, int64_t> actions;   // by kind: "policy", "hold", "stop", "resume"
  double sample_cpu_seconds_total = 0;
};

struct MemoryTrend {
  double ram_bytes_per_second = 0;  // least-squares slope of RAM used over the window
  double window_seconds = 0;
  int samples = 0;
};

struct WatchdogProbes {
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();
  std::shared_ptr<const CgroupProbe> cgroup = std::make_shared<CgroupProbe>();
  std::shared_ptr<const GpuProbe> gpu;  // null: no GPUs are read
};

class Watchdog {
 public:
  // `cleanup(trigger)` frees what yolod and its workers can (it must not block for long);
  // `target` and `cleanup` must outlive the watchdog.
  Watchdog(WatchdogProbes probes, std::shared_ptr<const Clock> clock, WatchdogOptions options,
           PressureTarget* target, std::function<void(const std::string& trigger)> cleanup);
  ~Watchdog();  // stops the thread

  void Start();  // samples every interval on a thread of its own
  void Stop();
  // One sample and what it calls for. The thread calls it; tests call it directly.
  void SampleOnce();
  // A sample read now, with the levels as they stand, acting on nothing.
  MemorySample Peek() const;

  // Any thread.
  std::optional<MemorySample> Latest() const;
  std::vector<MemorySample> History() const;
  std::vector<WatchdogEvent> Events() const;  // the most recent, oldest first
  WatchdogCounters Counters() const;
  const WatchdogOptions& options() const { return options_; }
  MemoryTrend Trend(std::chrono::seconds window = std::chrono::seconds(60)) const;
  Thresholds ram_thresholds() const;
  Thresholds gpu_thresholds() const;
  // Takes effect at the next sample.
  void SetThresholds(std::optional<Thresholds> ram, std::optional<Thresholds> gpu);
  bool starts_held() const;

 private:
  // The actions for a sample whose levels changed, or that stays in danger.
  void Act(const MemorySample& sample, Level ram_before, Level gpu_before);
  void AddEvent(WatchdogEvent event);  // takes mu_
  void Loop();

  const WatchdogProbes probes_;
  const std::shared_ptr<const Clock> clock_;
  MemorySample Read() const;

  const WatchdogOptions options_;
  PressureTarget* const target_;
  const std::function<void(const std::string&)> cleanup_;

  mutable std::mutex mu_;  // guards what follows
  LevelTracker ram_, gpu_;
  std::deque<MemorySample> history_;
  std::deque<WatchdogEvent> events_;
  WatchdogCounters counters_;
  bool held_ = false;
  std::optional<std::chrono::steady_clock::time_point> danger_since_, last_stop_;
  bool stopped_any_ = false;  // the watchdog stopped runs that wait to be resumed
  bool stop_thread_ = false;
  std::condition_variable cv_;
  std::thread thread_;
};

// "RAM 83.2 % of 24.0 GB" and, with GPUs, "GPU 91.0 % of 80.0 GB (the fullest)".
std::string DescribeRam(const MemorySample& s);
std::string DescribeGpu(const MemorySample& s);

}  // namespace yolo
