#include "server/worker/train/model.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/upsampling.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/recompute.h"
#include "server/worker/train/rounding.h"

namespace yolo {
namespace {

// Set while Gflops() runs a forward pass: layers add their multiply-adds here.
thread_local double* g_flop_counter = nullptr;

// thop's figures: a conv costs out_elements * (in_channels * k * k + bias); a BatchNorm with
// affine parameters 4 * elements (normalise and scale, both counted twice).
void CountConv(const torch::nn::Conv2d& conv, const torch::Tensor& out) {
  if (g_flop_counter == nullptr) return;
  const auto& o = conv->options;
  const double k = static_cast<double>((*o.kernel_size())[0] * (*o.kernel_size())[1]);
  const double per_output = o.in_channels() / o.groups() * k + (o.bias() ? 1 : 0);
  *g_flop_counter += static_cast<double>(out.numel()) * per_output;
}
void CountBatchNorm(const torch::Tensor& out) {
  if (g_flop_counter != nullptr) *g_flop_counter += 4.0 * static_cast<double>(out.numel());
}

// Eval mode without autograd: nothing needs a layer's activations once the next layer has them,
// so they may be overwritten in place.
bool Inferring(const torch::nn::Module& m) {
  return !m.is_training() && !at::GradMode::is_enabled();
}

// BatchNorm (training mode) followed by SiLU, keeping only the BatchNorm input for backward:
// the normalised value is recomputed there. The unfused pair keeps three activations per
// Conv (conv output, BN output, SiLU output); this keeps two, a third less activation memory
// for the whole model, for one extra elementwise pass in backward.
// The gradient at the BatchNorm output u = gamma x (z - mean) x invstd + beta of SiLU's
// gradient `gy`, u recomputed from z (in float when z is bf16 under autocast); in z's type.
at::Tensor SiluGradAtBatchNormOutput(const at::Tensor& gy, const at::Tensor& z,
                                     const at::Tensor& gamma, const at::Tensor& beta,
                                     const at::Tensor& mean, const at::Tensor& invstd) {
  const int64_t c = z.size(1);
  at::Tensor scale = (gamma * invstd).view({1, c, 1, 1});
  at::Tensor shift = (beta - mean * gamma * invstd).view({1, c, 1, 1});
  at::Tensor u = at::addcmul(shift, z, scale);
  at::Tensor gu =
      at::silu_backward(gy.to(u.scalar_type()).contiguous(z.suggest_memory_format()), u);
  return gu.to(z.scalar_type());
}

class BatchNormSiluFunction : public torch::autograd::Function<BatchNormSiluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z,
                            const at::Tensor& gamma, const at::Tensor& beta,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps) {
    auto [y, mean, invstd] = at::native_batch_norm(z, gamma, beta, running_mean, running_var,
                                                   /*training=*/true, momentum, eps);
    at::silu_(y);
    ctx->save_for_backward({z, gamma, beta, mean, invstd});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &z = saved[0], &gamma = saved[1], &beta = saved[2];
    const at::Tensor &mean = saved[3], &invstd = saved[4];
    const double eps = ctx->saved_data["eps"].toDouble();
    const at::Tensor gu = SiluGradAtBatchNormOutput(grads[0], z, gamma, beta, mean, invstd);
    auto [gz, ggamma, gbeta] =
        at::native_batch_norm_backward(gu, z, gamma, /*running_mean=*/{}, /*running_var=*/{}, mean,
                                       invstd, /*train=*/true, eps, {true, true, true});
    return {gz, ggamma, gbeta, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// BatchNorm (training) + SiLU whose batch statistics are those of every rank's batch: the
// per-channel sums go through `sum` (an all-reduce) in the forward pass, and so do the two
// sums the input gradient needs in the backward pass. Sums in double, like the reference.
class SyncBatchNormSiluFunction : public torch::autograd::Function<SyncBatchNormSiluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z,
                            const at::Tensor& gamma, const at::Tensor& beta,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps, const RankSum* sum) {
    const int64_t c = z.size(1);
    const std::vector<int64_t> dims = {0, 2, 3};
    at::Tensor stats =
        at::cat({z.sum(dims, false, at::kDouble), (z * z).sum(dims, false, at::kDouble),
                 at::full({1}, static_cast<double>(z.numel() / c), at::kDouble)});
    (*sum)(stats);
    const double n = stats[2 * c].item<double>();
    at::Tensor mean = stats.narrow(0, 0, c) / n;
    at::Tensor var = (stats.narrow(0, c, c) / n - mean * mean).clamp_min(0);
    at::Tensor invstd = (var + eps).rsqrt();
    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum)
          .add_((var * (n / std::max(n - 1, 1.0))).to(running_var.scalar_type()), momentum);
    }
    at::Tensor mean_f = mean.to(z.scalar_type()), invstd_f = invstd.to(z.scalar_type());
    at::Tensor scale = (gamma * invstd_f).view({1, c, 1, 1});
    at::Tensor shift = (beta - mean_f * gamma * invstd_f).view({1, c, 1, 1});
    at::Tensor y = at::silu(at::addcmul(shift, z, scale));
    ctx->save_for_backward({z, gamma, beta, mean_f, invstd_f});
    ctx->saved_data["n"] = n;
    ctx->saved_data["sum"] = reinterpret_cast<int64_t>(sum);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &z = saved[0], &gamma = saved[1], &beta = saved[2];
    const at::Tensor &mean = saved[3], &invstd = saved[4];
    const double n = ctx->saved_data["n"].toDouble();
    const RankSum& sum = *reinterpret_cast<const RankSum*>(ctx->saved_data["sum"].toInt());
    const int64_t c = z.size(1);
    const std::vector<int64_t> dims = {0, 2, 3};
    const at::Tensor gu = SiluGradAtBatchNormOutput(grads[0], z, gamma, beta, mean, invstd);
    at::Tensor xmu = z - mean.view({1, c, 1, 1});
    at::Tensor local =
        at::cat({gu.sum(dims, false, at::kDouble), (gu * xmu).sum(dims, false, at::kDouble)});
    // This rank's parameter gradients; the gradient reducer averages them over the ranks.
    at::Tensor gbeta = local.narrow(0, 0, c).to(gamma.scalar_type());
    at::Tensor ggamma = (local.narrow(0, c, c).to(gamma.scalar_type()) * invstd);
    at::Tensor global = local.clone();
    sum(global);
    at::Tensor mean_gu = (global.narrow(0, 0, c) / n).to(z.scalar_type()).view({1, c, 1, 1});
    at::Tensor mean_gu_xmu = (global.narrow(0, c, c) / n).to(z.scalar_type()).view({1, c, 1, 1});
    at::Tensor inv = invstd.view({1, c, 1, 1});
    at::Tensor gz =
        (gu - mean_gu - xmu * (inv * inv) * mean_gu_xmu) * (gamma.view({1, c, 1, 1}) * inv);
    return {gz,           ggamma,       gbeta,        at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

int Channels(int c, const ModelScale& s) {
  const double scaled = std::min(c, s.max_channels) * s.width;
  return static_cast<int>(std::ceil(scaled / 8.0)) * 8;
}

int Repeats(int n, const ModelScale& s) {
  return n > 1 ? std::max(static_cast<int>(RoundHalfEven(n * s.depth)), 1) : n;
}

}  // namespace

absl::StatusOr<ModelScale> ScaleFromName(const std::string& name) {
  std::string base = absl::AsciiStrToLower(name);
  const size_t slash = base.rfind('/');
  if (slash != std::string::npos) base = base.substr(slash + 1);
  for (const char* suffix : {".yaml", ".pt"}) {
    if (absl::EndsWith(base, suffix))
      base = base.substr(0, base.size() - std::string(suffix).size());
  }
  if (absl::StartsWith(base, "yolov8")) base = base.substr(6);
  if (base.size() == 1) {
    switch (base[0]) {
      case 'n':
        return ModelScale{'n', 0.33, 0.25, 1024};
      case 's':
        return ModelScale{'s', 0.33, 0.50, 1024};
      case 'm':
        return ModelScale{'m', 0.67, 0.75, 768};
      case 'l':
        return ModelScale{'l', 1.00, 1.00, 512};
      case 'x':
        return ModelScale{'x', 1.00, 1.25, 512};
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("argument 'model': '", name,
                   "' is not a YOLOv8 scale (yolov8n, yolov8s, yolov8m, yolov8l, "
                   "yolov8x, optionally with .yaml) nor an existing checkpoint"));
}

ConvImpl::ConvImpl(int c1, int c2, int k, int s) {
  conv =
      register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, /*kernel_size=*/k)
                                                    .stride(s)
                                                    .padding(k / 2)
                                                    .bias(false)));
  bn = register_module(
      "bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c2).eps(1e-3).momentum(0.03)));
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  if (x.dim() == 5) return forward_blocked(x);
  torch::Tensor y = conv->forward(x);
  CountConv(conv, y);
  if (is_training() && at::GradMode::is_enabled()) {
    const auto& o = bn->options;
    bn->num_batches_tracked += 1;
    if (sync_stats) {
      return SyncBatchNormSiluFunction::apply(y, bn->weight, bn->bias, bn->running_mean,
                                              bn->running_var, o.momentum().value(), o.eps(),
                                              &sync_stats);
    }
    if (CpuBatchNormSiluHandles(y)) {
      return CpuBatchNormSilu(y, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                              o.momentum().value(), o.eps());
    }
    return BatchNormSiluFunction::apply(y, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                                        o.momentum().value(), o.eps());
  }
  if (Inferring(*this) && y.is_contiguous()) {
    return InferenceBatchNormSilu(y);
  }
  y = bn->forward(y);
  CountBatchNorm(y);
  return at::silu(y);
}

