// Convolution ops: validation and scratch for the conv2d kernels (src/cpu/conv.cpp,
// cuda/conv.cu, in passes of images sized by each backend), with the ReLU and a 2x2 max pool
// optionally fused, plus the im2col and col2im ops on their own.

#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

namespace {

struct ConvGeometry {
  int64_t N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW;
  int64_t col_rows, col_cols;  // im2col's matrix: C*kh*kw x N*OH*OW
};

ConvGeometry image_geometry(const char* op, const Shape& x_shape, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  NNCORE_CHECK(x_shape.size() == 4, op, ": input must be 4-D (N, C, H, W), got shape ",
               shape_str(x_shape));
  shape_numel(x_shape, op);  // (x_shape may come from the caller: col2im)
  ConvGeometry g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], kh, kw, sh, sw, ph, pw, 0, 0,
                 0, 0};
  g.OH = window_output_size(op, "height", g.H, kh, sh, ph);
  g.OW = window_output_size(op, "width", g.W, kw, sw, pw);
  g.col_rows = shape_numel({g.C, kh, kw}, op);
  g.col_cols = shape_numel({g.N, g.OH, g.OW}, op);
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
  Tensor col = Tensor::empty({g.col_rows, g.col_cols}, DType::float32, x.device());
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
  NNCORE_CHECK(col.size(0) == g.col_rows && col.size(1) == g.col_cols, "col2im: col ",
               shape_str(col.shape()), " must be (", g.col_rows, ", ", g.col_cols,
               ") for image ", shape_str(x_shape), " and kernel ", kh, "x", kw);
  return col2im_of(col, g);
}

namespace {

// The shared part of conv2d_forward and conv2d_pool_forward: y (and argmax) allocated by the
// caller with the output shape, pooled when argmax is defined.
void run_conv2d_forward(const char* op, const ConvGeometry& g, const Tensor& x, const Tensor& w,
                        const std::optional<Tensor>& b, bool relu, Tensor& y, Tensor* argmax) {
  const int64_t cout = w.size(0);
  if (b) {
    require_bias(op, "bias", *b, cout, {g.N, cout, g.OH, g.OW});
    common_device(op, {&x, &*b});
  }
  if (y.numel() == 0) return;
  const Device device = x.device();
  const int64_t scratch_floats =
      NNCORE_DISPATCH(device, conv2d_scratch_floats, g.N, g.C, g.H, g.W, cout, g.kh, g.kw, g.ph,
                      g.pw, g.sh, g.sw, g.OH, g.OW, false, argmax != nullptr);
  const Tensor scratch = Tensor::empty({scratch_floats}, DType::float32, device);
  NNCORE_DISPATCH(device, conv2d_forward, x.f32(), w.f32(), b ? b->f32() : nullptr, g.N, g.C,
                  g.H, g.W, cout, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, g.OH, g.OW, relu, y.f32(),
                  argmax != nullptr ? argmax->i32() : nullptr, scratch.f32());
}

// The shared part of conv2d_backward and conv2d_pool_backward: dy_shape is the forward's
// output shape (pooled when argmax is given).
Tensor run_conv2d_backward(const char* op, const Tensor& x, const Tensor& w, const Tensor& dy,
                           Tensor& dw, std::optional<Tensor> db, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, bool need_dx,
                           const std::optional<Tensor>& relu_y, const Tensor* argmax) {
  const ConvGeometry g = conv_geometry(op, x, w, sh, sw, ph, pw);
  require_float(op, "dy", dy);
  require_float(op, "dw", dw);
  const int64_t cout = w.size(0);
  const Shape dy_shape = argmax != nullptr ? Shape{g.N, cout, g.OH / 2, g.OW / 2}
                                           : Shape{g.N, cout, g.OH, g.OW};
  NNCORE_CHECK(dy.shape() == dy_shape, op, ": dy ", shape_str(dy.shape()), " must be ",
               shape_str(dy_shape));
  require_same_shape(op, "dw", dw, "weight", w);
  const Device device = common_device(op, {&x, &w, &dy, &dw});
  if (db) {
    require_bias(op, "dbias", *db, cout, dy.shape());
    common_device(op, {&dy, &*db});
  }
  if (relu_y) {
    require_float(op, "relu_y", *relu_y);
    require_same_shape(op, "relu_y", *relu_y, "dy", dy);
    common_device(op, {&dy, &*relu_y});
  }
  if (argmax != nullptr) {
    require_int(op, "argmax", *argmax);
    require_same_shape(op, "argmax", *argmax, "dy", dy);
    common_device(op, {&dy, argmax});
  }
  require_separate(op, {{"dw", &dw}, {"dbias", db ? &*db : nullptr}},
                   {{"input", &x}, {"weight", &w}, {"dy", &dy},
                    {"relu_y", relu_y ? &*relu_y : nullptr}, {"argmax", argmax}});
  Tensor dx = need_dx ? Tensor::empty(x.shape(), DType::float32, device) : Tensor();
  if (dy.numel() == 0) {
    if (need_dx) fill_(dx, 0.0f);
    return dx;
  }
  if (g.col_rows == 0) {  // no input channels: y was the bias alone, only db has a gradient
    if (db) {
      Tensor g_out = relu_y ? relu_backward(*relu_y, dy) : dy;
      if (argmax != nullptr) g_out = max_pool2d_backward(g_out, *argmax, {g.N, cout, g.OH, g.OW});
      bias_grad_(g_out, *db);
    }
    return dx;
  }
  const int64_t scratch_floats =
      NNCORE_DISPATCH(device, conv2d_scratch_floats, g.N, g.C, g.H, g.W, cout, g.kh, g.kw, g.ph,
                      g.pw, g.sh, g.sw, g.OH, g.OW, true, argmax != nullptr);
  const Tensor scratch = Tensor::empty({scratch_floats}, DType::float32, device);
  const int64_t skipped = NNCORE_DISPATCH(
      device, conv2d_backward, x.f32(), w.f32(), dy.f32(), relu_y ? relu_y->f32() : nullptr,
      argmax != nullptr ? argmax->i32() : nullptr, g.N, g.C, g.H, g.W, cout, g.kh, g.kw, g.ph,
      g.pw, g.sh, g.sw, g.OH, g.OW, dw.f32(), db ? db->f32() : nullptr,
      need_dx ? dx.f32() : nullptr, scratch.f32());
  NNCORE_CHECK(skipped == 0, op, ": ", skipped, " argmax value(s) outside [0, ", g.OH * g.OW,
               "), the convolution's output plane (dw and db now hold partial sums)");
  return dx;
}

}  // namespace

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                      int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool relu) {
  const ConvGeometry g = conv_geometry("conv2d", x, w, sh, sw, ph, pw);
  const Device device = common_device("conv2d", {&x, &w});
  Tensor y = Tensor::empty({g.N, w.size(0), g.OH, g.OW}, DType::float32, device);
  run_conv2d_forward("conv2d", g, x, w, b, relu, y, nullptr);
  return y;
}

