// Placement of a training step's large buffers, planned from the step before. A step asks for
// the same buffers in the same order every time, so once one step has been seen, each buffer's
// size and lifetime are known in advance and buffers can be packed like boxes on a timeline:
// two buffers share addresses when their lifetimes do not overlap. Best fit at the time of each
// request (BlockPool) cannot know what comes later and leaves holes that grow the pool by a
// fifth above the live peak; a plan comes within a few percent of it. LibTorch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace yolo {

struct PlannedBuffer {
  size_t size = 0;
  int64_t first = 0;  // the events (allocations and frees, counted) that begin and end it
  int64_t last = 0;   // first < last
};

struct StepLayout {
  std::vector<size_t> offsets;  // per buffer, in the order given
  size_t bytes = 0;             // the region they need
};

// Largest buffers first, each at the lowest offset where it overlaps no placed buffer alive at
// the same time (the "greedy by size" of memory planners). O(n^2) in the worst case: a step of
// yolov8n has a few hundred large buffers.
StepLayout PlanStepLayout(const std::vector<PlannedBuffer>& buffers, size_t alignment);

// The largest sum of sizes alive at one time: no layout needs less.
size_t PeakLiveBytes(const std::vector<PlannedBuffer>& buffers);

}  // namespace yolo
