// Shared helpers for the SGEMM ladder (bench/dev/cuda_sgemm). Every variant computes, row-major,
//   C[M,N] = alpha * A[M,K] * B[K,N] + beta * C[M,N]
// with A, B, C dense (leading dimensions K, N, N) and no transposes. The library kernel
// (cuda/sgemm.cu, variant 09) also handles op(A) = A^T / op(B) = B^T and arbitrary leading
// dimensions; it resolves transposes inside its global->shared loads, so the ladder leaves them out.
// BLAS convention: when beta == 0, C is write-only (never read, so NaN/garbage in C is ignored).
// Indices are 32-bit in variants 01-08: the harness skips them when M*K, K*N or M*N >= 2^31.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../../../cuda/tensor_cores.cuh"

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

// Global -> registers for the float4 rungs (07, 08, 10): the BM x BK tile of A at (m0, k0) and
// the BK x BN tile of B at (k0, n0) as quads of 4 floats contiguous in memory, zero-filled
// outside the matrices (K % 4 == 0 and N % 4 == 0 make every quad wholly inside or outside).
// Quad q = tid + r * NT of the A tile: row q / (BK/4), k (q % (BK/4)) * 4; of the B tile: row
// q / (BN/4), n (q % (BN/4)) * 4.
template <int BM, int BN, int BK, int NT>
__device__ __forceinline__ void load_quads(int M, int N, int K, const float* __restrict__ A,
                                           const float* __restrict__ B, int m0, int n0, int k0,
                                           int tid, float4 (&ra)[BM * BK / 4 / NT],
                                           float4 (&rb)[BK * BN / 4 / NT]) {
  static_assert(BM * BK % (4 * NT) == 0 && BK * BN % (4 * NT) == 0, "even tile loads");
#pragma unroll
  for (int r = 0; r < BM * BK / 4 / NT; ++r) {
    const int q = tid + r * NT;
    const int m = m0 + q / (BK / 4), k = k0 + (q % (BK / 4)) * 4;
    ra[r] = (m < M && k < K) ? *reinterpret_cast<const float4*>(&A[m * K + k])
                             : make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int r = 0; r < BK * BN / 4 / NT; ++r) {
    const int q = tid + r * NT;
    const int k = k0 + q / (BN / 4), n = n0 + (q % (BN / 4)) * 4;
    rb[r] = (k < K && n < N) ? *reinterpret_cast<const float4*>(&B[k * N + n])
                             : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

// TF32 tensor cores (variant 10): the library's own wrappers of cvt.rna.tf32 and mma.sync.
using ::nncore::cuda::detail::ptx_cvt_rna_tf32;
using ::nncore::cuda::detail::ptx_mma_m16n8k8_tf32;

}  // namespace ladder
