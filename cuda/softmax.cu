// Softmax and log-softmax over the last axis of (rows, cols), forward and backward.
// Thread mapping (common.cuh RowGroup): one warp per row when cols <= 1024 (8 rows per 256-thread
// block), one 512-thread block per row for longer rows; lanes stride over the columns, and the
// row max / sums are warp-shuffle (or block) all-reductions. Every element is read and written by
// the same thread after the reductions, so y may alias x and dx may alias dy.
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// softmax:     y = exp(x - max) / sum exp(x - max)
// log_softmax: y = x - max - log(sum exp(x - max))
template <bool kBlock, bool kLog>
__global__ void __launch_bounds__(kBlock ? kRowBlock : kThreads)
softmax_forward_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  using G = RowGroup<kBlock>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_stride()) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -INFINITY;
    for (int64_t c = G::lane(); c < cols; c += G::width()) m = fmaxf(m, xr[c]);
    m = G::allreduce(m, MaxOp{}, scratch);
    float s = 0.f;
    for (int64_t c = G::lane(); c < cols; c += G::width()) s += expf(xr[c] - m);
    s = G::allreduce(s, SumOp{}, scratch);
    if constexpr (kLog) {
      const float log_s = logf(s);
      for (int64_t c = G::lane(); c < cols; c += G::width()) yr[c] = xr[c] - m - log_s;
    } else {
      for (int64_t c = G::lane(); c < cols; c += G::width()) yr[c] = expf(xr[c] - m) / s;
    }
  }
}

// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log_softmax: dx = dy - exp(y) * sum_j dy_j
template <bool kBlock, bool kLog>
__global__ void __launch_bounds__(kBlock ? kRowBlock : kThreads)
softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  using G = RowGroup<kBlock>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_stride()) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    float s = 0.f;
    for (int64_t c = G::lane(); c < cols; c += G::width()) s += kLog ? gr[c] : gr[c] * yr[c];
    s = G::allreduce(s, SumOp{}, scratch);
    for (int64_t c = G::lane(); c < cols; c += G::width()) {
      if constexpr (kLog) dr[c] = gr[c] - expf(yr[c]) * s;
      else dr[c] = yr[c] * (gr[c] - s);
    }
  }
}

template <bool kLog>
void forward(const char* name, const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const bool block = cols > kWarpRowMaxCols;
  if (block)
    softmax_forward_kernel<true, kLog>
        <<<row_blocks(rows, true), row_threads(true), 0, stream()>>>(x, y, rows, cols);
  else
    softmax_forward_kernel<false, kLog>
        <<<row_blocks(rows, false), row_threads(false), 0, stream()>>>(x, y, rows, cols);
  NNCORE_CUDA_LAUNCH_CHECK(name);
}

template <bool kLog>
void backward(const char* name, const float* y, const float* dy, float* dx, int64_t rows,
              int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const bool block = cols > kWarpRowMaxCols;
  if (block)
    softmax_backward_kernel<true, kLog>
        <<<row_blocks(rows, true), row_threads(true), 0, stream()>>>(y, dy, dx, rows, cols);
  else
    softmax_backward_kernel<false, kLog>
        <<<row_blocks(rows, false), row_threads(false), 0, stream()>>>(y, dy, dx, rows, cols);
  NNCORE_CUDA_LAUNCH_CHECK(name);
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  forward<false>("softmax_forward", x, y, rows, cols);
}
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  backward<false>("softmax_backward", y, dy, dx, rows, cols);
}
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  forward<true>("log_softmax_forward", x, y, rows, cols);
}
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows,
                          int64_t cols) {
  backward<true>("log_softmax_backward", y, dy, dx, rows, cols);
}

}  // namespace nncore::cuda
