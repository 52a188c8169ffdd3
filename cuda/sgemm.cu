// SGEMM, hand-written (no cuBLAS):  C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C,
// row-major with leading dimensions; beta == 0 means C is write-only.
//
// Tiling scheme (one thread block computes one BM x BN tile of C):
//
//   * K is walked in steps of BK = 8. Each step, the block copies a BM x BK slice of op(A) and a
//     BK x BN slice of op(B) from global memory into shared memory, both stored k-major
//     (As[k][m], Bs[k][n]) with 4 floats of padding per row, so the compute loop reads
//     contiguous runs of m / n as float4 and the transposing stores below are bank-conflict free.
//   * Transposes are resolved in this global->shared copy: the copy works on "quads" of 4
//     elements that are contiguous in global memory, either along k (op(A) = A, op(B) = B^T) or
//     along m / n (op(A) = A^T, op(B) = B). A quad is one float4 load when the matrix pointer is
//     16-byte aligned, its leading dimension a multiple of 4 and the quad inside the matrix;
//     otherwise (runtime check per operand) 4 bounds-checked scalar loads, zero-filled outside
//     the matrix. Zero fill makes the partial edge tiles (any M, N, K) exact.
//   * 2-D register blocking: each thread accumulates a TM x TN sub-tile in registers. Per k it
//     loads TM values of As and TN values of Bs (float4) and does TM*TN FMAs. Its rows are two
//     groups of 4 (TM = 8): rows ty*4..ty*4+3 and BM/2 + ty*4..; likewise columns. With this
//     split the 8 threads of a shared-memory phase read 32 consecutive floats (no conflicts).
//   * Double buffering: two shared stages. While the block computes on stage t%2, each thread
//     already has the global loads for tile t+1 in flight (registers); it stores them into the
//     other stage after computing, and one __syncthreads per K step separates the phases.
//   * Epilogue: bounds-checked, float4 stores (and loads of C when beta != 0) where aligned;
//     with ACT (linear_forward: op(B) = W^T) a Linear's bias and ReLU by column as well, so a
//     layer's forward is one launch.
//
// Configurations (chosen per call so that small or skinny problems still fill the GPU):
//   L: 128x128 tile, 8x8 per thread, 256 threads   (large problems)
//   M:  64x64  tile, 4x4 per thread, 256 threads
//   S:  32x32  tile, 4x4 per thread,  64 threads   (small problems: many small blocks)
//
//   TF32: with set_allow_tf32(true) (nncore.set_float32_matmul_precision("high")), problems that
//       would get L get sgemm_tf32_kernel instead: tensor cores, operands rounded to TF32 (on
//       devices of compute capability 8.0 and newer; older ones stay FP32).
//
// Split-K: when even those tiles leave SMs idle and K is long (a weight gradient: C is Cout x
// Cin*kh*kw, K is batch x pixels, e.g. 6 x 25 x 200704 for LeNet-5's conv1 at batch 256, one
// tile), blockIdx.y picks a slice of K. Each slice writes alpha * op(A) op(B) over its k's to
// its own M x N panel of a workspace, and sum_panels (common.cuh) adds the panels in slice
// order (deterministic, no atomics): C = sum + beta * C (then the bias and ReLU, with ACT).
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <type_traits>

#include "common.cuh"
#include "nncore/kernels.h"
#include "tensor_cores.cuh"

namespace nncore::cuda {
namespace {

constexpr int kPad = 4;  // floats of padding per shared-memory row (keeps 16-byte alignment)

std::atomic<bool> g_allow_tf32{false};

__device__ __forceinline__ float4 load4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}

// Reads V consecutive floats of shared memory (V = 1, 2 or 4; p aligned to 4*V bytes).
template <int V>
__device__ __forceinline__ void load_shared(const float* p, float* out) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    out[0] = t.x, out[1] = t.y, out[2] = t.z, out[3] = t.w;
  } else if constexpr (V == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    out[0] = t.x, out[1] = t.y;
  } else {
    out[0] = p[0];
  }
}

