// A Linear layer's forward: the GEMM, then bias and ReLU in one pass over the output (the CPU
// GEMM has no epilogue hook; CUDA's applies them in the GEMM itself, cuda/sgemm.cu).
#include "nncore/kernels.h"

namespace nncore::cpu {

// y = act(x w^T + b)
void linear_forward(const float* x, const float* w, const float* b, int64_t N, int64_t in,
                    int64_t out, bool relu, float* y) {
  sgemm(false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b != nullptr) {
    bias_add(y, b, N, out, 1, relu);
  } else if (relu) {
    relu_forward(y, y, N * out);  // in place
  }
}

}  // namespace nncore::cpu
