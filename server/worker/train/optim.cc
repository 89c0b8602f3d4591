#include "server/worker/train/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>

#include "absl/strings/match.h"
#include "server/worker/train/rounding.h"

namespace yolo {

OptimizerChoice ChooseOptimizer(const std::string& requested, double lr0, double momentum,
                                double warmup_bias_lr, int64_t iterations, int nc) {
  OptimizerChoice c{requested, lr0, momentum, warmup_bias_lr};
  if (requested == "auto") {
    c.warmup_bias_lr = 0.0;
    if (iterations > 10000) {
      c.name = "SGD", c.lr = 0.01, c.momentum = 0.9;
    } else {
      c.name = "AdamW", c.momentum = 0.9;
      c.lr = std::round(0.002 * 5 / (4 + nc) * 1e6) / 1e6;
    }
  }
  return c;
}

ParamGroups SplitParameters(torch::nn::Module& model) {
  ParamGroups g;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (absl::StrContains(name, "bias")) {
      g.bias.push_back(item.value());
    } else if (absl::EndsWith(name, "bn.weight")) {
      g.norm.push_back(item.value());
    } else {
      g.weights.push_back(item.value());
    }
  }
  return g;
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerChoice& c,
                                                       const ParamGroups& g, double wd) {
  using namespace torch::optim;
  std::vector<OptimizerParamGroup> groups;
  auto add = [&](const std::vector<at::Tensor>& params, double decay) {
    std::unique_ptr<OptimizerOptions> options;
    if (c.name == "SGD") {
      options = std::make_unique<SGDOptions>(
          SGDOptions(c.lr).momentum(c.momentum).nesterov(true).weight_decay(decay));
    } else if (c.name == "Adam") {
      options = std::make_unique<AdamOptions>(
          AdamOptions(c.lr).betas({c.momentum, 0.999}).weight_decay(decay));
    } else {
      options = std::make_unique<AdamWOptions>(
          AdamWOptions(c.lr).betas({c.momentum, 0.999}).weight_decay(decay));
    }
    groups.emplace_back(params, std::move(options));
  };
  add(g.bias, 0.0);
  add(g.weights, wd);
  add(g.norm, 0.0);
  if (c.name == "SGD") {
    return std::make_unique<SGD>(groups, SGDOptions(c.lr).momentum(c.momentum).nesterov(true));
  }
  if (c.name == "Adam") return std::make_unique<Adam>(groups, AdamOptions(c.lr));
  return std::make_unique<AdamW>(groups, AdamWOptions(c.lr).weight_decay(0));
}

double GroupLr(torch::optim::Optimizer& optimizer, size_t group) {
  return optimizer.param_groups()[group].options().get_lr();
}

void SetGroupLr(torch::optim::Optimizer& optimizer, size_t group, double lr) {
  optimizer.param_groups()[group].options().set_lr(lr);
}

void SetGroupMomentum(torch::optim::Optimizer& optimizer, size_t group, double momentum) {
  auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&optimizer.param_groups()[group].options());
  if (sgd != nullptr) sgd->momentum(momentum);
}

double LrFactor(int epoch, int epochs, double lrf, bool cos_lr) {
  if (cos_lr) return 1 + (lrf - 1) * (1 - std::cos(M_PI * epoch / epochs)) / 2;
  return std::max(1.0 - static_cast<double>(epoch) / epochs, 0.0) * (1.0 - lrf) + lrf;
}

double Interp(double x, double x0, double x1, double y0, double y1) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  return y0 + (x - x0) * (y1 - y0) / (x1 - x0);
}

int AccumulateCount(int64_t ni, int64_t nw, int nbs, int batch) {
  const double full = static_cast<double>(nbs) / batch;
  const double count =
      ni <= nw ? Interp(static_cast<double>(ni), 0, static_cast<double>(nw), 1, full) : full;
  return static_cast<int>(std::max<int64_t>(RoundHalfEven(count), 1));
}

int CloseMosaicEpoch(int epochs, int64_t close_mosaic) {
  const int64_t at = epochs - close_mosaic;
  return at >= 0 && at < epochs ? static_cast<int>(at) : -1;
}

int64_t WarmupIterations(double warmup_epochs, int batches_per_epoch) {
  if (warmup_epochs <= 0) return -1;
  return std::max<int64_t>(RoundHalfEven(warmup_epochs * batches_per_epoch), 100);
}

ModelEma::ModelEma(DetectionModel& model, int64_t updates) : updates_(updates) {
  ema_ = DetectionModel(model->scale, model->nc);
  ema_->to(model->parameters().front().device());
  CopyModelState(*model, *ema_);
  ema_->eval();
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
}

void ModelEma::Update(DetectionModel& model) {
  at::NoGradGuard no_grad;
  ++updates_;
  const double d = 0.9999 * (1 - std::exp(-static_cast<double>(updates_) / 2000));
  auto src = model->named_parameters();
  for (auto& item : ema_->named_parameters()) {
    item.value().mul_(d).add_(src[item.key()].detach(), 1 - d);
  }
  auto src_buffers = model->named_buffers();
  for (auto& item : ema_->named_buffers()) {
    if (!item.value().is_floating_point()) continue;
    item.value().mul_(d).add_(src_buffers[item.key()], 1 - d);
  }
}

}  // namespace yolo
