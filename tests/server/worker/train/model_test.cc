#include "server/worker/train/model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/batchnorm.h>
#include <torch/types.h>

#include <cmath>
#include <optional>

#include "server/worker/train/blocked_ops.h"
#include "server/worker/train/recompute.h"

namespace yolo {
namespace {

struct ScaleFigures {
  const char* name;
  int layers;
  int64_t params;
  double gflops;
};

TEST(ModelTest, AllFiveScalesMatchUltralyticsSummaries) {
  const ScaleFigures table[] = {{"yolov8n", 225, 3157200, 8.9},
                                {"yolov8s", 225, 11166560, 28.8},
                                {"yolov8m", 295, 25902640, 79.3},
                                {"yolov8l", 365, 43691520, 165.7},
                                {"yolov8x.yaml", 365, 68229648, 258.5}};
  for (const auto& row : table) {
    auto scale = ScaleFromName(row.name);
    ASSERT_TRUE(scale.ok()) << row.name;
    DetectionModel m(*scale, 80);
    EXPECT_EQ(m->ParameterCount(), row.params) << row.name;
    EXPECT_EQ(m->GradientCount(), row.params - 16) << row.name;
    EXPECT_EQ(m->LayerCount(), row.layers) << row.name;
    EXPECT_NEAR(m->Gflops(640), row.gflops, 0.15) << row.name;
  }
}

TEST(ModelTest, SppfSeparablePoolIsTheSquarePoolValuesAndGradients) {
  SPPF sppf(32, 32, 5);
  // Values on a coarse grid, so that windows hold ties: the gradient must reach the same one.
  at::Tensor x = (at::randint(0, 4, {2, 16, 9, 7}) - 2).to(at::kFloat);
  at::Tensor a = x.clone().set_requires_grad(true), b = x.clone().set_requires_grad(true);
  at::Tensor ya = sppf->pool(sppf->pool(a)), yb = sppf->m->forward(sppf->m->forward(b));
  EXPECT_TRUE(at::equal(ya, yb));
  // Whole-number gradients add up exactly in any order: equal sums mean equal routes.
  at::Tensor upstream = at::randint(-3, 4, ya.sizes()).to(at::kFloat);
  (ya * upstream).sum().backward();
  (yb * upstream).sum().backward();
  EXPECT_TRUE(at::equal(a.grad(), b.grad()));
}

TEST(ModelTest, ThreeClassNanoMatchesTheReference) {
  DetectionModel m(*ScaleFromName("n"), 3);
  EXPECT_EQ(m->ParameterCount(), 3011433);
  EXPECT_NEAR(m->Gflops(320), 2.049, 0.005);
}

TEST(ModelTest, UnknownScaleIsAnErrorNamingTheArgument) {
  auto s = ScaleFromName("yolov9q");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("'model'"), std::string::npos);
}

TEST(ModelTest, OutputShapesAndDecode) {
  DetectionModel m(*ScaleFromName("n"), 3);
  m->eval();
  at::NoGradGuard no_grad;
  auto raw = m->forward(at::zeros({2, 3, 64, 96}));
  ASSERT_EQ(raw.size(), 3u);
  EXPECT_EQ(raw[0].sizes(), (at::IntArrayRef{2, 67, 8, 12}));
  EXPECT_EQ(raw[2].sizes(), (at::IntArrayRef{2, 67, 2, 3}));
  at::Tensor pred = m->detect->Decode(raw);
  EXPECT_EQ(pred.sizes(), (at::IntArrayRef{2, 7, 8 * 12 + 4 * 6 + 2 * 3}));
  // Class scores are probabilities; the initial bias makes them small.
  EXPECT_LT(pred.narrow(1, 4, 3).max().item<float>(), 0.05);
}

TEST(ModelTest, SeedDrawsUltralyticsInitialWeights) {
  // Figures from Ultralytics 8.1.47 on PyTorch 1.13: init_seeds(0), then
  // DetectionModel("yolov8n.yaml", nc=3). bench/parity/run.sh compares every tensor.
  SeedLikeUltralytics(0);
  DetectionModel model(ModelScale{'n', 0.33, 0.25, 1024}, 3);
  auto state = model->named_parameters();
  auto first = [&](const char* name) { return state[name].flatten()[0].item<double>(); };
  auto sum = [&](const char* name) { return state[name].to(at::kDouble).sum().item<double>(); };
  EXPECT_FLOAT_EQ(first("model.0.conv.weight"), -0.0014408392598852515);
  EXPECT_NEAR(sum("model.0.conv.weight"), -0.5913192177831661, 1e-9);
  // Every box branch draws before any class branch.
  EXPECT_FLOAT_EQ(first("model.22.cv2.0.2.weight"), 0.026126250624656677);
  EXPECT_FLOAT_EQ(first("model.22.cv3.0.0.conv.weight"), -0.006812920328229666);
  EXPECT_NEAR(sum("model.22.cv3.2.2.weight"), 0.4307890832424164, 1e-9);
  EXPECT_FLOAT_EQ(first("model.22.cv3.2.2.bias"), -5.4806389808654785);
  // Ultralytics' stride probe leaves every BatchNorm at running_var 0.9 after one batch.
  auto buffers = model->named_buffers();
  EXPECT_FLOAT_EQ(buffers["model.9.cv2.bn.running_var"][0].item<float>(), 0.9f);
  EXPECT_EQ(buffers["model.9.cv2.bn.num_batches_tracked"].item<int64_t>(), 1);
}

TEST(ModelTest, HeadBiasInitialisation) {
  DetectionModel m(*ScaleFromName("n"), 80);
  const auto& det = m->detect;
  EXPECT_NEAR(det->box_branches[0]->out->bias[0].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(det->cls_branches[0]->out->bias[0].item<float>(), -11.54, 0.01);
  EXPECT_NEAR(det->cls_branches[1]->out->bias[0].item<float>(), -10.16, 0.01);
  EXPECT_NEAR(det->cls_branches[2]->out->bias[0].item<float>(), -8.77, 0.01);
  // BatchNorm eps and momentum as Ultralytics sets them.
  EXPECT_DOUBLE_EQ(det->box_branches[0]->conv0->bn->options.eps(), 1e-3);
  EXPECT_DOUBLE_EQ(det->box_branches[0]->conv0->bn->options.momentum().value(), 0.03);
}

TEST(ModelTest, FusedBatchNormSiluMatchesTheUnfusedOps) {
  torch::manual_seed(1);
  Conv conv(4, 6, 3);
  conv->train();
  {
    at::NoGradGuard g;
    conv->bn->weight.uniform_(0.5, 1.5);
    conv->bn->bias.uniform_(-0.5, 0.5);
  }
  at::Tensor x = torch::randn({3, 4, 7, 5}, torch::requires_grad());
  at::Tensor upstream = at::randn({3, 6, 7, 5});
  at::Tensor rm = conv->bn->running_mean.clone(), rv = conv->bn->running_var.clone();

  at::Tensor y = conv->forward(x);
  (y * upstream).sum().backward();
  at::Tensor gx = x.grad().clone(), gw = conv->conv->weight.grad().clone();
  at::Tensor gg = conv->bn->weight.grad().clone(), gb = conv->bn->bias.grad().clone();

  x.mutable_grad().zero_();
  conv->zero_grad();
  at::Tensor z = conv->conv->forward(x);
  at::Tensor ref = at::silu(
      at::batch_norm(z, conv->bn->weight, conv->bn->bias, rm, rv, true, 0.03, 1e-3, false));
  (ref * upstream).sum().backward();
  EXPECT_TRUE(at::allclose(y, ref, 1e-5, 1e-5));
  // The fused path keeps the normalised input in bfloat16 for backward (8 significant bits), so
  // gradients agree to a few parts in a thousand; a wrong formula would be off by far more.
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  EXPECT_LT(rel(gx, x.grad()), 3e-3);
  EXPECT_LT(rel(gw, conv->conv->weight.grad()), 3e-3);
  EXPECT_LT(rel(gg, conv->bn->weight.grad()), 1e-2);
  EXPECT_LT(rel(gb, conv->bn->bias.grad()), 3e-3);
  // Running statistics moved as they would have.
  EXPECT_TRUE(at::allclose(conv->bn->running_mean, rm, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(conv->bn->running_var, rv, 1e-5, 1e-6));
}

// In inference, BatchNorm and SiLU run in place on the convolution's output, with the bits of
// LibTorch's out-of-place ops.
TEST(ModelTest, InferenceConvInPlaceGivesTheOutOfPlaceBits) {
  torch::manual_seed(2);
  Conv conv(5, 24, 3);
  {
    at::NoGradGuard g;
    conv->bn->weight.uniform_(0.5, 1.5);
    conv->bn->bias.uniform_(-0.5, 0.5);
    conv->bn->running_mean.uniform_(-1, 1);
    conv->bn->running_var.uniform_(0.2, 3);
  }
  conv->eval();
  at::Tensor x = at::randn({2, 5, 19, 23});
  at::NoGradGuard g;
  at::Tensor y = conv->forward(x);
  at::Tensor ref = at::silu(conv->bn->forward(conv->conv->forward(x)));
  EXPECT_TRUE(at::equal(y, ref)) << (y - ref).abs().max().item<float>();
}

// A training step in the blocked layout gives what LibTorch's NCHW ops give.
TEST(ModelTest, BlockedLayoutTrainsLikeNchw) {
  auto scale = ScaleFromName("yolov8n");
  ASSERT_TRUE(scale.ok());
  std::vector<at::Tensor> grads[2], outputs[2], running[2];
  for (int blocked = 0; blocked < 2; ++blocked) {
    torch::manual_seed(4);
    DetectionModel m(*scale, 3);
    m->train();
    m->set_blocked_layout(blocked == 1);
    at::Tensor x = at::rand({2, 3, 64, 64});
    EXPECT_EQ(m->UsesBlockedLayout(x), blocked == 1 && BlockedLayoutAvailable());
    at::Tensor loss = at::zeros({});
    for (const at::Tensor& level : m->forward(x)) {
      outputs[blocked].push_back(level.detach());
      loss = loss + (level * at::randn(level.sizes())).sum();
    }
    loss.backward();
    for (const auto& p : m->parameters()) {
      if (p.requires_grad()) grads[blocked].push_back(p.grad().clone());
    }
    for (const auto& b : m->buffers()) running[blocked].push_back(b.clone());
  }
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).norm() / (b.norm() + 1e-12)).item<double>();
  };
  for (size_t i = 0; i < outputs[0].size(); ++i) {
    EXPECT_LT(rel(outputs[1][i], outputs[0][i]), 1e-4) << "output " << i;
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    EXPECT_LT(rel(grads[1][i], grads[0][i]), 1e-2) << "parameter " << i;
  }
  for (size_t i = 0; i < running[0].size(); ++i) {
    EXPECT_LT(rel(running[1][i].to(at::kFloat), running[0][i].to(at::kFloat)), 1e-4)
        << "buffer " << i;
  }
}