// Copies one BK x BX operand tile (x = m for op(A), x = n for op(B)) from global memory to a
// k-major shared tile S[k][x], through registers so the load can be issued a tile ahead.
// KCONTIG: element (x, k) is P[x*ld + k] (contiguous along k); otherwise P[k*ld + x].
// Elements with x >= X or k >= K are read as 0. The per-quad address and x-bounds are computed
// once per thread (init); each K step only adds k0 (or k0*ld) and checks k.
template <int BK, int BX, int NT, bool KCONTIG>
struct TileLoader {
  static_assert(BK % 4 == 0 && BX % 4 == 0, "tiles are made of quads");
  static constexpr int kQuads = BK * BX / 4;
  static constexpr int kPerThread = (kQuads + NT - 1) / NT;
  const float* base[kPerThread];  // quad's first element for the K step k0 = 0
  int kq[kPerThread];             // quad's first k inside the tile
  int nx[kPerThread];             // KCONTIG: 1 if the quad's row is inside X else 0;
                                  // otherwise: how many of its 4 x's are inside X (0..4)
  float4 reg[kPerThread];

  // Tile coordinates (x, k) of the first element of quad q.
  __device__ __forceinline__ static void quad_origin(int q, int& x, int& k) {
    if constexpr (KCONTIG) {
      x = q / (BK / 4);
      k = (q % (BK / 4)) * 4;
    } else {
      k = q / (BX / 4);
      x = (q % (BX / 4)) * 4;
    }
  }

  __device__ __forceinline__ void init(const float* P, int64_t ld, int64_t x0, int64_t X,
                                       int tid) {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int q = tid + r * NT;
      int x = 0, k = 0;
      if (q < kQuads) quad_origin(q, x, k);
      const int64_t gx = x0 + x;
      kq[r] = k;
      if constexpr (KCONTIG) {
        nx[r] = (q < kQuads && gx < X) ? 1 : 0;
        base[r] = P + (nx[r] ? gx * ld + k : 0);
      } else {
        const int64_t left = X - gx;
        nx[r] = q < kQuads ? static_cast<int>(left < 0 ? 0 : (left > 4 ? 4 : left)) : 0;
        base[r] = P + (nx[r] ? k * ld + gx : 0);
      }
    }
  }

  __device__ __forceinline__ void load(int64_t k0, int64_t K, int64_t ld, bool vec) {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      const int64_t gk = k0 + kq[r];
      if constexpr (KCONTIG) {  // the quad is (gx, gk..gk+3)
        if (nx[r]) {
          const float* p = base[r] + k0;
          const int64_t nk = K - gk;  // valid k's in the quad (may be <= 0 or > 4)
          if (vec && nk >= 4) {
            v = load4(p);
          } else {
            if (nk > 0) v.x = p[0];
            if (nk > 1) v.y = p[1];
            if (nk > 2) v.z = p[2];
            if (nk > 3) v.w = p[3];
          }
        }
      } else {  // the quad is (gx..gx+3, gk)
        if (nx[r] > 0 && gk < K) {
          const float* p = base[r] + k0 * ld;
          if (vec && nx[r] == 4) {
            v = load4(p);
          } else {
            v.x = p[0];
            if (nx[r] > 1) v.y = p[1];
            if (nx[r] > 2) v.z = p[2];
            if (nx[r] > 3) v.w = p[3];
          }
        }
      }
      reg[r] = v;
    }
  }

  // PAD: floats of padding per row of S. TF32: every value rounded to TF32 on the way in.
  template <int PAD = kPad, bool TF32 = false>
  __device__ __forceinline__ void store(float (*S)[BX + PAD], int tid) const {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int q = tid + r * NT;
      if (q < kQuads) {
        int x, k;
        quad_origin(q, x, k);
        float4 v = reg[r];
        if constexpr (TF32) {
          v.x = __uint_as_float(detail::ptx_cvt_rna_tf32(v.x));
          v.y = __uint_as_float(detail::ptx_cvt_rna_tf32(v.y));
          v.z = __uint_as_float(detail::ptx_cvt_rna_tf32(v.z));
          v.w = __uint_as_float(detail::ptx_cvt_rna_tf32(v.w));
        }
        if constexpr (KCONTIG) {  // transpose on the way in
          S[k + 0][x] = v.x;
          S[k + 1][x] = v.y;
          S[k + 2][x] = v.z;
          S[k + 3][x] = v.w;
        } else {
          *reinterpret_cast<float4*>(&S[k][x]) = v;
        }
      }
    }
  }
};

