// Optimizer updates in place over a list of tensors, with torch.optim.SGD / torch.optim.Adam
// semantics and PyTorch's CPU arithmetic (L2 weight decay is added to the gradient; Adam is not
// AdamW), one tensor after the other (OpenMP inside the large ones). The per-element update is
// nncore/host_device.h's, shared with the CUDA twins; the loops run in the AVX2 + FMA instance
// (optim_avx2.cpp) when the CPU runs an AVX2 or AVX-512 SGEMM kernel, else in the baseline one
// below, which on x86-64 rounds its multiply-adds twice, as PyTorch does on CPUs without FMA.
#include <cstring>

#include "nncore/kernels.h"
#include "optim_kernels.h"
#include "sgemm.h"

namespace {
#if defined(__x86_64__) && !defined(__FMA__)
using Fma = nncore::UnfusedFma;  // the baseline x86-64 target has no FMA instruction
#else
using Fma = nncore::HardwareFma;
#endif
#include "optim_kernels.inc"
}  // namespace

namespace nncore::cpu {

namespace optim_detail {
const Kernels& kernels_generic() {
  static const Kernels k{&sgd, &adam};
  return k;
}
}  // namespace optim_detail

namespace {
// The family follows the SGEMM's choice (and so NNCORE_CPU_KERNEL / its forcing).
const optim_detail::Kernels& optim_kernels() {
  if (std::strcmp(sgemm_kernel_name(), "generic") != 0 && optim_detail::kernels_avx2() != nullptr)
    return *optim_detail::kernels_avx2();
  return optim_detail::kernels_generic();
}
}  // namespace

void sgd_step(float* const* params, const float* const* grads, float* const* momentum_bufs,
              const int64_t* sizes, int64_t count, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step) {
  const optim_detail::Kernels& k = optim_kernels();
  const SgdScalars s = sgd_scalars(lr, momentum, dampening, weight_decay);
  for (int64_t t = 0; t < count; ++t)
    k.sgd(params[t], grads[t], momentum_bufs != nullptr ? momentum_bufs[t] : nullptr, sizes[t], s,
          first_step, nesterov);
}

void adam_step(float* const* params, const float* const* grads, float* const* m,
               float* const* v, const int64_t* sizes, int64_t count, double lr, double beta1,
               double beta2, double eps, double weight_decay, int64_t step) {
  const optim_detail::Kernels& k = optim_kernels();
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  for (int64_t t = 0; t < count; ++t)
    k.adam(params[t], grads[t], m[t], v[t], sizes[t], s);
}

}  // namespace nncore::cpu
