// 07 warptiling: a third tiling level between block and thread. A 128x128 block (BK = 16, 128
// threads = 4 warps) is split into 64x64 warp tiles; each warp sweeps its tile in WNITER = 4
// sub-steps of 64x16, each thread holding an 8x4 piece per sub-step (8x16 = 128 results). A warp's
// shared-memory reads stay inside its own 64-row/64-column slice (broadcast-friendly, few bank
// conflicts), and more independent FMAs per loaded value give the scheduler ILP.
// Requires K % 4 == 0 and N % 4 == 0 (ladder::vec4_unsupported); any M.
#pragma once
#include "common.cuh"

namespace ladder::v07 {
constexpr int BM = 128, BN = 128, BK = 16;  // block tile
constexpr int WM = 64, WN = 64;             // warp tile
constexpr int WNITER = 4;                   // warp sub-steps along n
constexpr int TM = 8, TN = 4;               // thread tile per sub-step
constexpr int NT = 128;                     // threads per block
constexpr int PAD = 4;                      // floats added per As/Bs row (16-byte aligned rows)
constexpr int WMITER = (WM * WN) / (32 * TM * TN * WNITER);  // warp sub-steps along m (= 1)
constexpr int WSUBM = WM / WMITER, WSUBN = WN / WNITER;     // warp sub-tile (64 x 16)
constexpr int A_QUADS = BM * BK / 4 / NT;  // float4 loads of A per thread per K step (4)
constexpr int B_QUADS = BK * BN / 4 / NT;  // same for B (4)
static_assert((BM / WM) * (BN / WN) == NT / 32, "one warp per warp tile");
static_assert(WMITER >= 1 && WMITER * WSUBM == WM && WNITER * WSUBN == WN, "warp sub-tiles");
static_assert((WSUBM / TM) * (WSUBN / TN) == 32, "32 threads cover a warp sub-tile");
static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 granularity");

// Registers -> shared: A transposed to As[k][m] (4 scalar stores), B as is (one float4 store).
__device__ __forceinline__ void store_tiles(float (*As)[BM + PAD], float (*Bs)[BN + PAD], int tid,
                                            const float4 (&ra)[A_QUADS],
                                            const float4 (&rb)[B_QUADS]) {
#pragma unroll
  for (int r = 0; r < A_QUADS; ++r) {
    const int q = tid + r * NT;
    const int m = q / (BK / 4), k = (q % (BK / 4)) * 4;
    As[k + 0][m] = ra[r].x;
    As[k + 1][m] = ra[r].y;
    As[k + 2][m] = ra[r].z;
    As[k + 3][m] = ra[r].w;
  }
#pragma unroll
  for (int r = 0; r < B_QUADS; ++r) {
    const int q = tid + r * NT;
    *reinterpret_cast<float4*>(&Bs[q / (BN / 4)][(q % (BN / 4)) * 4]) = rb[r];
  }
}

// acc += As * Bs over one BK slice, for this thread's WMITER*TM x WNITER*TN results.
// a_off / b_off: first m / n of this thread inside the block tile (sub-step 0).
__device__ __forceinline__ void compute_tile(const float (*As)[BM + PAD],
                                             const float (*Bs)[BN + PAD], int a_off, int b_off,
                                             float (&acc)[WMITER * TM][WNITER * TN]) {
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    float a[WMITER * TM], b[WNITER * TN];
#pragma unroll
    for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 t = *reinterpret_cast<const float4*>(&As[kk][a_off + wm * WSUBM + i]);
        a[wm * TM + i] = t.x, a[wm * TM + i + 1] = t.y, a[wm * TM + i + 2] = t.z,
                    a[wm * TM + i + 3] = t.w;
      }
#pragma unroll
    for (int wn = 0; wn < WNITER; ++wn)
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[kk][b_off + wn * WSUBN + j]);
        b[wn * TN + j] = t.x, b[wn * TN + j + 1] = t.y, b[wn * TN + j + 2] = t.z,
                    b[wn * TN + j + 3] = t.w;
      }
#pragma unroll
    for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
      for (int j = 0; j < WNITER * TN; ++j) acc[i][j] += a[i] * b[j];
  }
}

// Thread (warp w, lane l): warp tile (w / (BN/WN), w % (BN/WN)); inside each warp sub-tile the
// thread owns rows t_row*TM.. and columns t_col*TN.., t_row = l / (WSUBN/TN), t_col = l % (WSUBN/TN).
__device__ __forceinline__ void thread_offsets(int tid, int& a_off, int& b_off) {
  const int warp = tid / 32, lane = tid % 32;
  const int w_row = warp / (BN / WN), w_col = warp % (BN / WN);
  const int t_row = lane / (WSUBN / TN), t_col = lane % (WSUBN / TN);
  a_off = w_row * WM + t_row * TM;
  b_off = w_col * WN + t_col * TN;
}

__device__ __forceinline__ void store_c(int M, int N, float alpha, float beta, float* C, int m0,
                                        int n0, int a_off, int b_off,
                                        const float (&acc)[WMITER * TM][WNITER * TN]) {
#pragma unroll
  for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + a_off + wm * WSUBM + i;
      if (m >= M) continue;
#pragma unroll
      for (int wn = 0; wn < WNITER; ++wn)
#pragma unroll
        for (int j = 0; j < TN; j += 4) {
          const int n = n0 + b_off + wn * WSUBN + j;
          if (n < N) epilogue4(&acc[wm * TM + i][wn * TN + j], alpha, beta, &C[m * N + n]);
        }
    }
}
}  // namespace ladder::v07

__global__ void __launch_bounds__(ladder::v07::NT)
    sgemm_v07_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                     const float* __restrict__ B, float beta, float* __restrict__ C) {
  using namespace ladder::v07;
  __shared__ __align__(16) float As[BK][BM + PAD];
  __shared__ __align__(16) float Bs[BK][BN + PAD];
  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  int a_off, b_off;
  thread_offsets(tid, a_off, b_off);

  float acc[WMITER * TM][WNITER * TN];
#pragma unroll
  for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
    for (int j = 0; j < WNITER * TN; ++j) acc[i][j] = 0.f;

  float4 ra[A_QUADS], rb[B_QUADS];
  for (int k0 = 0; k0 < K; k0 += BK) {
    ladder::load_quads<BM, BN, BK, NT>(M, N, K, A, B, m0, n0, k0, tid, ra, rb);
    store_tiles(As, Bs, tid, ra, rb);
    __syncthreads();
    compute_tile(As, Bs, a_off, b_off, acc);
    __syncthreads();
  }
  store_c(M, N, alpha, beta, C, m0, n0, a_off, b_off, acc);
}

inline const char* sgemm_v07_unsupported(int M, int N, int K) {
  return ladder::vec4_unsupported(M, N, K);
}

inline void sgemm_v07(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  using namespace ladder::v07;
  const dim3 grid(ladder::ceil_div(N, BN), ladder::ceil_div(M, BM));
  LADDER_LAUNCH(sgemm_v07_kernel, grid, NT, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v07_kernel");
}
