// 08 double buffering: 07's warptiling with two shared-memory stages. The global loads of K tile
// t+1 are issued into registers before the math on tile t and written to the other stage after
// it, so DRAM/L2 latency hides behind 16 x 128 FMAs per thread, and one barrier per K step
// (instead of two) separates the phases. Requires K % 4 == 0 and N % 4 == 0; any M.
#pragma once
#include "07_warptiling.cuh"

__global__ void __launch_bounds__(ladder::v07::NT)
    sgemm_v08_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                     const float* __restrict__ B, float beta, float* __restrict__ C) {
  using namespace ladder::v07;
  // 2 stages x (16 x 132 + 16 x 132) floats = 33 KiB of static shared memory (< 48 KiB).
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  int a_off, b_off;
  thread_offsets(tid, a_off, b_off);

  float acc[WMITER * TM][WNITER * TN];
#pragma unroll
  for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
    for (int j = 0; j < WNITER * TN; ++j) acc[i][j] = 0.f;

  const int k_tiles = (K + BK - 1) / BK;
  float4 ra[A_QUADS], rb[B_QUADS];
  if (k_tiles > 0) {
    ladder::load_quads<BM, BN, BK, NT>(M, N, K, A, B, m0, n0, 0, tid, ra, rb);
    store_tiles(As[0], Bs[0], tid, ra, rb);
  }
  __syncthreads();
  for (int t = 0; t < k_tiles; ++t) {
    const int cur = t & 1;
    const bool has_next = t + 1 < k_tiles;
    if (has_next)  // in flight during the math below
      ladder::load_quads<BM, BN, BK, NT>(M, N, K, A, B, m0, n0, (t + 1) * BK, tid, ra, rb);
    compute_tile(As[cur], Bs[cur], a_off, b_off, acc);
    // Stage cur^1 was last read in step t-1, which every thread finished before the barrier
    // that closed step t-1; the barrier below publishes these stores before step t+1 reads them.
    if (has_next) store_tiles(As[cur ^ 1], Bs[cur ^ 1], tid, ra, rb);
    __syncthreads();
  }
  store_c(M, N, alpha, beta, C, m0, n0, a_off, b_off, acc);
}

inline const char* sgemm_v08_unsupported(int M, int N, int K) {
  return ladder::vec4_unsupported(M, N, K);
}

inline void sgemm_v08(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  using namespace ladder::v07;
  const dim3 grid(ladder::ceil_div(N, BN), ladder::ceil_div(M, BM));
  LADDER_LAUNCH(sgemm_v08_kernel, grid, NT, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v08_kernel");
}
