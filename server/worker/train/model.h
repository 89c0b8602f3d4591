// YOLOv8 detection model (Conv-BN-SiLU, C2f, SPPF, PAN neck, Detect head with DFL) for scales
// n/s/m/l/x and any number of classes, with Ultralytics' parameter names ("model.0.conv.weight")
// and counts.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/worker/train/rank_sum.h"

namespace yolo {

struct ModelScale {
  char letter = 'n';
  double depth = 0.33;
  double width = 0.25;
  int max_channels = 1024;
};

// "yolov8n", "yolov8n.yaml", "yolov8n.pt" and "n" all name scale n.
absl::StatusOr<ModelScale> ScaleFromName(const std::string& name);

// Conv2d (no bias) -> BatchNorm2d -> SiLU.
class ConvImpl : public torch::nn::Module {
 public:
  ConvImpl(int c1, int c2, int k = 1, int s = 1);
  // NCHW in, NCHW out; a blocked (5-D, blocked_ops.h) input gives a blocked output.
  torch::Tensor forward(const torch::Tensor& x);
  // Training, or inference without autograd: a blocked or NCHW input, a blocked output.
  torch::Tensor forward_blocked(const torch::Tensor& x);
  // Inference: BatchNorm with its running statistics and SiLU, in place on `y` (NCHW or blocked).
  torch::Tensor InferenceBatchNormSilu(torch::Tensor y);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  // Set for data-parallel training: batch statistics (and their gradients) summed over every
  // rank's images, as PyTorch's SyncBatchNorm does, so that N ranks of b images train as one
  // process with N x b.
  RankSum sync_stats;
  // In the blocked layout, keep neither the convolution's output nor x̂ for backward but make
  // them again there (BlockedConvBatchNormSilu). Set for the stem, whose output is the largest
  // and cheapest to make (27 multiply-adds each), and for the 1x1 convolutions of C2f layers 2
  // and 4 (see the model's constructor). All of C2f's 1x1 convolutions would cost about 9 % of a
  // step's time: they are bound by memory, not arithmetic.
  bool rebuild_normalised = false;
};
TORCH_MODULE(Conv);

class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int c1, int c2, bool shortcut);
  torch::Tensor forward(const torch::Tensor& x);
  Conv cv1{nullptr}, cv2{nullptr};
  bool add = false;
};
TORCH_MODULE(Bottleneck);

class C2fImpl : public torch::nn::Module {
 public:
  C2fImpl(int c1, int c2, int n, bool shortcut);
  torch::Tensor forward(const torch::Tensor& x);
  Conv cv1{nullptr}, cv2{nullptr};
  torch::nn::ModuleList m{nullptr};
  std::vector<Bottleneck> blocks;
  int hidden = 0;
};
TORCH_MODULE(C2f);

class SPPFImpl : public torch::nn::Module {
 public:
  SPPFImpl(int c1, int c2, int k = 5);
  torch::Tensor forward(const torch::Tensor& x);
  // m's k x k max pool (stride 1, padding k/2) as a 1 x k pool and then a k x 1 one: the same
  // values, and the same gradients, since both take the first maximum in row-major order; about
  // half the time on the CPU.
  torch::Tensor pool(const torch::Tensor& x) const;
  Conv cv1{nullptr}, cv2{nullptr};
  torch::nn::MaxPool2d m{nullptr};  // kept for the layer table; pool() does its work
};
TORCH_MODULE(SPPF);

// Parameter-free layers, modules only so that layer indices and counts match Ultralytics'.
class UpsampleImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(Upsample);
class ConcatImpl : public torch::nn::Module {};
TORCH_MODULE(Concat);

// Conv -> Conv -> 1x1 Conv2d with bias: one head branch of one level.
class HeadBranchImpl : public torch::nn::Module {
 public:
  HeadBranchImpl(int c_in, int c_mid, int c_out);
  torch::Tensor forward(const torch::Tensor& x);
  Conv conv0{nullptr}, conv1{nullptr};
  torch::nn::Conv2d out{nullptr};
};
TORCH_MODULE(HeadBranch);

