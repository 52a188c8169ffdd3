// Softmax and log-softmax over the last axis of a (rows, cols) matrix, forward and backward.
// Max subtraction keeps exp() in (0, 1], so logits of any magnitude cannot overflow; row sums
// are accumulated in double. Outputs may alias inputs (each element is read before written).
#include <cmath>

#include "nncore/kernels.h"
#include "softmax_row.h"

namespace nncore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 12;

}  // namespace

// y = exp(x - max) / sum exp(x - max)
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    float m;
    softmax_row(x + r * cols, y + r * cols, cols, m);
  }
}

// dx = y * (dy - sum_j dy_j y_j)
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < cols; ++c) dot += static_cast<double>(dyr[c]) * yr[c];
    const float dot_f = static_cast<float>(dot);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dxr[c] = yr[c] * (dyr[c] - dot_f);
  }
}

// y = (x - max) - log(sum exp(x - max))
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    const float m = row_max(in, cols);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(in[c] - m);
    const float log_sum = static_cast<float>(std::log(sum));
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) out[c] = (in[c] - m) - log_sum;
  }
}

// dx = dy - exp(y) * sum_j dy_j
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows,
                          int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t c = 0; c < cols; ++c) total += dyr[c];
    const float total_f = static_cast<float>(total);
    for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - std::exp(yr[c]) * total_f;
  }
}

}  // namespace nncore::cpu
