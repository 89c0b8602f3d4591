#include "common/leak.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "common/line_fit.h"

namespace yolo {

LeakFit FitLeak(const std::vector<std::pair<double, double>>& points, const LeakCriteria& c,
                double limit_bytes) {
  LeakFit fit;
  fit.epochs = static_cast<int>(points.size());
  if (points.size() < 2) return fit;
  std::vector<double> xs, ys;
  for (const auto& [x, y] : points) xs.push_back(x), ys.push_back(y);
  const LineFit line = FitLeastSquares(xs, ys);
  if (!line.ok) return fit;
  fit.bytes_per_epoch = line.slope;
  fit.r2 = line.r2;  // a flat line explains nothing to explain
  fit.last_bytes = line.At(points.back().first);
  fit.suspected = fit.epochs >= c.min_epochs && fit.bytes_per_epoch > c.min_bytes_per_epoch &&
                  fit.r2 >= c.min_r2;
  if (fit.suspected && limit_bytes > 0) {
    fit.epochs_to_limit = std::max(0.0, (limit_bytes - fit.last_bytes) / fit.bytes_per_epoch);
  }
  return fit;
}

std::string DescribeLeak(const LeakFit& fit) {
  std::string s = absl::StrFormat("RSS grows %.1f MB per epoch (R² %.2f over %d epochs)",
                                  fit.bytes_per_epoch / 1e6, fit.r2, fit.epochs);
  if (fit.epochs_to_limit >= 0) {
    absl::StrAppendFormat(&s, "; at this rate the danger level comes in about %.0f epochs",
                          fit.epochs_to_limit);
  }
  return s;
}

}  // namespace yolo
