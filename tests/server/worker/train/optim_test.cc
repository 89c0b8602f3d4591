#include "server/worker/train/optim.h"

#include <gtest/gtest.h>

#include "server/worker/train/rounding.h"

namespace yolo {
namespace {

TEST(RoundingTest, HalvesGoToTheEvenNeighbour) {
  EXPECT_EQ(RoundHalfEven(0.5), 0);
  EXPECT_EQ(RoundHalfEven(1.5), 2);
  EXPECT_EQ(RoundHalfEven(2.5), 2);
  EXPECT_EQ(RoundHalfEven(3.5), 4);
  EXPECT_EQ(RoundHalfEven(-2.5), -2);
  EXPECT_EQ(RoundHalfEven(2.4999), 2);
  EXPECT_EQ(RoundHalfEven(2.5001), 3);
  EXPECT_EQ(RoundHalfEven(7.0), 7);
}

TEST(OptimTest, AccumulationCountRisesDuringWarmupRoundedAsNumpyDoes) {
  // batch 16, nbs 64: 1 -> 4 over 100 warmup iterations, then 4.
  EXPECT_EQ(AccumulateCount(0, 100, 64, 16), 1);
  EXPECT_EQ(AccumulateCount(50, 100, 64, 16), 2);  // 2.5 rounds to 2, not 3
  EXPECT_EQ(AccumulateCount(51, 100, 64, 16), 3);  // 2.53
  EXPECT_EQ(AccumulateCount(100, 100, 64, 16), 4);
  EXPECT_EQ(AccumulateCount(5000, 100, 64, 16), 4);
  // No warmup: nbs / batch straight away; 64 / 50 = 1.28 -> 1; 64 / 128 -> at least 1.
  EXPECT_EQ(AccumulateCount(0, -1, 64, 16), 4);
  EXPECT_EQ(AccumulateCount(0, -1, 64, 50), 1);
  EXPECT_EQ(AccumulateCount(0, -1, 64, 128), 1);
  // nbs 5 / batch 2 = 2.5 after warmup: 2, as Python's round(2.5).
  EXPECT_EQ(AccumulateCount(0, -1, 5, 2), 2);
}

TEST(OptimTest, WarmupLastsAtLeastOneHundredIterations) {
  EXPECT_EQ(WarmupIterations(3.0, 16), 100);
  EXPECT_EQ(WarmupIterations(3.0, 50), 150);
  EXPECT_EQ(WarmupIterations(2.5, 49), 122);  // 122.5 rounds to the even 122
  EXPECT_EQ(WarmupIterations(0.0, 50), -1);
}

}  // namespace
}  // namespace yolo
