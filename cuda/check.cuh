// Internal to the CUDA backend: error checking for runtime calls and kernel launches.
//
//   NNCORE_CUDA_CHECK(cudaMemcpyAsync(...));      // throws on any error, naming the call
//   kernel<<<grid, block, 0, stream()>>>(...);
//   NNCORE_CUDA_LAUNCH_CHECK("sgemm_128x128");    // throws naming the kernel
//
// Errors become std::runtime_error("nncore: <what> failed: <cudaGetErrorString>"), except
// cudaErrorMemoryAllocation, which becomes nncore::OutOfMemoryError (Python MemoryError).
// Ops never synchronize the device. Because launches are asynchronous, a fault inside a kernel
// (e.g. an illegal address) is reported by the next call that checks; set the environment
// variable NNCORE_CUDA_LAUNCH_BLOCKING=1 to synchronize after every launch and name the kernel.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "nncore/check.h"

namespace nncore::cuda::detail {

// The one library stream (created on first use; defined in runtime.cu).
cudaStream_t stream();

[[noreturn]] inline void throw_cuda_error(const std::string& what, cudaError_t err) {
  std::string message = "nncore: " + what + " failed: " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) throw ::nncore::OutOfMemoryError(message);
  throw std::runtime_error(message);
}

inline bool launch_blocking() {
  static const bool enabled = [] {
    const char* value = std::getenv("NNCORE_CUDA_LAUNCH_BLOCKING");
    return value != nullptr && value[0] == '1';
  }();
  return enabled;
}

// Call right after a <<<>>> launch. cudaGetLastError both reports and clears launch errors
// (bad configuration, too many resources); sticky errors from earlier faults show up here too.
inline void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(std::string("CUDA kernel ") + kernel, err);
  if (launch_blocking()) {
    err = cudaStreamSynchronize(stream());
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw_cuda_error(std::string("CUDA kernel ") + kernel, err);
    }
  }
}

}  // namespace nncore::cuda::detail

#define NNCORE_CUDA_CHECK(expr)                                            \
  do {                                                                     \
    const cudaError_t nncore_cuda_err_ = (expr);                           \
    if (nncore_cuda_err_ != cudaSuccess) {                                 \
      (void)cudaGetLastError(); /* clear it unless it is sticky */         \
      ::nncore::cuda::detail::throw_cuda_error(#expr, nncore_cuda_err_);   \
    }                                                                      \
  } while (0)

#define NNCORE_CUDA_LAUNCH_CHECK(kernel_name) ::nncore::cuda::detail::check_launch(kernel_name)