// One block computes the C tile (tile_m, tile_n) = (blockIdx.x / tiles_n, blockIdx.x % tiles_n)
// (a 1-D grid, so neither dimension is limited to 65535 tiles; consecutive blocks share the
// same A row panel, which stays in L2). SPLIT_K: over the K slice blockIdx.y, k in
// [y * k_slice, (y + 1) * k_slice), written to C + y * c_slice. (The 128x128 configuration, only
// chosen when its tiles fill the GPU, is compiled without: at its 128-register cap the slice's
// pointers cost spills.)
// ACT: C = act(alpha * acc + beta * C, n): only with alpha 1 and beta 0 (linear_forward; checked
// in run_sgemm), where contracting alpha * acc + b into an FMA cannot change a bit, so C has the
// bits of the plain GEMM followed by bias_add.
template <int BM, int BN, int BK, int TM, int TN, int MIN_BLOCKS, bool SPLIT_K, bool TA, bool TB,
          bool ACT>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), MIN_BLOCKS)
    sgemm_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
                 int64_t lda, const float* __restrict__ B, int64_t ldb, float beta,
                 float* __restrict__ C, int64_t ldc, int64_t tiles_n, bool vec_a, bool vec_b,
                 bool vec_c, int64_t k_slice, int64_t c_slice, detail::BiasActivation act) {
  constexpr int NT = (BM / TM) * (BN / TN);
  constexpr int VM = TM < 4 ? TM : 4;  // rows per shared-memory vector read
  constexpr int VN = TN < 4 ? TN : 4;
  constexpr int GM = TM / VM;          // row groups per thread
  constexpr int GN = TN / VN;
  constexpr int SGM = BM / GM;         // distance between a thread's row groups
  constexpr int SGN = BN / GN;
  static_assert(TM % VM == 0 && TN % VN == 0 && BM % TM == 0 && BN % TN == 0, "tiling");

  __shared__ __align__(16) float As[2][BK][BM + kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];

  if (SPLIT_K && gridDim.y > 1) {  // this block's K slice (k_slice is a multiple of 4)
    const int64_t k0 = static_cast<int64_t>(blockIdx.y) * k_slice;
    K = K - k0 < k_slice ? K - k0 : k_slice;
    A += TA ? k0 * lda : k0;
    B += TB ? k0 : k0 * ldb;
    C += static_cast<int64_t>(blockIdx.y) * c_slice;
  }
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN);  // column position of this thread's sub-tile
  const int ty = tid / (BN / TN);  // row position
  const int64_t tile = blockIdx.x;
  const int64_t m_base = (tile / tiles_n) * BM;
  const int64_t n_base = (tile % tiles_n) * BN;

  // op(A) = A: element (m, k) at A[m*lda + k] (contiguous along k); op(A) = A^T: A[k*lda + m].
  // op(B) = B: element (k, n) at B[k*ldb + n] (contiguous along n); op(B) = B^T: B[n*ldb + k].
  TileLoader<BK, BM, NT, !TA> load_a;
  TileLoader<BK, BN, NT, TB> load_b;
  load_a.init(A, lda, m_base, M, tid);
  load_b.init(B, ldb, n_base, N, tid);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  const int k_tiles = static_cast<int>((K + BK - 1) / BK);  // host checked K fits
  if (k_tiles > 0) {
    load_a.load(0, K, lda, vec_a);
    load_b.load(0, K, ldb, vec_b);
    load_a.store(As[0], tid);
    load_b.store(Bs[0], tid);
  }
  __syncthreads();

  for (int t = 0; t < k_tiles; ++t) {
    const int cur = t & 1;
    const bool has_next = t + 1 < k_tiles;
    if (has_next) {  // issue the next tile's global loads now; they land during the math
      load_a.load(static_cast<int64_t>(t + 1) * BK, K, lda, vec_a);
      load_b.load(static_cast<int64_t>(t + 1) * BK, K, ldb, vec_b);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < GM; ++g) load_shared<VM>(&As[cur][kk][g * SGM + ty * VM], &a[g * VM]);
#pragma unroll
      for (int g = 0; g < GN; ++g) load_shared<VN>(&Bs[cur][kk][g * SGN + tx * VN], &b[g * VN]);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (has_next) {
      // Stage cur^1 was last read during step t-1, which every thread finished before the
      // barrier that ended step t-1.
      load_a.store(As[cur ^ 1], tid);
      load_b.store(Bs[cur ^ 1], tid);
    }
    __syncthreads();
  }

  // Epilogue: C = alpha * acc + beta * C (C not read when beta == 0), then act with ACT.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m_base + (i / VM) * SGM + ty * VM + (i % VM);
    if (m >= M) continue;
    float* crow = C + m * ldc;