torch::Tensor ConvImpl::InferenceBatchNormSilu(torch::Tensor y) {
  // BatchNorm's affine map and SiLU in place on the convolution's output, so that one activation
  // is live per layer instead of three (BatchNorm's and SiLU's outputs besides). The map is
  // LibTorch's own, y * a + (beta - mean * a) with a = gamma / sd, with the same roundings and
  // multiply-adds, so that NCHW values are the out-of-place ops' bits.
  const at::Tensor factor =
      bn->weight * at::sqrt(bn->running_var + bn->options.eps()).reciprocal_();
  const at::Tensor offset = at::addcmul(bn->bias, bn->running_mean.neg(), factor);
  // Channel c of a blocked tensor (N, C/B, H, W, B) is block c / B, lane c % B.
  const std::vector<int64_t> shape = y.dim() == 5
                                         ? std::vector<int64_t>{1, y.size(1), 1, 1, y.size(4)}
                                         : std::vector<int64_t>{1, y.size(1), 1, 1};
  at::addcmul_out(y, offset.view(shape), y, factor.view(shape));
  CountBatchNorm(y);
  return at::silu_(y);
}

torch::Tensor ConvImpl::forward_blocked(const torch::Tensor& x) {
  const auto& o = bn->options;
  const int64_t stride = conv->options.stride()->at(0);
  const int64_t padding = conv->options.kernel_size()->at(0) / 2;
  if (Inferring(*this)) {
    return InferenceBatchNormSilu(BlockedConvForward(x, conv->weight, stride, padding));
  }
  bn->num_batches_tracked += 1;
  if (rebuild_normalised) {
    return BlockedConvBatchNormSilu(x, conv->weight, bn->weight, bn->bias, bn->running_mean,
                                    bn->running_var, stride, padding, o.momentum().value(),
                                    o.eps());
  }
  const torch::Tensor z =
      BlockedConv2d(x, conv->weight, /*bias=*/{}, stride, padding, /*out_blocked=*/true);
  return CpuBatchNormSilu(z, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                          o.momentum().value(), o.eps());
}

