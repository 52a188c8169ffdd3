// 10 TF32 tensor cores (opt-in precision: NOT an FP32 GEMM). 08's double-buffered 128x128 block
// tile, with the inner products on the tensor cores: mma.sync m16n8k8 with TF32 operands and FP32
// accumulators instead of FFMA. Each element of A and B is rounded to TF32 (10 mantissa bits,
// cvt.rna) once, on its way into shared memory, so C carries a relative error of about 2^-11 per
// product; the harness checks it at --tol-tf32 and times it against cuBLAS in TF32 mode
// (CUBLAS_TF32_TENSOR_OP_MATH), the matching yardstick.
//
// 256 threads = 8 warps in a 2 x 4 grid, warp tile 64 x 32 = 4 x 4 mma tiles of 16 x 8; per BK = 16
// slice a warp issues 2 k-steps x 16 mma. Shared layouts As[m][k] (row stride BK + 4) and
// Bs[k][n] (row stride BN + 8) make both fragment loads conflict-free: lane 4g + t reads bank
// (20g + t) % 32 of As and (8t + g) % 32 of Bs, 32 distinct banks each.
// Requires K % 4 == 0 and N % 4 == 0 (ladder::vec4_unsupported), any M, and sm_80 or newer.
#pragma once
#include "common.cuh"

namespace ladder::v10 {
constexpr int BM = 128, BN = 128, BK = 16;  // block tile
constexpr int WM = 64, WN = 32;             // warp tile
constexpr int MMA_M = 16, MMA_N = 8, MMA_K = 8;
constexpr int MI = WM / MMA_M, NI = WN / MMA_N;  // mma tiles per warp tile (4 x 4)
constexpr int NT = 256;                          // threads per block
constexpr int A_STRIDE = BK + 4, B_STRIDE = BN + 8;  // floats per As / Bs row
constexpr int A_QUADS = BM * BK / 4 / NT;  // float4 loads of A per thread per K step (2)
constexpr int B_QUADS = BK * BN / 4 / NT;  // same for B (2)
static_assert((BM / WM) * (BN / WN) == NT / 32, "one warp per warp tile");
static_assert(BK % MMA_K == 0 && A_STRIDE % 4 == 0 && B_STRIDE % 4 == 0, "16-byte rows");

__device__ __forceinline__ uint4 to_tf32(float4 v) {
  return make_uint4(ptx_cvt_rna_tf32(v.x), ptx_cvt_rna_tf32(v.y), ptx_cvt_rna_tf32(v.z),
                    ptx_cvt_rna_tf32(v.w));
}

// Registers -> shared, rounded to TF32: A as is in As[m][k], B as is in Bs[k][n] (16-byte stores).
__device__ __forceinline__ void store_tiles(uint32_t (*As)[A_STRIDE], uint32_t (*Bs)[B_STRIDE],
                                            int tid, const float4 (&ra)[A_QUADS],
                                            const float4 (&rb)[B_QUADS]) {
#pragma unroll
  for (int r = 0; r < A_QUADS; ++r) {
    const int q = tid + r * NT;
    *reinterpret_cast<uint4*>(&As[q / (BK / 4)][(q % (BK / 4)) * 4]) = to_tf32(ra[r]);
  }
#pragma unroll
  for (int r = 0; r < B_QUADS; ++r) {
    const int q = tid + r * NT;
    *reinterpret_cast<uint4*>(&Bs[q / (BN / 4)][(q % (BN / 4)) * 4]) = to_tf32(rb[r]);
  }
}

// acc += As * Bs over one BK slice for this warp's 64 x 32 tile. wm0 / wn0: the warp tile's
// first row / column inside the block tile; g = lane / 4, t = lane % 4 (the fragment layout in
// common.cuh).
__device__ __forceinline__ void compute_tile(const uint32_t (*As)[A_STRIDE],
                                             const uint32_t (*Bs)[B_STRIDE], int wm0, int wn0,
                                             int g, int t, float (&acc)[MI][NI][4]) {
#pragma unroll
  for (int ks = 0; ks < BK; ks += MMA_K) {
    uint32_t a[MI][4], b[NI][2];
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      const int m = wm0 + i * MMA_M + g;
      a[i][0] = As[m][ks + t];
      a[i][1] = As[m + 8][ks + t];
      a[i][2] = As[m][ks + t + 4];
      a[i][3] = As[m + 8][ks + t + 4];
    }
#pragma unroll
    for (int j = 0; j < NI; ++j) {
      const int n = wn0 + j * MMA_N + g;
      b[j][0] = Bs[ks + t][n];
      b[j][1] = Bs[ks + t + 4][n];
    }
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j) ptx_mma_m16n8k8_tf32(acc[i][j], a[i], b[j]);
  }
}

