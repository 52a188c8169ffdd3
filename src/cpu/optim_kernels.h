// CPU optimizer update loops, compiled per target from optim_kernels.inc: for the baseline in
// optim.cpp (x86-64: each multiply-add rounded twice, UnfusedFma, as PyTorch's kernels do on
// CPUs without FMA) and for AVX2 + FMA in optim_avx2.cpp (one vfmadd each, as PyTorch's AVX2 /
// AVX-512 kernels and the CUDA twins). The per-element arithmetic is nncore/host_device.h's.
#pragma once
#include <cstdint>

#include "nncore/host_device.h"

namespace nncore {
namespace cpu {
namespace optim_detail {

struct Kernels {
  // param[i] = sgd_update(param[i], grad[i], &buf[i], s, ...) for i < n (buf unused without
  // momentum).
  void (*sgd)(float* param, const float* grad, float* buf, int64_t n, const SgdScalars& s,
              bool first_step, bool nesterov);
  // param[i] = adam_update(param[i], grad[i], &m[i], &v[i], s, ...) for i < n.
  void (*adam)(float* param, const float* grad, float* m, float* v, int64_t n,
               const AdamScalars& s);
};

const Kernels& kernels_generic();
const Kernels* kernels_avx2();  // nullptr when not compiled in (non-x86 builds)

}  // namespace optim_detail
}  // namespace cpu
}  // namespace nncore
