// Convolution as im2col + GEMM on the GPU: one pass over the whole batch, so each step is one
// large launch (no per-image launches):
//   col = im2col(x) (C*kh*kw, N*OH*OW);  y_cn = W col;  y = act(swap(y_cn) + b) [then pooled]
//   g = dy * act'(y);  db += sum(g);  g_cn = swap(g) [unpooled];  dW += g_cn col^T;
//   dcol = W^T g_cn;  dx = col2im(dcol)
// The GEMM's output y_cn is (Cout, N, OH*OW); one epilogue kernel swaps it to NCHW and applies
// bias, ReLU and the fused pool in the same pass, and backward one kernel unpools the pooled
// gradient straight into g_cn. Everything is queued on the library stream; scratch holds col and
// y_cn / g_cn (and, backward, the masked gradient).
#include <cuda_runtime.h>

#include "common.cuh"
#include "layout.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// y[n, c, i] = act(y_cn[c, n, i]): the axes swap, bias and ReLU in one pass, one thread per
// output. y may be y_cn itself when the two layouts agree (N == 1 or Cout == 1).
template <typename I>
__global__ void conv_output_kernel(const float* y_cn, BiasActivation act, int64_t total, I N,
                                   I C, I OHW, float* y) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I i = idx % OHW;
    const I c = (idx / OHW) % C;
    const I n = idx / (OHW * C);
    y[t] = act(y_cn[(static_cast<int64_t>(c) * N + n) * OHW + i], c);
  }
}

// Pooled: y[n, c, ph, pw] = max over the 2x2, stride-2 window of act(y_cn[c, n, h, w]), with
// argmax = h*OW + w; window_max's rule, so exactly max_pool2d_forward of the unpooled output
// (act is applied to every tap before the max). One thread per pooled output; the full-size
// output is never stored.
template <typename I>
__global__ void conv_output_pool_kernel(const float* __restrict__ y_cn, BiasActivation act,
                                        int64_t total, I N, I C, I OH, I OW,
                                        float* __restrict__ y, int32_t* __restrict__ argmax) {
  const I PH = OH / 2, PW = OW / 2;
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I pw = idx % PW;
    const I ph = (idx / PW) % PH;
    const I c = (idx / (PW * PH)) % C;
    const I n = idx / (PW * PH * C);
    const float* plane = y_cn + (static_cast<int64_t>(c) * N + n) * OH * OW;
    I arg;
    y[t] = window_max([&](I h, I w) { return act(plane[static_cast<int64_t>(h) * OW + w], c); },
                      OW, 2 * ph, 2 * ph + 2, 2 * pw, 2 * pw + 2, arg);
    argmax[t] = static_cast<int32_t>(arg);
  }
}

// g_cn[c, n, h, w] = g[n, c, h/2, w/2] where that 2x2 window's argmax is h*OW + w, else 0:
// max_pool2d_backward and the axes swap in one pass, as a gather (a pixel lies in at most one
// window). 0.f + g keeps the bits of the scatter's dx = 0; dx += g (a -0 becomes +0). An argmax
// outside its own window routes nothing (the forward's always lies inside).
template <typename I>
__global__ void unpool_to_cn_kernel(const float* __restrict__ g,
                                    const int32_t* __restrict__ argmax, int64_t total, I N, I C,
                                    I OH, I OW, float* __restrict__ g_cn) {
  const I PH = OH / 2, PW = OW / 2;
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I w = idx % OW;
    const I h = (idx / OW) % OH;
    const I n = (idx / (OW * OH)) % N;
    const I c = idx / (OW * OH * N);
    float v = 0.f;
    if (h < 2 * PH && w < 2 * PW) {
      const int64_t o = ((static_cast<int64_t>(n) * C + c) * PH + h / 2) * PW + w / 2;
      if (argmax[o] == h * OW + w) v = 0.f + g[o];
    }
    g_cn[t] = v;
  }
}

}  // namespace

// Scratch: col (C*kh*kw x N*OH*OW) and y_cn / g_cn (Cout x N*OH*OW); backward also the masked
// gradient dy * [relu_y > 0] (as many floats as dy: pooled or not).
int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t, int64_t, int64_t cout, int64_t kh,
                              int64_t kw, int64_t, int64_t, int64_t, int64_t, int64_t OH,
                              int64_t OW, bool backward, bool pooled) {
  const int64_t cols = N * OH * OW;
  const int64_t dy_size = pooled ? cout * N * (OH / 2) * (OW / 2) : cout * cols;
  return (C * kh * kw + cout) * cols + (backward ? dy_size : 0);
}

