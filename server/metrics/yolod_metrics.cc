#include "server/metrics/yolod_metrics.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace yolo {
namespace {

using prometheus::Labels;

GaugeSeries Gauge(prometheus::Registry& r, SeriesGroup& group, const std::string& name,
                  const std::string& help) {
  return GaugeSeries(prometheus::BuildGauge().Name(name).Help(help).Register(r), group);
}
CounterSeries Counter(prometheus::Registry& r, SeriesGroup& group, const std::string& name,
                      const std::string& help) {
  return CounterSeries(prometheus::BuildCounter().Name(name).Help(help).Register(r), group);
}

constexpr Level kLevels[] = {Level::kOk, Level::kNotice, Level::kWarning, Level::kDanger};
constexpr v1::ExperimentState kStates[] = {v1::QUEUED, v1::RUNNING, v1::SUCCEEDED,
                                           v1::FAILED, v1::STOPPED, v1::INTERRUPTED};

std::vector<double> SampleBounds() {
  return std::vector<double>(std::begin(kSampleSecondsBounds), std::end(kSampleSecondsBounds));
}

template <typename Series, typename Map>
void SetTotals(Series& series, const Map& totals, const std::string& label) {
  for (const auto& [key, value] : totals) {
    series.SetTotal({{label, key}}, static_cast<double>(value));
  }
}

}  // namespace

template <typename T>
void SeriesSet<T>::SetTotal(const prometheus::Labels& labels, double total) {
  T* series = &Get(labels);
  const double now = series->Value();
  if (total < now) {
    family_.Remove(series);
    series = &family_.Add(labels);
    series_[labels] = series;
    series->Increment(total);
  } else if (total > now) {
    series->Increment(total - now);
  }
}
template class SeriesSet<prometheus::Counter>;

std::string StateLabel(v1::ExperimentState state) {
  if (state == v1::EXPERIMENT_STATE_UNSPECIFIED || !v1::ExperimentState_IsValid(state)) {
    return "unknown";
  }
  return absl::AsciiStrToLower(v1::ExperimentState_Name(state));
}

