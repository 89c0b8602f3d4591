// Detection metrics as Ultralytics computes them: greedy matching at IoU 0.50:0.95, AP by
// 101-point interpolation of the precision envelope, P and R at the conf of best mean F1, and
// fitness = 0.1 mAP50 + 0.9 mAP50-95. LibTorch-free.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace yolo {

constexpr int kIouThresholds = 10;  // 0.50, 0.55, ..., 0.95

struct Detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float conf = 0;
  int cls = 0;
};

struct GroundTruth {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int cls = 0;
};

double IouXyxy(float ax1, float ay1, float ax2, float ay2, float bx1, float by1, float bx2,
               float by2);

// For each prediction, whether it is a true positive at each IoU threshold: pairs of equal
// class with IoU >= threshold, each prediction taking its best-overlapping label, each label
// then its first (highest-ranked) prediction.
std::vector<std::array<bool, kIouThresholds>> MatchPredictions(
    const std::vector<Detection>& preds, const std::vector<GroundTruth>& labels);

// Area under the precision envelope, sampled at 101 recall points, by the trapezoid rule.
// `recall` and `precision` are cumulative curves in descending-confidence order.
double AveragePrecision(const std::vector<double>& recall, const std::vector<double>& precision);

struct ClassMetrics {
  int cls = 0;
  int images = 0;  // images with at least one label of this class
  int labels = 0;
  double precision = 0, recall = 0, ap50 = 0, ap = 0;
};

struct MetricsSummary {
  double precision = 0, recall = 0, map50 = 0, map = 0;
  int images = 0, instances = 0;
  std::vector<ClassMetrics> per_class;  // classes present in the labels
  double Fitness() const { return 0.1 * map50 + 0.9 * map; }
};

// Accumulates images, then computes the summary.
class DetectionMetrics {
 public:
  explicit DetectionMetrics(int nc) : nc_(nc), images_with_class_(nc, 0) {}
  void AddImage(const std::vector<Detection>& preds, const std::vector<GroundTruth>& labels);
  MetricsSummary Compute() const;

 private:
  int nc_;
  int images_ = 0;
  std::vector<std::array<bool, kIouThresholds>> correct_;
  std::vector<float> conf_;
  std::vector<int> pred_cls_;
  std::vector<int> label_cls_;
  std::vector<int> images_with_class_;
};

}  // namespace yolo
