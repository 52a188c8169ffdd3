// im2col / col2im in Caffe's batched layout: col is (C*kh*kw, N*OH*OW), row r = (c*kh + i)*kw + j,
// column (n*OH + oh)*OW + ow, with OH = (H + 2ph - kh)/sh + 1 (likewise OW).
#include <algorithm>
#include <cstring>

#include "nncore/kernels.h"

namespace nncore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;

// Output positions o in [lo, hi) whose input coordinate o*stride - pad + tap lies in [0, size).
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_outputs(int64_t size, int64_t pad, int64_t tap, int64_t stride,
                                int64_t out) {
  const int64_t first = pad - tap;  // o*stride >= pad - tap
  int64_t lo = first > 0 ? (first + stride - 1) / stride : 0;
  const int64_t limit = size + pad - tap;  // o*stride < size + pad - tap
  int64_t hi = limit > 0 ? (limit - 1) / stride + 1 : 0;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
  return {lo, hi};
}

}  // namespace

// col[r, n, oh, ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j], 0 outside the image.
void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
            int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* col) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1;
  const int64_t OW = (W + 2 * pw - kw) / sw + 1;
  const int64_t rows = C * kh * kw;
  const int64_t cols = N * OH * OW;
#pragma omp parallel for collapse(2) schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
      const float* __restrict plane = x + (n * C + c) * H * W;
      float* __restrict out = col + r * cols + n * OH * OW;
      const ValidRange ow_range = valid_outputs(W, pw, j, sw, OW);
      const int64_t lo = ow_range.lo, hi = ow_range.hi;
      for (int64_t oh = 0; oh < OH; ++oh) {
        float* __restrict out_row = out + oh * OW;
        const int64_t h = oh * sh - ph + i;
        if (h < 0 || h >= H) {
          std::memset(out_row, 0, static_cast<size_t>(OW) * sizeof(float));
          continue;
        }
        const float* __restrict in_row = plane + h * W;
        const int64_t shift = j - pw;  // w = ow*sw + shift
        for (int64_t ow = 0; ow < lo; ++ow) out_row[ow] = 0.0f;
        if (sw == 1) {  // a contiguous segment of the input row
          if (hi > lo)
            std::memcpy(out_row + lo, in_row + lo + shift,
                        static_cast<size_t>(hi - lo) * sizeof(float));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) out_row[ow] = in_row[ow * sw + shift];
        }
        for (int64_t ow = hi; ow < OW; ++ow) out_row[ow] = 0.0f;
      }
    }
  }
}

// x[n, c, h, w] = sum over taps (i, j) with h = oh*sh - ph + i, w = ow*sw - pw + j (oh, ow in
// range) of col[(c*kh + i)*kw + j, n, oh, ow]. One thread owns a whole (n, c) plane and adds
// the taps in a fixed (i, j) order, so the result is deterministic and needs no atomics.
void col2im(const float* col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh,
            int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* x) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1;
  const int64_t OW = (W + 2 * pw - kw) / sw + 1;
  const int64_t cols = N * OH * OW;
  const int64_t planes = N * C;
  // The ow range of each column tap j, computed once (it costs two integer divisions).
  constexpr int64_t kMaxTaps = 64;
  ValidRange ow_ranges[kMaxTaps];
  for (int64_t j = 0; j < std::min(kw, kMaxTaps); ++j)
    ow_ranges[j] = valid_outputs(W, pw, j, sw, OW);
#pragma omp parallel for schedule(static) if (planes * H * W * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t n = p / C, c = p % C;
    float* __restrict plane = x + p * H * W;
    for (int64_t h = 0; h < H; ++h) {
      float* __restrict x_row = plane + h * W;
      for (int64_t w = 0; w < W; ++w) x_row[w] = 0.0f;
      for (int64_t i = 0; i < kh; ++i) {
        const int64_t t = h + ph - i;  // = oh*sh
        if (t < 0 || t % sh != 0 || t / sh >= OH) continue;
        const int64_t oh = t / sh;
        for (int64_t j = 0; j < kw; ++j) {
          const float* __restrict col_row =
              col + ((c * kh + i) * kw + j) * cols + (n * OH + oh) * OW;
          const ValidRange ow_range =
              j < kMaxTaps ? ow_ranges[j] : valid_outputs(W, pw, j, sw, OW);
          const int64_t shift = j - pw;  // w = ow*sw + shift
          if (sw == 1) {
#pragma omp simd
            for (int64_t ow = ow_range.lo; ow < ow_range.hi; ++ow)
              x_row[ow + shift] += col_row[ow];
          } else {
            for (int64_t ow = ow_range.lo; ow < ow_range.hi; ++ow)
              x_row[ow * sw + shift] += col_row[ow];
          }
        }
      }
    }
  }
}

}  // namespace nncore::cpu
