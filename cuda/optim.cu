// Optimizer updates, in place over a list of tensors: one launch updates up to kListTensors
// tensors (launch_tensor_lists, common.cuh), one thread per parameter within a chunk. The
// element update is nncore/host_device.h's, shared with the CPU (PyTorch's arithmetic).
#include <cuda_runtime.h>

#include "common.cuh"
#include "nncore/host_device.h"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// t = {param, grad, buf}: the element update of nncore/host_device.h, as on the CPU.
struct SgdUpdate {
  SgdScalars s;
  bool first_step, nesterov;
  __device__ void operator()(float* const (&t)[3], int64_t i) const {
    t[0][i] = sgd_update<HardwareFma>(t[0][i], t[1][i], s.with_momentum ? t[2] + i : nullptr, s,
                                      s.decay, s.with_momentum, first_step, nesterov);
  }
};

// t = {param, grad, m, v}.
struct AdamUpdate {
  AdamScalars s;
  __device__ void operator()(float* const (&t)[4], int64_t i) const {
    t[0][i] = adam_update<HardwareFma>(t[0][i], t[1][i], t[2] + i, t[3] + i, s, s.decay,
                                       s.lerp_from_m);
  }
};

}  // namespace

// (grads are only read: the lists' common pointer type drops their const.)
void sgd_step(float* const* params, const float* const* grads, float* const* momentum_bufs,
              const int64_t* sizes, int64_t count, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step) {
  launch_tensor_lists<3>(
      "sgd_step", {params, const_cast<float* const*>(grads), momentum_bufs}, sizes, count,
      SgdUpdate{sgd_scalars(lr, momentum, dampening, weight_decay), first_step, nesterov});
}

void adam_step(float* const* params, const float* const* grads, float* const* m,
               float* const* v, const int64_t* sizes, int64_t count, double lr, double beta1,
               double beta2, double eps, double weight_decay, int64_t step) {
  launch_tensor_lists<4>(
      "adam_step", {params, const_cast<float* const*>(grads), m, v}, sizes, count,
      AdamUpdate{adam_scalars(lr, beta1, beta2, eps, weight_decay, step)});
}

}  // namespace nncore::cuda
