// The training job: `yolo-worker train ...`, and each round that yolod starts. One thread
// (the caller's) owns the model, optimizer and device; loader threads feed it batches.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/train_args.h"
#include "server/memory/cgroup_probe.h"
#include "server/memory/proc_probe.h"
#include "server/worker/train/distributed.h"
#include "server/worker/train/metrics.h"
#include "server/worker/train/validator.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

struct EpochReport {
  int epoch = 0;  // 1-based
  int epochs = 0;
  double box_loss = 0, cls_loss = 0, dfl_loss = 0;
  MetricsSummary metrics;
  double train_seconds = 0;      // training only, validation excluded
  double images_per_second = 0;  // training only
  double fitness = 0;
};

// In-epoch progress, after each batch.
struct BatchReport {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int batch = 0;  // batches done in this epoch
  int batches = 0;
  double box_loss = 0, cls_loss = 0, dfl_loss = 0;  // running means over the epoch
  double images_per_second = 0;                     // this epoch so far
  int64_t gpu_reserved_bytes = 0;
  std::optional<v1::CudaAllocatorStats> cuda;  // on a GPU
};

// What a cleanup gave back.
struct CleanupReport {
  int64_t rss_before_bytes = 0;
  int64_t rss_after_bytes = 0;
  std::string detail;  // per source: "cpu cache 412.0 MB, cuda cache 0 B, dataset cache 0 B"
};

// The memory pressure policy, asked for from another thread (yolod's channel) and applied by
// the trainer at its next epoch boundary. Thread-safe.
class PolicyRequest {
 public:
  void Ask(std::string reason) {
    std::lock_guard<std::mutex> lock(mu_);
    reason_ = std::move(reason);
  }
  // The reason, once per request; nullopt when none is pending.
  std::optional<std::string> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<std::string> r = std::move(reason_);
    reason_.reset();
    return r;
  }

 private:
  std::mutex mu_;
  std::optional<std::string> reason_;
};

// What the policy changed, after epoch `epoch` (1-based).
struct PolicyReport {
  int epoch = 0;
  int batch_before = 0, batch_after = 0;
  std::string detail;  // "batch 16 -> 8 (accumulate 4 -> 8, nominal batch 64), workers 8 -> 2"
};

// An epoch that ran out of memory and is retried from its start at a smaller batch.
struct OomRetryReport {
  int epoch = 0;    // 1-based
  int attempt = 0;  // 1..kMaxOomRetries
  int batch_before = 0, batch_after = 0;
  std::string error;  // what ran out: the allocator's message
};
inline constexpr int kMaxOomRetries = 3;  // per run

// Callbacks run on the training thread; keep them short.
struct TrainHooks {
  std::function<void(const EpochReport&)> on_epoch_end;
  std::function<void(const BatchReport&)> on_batch;
  // Set from another thread (a signal handler's flag) to stop at the next batch; the last
  // finished epoch's checkpoint stays resumable.
  const std::atomic<bool>* stop_requested = nullptr;
  // Set from another thread to ask for a cleanup at the next batch or epoch end: the CPU block
  // cache and the CUDA cache are emptied, the dataset's RAM cache dropped, malloc_trim run.
  // The trainer clears the flag and calls on_cleanup with what it freed.
  std::atomic<bool>* cleanup_requested = nullptr;
  std::function<void(const CleanupReport&)> on_cleanup;
  PolicyRequest* policy = nullptr;
  std::function<void(const PolicyReport&)> on_policy_applied;
  std::function<void(const OomRetryReport&)> on_oom_retry;
  // When not empty, every image of the dataset must lie under one of these folders (yolod's
  // --allowed-root, which it hands to its workers).
  std::vector<std::string> allowed_roots;
  // /proc, or fixture files: the RSS that cleanups report, the RAM the estimate sees.
  std::shared_ptr<const ProcProbe> proc = std::make_shared<ProcProbe>();
  std::shared_ptr<const CgroupProbe> cgroup = std::make_shared<CgroupProbe>();
  // The pre-flight memory estimate (and AutoBatch's choice), before the first epoch.
  std::function<void(const v1::MemoryEstimate&)> on_memory_estimate;
  // Data-parallel training, in local rank 0: starts this node's other ranks (RankLauncher)
  // and returns the rendezvous port they all use (the one asked for, or a free one).
  std::function<absl::StatusOr<int>(const DistributedConfig&)> launch_ranks;
};

struct TrainOutcome {
  std::string run_dir;
  int epochs_completed = 0;
  bool stopped = false;                // stop_requested was honoured
  bool round_ended = false;            // round_end's epoch is done; last.pt resumes the run
  MetricsSummary best;                 // best.pt validated at the end
  double train_images_per_second = 0;  // over the whole run, validation excluded
  long peak_rss_bytes = 0;
  // Since the pre-flight estimate (which measures steps of its own); 0 where it is not known.
  int64_t training_peak_rss_bytes = 0;
};

absl::StatusOr<TrainOutcome> Train(const TrainArgs& args, const TrainHooks& hooks = {});

}  // namespace yolo
