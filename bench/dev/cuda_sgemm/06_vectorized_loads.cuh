// 06 vectorized loads: 05's tiling, but global loads/stores move float4 (one 16-byte LDG per
// thread per operand per K step), A is transposed on its way into shared memory (As[k][m]) so the
// compute loop reads both operands as float4 (LDS.128): 4x fewer load instructions everywhere.
// Requires K % 4 == 0 and N % 4 == 0 (see ladder::vec4_unsupported); any M.
#pragma once
#include "common.cuh"

template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    sgemm_v06_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                     const float* __restrict__ B, float beta, float* __restrict__ C) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int PAD = 4;  // floats added per As row: rows stay 16-byte aligned, and the two k-quads
                          // of a warp's transposing store land 16 banks apart (conflict-free)
  static_assert(BM * BK / 4 == NT && BK * BN / 4 == NT, "one float4 of A and of B per thread");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 granularity");
  __shared__ __align__(16) float As[BK][BM + PAD];
  __shared__ __align__(16) float Bs[BK][BN];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int a_r = tid / (BK / 4), a_k = (tid % (BK / 4)) * 4;  // A quad: row a_r, k a_k..a_k+3
  const int b_k = tid / (BN / 4), b_n = (tid % (BN / 4)) * 4;  // B quad: row b_k, n b_n..b_n+3

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    // K % 4 == 0 and quads start at multiples of 4, so a quad is wholly inside or outside.
    float4 va = make_float4(0.f, 0.f, 0.f, 0.f), vb = va;
    if (m0 + a_r < M && k0 + a_k < K)
      va = *reinterpret_cast<const float4*>(&A[(m0 + a_r) * K + k0 + a_k]);
    if (k0 + b_k < K && n0 + b_n < N)
      vb = *reinterpret_cast<const float4*>(&B[(k0 + b_k) * N + n0 + b_n]);
    As[a_k + 0][a_r] = va.x;
    As[a_k + 1][a_r] = va.y;
    As[a_k + 2][a_r] = va.z;
    As[a_k + 3][a_r] = va.w;
    *reinterpret_cast<float4*>(&Bs[b_k][b_n]) = vb;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 t = *reinterpret_cast<const float4*>(&As[kk][ty * TM + i]);
        a[i] = t.x, a[i + 1] = t.y, a[i + 2] = t.z, a[i + 3] = t.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[kk][tx * TN + j]);
        b[j] = t.x, b[j + 1] = t.y, b[j + 2] = t.z, b[j + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; j += 4) {
      const int n = n0 + tx * TN + j;
      if (n < N) ladder::epilogue4(&acc[i][j], alpha, beta, &C[m * N + n]);  // N%4: whole quad
    }
  }
}

inline const char* sgemm_v06_unsupported(int M, int N, int K) {
  return ladder::vec4_unsupported(M, N, K);
}

inline void sgemm_v06(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
  const dim3 grid(ladder::ceil_div(N, BN), ladder::ceil_div(M, BM));
  auto* kernel = sgemm_v06_kernel<BM, BN, BK, TM, TN>;
  LADDER_LAUNCH(kernel, grid, (BM / TM) * (BN / TN), stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v06_kernel");
}
