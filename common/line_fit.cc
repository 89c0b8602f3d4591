#include "common/line_fit.h"

#include <algorithm>

namespace yolo {

LineFit FitLeastSquares(const std::vector<double>& x, const std::vector<double>& y) {
  LineFit fit;
  const size_t n = std::min(x.size(), y.size());
  if (n == 0) return fit;
  for (size_t i = 0; i < n; ++i) fit.mean_x += x[i], fit.mean_y += y[i];
  fit.mean_x /= static_cast<double>(n), fit.mean_y /= static_cast<double>(n);
  double sxx = 0, sxy = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    const double dx = x[i] - fit.mean_x, dy = y[i] - fit.mean_y;
    sxx += dx * dx, sxy += dx * dy, syy += dy * dy;
  }
  fit.intercept = fit.mean_y;
  if (sxx <= 0) return fit;
  fit.ok = true;
  fit.slope = sxy / sxx;
  fit.intercept = fit.mean_y - fit.slope * fit.mean_x;
  fit.r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 0;
  return fit;
}

}  // namespace yolo
