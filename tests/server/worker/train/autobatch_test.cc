#include "server/worker/train/autobatch.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

namespace yolo {
namespace {

TEST(AutoBatchTest, FitsALineThroughPeaks) {
  const LineFit fit = FitLine({1, 2, 4, 8}, {110, 120, 140, 180});
  EXPECT_NEAR(fit.intercept, 100, 1e-9);
  EXPECT_NEAR(fit.slope, 10, 1e-9);
  EXPECT_NEAR(fit.r2, 1, 1e-12);
  const LineFit noisy = FitLine({1, 2, 4, 8}, {110, 150, 120, 190});
  EXPECT_LT(noisy.r2, 0.9);
  // Memory does not fall with the batch: a falling line is held flat.
  EXPECT_EQ(FitLine({1, 2, 4}, {300, 200, 100}).slope, 0);
}

TEST(AutoBatchTest, LargestBatchWithinTheBudget) {
  MemoryModel m;
  m.train = {100, 10, 1};  // 100 + 10 b
  m.val = {50, 2, 1};      // 50 + 2 (2b): below training everywhere here
  m.loader_bytes_per_image = 1;
  m.fixed_bytes = 20;
  EXPECT_DOUBLE_EQ(m.Predict(10), 100 + 100 + 10 + 20);
  EXPECT_EQ(LargestBatchWithin(m, 230, 1024), 10);
  EXPECT_EQ(LargestBatchWithin(m, 240.9, 1024), 10);
  EXPECT_EQ(LargestBatchWithin(m, 241, 1024), 11);
  EXPECT_EQ(LargestBatchWithin(m, 1e12, 64), 64);  // the ceiling (the training set's size)
  EXPECT_EQ(LargestBatchWithin(m, 100, 64), 0);    // not even batch 1
  // A validation step at twice the batch that needs more than training bounds the batch.
  m.val = {0, 20, 1};  // 40 b at batch b, with its loader at 2 b
  EXPECT_DOUBLE_EQ(m.Predict(10), 400 + 20 + 20);
  EXPECT_EQ(LargestBatchWithin(m, 230, 1024), 5);  // 42 b + 20 <= 230
}

StepSpec TinySpec() {
  StepSpec spec;
  spec.nc = 3;
  spec.imgsz = 64;
  spec.max_objects = 4;
  spec.optimizer.name = "SGD";
  return spec;
}

TEST(AutoBatchTest, ProfilingLeavesTheGlobalRandomStateAlone) {
  at::manual_seed(7);
  const at::Tensor expected = at::rand({4});
  at::manual_seed(7);
  StepProfiler profiler(TinySpec());
  ASSERT_TRUE(profiler.Train(2).ok());
  EXPECT_TRUE(at::equal(at::rand({4}), expected));
}

TEST(AutoBatchTest, RealStepsNeedMoreAtALargerBatch) {
  StepProfiler profiler(TinySpec());
  ASSERT_TRUE(profiler.Train(1).ok());  // one-time set-up
  // Far apart: each step's RSS peak also holds what making its kernels costs, about the same at
  // any batch but not to the MB.
  auto small = profiler.Train(2);
  auto large = profiler.Train(32);
  ASSERT_TRUE(small.ok() && large.ok());
  EXPECT_GT(*large, *small);
  EXPECT_GT(*small, 0);
  auto val = profiler.Val(8);
  ASSERT_TRUE(val.ok());
  EXPECT_GT(*val, 0);
}

TEST(AutoBatchTest, ChoosesABatchWhoseConfirmedStepFitsTheFraction) {
  StepProfiler profiler(TinySpec());
  EstimateInputs in;
  in.fraction = 0.5;
  in.max_batch = 512;
  in.limit_bytes = int64_t{4} << 30;
  in.available_bytes = int64_t{300} << 20;  // 150 MB for the run
  in.loader_bytes_per_image = 3.0 * 64 * 64 * 6;
  auto est = EstimateMemory(profiler, in);
  ASSERT_TRUE(est.ok()) << est.status();
  EXPECT_TRUE(est->autobatch());
  EXPECT_GT(est->batch(), 1);
  EXPECT_LT(est->batch(), 512);  // the budget bounds it, not the ceiling
  EXPECT_LE(est->confirm_measured_bytes() + in.loader_bytes_per_image * est->batch(),
            0.5 * in.available_bytes);
  EXPECT_LE(est->predicted_bytes(), 0.5 * in.available_bytes * 1.1);
  EXPECT_GE(est->steps_size(), 3);
  EXPECT_NE(est->message().find("AutoBatch: batch"), std::string::npos);
  std::printf("%s\n", est->message().c_str());
}

TEST(AutoBatchTest, AFixedBatchThatCannotFitIsPredictedOrRefused) {
  StepProfiler profiler(TinySpec());
  EstimateInputs in;
  in.batch = 64;
  in.limit_bytes = int64_t{4} << 30;
  in.available_bytes = int64_t{40} << 20;  // 64 images at 64 px need about three times this
  auto est = EstimateMemory(profiler, in);
  if (!est.ok()) {
    // The small steps' line said it might fit (their peaks are noisy beside other tests), so
    // a step at batch 64 ran and measured more than is available: the run is refused.
    EXPECT_EQ(est.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(est.status().message().find("a training step at batch 64 needs"), std::string::npos)
        << est.status();
    return;
  }
  // The line from batches 1, 2 and 4 already says it cannot fit: no step at 64 is run.
  EXPECT_FALSE(est->autobatch());
  EXPECT_EQ(est->batch(), 64);
  EXPECT_GT(est->predicted_bytes(), in.available_bytes);
  EXPECT_LT(est->fits_batch(), 64);
  EXPECT_EQ(est->steps_size(), 3);  // batches 1, 2 and 4 only
  EXPECT_EQ(est->confirm_measured_bytes(), 0);
}

}  // namespace
}  // namespace yolo
