// Shifted-row GEMM convolution kernels for any CPU (see conv_direct.h), compiled for the
// baseline target: 4-float vectors (SSE2 on x86-64), tiles of 6 rows x 2 vectors and
// inner-product tiles of 2 rows x 6 taps (12 accumulators, within 16 xmm registers).
#include "conv_direct.h"

#include <cstring>

namespace {
#define DIRECT_LANES 4
#define DIRECT_VECTORS 2
#define DIRECT_DOT_ROWS 2
#define DIRECT_DOT_TAPS 6
#include "conv_direct_kernels.inc"
}  // namespace

const nncore::cpu::conv_direct::Kernels* nncore::cpu::conv_direct::kernels_generic() {
  static const Kernels k{"generic", DIRECT_LANES, &shifted_gemm, DIRECT_DOT_ROWS, DIRECT_DOT_TAPS,
                         &shifted_dot};
  return &k;
}
