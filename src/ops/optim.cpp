// Optimizer updates (in place) and dropout.
#include "dispatch.h"
#include "nncore/ops.h"

namespace nncore::ops {
using namespace detail;

void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::optional<std::vector<Tensor>>& momentum_bufs, double lr,
               double momentum, double dampening, double weight_decay, bool nesterov,
               bool first_step) {
  NNCORE_CHECK(lr >= 0 && momentum >= 0 && dampening >= 0 && weight_decay >= 0, "sgd_step: lr (",
               lr, "), momentum (", momentum, "), dampening (", dampening, ") and weight_decay (",
               weight_decay, ") must be non-negative");
  NNCORE_CHECK(!nesterov || (momentum > 0 && dampening == 0), "sgd_step: Nesterov momentum "
               "requires momentum > 0 and dampening = 0");
  NNCORE_CHECK(momentum == 0 || momentum_bufs.has_value(), "sgd_step: momentum ", momentum,
               " needs momentum buffers");
  const bool with_buffers = momentum != 0;
  const TensorListArgs args =
      with_buffers ? tensor_list_args("sgd_step", {{"params", &params}, {"grads", &grads},
                                                   {"momentum_bufs", &*momentum_bufs}})
                   : tensor_list_args("sgd_step", {{"params", &params}, {"grads", &grads}});
  if (with_buffers) {
    require_disjoint("sgd_step", {{"params", &params}, {"grads", &grads},
                                  {"momentum_bufs", &*momentum_bufs}});
  } else {
    require_disjoint("sgd_step", {{"params", &params}, {"grads", &grads}});
  }
  if (params.empty()) return;
  NNCORE_DISPATCH(args.device, sgd_step, args.data[0].data(), args.data[1].data(),
                  with_buffers ? args.data[2].data() : nullptr, args.sizes.data(),
                  static_cast<int64_t>(params.size()), lr, momentum, dampening, weight_decay,
                  nesterov, first_step);
}

void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& m, const std::vector<Tensor>& v, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  NNCORE_CHECK(step >= 1, "adam_step: step must start at 1, got ", step);
  NNCORE_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam_step: betas (", beta1,
               ", ", beta2, ") must be in [0, 1)");
  NNCORE_CHECK(lr >= 0 && eps >= 0 && weight_decay >= 0, "adam_step: lr (", lr, "), eps (", eps,
               ") and weight_decay (", weight_decay, ") must be non-negative");
  const TensorListArgs args = tensor_list_args(
      "adam_step", {{"params", &params}, {"grads", &grads}, {"m", &m}, {"v", &v}});
  require_disjoint("adam_step", {{"params", &params}, {"grads", &grads}, {"m", &m}, {"v", &v}});
  if (params.empty()) return;
  NNCORE_DISPATCH(args.device, adam_step, args.data[0].data(), args.data[1].data(),
                  args.data[2].data(), args.data[3].data(), args.sizes.data(),
                  static_cast<int64_t>(params.size()), lr, beta1, beta2, eps, weight_decay, step);
}

std::tuple<Tensor, Tensor> dropout_forward(const Tensor& x, double p, uint64_t seed,
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