BottleneckImpl::BottleneckImpl(int c1, int c2, bool shortcut) {
  cv1 = register_module("cv1", Conv(c1, c2, 3));
  cv2 = register_module("cv2", Conv(c2, c2, 3));
  add = shortcut && c1 == c2;
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = cv2->forward(cv1->forward(x));
  return add ? AddActivations(x, y) : y;
}

C2fImpl::C2fImpl(int c1, int c2, int n, bool shortcut) {
  hidden = c2 / 2;
  cv1 = register_module("cv1", Conv(c1, 2 * hidden, 1));
  cv2 = register_module("cv2", Conv((2 + n) * hidden, c2, 1));
  m = register_module("m", torch::nn::ModuleList());
  for (int i = 0; i < n; ++i) {
    blocks.push_back(Bottleneck(hidden, hidden, shortcut));
    m->push_back(blocks.back());
  }
}

torch::Tensor C2fImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> ys = ChunkChannels(cv1->forward(x), 2);
  for (auto& block : blocks) ys.push_back(block->forward(ys.back()));
  return cv2->forward(ConcatChannels(ys));
}

SPPFImpl::SPPFImpl(int c1, int c2, int k) {
  const int hidden = c1 / 2;
  cv1 = register_module("cv1", Conv(c1, hidden, 1));
  cv2 = register_module("cv2", Conv(hidden * 4, c2, 1));
  m = register_module(
      "m", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(k).stride(1).padding(k / 2)));
}

