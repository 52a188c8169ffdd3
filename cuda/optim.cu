// Optimizer updates, in place over n parameters; one thread per parameter (grid-stride).
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// g = grad + wd*p; with momentum: buf = first_step ? g : momentum*buf + (1-dampening)*g,
// g = nesterov ? g + momentum*buf : buf; then p -= lr*g.
__global__ void sgd_step_kernel(float* __restrict__ param, const float* __restrict__ grad,
                                float* __restrict__ buf, int64_t n, float lr, float momentum,
                                float dampening, float weight_decay, bool nesterov,
                                bool first_step) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const float p = param[i];
    float g = grad[i];
    if (weight_decay != 0.f) g += weight_decay * p;
    if (momentum != 0.f) {
      const float b = first_step ? g : momentum * buf[i] + (1.f - dampening) * g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] = p - lr * g;
  }
}

// g = grad + wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / bc1) / (sqrt(v / bc2) + eps), bc1 = 1 - b1^t, bc2 = 1 - b2^t (host-computed).
__global__ void adam_step_kernel(float* __restrict__ param, const float* __restrict__ grad,
                                 float* __restrict__ m, float* __restrict__ v, int64_t n,
                                 float lr, float beta1, float beta2, float eps,
                                 float weight_decay, float bc1, float bc2) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const float p = param[i];
    float g = grad[i];
    if (weight_decay != 0.f) g += weight_decay * p;
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
}

}  // namespace

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, float lr,
              float momentum, float dampening, float weight_decay, bool nesterov,
              bool first_step) {
  if (n <= 0) return;
  sgd_step_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(param, grad, momentum_buf, n, lr,
                                                            momentum, dampening, weight_decay,
                                                            nesterov, first_step);
  NNCORE_CUDA_LAUNCH_CHECK("sgd_step");
}

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
               float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  if (n <= 0) return;
  // Bias corrections in double on the host, rounded once to float.
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), double(step)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), double(step)));
  adam_step_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(param, grad, m, v, n, lr, beta1,
                                                             beta2, eps, weight_decay, bc1, bc2);
  NNCORE_CUDA_LAUNCH_CHECK("adam_step");
}

}  // namespace nncore::cuda