void conv2d_forward(const float* x, const float* w, const float* b, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, bool relu,
                    float* y, int32_t* pool_argmax, float* scratch) {
  const int64_t col_rows = C * kh * kw, cols = N * OH * OW;
  float* col = scratch;
  // Unpooled with N == 1 or Cout == 1, (Cout, N, OH*OW) is already NCHW: the GEMM writes y.
  const bool gemm_into_y = pool_argmax == nullptr && (N == 1 || cout == 1);
  float* y_cn = gemm_into_y ? y : col + col_rows * cols;
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, false, cout, cols, col_rows, 1.0f, w, col_rows, col, cols, 0.0f, y_cn, cols);
  const BiasActivation act{b, relu};
  if (pool_argmax != nullptr) {
    const int64_t total = cout * N * (OH / 2) * (OW / 2);
    with_index_type({cout * cols}, [&](auto index) {
      using I = decltype(index);
      conv_output_pool_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
          y_cn, act, total, I(N), I(cout), I(OH), I(OW), y, pool_argmax);
    });
    NNCORE_CUDA_LAUNCH_CHECK("conv_output_pool");
  } else if (!gemm_into_y || b != nullptr || relu) {
    const int64_t total = cout * cols;
    with_index_type({total}, [&](auto index) {
      using I = decltype(index);
      conv_output_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
          y_cn, act, total, I(N), I(cout), I(OH * OW), y);
    });
    NNCORE_CUDA_LAUNCH_CHECK("conv_output");
  }
}

int64_t conv2d_backward(const float* x, const float* w, const float* dy, const float* relu_y,
                        const int32_t* pool_argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                        int64_t cout, int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t sh,
                        int64_t sw, int64_t OH, int64_t OW, float* dw, float* db, float* dx,
                        float* scratch) {
  const int64_t col_rows = C * kh * kw, cols = N * OH * OW;
  float* col = scratch;
  float* g_cn = col + col_rows * cols;
  float* masked = g_cn + cout * cols;  // dy * [relu_y > 0], as many floats as dy
  const bool pooled = pool_argmax != nullptr;
  const int64_t dy_inner = pooled ? (OH / 2) * (OW / 2) : OH * OW;
  // g = dy * [relu_y > 0] (or dy), (N, Cout, dy_inner): pooled or not. Pooled, db sums the
  // pooled gradient: unpooling only moves its values (and adds zeros). The mask is applied in
  // the bias gradient's pass when there is one.
  if (db != nullptr) bias_grad(dy, relu_y, masked, db, N, cout, dy_inner);
  else if (relu_y != nullptr) relu_backward(relu_y, dy, masked, N * cout * dy_inner);
  const float* g = relu_y != nullptr ? masked : dy;
  const float* g_c = g_cn;  // (Cout, N*OH*OW)
  if (pooled) {
    const int64_t total = cout * cols;
    with_index_type({total}, [&](auto index) {
      using I = decltype(index);
      unpool_to_cn_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
          g, pool_argmax, total, I(N), I(cout), I(OH), I(OW), g_cn);
    });
    NNCORE_CUDA_LAUNCH_CHECK("unpool_to_cn");
  } else if (N == 1 || cout == 1) {
    g_c = g;  // (N, Cout, OH*OW) is already (Cout, N*OH*OW)
  } else {
    swap_outer_axes(g, g_cn, N, cout, OH * OW);
  }
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, true, cout, col_rows, cols, 1.0f, g_c, cols, col, cols, 1.0f, dw, col_rows);
  if (dx == nullptr) return 0;
  // dcol = W^T g_c into col's memory (col is used up), then dx = col2im(dcol).
  sgemm(true, false, col_rows, cols, cout, 1.0f, w, col_rows, g_c, cols, 0.0f, col, cols);
  col2im(col, N, C, H, W, kh, kw, ph, pw, sh, sw, dx);
  return 0;  // argmax entries outside their window are skipped (counting would synchronize)
}

}  // namespace nncore::cuda