torch::Tensor SPPFImpl::pool(const torch::Tensor& x) const {
  const int64_t k = m->options.kernel_size()->at(0);
  return at::max_pool2d(at::max_pool2d(x, {1, k}, {1, 1}, {0, k / 2}), {k, 1}, {1, 1}, {k / 2, 0});
}

torch::Tensor SPPFImpl::forward(const torch::Tensor& x) {
  // Blocked activations are pooled in NCHW: at stride 32 the conversions cost next to nothing.
  const bool blocked = x.dim() == 5;
  torch::Tensor y0 = cv1->forward(x);
  if (blocked) y0 = FromBlocked(y0);
  torch::Tensor y1 = pool(y0);
  torch::Tensor y2 = pool(y1);
  torch::Tensor y3 = pool(y2);
  torch::Tensor pooled = at::cat({y0, y1, y2, y3}, 1);
  return cv2->forward(blocked ? ToBlocked(pooled) : pooled);
}

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  if (x.dim() == 5) return BlockedUpsample2x(x);
  return at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
}

HeadBranchImpl::HeadBranchImpl(int c_in, int c_mid, int c_out) {
  conv0 = register_module("0", Conv(c_in, c_mid, 3));
  conv1 = register_module("1", Conv(c_mid, c_mid, 3));
  out = register_module("2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c_mid, c_out, 1)));
}

torch::Tensor HeadBranchImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv1->forward(conv0->forward(x));
  if (h.dim() == 5) {
    return BlockedConv2d(h, out->weight, out->bias, /*stride=*/1, /*padding=*/0,
                         /*out_blocked=*/false);
  }
  torch::Tensor y = out->forward(h);
  CountConv(out, y);
  return y;
}

DFLImpl::DFLImpl(int reg_max) : reg_max(reg_max) {
  conv = register_module("conv",
                         torch::nn::Conv2d(torch::nn::Conv2dOptions(reg_max, 1, 1).bias(false)));
  torch::NoGradGuard no_grad;
  conv->weight.copy_(at::arange(reg_max, at::kFloat).view({1, reg_max, 1, 1}));
  conv->weight.set_requires_grad(false);
}

torch::Tensor DFLImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), a = x.size(2);
  torch::Tensor probs = x.view({b, 4, reg_max, a}).softmax(2);
  return (probs * conv->weight.view({1, 1, reg_max, 1})).sum(2);
}