MemoryMetrics::MemoryMetrics(prometheus::Registry& r)
    : host_total(Gauge(r, all_, "yolod_host_memory_total_bytes", "The host's RAM (MemTotal).")),
      host_available(Gauge(r, all_, "yolod_host_memory_available_bytes",
                           "RAM available for new work without swapping (MemAvailable).")),
      host_used(Gauge(r, all_, "yolod_host_memory_used_bytes", "MemTotal less MemAvailable.")),
      swap_total(Gauge(r, all_, "yolod_host_swap_total_bytes", "Swap space (SwapTotal).")),
      swap_free(Gauge(r, all_, "yolod_host_swap_free_bytes", "Unused swap space (SwapFree).")),
      cgroup_usage(Gauge(r, all_, "yolod_cgroup_memory_usage_bytes",
                         "Memory charged to yolod's cgroup (memory.current).")),
      cgroup_limit(Gauge(r, all_, "yolod_cgroup_memory_limit_bytes",
                         "The cgroup's hard limit (memory.max); absent when unlimited.")),
      cgroup_working_set(Gauge(r, all_, "yolod_cgroup_memory_working_set_bytes",
                               "Usage less inactive file pages, as the kubelet counts it.")),
      cgroup_oom_kills(Counter(r, all_, "yolod_cgroup_oom_kills_total",
                               "Processes the kernel's OOM killer killed in the cgroup.")),
      limit(Gauge(r, all_, "yolod_memory_limit_bytes",
                  "The effective limit: the smaller of host RAM and the cgroup's limit.")),
      used(Gauge(r, all_, "yolod_memory_used_bytes", "Memory in use against the effective limit.")),
      used_ratio(Gauge(r, all_, "yolod_memory_used_ratio",
                       "Used share (0..1) of the effective RAM limit, or of the fullest GPU.")),
      pressure(Gauge(r, all_, "yolod_memory_pressure_ratio",
                     "PSI: share of time (0..1) some or all tasks stalled on memory.")),
      pressure_stalled(Counter(r, all_, "yolod_memory_pressure_stalled_seconds_total",
                               "PSI: time some or all tasks stalled on memory.")),
      level(Gauge(r, all_, "yolod_memory_level",
                  "The watchdog's level: 0 ok, 1 notice, 2 warning, 3 danger.")),
      level_state(Gauge(r, all_, "yolod_memory_level_state",
                        "1 for the level each resource is at, 0 for the others.")),
      threshold(Gauge(r, all_, "yolod_memory_threshold_ratio",
                      "The used share (0..1) at which each level starts.")),
      gpu_total(Gauge(r, all_, "yolod_gpu_memory_total_bytes", "Each GPU's memory (NVML).")),
      gpu_used(Gauge(r, all_, "yolod_gpu_memory_used_bytes", "Each GPU's memory in use (NVML).")),
      gpu_free(Gauge(r, all_, "yolod_gpu_memory_free_bytes", "Each GPU's free memory (NVML).")),
      process_rss(Gauge(
          r, all_, "yolod_process_rss_bytes",
          "Resident memory of yolod and each worker (a data-parallel worker with its ranks).")),
      process_pss(Gauge(r, all_, "yolod_process_pss_bytes",
                        "Proportional set size of yolod and each worker (smaps_rollup).")),
      torch_allocated(Gauge(r, all_, "yolod_torch_allocated_bytes",
                            "LibTorch memory held by live tensors, per experiment and device.")),
      torch_reserved(Gauge(r, all_, "yolod_torch_reserved_bytes",
                           "LibTorch memory taken from the system: allocated plus cached.")),
      torch_allocated_peak(Gauge(r, all_, "yolod_torch_allocated_peak_bytes",
                                 "The CUDA caching allocator's peak allocated bytes.")),
      torch_reserved_peak(Gauge(r, all_, "yolod_torch_reserved_peak_bytes",
                                "The CUDA caching allocator's peak reserved bytes.")),
      torch_alloc_retries(Counter(r, all_, "yolod_torch_alloc_retries_total",
                                  "cudaMalloc calls retried after the cache was freed.")),
      torch_ooms(Counter(r, all_, "yolod_torch_ooms_total",
                         "Out-of-memory errors the CUDA caching allocator raised.")),
      watchdog_samples(Counter(r, all_, "yolod_watchdog_samples_total", "Memory samples taken.")),
      watchdog_cpu(Counter(r, all_, "yolod_watchdog_cpu_seconds_total",
                           "CPU time the watchdog's thread spent sampling and acting.")),
      watchdog_actions(Counter(r, all_, "yolod_watchdog_actions_total",
                               "Watchdog actions by kind: policy, hold, stop, resume.")),
      watchdog_sample_duration(
          prometheus::BuildHistogram()
              .Name("yolod_watchdog_sample_duration_seconds")
              .Help("Wall time of each memory sample: probes read, levels derived, actions taken.")
              .Register(r)
              .Add({}, SampleBounds())),
      starts_held(Gauge(r, all_, "yolod_starts_held",
                        "1 while the watchdog holds new starts (danger level).")),
      sample_age(Gauge(r, all_, "yolod_watchdog_sample_age_seconds",
                       "Seconds since the watchdog's latest sample.")),
      cleanups(Counter(r, all_, "yolod_cleanups_total",
                       "Cleanups by trigger: warning, danger (the watchdog), manual.")),
      cleanup_freed(Counter(r, all_, "yolod_cleanup_freed_bytes_total",
                            "Resident memory given back by cleanups, by trigger and component.")) {}