// Inference runs in the blocked layout too, with LibTorch's NCHW outputs up to rounding, and
// leaves the BatchNorm buffers as they were.
TEST(ModelTest, BlockedInferenceGivesTheNchwOutputs) {
  auto scale = ScaleFromName("yolov8n");
  ASSERT_TRUE(scale.ok());
  torch::manual_seed(5);
  DetectionModel m(*scale, 3);
  {
    at::NoGradGuard g;
    for (auto& b : m->buffers()) {
      if (b.scalar_type() == at::kFloat) b.uniform_(0.5, 1.5);  // running means and variances
    }
  }
  m->eval();
  std::vector<at::Tensor> before;
  for (const auto& b : m->buffers()) before.push_back(b.clone());
  at::NoGradGuard no_grad;
  const at::Tensor x = at::rand({2, 3, 96, 64});
  std::vector<at::Tensor> outputs[2];
  for (int blocked = 0; blocked < 2; ++blocked) {
    m->set_blocked_layout(blocked == 1);
    EXPECT_EQ(m->UsesBlockedLayout(x), blocked == 1 && BlockedLayoutAvailable());
    outputs[blocked] = m->forward(x);
  }
  ASSERT_EQ(outputs[0].size(), outputs[1].size());
  for (size_t i = 0; i < outputs[0].size(); ++i) {
    ASSERT_EQ(outputs[1][i].sizes(), outputs[0][i].sizes());
    const double rel =
        ((outputs[1][i] - outputs[0][i]).norm() / outputs[0][i].norm()).item<double>();
    EXPECT_LT(rel, 1e-5) << "output " << i;
  }
  const auto after = m->buffers();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::equal(after[i], before[i])) << i;
}

