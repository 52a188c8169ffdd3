// The 2x2, stride-2, unpadded max pool (pool.cpp) by output rows and planes, shared with the
// convolution that fuses it (conv.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

namespace nncore::cpu {

// What a fused convolution applies to each input as the pool loads it: a(x) = x + bias, then
// max(., 0) when relu (NaN stays NaN), the very bits add_bias_rows (conv.cpp) would store.
struct PoolInputActivation {
  float bias;
  bool relu;
  float operator()(float x) const { return relu ? std::max(x + bias, 0.0f) : x + bias; }
};

// A plane of OH x OW outputs: y[oh, ow] = max of the window a(x[2oh, 2ow]), a(x[2oh, 2ow+1]),
// a(x[2oh+1, 2ow]), a(x[2oh+1, 2ow+1]) (the first maximum in that order, or the last NaN, as
// PyTorch), argmax[oh, ow] = its index h*W + w; a is the identity when act is null. x has row
// pitch ld (W for a plain image; the convolution's rows have their own).
void max_pool_plane_2x2(const float* x, int64_t ld, int64_t OH, int64_t OW, int32_t W, float* y,
                        int32_t* argmax, const PoolInputActivation* act = nullptr);

// The inverse, for a plane of OH x OW outputs (OW >= 4): rows 2oh and 2oh+1, columns < 2*OW, of
// dx (row pitch ld; indices are h*W + w) get each window's g at its argmax and 0 elsewhere
// (0 + g, as dx = 0; dx[argmax] += g gives), g = dy, or dy * [relu_y > 0] when relu_y is not
// null. Returns false, leaving garbage, when some argmax is not in its own window.
bool max_pool_plane_2x2_backward(const float* dy, const float* relu_y, const int32_t* index,
                                 int64_t OH, int64_t OW, int32_t W, float* dx, int64_t ld);

}  // namespace nncore::cpu
