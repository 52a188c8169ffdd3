// Convolution as im2col + GEMM over the whole batch (Caffe's scheme, batched):
//   col  = im2col(x)                      (C*kh*kw, N*OH*OW)
//   y_cn = W col                          (Cout, N*OH*OW), then swapped to NCHW
//   dW  += dy_cn col^T,  dcol = W^T dy_cn,  dx = col2im(dcol),  db += sum dy
// One GEMM per pass for the whole batch: large, efficient GEMMs and no per-image launches.
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

namespace {

struct ConvGeometry {
  int64_t N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW;
  int64_t col_rows() const { return C * kh * kw; }
  int64_t col_cols() const { return N * OH * OW; }
};

ConvGeometry image_geometry(const char* op, const Shape& x_shape, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  NNCORE_CHECK(x_shape.size() == 4, op, ": input must be 4-D (N, C, H, W), got shape ",
               shape_str(x_shape));
  ConvGeometry g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], kh, kw, sh, sw, ph, pw, 0, 0};
  g.OH = window_output_size(op, "height", g.H, kh, sh, ph);
  g.OW = window_output_size(op, "width", g.W, kw, sw, pw);
  return g;
}

ConvGeometry conv_geometry(const char* op, const Tensor& x, const Tensor& w, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw) {
  require_float(op, "input", x);
  require_float(op, "weight", w);
  require_rank(op, "weight", w, 4);
  NNCORE_CHECK(x.dim() == 4, op, ": input must be 4-D (N, C, H, W), got shape ",
               shape_str(x.shape()));
  NNCORE_CHECK(x.size(1) == w.size(1), op, ": input ", shape_str(x.shape()), " has ", x.size(1),
               " channels but weight ", shape_str(w.shape()), " expects ", w.size(1));
  return image_geometry(op, x.shape(), w.size(2), w.size(3), sh, sw, ph, pw);
}

Tensor im2col_of(const Tensor& x, const ConvGeometry& g) {
  Tensor col = Tensor::empty({g.col_rows(), g.col_cols()}, DType::float32, x.device());
  if (col.numel() > 0) {
    NNCORE_DISPATCH(x.device(), im2col, x.f32(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw,
                    g.sh, g.sw, col.f32());
  }
  return col;
}

Tensor col2im_of(const Tensor& col, const ConvGeometry& g) {
  Tensor x = Tensor::empty({g.N, g.C, g.H, g.W}, DType::float32, col.device());
  if (col.numel() > 0) {
    NNCORE_DISPATCH(col.device(), col2im, col.f32(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw,
                    g.sh, g.sw, x.f32());
  }
  return x;
}

// (A, B, inner) -> (B, A, inner); a no-op view when either outer axis has length 1.
Tensor swap_outer(const Tensor& x, int64_t A, int64_t B, int64_t inner) {
  if (A == 1 || B == 1) return x.reshape({B, A, inner});
  Tensor y = Tensor::empty({B, A, inner}, DType::float32, x.device());
  NNCORE_DISPATCH(x.device(), swap_outer_axes, x.f32(), y.f32(), A, B, inner);
  return y;
}

}  // namespace

Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
              int64_t pw) {
  require_float("im2col", "input", x);
  return im2col_of(x, image_geometry("im2col", x.shape(), kh, kw, sh, sw, ph, pw));
}

Tensor col2im(const Tensor& col, const Shape& x_shape, int64_t kh, int64_t kw, int64_t sh,
              int64_t sw, int64_t ph, int64_t pw) {
  require_float("col2im", "col", col);
  require_rank("col2im", "col", col, 2);
  const ConvGeometry g = image_geometry("col2im", x_shape, kh, kw, sh, sw, ph, pw);
  NNCORE_CHECK(col.size(0) == g.col_rows() && col.size(1) == g.col_cols(), "col2im: col ",
               shape_str(col.shape()), " must be (", g.col_rows(), ", ", g.col_cols(),
               ") for image ", shape_str(x_shape), " and kernel ", kh, "x", kw);
  return col2im_of(col, g);
}

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                      int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const ConvGeometry g = conv_geometry("conv2d", x, w, sh, sw, ph, pw);
  const Device device = common_device("conv2d", {&x, &w});
  const int64_t cout = w.size(0), spatial = g.OH * g.OW;
  if (b) {
    require_bias("conv2d", "bias", *b, cout, {g.N, cout, g.OH, g.OW});
    common_device("conv2d", {&x, &*b});
  }
  const Tensor col = im2col_of(x, g);
  Tensor y_cn = Tensor::empty({cout, g.N, spatial}, DType::float32, device);
  NNCORE_DISPATCH(device, sgemm, false, false, cout, g.col_cols(), g.col_rows(), 1.0f, w.f32(),
                  g.col_rows(), col.f32(), g.col_cols(), 0.0f, y_cn.f32(), g.col_cols());
  Tensor y = swap_outer(y_cn, cout, g.N, spatial).reshape({g.N, cout, g.OH, g.OW});
  if (b) bias_add_(y, *b);
  return y;
}

Tensor conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bool need_dx) {
  const ConvGeometry g = conv_geometry("conv2d_backward", x, w, sh, sw, ph, pw);
  require_float("conv2d_backward", "dy", dy);
  require_float("conv2d_backward", "dw", dw);
  const int64_t cout = w.size(0), spatial = g.OH * g.OW;
  NNCORE_CHECK(dy.shape() == Shape({g.N, cout, g.OH, g.OW}), "conv2d_backward: dy ",
               shape_str(dy.shape()), " must be ", shape_str({g.N, cout, g.OH, g.OW}));
  require_same_shape("conv2d_backward", "dw", dw, "weight", w);
  const Device device = common_device("conv2d_backward", {&x, &w, &dy, &dw});

  const Tensor dy_cn = swap_outer(dy, g.N, cout, spatial);  // (Cout, N*OH*OW)
  const Tensor col = im2col_of(x, g);
  // dW (Cout, C*kh*kw) += dy_cn col^T
  NNCORE_DISPATCH(device, sgemm, false, true, cout, g.col_rows(), g.col_cols(), 1.0f,
                  dy_cn.f32(), g.col_cols(), col.f32(), g.col_cols(), 1.0f, dw.f32(),
                  g.col_rows());
  if (db) {
    require_bias("conv2d_backward", "dbias", *db, cout, dy.shape());
    common_device("conv2d_backward", {&dy, &*db});
    bias_grad_(dy, *db);
  }
  if (!need_dx) return Tensor();
  // dcol (C*kh*kw, N*OH*OW) = W^T dy_cn, reusing col's memory (col is no longer needed).
  Tensor dcol = col;
  NNCORE_DISPATCH(device, sgemm, true, false, g.col_rows(), g.col_cols(), cout, 1.0f, w.f32(),
                  g.col_rows(), dy_cn.f32(), g.col_cols(), 0.0f, dcol.f32(), g.col_cols());
  return col2im_of(dcol, g);
}

}  // namespace nncore::ops
