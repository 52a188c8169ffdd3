// The CUDA runtime as the rest of the library sees it: device memory, copies, the one stream,
// device queries. Implemented in cuda/runtime.cu; declared only when built with CUDA, and this
// header never includes CUDA's own headers, so plain C++ files can use it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "nncore/caching_allocator.h"

namespace nncore::cuda {

// Number of usable devices; 0 (never an exception) when there is no driver or no GPU.
int device_count();
// The current device's properties, with torch.cuda.get_device_properties's names; throws
// RuntimeError without a device.
struct DeviceProperties {
  std::string name;           // "NVIDIA H100 80GB HBM3"
  int major, minor;           // compute capability
  int multi_processor_count;  // SMs
  size_t total_memory;        // bytes
};
DeviceProperties device_properties();
// "NVIDIA H100 80GB HBM3, sm_90" for the current device; throws RuntimeError without one.
std::string device_description();
// Throws RuntimeError with a clear message when no CUDA device can be used.
void require_device();

// Caching, stream-ordered allocator: blocks are reused by size class once freed; a block freed on
// the host may be handed out again at once because every kernel runs on the one library stream.
// Out of memory (after emptying the cache and retrying) throws nncore::OutOfMemoryError.
void* device_malloc(size_t nbytes);
void device_free(void* ptr);
void empty_cache();  // gives cached free blocks back to the driver
AllocatorStats allocator_stats();
void reset_peak_stats();

// Copies on the library stream. Host->device and device->host go through pinned staging for
// large transfers; copy_to_host returns once the data is on the host (it synchronizes the stream).
void copy_host_to_device(void* dst, const void* src, size_t nbytes);
void copy_device_to_host(void* dst, const void* src, size_t nbytes);
void copy_device_to_device(void* dst, const void* src, size_t nbytes);
void memset_zero(void* dst, size_t nbytes);

// The library's stream as an opaque handle (a cudaStream_t), for DLPack consumers.
void* current_stream();
void synchronize();  // waits for all work on the library stream
// Waits for all work on the device, every stream, ignoring errors: for DLPack deleters, which
// run in destructors and cannot know the other framework's stream.
void wait_for_device() noexcept;
int current_device();  // the device nncore's stream and allocations are on (DLPack's device id)

// Math mode (implemented in cuda/sgemm.cu, which reads it): with allow, FP32 GEMMs whose 128x128
// tiles fill the GPU (sgemm, linear_forward, the convolutions' GEMMs) run on TF32 tensor cores,
// operands rounded to 10 mantissa bits, FP32 accumulation, on compute capability 8.0 and newer
// (older GPUs stay FP32). Off by default.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace nncore::cuda
