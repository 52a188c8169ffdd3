// Bias add / bias gradient over (outer, channels, inner).
#include <algorithm>

#include "nncore/kernels.h"
#include "vector_math.h"

namespace nncore::cpu {

namespace {
// Below this many floats a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

// y[o, c, i] = act(y[o, c, i] + b[c]), act = max(., 0) when relu (NaN stays NaN), one pass.
void bias_add(float* y, const float* b, int64_t outer, int64_t channels, int64_t inner,
              bool relu) {
  const int64_t total = outer * channels * inner;
  if (inner == 1) {  // linear layer: each row gets the whole bias vector
#pragma omp parallel for schedule(static) if (total > kParallelMin)
    for (int64_t o = 0; o < outer; ++o) {
      float* __restrict row = y + o * channels;
      if (relu) {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) {
          const float v = row[c] + b[c];  // a local, as in relu_forward: the max vectorizes
          row[c] = std::max(v, 0.0f);
        }
      } else {
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) row[c] += b[c];
      }
    }
    return;
  }
  const int64_t planes = outer * channels;
#pragma omp parallel for schedule(static) if (total > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* plane = y + p * inner;
    add_bias_row(plane, plane, inner, b[p % channels], relu);
  }
}

// db[c] += sum_{o,i} g[o, c, i], g = dy or, with relu_y, g = dy * [relu_y > 0] (stored to g_out);
// each channel sums in a fixed order whatever the threads (deterministic).
void bias_grad(const float* dy, const float* relu_y, float* g_out, float* db, int64_t outer,
               int64_t channels, int64_t inner) {
  const int64_t total = outer * channels * inner;
  if (relu_y != nullptr) {
    // The mask as its own pass, then the sum over g_out. One walk down the column tiles that
    // masks, stores and sums measured 2x faster at (256, 800) but 2x slower at (256, 1024)
    // (2 threads), where each row's stores alias the next row's loads 4 KB apart.
    relu_backward(relu_y, dy, g_out, total);
    dy = g_out;
  }
  if (inner == 1) {
    // Rows are contiguous over c: accumulate a block of channels down all rows (vectorizes
    // over c) in double, so a long batch does not lose the small terms.
    constexpr int64_t kBlock = 256;
    const int64_t blocks = (channels + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (total > kParallelMin && blocks > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kBlock;
      const int64_t width = std::min(kBlock, channels - c0);
      double acc[kBlock];
      for (int64_t c = 0; c < width; ++c) acc[c] = 0.0;
      for (int64_t o = 0; o < outer; ++o) {
        const float* __restrict row = dy + o * channels + c0;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) acc[c] += row[c];
      }
      for (int64_t c = 0; c < width; ++c) db[c0 + c] += static_cast<float>(acc[c]);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (total > kParallelMin && channels > 1)
  for (int64_t c = 0; c < channels; ++c) {
    double acc = 0.0;
    for (int64_t o = 0; o < outer; ++o) {
      const float* __restrict plane = dy + (o * channels + c) * inner;
      float plane_sum = 0.0f;  // float inside a plane (vectorized), double across planes
#pragma omp simd reduction(+ : plane_sum)
      for (int64_t i = 0; i < inner; ++i) plane_sum += plane[i];
      acc += plane_sum;
    }
    db[c] += static_cast<float>(acc);
  }
}

}  // namespace nncore::cpu