DetectImpl::DetectImpl(int nc, const std::vector<int>& channels) : nc(nc) {
  const int c2 = std::max({16, channels[0] / 4, reg_max * 4});
  const int c3 = std::max(channels[0], std::min(nc, 100));
  // Built in Ultralytics' order (every box branch, then every class branch, then the DFL), so
  // that the same seed draws the same initial weights.
  cv2 = register_module("cv2", torch::nn::ModuleList());
  for (int ch : channels) {
    box_branches.push_back(HeadBranch(ch, c2, 4 * reg_max));
    cv2->push_back(box_branches.back());
  }
  cv3 = register_module("cv3", torch::nn::ModuleList());
  for (int ch : channels) {
    cls_branches.push_back(HeadBranch(ch, c3, nc));
    cv3->push_back(cls_branches.back());
  }
  dfl = register_module("dfl", DFL(reg_max));
}

void DetectImpl::InitBiases() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < strides.size(); ++i) {
    box_branches[i]->out->bias.fill_(1.0);
    const double cells = std::pow(640.0 / strides[i], 2);
    cls_branches[i]->out->bias.fill_(std::log(5.0 / nc / cells));
  }
}

std::vector<torch::Tensor> DetectImpl::forward(std::vector<torch::Tensor> feats) {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < feats.size(); ++i) {
    out.push_back(
        at::cat({box_branches[i]->forward(feats[i]), cls_branches[i]->forward(feats[i])}, 1));
    feats[i].reset();
  }
  return out;
}

torch::Tensor DetectImpl::Decode(const std::vector<torch::Tensor>& raw) {
  const int64_t b = raw[0].size(0);
  std::vector<torch::Tensor> flat;
  for (const auto& r : raw) flat.push_back(r.reshape({b, 4 * reg_max + nc, -1}));
  torch::Tensor all = at::cat(flat, 2);
  torch::Tensor dist = dfl->forward(all.narrow(1, 0, 4 * reg_max));  // (B, 4, A)
  torch::Tensor cls = all.narrow(1, 4 * reg_max, nc).sigmoid();
  torch::Tensor points, stride_t;
  MakeAnchors(raw, strides, &points, &stride_t);
  points = points.transpose(0, 1).unsqueeze(0);      // (1, 2, A)
  stride_t = stride_t.transpose(0, 1).unsqueeze(0);  // (1, 1, A)
  torch::Tensor lt = dist.narrow(1, 0, 2), rb = dist.narrow(1, 2, 2);
  torch::Tensor x1y1 = points - lt, x2y2 = points + rb;
  torch::Tensor xywh = at::cat({(x1y1 + x2y2) / 2, x2y2 - x1y1}, 1) * stride_t;
  return at::cat({xywh, cls}, 1);
}

