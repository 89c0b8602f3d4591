#include "server/worker/train/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <malloc.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "server/worker/train/block_pool.h"
#include "server/worker/train/step_plan.h"

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

  bool step_plans = true;

  int64_t EmptyCache() {
    int64_t released = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      released = pool_.ReleaseFreeSegments();
      if (arena_ != nullptr && arena_live_.empty() && arena_resident_) {
        // The plan stays; the next step faults the region in again.
        madvise(arena_, arena_bytes_, MADV_DONTNEED);
        released += static_cast<int64_t>(arena_bytes_);
        arena_resident_ = false;
      }
    }
    malloc_trim(0);
    return released;
  }

  void ResetPeak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = Allocated();
  }

  CpuAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuAllocatorStats s;
    s.allocated_bytes = Allocated();
    // The plan's region counts while its pages are in (EmptyCache gives them back).
    s.cached_bytes = pool_.reserved_bytes() +
                     (arena_resident_ ? static_cast<int64_t>(arena_bytes_) : 0) - Allocated();
    s.peak_allocated_bytes = peak_;
    s.step_plan_bytes = static_cast<int64_t>(arena_bytes_);
    s.step_plan_peak_live_bytes = plan_peak_live_;
    s.step_plan_hits = hits_;
    s.step_plan_misses = misses_;
    s.step_plans_made = plans_made_;
    return s;
  }

  void BeginStep() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!step_plans) return;
    step_thread_ = std::this_thread::get_id();
    in_step_ = true;
    cursor_ = 0;
    step_misses_ = 0;
    if (state_ == State::kOff) state_ = State::kWarmUp;
    if (state_ == State::kRecord) {
      trace_.clear();
      traced_.clear();
      event_ = 0;
    }
  }

  void EndStep(bool completed) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!in_step_) return;
    in_step_ = false;
    if (state_ == State::kWarmUp) {
      // The first step also creates what lives on (gradients, optimizer state): the second is
      // the one that looks like the rest.
      if (completed) state_ = State::kRecord;
    } else if (state_ == State::kRecord) {
      if (completed) MakePlan();  // a failed step is no plan: the next is watched instead
    } else if (state_ == State::kServe && step_misses_ * 4 > plan_.size() && arena_live_.empty() &&
               replans_left_ > 0) {
      // The step changed (another batch size, another model): see it again.
      --replans_left_;
      DropArena();
      state_ = State::kRecord;
    } else if (state_ == State::kServe && !grown_.empty() && arena_live_.empty()) {
      for (const auto& [k, size] : grown_) plan_[k].size = BlockPool::RoundUp(size);
      grown_.clear();
      DropArena(/*keep_plan=*/true);
      Layout();
      pool_.ReleaseFreePages();  // what the grown buffers took from the pool meanwhile
    }
  }

  void ResetPlan() {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_step_ || !arena_live_.empty()) return;
    DropArena();
    state_ = State::kOff;
    replans_left_ = kReplans;
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
        const size_t size = BlockPool::RoundUp(n);
        const bool step_thread =
            state_ != State::kOff && std::this_thread::get_id() == step_thread_;
        if (step_thread && in_step_ && state_ == State::kServe) {
          p = FromPlan(size);
        } else if (step_thread && !in_step_ && state_ == State::kServe) {
          p = FirstFitInArena(size);  // validation and the like, between steps
        }
        const bool missed = step_thread && in_step_ && state_ == State::kServe && p == nullptr;
        if (p == nullptr) {
          p = pool_.Allocate(n);
          if (p == nullptr && pool_.ReleaseFreeSegments() > 0) p = pool_.Allocate(n);
          if (p != nullptr && missed) missed_.insert(p);
          if (p != nullptr && step_thread && in_step_ && state_ == State::kRecord) {
            traced_[p] = trace_.size();
            trace_.push_back({size, event_++, -1});
          }
        }
        peak_ = std::max(peak_, Allocated());
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
      if (self.InArena(p)) {
        auto it = self.arena_live_.find(static_cast<size_t>(static_cast<char*>(p) - self.arena_));
        if (it != self.arena_live_.end()) {
          self.arena_allocated_ -= static_cast<int64_t>(it->second);
          self.arena_live_.erase(it);
        }
        return;
      }
      // A step's buffer that missed the plan gives its pages back too: kept, they would be
      // resident beside the plan's for good.
      bool release = self.missed_.erase(p) > 0;
      if ((self.state_ == State::kWarmUp || self.state_ == State::kRecord) && self.in_step_) {
        // While the step is watched, freed pages go back at once: what it leaves resident is
        // what it has live, not best fit's holes, which the plan is about to do without.
        release = true;
        auto it = self.traced_.find(p);
        if (it != self.traced_.end()) {
          self.trace_[it->second].last = self.event_++;
          self.traced_.erase(it);
        }
      }
      if (self.pool_.Free(p, release)) {
        if (self.pool_.reserved_bytes() - self.pool_.allocated_bytes() > self.cache_limit) {
          self.pool_.ReleaseFreeSegments();
        }
        return;
      }
    }
    std::free(p);
  }

  enum class State { kOff, kWarmUp, kRecord, kServe };
  static constexpr int kReplans = 4;
  struct Slot {
    size_t offset = 0;
    size_t size = 0;  // 0: not planned (it outlived its step)
  };

  int64_t Allocated() const { return pool_.allocated_bytes() + arena_allocated_; }

  bool InArena(void* p) const {
    return arena_ != nullptr && p >= arena_ && static_cast<char*>(p) < arena_ + arena_bytes_;
  }

  bool Overlaps(size_t offset, size_t size) const {
    auto next = arena_live_.lower_bound(offset);
    if (next != arena_live_.end() && next->first < offset + size) return true;
    if (next == arena_live_.begin()) return false;
    auto prev = std::prev(next);
    return prev->first + prev->second > offset;
  }

  void* Take(size_t offset, size_t size) {
    arena_live_[offset] = size;
    arena_allocated_ += static_cast<int64_t>(size);
    arena_resident_ = true;
    return arena_ + offset;
  }

  // The request the plan expects next, at its planned place; nullptr when it does not fit there
  // (a larger buffer than planned, or its place still taken).
  void* FromPlan(size_t size) {
    size_t k = cursor_;
    if (k < plan_.size() && plan_[k].size < size) {
      // A request the step did not make last time, or one it skipped: find the next of this
      // size a little further on.
      for (size_t j = k + 1; j < plan_.size() && j <= k + 16; ++j) {
        if (plan_[j].size == size) {
          k = j;
          break;
        }
      }
    }
    cursor_ = k + 1;
    if (k >= plan_.size() || plan_[k].size == 0) {
      ++misses_;
      ++step_misses_;
      return nullptr;
    }
    const bool grew = plan_[k].size < size && size <= 2 * plan_[k].size;
    if (grew) {
      // The same buffer, larger this time (the loss's, with more boxes in an image): the plan
      // makes room for it, with an eighth more, at the step's end. Meanwhile it takes its place
      // and what follows when that is free now, rather than pages of the pool beside the plan's.
      grown_[k] = std::max(grown_[k], size + size / 8);
    }
    if ((plan_[k].size >= size || grew) && plan_[k].offset + size <= arena_bytes_ &&
        !Overlaps(plan_[k].offset, size)) {
      ++hits_;
      return Take(plan_[k].offset, size);
    }
    ++misses_;
    ++step_misses_;
    return nullptr;
  }

  void* FirstFitInArena(size_t size) {
    size_t cursor = 0;
    for (const auto& [offset, n] : arena_live_) {
      if (offset >= cursor + size) break;
      cursor = std::max(cursor, offset + n);
    }
    if (arena_ == nullptr || cursor + size > arena_bytes_) return nullptr;
    return Take(cursor, size);
  }

  void MakePlan() {
    plan_.assign(trace_.size(), Slot{});
    lifetimes_.assign(trace_.size(), {});
    for (size_t i = 0; i < trace_.size(); ++i) {
      if (trace_[i].last < 0) continue;  // outlived the step: it stays in the pool
      plan_[i].size = trace_[i].size;
      lifetimes_[i] = {trace_[i].first, trace_[i].last};
    }
    trace_.clear();
    traced_.clear();
    state_ = State::kServe;
    Layout();
    // The blocks the watched step used are the plan's now: the pool keeps no pages for them.
    pool_.ReleaseFreeSegments();
    pool_.ReleaseFreePages();
  }

  // Places plan_'s buffers (their sizes, lifetimes_) in a new region.
  void Layout() {
    std::vector<PlannedBuffer> buffers;
    std::vector<size_t> which;
    for (size_t i = 0; i < plan_.size(); ++i) {
      if (plan_[i].size == 0) continue;
      buffers.push_back({plan_[i].size, lifetimes_[i].first, lifetimes_[i].second});
      which.push_back(i);
    }
    if (buffers.empty()) return;
    const StepLayout layout = PlanStepLayout(buffers, BlockPool::kQuantum);
    void* p =
        mmap(nullptr, layout.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      plan_.clear();
      return;
    }
    arena_ = static_cast<char*>(p);
    arena_bytes_ = layout.bytes;
    for (size_t b = 0; b < which.size(); ++b) plan_[which[b]].offset = layout.offsets[b];
    plan_peak_live_ = static_cast<int64_t>(PeakLiveBytes(buffers));
    ++plans_made_;
  }

  void DropArena(bool keep_plan = false) {
    if (arena_ != nullptr) munmap(arena_, arena_bytes_);
    arena_ = nullptr;
    arena_bytes_ = 0;
    arena_resident_ = false;
    if (!keep_plan) plan_.clear();
    grown_.clear();
  }

  std::mutex mu_;
  BlockPool pool_;
  int64_t peak_ = 0;
  // The step plan (step_plan.h): one step watched, the next ones placed as it was.
  State state_ = State::kOff;
  std::thread::id step_thread_;
  bool in_step_ = false;
  int replans_left_ = kReplans;
  int64_t event_ = 0;
  std::vector<PlannedBuffer> trace_;                    // kRecord: the step's requests in order
  std::unordered_map<void*, size_t> traced_;            // kRecord: live traced block -> its request
  std::vector<Slot> plan_;                              // kServe: per request of a step
  std::vector<std::pair<int64_t, int64_t>> lifetimes_;  // per request: first and last event
  std::map<size_t, size_t> grown_;                      // request -> the larger size it came with
  std::unordered_set<void*> missed_;                    // pool blocks of requests the plan missed
  size_t cursor_ = 0;
  size_t step_misses_ = 0;
  char* arena_ = nullptr;
  size_t arena_bytes_ = 0;
  bool arena_resident_ = false;
  std::map<size_t, size_t> arena_live_;  // offset -> size
  int64_t arena_allocated_ = 0;
  int64_t plan_peak_live_ = 0, hits_ = 0, misses_ = 0, plans_made_ = 0;
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

void EnableCpuStepPlans(bool enable) { CachingCpuAllocator::Get().step_plans = enable; }

void BeginCpuStep() { CachingCpuAllocator::Get().BeginStep(); }

void EndCpuStep(bool completed) { CachingCpuAllocator::Get().EndStep(completed); }

void ResetCpuStepPlan() { CachingCpuAllocator::Get().ResetPlan(); }

}  // namespace yolo
