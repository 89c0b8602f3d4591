// A caching allocator for LibTorch's CPU tensors. Training allocates the same large buffers
// (activations, gradients) every iteration; glibc either returns them to the OS (then every
// iteration pays page faults to get them back) or keeps them in fragmented arenas (then resident
// memory grows far above what is live). Large blocks come from a BlockPool (block_pool.h):
// best fit in big segments, split and merged, so that no page fault is paid in steady state;
// a training step's own blocks are placed by a plan instead (BeginCpuStep below), which keeps
// them within a few percent of their live peak. Small allocations go to malloc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace yolo {

struct CpuAllocatorStats {
  int64_t allocated_bytes = 0;  // live, in large blocks
  int64_t cached_bytes = 0;     // held for reuse: reserved segments minus live blocks
  int64_t peak_allocated_bytes = 0;
  // The step plan (BeginCpuStep): its region, the live peak it was planned for, and requests
  // served from it or not.
  int64_t step_plan_bytes = 0;
  int64_t step_plan_peak_live_bytes = 0;
  int64_t step_plan_hits = 0;
  int64_t step_plan_misses = 0;
  int64_t step_plans_made = 0;
};

// Makes the caching allocator LibTorch's CPU allocator. Idempotent. `cache_limit_bytes` caps
// the cached (free) bytes; beyond it, segments with nothing live are returned to the OS.
void InstallCachingCpuAllocator(int64_t cache_limit_bytes = int64_t{4} << 30);

// Returns every segment with nothing live to the OS (and trims malloc). Safe from any thread.
// Returns the bytes released.
int64_t EmptyCpuCache();

CpuAllocatorStats GetCpuAllocatorStats();
// Starts peak_allocated_bytes again from what is live now.
void ResetCpuAllocatorPeak();

// Training steps, bracketed on the thread that runs them. The first step creates what lives on
// (gradients, optimizer state); the second is watched: every large buffer it asks for, in
// order, with when it is freed. While these two run, freed pages go back to the OS at once, so
// they hold no more than they have live. The watched step's end plans where each of its buffers
// goes in a region of its own (step_plan.h), and the steps after it are served from that plan:
// the k-th request at the k-th buffer's place, when it fits and the place is free; the pool
// otherwise, with its pages given back when it is freed. A buffer that came larger (the loss's,
// with more boxes) gets the larger size at the step's end, and a step that misses more than a
// quarter of its requests is watched again (a few times at most). Buffers that outlive their
// step stay in the pool. Between steps, the same thread's requests (validation) take free space
// in the region first; other threads (loaders) never use it.
void BeginCpuStep();
// `completed` false: the step failed part way (an exception), and a watched one is not planned.
void EndCpuStep(bool completed);

// Brackets one step: EndCpuStep(false) unless Done() was called.
class CpuStepScope {
 public:
  CpuStepScope() { BeginCpuStep(); }
  ~CpuStepScope() {
    if (!done_) EndCpuStep(false);
  }
  CpuStepScope(const CpuStepScope&) = delete;
  CpuStepScope& operator=(const CpuStepScope&) = delete;
  void Done() {
    if (!done_) EndCpuStep(true);
    done_ = true;
  }

 private:
  bool done_ = false;
};
// Forgets the plan (when the batch size changes); nothing of it may be live.
void ResetCpuStepPlan();
// On by default; off, every request goes to the pool (YOLO_STEP_PLAN=0 in the trainer).
void EnableCpuStepPlans(bool enable);

}  // namespace yolo
