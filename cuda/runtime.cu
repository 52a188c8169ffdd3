// The CUDA runtime as the rest of nncore sees it (src/include/nncore/device.h): device queries,
// the one library stream, the caching device allocator and host<->device copies.
//
// Allocator design
//   * Requests are rounded to a size class: multiples of 512 B up to 1 MiB, multiples of 2 MiB
//     above. A freed block goes onto the free list of its class and is handed out again, without
//     cudaMalloc, to the next request of the same class; once a training step has run once,
//     every later step allocates from the cache.
//   * Stream ordering: all kernels and copies run on the one library stream, so a block freed
//     on the host while kernels that use it are still queued can be reused at once: any new
//     user of the block is enqueued after them. No events are needed.
//   * cudaMalloc failing with cudaErrorMemoryAllocation: clear the error, synchronize the stream,
//     cudaFree every cached block, retry once; a second failure throws nncore::OutOfMemoryError
//     naming the request. The allocator is untouched by the failure and stays usable.
//   * One std::mutex guards all of it. The allocator, stream and staging buffers are created on
//     first use and deliberately never destroyed: at process exit the driver may already be gone.
//
// Copies
//   * host->device: the source is copied into a pinned staging slot (2 slots x 4 MiB, reused,
//     used alternately, chunked for larger transfers) and an async DMA is enqueued; the call
//     returns as soon as the source has been read, without synchronizing. Before a slot is
//     refilled, the host waits on the event recorded after its previous DMA.
//   * device->host: chunks are DMA'd into the pinned slots (double buffered) and copied out once
//     each chunk's event has completed; returns with the data on the host.
//   * If pinned memory cannot be had, both fall back to cudaMemcpyAsync + stream synchronize.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "check.cuh"
#include "nncore/check.h"
#include "nncore/device.h"

namespace nncore::cuda {

// ---- devices --------------------------------------------------------------------------------

int device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: clear the error, report none
    return 0;
  }
  return count;
}

void require_device() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(
        std::string("nncore: CUDA device requested but none is available: ") +
        cudaGetErrorString(err));
  }
  if (count <= 0)
    throw std::runtime_error(
        "nncore: CUDA device requested but none is available: no CUDA-capable device is "
        "detected");
}

std::string device_description() {
  require_device();
  int device = 0;
  NNCORE_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  NNCORE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return concat(prop.name, ", sm_", prop.major, prop.minor);
}

// ---- the library stream ---------------------------------------------------------------------

namespace detail {
cudaStream_t stream() {
  // A function-local static: initialized once, thread-safely; if creation throws (no device),
  // the next call tries again.
  static cudaStream_t s = [] {
    require_device();
    cudaStream_t created = nullptr;
    // Non-blocking: no implicit synchronization with the legacy default stream.
    NNCORE_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    return created;
  }();
  return s;
}
}  // namespace detail

void* current_stream() { return static_cast<void*>(detail::stream()); }

void synchronize() { NNCORE_CUDA_CHECK(cudaStreamSynchronize(detail::stream())); }

// ---- caching allocator ----------------------------------------------------------------------

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;   // 1 MiB
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;   // 2 MiB

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }
size_t size_class(size_t n) {
  return n <= kSmallLimit ? round_up(n, kSmallRound) : round_up(n, kLargeRound);
}

struct Allocator {
  std::mutex mutex;
  std::unordered_map<void*, size_t> live;                   // block -> its size class
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // size class -> cached blocks
  size_t allocated = 0;  // bytes in live blocks
  size_t cached = 0;     // bytes in free lists
  size_t peak = 0;
  uint64_t device_mallocs = 0;

  // Gives every cached block back to the driver. Caller holds the mutex.
  void release_cached_locked() {
    if (cached == 0) return;
    // Blocks freed on the host may still be in use by queued kernels; let them finish.
    NNCORE_CUDA_CHECK(cudaStreamSynchronize(detail::stream()));
    for (auto& entry : free_lists) {
      std::vector<void*>& blocks = entry.second;
      while (!blocks.empty()) {  // pop before freeing: an error leaves no dangling entry
        void* block = blocks.back();
        blocks.pop_back();
        cached -= entry.first;
        NNCORE_CUDA_CHECK(cudaFree(block));
      }
    }
    free_lists.clear();
  }

  // cudaMalloc with one retry after emptying the cache. Caller holds the mutex.
  void* device_malloc_locked(size_t bytes, size_t requested) {
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached_locked();
      err = cudaMalloc(&ptr, bytes);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
      throw OutOfMemoryError(concat(
          "nncore: CUDA out of memory: tried to allocate ", requested, " bytes (",
          requested / double(1 << 20), " MiB); nncore holds ", allocated, " bytes in tensors; "
          "the device has ", free_bytes, " of ", total_bytes, " bytes free"));
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      detail::throw_cuda_error(concat("cudaMalloc(", bytes, " bytes)"), err);
    }
    ++device_mallocs;
    return ptr;
  }
};

Allocator& allocator() {
  static Allocator* instance = new Allocator();  // never destroyed (see the header comment)
  return *instance;
}

}  // namespace

