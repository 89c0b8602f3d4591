// The pre-flight memory estimate and AutoBatch. Before its first epoch a run measures what it
// will need: real training steps (forward, the loss at the dataset's most objects per image,
// backward, an optimizer step) and validation steps (at twice the batch, as the validation
// loader has it) at a few small batches, on a model of its own so that the run's weights and
// random state are untouched. Peak memory is fitted as a line against the batch; the loader's
// queue, the EMA copy and the image cache are added from their sizes. With batch=-1 (or a
// fraction in (0, 1)) AutoBatch picks the largest batch whose predicted need stays within the
// fraction (default 0.6) of the memory available: the GPU's free memory, or on the CPU the
// effective RAM limit (host or cgroup) less what is in use. It then runs one step at that batch
// to confirm.
#pragma once

#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/line_fit.h"
#include "server/worker/train/loss.h"
#include "server/worker/train/model.h"
#include "server/worker/train/optim.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

inline constexpr double kDefaultAutoBatchFraction = 0.6;  // Ultralytics' default
inline constexpr int kMaxAutoBatch = 1024;
// How far a run's real peak may come from the prediction (bench/watchdog.sh measures it).
inline constexpr double kPredictionMargin = 0.05;
inline constexpr double kPreflightWarnRatio = 0.70;  // of the limit, with this run's need added

// Least squares (line_fit.h) with the slope held at 0 or more: memory does not shrink with the
// batch.
LineFit FitLine(const std::vector<double>& x, const std::vector<double>& y);

// A run's memory as a function of its batch.
struct MemoryModel {
  LineFit train;                      // a training step's peak, against the batch
  LineFit val;                        // a validation step's peak, against its own batch
  double loader_bytes_per_image = 0;  // batches queued and images in flight
  double fixed_bytes = 0;             // the EMA copy and the image cache
  double Train(int batch) const;      // the training step's term alone
  double Predict(int batch) const;    // max(train(b), val(2b)) + loader + fixed
};
// The largest batch in [1, max_batch] whose prediction is within `budget_bytes`; 0 if none.
int LargestBatchWithin(const MemoryModel& model, double budget_bytes, int max_batch);

// What the steps are made of.
struct StepSpec {
  ModelScale scale;
  int nc = 80;
  int imgsz = 640;
  int max_objects = 1;  // labels per image at most, over the training set
  c10::Device device{c10::kCPU};
  bool amp = false;
  OptimizerChoice optimizer;  // optimizer=auto is measured as AdamW, the larger state
  LossGains gains;
  // A stop request: each step checks it first and answers CANCELLED once it is set.
  const std::atomic<bool>* stop = nullptr;
};

// Measures steps on models of its own (built with the global random state saved and restored).
class StepProfiler {
 public:
  explicit StepProfiler(const StepSpec& spec);
  // The peak memory of one step above the memory before it, less the model's weights (which
  // the run already has): on the CPU the process's peak RSS (VmHWM, reset through
  // /proc/self/clear_refs; the caching allocator's peak where that file cannot be written), on
  // CUDA the allocator's peak reserved bytes. RESOURCE_EXHAUSTED when the step runs out of
  // memory.
  absl::StatusOr<int64_t> Train(int batch);
  absl::StatusOr<int64_t> Val(int batch);
  // The process's RSS now, with the CPU caches emptied (the GPU's reserved bytes on CUDA).
  int64_t Baseline() const;
  // "RSS" or "allocator" (CPU), "reserved" (CUDA): what the figures are.
  const std::string& measure() const { return measure_; }

 private:
  DetectionModel NewModel() const;
  absl::StatusOr<int64_t> Measure(const std::function<void()>& step);
  void Synthetic(int batch, at::Tensor* images, DetectionTargets* targets);

  StepSpec spec_;
  int64_t model_bytes_ = 0;
  std::string measure_;
};

// Inputs of an estimate beside the steps.
struct EstimateInputs {
  int batch = 16;                 // the run's batch; ignored with AutoBatch
  double fraction = 0;            // > 0: AutoBatch at this share of the available memory
  int max_batch = kMaxAutoBatch;  // AutoBatch's ceiling (the training set's size)
  int64_t limit_bytes = 0;        // effective RAM limit or the GPU's total
  int64_t available_bytes = 0;    // what is left of it
  double loader_bytes_per_image = 0;
  double fixed_bytes = 0;
  int64_t cache_bytes = 0;  // part of fixed_bytes, reported apart
};

// Profiles at batches 1, 2, 4 (8 and 16 too with AutoBatch, stopping where a step alone passes
// the budget), fits, chooses, and confirms with steps at the chosen batch (a fixed batch only
// when the fit says it fits). The message says it all in words.
absl::StatusOr<v1::MemoryEstimate> EstimateMemory(StepProfiler& profiler, const EstimateInputs& in);

// Starts the process's peak RSS (VmHWM) again from its RSS now; false where
// /proc/self/clear_refs cannot be written.
bool ResetPeakRss();

// The bytes of a model's parameters and buffers (the EMA keeps a copy).
int64_t ModelBytes(const torch::nn::Module& model);

}  // namespace yolo
