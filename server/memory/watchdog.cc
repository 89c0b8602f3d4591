#include "server/memory/watchdog.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/line_fit.h"
#include "server/memory/effective_ram.h"

namespace yolo {
namespace {

constexpr size_t kMaxEvents = 500;

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

bool Absent(const absl::Status& s) {
  return s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kUnavailable;
}

std::string Gb(int64_t bytes) { return absl::StrFormat("%.1f GB", bytes / 1e9); }

}  // namespace

std::string DescribeRam(const MemorySample& s) {
  return absl::StrFormat("RAM %.1f %% of %s", s.ram_ratio * 100, Gb(s.ram_limit_bytes));
}

std::string DescribeGpu(const MemorySample& s) {
  if (!s.gpus || s.gpus->empty()) return "no GPU";
  const GpuInfo* fullest = &s.gpus->front();
  for (const GpuInfo& g : *s.gpus) {
    if (g.total_bytes > 0 && fullest->total_bytes > 0 &&
        static_cast<double>(g.used_bytes) / g.total_bytes >
            static_cast<double>(fullest->used_bytes) / fullest->total_bytes) {
      fullest = &g;
    }
  }
  return absl::StrFormat("GPU %d %.1f %% of %s", fullest->index, s.gpu_ratio * 100,
                         Gb(fullest->total_bytes));
}

Watchdog::Watchdog(WatchdogProbes probes, std::shared_ptr<const Clock> clock,
                   WatchdogOptions options, PressureTarget* target,
                   std::function<void(const std::string&)> cleanup)
    : probes_(std::move(probes)),
      clock_(std::move(clock)),
      options_(options),
      target_(target),
      cleanup_(std::move(cleanup)),
      ram_(options.ram, options.hysteresis),
      gpu_(options.gpu, options.hysteresis) {}

Watchdog::~Watchdog() { Stop(); }

void Watchdog::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_thread_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Watchdog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_thread_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::Loop() {
  auto next = std::chrono::steady_clock::now();
  while (true) {
    SampleOnce();
    next += options_.interval;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // a slow sample: no burst to catch up
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_until(lock, next, [&] { return stop_thread_; })) return;
  }
}

MemorySample Watchdog::Read() const {
  MemorySample s;
  s.time = clock_->Now();
  s.wall = clock_->WallNow();
  auto note = [&s](const absl::Status& st) {
    if (!Absent(st)) s.errors.push_back(std::string(st.message()));
  };
  if (auto host = probes_.proc->Host(); host.ok()) {
    s.host = *host;
  } else {
    note(host.status());
  }
  if (auto psi = probes_.proc->Pressure(); psi.ok()) {
    s.pressure = *psi;
  } else {
    note(psi.status());
  }
  if (probes_.cgroup) {
    if (auto cg = probes_.cgroup->Read(); cg.ok()) {
      s.cgroup = *cg;
      if (cg->pressure) s.pressure = cg->pressure;  // the group's own stalls, when it has them
    } else {
      note(cg.status());
    }
  }
  if (probes_.gpu) {
    if (auto gpus = probes_.gpu->Read(); gpus.ok()) {
      s.gpus = *gpus;
    } else {
      note(gpus.status());
    }
  }
  const RamUse ram = EffectiveRam(s.host, s.cgroup);
  s.ram_limit_bytes = ram.limit_bytes;
  s.ram_used_bytes = ram.used_bytes;
  s.ram_ratio = ram.ratio;
  if (s.gpus) {
    for (const GpuInfo& g : *s.gpus) {
      if (g.total_bytes > 0) {
        s.gpu_ratio = std::max(s.gpu_ratio, static_cast<double>(g.used_bytes) / g.total_bytes);
      }
    }
  }
  s.stalling =
      options_.psi_full_avg10 > 0 && s.pressure && s.pressure->full_avg10 > options_.psi_full_avg10;
  return s;
}

MemorySample Watchdog::Peek() const {
  MemorySample s = Read();
  std::lock_guard<std::mutex> lock(mu_);
  s.ram_level = ram_.level();
  s.gpu_level = gpu_.level();
  return s;
}

void Watchdog::SampleOnce() {
  const double cpu_start = ThreadCpuSeconds();
  const auto wall_start = std::chrono::steady_clock::now();
  MemorySample s = Read();
  Level ram_before, gpu_before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ram_before = ram_.level();
    gpu_before = gpu_.level();
    s.ram_level = s.ram_limit_bytes > 0 ? ram_.Update(s.ram_ratio, s.stalling) : ram_.level();
    s.gpu_level = s.gpus ? gpu_.Update(s.gpu_ratio) : gpu_.level();
  }
  Act(s, ram_before, gpu_before);
  s.cpu_seconds = ThreadCpuSeconds() - cpu_start;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  size_t bucket = 0;
  while (bucket + 1 < kSampleSecondsBuckets && wall > kSampleSecondsBounds[bucket]) ++bucket;
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.samples;
  ++counters_.sample_seconds_buckets[bucket];
  counters_.sample_seconds_total += wall;
  counters_.sample_cpu_seconds_total += s.cpu_seconds;
  history_.push_back(std::move(s));
  while (history_.size() > std::max<size_t>(options_.history, 1)) history_.pop_front();
}

