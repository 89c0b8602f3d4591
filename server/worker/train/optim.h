// Optimisation pieces of the YOLOv8 recipe: parameter groups, optimizer=auto, the LR schedule
// and warmup, and the EMA of the weights.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "server/worker/train/model.h"

namespace yolo {

struct OptimizerChoice {
  std::string name;  // SGD, Adam or AdamW
  double lr = 0.01;
  double momentum = 0.937;
  double warmup_bias_lr = 0.1;
};

// optimizer=auto picks SGD(0.01, 0.9) for long runs (> 10000 iterations) and otherwise
// AdamW(lr = 0.002 * 5 / (4 + nc), rounded to 6 decimals; momentum 0.9), with the warmup bias
// LR forced to 0. An explicit choice keeps lr0 and momentum.
OptimizerChoice ChooseOptimizer(const std::string& requested, double lr0, double momentum,
                                double warmup_bias_lr, int64_t iterations, int nc);

// Groups in Ultralytics' order: [0] biases (no decay), [1] other weights (decay),
// [2] normalisation weights (no decay).
struct ParamGroups {
  std::vector<at::Tensor> bias, weights, norm;
};
ParamGroups SplitParameters(torch::nn::Module& model);

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerChoice& choice,
                                                       const ParamGroups& groups,
                                                       double weight_decay);

double GroupLr(torch::optim::Optimizer& optimizer, size_t group);
void SetGroupLr(torch::optim::Optimizer& optimizer, size_t group, double lr);
// Only SGD has a momentum that warmup moves; a no-op for the Adam family.
void SetGroupMomentum(torch::optim::Optimizer& optimizer, size_t group, double momentum);

// The LR factor of (0-based) `epoch`: linear 1 -> lrf, or cosine with `cos_lr`.
double LrFactor(int epoch, int epochs, double lrf, bool cos_lr);

// Linear interpolation of x in [x0, x1] -> [y0, y1], clamped.
double Interp(double x, double x0, double x1, double y0, double y1);

// How many batches' gradients one optimizer step takes at iteration `ni`: nbs / batch, and
// during warmup (ni <= nw) a linear rise from 1 to it; rounded half to even as Ultralytics
// rounds (numpy), at least 1.
int AccumulateCount(int64_t ni, int64_t nw, int nbs, int batch);

// Warmup iterations: max(round(warmup_epochs * batches_per_epoch), 100), or -1 without warmup.
int64_t WarmupIterations(double warmup_epochs, int batches_per_epoch);

// The 0-based epoch from which mosaic is off, or -1 for never: Ultralytics closes it when the
// epoch reaches epochs - close_mosaic, which a run shorter than close_mosaic never does.
int CloseMosaicEpoch(int epochs, int64_t close_mosaic);

// Exponential moving average of every floating parameter and buffer; decay
// 0.9999 * (1 - exp(-updates / 2000)).
class ModelEma {
 public:
  explicit ModelEma(DetectionModel& model, int64_t updates = 0);
  void Update(DetectionModel& model);
  DetectionModel& model() { return ema_; }
  int64_t updates() const { return updates_; }

 private:
  DetectionModel ema_{nullptr};
  int64_t updates_;
};

}  // namespace yolo
