#include "server/worker/train/boxes.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "server/worker/train/loss.h"

namespace yolo {
namespace {

TEST(BoxIouTest, IouAndCiouAgainstHandValues) {
  at::Tensor a = at::tensor({0.f, 0.f, 2.f, 2.f});
  at::Tensor b = at::tensor({1.f, 1.f, 3.f, 3.f});
  // IoU 1/7; CIoU subtracts rho^2/c^2 = 2/18, same aspect so v = 0.
  EXPECT_NEAR(BoxIou(a, b, false).item<float>(), 1.0 / 7, 1e-5);
  EXPECT_NEAR(BoxIou(a, b, true).item<float>(), 1.0 / 7 - 2.0 / 18, 1e-5);
  // IoU 0.5, rho^2/c^2 = 1/20, v = 4/pi^2 (atan 1 - atan 2)^2, alpha = v / (v + 0.5).
  at::Tensor c = at::tensor({0.f, 0.f, 4.f, 2.f});
  at::Tensor d = at::tensor({0.f, 0.f, 2.f, 2.f});
  const double v = 4 / (M_PI * M_PI) * std::pow(std::atan(1.0) - std::atan(2.0), 2);
  EXPECT_NEAR(BoxIou(c, d, false).item<float>(), 0.5, 1e-5);
  EXPECT_NEAR(BoxIou(c, d, true).item<float>(), 0.5 - 0.05 - v * v / (v + 0.5), 1e-5);
  // Disjoint boxes: IoU 0.
  EXPECT_NEAR(BoxIou(a, at::tensor({5.f, 5.f, 6.f, 6.f}), false).item<float>(), 0, 1e-7);
}

TEST(BoxIouTest, Broadcasts) {
  at::Tensor gts = at::tensor({0.f, 0.f, 2.f, 2.f, 1.f, 1.f, 3.f, 3.f}).view({2, 1, 4});
  at::Tensor preds =
      at::tensor({0.f, 0.f, 2.f, 2.f, 10.f, 10.f, 11.f, 11.f, 1.f, 1.f, 3.f, 3.f}).view({1, 3, 4});
  at::Tensor iou = BoxIou(gts, preds, false).squeeze(-1);
  ASSERT_EQ(iou.sizes(), (at::IntArrayRef{2, 3}));
  EXPECT_NEAR(iou[0][0].item<float>(), 1, 1e-5);
  EXPECT_NEAR(iou[1][2].item<float>(), 1, 1e-5);
  EXPECT_NEAR(iou[0][1].item<float>(), 0, 1e-6);
}

TEST(DflTest, EncodeDecodeRoundTrip) {
  at::Tensor anchors = at::tensor({5.5f, 5.5f, 10.5f, 2.5f}).view({2, 2});
  at::Tensor boxes = at::tensor({1.f, 2.f, 9.f, 12.f, 3.f, 0.f, 20.f, 7.f}).view({2, 4});
  at::Tensor dist = BoxToDist(anchors, boxes, 16);
  EXPECT_TRUE(at::allclose(DistToBox(dist, anchors), boxes, 1e-5, 1e-5));
  // A distribution with mass split between neighbouring bins decodes to its distance.
  at::Tensor d = dist.view({-1});
  at::Tensor probs = at::zeros({d.size(0), 16});
  for (int64_t i = 0; i < d.size(0); ++i) {
    const float v = d[i].item<float>();
    const int lo = static_cast<int>(std::floor(v));
    probs[i][lo] = lo + 1 - v;
    probs[i][lo + 1] = v - lo;
  }
  at::Tensor logits = (probs + 1e-12).log().view({1, 2, 64});
  at::Tensor decoded = DecodeDistances(logits, 16).view({-1});
  EXPECT_TRUE(at::allclose(decoded, d, 1e-4, 1e-4)) << decoded << d;
  // Far boxes are clamped to 14.99 cells.
  at::Tensor far = BoxToDist(at::tensor({0.5f, 0.5f}).view({1, 2}),
                             at::tensor({0.f, 0.f, 100.f, 1.f}).view({1, 4}), 16);
  EXPECT_NEAR(far[0][2].item<float>(), 14.99, 1e-5);
}

TEST(DflTest, LossIsSmallestAtTheTarget) {
  at::Tensor target = at::tensor({3.25f});
  at::Tensor good = at::full({1, 16}, -10.f);
  good[0][3] = std::log(0.75f);
  good[0][4] = std::log(0.25f);
  at::Tensor bad = at::zeros({1, 16});
  EXPECT_LT(DistributionFocalLoss(good, target).item<float>(),
            DistributionFocalLoss(bad, target).item<float>());
}

}  // namespace
}  // namespace yolo
