// Shifted-row GEMM convolution kernels for AVX2 + FMA (see conv_direct.h): 8-float vectors;
// shifted_gemm tiles of 6 rows x 2 vectors (12 ymm accumulators + 2 loaded + 1 broadcast),
// inner-product tiles of 2 rows x 6 taps (12 accumulators). Compiled through a target pragma;
// conv.cpp calls it only when the CPU runs the AVX2 SGEMM kernel. Internal linkage throughout,
// so no AVX2 copy of an inline function can be picked by the linker for other CPUs.
#include "conv_direct.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {
#define DIRECT_LANES 8
#define DIRECT_VECTORS 2
#define DIRECT_DOT_ROWS 2
#define DIRECT_DOT_TAPS 6
#include "conv_direct_kernels.inc"
}  // namespace

#pragma GCC pop_options

const nncore::cpu::conv_direct::Kernels* nncore::cpu::conv_direct::kernels_avx2() {
  static const Kernels k{"avx2", DIRECT_LANES, &shifted_gemm, DIRECT_DOT_ROWS, DIRECT_DOT_TAPS,
                         &shifted_dot};
  return &k;
}

#else  // not x86-64: the family is not compiled in

const nncore::cpu::conv_direct::Kernels* nncore::cpu::conv_direct::kernels_avx2() {
  return nullptr;
}

#endif
