#include "server/memory/leak.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace yolo {

LeakFit FitLeak(const std::vector<std::pair<double, double>>& points, const LeakCriteria& c,
                double limit_bytes) {
  LeakFit fit;
  fit.epochs = static_cast<int>(points.size());
  if (points.size() < 2) return fit;
  double n = 0, sx = 0, sy = 0;
  for (const auto& [x, y] : points) n += 1, sx += x, sy += y;
  const double mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0, syy = 0;
  for (const auto& [x, y] : points) {
    sxx += (x - mx) * (x - mx);
    sxy += (x - mx) * (y - my);
    syy += (y - my) * (y - my);
  }
  if (sxx <= 0) return fit;
  fit.bytes_per_epoch = sxy / sxx;
  fit.r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 0;  // a flat line explains nothing to explain
  fit.last_bytes = my + fit.bytes_per_epoch * (points.back().first - mx);
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
