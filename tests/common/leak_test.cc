#include "common/leak.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

std::vector<std::pair<double, double>> Series(double start, double per_epoch, int n,
                                              double wobble = 0) {
  std::vector<std::pair<double, double>> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(i + 1, start + per_epoch * i + (i % 2 ? wobble : -wobble));
  }
  return out;
}

TEST(LeakTest, SteadyGrowthIsASuspectedLeakWithAForecast) {
  const LeakFit fit = FitLeak(Series(1e9, 50e6, 6, 2e6), {}, /*limit_bytes=*/2e9);
  EXPECT_TRUE(fit.suspected);
  EXPECT_NEAR(fit.bytes_per_epoch, 50e6, 2e6);
  EXPECT_GT(fit.r2, 0.99);
  EXPECT_NEAR(fit.epochs_to_limit, (2e9 - 1.25e9) / 50e6, 1);
  EXPECT_NE(DescribeLeak(fit).find("per epoch"), std::string::npos);
}

TEST(LeakTest, FlatNoisyOrShortSeriesAreNot) {
  EXPECT_FALSE(FitLeak(Series(1e9, 0, 10, 30e6)).suspected);    // noise, no trend
  EXPECT_FALSE(FitLeak(Series(1e9, 5e6, 10)).suspected);        // slower than 20 MB/epoch
  EXPECT_FALSE(FitLeak(Series(1e9, 50e6, 4)).suspected);        // 4 epochs: too few
  EXPECT_FALSE(FitLeak(Series(1e9, 25e6, 8, 60e6)).suspected);  // a poor fit (R² < 0.8)
  EXPECT_FALSE(FitLeak({}).suspected);
}

TEST(LeakTest, AValidationSpikeIsNotALeak) {
  // Epoch ends flat, one of them high: a single spike does not make a line.
  auto s = Series(1e9, 0, 8);
  s[3].second += 400e6;
  EXPECT_FALSE(FitLeak(s).suspected);
}

}  // namespace
}  // namespace yolo
