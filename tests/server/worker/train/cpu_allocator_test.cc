#include "server/worker/train/cpu_allocator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

namespace yolo {
namespace {

TEST(CpuAllocatorTest, ReusesFreedLargeBlocksAndEmptiesTheCache) {
  InstallCachingCpuAllocator();
  EmptyCpuCache();
  const int64_t live_before = GetCpuAllocatorStats().allocated_bytes;
  void* first = nullptr;
  {
    at::Tensor t = at::ones({1 << 20});  // 4 MiB
    first = t.data_ptr();
    EXPECT_GE(GetCpuAllocatorStats().allocated_bytes - live_before, 4 << 20);
  }
  EXPECT_GE(GetCpuAllocatorStats().cached_bytes, 4 << 20);
  at::Tensor again = at::zeros({1 << 20});
  EXPECT_EQ(again.data_ptr(), first);
  EXPECT_EQ(again.sum().item<float>(), 0);
  again.reset();
  EXPECT_GE(EmptyCpuCache(), 4 << 20);
  EXPECT_EQ(GetCpuAllocatorStats().cached_bytes, 0);
  // Small tensors work as before.
  at::Tensor small = at::arange(10);
  EXPECT_EQ(small.sum().item<int64_t>(), 45);
}

// One step's pattern: a saved activation, a temporary, another activation, freed in reverse; a
// buffer that outlives the step; `keep` set, the last activation outlives it too.
struct StepBuffers {
  void* a = nullptr;
  void* b = nullptr;
  void* t = nullptr;
};

StepBuffers RunStep(std::vector<at::Tensor>* outlive, float value, at::Tensor* keep = nullptr) {
  StepBuffers seen;
  CpuStepScope step;
  at::Tensor a = at::full({1 << 20}, value);  // 4 MiB each
  at::Tensor t = at::full({1 << 19}, value);
  at::Tensor b = a + t.repeat({2});
  seen.a = a.data_ptr(), seen.t = t.data_ptr(), seen.b = b.data_ptr();
  t.reset();
  EXPECT_FLOAT_EQ(b.sum().item<float>(), 2 * value * (1 << 20));
  if (outlive->empty()) outlive->push_back(at::full({1 << 18}, 1.0f));  // the first step only
  if (keep != nullptr) *keep = b;
  a.reset();
  b.reset();
  step.Done();
  return seen;
}

TEST(CpuAllocatorTest, StepsAfterTheWatchedOneAreServedFromItsPlan) {
  InstallCachingCpuAllocator();
  EnableCpuStepPlans(true);
  ResetCpuStepPlan();
  std::vector<at::Tensor> outlive;
  const CpuAllocatorStats before = GetCpuAllocatorStats();
  RunStep(&outlive, 1);  // creates what lives on
  RunStep(&outlive, 2);  // watched
  const CpuAllocatorStats planned = GetCpuAllocatorStats();
  EXPECT_EQ(planned.step_plans_made, before.step_plans_made + 1);
  EXPECT_GE(planned.step_plan_bytes, planned.step_plan_peak_live_bytes);
  const StepBuffers third = RunStep(&outlive, 3);
  const StepBuffers fourth = RunStep(&outlive, 4);
  const CpuAllocatorStats after = GetCpuAllocatorStats();
  // a + t.repeat + the sum: every request at its place, the same place each step.
  EXPECT_GE(after.step_plan_hits - planned.step_plan_hits, 6);
  EXPECT_EQ(after.step_plan_misses, planned.step_plan_misses);
  EXPECT_EQ(third.a, fourth.a);
  EXPECT_EQ(third.b, fourth.b);
  EXPECT_EQ(outlive[0].sum().item<float>(), 1 << 18);

  // A buffer kept past its step keeps its bytes: the next step's request for its place goes
  // elsewhere.
  at::Tensor kept;
  RunStep(&outlive, 5, &kept);
  const StepBuffers next = RunStep(&outlive, 6);
  EXPECT_NE(next.b, kept.data_ptr());
  EXPECT_FLOAT_EQ(kept.sum().item<float>(), 2 * 5.0f * (1 << 20));
  EXPECT_GT(GetCpuAllocatorStats().step_plan_misses, after.step_plan_misses);
  kept.reset();

  // A step that throws part way leaves the plan as it was.
  try {
    CpuStepScope step;
    at::Tensor a = at::full({1 << 20}, 1.0f);
    throw std::runtime_error("failed step");
  } catch (const std::runtime_error&) {
  }
  const StepBuffers again = RunStep(&outlive, 7);
  EXPECT_EQ(again.a, third.a);

  // A buffer that comes larger (the loss's, with more boxes) is planned larger after its step.
  const int64_t made = GetCpuAllocatorStats().step_plans_made;
  {
    CpuStepScope step;
    at::Tensor a = at::full({1 << 20}, 1.0f);
    at::Tensor t = at::full({(1 << 19) + (1 << 16)}, 1.0f);  // an eighth larger
    EXPECT_FLOAT_EQ(t.sum().item<float>(), (1 << 19) + (1 << 16));
    t.reset();
    a.reset();
    step.Done();
  }
  EXPECT_EQ(GetCpuAllocatorStats().step_plans_made, made + 1);
  RunStep(&outlive, 8);  // the smaller one fits the larger place
  EXPECT_EQ(GetCpuAllocatorStats().step_plans_made, made + 1);
  ResetCpuStepPlan();
  EXPECT_EQ(GetCpuAllocatorStats().step_plan_bytes, 0);
}

TEST(CpuAllocatorTest, StepPlansCanBeTurnedOff) {
  InstallCachingCpuAllocator();
  ResetCpuStepPlan();
  EnableCpuStepPlans(false);
  std::vector<at::Tensor> outlive;
  const int64_t made = GetCpuAllocatorStats().step_plans_made;
  for (int i = 0; i < 4; ++i) RunStep(&outlive, static_cast<float>(i));
  EXPECT_EQ(GetCpuAllocatorStats().step_plans_made, made);
  EXPECT_EQ(GetCpuAllocatorStats().step_plan_bytes, 0);
  EnableCpuStepPlans(true);
}

}  // namespace
}  // namespace yolo
