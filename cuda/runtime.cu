// The CUDA runtime as the rest of nncore sees it (src/include/nncore/device.h): device queries,
// the one library stream, the caching device allocator and host<->device copies.
//
// Allocator: the caching allocator of src/include/nncore/caching_allocator.h over cudaMalloc.
//   * Stream ordering: all kernels and copies run on the one library stream, so a block freed
//     on the host while kernels that use it are still queued can be reused at once: any new
//     user of the block is enqueued after them. No events are needed.
//   * Out of memory: the error is cleared, the stream synchronized, every cached block freed and
//     the request retried once; a second failure throws nncore::OutOfMemoryError naming the
//     request. The allocator stays usable.
//   * The allocator, stream and staging buffers are created on first use and deliberately never
//     destroyed: at process exit the driver may already be gone.
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

DeviceProperties device_properties() {
  require_device();
  int device = 0;
  NNCORE_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  NNCORE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return {prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem};
}

std::string device_description() {
  const DeviceProperties prop = device_properties();
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

void wait_for_device() noexcept {
  if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
}

int current_device() {
  int device = 0;
  NNCORE_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// ---- caching allocator (src/include/nncore/caching_allocator.h) -----------------------------

namespace {

struct DeviceMemory {
  void* allocate(size_t bytes) {
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      detail::throw_cuda_error(concat("cudaMalloc(", bytes, " bytes)"), err);
    }
    return ptr;
  }
  void deallocate(void* ptr) {
    if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
  }
  // Blocks freed on the host may still be used by queued kernels: let them finish first.
  void wait_idle() { NNCORE_CUDA_CHECK(cudaStreamSynchronize(detail::stream())); }
  [[noreturn]] void out_of_memory(size_t requested, size_t held) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
    throw OutOfMemoryError(concat(
        "nncore: CUDA out of memory: tried to allocate ", requested, " bytes (",
        requested / double(1 << 20), " MiB); nncore holds ", held, " bytes in tensors; "
        "the device has ", free_bytes, " of ", total_bytes, " bytes free"));
  }
};

CachingAllocator<DeviceMemory>& allocator() {
  static auto* instance = new CachingAllocator<DeviceMemory>();  // never destroyed (see above)
  return *instance;
}

}  // namespace

void* device_malloc(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  if (nbytes > (size_t(1) << 62))
    throw OutOfMemoryError(concat("nncore: CUDA out of memory: tried to allocate ", nbytes,
                                  " bytes"));
  detail::stream();  // makes sure a device exists (throws the clear message otherwise)
  return allocator().allocate(nbytes);
}

void device_free(void* ptr) { allocator().deallocate(ptr); }
void empty_cache() { allocator().empty_cache(); }
AllocatorStats allocator_stats() { return allocator().stats(); }
void reset_peak_stats() { allocator().reset_peak(); }

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
