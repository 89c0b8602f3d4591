#include "server/train/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <malloc.h>
#include <torch/version.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace yolo {
namespace {

constexpr size_t kLargeBlock = 1 << 20;  // smaller requests go straight to malloc
constexpr size_t kAlignment = 64;
constexpr size_t kSizeQuantum = 64 << 10;  // large sizes are rounded up to 64 KiB

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
    std::vector<void*> blocks;
    int64_t released = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [size, list] : free_) {
        for (void* p : list) {
          blocks.push_back(p);
          released += static_cast<int64_t>(size);
        }
      }
      free_.clear();
      stats_.cached_bytes = 0;
    }
    for (void* p : blocks) std::free(p);
    malloc_trim(0);
    return released;
  }

  CpuAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  c10::DataPtr Allocate(size_t n) const {
    return const_cast<CachingCpuAllocator*>(this)->AllocateImpl(n);
  }

  c10::DataPtr AllocateImpl(size_t n) {
    void* p = nullptr;
    if (n >= kLargeBlock) {
      size_t size = (n + kSizeQuantum - 1) / kSizeQuantum * kSizeQuantum;
      {
        std::lock_guard<std::mutex> lock(mu_);
        // The smallest cached block that fits with at most 1/8 to spare.
        auto it = free_.lower_bound(size);
        if (it != free_.end() && it->first <= size + size / 8) {
          p = it->second.back();
          it->second.pop_back();
          size = it->first;
          stats_.cached_bytes -= static_cast<int64_t>(size);
          if (it->second.empty()) free_.erase(it);
        }
      }
      if (p == nullptr) p = std::aligned_alloc(kAlignment, size);
      if (p == nullptr) {
        EmptyCache();
        p = std::aligned_alloc(kAlignment, size);
      }
      if (p == nullptr) throw std::bad_alloc();
      std::lock_guard<std::mutex> lock(mu_);
      live_[p] = size;
      stats_.allocated_bytes += static_cast<int64_t>(size);
      if (stats_.allocated_bytes > stats_.peak_allocated_bytes) {
        stats_.peak_allocated_bytes = stats_.allocated_bytes;
      }
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
      auto it = self.live_.find(p);
      if (it != self.live_.end()) {
        const size_t size = it->second;
        self.live_.erase(it);
        self.stats_.allocated_bytes -= static_cast<int64_t>(size);
        if (self.stats_.cached_bytes + static_cast<int64_t>(size) <= self.cache_limit) {
          self.free_[size].push_back(p);
          self.stats_.cached_bytes += static_cast<int64_t>(size);
          return;
        }
      }
    }
    std::free(p);
  }

  std::mutex mu_;
  std::unordered_map<void*, size_t> live_;
  std::map<size_t, std::vector<void*>> free_;  // by size, for best fit
  CpuAllocatorStats stats_;
};

}  // namespace

void InstallCachingCpuAllocator(int64_t cache_limit_bytes) {
  static std::once_flag once;
  CachingCpuAllocator::Get().cache_limit = cache_limit_bytes;
  std::call_once(once, [] { c10::SetCPUAllocator(&CachingCpuAllocator::Get(), /*priority=*/100); });
}

int64_t EmptyCpuCache() { return CachingCpuAllocator::Get().EmptyCache(); }

CpuAllocatorStats GetCpuAllocatorStats() { return CachingCpuAllocator::Get().Stats(); }

}  // namespace yolo
