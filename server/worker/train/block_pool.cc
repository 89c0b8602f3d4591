#include "server/worker/train/block_pool.h"

#include <sys/mman.h>

#include <algorithm>

namespace yolo {

BlockPool::BlockPool(size_t segment_bytes) : segment_bytes_(RoundUp(segment_bytes, kQuantum)) {}

BlockPool::~BlockPool() {
  for (auto& [start, segment] : segments_) {
    for (Block* b = segment.second; b != nullptr;) {
      Block* next = b->next;
      delete b;
      b = next;
    }
    munmap(start, segment.first);
  }
}

BlockPool::Block* BlockPool::NewSegment(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* b = new Block{static_cast<char*>(p), size, true, nullptr, nullptr};
  segments_[b->ptr] = {size, b};
  reserved_ += static_cast<int64_t>(size);
  return b;
}

void* BlockPool::Allocate(size_t n) {
  const size_t size = RoundUp(std::max<size_t>(n, 1), kQuantum);
  Block key{nullptr, size, true, nullptr, nullptr};
  Block* b = nullptr;
  auto it = free_.lower_bound(&key);  // the smallest free block that fits, lowest address first
  if (it != free_.end()) {
    b = *it;
    free_.erase(it);
  } else {
    b = NewSegment(std::max(size, segment_bytes_));
    if (b == nullptr) return nullptr;
  }
  if (b->size > size) {  // split: the tail stays free
    auto* tail = new Block{b->ptr + size, b->size - size, true, b, b->next};
    if (b->next != nullptr) b->next->prev = tail;
    b->next = tail;
    b->size = size;
    free_.insert(tail);
  }
  b->free = false;
  live_[b->ptr] = b;
  allocated_ += static_cast<int64_t>(size);
  peak_allocated_ = std::max(peak_allocated_, allocated_);
  return b->ptr;
}

void BlockPool::Absorb(Block* b, Block* next) {
  free_.erase(next);
  free_.erase(b);  // keyed by size, which changes
  b->size += next->size;
  b->next = next->next;
  if (b->next != nullptr) b->next->prev = b;
  delete next;
}

bool BlockPool::Free(void* p, bool release) {
  auto it = live_.find(p);
  if (it == live_.end()) return false;
  Block* b = it->second;
  live_.erase(it);
  allocated_ -= static_cast<int64_t>(b->size);
  if (release) madvise(b->ptr, b->size, MADV_DONTNEED);
  b->free = true;
  if (b->next != nullptr && b->next->free) Absorb(b, b->next);
  if (b->prev != nullptr && b->prev->free) {
    b = b->prev;
    Absorb(b, b->next);
  }
  free_.insert(b);
  return true;
}

int64_t BlockPool::ReleaseFreePages() {
  int64_t released = 0;
  for (Block* b : free_) {
    if (madvise(b->ptr, b->size, MADV_DONTNEED) == 0) released += static_cast<int64_t>(b->size);
  }
  return released;
}

int64_t BlockPool::ReleaseFreeSegments() {
  int64_t released = 0;
  for (auto it = segments_.begin(); it != segments_.end();) {
    Block* head = it->second.second;
    if (head->free && head->next == nullptr) {  // one free block spans the segment
      free_.erase(head);
      munmap(it->first, it->second.first);
      released += static_cast<int64_t>(it->second.first);
      delete head;
      it = segments_.erase(it);
    } else {
      ++it;
    }
  }
  reserved_ -= released;
  return released;
}

}  // namespace yolo