// acc[i][j][r] is C[row][col] with row = m0 + wm0 + i*16 + g + 8*(r/2), col = n0 + wn0 + j*8 + 2t
// + r%2. col is even and N % 4 == 0, so col < N implies col + 1 < N.
__device__ __forceinline__ void store_c(int M, int N, float alpha, float beta, float* C, int m0,
                                        int n0, int wm0, int wn0, int g, int t,
                                        const float (&acc)[MI][NI][4]) {
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + wm0 + i * MMA_M + g + 8 * half;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int n = n0 + wn0 + j * MMA_N + 2 * t;
        if (n >= N) continue;
        float* c = &C[m * N + n];
        c[0] = epilogue(acc[i][j][2 * half], alpha, beta, c);
        c[1] = epilogue(acc[i][j][2 * half + 1], alpha, beta, c + 1);
      }
    }
}
}  // namespace ladder::v10

__global__ void __launch_bounds__(ladder::v10::NT)
    sgemm_v10_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                     const float* __restrict__ B, float beta, float* __restrict__ C) {
  using namespace ladder::v10;
  // 2 stages x (128 x 20 + 16 x 136) words = 37 KiB of static shared memory (< 48 KiB).
  __shared__ __align__(16) uint32_t As[2][BM][A_STRIDE];
  __shared__ __align__(16) uint32_t Bs[2][BK][B_STRIDE];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm0 = (warp / (BN / WN)) * WM, wn0 = (warp % (BN / WN)) * WN;
  const int g = lane / 4, t = lane % 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  // The same two-stage pipeline as 08: tile t+1 is loaded into registers during the math on t.
  const int k_tiles = (K + BK - 1) / BK;
  float4 ra[A_QUADS], rb[B_QUADS];
  if (k_tiles > 0) {
    ladder::load_quads<BM, BN, BK, NT>(M, N, K, A, B, m0, n0, 0, tid, ra, rb);
    store_tiles(As[0], Bs[0], tid, ra, rb);
  }
  __syncthreads();
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int cur = kt & 1;
    const bool has_next = kt + 1 < k_tiles;
    if (has_next)
      ladder::load_quads<BM, BN, BK, NT>(M, N, K, A, B, m0, n0, (kt + 1) * BK, tid, ra, rb);
    compute_tile(As[cur], Bs[cur], wm0, wn0, g, t, acc);
    if (has_next) store_tiles(As[cur ^ 1], Bs[cur ^ 1], tid, ra, rb);
    __syncthreads();
  }
  store_c(M, N, alpha, beta, C, m0, n0, wm0, wn0, g, t, acc);
}

inline const char* sgemm_v10_unsupported(int M, int N, int K) {
  int device = 0, major = 0;
  LADDER_CUDA_CHECK(cudaGetDevice(&device));
  LADDER_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 8) return "TF32 tensor cores need compute capability 8.0 or newer";
  return ladder::vec4_unsupported(M, N, K);
}

inline void sgemm_v10(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  using namespace ladder::v10;
  const dim3 grid(ladder::ceil_div(N, BN), ladder::ceil_div(M, BM));
  LADDER_LAUNCH(sgemm_v10_kernel, grid, NT, stream, M, N, K, alpha, A, B, beta, C);
  LADDER_LAUNCH_CHECK("sgemm_v10_kernel");
}
