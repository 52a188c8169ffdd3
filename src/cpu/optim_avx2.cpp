// The optimizer loops (optim_kernels.inc) for AVX2 + FMA: fmaf becomes one vfmadd and the loops
// vectorize. Compiled through a target pragma (the library is built without -march flags);
// optim.cpp calls it only when the CPU runs an AVX2 or AVX-512 SGEMM kernel, both of which
// need FMA. nncore/host_device.h is included before the pragma, so its inline functions keep
// the baseline target outside the loops they are inlined into.
#include "optim_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {
using Fma = nncore::HardwareFma;  // one vfmadd here
#include "optim_kernels.inc"
}  // namespace

#pragma GCC pop_options

const nncore::cpu::optim_detail::Kernels* nncore::cpu::optim_detail::kernels_avx2() {
  static const Kernels k{&sgd, &adam};
  return &k;
}

#else  // not x86-64: the family is not compiled in

const nncore::cpu::optim_detail::Kernels* nncore::cpu::optim_detail::kernels_avx2() {
  return nullptr;
}

#endif