#pragma unroll
    for (int g = 0; g < GN; ++g) {
      const int64_t n0 = n_base + g * SGN + tx * VN;
      const float* r = &acc[i][g * VN];
      bool stored = false;
      if constexpr (VN == 4) {
        if (vec_c && n0 + 3 < N) {  // one aligned float4 store (and load when beta != 0)
          float4 out = make_float4(alpha * r[0], alpha * r[1], alpha * r[2], alpha * r[3]);
          if (beta != 0.f) {
            const float4 old = *reinterpret_cast<const float4*>(crow + n0);
            out.x += beta * old.x;
            out.y += beta * old.y;
            out.z += beta * old.z;
            out.w += beta * old.w;
          }
          if constexpr (ACT) {
            out.x = act(out.x, n0);
            out.y = act(out.y, n0 + 1);
            out.z = act(out.z, n0 + 2);
            out.w = act(out.w, n0 + 3);
          }
          *reinterpret_cast<float4*>(crow + n0) = out;
          stored = true;
        }
      }
      if (!stored) {
#pragma unroll
        for (int v = 0; v < VN; ++v) {
          const int64_t n = n0 + v;
          if (n < N) {
            float out = alpha * r[v];
            if (beta != 0.f) out += beta * crow[n];
            if constexpr (ACT) out = act(out, n);
            crow[n] = out;
          }
        }
      }
    }
  }
}

// The TF32 tensor-core configuration: a 128x128 tile, BK = 16, 8 warps in a 2 x 4 grid, each
// warp a 64 x 32 tile of 4 x 4 mma.m16n8k8 (TF32 operands, FP32 accumulators; the fragment
// layout is in tensor_cores.cuh). Loads, transposes, zero fill and double buffering are the FP32
// kernel's; the values are rounded to TF32 on their way into the k-major shared tiles, whose row
// stride BX + 8 (8 mod 32 words) makes the fragment reads conflict-free: lane 4g + t reads word
// 8t + g (mod 32) of the rows ks + t of As and Bs.
namespace tf32 {
constexpr int BM = 128, BN = 128, BK = 16, PAD = 8, NT = 256;
constexpr int WM = 64, WN = 32;                  // warp tile
constexpr int MI = WM / 16, NI = WN / 8;         // mma tiles per warp tile
static_assert((BM / WM) * (BN / WN) * 32 == NT, "one warp per warp tile");
}  // namespace tf32

template <bool TA, bool TB, bool ACT>
__global__ void __launch_bounds__(tf32::NT)
    sgemm_tf32_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
                      int64_t lda, const float* __restrict__ B, int64_t ldb, float beta,
                      float* __restrict__ C, int64_t ldc, int64_t tiles_n, bool vec_a, bool vec_b,
                      detail::BiasActivation act) {
  using namespace tf32;
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wm0 = (warp / (BN / WN)) * WM, wn0 = (warp % (BN / WN)) * WN;
  const int64_t tile = blockIdx.x;
  const int64_t m_base = (tile / tiles_n) * BM;
  const int64_t n_base = (tile % tiles_n) * BN;

  TileLoader<BK, BM, NT, !TA> load_a;
  TileLoader<BK, BN, NT, TB> load_b;
  load_a.init(A, lda, m_base, M, tid);
  load_b.init(B, ldb, n_base, N, tid);

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  const int k_tiles = static_cast<int>((K + BK - 1) / BK);  // host checked K fits
  if (k_tiles > 0) {
    load_a.load(0, K, lda, vec_a);
    load_b.load(0, K, ldb, vec_b);
    load_a.template store<PAD, true>(As[0], tid);
    load_b.template store<PAD, true>(Bs[0], tid);
  }
  __syncthreads();

  for (int kt = 0; kt < k_tiles; ++kt) {
    const int cur = kt & 1;
    const bool has_next = kt + 1 < k_tiles;
    if (has_next) {
      load_a.load(static_cast<int64_t>(kt + 1) * BK, K, lda, vec_a);
      load_b.load(static_cast<int64_t>(kt + 1) * BK, K, ldb, vec_b);
    }
#pragma unroll
    for (int ks = 0; ks < BK; ks += 8) {
      uint32_t a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int m = wm0 + i * 16 + g;
        a[i][0] = __float_as_uint(As[cur][ks + t][m]);
        a[i][1] = __float_as_uint(As[cur][ks + t][m + 8]);
        a[i][2] = __float_as_uint(As[cur][ks + t + 4][m]);
        a[i][3] = __float_as_uint(As[cur][ks + t + 4][m + 8]);
      }
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int n = wn0 + j * 8 + g;
        b[j][0] = __float_as_uint(Bs[cur][ks + t][n]);
        b[j][1] = __float_as_uint(Bs[cur][ks + t + 4][n]);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) detail::ptx_mma_m16n8k8_tf32(acc[i][j], a[i], b[j]);
    }
    if (has_next) {  // stage cur^1 was last read in step kt-1, before the barrier that ended it
      load_a.template store<PAD, true>(As[cur ^ 1], tid);
      load_b.template store<PAD, true>(Bs[cur ^ 1], tid);
    }
    __syncthreads();
  }

  // Epilogue: acc[i][j][2h + v] is C[m][n], m = wm0 + 16i + g + 8h, n = wn0 + 8j + 2t + v (plus
  // the tile's base); C = alpha * acc + beta * C (C not read when beta == 0), then act with ACT.
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m_base + wm0 + i * 16 + g + 8 * h;
      if (m >= M) continue;
      float* crow = C + m * ldc;
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int v = 0; v < 2; ++v) {
          const int64_t n = n_base + wn0 + j * 8 + 2 * t + v;
          if (n >= N) continue;
          float out = alpha * acc[i][j][2 * h + v];
          if (beta != 0.f) out += beta * crow[n];
          if constexpr (ACT) out = act(out, n);
          crow[n] = out;
        }
    }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Calls launch(TA, TB, ACT), each a std::bool_constant, for the kernel instantiations that exist:
