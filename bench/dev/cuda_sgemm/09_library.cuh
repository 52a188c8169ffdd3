// 09 library: the kernel nncore actually ships, nncore::cuda::sgemm from cuda/sgemm.cu (linked in
// with cuda/runtime.cu, which owns the library's one stream). It is the ladder's top rung plus
// what a library needs: op(A)/op(B) transposes resolved in its loads, any leading dimension, any
// size (scalar fallback loads when not 16-byte aligned), three tile configurations picked per call
// (and split-K for few tiles with a long K, which the ladder's square sizes never trigger).
// Here it is called with no transposes and dense leading dimensions (lda = K, ldb = N, ldc = N).
#pragma once
#include <cuda_runtime.h>

#include "common.cuh"
#include "nncore/device.h"   // nncore::cuda::current_stream(), synchronize()
#include "nncore/kernels.h"  // nncore::cuda::sgemm (declared when NNCORE_WITH_CUDA is defined)

#ifndef NNCORE_WITH_CUDA
#error "09_library.cuh needs -DNNCORE_WITH_CUDA (see build.sh)"
#endif

inline cudaStream_t library_stream() {
  return static_cast<cudaStream_t>(nncore::cuda::current_stream());
}

// The library launches on its own stream. The harness runs everything on that same stream (so
// this is a plain call and CUDA events bracket exactly the library's kernel); for any other
// stream the call is ordered after earlier work on `stream`, and later work on `stream` after it,
// with events, never with a host synchronization. Callers that read C on the host synchronize
// first (the harness calls nncore::cuda::synchronize()).
inline void sgemm_v09(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  const cudaStream_t lib = library_stream();
  static cudaEvent_t before = nullptr, after = nullptr;
  if (stream != lib) {
    if (before == nullptr) {
      LADDER_CUDA_CHECK(cudaEventCreateWithFlags(&before, cudaEventDisableTiming));
      LADDER_CUDA_CHECK(cudaEventCreateWithFlags(&after, cudaEventDisableTiming));
    }
    LADDER_CUDA_CHECK(cudaEventRecord(before, stream));
    LADDER_CUDA_CHECK(cudaStreamWaitEvent(lib, before, 0));
  }
  nncore::cuda::sgemm(false, false, M, N, K, alpha, A, K, B, N, beta, C, N);  // throws on error
  if (stream != lib) {
    LADDER_CUDA_CHECK(cudaEventRecord(after, lib));
    LADDER_CUDA_CHECK(cudaStreamWaitEvent(stream, after, 0));
  }
}

// 11: the same call with the library's opt-in TF32 path on (nncore::cuda::set_allow_tf32, what
// nncore.set_float32_matmul_precision("high") sets): problems that fill the GPU with 128x128
// tiles run sgemm_tf32_kernel (tensor cores), smaller ones the FP32 configurations. A TF32 row:
// checked at --tol-tf32 and timed against cuBLAS TF32.
inline void sgemm_v11(int M, int N, int K, float alpha, const float* A, const float* B,
                      float beta, float* C, cudaStream_t stream) {
  nncore::cuda::set_allow_tf32(true);
  try {
    sgemm_v09(M, N, K, alpha, A, B, beta, C, stream);
  } catch (...) {
    nncore::cuda::set_allow_tf32(false);
    throw;
  }
  nncore::cuda::set_allow_tf32(false);
}