void* device_malloc(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  if (nbytes > (size_t(1) << 62))
    throw OutOfMemoryError(concat("nncore: CUDA out of memory: tried to allocate ", nbytes,
                                  " bytes"));
  detail::stream();  // makes sure a device exists (throws the clear message otherwise)
  const size_t bytes = size_class(nbytes);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  void* ptr = nullptr;
  auto it = a.free_lists.find(bytes);
  if (it != a.free_lists.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    a.cached -= bytes;
  } else {
    ptr = a.device_malloc_locked(bytes, nbytes);
  }
  try {
    a.live.emplace(ptr, bytes);
  } catch (...) {  // host bookkeeping failed (bad_alloc): give the block back, report
    if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
    throw;
  }
  a.allocated += bytes;
  a.peak = std::max(a.peak, a.allocated);
  return ptr;
}

// Never throws (it runs in destructors). A pointer the allocator does not know is ignored.
void device_free(void* ptr) {
  if (ptr == nullptr) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.live.find(ptr);
  if (it == a.live.end()) {
    std::fprintf(stderr, "nncore: warning: device_free of an unknown pointer %p ignored\n", ptr);
    return;
  }
  const size_t bytes = it->second;
  a.live.erase(it);
  a.allocated -= bytes;
  try {
    a.free_lists[bytes].push_back(ptr);
    a.cached += bytes;
  } catch (...) {  // no host memory for the free list: give the block back instead
    if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
  }
}

void empty_cache() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.release_cached_locked();
}

AllocatorStats allocator_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  return AllocatorStats{a.allocated, a.allocated + a.cached, a.peak, a.device_mallocs};
}

void reset_peak_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.peak = a.allocated;
}

// ---- copies ---------------------------------------------------------------------------------

namespace {

constexpr size_t kSlotBytes = size_t(4) << 20;  // per staging slot
constexpr int kSlots = 2;

struct Staging {
  std::mutex mutex;
  bool initialized = false;
  bool available = false;  // false: pinned memory could not be had, use the fallback
  char* slot[kSlots] = {nullptr, nullptr};
  cudaEvent_t done[kSlots] = {nullptr, nullptr};  // recorded after the last DMA using the slot
  int next = 0;

  // Caller holds the mutex.
  void init_locked() {
    if (initialized) return;
    detail::stream();
    initialized = true;
    void* pinned = nullptr;
    if (cudaMallocHost(&pinned, kSlots * kSlotBytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return;  // available stays false
    }
    for (int i = 0; i < kSlots; ++i) {
      slot[i] = static_cast<char*>(pinned) + i * kSlotBytes;
      if (cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
      }
    }
    available = true;
  }
};

Staging& staging() {
  static Staging* instance = new Staging();  // never destroyed
  return *instance;
}

}  // namespace

void copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mutex);
  st.init_locked();
  cudaStream_t s = detail::stream();
  if (!st.available) {
    NNCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
    NNCORE_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  auto* d = static_cast<char*>(dst);
  const auto* h = static_cast<const char*>(src);
  for (size_t off = 0; off < nbytes; off += kSlotBytes) {
    const size_t len = std::min(kSlotBytes, nbytes - off);
    const int i = st.next;
    st.next = (st.next + 1) % kSlots;
    // Wait until the previous DMA that used this slot (either direction) has finished. An event
    // never recorded counts as complete.
    NNCORE_CUDA_CHECK(cudaEventSynchronize(st.done[i]));
    std::memcpy(st.slot[i], h + off, len);
    NNCORE_CUDA_CHECK(cudaMemcpyAsync(d + off, st.slot[i], len, cudaMemcpyHostToDevice, s));
    NNCORE_CUDA_CHECK(cudaEventRecord(st.done[i], s));
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mutex);
  st.init_locked();
  cudaStream_t s = detail::stream();
  if (!st.available) {
    NNCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
    NNCORE_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  auto* h = static_cast<char*>(dst);
  const auto* d = static_cast<const char*>(src);
  const size_t chunks = (nbytes + kSlotBytes - 1) / kSlotBytes;
  // Chunk c uses slot c % 2. Chunk c+1's DMA is enqueued before chunk c is copied out, so the
  // DMA of one chunk overlaps the host memcpy of the previous one. A slot is refilled only after
  // the host finished reading it (chunk c+2 is enqueued after chunk c was copied out); earlier
  // host->device DMAs from a slot precede these DMAs in stream order.
  auto enqueue = [&](size_t c) {
    const size_t off = c * kSlotBytes;
    const size_t len = std::min(kSlotBytes, nbytes - off);
    const int i = static_cast<int>(c % kSlots);
    NNCORE_CUDA_CHECK(cudaMemcpyAsync(st.slot[i], d + off, len, cudaMemcpyDeviceToHost, s));
    NNCORE_CUDA_CHECK(cudaEventRecord(st.done[i], s));
  };
  enqueue(0);
  for (size_t c = 0; c < chunks; ++c) {
    if (c + 1 < chunks) enqueue(c + 1);
    const size_t off = c * kSlotBytes;
    const size_t len = std::min(kSlotBytes, nbytes - off);
    const int i = static_cast<int>(c % kSlots);
    NNCORE_CUDA_CHECK(cudaEventSynchronize(st.done[i]));
    std::memcpy(h + off, st.slot[i], len);
  }
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  NNCORE_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, detail::stream()));
}

void memset_zero(void* dst, size_t nbytes) {
  if (nbytes == 0) return;
  NNCORE_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, detail::stream()));
}

}  // namespace nncore::cuda
