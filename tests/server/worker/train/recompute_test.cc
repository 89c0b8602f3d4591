#include "server/worker/train/recompute.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <optional>
#include <vector>

#include "server/worker/train/blocked_ops.h"

namespace yolo {
namespace {

using WeakTensor = c10::weak_intrusive_ptr<c10::TensorImpl>;

bool Recomputing() {
  return BlockedLayoutAvailable() && RecomputeEnabled() && !FusedBatchNormKeepsBf16();
}

// Parameters of one fused BatchNorm+SiLU with `c` channels.
struct Norm {
  explicit Norm(int64_t c)
      : gamma((at::rand({c}) + 0.5).set_requires_grad(true)),
        beta((at::rand({c}) - 0.5).set_requires_grad(true)),
        mean(at::zeros({c})),
        var(at::ones({c})) {}
  at::Tensor operator()(const at::Tensor& z) {
    return CpuBatchNormSilu(z, gamma, beta, mean, var, 0.03, 1e-3);
  }
  at::Tensor gamma, beta, mean, var;
};

std::vector<at::Tensor> Gradients(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> grads;
  for (const at::Tensor& t : tensors) {
    grads.push_back(t.grad().clone());
    t.mutable_grad().reset();
  }
  return grads;
}

void ExpectEqual(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << "gradient " << i;
}

// A convolution whose input is a BatchNorm+SiLU output rebuilds that input from x̂ for its
// weight gradient: the same gradients, bit for bit, as with the input kept, and nothing keeps
// the output.
TEST(RecomputeTest, BatchNormOutputIsRebuiltWithTheSameGradients) {
  if (!Recomputing()) GTEST_SKIP() << "no blocked layout, or recomputing switched off";
  const int64_t c = 2 * BlockedLayoutWidth();
  at::manual_seed(3);
  const at::Tensor z0 = ToBlocked(at::randn({2, c, 9, 7}));
  Norm norm(c);
  const at::Tensor weight = (at::randn({c, c, 3, 3}) * 0.1).set_requires_grad(true);
  const at::Tensor upstream = at::randn({2, c, 9, 7});
  std::vector<at::Tensor> grads[2];
  for (int kept = 0; kept < 2; ++kept) {
    std::optional<NoRecomputeScope> no_recompute;
    if (kept == 1) no_recompute.emplace();
    const at::Tensor z = z0.clone().set_requires_grad(true);
    at::Tensor loss;
    std::optional<WeakTensor> output;
    {
      at::Tensor y = norm(z);
      output.emplace(y.getIntrusivePtr());
      at::Tensor out = BlockedConv2d(y, weight, {}, 1, 1, /*out_blocked=*/true);
      loss = (FromBlocked(out) * upstream).sum();
    }
    EXPECT_EQ(output->expired(), kept == 0);  // kept for backward only when not rebuilt
    loss.backward();
    grads[kept] = Gradients({weight, norm.gamma, norm.beta, z});
  }
  ExpectEqual(grads[0], grads[1]);
}

// C2f's and the neck's shapes: chunks of a BatchNorm output, a residual sum, an upsampled
// output and their concatenation, which a 1x1 convolution takes. Rebuilt in backward, with
// the gradients of the inputs kept, and neither the sum nor the concatenation is kept.
TEST(RecomputeTest, ConcatenationsOfChunksSumsAndUpsamplesAreRebuilt) {
  if (!Recomputing()) GTEST_SKIP() << "no blocked layout, or recomputing switched off";
  const int64_t w = BlockedLayoutWidth();
  at::manual_seed(5);
  const at::Tensor z1_0 = ToBlocked(at::randn({2, 2 * w, 8, 6}));
  const at::Tensor z3_0 = ToBlocked(at::randn({2, w, 4, 3}));
  Norm n1(2 * w), n2(w), n3(w);
  const at::Tensor w2 = (at::randn({w, w, 3, 3}) * 0.1).set_requires_grad(true);
  const at::Tensor w4 = (at::randn({w, 4 * w, 1, 1}) * 0.1).set_requires_grad(true);
  const at::Tensor upstream = at::randn({2, w, 8, 6});
  std::vector<at::Tensor> grads[2];
  for (int kept = 0; kept < 2; ++kept) {
    std::optional<NoRecomputeScope> no_recompute;
    if (kept == 1) no_recompute.emplace();
    const at::Tensor z1 = z1_0.clone().set_requires_grad(true);
    const at::Tensor z3 = z3_0.clone().set_requires_grad(true);
    at::Tensor loss;
    std::optional<WeakTensor> sum, cat;
    {
      const std::vector<at::Tensor> halves = ChunkChannels(n1(z1), 2);
      const at::Tensor y2 = n2(BlockedConv2d(halves[1], w2, {}, 1, 1, /*out_blocked=*/true));
      const at::Tensor s = AddActivations(halves[1], y2);
      const at::Tensor up = BlockedUpsample2x(n3(z3));
      const at::Tensor all = ConcatChannels({halves[0], halves[1], s, up});
      sum.emplace(s.getIntrusivePtr());
      cat.emplace(all.getIntrusivePtr());
      loss = (FromBlocked(BlockedConv2d(all, w4, {}, 1, 0, /*out_blocked=*/true)) * upstream).sum();
    }
    EXPECT_EQ(cat->expired(), kept == 0);
    EXPECT_TRUE(sum->expired());  // the concatenation copied it; no convolution took it
    loss.backward();
    grads[kept] =
        Gradients({w2, w4, n1.gamma, n1.beta, n2.gamma, n2.beta, n3.gamma, n3.beta, z1, z3});
  }
  ExpectEqual(grads[0], grads[1]);
}

// An output changed in place after it was recorded is kept as it is, never rebuilt from x̂.
TEST(RecomputeTest, AnOutputChangedInPlaceIsKept) {
  if (!Recomputing()) GTEST_SKIP() << "no blocked layout, or recomputing switched off";
  const int64_t c = BlockedLayoutWidth();
  at::manual_seed(7);
  const at::Tensor z0 = ToBlocked(at::randn({2, c, 5, 5}));
  Norm norm(c);
  const at::Tensor weight = (at::randn({c, 2 * c, 1, 1}) * 0.1).set_requires_grad(true);
  std::vector<at::Tensor> grads[2];
  for (int kept = 0; kept < 2; ++kept) {
    std::optional<NoRecomputeScope> no_recompute;
    if (kept == 1) no_recompute.emplace();
    const at::Tensor z = z0.clone().set_requires_grad(true);
    at::Tensor y = norm(z);
    const at::Tensor y2 = norm(z * 2);
    {
      at::NoGradGuard no_grad;
      y2.mul_(3);  // BatchNorm's backward does not read its output
    }
    const at::Tensor all = ConcatChannels({y, y2});
    FromBlocked(BlockedConv2d(all, weight, {}, 1, 0, /*out_blocked=*/true)).sum().backward();
    grads[kept] = Gradients({weight, norm.gamma, norm.beta, z});
  }
  ExpectEqual(grads[0], grads[1]);
}

// A convolution+BatchNorm+SiLU that keeps neither its output nor x̂ (the stem from the image,
// and a 1x1 convolution of a blocked output): the convolution runs again in backward, for
// consumers that take the output whole and in chunks, and the gradients are those of the two
// steps with everything kept, bit for bit. The image, scaled from bytes, is not kept either:
// the bytes are.
TEST(RecomputeTest, ConvolutionOutputsAreRebuiltByRunningTheConvolutionAgain) {
  if (!Recomputing()) GTEST_SKIP() << "no blocked layout, or recomputing switched off";
  const int64_t w = BlockedLayoutWidth();
  at::manual_seed(9);
  const at::Tensor bytes = at::randint(0, 256, {2, 3, 16, 12}, at::TensorOptions(at::kByte));
  Norm n0(2 * w), n1(2 * w), n2(w);
  const at::Tensor w0 = (at::randn({2 * w, 3, 3, 3}) * 0.3).set_requires_grad(true);
  const at::Tensor w1 = (at::randn({2 * w, 2 * w, 1, 1}) * 0.2).set_requires_grad(true);
  const at::Tensor w2 = (at::randn({w, w, 3, 3}) * 0.1).set_requires_grad(true);
  const at::Tensor w3 = (at::randn({w, 3 * w, 1, 1}) * 0.1).set_requires_grad(true);
  const at::Tensor upstream = at::randn({2, w, 8, 6});
  std::vector<at::Tensor> grads[2];
  for (int kept = 0; kept < 2; ++kept) {
    std::optional<NoRecomputeScope> no_recompute;
    if (kept == 1) no_recompute.emplace();
    at::Tensor loss;
    std::optional<WeakTensor> stem, input;
    {
      const at::Tensor image = ScaleBytes(bytes);
      input.emplace(image.getIntrusivePtr());
      const at::Tensor y0 = BlockedConvBatchNormSilu(image, w0, n0.gamma, n0.beta, n0.mean, n0.var,
                                                     /*stride=*/2, /*padding=*/1, 0.03, 1e-3);
      stem.emplace(y0.getIntrusivePtr());
      const at::Tensor y1 =
          BlockedConvBatchNormSilu(y0, w1, n1.gamma, n1.beta, n1.mean, n1.var, 1, 0, 0.03, 1e-3);
      const std::vector<at::Tensor> halves = ChunkChannels(y1, 2);
      const at::Tensor y2 = n2(BlockedConv2d(halves[1], w2, {}, 1, 1, /*out_blocked=*/true));
      const at::Tensor all = ConcatChannels({halves[0], halves[1], y2});
      const at::Tensor out = BlockedConv2d(all, w3, {}, 1, 0, /*out_blocked=*/true);
      loss = (FromBlocked(out) * upstream).sum();
    }
    EXPECT_EQ(stem->expired(), kept == 0);
    EXPECT_EQ(input->expired(), kept == 0);
    loss.backward();
    grads[kept] =
        Gradients({w0, w1, w2, w3, n0.gamma, n0.beta, n1.gamma, n1.beta, n2.gamma, n2.beta});
  }
  ExpectEqual(grads[0], grads[1]);
}

}  // namespace
}  // namespace yolo
