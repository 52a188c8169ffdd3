// Max and average pooling over the last two axes of (N, C, H, W) or (C, H, W).
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

namespace {

struct PoolGeometry {
  int64_t planes, H, W, OH, OW;
  Shape out_shape;
};

PoolGeometry pool_geometry(const char* op, const Shape& x_shape, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  NNCORE_CHECK(x_shape.size() == 3 || x_shape.size() == 4, op,
               ": input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape ", shape_str(x_shape));
  // PyTorch's rule, which also keeps every window overlapping the image.
  NNCORE_CHECK(ph <= kh / 2 && pw <= kw / 2, op, ": padding (", ph, ", ", pw,
               ") must be at most half the kernel size (", kh, ", ", kw, ")");
  PoolGeometry g;
  const size_t rank = x_shape.size();
  g.H = x_shape[rank - 2];
  g.W = x_shape[rank - 1];
  g.planes = shape_numel(Shape(x_shape.begin(), x_shape.end() - 2), op);
  g.OH = window_output_size(op, "height", g.H, kh, sh, ph);
  g.OW = window_output_size(op, "width", g.W, kw, sw, pw);
  g.out_shape = x_shape;
  g.out_shape[rank - 2] = g.OH;
  g.out_shape[rank - 1] = g.OW;
  return g;
}

}  // namespace

std::tuple<Tensor, Tensor> max_pool2d_forward(const Tensor& x, int64_t kh, int64_t kw,
                                              int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  require_float("max_pool2d", "input", x);
  const PoolGeometry g = pool_geometry("max_pool2d", x.shape(), kh, kw, sh, sw, ph, pw);
  require_int32_argmax_plane("max_pool2d", g.H, g.W);
  Tensor y = Tensor::empty(g.out_shape, DType::float32, x.device());
  Tensor argmax = Tensor::empty(g.out_shape, DType::int32, x.device());
  if (y.numel() > 0) {
    NNCORE_DISPATCH(x.device(), max_pool2d_forward, x.f32(), g.planes, g.H, g.W, kh, kw, sh, sw,
                    ph, pw, g.OH, g.OW, y.f32(), argmax.i32());
  }
  return {y, argmax};
}

Tensor max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Shape& x_shape) {
  require_float("max_pool2d_backward", "dy", dy);
  require_int("max_pool2d_backward", "argmax", argmax);
  require_same_shape("max_pool2d_backward", "dy", dy, "argmax", argmax);
  const Device device = common_device("max_pool2d_backward", {&dy, &argmax});
  NNCORE_CHECK((x_shape.size() == 3 || x_shape.size() == 4) && x_shape.size() == dy.shape().size() &&
                   std::equal(x_shape.begin(), x_shape.end() - 2, dy.shape().begin()),
               "max_pool2d_backward: dy ", shape_str(dy.shape()), " does not match input shape ",
               shape_str(x_shape));
  const size_t rank = x_shape.size();
  const int64_t planes =
      shape_numel(Shape(x_shape.begin(), x_shape.end() - 2), "max_pool2d_backward");
  Tensor dx = Tensor::empty(x_shape, DType::float32, device);
  if (dx.numel() > 0) {
    const int64_t skipped =
        NNCORE_DISPATCH(device, max_pool2d_backward, dy.f32(), argmax.i32(), planes,
                        x_shape[rank - 2], x_shape[rank - 1], dy.size(-2), dy.size(-1), dx.f32());
    NNCORE_CHECK(skipped == 0, "max_pool2d_backward: ", skipped, " argmax value(s) outside [-1, ",
                 x_shape[rank - 2] * x_shape[rank - 1], "), the input plane");
  }
  return dx;
}

Tensor avg_pool2d_forward(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, bool count_include_pad) {
  require_float("avg_pool2d", "input", x);
  const PoolGeometry g = pool_geometry("avg_pool2d", x.shape(), kh, kw, sh, sw, ph, pw);
  Tensor y = Tensor::empty(g.out_shape, DType::float32, x.device());
  if (y.numel() > 0) {
    NNCORE_DISPATCH(x.device(), avg_pool2d_forward, x.f32(), g.planes, g.H, g.W, kh, kw, sh, sw,
                    ph, pw, g.OH, g.OW, count_include_pad, y.f32());
  }
  return y;
}

Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                           bool count_include_pad) {
  require_float("avg_pool2d_backward", "dy", dy);
  const PoolGeometry g = pool_geometry("avg_pool2d_backward", x_shape, kh, kw, sh, sw, ph, pw);
  NNCORE_CHECK(dy.shape() == g.out_shape, "avg_pool2d_backward: dy ", shape_str(dy.shape()),
               " must be ", shape_str(g.out_shape), " for input ", shape_str(x_shape));
  Tensor dx = Tensor::empty(x_shape, DType::float32, dy.device());
  if (dx.numel() > 0) {
    NNCORE_DISPATCH(dy.device(), avg_pool2d_backward, dy.f32(), g.planes, g.H, g.W, kh, kw, sh,
                    sw, ph, pw, g.OH, g.OW, count_include_pad, dx.f32());
  }
  return dx;
}

}  // namespace nncore::ops