void MemoryMetrics::Update(const MemorySnapshot& s) {
  const Labels none;
  for (const auto& [resource, t] : {std::make_pair("ram", s.ram), std::make_pair("gpu", s.gpu)}) {
    for (Level l : {Level::kNotice, Level::kWarning, Level::kDanger}) {
      threshold.Get({{"resource", resource}, {"level", LevelName(l)}}).Set(t.Of(l));
    }
  }
  starts_held.Get(none).Set(s.starts_held ? 1 : 0);
  if (s.sample) {
    const MemorySample& m = *s.sample;
    sample_age.Get(none).Set(
        std::chrono::duration<double>(std::chrono::system_clock::now() - m.wall).count());
    if (m.host) {
      host_total.Get(none).Set(static_cast<double>(m.host->total_bytes));
      host_available.Get(none).Set(static_cast<double>(m.host->available_bytes));
      host_used.Get(none).Set(static_cast<double>(m.host->total_bytes - m.host->available_bytes));
      swap_total.Get(none).Set(static_cast<double>(m.host->swap_total_bytes));
      swap_free.Get(none).Set(static_cast<double>(m.host->swap_free_bytes));
    }
    if (m.cgroup) {
      cgroup_usage.Get(none).Set(static_cast<double>(m.cgroup->usage_bytes));
      if (m.cgroup->limit_bytes) {
        cgroup_limit.Get(none).Set(static_cast<double>(*m.cgroup->limit_bytes));
      }
      cgroup_working_set.Get(none).Set(static_cast<double>(m.cgroup->working_set_bytes));
      cgroup_oom_kills.SetTotal(none, static_cast<double>(m.cgroup->oom_kill_events));
    }
    limit.Get({{"resource", "ram"}}).Set(static_cast<double>(m.ram_limit_bytes));
    used.Get({{"resource", "ram"}}).Set(static_cast<double>(m.ram_used_bytes));
    used_ratio.Get({{"resource", "ram"}}).Set(m.ram_ratio);
    std::vector<std::pair<const char*, Level>> resources = {{"ram", m.ram_level}};
    if (m.gpus && !m.gpus->empty()) {
      used_ratio.Get({{"resource", "gpu"}}).Set(m.gpu_ratio);
      resources.push_back({"gpu", m.gpu_level});
      for (const GpuInfo& g : *m.gpus) {
        const Labels labels{{"gpu", std::to_string(g.index)}, {"uuid", g.uuid}};
        gpu_total.Get(labels).Set(static_cast<double>(g.total_bytes));
        gpu_used.Get(labels).Set(static_cast<double>(g.used_bytes));
        gpu_free.Get(labels).Set(static_cast<double>(g.free_bytes));
      }
    }
    for (const auto& [resource, at] : resources) {
      level.Get({{"resource", resource}}).Set(static_cast<double>(at));
      for (Level l : kLevels) {
        level_state.Get({{"resource", resource}, {"level", LevelName(l)}}).Set(l == at ? 1 : 0);
      }
    }
    if (m.pressure) {
      const MemoryPressure& p = *m.pressure;
      pressure.Get({{"kind", "some"}, {"window", "10s"}}).Set(p.some_avg10 / 100);
      pressure.Get({{"kind", "some"}, {"window", "60s"}}).Set(p.some_avg60 / 100);
      pressure.Get({{"kind", "full"}, {"window", "10s"}}).Set(p.full_avg10 / 100);
      pressure.Get({{"kind", "full"}, {"window", "60s"}}).Set(p.full_avg60 / 100);
      pressure_stalled.SetTotal({{"kind", "some"}}, p.some_total_us / 1e6);
      pressure_stalled.SetTotal({{"kind", "full"}}, p.full_total_us / 1e6);
    }
  }
  if (s.yolod) {
    const Labels labels{{"component", "yolod"}, {"experiment", ""}};
    process_rss.Get(labels).Set(static_cast<double>(s.yolod->rss_bytes));
    if (s.yolod->has_smaps) process_pss.Get(labels).Set(static_cast<double>(s.yolod->pss_bytes));
  }
  for (const v1::WorkerMemory& w : s.workers) {
    const Labels labels{{"component", "worker"}, {"experiment", w.experiment_id()}};
    process_rss.Get(labels).Set(static_cast<double>(w.process().rss_bytes()));
    if (w.process().pss_bytes() > 0) {
      process_pss.Get(labels).Set(static_cast<double>(w.process().pss_bytes()));
    }
    const Labels cpu{{"experiment", w.experiment_id()}, {"device", "cpu"}};
    torch_allocated.Get(cpu).Set(static_cast<double>(w.cpu_allocated_bytes()));
    torch_reserved.Get(cpu).Set(
        static_cast<double>(w.cpu_allocated_bytes() + w.cpu_cached_bytes()));
    if (w.has_cuda()) {
      const v1::CudaAllocatorStats& c = w.cuda();
      const Labels gpu{{"experiment", w.experiment_id()},
                       {"device", absl::StrCat("cuda:", c.device())}};
      torch_allocated.Get(gpu).Set(static_cast<double>(c.allocated_bytes()));
      torch_reserved.Get(gpu).Set(static_cast<double>(c.reserved_bytes()));
      torch_allocated_peak.Get(gpu).Set(static_cast<double>(c.allocated_peak_bytes()));
      torch_reserved_peak.Get(gpu).Set(static_cast<double>(c.reserved_peak_bytes()));
      torch_alloc_retries.SetTotal(gpu, static_cast<double>(c.alloc_retries()));
      torch_ooms.SetTotal(gpu, static_cast<double>(c.ooms()));
    }
  }

  watchdog_samples.SetTotal(none, static_cast<double>(s.watchdog.samples));
  watchdog_cpu.SetTotal(none, s.watchdog.sample_cpu_seconds_total);
  SetTotals(watchdog_actions, s.watchdog.actions, "kind");
  std::vector<double> increments(kSampleSecondsBuckets);
  bool any = false;
  for (size_t i = 0; i < kSampleSecondsBuckets; ++i) {
    const int64_t d = s.watchdog.sample_seconds_buckets[i] - seen_.sample_seconds_buckets[i];
    increments[i] = static_cast<double>(std::max<int64_t>(d, 0));
    any = any || d > 0;
  }
  if (any) {
    watchdog_sample_duration.ObserveMultiple(
        increments, std::max(s.watchdog.sample_seconds_total - seen_.sample_seconds_total, 0.0));
  }
  seen_ = s.watchdog;

  SetTotals(cleanups, s.cleanups.runs, "trigger");
  for (const auto& [trigger, bytes] : s.cleanups.yolod_freed_bytes) {
    cleanup_freed.SetTotal({{"trigger", trigger}, {"component", "yolod"}},
                           static_cast<double>(bytes));
  }
  for (const auto& [trigger, bytes] : s.worker_freed_bytes) {
    cleanup_freed.SetTotal({{"trigger", trigger}, {"component", "workers"}},
                           static_cast<double>(bytes));
  }
  for (SeriesSweep* series : all_) series->Sweep();
}

