#include "server/worker/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace yolo {
namespace {

constexpr double kEps = 1e-16;

// numpy.interp: xp increasing; left/right values outside the range.
double Interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left,
              double right) {
  if (xp.empty()) return left;
  if (x < xp.front()) return left;
  if (x > xp.back()) return right;
  if (x == xp.back()) return fp.back();
  // Last j with xp[j] <= x; then xp[j] <= x < xp[j + 1].
  size_t j = static_cast<size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  const double dx = xp[j + 1] - xp[j];
  if (dx == 0) return fp[j];
  return fp[j] + (x - xp[j]) * (fp[j + 1] - fp[j]) / dx;
}

// Box filter of a fraction f of the length, padding with the end values.
std::vector<double> Smooth(const std::vector<double>& y, double f) {
  const int nf = static_cast<int>(std::lround(y.size() * f * 2)) / 2 + 1;
  const int half = nf / 2;
  std::vector<double> padded(half, y.front());
  padded.insert(padded.end(), y.begin(), y.end());
  padded.insert(padded.end(), half, y.back());
  std::vector<double> out(padded.size() - nf + 1);
  for (size_t i = 0; i < out.size(); ++i) {
    double s = 0;
    for (int k = 0; k < nf; ++k) s += padded[i + k];
    out[i] = s / nf;
  }
  return out;
}

}  // namespace

double IouXyxy(float ax1, float ay1, float ax2, float ay2, float bx1, float by1, float bx2,
               float by2) {
  const double iw = std::max(0.0f, std::min(ax2, bx2) - std::max(ax1, bx1));
  const double ih = std::max(0.0f, std::min(ay2, by2) - std::max(ay1, by1));
  const double inter = iw * ih;
  const double area_a = static_cast<double>(ax2 - ax1) * (ay2 - ay1);
  const double area_b = static_cast<double>(bx2 - bx1) * (by2 - by1);
  return inter / (area_a + area_b - inter + 1e-7);
}

std::vector<std::array<bool, kIouThresholds>> MatchPredictions(
    const std::vector<Detection>& preds, const std::vector<GroundTruth>& labels) {
  std::vector<std::array<bool, kIouThresholds>> correct(preds.size());
  for (auto& row : correct) row.fill(false);
  if (preds.empty() || labels.empty()) return correct;
  std::vector<double> iou(labels.size() * preds.size(), 0.0);
  for (size_t l = 0; l < labels.size(); ++l) {
    for (size_t p = 0; p < preds.size(); ++p) {
      if (labels[l].cls != preds[p].cls) continue;
      iou[l * preds.size() + p] = IouXyxy(labels[l].x1, labels[l].y1, labels[l].x2, labels[l].y2,
                                          preds[p].x1, preds[p].y1, preds[p].x2, preds[p].y2);
    }
  }
  for (int t = 0; t < kIouThresholds; ++t) {
    const double thr = 0.5 + 0.05 * t;
    // Each prediction's best label at or above the threshold.
    std::vector<int> best_label(preds.size(), -1);
    std::vector<double> best_iou(preds.size(), -1);
    for (size_t l = 0; l < labels.size(); ++l) {
      for (size_t p = 0; p < preds.size(); ++p) {
        const double v = iou[l * preds.size() + p];
        if (v >= thr - 1e-12 && v > best_iou[p]) {
          best_iou[p] = v;
          best_label[p] = static_cast<int>(l);
        }
      }
    }
    // Each label keeps the first prediction (in rank order) that chose it.
    std::vector<bool> taken(labels.size(), false);
    for (size_t p = 0; p < preds.size(); ++p) {
      if (best_label[p] < 0 || taken[best_label[p]]) continue;
      taken[best_label[p]] = true;
      correct[p][t] = true;
    }
  }
  return correct;
}

double AveragePrecision(const std::vector<double>& recall, const std::vector<double>& precision) {
  std::vector<double> mrec = {0.0}, mpre = {1.0};
  mrec.insert(mrec.end(), recall.begin(), recall.end());
  mpre.insert(mpre.end(), precision.begin(), precision.end());
  mrec.push_back(1.0);
  mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);
  constexpr int kPoints = 101;
  double ap = 0, prev = 0;
  for (int i = 0; i < kPoints; ++i) {
    const double x = i / 100.0;
    const double y = Interp(x, mrec, mpre, mpre.front(), mpre.back());
    if (i > 0) ap += (y + prev) / 2 * 0.01;
    prev = y;
  }
  return ap;
}

