// Losses (mean over rows). The scalar loss is computed without float atomics: a single block
// of 1024 threads (32 warps) handles all rows (warp w takes rows w, w+32, ...), each warp keeps
// its running sum of per-row terms in row order, and the 32 warp sums are added in warp order.
// The result is bitwise reproducible run to run. (One block is plenty for classifier-sized
// batches; the probabilities it also writes are the per-element work.)
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

constexpr int kLossThreads = 1024;

// Sums one float per warp (valid in lane 0) over the block in warp order; thread 0 gets it.
__device__ __forceinline__ float block_sum_of_warp_values(float warp_value, float* scratch) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) scratch[warp] = warp_value;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) total += scratch[w];
  return total;
}

// Per row r: m = max, s = sum exp(x - m), log_s = log s; probs = exp(x - m) / s.
// Labels: term_r = x[label] - m - log_s (= log softmax at the label), NaN for a label outside
//         [0, cols); loss = -sum_r term_r / rows.
// Probs:  term_r = sum_c t[r,c] * (x[c] - m - log_s);         loss = -sum_r term_r / rows.
template <bool kLabels>
__global__ void __launch_bounds__(kLossThreads)
    cross_entropy_forward_kernel(const float* __restrict__ logits,
                                 const int32_t* __restrict__ labels,
                                 const float* __restrict__ target, int64_t rows, int64_t cols,
                                 float* __restrict__ probs, float* __restrict__ loss) {
  __shared__ float scratch[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warps = blockDim.x >> 5;
  float warp_sum = 0.f;  // identical in all lanes
  for (int64_t r = warp; r < rows; r += warps) {
    const float* xr = logits + r * cols;
    float* pr = probs + r * cols;
    float m = -INFINITY;
    for (int64_t c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
    m = warp_allreduce(m, MaxOp{});
    float s = 0.f;
    for (int64_t c = lane; c < cols; c += 32) s += expf(xr[c] - m);
    s = warp_allreduce(s, SumOp{});
    const float log_s = logf(s);
    for (int64_t c = lane; c < cols; c += 32) pr[c] = expf(xr[c] - m) / s;
    float term;
    if constexpr (kLabels) {
      const int32_t label = labels[r];
      term = (label >= 0 && label < cols) ? xr[label] - m - log_s : NAN;
    } else {
      const float* tr = target + r * cols;
      float t = 0.f;
      for (int64_t c = lane; c < cols; c += 32) t += tr[c] * (xr[c] - m - log_s);
      term = warp_allreduce(t, SumOp{});
    }
    warp_sum += term;
  }
  const float total = block_sum_of_warp_values(warp_sum, scratch);
  if (threadIdx.x == 0) loss[0] = -total / static_cast<float>(rows);
}

// dlogits = (probs - onehot(labels)) * scale. One thread per element.
template <typename I>
__global__ void cross_entropy_labels_backward_kernel(const float* __restrict__ probs,
                                                     const int32_t* __restrict__ labels,
                                                     int64_t total, I cols, float scale,
                                                     float* __restrict__ dlogits) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I r = idx / cols, c = idx - r * cols;
    const float onehot = (labels[r] == c) ? 1.f : 0.f;
    dlogits[t] = (probs[t] - onehot) * scale;
  }
}

// dlogits = (probs * sum_c t[r,c] - t) * scale. One warp per row.
__global__ void cross_entropy_probs_backward_kernel(const float* __restrict__ probs,
                                                    const float* __restrict__ target,
                                                    int64_t rows, int64_t cols, float scale,
                                                    float* __restrict__ dlogits) {
  using G = RowGroup<false>;
  for (int64_t r = G::first_row(); r < rows; r += G::row_stride()) {
    const float* pr = probs + r * cols;
    const float* tr = target + r * cols;
    float* dr = dlogits + r * cols;
    float t_sum = 0.f;
    for (int64_t c = G::lane(); c < cols; c += 32) t_sum += tr[c];
    t_sum = warp_allreduce(t_sum, SumOp{});
    for (int64_t c = G::lane(); c < cols; c += 32) dr[c] = (pr[c] * t_sum - tr[c]) * scale;
  }
}

// loss = sum (pred - target)^2 / n. Each thread sums a grid-stride slice, then block reduce.
__global__ void __launch_bounds__(kLossThreads)
    mse_forward_kernel(const float* __restrict__ pred, const float* __restrict__ target,
                       int64_t n, float* __restrict__ loss) {
  __shared__ float scratch[32];
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = pred[i] - target[i];
    sum += d * d;
  }
  sum = block_allreduce(sum, SumOp{}, scratch);
  if (threadIdx.x == 0) loss[0] = sum / static_cast<float>(n);
}

struct MseGrad {  // dpred = scale * 2 * (pred - target)
  float scale;
  __device__ float operator()(float p, float t) const { return scale * 2.f * (p - t); }
};

}  // namespace

// rows == 0 still launches: the mean of nothing is NaN (0/0), as in NumPy.
void cross_entropy_labels_forward(const float* logits, const int32_t* labels, int64_t rows,
                                  int64_t cols, float* probs, float* loss) {
  cross_entropy_forward_kernel<true><<<1, kLossThreads, 0, stream()>>>(
      logits, labels, nullptr, rows < 0 ? 0 : rows, cols, probs, loss);
  NNCORE_CUDA_LAUNCH_CHECK("cross_entropy_labels_forward");
}

void cross_entropy_labels_backward(const float* probs, const int32_t* labels, int64_t rows,
                                   int64_t cols, float scale, float* dlogits) {
  const int64_t total = rows * cols;
  if (total <= 0) return;
  with_index_type({total}, [&](auto index) {
    using I = decltype(index);
    cross_entropy_labels_backward_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
        probs, labels, total, I(cols), scale, dlogits);
  });
  NNCORE_CUDA_LAUNCH_CHECK("cross_entropy_labels_backward");
}

void cross_entropy_probs_forward(const float* logits, const float* target, int64_t rows,
                                 int64_t cols, float* probs, float* loss) {
  cross_entropy_forward_kernel<false><<<1, kLossThreads, 0, stream()>>>(
      logits, nullptr, target, rows < 0 ? 0 : rows, cols, probs, loss);
  NNCORE_CUDA_LAUNCH_CHECK("cross_entropy_probs_forward");
}

void cross_entropy_probs_backward(const float* probs, const float* target, int64_t rows,
                                  int64_t cols, float scale, float* dlogits) {
  if (rows <= 0 || cols <= 0) return;
  cross_entropy_probs_backward_kernel<<<row_blocks(rows, false), kThreads, 0, stream()>>>(
      probs, target, rows, cols, scale, dlogits);
  NNCORE_CUDA_LAUNCH_CHECK("cross_entropy_probs_backward");
}

void mse_forward(const float* pred, const float* target, int64_t n, float* loss) {
  mse_forward_kernel<<<1, kLossThreads, 0, stream()>>>(pred, target, n < 0 ? 0 : n, loss);
  NNCORE_CUDA_LAUNCH_CHECK("mse_forward");
}

void mse_backward(const float* pred, const float* target, int64_t n, float scale, float* dpred) {
  launch_map2("mse_backward", pred, target, dpred, n, MseGrad{scale});
}

}  // namespace nncore::cuda
