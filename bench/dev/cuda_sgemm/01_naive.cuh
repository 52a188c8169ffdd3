// 01 naive: one thread per element of C, each a K-long dot product straight from global memory.
// threadIdx.x walks the ROWS m of C, so the 32 threads of a warp read A at stride K and write C
// at stride N (32 separate transactions each) while all reading the same B element: the baseline.
#pragma once
#include "common.cuh"

__global__ void sgemm_v01_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                                 const float* __restrict__ B, float beta, float* __restrict__ C) {
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  const int n = blockIdx.y * blockDim.y + threadIdx.y;
  if (m < M && n < N) {
    float acc = 0.f;
    for (int k = 0; k < K; ++k) acc += A[m * K + k] * B[k * N + n];
    C[m * N + n] = ladder::epilogue(acc, alpha, beta, &C[m * N + n]);
  }
}

inline void sgemm_v01(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  const dim3 block(32, 32);
  const dim3 grid(ladder::ceil_div(M, 32), ladder::ceil_div(N, 32));  // y: N/32 <= 65535
  LADDER_LAUNCH(sgemm_v01_kernel, grid, block, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v01_kernel");
}
