// Losses, mean over rows: softmax cross-entropy (integer labels or probability targets) and
// mean squared error. Per-row log-sum-exp uses max subtraction; the mean is accumulated in
// double over a fixed split into blocks, so the loss does not depend on the thread count.
// dlogits / dpred may alias probs / pred (each element is read before it is written).
#include <algorithm>
#include <cmath>

#include "nncore/kernels.h"
#include "softmax_row.h"

namespace nncore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 12;
constexpr int64_t kSumBlocks = 64;

// sum_{i < count} of the terms, computed as sum over kSumBlocks fixed ranges of
// range_sum(lo, hi) (each a double), added in block order: deterministic for any thread count.
template <typename RangeSum>
double blocked_sum(int64_t count, int64_t work, RangeSum range_sum) {
  double partial[kSumBlocks];
  const int64_t per_block = (count + kSumBlocks - 1) / kSumBlocks;
#pragma omp parallel for schedule(static) if (work > kParallelMin)
  for (int64_t blk = 0; blk < kSumBlocks; ++blk) {
    const int64_t lo = std::min(count, blk * per_block);
    const int64_t hi = std::min(count, lo + per_block);
    partial[blk] = range_sum(lo, hi);
  }
  double total = 0.0;
  for (int64_t blk = 0; blk < kSumBlocks; ++blk) total += partial[blk];
  return total;
}

}  // namespace

// probs = softmax(logits); loss = mean_r [log sum_c exp(x[r,c] - m_r) - (x[r, label_r] - m_r)]
void cross_entropy_labels_forward(const float* logits, const int32_t* labels, int64_t rows,
                                  int64_t cols, float* probs, float* loss) {
  const double total = blocked_sum(rows, rows * cols, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = logits + r * cols;
      float m;
      const double log_sum = softmax_row(x, probs + r * cols, cols, m);
      acc += log_sum - (static_cast<double>(x[labels[r]]) - m);
    }
    return acc;
  });
  loss[0] = static_cast<float>(total / static_cast<double>(rows));
}

// dlogits = (probs - onehot(labels)) * scale
void cross_entropy_labels_backward(const float* probs, const int32_t* labels, int64_t rows,
                                   int64_t cols, float scale, float* dlogits) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = probs + r * cols;
    float* d = dlogits + r * cols;
    const int32_t label = labels[r];
    const float p_label = p[label];  // read before the row is overwritten (d may alias p)
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = p[c] * scale;
    d[label] = (p_label - 1.0f) * scale;
  }
}

// probs = softmax(logits); loss = mean_r sum_c t[r,c] * (log sum exp(x_r - m_r) - (x[r,c] - m_r))
void cross_entropy_probs_forward(const float* logits, const float* target, int64_t rows,
                                 int64_t cols, float* probs, float* loss) {
  const double total = blocked_sum(rows, rows * cols, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = logits + r * cols;
      const float* t = target + r * cols;
      float m;
      const double log_sum = softmax_row(x, probs + r * cols, cols, m);
      double row = 0.0;
      for (int64_t c = 0; c < cols; ++c)
        row += static_cast<double>(t[c]) * (log_sum - (static_cast<double>(x[c]) - m));
      acc += row;
    }
    return acc;
  });
  loss[0] = static_cast<float>(total / static_cast<double>(rows));
}

// dlogits = (probs * sum_c t[r,c] - t) * scale
void cross_entropy_probs_backward(const float* probs, const float* target, int64_t rows,
                                  int64_t cols, float scale, float* dlogits) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = probs + r * cols;
    const float* t = target + r * cols;
    float* d = dlogits + r * cols;
    double t_sum = 0.0;
#pragma omp simd reduction(+ : t_sum)
    for (int64_t c = 0; c < cols; ++c) t_sum += t[c];
    const float t_sum_f = static_cast<float>(t_sum);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = (p[c] * t_sum_f - t[c]) * scale;
  }
}

// loss = mean (pred - target)^2, squares summed in double
void mse_forward(const float* pred, const float* target, int64_t n, float* loss) {
  const double total = blocked_sum(n, n, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = lo; i < hi; ++i) {
      const double diff = static_cast<double>(pred[i]) - target[i];
      acc += diff * diff;
    }
    return acc;
  });
  loss[0] = static_cast<float>(total / static_cast<double>(n));
}

// dpred = scale * 2 * (pred - target)
void mse_backward(const float* pred, const float* target, int64_t n, float scale, float* dpred) {
  const float twice_scale = 2.0f * scale;  // exact, so this equals scale * 2 * diff
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) dpred[i] = twice_scale * (pred[i] - target[i]);
}

}  // namespace nncore::cpu