Tensor conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bool need_dx, const std::optional<Tensor>& relu_y) {
  return run_conv2d_backward("conv2d_backward", x, w, dy, dw, std::move(db), sh, sw, ph, pw,
                             need_dx, relu_y, nullptr);
}

std::tuple<Tensor, Tensor> conv2d_pool_forward(const Tensor& x, const Tensor& w,
                                               const std::optional<Tensor>& b, int64_t sh,
                                               int64_t sw, int64_t ph, int64_t pw, bool relu) {
  const ConvGeometry g = conv_geometry("conv2d_pool", x, w, sh, sw, ph, pw);
  const Device device = common_device("conv2d_pool", {&x, &w});
  NNCORE_CHECK(g.OH >= 2 && g.OW >= 2, "conv2d_pool: the convolution's output ", g.OH, "x", g.OW,
               " is too small for a 2x2 pool");
  require_int32_argmax_plane("conv2d_pool", g.OH, g.OW);
  const Shape shape{g.N, w.size(0), g.OH / 2, g.OW / 2};
  Tensor y = Tensor::empty(shape, DType::float32, device);
  Tensor argmax = Tensor::empty(shape, DType::int32, device);
  run_conv2d_forward("conv2d_pool", g, x, w, b, relu, y, &argmax);
  return {y, argmax};
}

Tensor conv2d_pool_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                            const Tensor& argmax, Tensor& dw, std::optional<Tensor> db,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool need_dx,
                            const std::optional<Tensor>& relu_y) {
  return run_conv2d_backward("conv2d_pool_backward", x, w, dy, dw, std::move(db), sh, sw, ph,
                             pw, need_dx, relu_y, &argmax);
}

}  // namespace nncore::ops
