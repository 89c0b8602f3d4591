#include "server/memory/levels.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

TEST(LevelsTest, ParsesPercentagesAndRefusesBadOnes) {
  auto t = ParseThresholds("70,80,90", "--ram-levels");
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ(t->notice, 0.7);
  EXPECT_DOUBLE_EQ(t->danger, 0.9);
  EXPECT_EQ(t->ToString(), "70,80,90");
  EXPECT_TRUE(ParseThresholds("60.5, 70%, 99", "ram").ok());
  for (const char* bad : {"80,70,90", "70,80", "0,50,90", "70,80,101", "a,b,c", "70,80,nan"}) {
    auto r = ParseThresholds(bad, "--gpu-levels");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--gpu-levels"), std::string::npos) << bad;
  }
}

TEST(LevelsTest, RisesAtOnceAboveEachThreshold) {
  LevelTracker t(kDefaultRamThresholds);
  EXPECT_EQ(t.Update(0.50), Level::kOk);
  EXPECT_EQ(t.Update(0.71), Level::kNotice);
  EXPECT_EQ(t.Update(0.85), Level::kWarning);
  EXPECT_EQ(t.Update(0.95), Level::kDanger);
}

TEST(LevelsTest, FallsOnlyAfterHysteresis) {
  LevelTracker t(kDefaultRamThresholds, Hysteresis{0.05, 3});
  ASSERT_EQ(t.Update(0.82), Level::kWarning);
  // Just below 80 %: within the 5 points of hysteresis, it stays.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t.Update(0.78), Level::kWarning);
  // Clearly below, but for two samples only, then back up: it stays.
  EXPECT_EQ(t.Update(0.60), Level::kWarning);
  EXPECT_EQ(t.Update(0.60), Level::kWarning);
  EXPECT_EQ(t.Update(0.78), Level::kWarning);
  // Three in a row: it falls to where use is.
  EXPECT_EQ(t.Update(0.60), Level::kWarning);
  EXPECT_EQ(t.Update(0.60), Level::kWarning);
  EXPECT_EQ(t.Update(0.60), Level::kOk);
}

TEST(LevelsTest, StallingRaisesTheLevelByOne) {
  LevelTracker t(kDefaultRamThresholds, Hysteresis{0.05, 2});
  EXPECT_EQ(t.Update(0.50, /*stalling=*/true), Level::kNotice);
  EXPECT_EQ(t.Update(0.85, /*stalling=*/true), Level::kDanger);
  EXPECT_EQ(LevelTracker().Update(0.95, /*stalling=*/true), Level::kDanger);  // none above
  // The stall ends: back to what use says once the hysteresis has passed.
  EXPECT_EQ(t.Update(0.85), Level::kDanger);
  EXPECT_EQ(t.Update(0.85), Level::kWarning);
}

TEST(LevelsTest, NewThresholdsApplyAtTheNextSample) {
  LevelTracker t(kDefaultRamThresholds);
  EXPECT_EQ(t.Update(0.40), Level::kOk);
  t.set_thresholds({0.10, 0.20, 0.30});
  EXPECT_EQ(t.Update(0.40), Level::kDanger);
}

}  // namespace
}  // namespace yolo