ExperimentMetrics::ExperimentMetrics(prometheus::Registry& r)
    : by_state(Gauge(r, all_, "yolod_experiments", "Experiments in each state.")),
      entered(Counter(r, all_, "yolod_experiment_transitions_total",
                      "Experiments that entered each state since yolod started.")),
      info(Gauge(r, all_, "yolod_experiment_info",
                 "1 for each experiment, with its name and model.")),
      state(Gauge(r, all_, "yolod_experiment_state", "1 for the state each experiment is in.")),
      epoch(Gauge(r, all_, "yolod_experiment_epoch",
                  "The epoch in progress (1-based), or the last.")),
      epochs(Gauge(r, all_, "yolod_experiment_epochs", "Epochs the run is to train.")),
      epochs_done(Gauge(r, all_, "yolod_experiment_epochs_completed", "Epochs finished.")),
      batches_done(Gauge(r, all_, "yolod_experiment_batches_completed",
                         "Training batches done in the run so far; flat when it is stuck.")),
      images_per_second(
          Gauge(r, all_, "yolod_experiment_images_per_second",
                "Training throughput in the epoch in progress (0 when not running).")),
      loss(Gauge(r, all_, "yolod_experiment_loss",
                 "Training losses (box, cls, dfl): running means over the epoch.")),
      map50_95(Gauge(r, all_, "yolod_experiment_map50_95_ratio",
                     "mAP50-95 (0..1) of the latest validation.")),
      map50(
          Gauge(r, all_, "yolod_experiment_map50_ratio", "mAP50 (0..1) of the latest validation.")),
      batch(Gauge(r, all_, "yolod_experiment_batch", "The batch the run trains with now.")),
      oom_resumes(Gauge(r, all_, "yolod_experiment_oom_resumes",
                        "Rounds yolod resumed at half the batch after running out of memory.")),
      rss_growth(Gauge(r, all_, "yolod_experiment_rss_growth_bytes_per_epoch",
                       "The worker's epoch-end RSS slope this round (least squares).")),
      leak_suspected(
          Gauge(r, all_, "yolod_experiment_leak_suspected", "1 when the RSS fit suggests a leak.")),
      autobatch(Gauge(r, all_, "yolod_experiment_autobatch_batch", "The batch AutoBatch chose.")),
      predicted(Gauge(r, all_, "yolod_experiment_predicted_memory_bytes",
                      "The pre-flight estimate of the run's memory at its batch.")),
      memory_actions(Counter(r, all_, "yolod_memory_actions_total",
                             "Memory actions on experiments by kind, since yolod started.")),
      oom_recoveries(Counter(r, all_, "yolod_oom_recoveries_total",
                             "Out-of-memory recoveries: by the worker (retry) or yolod (resume).")),
      leaks(Counter(r, all_, "yolod_leaks_suspected_total", "Suspected memory leaks reported.")),
      autobatch_choices(
          Counter(r, all_, "yolod_autobatch_choices_total", "Batches chosen by AutoBatch.")) {}

