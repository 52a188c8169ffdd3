// AVX-512F SGEMM micro-kernel: a 14 x 32 register tile (28 zmm accumulators, 2 zmm for the B
// row, 1 for the broadcast A value = 31 of the 32 zmm registers).
//   acc[r][v] += broadcast(Apack[k, r]) * B[k, 16v : 16v+16]   for k < kc, r < 14, v < 2
// 28 independent FMA chains cover the 4-cycle FMA latency on both FMA ports, and each k step
// does 2 vector loads + 14 broadcasts for 28 FMAs, so loads never limit the FMA rate.
//
// This translation unit is compiled for AVX-512 through a target pragma (the library itself is
// built without -march flags); the driver only calls it after __builtin_cpu_supports("avx512f").
// Everything compiled under the pragma has internal linkage, so no AVX-512 copy of an inline
// or template function can be picked by the linker for code that runs on other CPUs.
#include "sgemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,fma")

namespace {

constexpr int kMR = 14;
constexpr int kNR = 32;

// Lanes of the two 16-wide column vectors that are valid when only n <= 32 columns are.
inline __mmask16 column_mask(int n, int v) {
  int lanes = n - 16 * v;
  if (lanes >= 16) return static_cast<__mmask16>(0xFFFF);
  if (lanes <= 0) return 0;
  return static_cast<__mmask16>((1u << lanes) - 1u);
}

// MROWS = valid rows (compile time, so a short edge tile does no wasted FMAs);
// NVEC = 16-wide column vectors actually computed (1 when n <= 16).
template <int MROWS, int NVEC>
__attribute__((noinline)) void tile_avx512(int64_t kc, const float* a, const float* b,
                                           int64_t b_stride, float* c, int64_t ldc, int n,
                                           float alpha, float beta) {
  __m512 acc[MROWS][NVEC];
#pragma GCC unroll 16
  for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NVEC; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  // The tile of C is written at the end; start pulling it in now.
#pragma GCC unroll 16
  for (int r = 0; r < MROWS; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NVEC];
#pragma GCC unroll 2
    for (int v = 0; v < NVEC; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MROWS; ++r) {
      __m512 av = _mm512_set1_ps(a[r]);
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += b_stride;
  }

  // Epilogue: C = alpha*acc + beta*C (beta == 0: C is not read), masked to the valid columns.
  const __m512 alpha_v = _mm512_set1_ps(alpha);
  const __m512 beta_v = _mm512_set1_ps(beta);
  __mmask16 mask[NVEC];
#pragma GCC unroll 2
  for (int v = 0; v < NVEC; ++v) mask[v] = column_mask(n, v);
  if (beta == 0.0f) {
#pragma GCC unroll 16
    for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v)
        _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], _mm512_mul_ps(alpha_v, acc[r][v]));
    }
  } else if (beta == 1.0f) {
#pragma GCC unroll 16
    for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) {
        float* cp = c + r * ldc + 16 * v;
        __m512 old = _mm512_maskz_loadu_ps(mask[v], cp);
        _mm512_mask_storeu_ps(cp, mask[v], _mm512_fmadd_ps(alpha_v, acc[r][v], old));
      }
    }
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < MROWS; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NVEC; ++v) {
        float* cp = c + r * ldc + 16 * v;
        __m512 old = _mm512_maskz_loadu_ps(mask[v], cp);
        _mm512_mask_storeu_ps(cp, mask[v],
                              _mm512_fmadd_ps(alpha_v, acc[r][v], _mm512_mul_ps(beta_v, old)));
      }
    }
  }
}

template <int NVEC>
void tile_rows(int64_t kc, const float* a, const float* b, int64_t bs, float* c, int64_t ldc,
               int m, int n, float alpha, float beta) {
  switch (m) {
    case 14: tile_avx512<14, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 13: tile_avx512<13, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 12: tile_avx512<12, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 11: tile_avx512<11, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 10: tile_avx512<10, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 9: tile_avx512<9, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 8: tile_avx512<8, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 7: tile_avx512<7, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 6: tile_avx512<6, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 5: tile_avx512<5, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 4: tile_avx512<4, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 3: tile_avx512<3, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 2: tile_avx512<2, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    default: tile_avx512<1, NVEC>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
  }
}

