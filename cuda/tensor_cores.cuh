// The two PTX instructions of the TF32 tensor-core GEMM (sgemm.cu's opt-in path, and rung 10 of
// the SGEMM ladder in bench/dev/cuda_sgemm). TF32: sign, 8 exponent and 10 mantissa bits, in
// the top 19 bits of a 32-bit word. Under the CPU emulator (bench/dev/cuda_emulate, which
// defines NNCORE_CUDA_EMULATOR) both are the emulator's stand-ins, which follow the PTX ISA.
// Both instructions need sm_80 or newer: compiled for an older architecture (a build with
// CMAKE_CUDA_ARCHITECTURES=75) they trap, and the host never launches them on such a device
// (detail::has_tf32_tensor_cores).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace nncore::cuda::detail {

// x rounded to TF32, to nearest with ties away from zero (cvt.rna.tf32.f32); low 13 bits zero.
__device__ __forceinline__ uint32_t ptx_cvt_rna_tf32(float x) {
#ifdef NNCORE_CUDA_EMULATOR
  return ::emu::cvt_rna_tf32(x);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
  return __float_as_uint(x);
#else
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#endif
}

// d += A * B for one 16 x 8 x 8 tile held as warp fragments (mma.sync.aligned.m16n8k8, row-major
// A, column-major B, TF32 operands, FP32 accumulators). Lane l = 4 * g + t holds
//   a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]      b = B[t][g], B[t+4][g]
//   d = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]
// (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32). Every lane of the warp must call it.
__device__ __forceinline__ void ptx_mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4],
                                                     const uint32_t (&b)[2]) {
#ifdef NNCORE_CUDA_EMULATOR
  ::emu::mma_m16n8k8_tf32(d, a, b, std::source_location::current());
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

}  // namespace nncore::cuda::detail
