// Max and average 2-D pooling over `planes` independent H x W planes (planes = N*C).
// Window (oh, ow) covers rows oh*sh - ph .. + kh - 1 and columns ow*sw - pw .. + kw - 1;
// OH = (H + 2ph - kh)/sh + 1. One thread owns whole planes, so every kernel is deterministic.
#include <algorithm>
#include <cstring>
#include <limits>

#include "nncore/kernels.h"
#include "vector_math.h"

namespace nncore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;

// The part of a window that lies inside the image, [lo, hi) along one axis.
struct Span {
  int64_t lo, hi;
  int64_t size() const { return hi > lo ? hi - lo : 0; }
};
inline Span clip_window(int64_t start, int64_t k, int64_t size) {
  return {std::max<int64_t>(start, 0), std::min(start + k, size)};
}

// Outputs o in [lo, hi) whose tap `tap` lands inside the image: 0 <= o*stride - pad + tap < size.
inline Span valid_outputs(int64_t size, int64_t pad, int64_t tap, int64_t stride, int64_t out) {
  const int64_t first = pad - tap;
  int64_t lo = first > 0 ? (first + stride - 1) / stride : 0;
  const int64_t limit = size + pad - tap;
  int64_t hi = limit > 0 ? (limit - 1) / stride + 1 : 0;
  lo = std::min(lo, out);
  return {lo, std::max(lo, std::min(hi, out))};
}

// valid_outputs for every column tap j < kw, computed once per call (two integer divisions each,
// which would otherwise dominate small windows); kernels wider than kMaxTaps compute on the fly.
constexpr int64_t kMaxTaps = 64;
struct TapRanges {
  Span range[kMaxTaps];
  int64_t size, pad, stride, out;
  TapRanges(int64_t size_, int64_t pad_, int64_t k, int64_t stride_, int64_t out_)
      : size(size_), pad(pad_), stride(stride_), out(out_) {
    for (int64_t j = 0; j < std::min(k, kMaxTaps); ++j)
      range[j] = valid_outputs(size, pad, j, stride, out);
  }
  Span operator[](int64_t j) const {
    return j < kMaxTaps ? range[j] : valid_outputs(size, pad, j, stride, out);
  }
};

// The loops below are tap-major: for one output row, each window tap (h, j) sweeps all the
// outputs it belongs to, so the innermost loop runs over ow (vectorized; contiguous when sw == 1)
// instead of over a tiny window. Taps are visited in row-major window order (h, then j).

}  // namespace

// y = max over the in-image part of the window (padding is -inf, so it never wins);
// argmax = h*W + w of the first maximum in row-major window order. NaN counts as a maximum
// (propagates, like PyTorch). A window with no in-image tap (only possible when a padding is
// >= its kernel size; PyTorch forbids pad > k/2) gives y = -inf, argmax = -1 (backward skips it).
namespace {

// best, best_idx = v, v_idx when v is greater (or the first NaN). Selects on bit patterns so the
// row loop below vectorizes (GCC will not if-convert a float ?: at baseline x86-64).
inline void take_if_greater(float v, int32_t v_idx, float& best, int32_t& best_idx) {
  const bool take = (v > best) | ((v != v) & (best == best));
  best = select_bits(take, v, best);
  const uint32_t mask = 0u - static_cast<uint32_t>(take);
  best_idx = static_cast<int32_t>((static_cast<uint32_t>(v_idx) & mask) |
                                  (static_cast<uint32_t>(best_idx) & ~mask));
}

// One output row of a 2x2, stride-2, unpadded max pool (LeNet's): every window is inside the
// image, so the four taps are read directly, in window order.
void max_pool_row_2x2(const float* __restrict top, const float* __restrict bottom, int64_t OW,
                      int32_t top_index, int32_t W, float* __restrict out,
                      int32_t* __restrict out_index) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const int32_t w0 = static_cast<int32_t>(2 * ow);
    float best = top[2 * ow];
    int32_t best_idx = top_index + w0;
    take_if_greater(top[2 * ow + 1], top_index + w0 + 1, best, best_idx);
    take_if_greater(bottom[2 * ow], top_index + W + w0, best, best_idx);
    take_if_greater(bottom[2 * ow + 1], top_index + W + w0 + 1, best, best_idx);
    out[ow] = best;
    out_index[ow] = best_idx;
  }
}

}  // namespace

