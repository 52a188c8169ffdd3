// Convolution as im2col + GEMM over the whole batch (Caffe's scheme, batched):
//   col  = im2col(x)                      (C*kh*kw, N*OH*OW)
//   y_cn = W col                          (Cout, N*OH*OW), then swapped to NCHW
//   dW  += dy_cn col^T,  dcol = W^T dy_cn,  dx = col2im(dcol),  db += sum dy
// On the GPU one pass covers the whole batch: large GEMMs and no per-image launches. On the CPU a
// pass covers as many images as keep the column buffer in L2, so the GEMM reads what im2col just
// wrote from cache rather than from memory.
#include <algorithm>

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

constexpr int64_t kCpuColumnBytes = int64_t(1) << 20;  // half of a 2 MiB L2

// Images per im2col + GEMM pass (see the top of the file).
int64_t images_per_pass(Device device, const ConvGeometry& g) {
  if (device == Device::cuda || g.N <= 1) return std::max<int64_t>(g.N, 1);
  const int64_t bytes_per_image = std::max<int64_t>(g.col_rows() * g.OH * g.OW * 4, 1);
  return std::clamp<int64_t>(kCpuColumnBytes / bytes_per_image, 1, g.N);
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
  const int64_t cout = w.size(0), spatial = g.OH * g.OW, image = g.C * g.H * g.W;
  if (b) {
    require_bias("conv2d", "bias", *b, cout, {g.N, cout, g.OH, g.OW});
    common_device("conv2d", {&x, &*b});
  }
  Tensor y = Tensor::empty({g.N, cout, g.OH, g.OW}, DType::float32, device);
  if (y.numel() == 0) return y;
  const int64_t chunk = images_per_pass(device, g);
  const Tensor col = Tensor::empty({g.col_rows(), chunk * spatial}, DType::float32, device);
  const Tensor y_cn = Tensor::empty({cout, chunk * spatial}, DType::float32, device);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t images = std::min(chunk, g.N - n0), cols = images * spatial;
    float* y_images = y.f32() + n0 * cout * spatial;
    // (Cout, images, OH*OW) is already NCHW when either outer axis has length 1.
    const bool nchw = images == 1 || cout == 1;
    NNCORE_DISPATCH(device, im2col, x.f32() + n0 * image, images, g.C, g.H, g.W, g.kh, g.kw, g.ph,
                    g.pw, g.sh, g.sw, col.f32());
    NNCORE_DISPATCH(device, sgemm, false, false, cout, cols, g.col_rows(), 1.0f, w.f32(),
                    g.col_rows(), col.f32(), cols, 0.0f, nchw ? y_images : y_cn.f32(), cols);
    if (!nchw) NNCORE_DISPATCH(device, swap_outer_axes, y_cn.f32(), y_images, cout, images, spatial);
  }
  if (b) bias_add_(y, *b);
  return y;
}

Tensor conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bool need_dx) {
  const ConvGeometry g = conv_geometry("conv2d_backward", x, w, sh, sw, ph, pw);
  require_float("conv2d_backward", "dy", dy);
  require_float("conv2d_backward", "dw", dw);
  const int64_t cout = w.size(0), spatial = g.OH * g.OW, image = g.C * g.H * g.W;
  NNCORE_CHECK(dy.shape() == Shape({g.N, cout, g.OH, g.OW}), "conv2d_backward: dy ",
               shape_str(dy.shape()), " must be ", shape_str({g.N, cout, g.OH, g.OW}));
  require_same_shape("conv2d_backward", "dw", dw, "weight", w);
  const Device device = common_device("conv2d_backward", {&x, &w, &dy, &dw});
  if (db) {
    require_bias("conv2d_backward", "dbias", *db, cout, dy.shape());
    common_device("conv2d_backward", {&dy, &*db});
    bias_grad_(dy, *db);
  }
  Tensor dx = need_dx ? Tensor::empty(x.shape(), DType::float32, device) : Tensor();
  if (dy.numel() == 0 || g.col_rows() == 0) {
    if (need_dx) fill_(dx, 0.0f);
    return dx;
  }
  const int64_t chunk = images_per_pass(device, g);
  const Tensor col = Tensor::empty({g.col_rows(), chunk * spatial}, DType::float32, device);
  const Tensor dy_cn = Tensor::empty({cout, chunk * spatial}, DType::float32, device);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t images = std::min(chunk, g.N - n0), cols = images * spatial;
    const float* dy_images = dy.f32() + n0 * cout * spatial;
    const bool nchw = images == 1 || cout == 1;
    if (!nchw) NNCORE_DISPATCH(device, swap_outer_axes, dy_images, dy_cn.f32(), images, cout, spatial);
    const float* dy_c = nchw ? dy_images : dy_cn.f32();  // (Cout, images*OH*OW)
    NNCORE_DISPATCH(device, im2col, x.f32() + n0 * image, images, g.C, g.H, g.W, g.kh, g.kw, g.ph,
                    g.pw, g.sh, g.sw, col.f32());
    // dW (Cout, C*kh*kw) += dy_c col^T
    NNCORE_DISPATCH(device, sgemm, false, true, cout, g.col_rows(), cols, 1.0f, dy_c, cols,
                    col.f32(), cols, 1.0f, dw.f32(), g.col_rows());
    if (!need_dx) continue;
    // dcol = W^T dy_c into col's memory (col is used up), then dx = col2im(dcol).
    NNCORE_DISPATCH(device, sgemm, true, false, g.col_rows(), cols, cout, 1.0f, w.f32(),
                    g.col_rows(), dy_c, cols, 0.0f, col.f32(), cols);
    NNCORE_DISPATCH(device, col2im, col.f32(), images, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh,
                    g.sw, dx.f32() + n0 * image);
  }
  return dx;
}

}  // namespace nncore::ops
