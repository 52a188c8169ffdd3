// Elementwise activations and their derivatives (y may alias x, dx may alias dy).
// One thread per element, grid-stride (common.cuh: map1_kernel / map2_kernel).
#include <cuda_runtime.h>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

struct LeakyRelu {  // y = x > 0 ? x : slope * x
  float slope;
  __device__ float operator()(float x) const { return x > 0.f ? x : slope * x; }
};
struct LeakyReluGrad {  // dx = dy * (x > 0 ? 1 : slope)
  float slope;
  __device__ float operator()(float x, float dy) const { return x > 0.f ? dy : slope * dy; }
};
struct Sigmoid {  // 1 / (1 + e^-x), never exponentiating a positive number
  __device__ float operator()(float x) const {
    if (x >= 0.f) return 1.f / (1.f + expf(-x));
    const float e = expf(x);
    return e / (1.f + e);
  }
};
struct SigmoidGrad {  // dx = dy * y * (1 - y)
  __device__ float operator()(float y, float dy) const { return dy * y * (1.f - y); }
};
struct Tanh {
  __device__ float operator()(float x) const { return tanhf(x); }
};
struct TanhGrad {  // dx = dy * (1 - y^2), as the CPU's dy * (1 - y) * (1 + y): same bits
  __device__ float operator()(float y, float dy) const { return dy * (1.f - y) * (1.f + y); }
};

}  // namespace

void relu_forward(const float* x, float* y, int64_t n) { launch_map1("relu_forward", x, y, n, Relu{}); }
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  launch_map2("relu_backward", x, dy, dx, n, ReluGrad{});
}
void leaky_relu_forward(const float* x, float* y, int64_t n, float slope) {
  launch_map1("leaky_relu_forward", x, y, n, LeakyRelu{slope});
}
void leaky_relu_backward(const float* x, const float* dy, float* dx, int64_t n, float slope) {
  launch_map2("leaky_relu_backward", x, dy, dx, n, LeakyReluGrad{slope});
}
void sigmoid_forward(const float* x, float* y, int64_t n) {
  launch_map1("sigmoid_forward", x, y, n, Sigmoid{});
}
void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
  launch_map2("sigmoid_backward", y, dy, dx, n, SigmoidGrad{});
}
void tanh_forward(const float* x, float* y, int64_t n) { launch_map1("tanh_forward", x, y, n, Tanh{}); }
void tanh_backward(const float* y, const float* dy, float* dx, int64_t n) {
  launch_map2("tanh_backward", y, dy, dx, n, TanhGrad{});
}

}  // namespace nncore::cuda
