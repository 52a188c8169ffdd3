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

// dx = (x <= 0 ? 0 : dy) (relu_grad: PyTorch's threshold_backward, a NaN x passes dy)
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) dx[i] = relu_grad(x[i], dy[i]);
}

namespace {
// GCC vectorizes a select between a loaded value and a constant, not between a value and a
// product, so leaky ReLU is computed as a + slope * b with one of a, b a zero: a - 0 and
// slope * b + (-0) are exact for every a and b, so for every finite slope the result is bit for
// bit PyTorch's (and the CUDA kernels') select, signed zeros included, when the zero in the
// product term is the one that makes slope * zero == -0.
inline float zero_with_negative_product(float slope) { return std::signbit(slope) ? 0.0f : -0.0f; }
}  // namespace

// y = x if x > 0 else slope * x
void leaky_relu_forward(const float* x, float* y, int64_t n, float slope) {
  const float z = zero_with_negative_product(slope);
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = (v > 0.0f ? v : -0.0f) + slope * (v > 0.0f ? z : v);
  }
}

// dx = dy if x > 0 else slope * dy
void leaky_relu_backward(const float* x, const float* dy, float* dx, int64_t n, float slope) {
  const float z = zero_with_negative_product(slope);
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i], v = x[i];
    dx[i] = (v > 0.0f ? g : -0.0f) + slope * (v > 0.0f ? z : g);
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

// dx = dy * (1 - y^2), as dy * (1 - y) * (1 + y): 1 - y is exact for y >= 1/2, so this keeps
// ~1 ulp where 1 - y*y cancels (|y| -> 1: 1e-4 relative error), and has no product-then-add a
// compiler could fuse, so CPU and GPU give the same bits.
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinCheap)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i]) * (1.0f + y[i]);
}

}  // namespace nncore::cpu
