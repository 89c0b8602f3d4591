#include "server/worker/train/step_plan.h"

#include <algorithm>
#include <numeric>
#include <utility>

namespace yolo {

StepLayout PlanStepLayout(const std::vector<PlannedBuffer>& buffers, size_t alignment) {
  const size_t n = buffers.size();
  const auto aligned = [alignment](size_t v) {
    return (v + alignment - 1) / alignment * alignment;
  };
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return buffers[a].size != buffers[b].size ? buffers[a].size > buffers[b].size
                                              : buffers[a].first < buffers[b].first;
  });
  StepLayout layout;
  layout.offsets.assign(n, 0);
  std::vector<size_t> placed;  // by offset
  std::vector<std::pair<size_t, size_t>> busy;
  for (size_t i : order) {
    const PlannedBuffer& b = buffers[i];
    const size_t size = aligned(b.size);
    busy.clear();
    for (size_t j : placed) {
      const PlannedBuffer& o = buffers[j];
      if (o.first < b.last && b.first < o.last) {
        busy.emplace_back(layout.offsets[j], layout.offsets[j] + aligned(o.size));
      }
    }
    std::sort(busy.begin(), busy.end());
    // The smallest gap that holds it, or the end of everything alive beside it.
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, cursor = 0;
    for (const auto& [start, end] : busy) {
      if (start > cursor && start - cursor >= size && start - cursor < best_gap) {
        best = cursor;
        best_gap = start - cursor;
      }
      cursor = std::max(cursor, end);
    }
    if (best == SIZE_MAX) best = cursor;
    layout.offsets[i] = best;
    layout.bytes = std::max(layout.bytes, best + size);
    placed.push_back(i);
  }
  return layout;
}

size_t PeakLiveBytes(const std::vector<PlannedBuffer>& buffers) {
  std::vector<std::pair<int64_t, int64_t>> events;  // (time, +size at a start / -size at an end)
  events.reserve(2 * buffers.size());
  for (const PlannedBuffer& b : buffers) {
    events.emplace_back(b.first, static_cast<int64_t>(b.size));
    events.emplace_back(b.last, -static_cast<int64_t>(b.size));
  }
  std::sort(events.begin(), events.end());  // at one time, ends (negative) before starts
  int64_t live = 0, peak = 0;
  for (const auto& e : events) peak = std::max(peak, live += e.second);
  return static_cast<size_t>(peak);
}

}  // namespace yolo
