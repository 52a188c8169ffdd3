// One row of softmax, shared by the softmax and cross-entropy kernels. Max subtraction keeps
// exp() in (0, 1], so logits of any magnitude cannot overflow; the row sum is kept in double.
#pragma once
#include <cmath>
#include <cstdint>

namespace nncore::cpu {

inline float row_max(const float* x, int64_t cols) {
  float m = x[0];
  for (int64_t c = 1; c < cols; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

// probs = softmax(x) over cols values (probs may alias x); returns log(sum exp(x - m)) and the
// row max m.
inline double softmax_row(const float* x, float* probs, int64_t cols, float& m) {
  m = row_max(x, cols);
  double sum = 0.0;
  for (int64_t c = 0; c < cols; ++c) {
    const float e = std::exp(x[c] - m);
    probs[c] = e;
    sum += e;
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) probs[c] *= inv_sum;
  return std::log(sum);
}

}  // namespace nncore::cpu
