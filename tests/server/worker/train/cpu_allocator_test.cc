#include "server/worker/train/cpu_allocator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace yolo