// A blocked training step that rebuilds convolutions' inputs in backward (recompute.h) gives
// the gradients of one that keeps them, bit for bit, from a uint8 batch as training gives it.
TEST(ModelTest, BlockedStepRebuildsInputsWithTheSameGradients) {
  if (!BlockedLayoutAvailable() || !RecomputeEnabled() || FusedBatchNormKeepsBf16()) {
    GTEST_SKIP() << "no blocked layout, or recomputing switched off";
  }
  auto scale = ScaleFromName("yolov8n");
  ASSERT_TRUE(scale.ok());
  std::vector<at::Tensor> grads[2];
  for (int kept = 0; kept < 2; ++kept) {
    std::optional<NoRecomputeScope> no_recompute;
    if (kept == 1) no_recompute.emplace();
    torch::manual_seed(6);
    DetectionModel m(*scale, 3);
    m->train();
    m->set_blocked_layout(true);
    const at::Tensor bytes = at::randint(0, 256, {2, 3, 64, 64}, at::TensorOptions(at::kByte));
    std::vector<at::Tensor> raw = m->forward(bytes);
    at::Tensor loss = at::zeros({});
    for (const at::Tensor& level : raw) loss = loss + (level * at::randn(level.sizes())).sum();
    raw.clear();
    loss.backward();
    for (const auto& p : m->parameters()) {
      if (p.requires_grad()) grads[kept].push_back(p.grad().clone());
    }
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    EXPECT_TRUE(at::equal(grads[0][i], grads[1][i])) << "parameter " << i;
  }
}

}  // namespace
}  // namespace yolo