// every op(A)/op(B), and the bias/ReLU epilogue only with op(A) = A, op(B) = B^T (linear_forward;
// run_sgemm refuses act with any other).
template <class Launch>
void for_transposes(bool ta, bool tb, bool act, Launch&& launch) {
  using F = std::false_type;
  using T = std::true_type;
  if (!ta && !tb) launch(F{}, F{}, F{});
  else if (!ta && tb && act) launch(F{}, T{}, T{});
  else if (!ta && tb) launch(F{}, T{}, F{});
  else if (ta && !tb) launch(T{}, F{}, F{});
  else launch(T{}, T{}, F{});
}

bool has_act(const detail::BiasActivation& act) { return act.b != nullptr || act.relu; }

void check_launch_size(int64_t M, int64_t N, int64_t K, int64_t tiles) {
  if (tiles > 0x7fffffff || K > 0x3fffffff)
    throw std::runtime_error(
        concat("nncore: sgemm: problem too large for one launch (M=", M, ", N=", N, ", K=", K, ")"));
}

// K per split-K slice at least: 32 steps of BK = 8, so that a slice's prologue and epilogue
// (loads before the first step, the C stores) stay small beside its main loop.
constexpr int64_t kMinSliceK = 256;
constexpr int64_t kMaxSlices = 1024;  // (grid.y; also bounds the workspace)

// How many K slices a launch of `tiles` blocks gets: enough for about two blocks per SM when the
// tiles alone leave SMs idle, as long as every slice keeps kMinSliceK of K.
int64_t split_k_slices(int64_t tiles, int64_t K, int64_t sms) {
  if (tiles >= sms) return 1;
  const int64_t wanted = (2 * sms + tiles - 1) / tiles;
  return std::max<int64_t>(1, std::min({wanted, K / kMinSliceK, kMaxSlices}));
}

// act: a Linear's bias and ReLU by column (b null and relu false: none), only with op(B) = B^T.
template <int BM, int BN, int BK, int TM, int TN, int MIN_BLOCKS, bool SPLIT_K>
void launch_config(const char* name, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   float beta, float* C, int64_t ldc, detail::BiasActivation act) {
  constexpr int NT = (BM / TM) * (BN / TN);
  const int64_t tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int64_t tiles = tiles_m * tiles_n;
  check_launch_size(M, N, K, tiles);
  // Slices of a multiple of BK (so of 4: the slices' float4 loads stay aligned).
  int64_t slices = SPLIT_K ? split_k_slices(tiles, K, detail::sm_count()) : 1;
  const int64_t k_slice = slices > 1 ? ((K + slices - 1) / slices + BK - 1) / BK * BK : K;
  if (slices > 1) slices = (K + k_slice - 1) / k_slice;
  // With slices, the GEMM writes the workspace panels (C is only read and written by the reduce).
  const detail::Workspace panels(slices > 1 ? static_cast<size_t>(slices * M * N) : 0);
  float* out = slices > 1 ? panels.data : C;
  const int64_t ld_out = slices > 1 ? N : ldc;
  const float beta_out = slices > 1 ? 0.0f : beta;
  const bool vec_a = aligned16(A) && lda % 4 == 0;
  const bool vec_b = aligned16(B) && ldb % 4 == 0;
  const bool vec_c = aligned16(out) && ld_out % 4 == 0;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(slices));
  cudaStream_t s = detail::stream();
  // With slices the panel sum applies act.
  for_transposes(ta, tb, has_act(act) && slices == 1, [&](auto TA, auto TB, auto ACT) {
    sgemm_kernel<BM, BN, BK, TM, TN, MIN_BLOCKS, SPLIT_K, decltype(TA)::value, decltype(TB)::value,
                 decltype(ACT)::value><<<grid, NT, 0, s>>>(
        M, N, K, alpha, A, lda, B, ldb, beta_out, out, ld_out, tiles_n, vec_a, vec_b, vec_c,
        k_slice, M * N, act);
  });
  NNCORE_CUDA_LAUNCH_CHECK(name);
  if (slices > 1)
    detail::sum_panels("sgemm_splitk_sum", panels.data, slices, M, N, beta, C, ldc, act);
}

