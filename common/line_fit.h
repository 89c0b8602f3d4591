// A least-squares line, the one fit behind the watchdog's trend, leak detection and the
// pre-flight memory estimate. LibTorch-free.
#pragma once

#include <vector>

namespace yolo {

struct LineFit {
  double intercept = 0, slope = 0;
  double r2 = 0;  // coefficient of determination, 0..1; 0 when y does not vary
  double mean_x = 0, mean_y = 0;
  bool ok = false;  // at least two distinct x
  double At(double x) const { return intercept + slope * x; }
};

// Through (x[i], y[i]) for the pairs both vectors have.
LineFit FitLeastSquares(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace yolo
