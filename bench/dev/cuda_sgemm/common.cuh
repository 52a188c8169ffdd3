// Shared helpers for the SGEMM ladder (bench/dev/cuda_sgemm). Every variant computes, row-major,
//   C[M,N] = alpha * A[M,K] * B[K,N] + beta * C[M,N]
// with A, B, C dense (leading dimensions K, N, N) and no transposes. The library kernel
// (cuda/sgemm.cu, variant 09) also handles op(A) = A^T / op(B) = B^T and arbitrary leading
// dimensions; it resolves transposes inside its global->shared loads, so the ladder leaves them out.
// BLAS convention: when beta == 0, C is write-only (never read, so NaN/garbage in C is ignored).
// Indices are 32-bit in variants 01-08: the harness skips them when M*K, K*N or M*N >= 2^31.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define LADDER_CUDA_CHECK(expr)                                                       \
  do {                                                                                \
    const cudaError_t ladder_err_ = (expr);                                           \
    if (ladder_err_ != cudaSuccess) {                                                 \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,       \
                   cudaGetErrorString(ladder_err_));                                  \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

// After a <<<>>> launch: reports a bad configuration at once (kernel faults show up at the next
// synchronizing call, which the harness checks).
#define LADDER_LAUNCH_CHECK(name)                                                     \
  do {                                                                                \
    const cudaError_t ladder_err_ = cudaGetLastError();                               \
    if (ladder_err_ != cudaSuccess) {                                                 \
      std::fprintf(stderr, "launch of %s failed: %s\n", name,                         \
                   cudaGetErrorString(ladder_err_));                                  \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

// kernel<<<grid, block, 0, stream>>>(args...), written as a macro so that the CPU emulator
// (emulate/, which runs each CUDA thread as a host thread) can compile the same launchers.
#ifndef LADDER_LAUNCH
#define LADDER_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

namespace ladder {

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The epilogue every variant shares: C = alpha * acc + beta * C, C not read when beta == 0.
__device__ __forceinline__ float epilogue(float acc, float alpha, float beta, const float* c) {
  return beta == 0.f ? alpha * acc : alpha * acc + beta * *c;
}

// float4 version for the vectorized variants (c 16-byte aligned).
__device__ __forceinline__ void epilogue4(const float* acc, float alpha, float beta, float* c) {
  float4 out = make_float4(alpha * acc[0], alpha * acc[1], alpha * acc[2], alpha * acc[3]);
  if (beta != 0.f) {
    const float4 old = *reinterpret_cast<const float4*>(c);
    out.x += beta * old.x;
    out.y += beta * old.y;
    out.z += beta * old.z;
    out.w += beta * old.w;
  }
  *reinterpret_cast<float4*>(c) = out;
}

// Variants 06-08 move 16-byte vectors: every row of A (length K), of B and of C (length N) must
// start 16-byte aligned, i.e. K % 4 == 0 and N % 4 == 0 (cudaMalloc'ed bases are 256-byte
// aligned). M is free, and partial tiles are zero-filled / store-guarded at quad granularity.
// Returns nullptr when supported, else the reason.
inline const char* vec4_unsupported(int /*M*/, int N, int K) {
  if (K % 4 != 0) return "needs K % 4 == 0 (16-byte rows of A)";
  if (N % 4 != 0) return "needs N % 4 == 0 (16-byte rows of B and C)";
  return nullptr;
}

}  // namespace ladder
