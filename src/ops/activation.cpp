// Activations (elementwise, any shape) and softmax / log-softmax over the last axis.
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

namespace {

// y = kernel(x) for an elementwise forward kernel.
template <typename Kernel>
Tensor unary(const char* op, const Tensor& x, Kernel kernel) {
  require_float(op, "input", x);
  Tensor y = Tensor::empty(x.shape(), DType::float32, x.device());
  kernel(x, y);
  return y;
}

// dx = kernel(saved, dy): `saved` is the forward input or output, per the kernel's formula.
template <typename Kernel>
Tensor unary_backward(const char* op, const Tensor& saved, const Tensor& dy, Kernel kernel) {
  require_float(op, "saved tensor", saved);
  require_float(op, "dy", dy);
  require_same_shape(op, "saved tensor", saved, "dy", dy);
  common_device(op, {&saved, &dy});
  Tensor dx = Tensor::empty(dy.shape(), DType::float32, dy.device());
  kernel(saved, dy, dx);
  return dx;
}

// The last axis is the softmax axis: (rows, cols).
std::pair<int64_t, int64_t> rows_cols(const char* op, const Tensor& x) {
  NNCORE_CHECK(x.dim() >= 1, op, ": input must have at least one axis, got a scalar");
  const int64_t cols = x.size(-1);
  return {cols == 0 ? 0 : x.numel() / cols, cols};
}

}  // namespace

Tensor relu_forward(const Tensor& x) {
  return unary("relu", x, [](const Tensor& in, Tensor& out) {
    NNCORE_DISPATCH(in.device(), relu_forward, in.f32(), out.f32(), in.numel());
  });
}
Tensor relu_backward(const Tensor& x, const Tensor& dy, const std::optional<Tensor>& db) {
  ChannelLayout l{};
  if (db) {  // the layer before the ReLU has a bias: its gradient comes from the same pass
    require_float("relu_backward", "dy", dy);
    l = channel_layout("relu_backward", "dy", dy);
    require_bias("relu_backward", "dbias", *db, l.channels, dy.shape());
    common_device("relu_backward", {&dy, &*db});
  }
  return unary_backward("relu_backward", x, dy, [&](const Tensor& s, const Tensor& g, Tensor& out) {
    if (db) {
      require_separate("relu_backward", {{"dbias", &*db}}, {{"x", &s}, {"dy", &g}});
      NNCORE_DISPATCH(g.device(), bias_grad, g.f32(), s.f32(), out.f32(), db->f32(), l.outer,
                      l.channels, l.inner);
    } else {
      NNCORE_DISPATCH(g.device(), relu_backward, s.f32(), g.f32(), out.f32(), g.numel());
    }
  });
}
Tensor leaky_relu_forward(const Tensor& x, float slope) {
  return unary("leaky_relu", x, [slope](const Tensor& in, Tensor& out) {
    NNCORE_DISPATCH(in.device(), leaky_relu_forward, in.f32(), out.f32(), in.numel(), slope);
  });
}
Tensor leaky_relu_backward(const Tensor& x, const Tensor& dy, float slope) {
  return unary_backward("leaky_relu_backward", x, dy,
                        [slope](const Tensor& s, const Tensor& g, Tensor& out) {
                          NNCORE_DISPATCH(g.device(), leaky_relu_backward, s.f32(), g.f32(),
                                          out.f32(), g.numel(), slope);
                        });
}
Tensor sigmoid_forward(const Tensor& x) {
  return unary("sigmoid", x, [](const Tensor& in, Tensor& out) {
    NNCORE_DISPATCH(in.device(), sigmoid_forward, in.f32(), out.f32(), in.numel());
  });
}
Tensor sigmoid_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("sigmoid_backward", y, dy, [](const Tensor& s, const Tensor& g, Tensor& out) {
    NNCORE_DISPATCH(g.device(), sigmoid_backward, s.f32(), g.f32(), out.f32(), g.numel());
  });
}
Tensor tanh_forward(const Tensor& x) {
  return unary("tanh", x, [](const Tensor& in, Tensor& out) {
    NNCORE_DISPATCH(in.device(), tanh_forward, in.f32(), out.f32(), in.numel());
  });
}
Tensor tanh_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("tanh_backward", y, dy, [](const Tensor& s, const Tensor& g, Tensor& out) {
    NNCORE_DISPATCH(g.device(), tanh_backward, s.f32(), g.f32(), out.f32(), g.numel());
  });
}

Tensor softmax_forward(const Tensor& x) {
  return unary("softmax", x, [](const Tensor& in, Tensor& out) {
    const auto [rows, cols] = rows_cols("softmax", in);
    NNCORE_DISPATCH(in.device(), softmax_forward, in.f32(), out.f32(), rows, cols);
  });
}
Tensor softmax_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("softmax_backward", y, dy, [](const Tensor& s, const Tensor& g, Tensor& out) {
    const auto [rows, cols] = rows_cols("softmax_backward", s);
    NNCORE_DISPATCH(g.device(), softmax_backward, s.f32(), g.f32(), out.f32(), rows, cols);
  });
}
Tensor log_softmax_forward(const Tensor& x) {
  return unary("log_softmax", x, [](const Tensor& in, Tensor& out) {
    const auto [rows, cols] = rows_cols("log_softmax", in);
    NNCORE_DISPATCH(in.device(), log_softmax_forward, in.f32(), out.f32(), rows, cols);
  });
}
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy) {
  return unary_backward("log_softmax_backward", y, dy,
                        [](const Tensor& s, const Tensor& g, Tensor& out) {
                          const auto [rows, cols] = rows_cols("log_softmax_backward", s);
                          NNCORE_DISPATCH(g.device(), log_softmax_backward, s.f32(), g.f32(),
                                          out.f32(), rows, cols);
                        });
}

}  // namespace nncore::ops
