// Checkpoints (weights/last.pt, best.pt): model and EMA weights, optimizer state, epoch,
// best fitness, the run's arguments and results.csv, written atomically.
#pragma once

#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/worker/train/model.h"

namespace yolo {

struct CheckpointMeta {
  int64_t epoch = -1;  // 0-based last finished epoch; -1 for a finished (stripped) run
  double best_fitness = 0;
  int64_t updates = 0;      // EMA updates
  std::string train_args;   // args.yaml text
  std::string results_csv;  // results.csv text up to this epoch
  std::string names;        // class names, one per line
  std::string scale;        // "n", "s", ...
  int64_t nc = 0;
  std::string date;
};

// Writes `path` atomically. `ema` and `optimizer` may be null (stripped checkpoint: then the
// EMA weights, if any, should be passed as `model`).
absl::Status SaveCheckpoint(const std::string& path, const CheckpointMeta& meta,
                            DetectionModel& model, DetectionModel* ema,
                            torch::optim::Optimizer* optimizer);

struct LoadedCheckpoint {
  CheckpointMeta meta;
  DetectionModel model{nullptr};  // the EMA weights when present, as Ultralytics loads them
  DetectionModel raw{nullptr};    // the raw training weights, when present
  bool has_optimizer = false;
  std::string path;
};

// Reads a checkpoint; errors name the file.
absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& path);

// Loads the optimizer state saved in `path` into `optimizer`, its tensors onto `device` (the
// parameters' device).
absl::Status LoadOptimizerState(const std::string& path, torch::optim::Optimizer& optimizer,
                                const c10::Device& device);

}  // namespace yolo
