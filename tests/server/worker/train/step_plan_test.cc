#include "server/worker/train/step_plan.h"

#include <gtest/gtest.h>

#include <random>

namespace yolo {
namespace {

// No two buffers alive at the same time share a byte, and the region holds every buffer.
void ExpectValid(const std::vector<PlannedBuffer>& buffers, const StepLayout& layout) {
  ASSERT_EQ(layout.offsets.size(), buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_LE(layout.offsets[i] + buffers[i].size, layout.bytes) << i;
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      const bool together =
          buffers[i].first < buffers[j].last && buffers[j].first < buffers[i].last;
      const bool shared = layout.offsets[i] < layout.offsets[j] + buffers[j].size &&
                          layout.offsets[j] < layout.offsets[i] + buffers[i].size;
      EXPECT_FALSE(together && shared) << "buffers " << i << " and " << j;
    }
  }
  EXPECT_GE(layout.bytes, PeakLiveBytes(buffers));
}

TEST(StepPlanTest, BuffersThatNeverMeetShareTheirPlace) {
  // A forward pass's pattern: a temporary between two saved activations, then freed in reverse.
  const std::vector<PlannedBuffer> buffers = {
      {8, 0, 9}, {4, 1, 3}, {8, 2, 8}, {4, 4, 5}, {4, 6, 7}};
  const StepLayout layout = PlanStepLayout(buffers, 1);
  ExpectValid(buffers, layout);
  EXPECT_EQ(PeakLiveBytes(buffers), 20u);  // the two 8s and one 4 at a time
  EXPECT_EQ(layout.bytes, 20u);
  EXPECT_EQ(layout.offsets[3], layout.offsets[4]);
}

TEST(StepPlanTest, RandomStepsAreValidAndCloseToTheirPeak) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<PlannedBuffer> buffers(150);
    for (auto& b : buffers) {
      b.first = std::uniform_int_distribution<int64_t>(0, 400)(rng);
      b.last = b.first + 1 + std::uniform_int_distribution<int64_t>(0, 60)(rng);
      b.size = 65536 * std::uniform_int_distribution<size_t>(1, 64)(rng);
    }
    const StepLayout layout = PlanStepLayout(buffers, 65536);
    ExpectValid(buffers, layout);
    EXPECT_LT(layout.bytes, PeakLiveBytes(buffers) * 3 / 2) << "trial " << trial;
  }
}

TEST(StepPlanTest, OffsetsKeepTheAlignment) {
  const std::vector<PlannedBuffer> buffers = {{100, 0, 2}, {70000, 1, 3}, {5, 2, 4}};
  const StepLayout layout = PlanStepLayout(buffers, 4096);
  ExpectValid(buffers, layout);
  for (size_t offset : layout.offsets) EXPECT_EQ(offset % 4096, 0u);
}

}  // namespace
}  // namespace yolo
