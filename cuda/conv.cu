// Convolution as im2col + GEMM on the GPU: one pass over the whole batch, so each step is one
// large launch (no per-image launches):
//   col = im2col(x) (C*kh*kw, N*OH*OW);  y_cn = W col;  y = act(swap(y_cn) + b)
//   g = dy * act'(y);  db += sum(g);  g_cn = swap(g);  dW += g_cn col^T;  dcol = W^T g_cn;
//   dx = col2im(dcol)
// Everything is queued on the library stream; scratch holds col and y_cn / dy_cn.
#include "nncore/kernels.h"

namespace nncore::cuda {

// Scratch: col (C*kh*kw x N*OH*OW), y_cn / g_cn (Cout x N*OH*OW) and, backward, the masked
// gradient g (N, Cout, OH, OW) of a fused ReLU; pooled, also the full-size output (forward) or
// the pooled masked gradient and the full-size one (backward).
int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t, int64_t, int64_t cout, int64_t kh,
                              int64_t kw, int64_t, int64_t, int64_t, int64_t, int64_t OH,
                              int64_t OW, bool backward, bool pooled) {
  const int64_t outputs = cout * N * OH * OW;
  return (C * kh * kw + cout * (backward ? 2 : 1)) * N * OH * OW +
         (pooled ? outputs + (backward ? cout * N * (OH / 2) * (OW / 2) : 0) : 0);
}

void conv2d_forward(const float* x, const float* w, const float* b, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, bool relu,
                    float* y, int32_t* pool_argmax, float* scratch) {
  const int64_t col_rows = C * kh * kw, cols = N * OH * OW;
  float* col = scratch;
  float* y_cn = col + col_rows * cols;
  float* out = pool_argmax != nullptr ? y_cn + cout * cols : y;  // the full-size output
  const bool nchw = N == 1 || cout == 1;  // (Cout, N, OH*OW) is already NCHW
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, false, cout, cols, col_rows, 1.0f, w, col_rows, col, cols, 0.0f,
        nchw ? out : y_cn, cols);
  if (!nchw) swap_outer_axes(y_cn, out, cout, N, OH * OW);
  if (b != nullptr) bias_add(out, b, N, cout, OH * OW);
  if (relu) relu_forward(out, out, N * cout * OH * OW);
  if (pool_argmax != nullptr) {
    max_pool2d_forward(out, N * cout, OH, OW, 2, 2, 2, 2, 0, 0, OH / 2, OW / 2, y, pool_argmax);
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
  const float* g = dy;
  const int64_t dy_size = pool_argmax != nullptr ? cout * N * (OH / 2) * (OW / 2) : cout * cols;
  if (relu_y != nullptr) {
    relu_backward(relu_y, g, masked, dy_size);
    g = masked;
  }
  if (pool_argmax != nullptr) {  // the pooled gradient to full size, after the masked one
    float* full = masked + dy_size;
    max_pool2d_backward(g, pool_argmax, N * cout, OH, OW, OH / 2, OW / 2, full);
    g = full;
  }
  if (db != nullptr) bias_grad(g, db, N, cout, OH * OW);
  const bool nchw = N == 1 || cout == 1;
  if (!nchw) swap_outer_axes(g, g_cn, N, cout, OH * OW);
  const float* g_c = nchw ? g : g_cn;  // (Cout, N*OH*OW)
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, true, cout, col_rows, cols, 1.0f, g_c, cols, col, cols, 1.0f, dw, col_rows);
  if (dx == nullptr) return 0;
  // dcol = W^T g_c into col's memory (col is used up), then dx = col2im(dcol).
  sgemm(true, false, col_rows, cols, cout, 1.0f, w, col_rows, g_c, cols, 0.0f, col, cols);
  col2im(col, N, C, H, W, kh, kw, ph, pw, sh, sw, dx);
  return 0;  // out-of-range pool_argmax entries are skipped by max_pool2d_backward
}

}  // namespace nncore::cuda
