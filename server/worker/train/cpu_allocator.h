// A caching allocator for LibTorch's CPU tensors. Training allocates the same large buffers
// (activations, gradients) every iteration; glibc either returns them to the OS (then every
// iteration pays page faults to get them back) or keeps them in fragmented arenas (then resident
// memory grows far above what is live). Large blocks come from a BlockPool (block_pool.h):
// best fit in big segments, split and merged, so that no page fault is paid in steady state and
// resident memory stays within a few percent of the live peak. Small allocations go to malloc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace yolo {

struct CpuAllocatorStats {
  int64_t allocated_bytes = 0;  // live, in large blocks
  int64_t cached_bytes = 0;     // held for reuse: reserved segments minus live blocks
  int64_t peak_allocated_bytes = 0;
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

}  // namespace yolo
