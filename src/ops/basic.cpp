// Elementwise helpers, indexing, GEMM, linear and bias ops.
#include <algorithm>

#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

void fill_(Tensor& y, float value) {
  require_float("fill_", "y", y);
  NNCORE_DISPATCH(y.device(), fill, y.f32(), value, y.numel());
}

void fill_tensors_(const std::vector<Tensor>& ys, float value) {
  const TensorListArgs args = tensor_list_args("fill_tensors_", {{"tensors", &ys}});
  if (ys.empty()) return;
  NNCORE_DISPATCH(args.device, fill_tensors, args.data[0].data(), args.sizes.data(),
                  static_cast<int64_t>(ys.size()), value);
}

void axpy_(Tensor& y, float alpha, const Tensor& x) {
  require_float("axpy_", "y", y);
  require_float("axpy_", "x", x);
  require_same_shape("axpy_", "y", y, "x", x);
  const Device device = common_device("axpy_", {&y, &x});
  // y += alpha * y is fine (each element is read before it is written); a partial overlap would
  // read elements already updated, or not yet, depending on the order.
  if (x.raw() != y.raw()) require_separate("axpy_", {{"y", &y}}, {{"x", &x}});
  NNCORE_DISPATCH(device, axpy, alpha, x.f32(), y.f32(), y.numel());
}

void scale_(Tensor& y, float alpha) {
  require_float("scale_", "y", y);
  NNCORE_DISPATCH(y.device(), scale, y.f32(), alpha, y.numel());
}

Tensor mul(const Tensor& a, const Tensor& b) {
  require_float("mul", "a", a);
  require_float("mul", "b", b);
  require_same_shape("mul", "a", a, "b", b);
  const Device device = common_device("mul", {&a, &b});
  Tensor y = Tensor::empty(a.shape(), DType::float32, device);
  NNCORE_DISPATCH(device, mul, a.f32(), b.f32(), y.f32(), y.numel());
  return y;
}

Tensor index_select_rows(const Tensor& x, const Tensor& index) {
  require_defined("index_select_rows", "x", x);
  require_int("index_select_rows", "index", index);
  require_rank("index_select_rows", "index", index, 1);
  NNCORE_CHECK(x.dim() >= 1, "index_select_rows: x must have at least one axis, got shape ",
               shape_str(x.shape()));
  const Device device = common_device("index_select_rows", {&x, &index});
  const int64_t rows = index.numel(), source_rows = x.size(0);
  if (device == Device::cpu) {
    // On the GPU the indices stay on the device (checking them would sync): a bad one gives a
    // row of all-one bits (NaN, or -1 as int32) there.
    const int32_t* idx = index.i32();
    for (int64_t r = 0; r < rows; ++r) {
      NNCORE_CHECK(idx[r] >= 0 && idx[r] < source_rows, "index_select_rows: index ", idx[r],
                   " out of range for x of shape ", shape_str(x.shape()));
    }
  }
  Shape out_shape = x.shape();
  out_shape[0] = rows;
  Tensor y = Tensor::empty(out_shape, x.dtype(), device);
  const int64_t row_bytes = source_rows == 0 ? 0 : static_cast<int64_t>(x.nbytes()) / source_rows;
  if (rows > 0 && row_bytes > 0) {
    NNCORE_DISPATCH(device, gather_rows, x.raw(), index.i32(), rows, source_rows, row_bytes,
                    y.raw());
  }
  return y;
}

Tensor argmax_rows(const Tensor& x) {
  require_float("argmax_rows", "x", x);
  require_rank("argmax_rows", "x", x, 2);
  NNCORE_CHECK(x.size(1) > 0, "argmax_rows: x has no columns, shape ", shape_str(x.shape()));
  NNCORE_CHECK(x.size(1) <= (int64_t{1} << 31), "argmax_rows: x has ", x.size(1),
               " columns, more than the int32 result can index (2**31)");
  Tensor out = Tensor::empty({x.size(0)}, DType::int32, x.device());
  NNCORE_DISPATCH(x.device(), argmax_rows, x.f32(), x.size(0), x.size(1), out.i32());
  return out;
}

void gemm_(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, float alpha,
           float beta) {
  for (auto [name, t] : {NamedTensor{"a", &a}, NamedTensor{"b", &b}, NamedTensor{"c", &c}}) {
    require_float("gemm", name, *t);
    require_rank("gemm", name, *t, 2);
  }
  const Device device = common_device("gemm", {&a, &b, &c});
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0), N = trans_b ? b.size(0) : b.size(1);
  NNCORE_CHECK(K == Kb, "gemm: inner dimensions differ: op(a) is (", M, ", ", K, "), op(b) is (",
               Kb, ", ", N, ") for a ", shape_str(a.shape()), ", b ", shape_str(b.shape()),
               ", trans_a=", trans_a, ", trans_b=", trans_b);
  NNCORE_CHECK(c.size(0) == M && c.size(1) == N, "gemm: c ", shape_str(c.shape()),
               " must be (", M, ", ", N, ")");
  require_separate("gemm", {{"c", &c}}, {{"a", &a}, {"b", &b}});
  NNCORE_DISPATCH(device, sgemm, trans_a, trans_b, M, N, K, alpha, a.f32(), a.size(1), b.f32(),
                  b.size(1), beta, c.f32(), N);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  require_float("matmul", "a", a);
  require_float("matmul", "b", b);
  NNCORE_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: expected 2-D tensors, got a ",
               shape_str(a.shape()), " and b ", shape_str(b.shape()));
  const int64_t M = trans_a ? a.size(1) : a.size(0);
  const int64_t N = trans_b ? b.size(0) : b.size(1);
  const int64_t K = trans_a ? a.size(0) : a.size(1), Kb = trans_b ? b.size(1) : b.size(0);
  NNCORE_CHECK(K == Kb, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " cannot be multiplied (", K, " != ", Kb, ")");
  Tensor c = Tensor::empty({M, N}, DType::float32, common_device("matmul", {&a, &b}));
  gemm_(a, b, c, trans_a, trans_b, 1.0f, 0.0f);
  return c;
}

