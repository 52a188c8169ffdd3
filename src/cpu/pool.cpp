// Max and average 2-D pooling over `planes` independent H x W planes (planes = N*C).
// Window (oh, ow) covers rows oh*sh - ph .. + kh - 1 and columns ow*sw - pw .. + kw - 1;
// OH = (H + 2ph - kh)/sh + 1. One thread owns whole planes, so every kernel is deterministic.
#include <algorithm>
#include <cstring>
#include <limits>

#include "nncore/kernels.h"

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

}  // namespace

// y = max over the in-image part of the window (padding is -inf, so it never wins);
// argmax = h*W + w of the first maximum in row-major window order. NaN counts as a maximum
// (propagates, like PyTorch). A window with no in-image tap (only possible when a padding is
// >= its kernel size, which dispatch rejects) gives y = -inf, argmax = -1.
void max_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, float* y, int32_t* argmax) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    float* __restrict out = y + p * OH * OW;
    int32_t* __restrict out_idx = argmax + p * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span ws = clip_window(ow * sw - pw, kw, W);
        float best = neg_inf;
        int64_t best_idx = (hs.lo < hs.hi && ws.lo < ws.hi) ? hs.lo * W + ws.lo : -1;
        for (int64_t h = hs.lo; h < hs.hi; ++h)
          for (int64_t w = ws.lo; w < ws.hi; ++w) {
            const float v = in[h * W + w];
            // strictly greater keeps the first maximum; the second clause takes the first NaN
            if (v > best || (v != v && best == best)) {
              best = v;
              best_idx = h * W + w;
            }
          }
        out[oh * OW + ow] = best;
        out_idx[oh * OW + ow] = static_cast<int32_t>(best_idx);
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
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    float* __restrict out = y + p * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span ws = clip_window(ow * sw - pw, kw, W);
        float sum = 0.0f;
        for (int64_t h = hs.lo; h < hs.hi; ++h)
          for (int64_t w = ws.lo; w < ws.hi; ++w) sum += in[h * W + w];
        const int64_t divisor = count_include_pad ? kh * kw : hs.size() * ws.size();
        out[oh * OW + ow] = divisor > 0 ? sum / static_cast<float>(divisor) : 0.0f;
      }
    }
  }
}

// dx[h, w] = sum over windows containing (h, w) of dy / divisor (same divisor as forward).
void avg_pool2d_backward(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                         int64_t OW, bool count_include_pad, float* dx) {
#pragma omp parallel for schedule(static) if (planes * OH * OW * kh * kw > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* __restrict grad_in = dx + p * H * W;
    const float* __restrict grad_out = dy + p * OH * OW;
    std::memset(grad_in, 0, static_cast<size_t>(H * W) * sizeof(float));
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Span ws = clip_window(ow * sw - pw, kw, W);
        const int64_t divisor = count_include_pad ? kh * kw : hs.size() * ws.size();
        if (divisor == 0) continue;
        const float share = grad_out[oh * OW + ow] / static_cast<float>(divisor);
        for (int64_t h = hs.lo; h < hs.hi; ++h)
          for (int64_t w = ws.lo; w < ws.hi; ++w) grad_in[h * W + w] += share;
      }
    }
  }
}

}  // namespace nncore::cpu
