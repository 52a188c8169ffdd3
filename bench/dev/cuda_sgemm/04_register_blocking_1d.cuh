// 04 1-D register blocking: a 64x64 block tile (BK = 8), each of 512 threads computes TM = 8
// results of one column. Per k it reads one B value from shared memory into a register and reuses
// it for 8 FMAs, so shared-memory loads per FMA drop from 2 to ~1.1 and each thread has 8
// independent accumulators (ILP) instead of one dependent chain.
#pragma once
#include "common.cuh"

template <int BM, int BN, int BK, int TM>
__global__ void __launch_bounds__((BM * BN) / TM)
    sgemm_v04_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                     const float* __restrict__ B, float beta, float* __restrict__ C) {
  constexpr int NT = (BM * BN) / TM;
  static_assert(NT == BM * BK && NT == BK * BN, "each thread loads one A and one B element");
  __shared__ float As[BM][BK];
  __shared__ float Bs[BK][BN];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int t_col = tid % BN;        // this thread's column of C inside the tile
  const int t_row = tid / BN;        // its group of TM rows: rows t_row*TM .. t_row*TM+TM-1
  const int a_r = tid / BK, a_c = tid % BK;  // element of the A tile this thread loads
  const int b_r = tid / BN, b_c = tid % BN;  // element of the B tile this thread loads

  float acc[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) acc[i] = 0.f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    As[a_r][a_c] = (m0 + a_r < M && k0 + a_c < K) ? A[(m0 + a_r) * K + k0 + a_c] : 0.f;
    Bs[b_r][b_c] = (k0 + b_r < K && n0 + b_c < N) ? B[(k0 + b_r) * N + n0 + b_c] : 0.f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      const float b = Bs[kk][t_col];
#pragma unroll
      for (int i = 0; i < TM; ++i) acc[i] += As[t_row * TM + i][kk] * b;
    }
    __syncthreads();
  }
  const int n = n0 + t_col;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + t_row * TM + i;
    if (m < M && n < N) C[m * N + n] = ladder::epilogue(acc[i], alpha, beta, &C[m * N + n]);
  }
}

inline void sgemm_v04(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  constexpr int BM = 64, BN = 64, BK = 8, TM = 8;
  const dim3 grid(ladder::ceil_div(N, BN), ladder::ceil_div(M, BM));
  auto* kernel = sgemm_v04_kernel<BM, BN, BK, TM>;
  LADDER_LAUNCH(kernel, grid, (BM * BN) / TM, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v04_kernel");
}
