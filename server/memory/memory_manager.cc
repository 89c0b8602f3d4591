#include "server/memory/memory_manager.h"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/memory/recommend.h"

namespace yolo {

namespace {

v1::MemoryLevel ToProto(Level l) {
  switch (l) {
    case Level::kOk:
      return v1::MEMORY_OK;
    case Level::kNotice:
      return v1::MEMORY_NOTICE;
    case Level::kWarning:
      return v1::MEMORY_WARNING;
    case Level::kDanger:
      return v1::MEMORY_DANGER;
  }
  return v1::MEMORY_LEVEL_UNSPECIFIED;
}

v1::LevelThresholds ToProto(const Thresholds& t) {
  v1::LevelThresholds out;
  auto pct = [](double r) { return std::round(r * 10000) / 100; };
  out.set_notice_percent(pct(t.notice));
  out.set_warning_percent(pct(t.warning));
  out.set_danger_percent(pct(t.danger));
  return out;
}

absl::StatusOr<Thresholds> FromProto(const v1::LevelThresholds& t, const char* field) {
  return ThresholdsFromPercent(t.notice_percent(), t.warning_percent(), t.danger_percent(), field);
}

void ToProto(const MemoryPressure& p, v1::MemoryPressure* out) {
  out->set_some_avg10(p.some_avg10);
  out->set_some_avg60(p.some_avg60);
  out->set_full_avg10(p.full_avg10);
  out->set_full_avg60(p.full_avg60);
  out->set_some_total_us(p.some_total_us);
  out->set_full_total_us(p.full_total_us);
}

void SetProcess(const ProcessMemInfo& info, v1::ProcessMemory* p) {
  p->set_rss_bytes(info.rss_bytes);
  p->set_peak_rss_bytes(info.peak_rss_bytes);
  p->set_pss_bytes(info.pss_bytes);
  p->set_anon_bytes(info.anon_bytes);
  p->set_swap_bytes(info.swap_bytes);
}

}  // namespace

MemoryManager::MemoryManager(WorkerFleet* fleet, PressureTarget* target, MemoryOptions options)
    : fleet_(fleet), options_(std::move(options)) {
  WatchdogProbes probes{options_.proc, options_.cgroup, options_.gpu};
  watchdog_ = std::make_unique<Watchdog>(
      probes, options_.clock, options_.watchdog, target, [this](const std::string& trigger) {
        // At once and without waiting: the workers clean up at their next batch.
        const v1::CleanupResult self = TrimSelf(trigger);
        fleet_->CleanupWorkers(std::chrono::milliseconds(0), trigger);
        spdlog::info("cleanup ({}): yolod gave back {:.1f} MB; workers asked to clean up", trigger,
                     self.freed_bytes() / 1e6);
      });
}

MemoryManager::~MemoryManager() { StopWatchdog(); }

void MemoryManager::StartWatchdog() { watchdog_->Start(); }
void MemoryManager::StopWatchdog() { watchdog_->Stop(); }

v1::MemoryReport MemoryManager::Report() const {
  v1::MemoryReport report;
  *report.mutable_time() = ToTimestamp(options_.clock->WallNow());
  // The latest sample when the watchdog runs; read now otherwise.
  const std::optional<MemorySample> latest = watchdog_->Latest();
  const MemorySample s = latest ? *latest : watchdog_->Peek();
  if (s.host) {
    auto* h = report.mutable_host();
    h->set_total_bytes(s.host->total_bytes);
    h->set_available_bytes(s.host->available_bytes);
    h->set_used_bytes(s.host->total_bytes - s.host->available_bytes);
    h->set_used_ratio(s.host->total_bytes > 0 ? static_cast<double>(h->used_bytes()) /
                                                    static_cast<double>(s.host->total_bytes)
                                              : 0);
    h->set_swap_total_bytes(s.host->swap_total_bytes);
    h->set_swap_free_bytes(s.host->swap_free_bytes);
  }
  if (s.cgroup) {
    auto* c = report.mutable_cgroup();
    c->set_version(s.cgroup->version);
    c->set_path(s.cgroup->path);
    c->set_usage_bytes(s.cgroup->usage_bytes);
    c->set_limit_bytes(s.cgroup->limit_bytes.value_or(0));
    c->set_high_bytes(s.cgroup->high_bytes.value_or(0));
    c->set_working_set_bytes(s.cgroup->working_set_bytes);
    c->set_inactive_file_bytes(s.cgroup->inactive_file_bytes);
    c->set_oom_kill_events(s.cgroup->oom_kill_events);
    c->set_max_events(s.cgroup->max_events);
    if (s.cgroup->pressure) ToProto(*s.cgroup->pressure, c->mutable_pressure());
  }
  if (s.pressure) ToProto(*s.pressure, report.mutable_pressure());
  const Thresholds ram_t = watchdog_->ram_thresholds(), gpu_t = watchdog_->gpu_thresholds();
  auto* ram = report.mutable_ram();
  ram->set_level(ToProto(s.ram_level));
  ram->set_marker(LevelMarker(s.ram_level));
  ram->set_used_ratio(s.ram_ratio);
  ram->set_used_bytes(s.ram_used_bytes);
  ram->set_limit_bytes(s.ram_limit_bytes);
  *ram->mutable_thresholds() = ToProto(ram_t);
  if (s.gpus && !s.gpus->empty()) {
    int64_t used = 0, total = 0;
    for (const GpuInfo& g : *s.gpus) {
      auto* out = report.add_gpus();
      out->set_index(g.index);
      out->set_uuid(g.uuid);
      out->set_name(g.name);
      out->set_total_bytes(g.total_bytes);
      out->set_used_bytes(g.used_bytes);
      out->set_free_bytes(g.free_bytes);
      const double ratio =
          g.total_bytes > 0 ? static_cast<double>(g.used_bytes) / g.total_bytes : 0;
      out->set_used_ratio(ratio);
      if (ratio >= s.gpu_ratio) used = g.used_bytes, total = g.total_bytes;
      for (const GpuProcess& p : g.processes) {
        auto* gp = out->add_processes();
        gp->set_pid(p.pid);
        gp->set_used_bytes(p.used_bytes);
      }
    }
    auto* gpu = report.mutable_gpu();
    gpu->set_level(ToProto(s.gpu_level));
    gpu->set_marker(LevelMarker(s.gpu_level));
    gpu->set_used_ratio(s.gpu_ratio);
    gpu->set_used_bytes(used);
    gpu->set_limit_bytes(total);
    *gpu->mutable_thresholds() = ToProto(gpu_t);
  }
  if (auto self = options_.proc->Self(); self.ok()) {
    report.mutable_daemon()->set_pid(getpid());
    SetProcess(*self, report.mutable_daemon());
  }
  for (auto& w : fleet_->WorkerMemory()) *report.add_workers() = std::move(w);
  const MemoryTrend trend = watchdog_->Trend();
  report.mutable_trend()->set_ram_bytes_per_second(trend.ram_bytes_per_second);
  report.mutable_trend()->set_window_seconds(trend.window_seconds);
  report.mutable_trend()->set_samples(trend.samples);
  const std::vector<WatchdogEvent> events = watchdog_->Events();
  for (size_t i = events.size() > 20 ? events.size() - 20 : 0; i < events.size(); ++i) {
    auto* e = report.add_events();
    *e->mutable_time() = ToTimestamp(events[i].wall);
    e->set_kind(events[i].kind);
    e->set_resource(events[i].resource);
    e->set_level(ToProto(events[i].level));
    e->set_message(events[i].message);
  }
  const WatchdogCounters counters = watchdog_->Counters();
  auto* w = report.mutable_watchdog();
  w->set_interval_seconds(std::chrono::duration<double>(watchdog_->options().interval).count());
  w->set_samples(counters.samples);
  w->set_sample_cpu_seconds_total(counters.sample_cpu_seconds_total);
  w->set_starts_held(watchdog_->starts_held());
  for (const auto& [k, v] : counters.cleanups) (*w->mutable_cleanups())[k] = v;
  for (const auto& [k, v] : counters.actions) (*w->mutable_actions())[k] = v;
  for (const std::string& e : s.errors) w->add_probe_errors(e);
  for (std::string& r : Recommend(report)) report.add_recommendations(std::move(r));
  return report;
}

v1::MemoryLevels MemoryManager::Levels() const {
  v1::MemoryLevels out;
  *out.mutable_ram() = ToProto(watchdog_->ram_thresholds());
  *out.mutable_gpu() = ToProto(watchdog_->gpu_thresholds());
  return out;
}

absl::StatusOr<v1::MemoryLevels> MemoryManager::SetLevels(
    const v1::SetMemoryLevelsRequest& request) {
  std::optional<Thresholds> ram, gpu;
  if (request.has_ram()) {
    auto t = FromProto(request.ram(), "ram");
    if (!t.ok()) return t.status();
    ram = *t;
  }
  if (request.has_gpu()) {
    auto t = FromProto(request.gpu(), "gpu");
    if (!t.ok()) return t.status();
    gpu = *t;
  }
  watchdog_->SetThresholds(ram, gpu);
  spdlog::info("memory levels now RAM {} %, GPU {} %", watchdog_->ram_thresholds().ToString(),
               watchdog_->gpu_thresholds().ToString());
  return Levels();
}

CleanupCounters MemoryManager::Cleanups() const {
  std::lock_guard<std::mutex> lock(counters_mu_);
  return cleanups_;
}

v1::CleanupResult MemoryManager::TrimSelf(const std::string& trigger) {
  const ProcProbe& probe = *options_.proc;
  v1::CleanupResult self;
  self.set_component("yolod");
  self.set_pid(getpid());
  self.set_answered(true);
  if (auto before = probe.Self(); before.ok()) self.set_rss_before_bytes(before->rss_bytes);
  malloc_trim(0);
  if (auto after = probe.Self(); after.ok()) self.set_rss_after_bytes(after->rss_bytes);
  self.set_freed_bytes(std::max<int64_t>(self.rss_before_bytes() - self.rss_after_bytes(), 0));
  self.set_detail("malloc_trim");
  std::lock_guard<std::mutex> lock(counters_mu_);
  ++cleanups_.runs[trigger];
  cleanups_.yolod_freed_bytes[trigger] += self.freed_bytes();
  return self;
}

v1::ForceCleanupResponse MemoryManager::Cleanup(std::chrono::milliseconds timeout) {
  v1::ForceCleanupResponse response;
  *response.add_results() = TrimSelf("manual");
  for (auto& r : fleet_->CleanupWorkers(timeout, "manual")) {
    *response.add_results() = std::move(r);
  }
  int64_t total = 0;
  for (const auto& r : response.results()) total += r.freed_bytes();
  response.set_total_freed_bytes(total);
  return response;
}

std::string ReportSummary(const v1::MemoryReport& report) {
  auto level = [](const v1::ResourceLevel& r) {
    std::string name = v1::MemoryLevel_Name(r.level());
    if (absl::StartsWith(name, "MEMORY_")) name = absl::AsciiStrToLower(name.substr(7));
    return absl::StrFormat("%s %.1f %% of %.1f GB", name, r.used_ratio() * 100,
                           r.limit_bytes() / 1e9);
  };
  int64_t workers = 0;
  for (const auto& w : report.workers()) workers += w.process().rss_bytes();
  std::string line = absl::StrFormat(
      "RAM %s, %.1f GB available, yolod RSS %.1f MB, %d worker%s (%.1f MB)", level(report.ram()),
      report.host().available_bytes() / 1e9, report.daemon().rss_bytes() / 1e6,
      report.workers_size(), report.workers_size() == 1 ? "" : "s", workers / 1e6);
  if (report.has_gpu()) absl::StrAppend(&line, ", GPU ", level(report.gpu()));
  if (report.has_pressure()) {
    absl::StrAppend(&line, absl::StrFormat(", PSI full %.1f %%", report.pressure().full_avg10()));
  }
  return line;
}

}  // namespace yolo