void launch_tf32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 detail::BiasActivation act) {
  using namespace tf32;
  const int64_t tiles_n = (N + BN - 1) / BN, tiles = ((M + BM - 1) / BM) * tiles_n;
  check_launch_size(M, N, K, tiles);
  const bool vec_a = aligned16(A) && lda % 4 == 0;
  const bool vec_b = aligned16(B) && ldb % 4 == 0;
  cudaStream_t s = detail::stream();
  for_transposes(ta, tb, has_act(act), [&](auto TA, auto TB, auto ACT) {
    sgemm_tf32_kernel<decltype(TA)::value, decltype(TB)::value, decltype(ACT)::value>
        <<<static_cast<unsigned>(tiles), NT, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C,
                                                     ldc, tiles_n, vec_a, vec_b, act);
  });
  NNCORE_CUDA_LAUNCH_CHECK("sgemm_tf32_128x128x16");
}

// NNCORE_CUDA_SGEMM_TILE=128|64|32 forces one configuration for every call (to measure the
// choice below on a GPU, as NNCORE_CPU_KERNEL does on the CPU); unset or anything else: 0, the
// choice by problem size.
int forced_tile() {
  static const int tile = [] {
    const char* name = std::getenv("NNCORE_CUDA_SGEMM_TILE");
    const int t = name != nullptr ? std::atoi(name) : 0;
    return t == 128 || t == 64 || t == 32 ? t : 0;
  }();
  return tile;
}

// The configuration choice by problem size (or NNCORE_CUDA_SGEMM_TILE), shared by sgemm and
// linear_forward.
void run_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc, detail::BiasActivation act) {
  if (M <= 0 || N <= 0) return;
  if (has_act(act) && (trans_a || !trans_b || alpha != 1.0f || beta != 0.0f))
    throw std::logic_error(
        "nncore: sgemm: the bias epilogue needs op(A) = A, op(B) = B^T, alpha 1 and beta 0");
  // K == 0 still launches: C = beta * C (or 0 when beta == 0).
  const int64_t sms = detail::sm_count();
  auto tiles = [&](int64_t b) { return ((M + b - 1) / b) * ((N + b - 1) / b); };
  const int forced = forced_tile();
  const bool large = forced != 0 ? forced == 128 : tiles(128) >= sms;
  if (large && allow_tf32() && detail::has_tf32_tensor_cores()) {
    launch_tf32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, act);
  } else if (large) {
    launch_config<128, 128, 8, 8, 8, 2, false>("sgemm_128x128x8", trans_a, trans_b, M, N, K,
                                               alpha, A, lda, B, ldb, beta, C, ldc, act);
  } else if (forced != 0 ? forced == 64 : tiles(64) >= sms / 2) {
    launch_config<64, 64, 8, 4, 4, 1, true>("sgemm_64x64x8", trans_a, trans_b, M, N, K, alpha, A,
                                            lda, B, ldb, beta, C, ldc, act);
  } else {
    launch_config<32, 32, 8, 4, 4, 1, true>("sgemm_32x32x8", trans_a, trans_b, M, N, K, alpha, A,
                                            lda, B, ldb, beta, C, ldc, act);
  }
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  run_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {nullptr, false});
}

// y = act(x w^T + b): the GEMM's epilogue (or the split-K panel sum) applies bias and ReLU.
void linear_forward(const float* x, const float* w, const float* b, int64_t N, int64_t in,
                    int64_t out, bool relu, float* y) {
  run_sgemm(false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out, {b, relu});
}

}  // namespace nncore::cuda
