// A pool of large memory blocks carved out of big mmap'd segments, for the CPU caching
// allocator. A request takes the smallest free block that fits (best fit) and splits off what
// it does not need; a freed block merges with free neighbours of its segment. Once its segments
// have grown, requests are served without a page fault, but best fit cannot know what comes
// later: a training step left it about a fifth above its live peak, which is why the steps
// themselves are placed by a plan (cpu_allocator.h) and the pool keeps what outlives them. Not
// thread-safe: the allocator that owns it holds a lock around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <unordered_map>
#include <utility>

namespace yolo {

class BlockPool {
 public:
  static constexpr size_t kQuantum = 64 << 10;  // block sizes are multiples of this
  // `n` rounded up to a multiple of `quantum`: the size of the block a request gets.
  static size_t RoundUp(size_t n, size_t quantum = kQuantum) {
    return (n + quantum - 1) / quantum * quantum;
  }

  // Segments are `segment_bytes` (or the request, rounded, where that is larger).
  explicit BlockPool(size_t segment_bytes = size_t{32} << 20);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block of at least `n` bytes, page-aligned at segment starts and kQuantum-aligned within;
  // nullptr when the OS refuses a new segment.
  void* Allocate(size_t n);
  // Returns a block of this pool; false (and nothing done) for a pointer it did not hand out.
  // With `release`, the block's pages go back to the OS too (the addresses stay the pool's; a
  // later use faults them in again, zeroed).
  bool Free(void* p, bool release = false);
  // Gives the pages of every free block back to the OS, keeping the segments; returns the bytes.
  int64_t ReleaseFreePages();
  // Unmaps every segment with nothing live in it; returns the bytes given back.
  int64_t ReleaseFreeSegments();

  int64_t allocated_bytes() const { return allocated_; }  // live blocks
  int64_t reserved_bytes() const { return reserved_; }    // all segments
  int64_t peak_allocated_bytes() const { return peak_allocated_; }
  void ResetPeak() { peak_allocated_ = allocated_; }
  int64_t segment_count() const { return static_cast<int64_t>(segments_.size()); }

 private:
  struct Block {
    char* ptr;
    size_t size;
    bool free;
    Block* prev;  // neighbours in the same segment, by address
    Block* next;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };

  Block* NewSegment(size_t size);
  // `b` takes in `next`, its free neighbour after it; both leave the free set.
  void Absorb(Block* b, Block* next);

  size_t segment_bytes_;
  std::set<Block*, BySizeThenAddress> free_;
  std::unordered_map<void*, Block*> live_;
  std::unordered_map<char*, std::pair<size_t, Block*>> segments_;  // start -> size, first block
  int64_t allocated_ = 0;
  int64_t reserved_ = 0;
  int64_t peak_allocated_ = 0;
};

}  // namespace yolo