// Softmax over 16 bins and their expectation: a frozen 1x1 conv with weights 0..15.
class DFLImpl : public torch::nn::Module {
 public:
  explicit DFLImpl(int reg_max = 16);
  // (B, 4*reg_max, A) -> (B, 4, A)
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  int reg_max;
};
TORCH_MODULE(DFL);

class DetectImpl : public torch::nn::Module {
 public:
  DetectImpl(int nc, const std::vector<int>& channels);
  // Raw outputs per level: (B, 4*reg_max + nc, H_i, W_i). Each level's features are let go once
  // its branches have run.
  std::vector<torch::Tensor> forward(std::vector<torch::Tensor> feats);
  // Decoded predictions (B, 4 + nc, A): centre-xywh boxes in input pixels, class probabilities.
  torch::Tensor Decode(const std::vector<torch::Tensor>& raw);
  void InitBiases();

  int nc;
  int reg_max = 16;
  std::vector<double> strides = {8, 16, 32};
  torch::nn::ModuleList cv2{nullptr}, cv3{nullptr};
  std::vector<HeadBranch> box_branches, cls_branches;
  DFL dfl{nullptr};
};
TORCH_MODULE(Detect);

class DetectionModelImpl : public torch::nn::Module {
 public:
  DetectionModelImpl(const ModelScale& scale, int nc);
  // `images`: float in [0, 1], or uint8, which are scaled to it here (ScaleBytes) so that the
  // float copy lives only as long as the first layer needs it: in training that layer keeps the
  // bytes for backward instead (recompute.h).
  std::vector<torch::Tensor> forward(const torch::Tensor& images);
  // CPU training runs in oneDNN's blocked layout (blocked_ops.h) where it can; false makes it
  // use LibTorch's NCHW ops, as evaluation and GPUs always do. Same results up to rounding.
  void set_blocked_layout(bool on) { blocked_layout_ = on; }
  // Every BatchNorm synchronised over the data-parallel ranks through `sum` (see
  // ConvImpl::sync_stats); training then runs in LibTorch's NCHW layout.
  void SetSyncBatchNorm(const RankSum& sum);
  bool UsesBlockedLayout(const torch::Tensor& x) const;

  ModelScale scale;
  int nc;
  Detect detect{nullptr};

  // Ultralytics' summary figures: modules counted as nn.Module objects, GFLOPs as thop counts
  // them (conv multiply-adds and biases, BatchNorm) x2, at a square input of `imgsz`.
  int LayerCount();
  int64_t ParameterCount();
  int64_t GradientCount();
  double Gflops(int imgsz);

 private:
  torch::nn::ModuleList model{nullptr};
  std::vector<Conv> convs_;  // indexed by layer number where that layer is a Conv
  std::vector<C2f> c2fs_;
  SPPF sppf_{nullptr};
  Upsample up10_{nullptr}, up13_{nullptr};
  bool blocked_layout_ = true;
  bool blocked_channels_ = false;  // every channel count fits the blocked layout
};
TORCH_MODULE(DetectionModel);

// Seeds LibTorch's generator for training with `seed` as Ultralytics' trainer does in a single
// process (init_seeds(seed + 1 + RANK) with RANK -1), so that a model built next draws the
// weights Ultralytics draws for that seed.
void SeedLikeUltralytics(int64_t seed);

// Anchor centres (A, 2) in grid units (+0.5) and their strides (A, 1), levels in order.
void MakeAnchors(const std::vector<torch::Tensor>& feats, const std::vector<double>& strides,
                 torch::Tensor* points, torch::Tensor* stride_tensor);

// Copies every floating parameter and buffer of `src` into `dst` (same architecture).
void CopyModelState(torch::nn::Module& src, torch::nn::Module& dst);

}  // namespace yolo