void Watchdog::Act(const MemorySample& s, Level ram_before, Level gpu_before) {
  const auto level_event = [&](const char* resource, Level before, Level now,
                               const std::string& what, const Thresholds& t) {
    if (before == now) return;
    const std::string message = absl::StrCat(
        what, ": ", LevelName(before), " -> ", LevelName(now), " (thresholds ", t.ToString(), " %",
        s.stalling && resource[0] == 'r' ? "; PSI stalling" : "", ")");
    if (now >= Level::kWarning) {
      spdlog::warn("memory {} {}", LevelMarker(now), message);
    } else {
      spdlog::info("memory {}", message);
    }
    AddEvent({s.wall, "level", resource, now, message});
  };
  const Thresholds ram_t = ram_thresholds(), gpu_t = gpu_thresholds();
  level_event("ram", ram_before, s.ram_level, DescribeRam(s), ram_t);
  level_event("gpu", gpu_before, s.gpu_level, DescribeGpu(s), gpu_t);

  const Level worst = std::max(s.ram_level, s.gpu_level);
  const Level worst_before = std::max(ram_before, gpu_before);
  if (worst < Level::kWarning && worst_before >= Level::kWarning) target_->EndPressurePolicy();
  const std::string why = s.ram_level >= s.gpu_level ? DescribeRam(s) : DescribeGpu(s);
  const std::string reason = absl::StrCat(why, " is at the ", LevelName(worst), " level");
  if (worst > worst_before && worst >= Level::kWarning) {
    const std::string trigger = LevelName(worst);
    cleanup_(trigger);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.cleanups[trigger];
    }
    AddEvent({s.wall, "cleanup", "", worst, absl::StrCat("cleanup: ", reason)});
    if (worst_before < Level::kWarning) {  // once per episode: a run is halved once for it
      target_->ApplyPressurePolicy(reason);
      AddEvent({s.wall, "policy", "", worst,
                absl::StrCat("pressure policy for running experiments: ", reason)});
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.actions["policy"];
    }
  }
  bool held, stopped_any;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held = held_;
    stopped_any = stopped_any_;
  }
  if (worst == Level::kDanger) {
    if (!held) {
      target_->HoldStarts(true, reason);
      AddEvent({s.wall, "hold", "", worst, absl::StrCat("new starts held: ", reason)});
      std::lock_guard<std::mutex> lock(mu_);
      held_ = true;
      ++counters_.actions["hold"];
    }
    if (!danger_since_) danger_since_ = s.time;
    const auto period = options_.danger_stop_after;
    if (period.count() > 0 && s.time - *danger_since_ >= period &&
        (!last_stop_ || s.time - *last_stop_ >= period)) {
      last_stop_ = s.time;
      const std::string id =
          target_->StopNewestForMemory(absl::StrCat(reason, " for ", period.count(), " s or more"));
      if (!id.empty()) {
        AddEvent({s.wall, "stop", "", worst,
                  absl::StrCat("stopped ", id, " with a checkpoint: ", reason,
                               "; it resumes when memory is back to ok")});
        std::lock_guard<std::mutex> lock(mu_);
        stopped_any_ = true;
        ++counters_.actions["stop"];
      }
    }
  } else {
    danger_since_.reset();
    last_stop_.reset();
    if (held) {
      target_->HoldStarts(false, "");
      AddEvent({s.wall, "release", "", worst,
                absl::StrCat("new starts allowed again: memory is at the ", LevelName(worst),
                             " level")});
      std::lock_guard<std::mutex> lock(mu_);
      held_ = false;
    }
  }
  if (worst == Level::kOk && stopped_any) {
    const std::vector<std::string> ids =
        target_->ResumeStoppedForMemory("memory is back to the ok level");
    for (const std::string& id : ids) {
      AddEvent({s.wall, "resume", "", worst,
                absl::StrCat("resumed ", id, ": memory is back to the ok level")});
    }
    std::lock_guard<std::mutex> lock(mu_);
    stopped_any_ = false;
    counters_.actions["resume"] += static_cast<int64_t>(ids.size());
  }
}

void Watchdog::AddEvent(WatchdogEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(event));
  while (events_.size() > kMaxEvents) events_.pop_front();
}

std::optional<MemorySample> Watchdog::Latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (history_.empty()) return std::nullopt;
  return history_.back();
}

std::vector<MemorySample> Watchdog::History() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {history_.begin(), history_.end()};
}

std::vector<WatchdogEvent> Watchdog::Events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {events_.begin(), events_.end()};
}

WatchdogCounters Watchdog::Counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

MemoryTrend Watchdog::Trend(std::chrono::seconds window) const {
  std::lock_guard<std::mutex> lock(mu_);
  MemoryTrend trend;
  if (history_.empty()) return trend;
  const auto end = history_.back().time;
  std::vector<double> t, y;
  auto first = end;
  for (auto it = history_.rbegin(); it != history_.rend() && end - it->time <= window; ++it) {
    if (it->ram_limit_bytes == 0) continue;
    t.push_back(std::chrono::duration<double>(it->time - end).count());
    y.push_back(static_cast<double>(it->ram_used_bytes));
    first = it->time;
  }
  trend.samples = static_cast<int>(t.size());
  trend.window_seconds = std::chrono::duration<double>(end - first).count();
  if (const LineFit fit = FitLeastSquares(t, y); fit.ok) trend.ram_bytes_per_second = fit.slope;
  return trend;
}

Thresholds Watchdog::ram_thresholds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ram_.thresholds();
}

Thresholds Watchdog::gpu_thresholds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.thresholds();
}

void Watchdog::SetThresholds(std::optional<Thresholds> ram, std::optional<Thresholds> gpu) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ram) ram_.set_thresholds(*ram);
  if (gpu) gpu_.set_thresholds(*gpu);
}

bool Watchdog::starts_held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

}  // namespace yolo
