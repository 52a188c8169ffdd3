// Convolution as im2col + GEMM on the GPU: one pass over the whole batch, so each step is one
// large launch (no per-image launches):
//   col = im2col(x) (C*kh*kw, N*OH*OW);  y_cn = W col;  y = swap(y_cn)
//   dW += dy_cn col^T;  dcol = W^T dy_cn;  dx = col2im(dcol)
// Everything is queued on the library stream; scratch holds col and y_cn / dy_cn.
#include "nncore/kernels.h"

namespace nncore::cuda {

int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t, int64_t, int64_t cout, int64_t kh,
                              int64_t kw, int64_t OH, int64_t OW, bool) {
  return (C * kh * kw + cout) * N * OH * OW;
}

void conv2d_forward(const float* x, const float* w, int64_t N, int64_t C, int64_t H, int64_t W,
                    int64_t cout, int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t sh,
                    int64_t sw, int64_t OH, int64_t OW, float* y, float* scratch) {
  const int64_t col_rows = C * kh * kw, cols = N * OH * OW;
  float* col = scratch;
  float* y_cn = col + col_rows * cols;
  const bool nchw = N == 1 || cout == 1;  // (Cout, N, OH*OW) is already NCHW
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, false, cout, cols, col_rows, 1.0f, w, col_rows, col, cols, 0.0f,
        nchw ? y : y_cn, cols);
  if (!nchw) swap_outer_axes(y_cn, y, cout, N, OH * OW);
}

void conv2d_backward(const float* x, const float* w, const float* dy, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                     int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, float* dw,
                     float* dx, float* scratch) {
  const int64_t col_rows = C * kh * kw, cols = N * OH * OW;
  float* col = scratch;
  float* dy_cn = col + col_rows * cols;
  const bool nchw = N == 1 || cout == 1;
  if (!nchw) swap_outer_axes(dy, dy_cn, N, cout, OH * OW);
  const float* dy_c = nchw ? dy : dy_cn;  // (Cout, N*OH*OW)
  im2col(x, N, C, H, W, kh, kw, ph, pw, sh, sw, col);
  sgemm(false, true, cout, col_rows, cols, 1.0f, dy_c, cols, col, cols, 1.0f, dw, col_rows);
  if (dx == nullptr) return;
  // dcol = W^T dy_c into col's memory (col is used up), then dx = col2im(dcol).
  sgemm(true, false, col_rows, cols, cout, 1.0f, w, col_rows, dy_c, cols, 0.0f, col, cols);
  col2im(col, N, C, H, W, kh, kw, ph, pw, sh, sw, dx);
}

}  // namespace nncore::cuda
