// The training job: `yolo-worker train ...` and, later, each round that yolod starts. One thread
// (the caller's) owns the model, optimizer and device; loader threads feed it batches.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/train_args.h"
#include "server/train/metrics.h"
#include "server/train/validator.h"

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

struct TrainHooks {
  std::function<void(const EpochReport&)> on_epoch_end;
  // Set from another thread (a signal handler's flag) to stop at the next batch; the last
  // finished epoch's checkpoint stays resumable.
  const std::atomic<bool>* stop_requested = nullptr;
};

struct TrainOutcome {
  std::string run_dir;
  int epochs_completed = 0;
  bool stopped = false;                // stop_requested was honoured
  MetricsSummary best;                 // best.pt validated at the end
  double train_images_per_second = 0;  // over the whole run, validation excluded
  long peak_rss_bytes = 0;
};

absl::StatusOr<TrainOutcome> Train(const TrainArgs& args, const TrainHooks& hooks = {});

}  // namespace yolo
