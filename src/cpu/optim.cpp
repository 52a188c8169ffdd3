// Optimizer updates in place over a list of tensors, with torch.optim.SGD / torch.optim.Adam
// semantics (L2 weight decay is added to the gradient; Adam is not AdamW), one tensor after the
// other (OpenMP inside the large ones).
// The SGD mode switches are hoisted out of the loop (one template instance per combination).
// State is stored through flush_subnormal (nncore/host_device.h), as on the GPU.
#include <cmath>

#include "nncore/host_device.h"
#include "nncore/kernels.h"

namespace nncore::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;

// The momentum update for one combination of the switches, so the loop body has no branches.
// (decay == false skips wd*p entirely, as torch does: adding 0*p would turn an inf p into NaN.)
template <bool kDecay, bool kFirstStep, bool kNesterov>
void sgd_momentum_loop(float* __restrict param, const float* __restrict grad,
                       float* __restrict momentum_buf, int64_t n, float lr, float momentum,
                       float dampening, float wd) {
  const float keep = 1.0f - dampening;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float g = kDecay ? grad[i] + wd * param[i] : grad[i];
    const float buf = flush_subnormal(kFirstStep ? g : momentum * momentum_buf[i] + keep * g);
    momentum_buf[i] = buf;
    param[i] -= lr * (kNesterov ? g + momentum * buf : buf);
  }
}

// One tensor of n parameters. g = grad + wd*p; if momentum: buf = momentum*buf +
// (1-dampening)*g (buf = g on first_step), g = nesterov ? g + momentum*buf : buf;  p -= lr*g.
void sgd_step_tensor(float* __restrict param, const float* __restrict grad,
                     float* __restrict momentum_buf, int64_t n, float lr, float momentum,
                     float dampening, float weight_decay, bool nesterov, bool first_step) {
  const float wd = weight_decay;
  if (momentum == 0.0f) {
    if (wd == 0.0f) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) param[i] -= lr * grad[i];
    } else {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    }
    return;
  }
  using Loop = void (*)(float*, const float*, float*, int64_t, float, float, float, float);
  static constexpr Loop kLoops[8] = {
      sgd_momentum_loop<false, false, false>, sgd_momentum_loop<false, false, true>,
      sgd_momentum_loop<false, true, false>,  sgd_momentum_loop<false, true, true>,
      sgd_momentum_loop<true, false, false>,  sgd_momentum_loop<true, false, true>,
      sgd_momentum_loop<true, true, false>,   sgd_momentum_loop<true, true, true>};
  const int which = (wd != 0.0f ? 4 : 0) + (first_step ? 2 : 0) + (nesterov ? 1 : 0);
  kLoops[which](param, grad, momentum_buf, n, lr, momentum, dampening, wd);
}

// One tensor of n parameters; step_size = lr / bc1 and inv_sqrt_bc2 = 1 / sqrt(bc2) as below.
void adam_step_tensor(float* __restrict param, const float* __restrict grad, float* __restrict m,
                      float* __restrict v, int64_t n, float beta1, float beta2, float eps,
                      float wd, float step_size, float inv_sqrt_bc2) {
  const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
  const bool decay = wd != 0.0f;
  // (Memory-bound: std::sqrt keeps its errno branch without -fno-math-errno, so this loop
  // stays scalar, at little cost next to streaming four arrays.)
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float g = decay ? grad[i] + wd * param[i] : grad[i];
    const float mi = flush_subnormal(beta1 * m[i] + one_minus_b1 * g);
    const float vi = flush_subnormal(beta2 * v[i] + one_minus_b2 * g * g);
    m[i] = mi;
    v[i] = vi;
    param[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

void sgd_step(float* const* params, const float* const* grads, float* const* momentum_bufs,
              const int64_t* sizes, int64_t count, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step) {
  for (int64_t t = 0; t < count; ++t)
    sgd_step_tensor(params[t], grads[t], momentum_bufs != nullptr ? momentum_bufs[t] : nullptr,
                    sizes[t], lr, momentum, dampening, weight_decay, nesterov, first_step);
}

// g = grad + wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps), evaluated as torch does:
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bias corrections computed in double.
void adam_step(float* const* params, const float* const* grads, float* const* m,
               float* const* v, const int64_t* sizes, int64_t count, float lr, float beta1,
               float beta2, float eps, float weight_decay, int64_t step) {
  const double steps = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(beta1), steps);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(beta2), steps);
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bias_correction2));
  for (int64_t t = 0; t < count; ++t)
    adam_step_tensor(params[t], grads[t], m[t], v[t], sizes[t], beta1, beta2, eps, weight_decay,
                     step_size, inv_sqrt_bc2);
}

}  // namespace nncore::cpu
