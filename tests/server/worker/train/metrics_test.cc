#include "server/worker/train/metrics.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

TEST(AveragePrecisionTest, PerfectDetectorIsPoint995) {
  // Ultralytics' 101-point trapezoid gives 0.995 for a perfect curve (y(1) = 0).
  EXPECT_NEAR(AveragePrecision({1.0}, {1.0}), 0.995, 1e-9);
}

TEST(AveragePrecisionTest, HandComputedCurve) {
  // Two labels; ranked predictions TP, FP, TP.
  // Envelope: precision 1 up to recall 0.5, then 2/3; y(1) = 0 by the sentinel.
  // 0.49 + (1 + 2/3)/2 * 0.01 + 49 * 2/3 * 0.01 + (2/3)/2 * 0.01 = 0.8283333
  EXPECT_NEAR(AveragePrecision({0.5, 0.5, 1.0}, {1.0, 0.5, 2.0 / 3}), 0.8283333, 1e-6);
}

TEST(AveragePrecisionTest, NothingFoundIsZero) {
  EXPECT_NEAR(AveragePrecision({0.0, 0.0}, {0.0, 0.0}), 0.0, 1e-9);
}

TEST(MatchTest, GreedyOneToOnePerThreshold) {
  std::vector<GroundTruth> gts = {{0, 0, 10, 10, 0}, {20, 20, 30, 30, 1}};
  std::vector<Detection> preds = {
      {0, 0, 10, 10, 0.9f, 0},       // exact: TP at every threshold
      {0, 0, 10, 10, 0.8f, 0},       // duplicate: FP
      {20, 20, 30, 29.2f, 0.7f, 1},  // IoU 0.92: TP up to 0.90
      {20, 20, 30, 30, 0.6f, 0},     // wrong class: FP
  };
  auto c = MatchPredictions(preds, gts);
  for (int t = 0; t < kIouThresholds; ++t) {
    EXPECT_TRUE(c[0][t]);
    EXPECT_FALSE(c[1][t]);
    EXPECT_FALSE(c[3][t]);
  }
  EXPECT_TRUE(c[2][8]);   // 0.90
  EXPECT_FALSE(c[2][9]);  // 0.95
}

TEST(DetectionMetricsTest, PerfectPredictionsGiveFullMetrics) {
  DetectionMetrics m(2);
  m.AddImage({{0, 0, 10, 10, 0.9f, 0}, {20, 20, 30, 30, 0.8f, 1}},
             {{0, 0, 10, 10, 0}, {20, 20, 30, 30, 1}});
  m.AddImage({}, {});
  MetricsSummary s = m.Compute();
  EXPECT_EQ(s.images, 2);
  EXPECT_EQ(s.instances, 2);
  EXPECT_NEAR(s.map50, 0.995, 1e-9);
  EXPECT_NEAR(s.map, 0.995, 1e-9);
  EXPECT_NEAR(s.precision, 1.0, 1e-9);
  EXPECT_NEAR(s.recall, 1.0, 1e-9);
  EXPECT_NEAR(s.Fitness(), 0.995, 1e-9);
}

TEST(DetectionMetricsTest, MissedClassCountsAsZero) {
  DetectionMetrics m(2);
  m.AddImage({{0, 0, 10, 10, 0.9f, 0}}, {{0, 0, 10, 10, 0}, {20, 20, 30, 30, 1}});
  MetricsSummary s = m.Compute();
  ASSERT_EQ(s.per_class.size(), 2u);
  EXPECT_NEAR(s.per_class[1].ap, 0.0, 1e-12);
  EXPECT_EQ(s.per_class[1].images, 1);
  EXPECT_EQ(s.per_class[1].labels, 1);
  EXPECT_NEAR(s.map50, 0.995 / 2, 1e-9);
}

}  // namespace
}  // namespace yolo
