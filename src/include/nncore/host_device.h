// Small functions that the CPU kernels and their CUDA twins share, so that both devices compute
// the same thing from one definition: compiled as __host__ __device__ by nvcc, inline otherwise.
#pragma once
#include <cfloat>
#include <cmath>

#if defined(__CUDACC__)
#define NNCORE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define NNCORE_HOST_DEVICE inline
#endif

namespace nncore {

// Optimizer state (SGD's momentum buffers, Adam's moments) is stored with subnormals flushed to a
// zero of the same sign. The state of a parameter whose gradient stays 0 (a dead ReLU unit)
// decays geometrically into the subnormal range within ~800 steps, and there every x86 FP
// operation on it takes a microcode assist, ~100x slower. A subnormal entry would move its
// parameter by under lr * FLT_MIN (~1e-39): no parameter above ~1e-31 changes.
NNCORE_HOST_DEVICE float flush_subnormal(float x) {
  return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}

}  // namespace nncore
