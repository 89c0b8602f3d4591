// Memory levels: ok / notice / warning / danger, from a used ratio and thresholds, with
// hysteresis so that a level does not flap. LibTorch-free; not thread-safe (the watchdog owns
// its trackers).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace yolo {

enum class Level { kOk = 0, kNotice = 1, kWarning = 2, kDanger = 3 };
const char* LevelName(Level level);    // "ok", "notice", "warning", "danger"
const char* LevelMarker(Level level);  // the memory guide's markers: "", 🟡, 🟠, 🔴

// The used ratios (0..1) above which each level starts; notice < warning < danger.
struct Thresholds {
  double notice = 0.7, warning = 0.8, danger = 0.9;
  double Of(Level level) const;  // the threshold that starts `level` (0 for ok)
  std::string ToString() const;  // "70,80,90"
};
inline constexpr Thresholds kDefaultRamThresholds{0.70, 0.80, 0.90};
inline constexpr Thresholds kDefaultGpuThresholds{0.80, 0.90, 0.95};

// "70,80,90" (percent, increasing, each in (0, 100]); `field` names the setting in errors.
absl::StatusOr<Thresholds> ParseThresholds(absl::string_view text, absl::string_view field);
// The same check for three percentages already read as numbers.
absl::StatusOr<Thresholds> ThresholdsFromPercent(double notice, double warning, double danger,
                                                 absl::string_view field);

struct Hysteresis {
  double points = 0.05;  // a level falls only once use is this far (ratio) below its threshold
  int samples = 3;       // for this many samples in a row
};

class LevelTracker {
 public:
  explicit LevelTracker(Thresholds thresholds = {}, Hysteresis hysteresis = {})
      : thresholds_(thresholds), hysteresis_(hysteresis) {}
  // One sample: `used_ratio` of the limit; `stalling` raises the level by one (PSI "full" above
  // its bound: a host that stalls on memory is in trouble before it is full). A level rises
  // at once and falls after the hysteresis. Returns the level now.
  Level Update(double used_ratio, bool stalling = false);
  Level level() const { return level_; }
  void set_thresholds(Thresholds t) { thresholds_ = t; }
  const Thresholds& thresholds() const { return thresholds_; }

 private:
  Level Raw(double used_ratio) const;
  Thresholds thresholds_;
  Hysteresis hysteresis_;
  Level level_ = Level::kOk;
  bool boosted_ = false;  // the level came from a stall, not from use alone
  int below_ = 0;         // samples in a row that allow a fall
};

}  // namespace yolo
