// A caching allocator shared by the CPU and CUDA backends: freed blocks are kept on a free list
// per size class and handed out again, so once a training step has run, later steps allocate
// nothing from the system (no page faults on the CPU, no cudaMalloc on the GPU).
//
// Size classes: multiples of 512 B up to 1 MiB, multiples of 2 MiB above (a block wastes at
// most 512 B, or 2 MiB on blocks over 1 MiB). Reuse is by exact class.
// The backend supplies the raw memory:
//   void* allocate(size_t bytes)    nullptr when out of memory (other failures throw)
//   void deallocate(void* p)        never throws
//   void wait_idle()                before cached blocks go back (CUDA: queued kernels may use them)
//   [[noreturn]] void out_of_memory(size_t requested, size_t held)   throws the backend's error
// On out of memory the cache is emptied and the request retried once before out_of_memory.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace nncore {

struct AllocatorStats {
  size_t allocated_bytes;       // live blocks handed out
  size_t reserved_bytes;        // allocated + cached
  size_t peak_allocated_bytes;  // high-water mark of allocated_bytes since the last reset
  uint64_t num_system_allocs;   // raw allocations made (malloc / cudaMalloc)
};

template <typename Backend>
class CachingAllocator {
 public:
  explicit CachingAllocator(Backend backend = Backend()) : backend_(std::move(backend)) {}

  static constexpr size_t kSmallLimit = size_t(1) << 20, kSmallRound = 512;
  static constexpr size_t kLargeRound = size_t(2) << 20;
  // The most bytes a request may ask for: more would wrap the rounding up to a size class.
  static constexpr size_t kMaxRequest = SIZE_MAX - kLargeRound;

  static size_t size_class(size_t nbytes) {
    const size_t round = nbytes <= kSmallLimit ? kSmallRound : kLargeRound;
    return std::max(round, (nbytes + round - 1) / round * round);
  }

  void* allocate(size_t nbytes) {
    if (nbytes > kMaxRequest) backend_.out_of_memory(nbytes, stats().allocated_bytes);
    const size_t bytes = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto cached = free_lists_.find(bytes);
    if (cached != free_lists_.end() && !cached->second.empty()) {
      ptr = cached->second.back();
      cached->second.pop_back();
      cached_ -= bytes;
    } else {
      ptr = backend_.allocate(bytes);
      if (ptr == nullptr) {
        release_cached_locked();
        ptr = backend_.allocate(bytes);
      }
      if (ptr == nullptr) backend_.out_of_memory(nbytes, allocated_);
      ++system_allocs_;
    }
    try {
      live_.emplace(ptr, bytes);
    } catch (...) {  // no host memory for the bookkeeping: give the block back, report
      release_block(ptr);
      throw;
    }
    allocated_ += bytes;
    peak_ = std::max(peak_, allocated_);
    return ptr;
  }

  // Never throws (it runs in destructors). A pointer the allocator does not know is ignored.
  void deallocate(void* ptr) noexcept {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {
      std::fprintf(stderr, "nncore: warning: free of an unknown pointer %p ignored\n", ptr);
      return;
    }
    const size_t bytes = it->second;
    live_.erase(it);
    allocated_ -= bytes;
    try {
      free_lists_[bytes].push_back(ptr);
      cached_ += bytes;
    } catch (...) {  // no host memory for the free list: give the block back instead
      release_block(ptr);
    }
  }

  // Gives every cached block back to the system.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return AllocatorStats{allocated_, allocated_ + cached_, peak_, system_allocs_};
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = allocated_;
  }

 private:
  // Gives one block back to the system, once queued work that may use it is done (CUDA: kernels
  // on the stream); never throws, so the free path stays noexcept.
  void release_block(void* ptr) noexcept {
    try {
      backend_.wait_idle();
    } catch (...) {  // a failed wait leaves nothing better to do than give the block back
    }
    backend_.deallocate(ptr);
  }

  void release_cached_locked() {
    if (cached_ == 0) return;
    backend_.wait_idle();
    for (auto& [bytes, blocks] : free_lists_) {
      for (void* block : blocks) backend_.deallocate(block);
      cached_ -= bytes * blocks.size();
    }
    free_lists_.clear();
  }

  Backend backend_;
  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;                    // block -> its size class
  std::unordered_map<size_t, std::vector<void*>> free_lists_;  // size class -> cached blocks
  size_t allocated_ = 0, cached_ = 0, peak_ = 0;
  uint64_t system_allocs_ = 0;
};

}  // namespace nncore
