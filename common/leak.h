// Leak detection: a least-squares line through a run's resident memory at each epoch end. A
// slope over the threshold with a good fit over enough epochs is a suspected leak. Epoch ends,
// not peaks, so that a validation spike is not a leak. LibTorch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace yolo {

struct LeakCriteria {
  double min_bytes_per_epoch = 20e6;  // the slope that counts as growth
  double min_r2 = 0.8;                // how well a line explains it
  int min_epochs = 5;
};

struct LeakFit {
  int epochs = 0;              // points fitted
  double bytes_per_epoch = 0;  // the slope
  double r2 = 0;               // coefficient of determination, 0..1
  double last_bytes = 0;       // the fitted value at the last epoch
  bool suspected = false;
  // Epochs until `limit_bytes` at this rate (when suspected and a limit was given), else -1.
  double epochs_to_limit = -1;
};

// `rss_by_epoch`: (epoch, bytes) at each epoch end, in order. `limit_bytes` (0: none) is where
// the forecast aims, e.g. the danger threshold of the RAM limit less what others use.
LeakFit FitLeak(const std::vector<std::pair<double, double>>& rss_by_epoch,
                const LeakCriteria& criteria = {}, double limit_bytes = 0);

// "RSS grows 52.0 MB per epoch (R² 0.97 over 6 epochs); at this rate the danger level comes in
// about 40 epochs".
std::string DescribeLeak(const LeakFit& fit);

}  // namespace yolo