void bias_add_(Tensor& y, const Tensor& b) {
  require_float("bias_add_", "y", y);
  const ChannelLayout l = channel_layout("bias_add_", "y", y);
  require_bias("bias_add_", "bias", b, l.channels, y.shape());
  const Device device = common_device("bias_add_", {&y, &b});
  require_separate("bias_add_", {{"y", &y}}, {{"bias", &b}});
  NNCORE_DISPATCH(device, bias_add, y.f32(), b.f32(), l.outer, l.channels, l.inner, false);
}

void bias_grad_(const Tensor& dy, Tensor& db) {
  require_float("bias_grad_", "dy", dy);
  const ChannelLayout l = channel_layout("bias_grad_", "dy", dy);
  require_bias("bias_grad_", "dbias", db, l.channels, dy.shape());
  const Device device = common_device("bias_grad_", {&dy, &db});
  require_separate("bias_grad_", {{"dbias", &db}}, {{"dy", &dy}});
  NNCORE_DISPATCH(device, bias_grad, dy.f32(), nullptr, nullptr, db.f32(), l.outer, l.channels,
                  l.inner);
}

// x (N, in), w (out, in): checks and returns (N, in, out).
static std::tuple<int64_t, int64_t, int64_t> linear_dims(const char* op, const Tensor& x,
                                                         const Tensor& w) {
  require_float(op, "x", x);
  require_float(op, "weight", w);
  require_rank(op, "x", x, 2);
  require_rank(op, "weight", w, 2);
  NNCORE_CHECK(x.size(1) == w.size(1), op, ": input ", shape_str(x.shape()),
               " has ", x.size(1), " features but weight ", shape_str(w.shape()), " expects ",
               w.size(1));
  return {x.size(0), x.size(1), w.size(0)};
}

Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                      bool relu) {
  const auto [batch, in, out] = linear_dims("linear", x, w);
  const Device device = common_device("linear", {&x, &w});
  if (b) {
    require_bias("linear", "bias", *b, out, {batch, out});
    common_device("linear", {&x, &*b});
  }
  Tensor y = Tensor::empty({batch, out}, DType::float32, device);
  NNCORE_DISPATCH(device, linear_forward, x.f32(), w.f32(), b ? b->f32() : nullptr, batch, in,
                  out, relu, y.f32());
  return y;
}

Tensor linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, bool need_dx,
                       const std::optional<Tensor>& relu_y) {
  const auto [batch, in, out] = linear_dims("linear_backward", x, w);
  require_float("linear_backward", "dy", dy);
  require_float("linear_backward", "dw", dw);
  NNCORE_CHECK(dy.shape() == Shape({batch, out}), "linear_backward: dy ", shape_str(dy.shape()),
               " must be (", batch, ", ", out, ")");
  require_same_shape("linear_backward", "dw", dw, "weight", w);
  const Device device = common_device("linear_backward", {&x, &w, &dy, &dw});
  if (db) {
    require_bias("linear_backward", "dbias", *db, out, dy.shape());
    common_device("linear_backward", {&dy, &*db});
  }
  if (relu_y) {
    require_float("linear_backward", "relu_y", *relu_y);
    require_same_shape("linear_backward", "relu_y", *relu_y, "dy", dy);
    common_device("linear_backward", {&dy, &*relu_y});
  }
  require_separate("linear_backward", {{"dw", &dw}, {"dbias", db ? &*db : nullptr}},
                   {{"x", &x}, {"weight", &w}, {"dy", &dy},
                    {"relu_y", relu_y ? &*relu_y : nullptr}});
  // g = dy * [relu_y > 0] (the fused ReLU's backward) and db += sum_rows g, in one pass.
  const Tensor g = relu_y ? relu_backward(*relu_y, dy, db) : dy;
  if (db && !relu_y) bias_grad_(dy, *db);
  // dw += g^T x
  NNCORE_DISPATCH(device, sgemm, true, false, out, in, batch, 1.0f, g.f32(), out, x.f32(), in,
                  1.0f, dw.f32(), in);
  if (!need_dx) return Tensor();
  // dx = g w
  Tensor dx = Tensor::empty({batch, in}, DType::float32, device);
  NNCORE_DISPATCH(device, sgemm, false, false, batch, in, out, 1.0f, g.f32(), out, w.f32(), in,
                  0.0f, dx.f32(), in);
  return dx;
}

}  // namespace nncore::ops
