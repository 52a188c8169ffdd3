// 02 coalesced: the same one-thread-per-element kernel with the thread->element map swapped, so
// threadIdx.x walks the COLUMNS n. A warp now reads 32 consecutive floats of B (one 128-byte
// transaction), broadcasts one A element and writes 128 contiguous bytes of C.
#pragma once
#include "common.cuh"

__global__ void sgemm_v02_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                                 const float* __restrict__ B, float beta, float* __restrict__ C) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const int m = blockIdx.y * blockDim.y + threadIdx.y;
  if (m < M && n < N) {
    float acc = 0.f;
    for (int k = 0; k < K; ++k) acc += A[m * K + k] * B[k * N + n];
    C[m * N + n] = ladder::epilogue(acc, alpha, beta, &C[m * N + n]);
  }
}

inline void sgemm_v02(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  const dim3 block(32, 32);
  const dim3 grid(ladder::ceil_div(N, 32), ladder::ceil_div(M, 32));  // y: M/32 <= 65535
  LADDER_LAUNCH(sgemm_v02_kernel, grid, block, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v02_kernel");
}
