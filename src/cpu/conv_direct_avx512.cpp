// Shifted-row GEMM convolution kernels for AVX-512 (see conv_direct.h): 16-float vectors;
// shifted_gemm tiles of 6 rows x 4 vectors (24 zmm accumulators + 4 loaded + 1 broadcast),
// inner-product tiles of 3 rows x 8 taps (24 accumulators). Compiled through a target pragma;
// conv.cpp calls it only when the CPU runs the AVX-512 SGEMM kernel. Internal linkage throughout,
// so no AVX-512 copy of an inline function can be picked by the linker for other CPUs.
#include "conv_direct.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx512f,fma")

namespace {
#define DIRECT_LANES 16
#define DIRECT_VECTORS 4
#define DIRECT_DOT_ROWS 3
#define DIRECT_DOT_TAPS 8
#include "conv_direct_kernels.inc"
}  // namespace

#pragma GCC pop_options

const nncore::cpu::conv_direct::Kernels* nncore::cpu::conv_direct::kernels_avx512() {
  static const Kernels k{"avx512", DIRECT_LANES, &shifted_gemm, DIRECT_DOT_ROWS, DIRECT_DOT_TAPS,
                         &shifted_dot};
  return &k;
}

#else  // not x86-64: the family is not compiled in

const nncore::cpu::conv_direct::Kernels* nncore::cpu::conv_direct::kernels_avx512() {
  return nullptr;
}

#endif
