// Optimizer updates, in place over a list of tensors: one launch updates up to kListTensors
// tensors (launch_tensor_lists, common.cuh), one thread per parameter within a chunk. State is
// stored through flush_subnormal (nncore/host_device.h), as on the CPU.
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/host_device.h"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// t = {param, grad, buf}. g = grad + wd*p; with momentum: buf = first_step ? g :
// momentum*buf + (1-dampening)*g, g = nesterov ? g + momentum*buf : buf; then p -= lr*g.
struct SgdUpdate {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
  __device__ void operator()(float* const (&t)[3], int64_t i) const {
    const float p = t[0][i];
    float g = t[1][i];
    if (weight_decay != 0.f) g += weight_decay * p;
    if (momentum != 0.f) {
      const float b = flush_subnormal(first_step ? g : momentum * t[2][i] + (1.f - dampening) * g);
      t[2][i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    t[0][i] = p - lr * g;
  }
};

// t = {param, grad, m, v}. g = grad + wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / bc1) / (sqrt(v / bc2) + eps), bc1 = 1 - b1^t, bc2 = 1 - b2^t (host-computed).
struct AdamUpdate {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2;
  __device__ void operator()(float* const (&t)[4], int64_t i) const {
    const float p = t[0][i];
    float g = t[1][i];
    if (weight_decay != 0.f) g += weight_decay * p;
    const float mi = flush_subnormal(beta1 * t[2][i] + (1.f - beta1) * g);
    const float vi = flush_subnormal(beta2 * t[3][i] + (1.f - beta2) * g * g);
    t[2][i] = mi;
    t[3][i] = vi;
    t[0][i] = p - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
};

}  // namespace

// (grads are only read: the lists' common pointer type drops their const.)
void sgd_step(float* const* params, const float* const* grads, float* const* momentum_bufs,
              const int64_t* sizes, int64_t count, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step) {
  launch_tensor_lists<3>(
      "sgd_step", {params, const_cast<float* const*>(grads), momentum_bufs}, sizes, count,
      SgdUpdate{lr, momentum, dampening, weight_decay, nesterov, first_step});
}

void adam_step(float* const* params, const float* const* grads, float* const* m,
               float* const* v, const int64_t* sizes, int64_t count, float lr, float beta1,
               float beta2, float eps, float weight_decay, int64_t step) {
  // Bias corrections in double on the host, rounded once to float.
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), double(step)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), double(step)));
  launch_tensor_lists<4>("adam_step", {params, const_cast<float* const*>(grads), m, v}, sizes,
                         count, AdamUpdate{lr, beta1, beta2, eps, weight_decay, bc1, bc2});
}

}  // namespace nncore::cuda
