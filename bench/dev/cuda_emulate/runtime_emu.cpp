// Emulated stand-in for cuda/runtime.cu (the device allocator, copies and the library stream):
// device memory is host memory, so the kernels' translation units need only the library stream
// (check.cuh: nncore::cuda::detail::stream()). Nothing else of nncore/device.h is used by them.
#include <cuda_runtime.h>

namespace nncore::cuda::detail {
cudaStream_t stream() { return nullptr; }  // the one (emulated, synchronous) stream
}  // namespace nncore::cuda::detail