void DetectionMetrics::AddImage(const std::vector<Detection>& preds,
                                const std::vector<GroundTruth>& labels) {
  ++images_;
  auto correct = MatchPredictions(preds, labels);
  for (size_t i = 0; i < preds.size(); ++i) {
    correct_.push_back(correct[i]);
    conf_.push_back(preds[i].conf);
    pred_cls_.push_back(preds[i].cls);
  }
  std::vector<bool> seen(nc_, false);
  for (const auto& l : labels) {
    label_cls_.push_back(l.cls);
    if (l.cls >= 0 && l.cls < nc_) seen[l.cls] = true;
  }
  for (int c = 0; c < nc_; ++c) images_with_class_[c] += seen[c] ? 1 : 0;
}

MetricsSummary DetectionMetrics::Compute() const {
  MetricsSummary summary;
  summary.images = images_;
  summary.instances = static_cast<int>(label_cls_.size());
  std::vector<int> order(conf_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return conf_[a] > conf_[b]; });

  std::vector<int> label_count(nc_, 0);
  for (int c : label_cls_) {
    if (c >= 0 && c < nc_) label_count[c]++;
  }
  constexpr int kCurvePoints = 1000;
  std::vector<double> px(kCurvePoints), neg_px(kCurvePoints);
  for (int i = 0; i < kCurvePoints; ++i) {
    px[i] = static_cast<double>(i) / (kCurvePoints - 1);
    neg_px[i] = -px[i];
  }
  std::vector<std::vector<double>> p_curves, r_curves;
  for (int c = 0; c < nc_; ++c) {
    if (label_count[c] == 0) continue;
    ClassMetrics cm;
    cm.cls = c;
    cm.labels = label_count[c];
    cm.images = images_with_class_[c];
    std::vector<double> neg_conf;
    std::vector<std::vector<double>> rec(kIouThresholds), prec(kIouThresholds);
    std::array<double, kIouThresholds> tpc{}, fpc{};
    for (int idx : order) {
      if (pred_cls_[idx] != c) continue;
      neg_conf.push_back(-conf_[idx]);
      for (int t = 0; t < kIouThresholds; ++t) {
        tpc[t] += correct_[idx][t] ? 1 : 0;
        fpc[t] += correct_[idx][t] ? 0 : 1;
        rec[t].push_back(tpc[t] / (label_count[c] + kEps));
        prec[t].push_back(tpc[t] / (tpc[t] + fpc[t]));
      }
    }
    std::vector<double> p(kCurvePoints, 0.0), r(kCurvePoints, 0.0);
    if (!neg_conf.empty()) {
      for (int i = 0; i < kCurvePoints; ++i) {
        r[i] = Interp(neg_px[i], neg_conf, rec[0], 0.0, rec[0].back());
        p[i] = Interp(neg_px[i], neg_conf, prec[0], 1.0, prec[0].back());
      }
      double sum = 0;
      for (int t = 0; t < kIouThresholds; ++t) {
        const double ap = AveragePrecision(rec[t], prec[t]);
        if (t == 0) cm.ap50 = ap;
        sum += ap;
      }
      cm.ap = sum / kIouThresholds;
    }
    p_curves.push_back(p);
    r_curves.push_back(r);
    summary.per_class.push_back(cm);
  }
  if (summary.per_class.empty()) return summary;
  // One confidence for all classes: the argmax of the smoothed mean F1.
  std::vector<double> mean_f1(kCurvePoints, 0.0);
  for (size_t k = 0; k < p_curves.size(); ++k) {
    for (int i = 0; i < kCurvePoints; ++i) {
      const double p = p_curves[k][i], r = r_curves[k][i];
      mean_f1[i] += 2 * p * r / (p + r + kEps) / p_curves.size();
    }
  }
  std::vector<double> smooth = Smooth(mean_f1, 0.1);
  const int best =
      static_cast<int>(std::max_element(smooth.begin(), smooth.end()) - smooth.begin());
  for (size_t k = 0; k < summary.per_class.size(); ++k) {
    ClassMetrics& cm = summary.per_class[k];
    cm.precision = p_curves[k][best];
    cm.recall = r_curves[k][best];
    summary.precision += cm.precision / summary.per_class.size();
    summary.recall += cm.recall / summary.per_class.size();
    summary.map50 += cm.ap50 / summary.per_class.size();
    summary.map += cm.ap / summary.per_class.size();
  }
  return summary;
}

}  // namespace yolo
