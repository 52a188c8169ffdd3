// Elementwise activations and their derivatives over n floats. y may alias x and dx may alias
// dy exactly, so the pointers are not restrict; each iteration reads its element before it
// writes it, which keeps `omp simd` valid under that aliasing.
#include <algorithm>
#include <cmath>

#include "nncore/kernels.h"
#include "vector_math.h"

namespace nncore::cpu {

namespace {
// Memory-bound ops need more elements than exp/tanh ones before two threads pay off.
constexpr int64_t kParallelMinCheap = 1 << 15;
constexpr int64_t kParallelMinTranscendental = 1 << 12;
}  // namespace

// y = max(x, 0); NaN stays NaN, like PyTorch.
void relu_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];      // a local, not a reference into x: the max then vectorizes
    y[i] = std::max(v, 0.0f);  // (v < 0) ? 0 : v, so NaN passes through
  }
}

// dx = dy * [x > 0]
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];  // loaded unconditionally so the select vectorizes
    dx[i] = x[i] > 0.0f ? g : 0.0f;
  }
}

// y = x if x > 0 else slope * x
void leaky_relu_forward(const float* x, float* y, int64_t n, float slope) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    // One of the two terms is 0; GCC vectorizes max/min but not a select of two products.
    y[i] = std::max(v, 0.0f) + slope * std::min(v, 0.0f);
  }
}

// dx = dy if x > 0 else slope * dy
void leaky_relu_backward(const float* x, const float* dy, float* dx, int64_t n, float slope) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i], v = x[i];
    dx[i] = (v > 0.0f ? g : 0.0f) + slope * (v > 0.0f ? 0.0f : g);  // selects against 0 vectorize
  }
}

// y = 1/(1+e^-x), computed from e = e^-|x| <= 1 so nothing overflows:
// x >= 0: 1/(1+e);  x < 0: e/(1+e). The vectorizable exp in vector_math.h keeps the loop
// SIMD (std::exp is a scalar libm call); max error ~2.4 ulp.
void sigmoid_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinTranscendental)
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_approx(x[i]);
}

// dx = dy * y * (1 - y)
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

// y = tanh(x), via the vectorizable tanh_approx in vector_math.h (max error ~1.5 ulp).
void tanh_forward(const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinTranscendental)
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_approx(x[i]);
}

// dx = dy * (1 - y^2)
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

}  // namespace nncore::cpu
