// Optimizer updates (in place) and dropout.
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

void sgd_step_(Tensor& param, const Tensor& grad, std::optional<Tensor> momentum_buf, float lr,
               float momentum, float dampening, float weight_decay, bool nesterov,
               bool first_step) {
  require_float("sgd_step", "param", param);
  require_float("sgd_step", "grad", grad);
  require_same_shape("sgd_step", "param", param, "grad", grad);
  const Device device = common_device("sgd_step", {&param, &grad});
  NNCORE_CHECK(lr >= 0 && momentum >= 0 && weight_decay >= 0, "sgd_step: lr (", lr,
               "), momentum (", momentum, ") and weight_decay (", weight_decay,
               ") must be non-negative");
  NNCORE_CHECK(!nesterov || (momentum > 0 && dampening == 0), "sgd_step: Nesterov momentum "
               "requires momentum > 0 and dampening = 0");
  float* buf = nullptr;
  if (momentum != 0) {
    NNCORE_CHECK(momentum_buf.has_value(), "sgd_step: momentum ", momentum,
                 " needs a momentum buffer");
    require_float("sgd_step", "momentum_buf", *momentum_buf);
    require_same_shape("sgd_step", "param", param, "momentum_buf", *momentum_buf);
    common_device("sgd_step", {&param, &*momentum_buf});
    buf = momentum_buf->f32();
  }
  NNCORE_DISPATCH(device, sgd_step, param.f32(), grad.f32(), buf, param.numel(), lr, momentum,
                  dampening, weight_decay, nesterov, first_step);
}

void adam_step_(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  for (auto [name, t] : {NamedTensor{"param", &param}, NamedTensor{"grad", &grad},
                         NamedTensor{"m", &m}, NamedTensor{"v", &v}}) {
    require_float("adam_step", name, *t);
    require_same_shape("adam_step", "param", param, name, *t);
  }
  const Device device = common_device("adam_step", {&param, &grad, &m, &v});
  NNCORE_CHECK(step >= 1, "adam_step: step must start at 1, got ", step);
  NNCORE_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam_step: betas (", beta1,
               ", ", beta2, ") must be in [0, 1)");
  NNCORE_CHECK(lr >= 0 && eps >= 0 && weight_decay >= 0, "adam_step: lr (", lr, "), eps (", eps,
               ") and weight_decay (", weight_decay, ") must be non-negative");
  NNCORE_DISPATCH(device, adam_step, param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), lr,
                  beta1, beta2, eps, weight_decay, step);
}

std::tuple<Tensor, Tensor> dropout_forward(const Tensor& x, float p, uint64_t seed,
                                           uint64_t offset) {
  require_float("dropout", "input", x);
  NNCORE_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got ", p);
  Tensor y = Tensor::empty(x.shape(), DType::float32, x.device());
  Tensor mask = Tensor::empty(x.shape(), DType::float32, x.device());
  NNCORE_DISPATCH(x.device(), dropout_forward, x.f32(), y.f32(), mask.f32(), x.numel(), p, seed,
                  offset);
  return {y, mask};
}

}  // namespace nncore::ops