DetectionModelImpl::DetectionModelImpl(const ModelScale& s, int nc) : scale(s), nc(nc) {
  model = register_module("model", torch::nn::ModuleList());
  convs_.resize(23, Conv(nullptr));
  c2fs_.resize(23, C2f(nullptr));
  auto ch = [&](int c) { return Channels(c, s); };
  auto add_conv = [&](int i, int c1, int c2, int k, int st) {
    convs_[i] = Conv(c1, c2, k, st);
    convs_[i]->rebuild_normalised = i == 0;  // the stem: 27 multiply-adds per output
    model->push_back(convs_[i]);
  };
  auto add_c2f = [&](int i, int c1, int c2, int n, bool shortcut) {
    c2fs_[i] = C2f(c1, c2, Repeats(n, s), shortcut);
    // The backbone's two C2f at the highest resolutions rebuild what their 1x1 convolutions
    // make instead of keeping it, as the stem does: with 32 to 64 input channels at strides 4
    // and 8 those convolutions cost about 1 % of a step run again, and a step keeps 47 MB less
    // (yolov8n at 320 px, batch 16: the step plan 266 -> 219 MB).
    c2fs_[i]->cv1->rebuild_normalised = i == 2 || i == 4;
    c2fs_[i]->cv2->rebuild_normalised = i == 2;
    model->push_back(c2fs_[i]);
  };
  const int c64 = ch(64), c128 = ch(128), c256 = ch(256), c512 = ch(512), c1024 = ch(1024);
  add_conv(0, 3, c64, 3, 2);
  add_conv(1, c64, c128, 3, 2);
  add_c2f(2, c128, c128, 3, true);
  add_conv(3, c128, c256, 3, 2);
  add_c2f(4, c256, c256, 6, true);
  add_conv(5, c256, c512, 3, 2);
  add_c2f(6, c512, c512, 6, true);
  add_conv(7, c512, c1024, 3, 2);
  add_c2f(8, c1024, c1024, 3, true);
  sppf_ = SPPF(c1024, c1024, 5);
  model->push_back(sppf_);
  up10_ = Upsample();
  model->push_back(up10_);     // 10
  model->push_back(Concat());  // 11
  add_c2f(12, c1024 + c512, c512, 3, false);
  up13_ = Upsample();
  model->push_back(up13_);                   // 13
  model->push_back(Concat());                // 14
  add_c2f(15, c512 + c256, c256, 3, false);  // P3
  add_conv(16, c256, c256, 3, 2);
  model->push_back(Concat());                // 17
  add_c2f(18, c256 + c512, c512, 3, false);  // P4
  add_conv(19, c512, c512, 3, 2);
  model->push_back(Concat());                  // 20
  add_c2f(21, c512 + c1024, c1024, 3, false);  // P5
  detect = Detect(nc, std::vector<int>{c256, c512, c1024});
  model->push_back(detect);
  detect->InitBiases();
  // Ultralytics' model, once built, runs one forward pass of zeros in training mode (to find
  // the strides) while BatchNorm's momentum is still PyTorch's 0.1: every running variance
  // becomes 0.9 (the running means stay 0) and every layer counts one batch. The same start.
  {
    torch::NoGradGuard no_grad;
    for (const auto& m : modules(/*include_self=*/false)) {
      if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
        bn->running_var.fill_(0.9);
        bn->num_batches_tracked.fill_(1);
      }
    }
  }
  // The blocked layout holds channels in groups of 8 or 16: every Conv's output and every input
  // but the image's must fill whole groups (a head for, say, 85 classes does not).
  const int group = BlockedLayoutWidth();
  blocked_channels_ = true;
  for (const auto& m : modules(/*include_self=*/false)) {
    if (const auto* c = m->as<ConvImpl>()) {
      const auto& o = c->conv->options;
      const bool image = c == convs_[0].get();
      blocked_channels_ &= o.out_channels() % group == 0 && (image || o.in_channels() % group == 0);
    }
  }
}

void DetectionModelImpl::SetSyncBatchNorm(const RankSum& sum) {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<ConvImpl>()) c->sync_stats = sum;
  }
  blocked_layout_ = false;  // the blocked kernels compute their statistics locally
}

bool DetectionModelImpl::UsesBlockedLayout(const torch::Tensor& x) const {
  // Training, and inference (without autograd; not while Gflops counts the NCHW layers).
  const bool training = is_training() && at::GradMode::is_enabled();
  const bool inference = Inferring(*this) && g_flop_counter == nullptr;
  return blocked_layout_ && blocked_channels_ && (training || inference) && x.device().is_cpu() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kByte) &&
         BlockedLayoutAvailable();
}

