// Internal to the CUDA backend: the layout change between NCHW and the (C, N*H*W) layout that
// the batched convolution GEMMs produce (defined in bias.cu, used by conv.cu). The CPU
// convolution works per image plane and never needs it. Declarations only, so that the CPU
// emulation harness (bench/dev/cuda_emulate) can include it as it is.
#pragma once
#include <cstdint>

namespace nncore::cuda {

// y[b, a, i] = x[a, b, i] for x of shape (A, B, inner): swaps the two outer axes.
void swap_outer_axes(const float* x, float* y, int64_t A, int64_t B, int64_t inner);

}  // namespace nncore::cuda
