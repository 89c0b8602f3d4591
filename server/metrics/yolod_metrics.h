// yolod's Prometheus families: the memory side (host, cgroup, PSI, GPUs, processes, levels and
// thresholds, the watchdog, cleanups) and the experiments (states, progress, allocators, leaks,
// AutoBatch, memory actions). Each component's families are one struct on an injected registry;
// Update() sets them all from a snapshot the caller gathered, at each scrape. Series of an
// experiment that is gone, or of a GPU no longer seen, are removed, so labels stay bounded.
// Names: yolod_<what>_<base unit>; counters end in _total. LibTorch-free; not thread-safe: one
// caller at a time (the metrics endpoint's thread).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/experiments/experiment_manager.h"
#include "server/memory/memory_manager.h"
#include "server/memory/watchdog.h"
#include "yolo/v1/experiment.pb.h"
#include "yolo/v1/memory.pb.h"

namespace yolo {

class SeriesSweep {
 public:
  virtual ~SeriesSweep() = default;
  virtual void Sweep() = 0;
};
// The series sets of one struct, swept together at the end of each update.
using SeriesGroup = std::vector<SeriesSweep*>;

// The series of one family that exist now: Get() those present at this update, Sweep() removes
// the rest. For counters whose source gives totals, SetTotal() adds the difference (a smaller
// total, from a new worker process, starts the series again, which Prometheus reads as a reset).
// It joins `group` at construction, and is neither copied nor moved.
template <typename T>
class SeriesSet final : public SeriesSweep {
 public:
  SeriesSet(prometheus::Family<T>& family, SeriesGroup& group) : family_(family) {
    group.push_back(this);
  }
  SeriesSet(const SeriesSet&) = delete;
  SeriesSet& operator=(const SeriesSet&) = delete;
  T& Get(const prometheus::Labels& labels) {
    seen_.insert(labels);
    auto it = series_.find(labels);
    if (it == series_.end()) it = series_.emplace(labels, &family_.Add(labels)).first;
    return *it->second;
  }
  void SetTotal(const prometheus::Labels& labels, double total);
  void Sweep() override {
    for (auto it = series_.begin(); it != series_.end();) {
      if (seen_.count(it->first)) {
        ++it;
        continue;
      }
      family_.Remove(it->second);
      it = series_.erase(it);
    }
    seen_.clear();
  }

 private:
  prometheus::Family<T>& family_;
  std::map<prometheus::Labels, T*> series_;
  std::set<prometheus::Labels> seen_;
};

// What the memory side looks like now.
struct MemorySnapshot {
  std::optional<MemorySample> sample;  // the watchdog's latest; none before its first
  Thresholds ram, gpu;
  WatchdogCounters watchdog;
  CleanupCounters cleanups;
  bool starts_held = false;
  std::optional<ProcessMemInfo> yolod;                // yolod's own memory
  std::vector<v1::WorkerMemory> workers;              // each running worker's
  std::map<std::string, int64_t> worker_freed_bytes;  // workers' cleanups by trigger
};

using GaugeSeries = SeriesSet<prometheus::Gauge>;
using CounterSeries = SeriesSet<prometheus::Counter>;

struct MemoryMetrics {
  explicit MemoryMetrics(prometheus::Registry& registry);
  void Update(const MemorySnapshot& s);

 private:
  SeriesGroup all_;  // before the series: they join it as they are built

 public:
  GaugeSeries host_total, host_available, host_used, swap_total, swap_free;
  GaugeSeries cgroup_usage, cgroup_limit, cgroup_working_set;
  CounterSeries cgroup_oom_kills;
  GaugeSeries limit, used, used_ratio;        // by resource: ram (the effective limit), gpu
  GaugeSeries pressure;                       // PSI share of time stalled, by kind and window
  CounterSeries pressure_stalled;             // PSI totals, seconds
  GaugeSeries level;                          // 0 ok, 1 notice, 2 warning, 3 danger, by resource
  GaugeSeries level_state;                    // 1 for the level each resource is at, 0 for others
  GaugeSeries threshold;                      // by resource and level, 0..1
  GaugeSeries gpu_total, gpu_used, gpu_free;  // by gpu (index) and uuid
  GaugeSeries process_rss, process_pss;       // by component (yolod, worker) and experiment
  // LibTorch's allocators per experiment and device: CPU tensors alive and blocks cached; the
  // CUDA caching allocator's allocated and reserved bytes with their peaks, retries and OOMs.
  GaugeSeries torch_allocated, torch_reserved, torch_allocated_peak, torch_reserved_peak;
  CounterSeries torch_alloc_retries, torch_ooms;
  CounterSeries watchdog_samples, watchdog_cpu, watchdog_actions;
  prometheus::Histogram& watchdog_sample_duration;
  GaugeSeries starts_held;
  GaugeSeries sample_age;                 // seconds since the watchdog's latest sample
  CounterSeries cleanups, cleanup_freed;  // by trigger; freed by component too

 private:
  WatchdogCounters seen_;  // what the histogram already holds
};

struct ExperimentSnapshot {
  std::vector<v1::Experiment> experiments;
  ExperimentCounters counters;
};

struct ExperimentMetrics {
  explicit ExperimentMetrics(prometheus::Registry& registry);
  void Update(const ExperimentSnapshot& s);

 private:
  SeriesGroup all_;  // before the series: they join it as they are built

 public:
  GaugeSeries by_state;   // experiments in each state, every state present
  CounterSeries entered;  // entries into each state
  // Per experiment.
  GaugeSeries info;               // 1, with its name, model and device
  GaugeSeries state;              // 1 for its state, 0 for the others
  GaugeSeries epoch, epochs;      // the epoch in progress (1-based) and the run's
  GaugeSeries epochs_done;        // finished epochs
  GaugeSeries batches_done;       // batches trained in the run so far: it stalls when stuck
  GaugeSeries images_per_second;  // this epoch so far
  GaugeSeries loss;               // by loss: box, cls, dfl (running means over the epoch)
  GaugeSeries map50_95, map50;    // of the latest validation
  GaugeSeries batch;              // what it trains with now
  GaugeSeries oom_resumes;        // rounds yolod resumed at half the batch
  GaugeSeries rss_growth;         // fitted epoch-end RSS slope, bytes per epoch
  GaugeSeries leak_suspected;     // 1 when the fit says leak
  GaugeSeries autobatch;          // the batch AutoBatch chose
  GaugeSeries predicted;          // the pre-flight estimate at its batch, bytes
  // Since yolod started.
  CounterSeries memory_actions;  // by kind
  CounterSeries oom_recoveries;  // by who: worker (in-process retry), yolod (resume)
  CounterSeries leaks;           // suspected leaks
  CounterSeries autobatch_choices;
};

// "queued", "running", ... for an ExperimentState; "unknown" for others.
std::string StateLabel(v1::ExperimentState state);

}  // namespace yolo