std::vector<torch::Tensor> DetectionModelImpl::forward(const torch::Tensor& images) {
  // Each activation goes as soon as its last consumer has run. In the blocked layout those
  // consumers keep what rebuilds it, not the activation itself (recompute.h), and the step's
  // peak comes late in this pass: a layer's output held to the end would be part of it.
  torch::Tensor y;
  {
    const torch::Tensor x = images.scalar_type() == at::kByte ? ScaleBytes(images) : images;
    // In the blocked layout from the first convolution on: every layer after it sees 5-D
    // tensors.
    y = UsesBlockedLayout(x) ? convs_[0]->forward_blocked(x) : convs_[0]->forward(x);
  }
  y = convs_[1]->forward(y);
  y = c2fs_[2]->forward(y);
  torch::Tensor p3 = convs_[3]->forward(y);
  y.reset();
  p3 = c2fs_[4]->forward(p3);
  torch::Tensor p4 = c2fs_[6]->forward(convs_[5]->forward(p3));
  torch::Tensor p5 = sppf_->forward(c2fs_[8]->forward(convs_[7]->forward(p4)));
  torch::Tensor h12 = c2fs_[12]->forward(ConcatChannels({up10_->forward(p5), p4}));
  p4.reset();
  torch::Tensor out3 = c2fs_[15]->forward(ConcatChannels({up13_->forward(h12), p3}));
  p3.reset();
  torch::Tensor out4 = c2fs_[18]->forward(ConcatChannels({convs_[16]->forward(out3), h12}));
  h12.reset();
  torch::Tensor out5 = c2fs_[21]->forward(ConcatChannels({convs_[19]->forward(out4), p5}));
  p5.reset();
  std::vector<torch::Tensor> levels;
  for (torch::Tensor* level : {&out3, &out4, &out5}) levels.push_back(std::move(*level));
  return detect->forward(std::move(levels));
}

int DetectionModelImpl::LayerCount() {
  // Ultralytics shares one SiLU instance between every Conv; ours is functional.
  return static_cast<int>(modules(/*include_self=*/true).size()) + 1;
}

int64_t DetectionModelImpl::ParameterCount() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t DetectionModelImpl::GradientCount() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.requires_grad() ? p.numel() : 0;
  return n;
}

double DetectionModelImpl::Gflops(int imgsz) {
  torch::NoGradGuard no_grad;
  const bool was_training = is_training();
  // Layers are linear in pixels: count at the largest stride and scale, as Ultralytics does.
  const int probe = 32;
  eval();
  double macs = 0;
  g_flop_counter = &macs;
  forward(at::zeros({1, 3, probe, probe}));
  g_flop_counter = nullptr;
  train(was_training);
  return 2.0 * macs / 1e9 * (static_cast<double>(imgsz) / probe) *
         (static_cast<double>(imgsz) / probe);
}

void SeedLikeUltralytics(int64_t seed) { at::manual_seed(static_cast<uint64_t>(seed)); }

void MakeAnchors(const std::vector<torch::Tensor>& feats, const std::vector<double>& strides,
                 torch::Tensor* points, torch::Tensor* stride_tensor) {
  std::vector<torch::Tensor> pts, strs;
  for (size_t i = 0; i < feats.size(); ++i) {
    const int64_t h = feats[i].size(2), w = feats[i].size(3);
    auto opts = at::TensorOptions().dtype(at::kFloat).device(feats[i].device());
    torch::Tensor sx = at::arange(w, opts) + 0.5;
    torch::Tensor sy = at::arange(h, opts) + 0.5;
    std::vector<torch::Tensor> grid = at::meshgrid({sy, sx}, "ij");
    pts.push_back(at::stack({grid[1], grid[0]}, -1).view({-1, 2}));
    strs.push_back(at::full({h * w, 1}, strides[i], opts));
  }
  *points = at::cat(pts, 0);
  *stride_tensor = at::cat(strs, 0);
}

void CopyModelState(torch::nn::Module& src, torch::nn::Module& dst) {
  torch::NoGradGuard no_grad;
  auto sp = src.named_parameters(), dp = dst.named_parameters();
  for (auto& item : sp) dp[item.key()].copy_(item.value());
  auto sb = src.named_buffers(), db = dst.named_buffers();
  for (auto& item : sb) db[item.key()].copy_(item.value());
}

}  // namespace yolo