// ---- packing with in-register transposes ---------------------------------------------------
inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF)
                     : static_cast<__mmask16>((1u << static_cast<unsigned>(count)) - 1u);
}

// In place: r[i][j] -> r[j][i] for a 16 x 16 block (unpack 32-bit, shuffle 64-bit, then a
// 4 x 4 transpose of the 128-bit lanes). The maskz forms with an all-ones mask compile to the
// plain instructions; they avoid GCC 12's bogus -Wmaybe-uninitialized on _mm512_undefined_ps,
// which a pragma cannot silence under -flto (the warning is emitted at link time).
inline void transpose_16x16(__m512 r[16]) {
  const __mmask16 kAll = static_cast<__mmask16>(0xFFFF);
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_maskz_unpacklo_ps(kAll, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_maskz_shuffle_ps(kAll, t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_maskz_shuffle_ps(kAll, t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_maskz_shuffle_ps(kAll, t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_maskz_shuffle_ps(kAll, t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // u[4q + j], 128-bit lane L, holds rows 4q..4q+3 of column 4L + j.
  for (int j = 0; j < 4; ++j) {
    const __m512 w0 = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0x88);
    const __m512 w1 = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0xDD);
    const __m512 w2 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0x88);
    const __m512 w3 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_maskz_shuffle_f32x4(kAll, w0, w2, 0x88);
    r[4 + j] = _mm512_maskz_shuffle_f32x4(kAll, w1, w3, 0x88);
    r[8 + j] = _mm512_maskz_shuffle_f32x4(kAll, w0, w2, 0xDD);
    r[12 + j] = _mm512_maskz_shuffle_f32x4(kAll, w1, w3, 0xDD);
  }
}

// dst[k*stride + c] = src[c*ld + k] for c < rows (<= 16; other lanes 0), k < kc; stores the
// first `lanes` lanes of each 16-wide output row.
inline void pack_transposed_16(const float* src, int64_t ld, int rows, int64_t kc, float* dst,
                               int64_t stride, __mmask16 lanes) {
  for (int64_t kb = 0; kb < kc; kb += 16) {
    const int64_t kn = kc - kb < 16 ? kc - kb : 16;
    const __mmask16 kmask = first_lanes(kn);
    __m512 r[16];
    for (int c = 0; c < 16; ++c)
      r[c] = c < rows ? _mm512_maskz_loadu_ps(kmask, src + c * ld + kb) : _mm512_setzero_ps();
    transpose_16x16(r);
    for (int64_t c = 0; c < kn; ++c) _mm512_mask_storeu_ps(dst + (kb + c) * stride, lanes, r[c]);
  }
}

// A sliver for the 14-row tile: dst[k*14 + r] = op(A)[i0 + r, p0 + k], rows m..13 zero.
void pack_a_avx512_14(bool trans_a, const float* A, int64_t lda, int64_t i0, int m, int64_t p0,
                      int64_t kc, float* dst) {
  if (!trans_a) {
    pack_transposed_16(A + i0 * lda + p0, lda, m, kc, dst, kMR, first_lanes(kMR));
  } else {  // A stored K x M: the 14 values for one k are contiguous
    const float* src = A + p0 * lda + i0;
    const __mmask16 valid = first_lanes(m);
    for (int64_t k = 0; k < kc; ++k)
      _mm512_mask_storeu_ps(dst + k * kMR, first_lanes(kMR),
                            _mm512_maskz_loadu_ps(valid, src + k * lda));
  }
}

// B sliver for the 32-column tile: dst[k*32 + j] = op(B)[p0 + k, j0 + j], columns n..31 zero.
void pack_b_avx512_32(bool trans_b, const float* B, int64_t ldb, int64_t j0, int n, int64_t p0,
                      int64_t kc, float* dst) {
  if (!trans_b) {  // B stored K x N: copy 32 contiguous values per k
    const float* src = B + p0 * ldb + j0;
    const __mmask16 m0 = first_lanes(n), m1 = first_lanes(n > 16 ? n - 16 : 0);
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = src + k * ldb;
      _mm512_storeu_ps(dst + k * kNR, _mm512_maskz_loadu_ps(m0, s));
      _mm512_storeu_ps(dst + k * kNR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
    }
  } else {  // B stored N x K: transpose two 16-row halves
    const float* src = B + j0 * ldb + p0;
    for (int h = 0; h < 2; ++h) {
      const int rows = n - 16 * h;
      if (rows <= 0) {
        for (int64_t k = 0; k < kc; ++k) _mm512_storeu_ps(dst + k * kNR + 16 * h, _mm512_setzero_ps());
      } else {
        pack_transposed_16(src + 16 * h * ldb, ldb, rows < 16 ? rows : 16, kc, dst + 16 * h, kNR,
                           first_lanes(16));
      }
    }
  }
}

void sgemm_tile_avx512_14x32(int64_t kc, const float* a, const float* b, int64_t bs, float* c,
                             int64_t ldc, int m, int n, float alpha, float beta) {
  if (n > 16)
    tile_rows<2>(kc, a, b, bs, c, ldc, m, n, alpha, beta);
  else
    tile_rows<1>(kc, a, b, bs, c, ldc, m, n, alpha, beta);
}

// ---- inner-product tile (C = A B^T with A and B both contiguous along k) -----------------
// 6 x 4 accumulators, each a 16-lane partial sum of A[i, k] * B[j, k] over k = lane (mod 16),
// summed across lanes at the end: per 16 values of k, 6 + 4 vector loads feed 24 FMAs. Rows
// past m (columns past n) repeat the last valid one and are not stored.
constexpr int kDotMR = 6;
constexpr int kDotNR = 4;

// Sum of the 16 lanes: halves added pairwise down to one lane (GCC 12's _mm512_reduce_add_ps
// and _mm512_castps512_ps256 trip -Wmaybe-uninitialized through _mm512_undefined, like the
// transposes above; the maskz extracts do not).
inline float sum_lanes(__m512 v) {
  const __mmask8 all = static_cast<__mmask8>(0xFF);
  const __m512d d = _mm512_castps_pd(v);
  const __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(all, d, 0)),
                                 _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(all, d, 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 0x55));
  return _mm_cvtss_f32(q);
}

