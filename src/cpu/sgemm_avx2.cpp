// AVX2/FMA SGEMM micro-kernel: a 6 x 16 register tile (12 ymm accumulators, 2 ymm for the B
// row, 1 for the broadcast A value = 15 of the 16 ymm registers), the classic Haswell shape.
//   acc[r][v] += broadcast(Apack[k, r]) * B[k, 8v : 8v+8]   for k < kc, r < 6, v < 2
// 12 independent FMA chains hide the 4-5 cycle FMA latency on 2 FMA ports.
//
// Compiled for AVX2+FMA through a target pragma (the library is built without -march flags);
// the driver calls it only after __builtin_cpu_supports("avx2") && ("fma"). Everything under
// the pragma has internal linkage so no AVX2 copy of a shared inline function can leak out.
#include "sgemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

// All-ones in the lanes of 8-wide column vector v that hold one of the n valid columns.
inline __m256i column_mask(int n, int v) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * v), lane);
}

template <int MROWS, int NVEC>
__attribute__((noinline)) void tile_avx2(int64_t kc, const float* a, const float* b,
                                         int64_t b_stride, float* c, int64_t ldc, int n,
                                         float alpha, float beta) {
  __m256 acc[MROWS][NVEC];
#pragma GCC unroll 8
  for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NVEC; ++v) acc[r][v] = _mm256_setzero_ps();
  }
#pragma GCC unroll 8
  for (int r = 0; r < MROWS; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NVEC];
#pragma GCC unroll 2
    for (int v = 0; v < NVEC; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MROWS; ++r) {
      __m256 av = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += b_stride;
  }

  // Epilogue: C = alpha*acc + beta*C (beta == 0: C is not read), masked when n < 8*NVEC.
  const __m256 alpha_v = _mm256_set1_ps(alpha);
  const __m256 beta_v = _mm256_set1_ps(beta);
  if (n >= 8 * NVEC) {
#pragma GCC unroll 8
    for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) {
        float* cp = c + r * ldc + 8 * v;
        __m256 out = _mm256_mul_ps(alpha_v, acc[r][v]);
        if (beta != 0.0f) out = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(cp), out);
        _mm256_storeu_ps(cp, out);
      }
    }
  } else {
    __m256i mask[NVEC];
#pragma GCC unroll 2
    for (int v = 0; v < NVEC; ++v) mask[v] = column_mask(n, v);
#pragma GCC unroll 8
    for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) {
        float* cp = c + r * ldc + 8 * v;
        __m256 out = _mm256_mul_ps(alpha_v, acc[r][v]);
        if (beta != 0.0f) out = _mm256_fmadd_ps(beta_v, _mm256_maskload_ps(cp, mask[v]), out);
        _mm256_maskstore_ps(cp, mask[v], out);
      }
    }
  }
}

template <int NVEC>
void tile_rows(int64_t kc, const float* a, const float* b, int64_t bs, float* c, int64_t ldc,
               int m, int n, float alpha, float beta) {
  switch (m) {
    case 6: tile_avx2<6, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 5: tile_avx2<5, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 4: tile_avx2<4, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 3: tile_avx2<3, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 2: tile_avx2<2, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    default: tile_avx2<1, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
  }
}

void sgemm_tile_avx2_6x16(int64_t kc, const float* a, const float* b, int64_t bs, float* c,
                          int64_t ldc, int m, int n, float alpha, float beta) {
  if (n > 8)
    tile_rows<2>(kc, a, b, bs, c, ldc, m, n, alpha, beta);
  else
    tile_rows<1>(kc, a, b, bs, c, ldc, m, n, alpha, beta);
}

// ---- inner-product tile (C = A B^T with A and B both contiguous along k) -----------------
// 4 x 3 accumulators (12 ymm + 3 for the B rows + 1 for the A row = all 16 registers), each an
// 8-lane partial sum of A[i, k] * B[j, k] over k = lane (mod 8), summed across lanes at the
// end: per 8 values of k, 4 + 3 loads feed 12 FMAs. Rows past m (columns past n) repeat the
// last valid one and are not stored.
constexpr int kDotMR = 4;
constexpr int kDotNR = 3;

inline float sum_lanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

__attribute__((noinline)) void dot_tile_avx2_4x3(int64_t kc, const float* a, int64_t lda,
                                                 const float* b, int64_t ldb, float* c,
                                                 int64_t ldc, int m, int n, float alpha,
                                                 float beta) {
  const float* ar[kDotMR];
  const float* br[kDotNR];
  for (int i = 0; i < kDotMR; ++i) ar[i] = a + (i < m ? i : m - 1) * lda;
  for (int j = 0; j < kDotNR; ++j) br[j] = b + (j < n ? j : n - 1) * ldb;
  __m256 acc[kDotMR][kDotNR];
#pragma GCC unroll 4
  for (int i = 0; i < kDotMR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 bv[kDotNR];
#pragma GCC unroll 3
    for (int j = 0; j < kDotNR; ++j) bv[j] = _mm256_loadu_ps(br[j] + k);
#pragma GCC unroll 4
    for (int i = 0; i < kDotMR; ++i) {
      const __m256 av = _mm256_loadu_ps(ar[i] + k);
#pragma GCC unroll 3
      for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < kc) {  // the last kc - k < 8 values, masked (masked-off lanes load as 0)
    const __m256i tail = column_mask(static_cast<int>(kc - k), 0);
    __m256 bv[kDotNR];
#pragma GCC unroll 3
    for (int j = 0; j < kDotNR; ++j) bv[j] = _mm256_maskload_ps(br[j] + k, tail);
#pragma GCC unroll 4
    for (int i = 0; i < kDotMR; ++i) {
      const __m256 av = _mm256_maskload_ps(ar[i] + k, tail);
#pragma GCC unroll 3
      for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      const float sum = alpha * sum_lanes(acc[i][j]);
      float* cp = c + i * ldc + j;
      *cp = beta == 0.0f ? sum : sum + beta * *cp;
    }
  }
}

}  // namespace

#pragma GCC pop_options

namespace nncore {
namespace cpu {
namespace sgemm_detail {
const MicroKernel* microkernel_avx2() {
  static const MicroKernel k{"avx2",          kMR,     kNR,     &sgemm_tile_avx2_6x16,
                             &pack_a_portable_6, &pack_b_portable_16, kDotMR, kDotNR,
                             &dot_tile_avx2_4x3};
  return &k;
}
}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace nncore

#else  // not x86-64: the family is not compiled in

namespace nncore {
namespace cpu {
namespace sgemm_detail {
const MicroKernel* microkernel_avx2() { return nullptr; }
}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace nncore

#endif
