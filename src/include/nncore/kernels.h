// The kernel layer: math on raw pointers, one twin per device with the same signature.
#pragma once
#include <cstdint>

namespace nncore {
namespace cpu {
#include "nncore/kernel_signatures.inc"
}  // namespace cpu
#ifdef NNCORE_WITH_CUDA
namespace cuda {
#include "nncore/kernel_signatures.inc"
}  // namespace cuda
#endif
}  // namespace nncore