void max_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, float* y, int32_t* argmax) {
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) {
#pragma omp parallel for schedule(static) if (planes * OH * OW * 4 > kParallelMin)
    for (int64_t p = 0; p < planes; ++p) {
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* top = x + (p * H + 2 * oh) * W;
        max_pool_row_2x2(top, top + W, OW, static_cast<int32_t>(2 * oh * W),
                         static_cast<int32_t>(W), y + (p * OH + oh) * OW,
                         argmax + (p * OH + oh) * OW);
      }
    }
    return;
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int32_t stride_w = static_cast<int32_t>(sw);
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* __restrict best = y + (p * OH + oh) * OW;
      int32_t* __restrict best_idx = argmax + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {  // -inf, and the window's first in-image tap
        const Span ws = clip_window(ow * sw - pw, kw, W);
        best[ow] = neg_inf;
        best_idx[ow] = (hs.size() > 0 && ws.size() > 0) ? static_cast<int32_t>(hs.lo * W + ws.lo)
                                                         : -1;
      }
      for (int64_t h = hs.lo; h < hs.hi; ++h) {
        const float* __restrict in_row = in + h * W;
        for (int64_t j = 0; j < kw; ++j) {
          const Span os = ow_ranges[j];
          const int64_t shift = j - pw;  // w = ow*sw + shift
          const int32_t idx_base = static_cast<int32_t>(h * W + shift);
#pragma omp simd
          for (int64_t ow = os.lo; ow < os.hi; ++ow) {
            const float v = in_row[ow * sw + shift];
            const float b = best[ow];
            // strictly greater keeps the first maximum; the second clause takes the first NaN
            const bool take = (v > b) | ((v != v) & (b == b));  // no short circuit: no branch
            best[ow] = take ? v : b;
            best_idx[ow] = take ? idx_base + static_cast<int32_t>(ow) * stride_w : best_idx[ow];
          }
        }
      }
    }
  }
}

// dx = 0, then dx[argmax] += dy (overlapping windows add up).
void max_pool2d_backward(const float* dy, const int32_t* argmax, int64_t planes, int64_t H,
                         int64_t W, int64_t OH, int64_t OW, float* dx) {
#pragma omp parallel for schedule(static) if (planes * (H * W + OH * OW) > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* __restrict grad_in = dx + p * H * W;
    const float* __restrict grad_out = dy + p * OH * OW;
    const int32_t* __restrict idx = argmax + p * OH * OW;
    std::memset(grad_in, 0, static_cast<size_t>(H * W) * sizeof(float));
    for (int64_t o = 0; o < OH * OW; ++o)
      if (idx[o] >= 0) grad_in[idx[o]] += grad_out[o];
  }
}

// y = (sum of the in-image taps) / divisor, divisor = kh*kw if count_include_pad, else the
// number of in-image taps. (Without ceil_mode a window never passes the padded border, so
// kh*kw is exactly PyTorch's count_include_pad divisor.)
void avg_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, bool count_include_pad, float* y) {
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* __restrict sum = y + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) sum[ow] = 0.0f;
      for (int64_t h = hs.lo; h < hs.hi; ++h) {
        const float* __restrict in_row = in + h * W;
        for (int64_t j = 0; j < kw; ++j) {
          const Span os = ow_ranges[j];
          const int64_t shift = j - pw;
#pragma omp simd
          for (int64_t ow = os.lo; ow < os.hi; ++ow) sum[ow] += in_row[ow * sw + shift];
        }
      }
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t divisor =
            count_include_pad ? kh * kw : hs.size() * clip_window(ow * sw - pw, kw, W).size();
        sum[ow] = divisor > 0 ? sum[ow] / static_cast<float>(divisor) : 0.0f;
      }
    }
  }
}

// dx[h, w] = sum over windows containing (h, w) of dy / divisor (same divisor as forward).
void avg_pool2d_backward(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                         int64_t OW, bool count_include_pad, float* dx) {
  constexpr int64_t kChunk = 256;  // outputs per pass: their shares live in a stack buffer
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* __restrict grad_in = dx + p * H * W;
    std::memset(grad_in, 0, static_cast<size_t>(H * W) * sizeof(float));
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* __restrict grad_out = dy + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      if (hs.size() == 0) continue;
      for (int64_t ow0 = 0; ow0 < OW; ow0 += kChunk) {
        const int64_t ow1 = std::min(OW, ow0 + kChunk);
        float share[kChunk];  // share[ow - ow0] = dy / divisor of window ow
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          const int64_t divisor =
              count_include_pad ? kh * kw : hs.size() * clip_window(ow * sw - pw, kw, W).size();
          share[ow - ow0] = divisor > 0 ? grad_out[ow] / static_cast<float>(divisor) : 0.0f;
        }
        for (int64_t h = hs.lo; h < hs.hi; ++h) {
          float* __restrict grad_row = grad_in + h * W;
          for (int64_t j = 0; j < kw; ++j) {
            const Span os = ow_ranges[j];
            const int64_t lo = std::max(os.lo, ow0), hi = std::min(os.hi, ow1);
            const int64_t shift = j - pw;
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) grad_row[ow * sw + shift] += share[ow - ow0];
          }
        }
      }
    }
  }
}

}  // namespace nncore::cpu
