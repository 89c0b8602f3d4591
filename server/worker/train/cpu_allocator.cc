#include "server/worker/train/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <malloc.h>
#include <torch/version.h>

#include <cstdlib>
#include <mutex>
#include <new>

#include "server/worker/train/block_pool.h"

namespace yolo {
namespace {

constexpr size_t kLargeBlock = 1 << 20;  // smaller requests go straight to malloc
constexpr size_t kAlignment = 64;

class CachingCpuAllocator final : public c10::Allocator {
 public:
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return Allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return Allocate(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }

  static CachingCpuAllocator& Get() {
    static CachingCpuAllocator* instance = new CachingCpuAllocator();  // never destroyed
    return *instance;
  }

  int64_t cache_limit = int64_t{4} << 30;

  int64_t EmptyCache() {
    int64_t released = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      released = pool_.ReleaseFreeSegments();
    }
    malloc_trim(0);
    return released;
  }

  void ResetPeak() {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.ResetPeak();
  }

  CpuAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {pool_.allocated_bytes(), pool_.reserved_bytes() - pool_.allocated_bytes(),
            pool_.peak_allocated_bytes()};
  }

 private:
  c10::DataPtr Allocate(size_t n) const {
    return const_cast<CachingCpuAllocator*>(this)->AllocateImpl(n);
  }

  c10::DataPtr AllocateImpl(size_t n) {
    void* p = nullptr;
    if (n >= kLargeBlock) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        p = pool_.Allocate(n);
        if (p == nullptr && pool_.ReleaseFreeSegments() > 0) p = pool_.Allocate(n);
      }
      if (p == nullptr) throw std::bad_alloc();
    } else {
      const size_t size =
          std::max<size_t>((n + kAlignment - 1) / kAlignment * kAlignment, kAlignment);
      p = std::aligned_alloc(kAlignment, size);
      if (p == nullptr) throw std::bad_alloc();
    }
    return {p, p, &Free, c10::Device(c10::DeviceType::CPU)};
  }

  static void Free(void* p) {
    if (p == nullptr) return;
    CachingCpuAllocator& self = Get();
    {
      std::lock_guard<std::mutex> lock(self.mu_);
      if (self.pool_.Free(p)) {
        if (self.pool_.reserved_bytes() - self.pool_.allocated_bytes() > self.cache_limit) {
          self.pool_.ReleaseFreeSegments();
        }
        return;
      }
    }
    std::free(p);
  }

  std::mutex mu_;
  BlockPool pool_;
};

}  // namespace

void InstallCachingCpuAllocator(int64_t cache_limit_bytes) {
  static std::once_flag once;
  CachingCpuAllocator::Get().cache_limit = cache_limit_bytes;
  std::call_once(once, [] { c10::SetCPUAllocator(&CachingCpuAllocator::Get(), /*priority=*/100); });
}

int64_t EmptyCpuCache() { return CachingCpuAllocator::Get().EmptyCache(); }

CpuAllocatorStats GetCpuAllocatorStats() { return CachingCpuAllocator::Get().Stats(); }

void ResetCpuAllocatorPeak() { CachingCpuAllocator::Get().ResetPeak(); }

}  // namespace yolo
