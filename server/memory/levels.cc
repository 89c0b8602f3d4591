#include "server/memory/levels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace yolo {

const char* LevelName(Level level) {
  switch (level) {
    case Level::kOk:
      return "ok";
    case Level::kNotice:
      return "notice";
    case Level::kWarning:
      return "warning";
    case Level::kDanger:
      return "danger";
  }
  return "?";
}

const char* LevelMarker(Level level) {
  switch (level) {
    case Level::kNotice:
      return "\U0001F7E1";  // yellow circle
    case Level::kWarning:
      return "\U0001F7E0";  // orange circle
    case Level::kDanger:
      return "\U0001F534";  // red circle
    default:
      return "";
  }
}

double Thresholds::Of(Level level) const {
  switch (level) {
    case Level::kNotice:
      return notice;
    case Level::kWarning:
      return warning;
    case Level::kDanger:
      return danger;
    default:
      return 0;
  }
}

std::string Thresholds::ToString() const {
  auto pct = [](double r) { return absl::StrCat(std::round(r * 1000) / 10); };
  return absl::StrCat(pct(notice), ",", pct(warning), ",", pct(danger));
}

namespace {

absl::Status BadThresholds(absl::string_view given, absl::string_view field,
                           absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": '", given.substr(0, 40), "' ", why,
      " (three percentages for notice, warning and danger, increasing, e.g. 70,80,90)"));
}

// `given`: what the user wrote, quoted in errors.
absl::StatusOr<Thresholds> CheckPercent(double notice, double warning, double danger,
                                        absl::string_view given, absl::string_view field) {
  for (double v : {notice, warning, danger}) {
    if (!std::isfinite(v) || v <= 0 || v > 100) {
      return BadThresholds(given, field, "has a value outside (0, 100]");
    }
  }
  if (!(notice < warning && warning < danger)) {
    return BadThresholds(given, field, "is not increasing");
  }
  return Thresholds{notice / 100, warning / 100, danger / 100};
}

}  // namespace

absl::StatusOr<Thresholds> ThresholdsFromPercent(double notice, double warning, double danger,
                                                 absl::string_view field) {
  return CheckPercent(notice, warning, danger, absl::StrCat(notice, ",", warning, ",", danger),
                      field);
}

absl::StatusOr<Thresholds> ParseThresholds(absl::string_view text, absl::string_view field) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  if (parts.size() != 3) return BadThresholds(text, field, "is not three numbers");
  double v[3];
  for (int i = 0; i < 3; ++i) {
    absl::string_view p = absl::StripAsciiWhitespace(parts[i]);
    absl::ConsumeSuffix(&p, "%");
    if (!absl::SimpleAtod(p, &v[i])) return BadThresholds(text, field, "is not three numbers");
  }
  return CheckPercent(v[0], v[1], v[2], text, field);
}

Level LevelTracker::Raw(double used_ratio) const {
  if (used_ratio > thresholds_.danger) return Level::kDanger;
  if (used_ratio > thresholds_.warning) return Level::kWarning;
  if (used_ratio > thresholds_.notice) return Level::kNotice;
  return Level::kOk;
}

Level LevelTracker::Update(double used_ratio, bool stalling) {
  const Level by_use = Raw(used_ratio);
  Level raw = by_use;
  if (stalling && raw != Level::kDanger) raw = static_cast<Level>(static_cast<int>(raw) + 1);
  if (raw >= level_) {
    level_ = raw;
    boosted_ = raw > by_use;
    below_ = 0;
    return level_;
  }
  // Lower now: fall once use has stayed clearly below the current level's threshold, or the
  // stall that raised it has ended.
  const bool clearly_below =
      used_ratio < thresholds_.Of(level_) - hysteresis_.points || (boosted_ && !stalling);
  below_ = clearly_below ? below_ + 1 : 0;
  if (below_ >= hysteresis_.samples) {
    level_ = raw;
    boosted_ = raw > by_use;
    below_ = 0;
  }
  return level_;
}

}  // namespace yolo
