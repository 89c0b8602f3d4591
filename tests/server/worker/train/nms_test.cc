#include "server/worker/train/nms.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace yolo {
namespace {

// Builds a (4 + nc, A) prediction tensor from rows of (cx, cy, w, h, scores...).
at::Tensor Pred(const std::vector<std::vector<float>>& rows) {
  std::vector<float> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  const int64_t cols = static_cast<int64_t>(rows[0].size());
  return at::tensor(flat).view({static_cast<int64_t>(rows.size()), cols}).t().contiguous();
}

TEST(NmsTest, SuppressesOverlapsOfTheSameClassOnly) {
  at::Tensor p = Pred({
      {50, 50, 20, 20, 0.9f, 0.0f},    // kept
      {51, 50, 20, 20, 0.8f, 0.0f},    // IoU ~0.9 with the first: suppressed
      {51, 50, 20, 20, 0.0f, 0.7f},    // other class: kept
      {150, 150, 20, 20, 0.6f, 0.0f},  // far away: kept
      {10, 10, 5, 5, 0.0005f, 0.0f},   // under conf: dropped
  });
  std::vector<Detection> d = NonMaxSuppression(p, NmsOptions{});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_FLOAT_EQ(d[0].conf, 0.9f);
  EXPECT_FLOAT_EQ(d[0].x1, 40);
  EXPECT_FLOAT_EQ(d[0].y2, 60);
  EXPECT_EQ(d[1].cls, 1);
  EXPECT_FLOAT_EQ(d[2].conf, 0.6f);
}

TEST(NmsTest, MultiLabelAgnosticAndMaxDet) {
  at::Tensor p = Pred({{50, 50, 20, 20, 0.9f, 0.5f}, {52, 50, 20, 20, 0.3f, 0.8f}});
  EXPECT_EQ(NonMaxSuppression(p, NmsOptions{}).size(), 2u);  // one per class survives
  NmsOptions agnostic;
  agnostic.agnostic = true;
  EXPECT_EQ(NonMaxSuppression(p, agnostic).size(), 1u);
  NmsOptions one;
  one.max_det = 1;
  EXPECT_EQ(NonMaxSuppression(p, one).size(), 1u);
}

}  // namespace
}  // namespace yolo
