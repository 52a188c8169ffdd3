// Convolution helpers (Caffe layout, batched): im2col and its adjoint col2im.
//   x: (N, C, H, W);  col: (C*kh*kw, N*OH*OW), row r = (c*kh + i)*kw + j,
//   column (n*OH + oh)*OW + ow;  OH = (H + 2ph - kh)/sh + 1, OW likewise.
#include <cuda_runtime.h>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// col[r, n, oh, ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j] (0 outside the image).
// One thread per (c, n, oh, ow), i.e. per (c, column): idx = c*NOHW + column. It writes the
// kh*kw rows of channel c at that column; consecutive threads write consecutive columns.
template <typename I>
__global__ void im2col_kernel(const float* __restrict__ x, int64_t total, I C, I H, I W, I kh,
                              I kw, I ph, I pw, I sh, I sw, I OH, I OW, I NOHW,
                              float* __restrict__ col) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I c = idx / NOHW;
    const I column = idx - c * NOHW;
    const I ow = column % OW;
    const I rest = column / OW;  // = n*OH + oh
    const I oh = rest % OH;
    const I n = rest / OH;
    const I h0 = oh * sh - ph, w0 = ow * sw - pw;
    const float* plane = x + (static_cast<int64_t>(n) * C + c) * H * W;
    float* out = col + static_cast<int64_t>(c) * kh * kw * NOHW + column;
    for (I i = 0; i < kh; ++i) {
      const I h = h0 + i;
      const bool h_in = h >= 0 && h < H;
      for (I j = 0; j < kw; ++j) {
        const I w = w0 + j;
        *out = (h_in && w >= 0 && w < W) ? plane[static_cast<int64_t>(h) * W + w] : 0.f;
        out += NOHW;  // next row (i, j) of the same column
      }
    }
  }
}

// x[n, c, h, w] = sum of col entries that im2col read from (n, c, h, w). Gather: one thread per
// input pixel. Output rows oh whose window covers h: oh*sh <= h + ph < oh*sh + kh, i.e.
// oh in [oh_lo, oh_hi) with oh_lo = hp < kh ? 0 : (hp - kh)/sh + 1, oh_hi = min(hp/sh + 1, OH),
// and tap i = hp - oh*sh (likewise for w). Taps are added in increasing (i, j) order (oh and ow
// descending), the order of a CPU scatter loop over rows; no atomics, deterministic.
template <typename I>
__global__ void col2im_kernel(const float* __restrict__ col, int64_t total, I C, I H, I W, I kh,
                              I kw, I ph, I pw, I sh, I sw, I OH, I OW, I NOHW,
                              float* __restrict__ x) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I w = idx % W;
    const I h = (idx / W) % H;
    const I nc = idx / (W * H);  // = n*C + c
    const I c = nc % C;
    const I n = nc / C;
    const I hp = h + ph, wp = w + pw;
    const I oh_lo = hp < kh ? 0 : (hp - kh) / sh + 1;
    const I oh_hi = min(hp / sh + 1, OH);
    const I ow_lo = wp < kw ? 0 : (wp - kw) / sw + 1;
    const I ow_hi = min(wp / sw + 1, OW);
    const float* base = col + static_cast<int64_t>(c) * kh * kw * NOHW +
                        static_cast<int64_t>(n) * OH * OW;
    float sum = 0.f;
    for (I oh = oh_hi - 1; oh >= oh_lo; --oh) {
      const I i = hp - oh * sh;
      for (I ow = ow_hi - 1; ow >= ow_lo; --ow) {
        const I j = wp - ow * sw;
        sum += base[static_cast<int64_t>(i * kw + j) * NOHW + static_cast<int64_t>(oh) * OW + ow];
      }
    }
    x[t] = sum;
  }
}

// Launches kernel_of(I{}) (im2col_kernel<I> or col2im_kernel<I>: the same parameters) over
// `total` items, I = int32_t when the image, the column matrix, the padded extents and the
// strides fit in 32 bits, else int64_t. The padded extents bound every intermediate h/w:
// oh*sh + i <= (OH - 1)*sh + kh - 1 < H + 2ph (OH*sh + kh itself can overflow int64).
template <typename KernelOf>
void launch_col_kernel(KernelOf kernel_of, const float* src, int64_t total, int64_t N, int64_t C,
                       int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t ph, int64_t pw,
                       int64_t sh, int64_t sw, float* dst) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  const int64_t NOHW = N * OH * OW;
  with_index_type({N * C * H * W, C * kh * kw * NOHW, H + 2 * ph, W + 2 * pw, sh, sw},
                  [&](auto index) {
                    using I = decltype(index);
                    const auto kernel = kernel_of(index);
                    kernel<<<blocks_for(total), kThreads, 0, stream()>>>(
                        src, total, I(C), I(H), I(W), I(kh), I(kw), I(ph), I(pw), I(sh), I(sw),
                        I(OH), I(OW), I(NOHW), dst);
                  });
}

}  // namespace

void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
            int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* col) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  if (N <= 0 || C <= 0 || OH <= 0 || OW <= 0 || kh <= 0 || kw <= 0) return;
  launch_col_kernel([](auto index) { return &im2col_kernel<decltype(index)>; }, x,
                    C * N * OH * OW, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  NNCORE_CUDA_LAUNCH_CHECK("im2col");
}

void col2im(const float* col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh,
            int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* x) {
  const int64_t total = N * C * H * W;
  if (total <= 0) return;
  launch_col_kernel([](auto index) { return &col2im_kernel<decltype(index)>; }, col, total, N, C,
                    H, W, kh, kw, ph, pw, sh, sw, x);
  NNCORE_CUDA_LAUNCH_CHECK("col2im");
}

}  // namespace nncore::cuda
