// Emulated stand-in for cuda/runtime.cu (the device allocator, copies and the library stream):
// device memory is host memory, so the kernels' translation units need only the library stream
// (check.cuh: nncore::cuda::detail::stream()) and, for sgemm's split-K workspace, the allocator
// of nncore/device.h. Nothing else of that header is used by them.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <new>

#include "nncore/device.h"

namespace nncore::cuda {
namespace detail {
cudaStream_t stream() { return nullptr; }  // the one (emulated, synchronous) stream
}  // namespace detail

// Host memory filled with NaN, so that a kernel reading workspace it never wrote shows NaN.
void* device_malloc(size_t nbytes) {
  float* p = static_cast<float*>(std::malloc(nbytes > 0 ? nbytes : 1));
  if (p == nullptr) throw std::bad_alloc();
  for (size_t i = 0; i < nbytes / sizeof(float); ++i) p[i] = NAN;
  return p;
}
void device_free(void* ptr) { std::free(ptr); }
}  // namespace nncore::cuda
