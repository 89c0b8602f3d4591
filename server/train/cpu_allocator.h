// A caching allocator for LibTorch's CPU tensors. Training allocates the same large buffers
// (activations, gradients) every iteration; glibc either returns them to the OS (then every
// iteration pays page faults to get them back) or keeps them in fragmented arenas (then resident
// memory grows far above what is live). This keeps freed large blocks by exact size class and
// hands them back on the next request of that size: no page faults in steady state, and
// resident memory close to the live peak. Small allocations go to malloc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace yolo {

struct CpuAllocatorStats {
  int64_t allocated_bytes = 0;  // live, in large blocks
  int64_t cached_bytes = 0;     // freed large blocks kept for reuse
  int64_t peak_allocated_bytes = 0;
};

// Makes the caching allocator LibTorch's CPU allocator. Idempotent. `cache_limit_bytes` caps
// the cached (free) bytes; blocks beyond it are returned to the OS.
void InstallCachingCpuAllocator(int64_t cache_limit_bytes = int64_t{4} << 30);

// Returns every cached block to the OS (and trims malloc). Safe from any thread.
// Returns the bytes released.
int64_t EmptyCpuCache();

CpuAllocatorStats GetCpuAllocatorStats();

}  // namespace yolo