__attribute__((noinline)) void dot_tile_avx512_6x4(int64_t kc, const float* a, int64_t lda,
                                                   const float* b, int64_t ldb, float* c,
                                                   int64_t ldc, int m, int n, float alpha,
                                                   float beta) {
  const float* ar[kDotMR];
  const float* br[kDotNR];
  for (int i = 0; i < kDotMR; ++i) ar[i] = a + (i < m ? i : m - 1) * lda;
  for (int j = 0; j < kDotNR; ++j) br[j] = b + (j < n ? j : n - 1) * ldb;
  __m512 acc[kDotMR][kDotNR];
#pragma GCC unroll 8
  for (int i = 0; i < kDotMR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m512 bv[kDotNR];
#pragma GCC unroll 4
    for (int j = 0; j < kDotNR; ++j) bv[j] = _mm512_loadu_ps(br[j] + k);
#pragma GCC unroll 8
    for (int i = 0; i < kDotMR; ++i) {
      const __m512 av = _mm512_loadu_ps(ar[i] + k);
#pragma GCC unroll 4
      for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k < kc) {  // the last kc - k < 16 values, masked (masked-off lanes load as 0)
    const __mmask16 tail = first_lanes(kc - k);
    __m512 bv[kDotNR];
#pragma GCC unroll 4
    for (int j = 0; j < kDotNR; ++j) bv[j] = _mm512_maskz_loadu_ps(tail, br[j] + k);
#pragma GCC unroll 8
    for (int i = 0; i < kDotMR; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(tail, ar[i] + k);
#pragma GCC unroll 4
      for (int j = 0; j < kDotNR; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
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
const MicroKernel* microkernel_avx512() {
  static const MicroKernel k{"avx512",          kMR,     kNR,     &sgemm_tile_avx512_14x32,
                             &pack_a_avx512_14, &pack_b_avx512_32, kDotMR, kDotNR,
                             &dot_tile_avx512_6x4};
  return &k;
}
}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace nncore

#else  // not x86-64: the family is not compiled in

namespace nncore {
namespace cpu {
namespace sgemm_detail {
const MicroKernel* microkernel_avx512() { return nullptr; }
}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace nncore

#endif