void ExperimentMetrics::Update(const ExperimentSnapshot& s) {
  std::map<std::string, int> counts;
  for (v1::ExperimentState st : kStates) counts[StateLabel(st)] = 0;
  for (const v1::Experiment& e : s.experiments) {
    ++counts[StateLabel(e.state())];
    const Labels id{{"experiment", e.id()}};
    const auto& args = e.resolved_args();
    auto arg = [&](const char* key) {
      auto it = args.find(key);
      return it == args.end() ? std::string() : it->second;
    };
    info.Get({{"experiment", e.id()},
              {"name", e.spec().name()},
              {"model", arg("model")},
              {"device", e.device()}})
        .Set(1);
    for (v1::ExperimentState st : kStates) {
      state.Get({{"experiment", e.id()}, {"state", StateLabel(st)}}).Set(st == e.state() ? 1 : 0);
    }
    const bool running = e.state() == v1::RUNNING && e.has_progress();
    const v1::Progress& p = e.progress();
    const v1::EpochResult& last = e.last_epoch();
    const int total_epochs = p.epochs() > 0 ? p.epochs() : last.epochs();
    epoch.Get(id).Set(running ? p.epoch() : e.epochs_completed());
    if (total_epochs > 0) epochs.Get(id).Set(total_epochs);
    epochs_done.Get(id).Set(e.epochs_completed());
    batches_done.Get(id).Set(running ? static_cast<double>(p.epoch() - 1) * p.batches() + p.batch()
                                     : static_cast<double>(e.epochs_completed()) * p.batches());
    images_per_second.Get(id).Set(running ? p.images_per_second() : 0);
    const bool use_progress = running && p.batch() > 0;
    loss.Get({{"experiment", e.id()}, {"loss", "box"}})
        .Set(use_progress ? p.box_loss() : last.box_loss());
    loss.Get({{"experiment", e.id()}, {"loss", "cls"}})
        .Set(use_progress ? p.cls_loss() : last.cls_loss());
    loss.Get({{"experiment", e.id()}, {"loss", "dfl"}})
        .Set(use_progress ? p.dfl_loss() : last.dfl_loss());
    if (e.has_last_epoch()) {
      map50_95.Get(id).Set(last.map50_95());
      map50.Get(id).Set(last.map50());
    }
    if (e.batch() > 0) batch.Get(id).Set(e.batch());
    oom_resumes.Get(id).Set(e.oom_resumes());
    if (e.rss_trend().epochs() > 0) rss_growth.Get(id).Set(e.rss_trend().bytes_per_epoch());
    leak_suspected.Get(id).Set(e.rss_trend().leak_suspected() ? 1 : 0);
    if (e.memory_estimate().autobatch()) autobatch.Get(id).Set(e.memory_estimate().batch());
    if (e.memory_estimate().predicted_bytes() > 0) {
      predicted.Get(id).Set(static_cast<double>(e.memory_estimate().predicted_bytes()));
    }
  }
  for (const auto& [st, n] : counts) by_state.Get({{"state", st}}).Set(n);
  std::map<std::string, int64_t> entries;
  for (v1::ExperimentState st : kStates) entries[StateLabel(st)] = 0;
  for (const auto& [st, n] : s.counters.entered) entries[StateLabel(st)] += n;
  SetTotals(entered, entries, "state");
  SetTotals(memory_actions, s.counters.memory_actions, "kind");
  auto count = [&](const char* kind) {
    auto it = s.counters.memory_actions.find(kind);
    return it == s.counters.memory_actions.end() ? 0.0 : static_cast<double>(it->second);
  };
  oom_recoveries.SetTotal({{"by", "worker"}}, count("oom_retry"));
  oom_recoveries.SetTotal({{"by", "yolod"}}, count("oom_resume"));
  leaks.SetTotal({}, count("leak_suspected"));
  autobatch_choices.SetTotal({}, count("autobatch"));
  for (SeriesSweep* series : all_) series->Sweep();
}

}  // namespace yolo
