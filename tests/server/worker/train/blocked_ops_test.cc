#include "server/worker/train/blocked_ops.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <vector>

namespace yolo {
namespace {

double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

TEST(BlockedOpsTest, LayoutRoundTrip) {
  const int64_t w = BlockedLayoutWidth();
  ASSERT_TRUE(w == 8 || w == 16) << w;
  at::Tensor x = at::randn({2, 32, 5, 3});
  at::Tensor b = ToBlocked(x);
  EXPECT_EQ(b.sizes(), (at::IntArrayRef{2, 32 / w, 5, 3, w}));
  EXPECT_EQ(b[1][1][4][2][3].item<float>(), x[1][w + 3][4][2].item<float>());
  EXPECT_TRUE(at::equal(FromBlocked(b), x));
}

TEST(BlockedOpsTest, UpsampleMatchesLibTorch) {
  at::Tensor x = at::randn({2, 32, 5, 3});
  at::Tensor b = ToBlocked(x).set_requires_grad(true);
  at::Tensor xr = x.clone().set_requires_grad(true);
  at::Tensor y = FromBlocked(BlockedUpsample2x(b)), ref = at::upsample_nearest2d(xr, {10, 6});
  EXPECT_TRUE(at::equal(y, ref));
  at::Tensor upstream = at::randn(ref.sizes());
  (y * upstream).sum().backward();
  (ref * upstream).sum().backward();
  EXPECT_TRUE(at::allclose(FromBlocked(b.grad()), xr.grad(), 1e-6, 1e-6));
}

// Each kind of convolution the model makes, against LibTorch's conv2d: forward and all gradients.
TEST(BlockedOpsTest, ConvolutionsMatchLibTorch) {
  if (!BlockedLayoutAvailable()) GTEST_SKIP() << "built without oneDNN or no AVX2";
  struct Case {
    int64_t c_in, c_out, k, stride;
    bool image, out_blocked, bias;
    int64_t size = 12;  // of the input map
  };
  // Channels are multiples of 16, so that every case runs in either width.
  const Case cases[] = {{3, 16, 3, 2, true, true, false},        // the first layer
                        {16, 48, 3, 1, false, true, false},      // Conv, 3x3
                        {32, 16, 3, 2, false, true, false},      // Conv, downsampling
                        {48, 32, 1, 1, false, true, false},      // Conv, 1x1
                        {32, 32, 3, 1, false, true, false, 40},  // Winograd's, on AVX-512
                        {16, 3, 1, 1, false, false, true},       // a head's last layer
                        {16, 16, 3, 1, false, true, false, 2}};  // left to LibTorch
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << c.c_in << "->" << c.c_out << " k" << c.k << " s" << c.stride);
    torch::manual_seed(2);
    at::Tensor x = at::randn({2, c.c_in, c.size, c.size});
    at::Tensor w = torch::randn({c.c_out, c.c_in, c.k, c.k}, torch::requires_grad());
    at::Tensor bias = c.bias ? torch::randn({c.c_out}, torch::requires_grad()) : at::Tensor();
    at::Tensor xb = c.image ? x.clone() : ToBlocked(x);
    xb.set_requires_grad(!c.image);
    at::Tensor y = BlockedConv2d(xb, w, bias, c.stride, c.k / 2, c.out_blocked);
    at::Tensor y_nchw = c.out_blocked ? FromBlocked(y) : y;
    at::Tensor upstream = at::randn(y_nchw.sizes());
    (y_nchw * upstream).sum().backward();
    at::Tensor gw = w.grad().clone(), gb = c.bias ? bias.grad().clone() : at::Tensor();
    w.mutable_grad().zero_();
    if (c.bias) bias.mutable_grad().zero_();

    at::Tensor xr = x.clone().set_requires_grad(!c.image);
    at::Tensor ref = at::conv2d(xr, w, bias, c.stride, c.k / 2);
    (ref * upstream).sum().backward();
    EXPECT_LT(RelativeError(y_nchw, ref), 1e-5);
    EXPECT_LT(RelativeError(gw, w.grad()), 1e-5);
    if (c.bias) {
      EXPECT_LT(RelativeError(gb, bias.grad()), 1e-5);
    }
    if (!c.image) {
      EXPECT_LT(RelativeError(FromBlocked(xb.grad()), xr.grad()), 1e-5);
    }
  }
}

// Kernels forgotten are made again: the same convolution gives the same bits afterwards.
TEST(BlockedOpsTest, ForgottenKernelsAreMadeAgain) {
  if (!BlockedLayoutAvailable()) GTEST_SKIP() << "built without oneDNN or no AVX2";
  torch::manual_seed(4);
  const at::Tensor x = ToBlocked(at::randn({2, 16, 10, 10}));
  const at::Tensor w = at::randn({32, 16, 3, 3});
  const at::Tensor before = BlockedConvForward(x, w, 1, 1);
  ForgetConvolutionKernels();
  EXPECT_TRUE(at::equal(BlockedConvForward(x, w, 1, 1), before));
}

TEST(BlockedOpsTest, BatchNormSiluMatchesLibTorch) {
  if (!BlockedLayoutAvailable()) GTEST_SKIP() << "built without oneDNN or no AVX2";
  at::Tensor z = at::randn({3, 32, 7, 5}) * 2 + 1;
  at::Tensor gamma = (at::rand({32}) + 0.5).set_requires_grad(true);
  at::Tensor beta = (at::rand({32}) - 0.5).set_requires_grad(true);
  at::Tensor rm = at::zeros({32}), rv = at::ones({32}), rm_ref = rm.clone(), rv_ref = rv.clone();
  at::Tensor zb = ToBlocked(z).set_requires_grad(true);
  at::Tensor y = FromBlocked(CpuBatchNormSilu(zb, gamma, beta, rm, rv, 0.03, 1e-3));
  at::Tensor upstream = at::randn(z.sizes());
  (y * upstream).sum().backward();
  at::Tensor gg = gamma.grad().clone(), gbeta = beta.grad().clone();
  gamma.mutable_grad().zero_();
  beta.mutable_grad().zero_();

  at::Tensor zr = z.clone().set_requires_grad(true);
  at::Tensor ref =
      at::silu(at::batch_norm(zr, gamma, beta, rm_ref, rv_ref, true, 0.03, 1e-3, false));
  (ref * upstream).sum().backward();
  EXPECT_LT(RelativeError(y, ref), 1e-5);
  EXPECT_TRUE(at::allclose(rm, rm_ref, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(rv, rv_ref, 1e-5, 1e-6));
  // Backward works from the normalised input kept in bfloat16: agreement to parts per thousand.
  EXPECT_LT(RelativeError(FromBlocked(zb.grad()), zr.grad()), 3e-3);
  EXPECT_LT(RelativeError(gg, gamma.grad()), 1e-2);
  EXPECT_LT(RelativeError(gbeta, beta.grad()), 3e-3);
}

}  // namespace
}  // namespace yolo
