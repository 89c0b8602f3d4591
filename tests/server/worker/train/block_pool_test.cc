#include "server/worker/train/block_pool.h"

#include <gtest/gtest.h>

#include <cstring>

namespace yolo {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(BlockPoolTest, SplitsASegmentAndMergesFreedNeighbours) {
  BlockPool pool(/*segment_bytes=*/16 * kMiB);
  void* a = pool.Allocate(4 * kMiB);
  void* b = pool.Allocate(4 * kMiB);
  void* c = pool.Allocate(4 * kMiB);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(pool.segment_count(), 1);  // three blocks out of one segment
  EXPECT_EQ(static_cast<char*>(b) - static_cast<char*>(a), static_cast<ptrdiff_t>(4 * kMiB));
  std::memset(a, 1, 4 * kMiB);  // the memory is usable
  EXPECT_EQ(pool.allocated_bytes(), static_cast<int64_t>(12 * kMiB));

  // Freeing a and b leaves one 8 MiB hole that an 8 MiB request fills without a new segment.
  EXPECT_TRUE(pool.Free(a));
  EXPECT_TRUE(pool.Free(b));
  void* d = pool.Allocate(8 * kMiB);
  EXPECT_EQ(d, a);
  EXPECT_EQ(pool.segment_count(), 1);
  EXPECT_EQ(pool.reserved_bytes(), static_cast<int64_t>(16 * kMiB));
  EXPECT_EQ(pool.peak_allocated_bytes(), static_cast<int64_t>(12 * kMiB));

  // Nothing is released while a block is live; everything once all are free.
  EXPECT_EQ(pool.ReleaseFreeSegments(), 0);
  EXPECT_TRUE(pool.Free(c));
  EXPECT_TRUE(pool.Free(d));
  EXPECT_EQ(pool.allocated_bytes(), 0);
  EXPECT_EQ(pool.ReleaseFreeSegments(), static_cast<int64_t>(16 * kMiB));
  EXPECT_EQ(pool.reserved_bytes(), 0);
  EXPECT_EQ(pool.segment_count(), 0);
}

TEST(BlockPoolTest, TakesTheSmallestFreeBlockThatFits) {
  BlockPool pool(/*segment_bytes=*/32 * kMiB);
  void* big = pool.Allocate(8 * kMiB);
  void* sep1 = pool.Allocate(kMiB);
  void* small = pool.Allocate(2 * kMiB);
  void* sep2 = pool.Allocate(kMiB);
  pool.Free(big);
  pool.Free(small);
  EXPECT_EQ(pool.Allocate(2 * kMiB), small);  // not the front of the 8 MiB hole
  EXPECT_EQ(pool.Allocate(3 * kMiB), big);
  pool.Free(sep1);
  pool.Free(sep2);
}

TEST(BlockPoolTest, LargeRequestsGetASegmentOfTheirOwnAndSizesAreRounded) {
  BlockPool pool(/*segment_bytes=*/4 * kMiB);
  void* a = pool.Allocate(10 * kMiB + 1);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(pool.segment_count(), 1);
  EXPECT_EQ(pool.allocated_bytes(), static_cast<int64_t>(10 * kMiB + BlockPool::kQuantum));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  void* b = pool.Allocate(kMiB);  // the first segment is full: a second one
  EXPECT_EQ(pool.segment_count(), 2);
  EXPECT_FALSE(pool.Free(&pool));  // not one of its blocks: left alone
  pool.Free(a);
  EXPECT_EQ(pool.ReleaseFreeSegments(), static_cast<int64_t>(10 * kMiB + BlockPool::kQuantum));
  pool.Free(b);
}

}  // namespace
}  // namespace yolo
