// Pooling over planes = N*C, each plane H x W -> OH x OW, windows kh x kw, stride (sh, sw),
// padding (ph, pw). OH = (H + 2ph - kh)/sh + 1 (computed by the caller).
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// One thread per output (p, oh, ow). Padding never wins (it is -inf): only in-image taps are
// visited, with window_max's rule (common.cuh: PyTorch's, the first maximum or the last NaN).
// argmax = h*W + w inside the plane; a window with no in-image tap (impossible with ph < kh,
// pw < kw) gives -inf and argmax -1.
template <typename I>
__global__ void max_pool2d_forward_kernel(const float* __restrict__ x, int64_t total, I H, I W,
                                          I kh, I kw, I sh, I sw, I ph, I pw, I OH, I OW,
                                          float* __restrict__ y, int32_t* __restrict__ argmax) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I ow = idx % OW;
    const I oh = (idx / OW) % OH;
    const I p = idx / (OW * OH);
    const I hs = oh * sh - ph, ws = ow * sw - pw;
    const I h0 = max(hs, I(0)), h1 = min(hs + kh, H);
    const I w0 = max(ws, I(0)), w1 = min(ws + kw, W);
    const float* plane = x + static_cast<int64_t>(p) * H * W;
    I arg;
    y[t] = window_max([&](I h, I w) { return plane[static_cast<int64_t>(h) * W + w]; }, W, h0,
                      h1, w0, w1, arg);
    argmax[t] = static_cast<int32_t>(arg);
  }
}

// dx = 0, then dx[argmax] += dy, deterministically and in the CPU's order. The kernel is not
// given the window geometry, so it cannot gather; instead one warp owns one plane: it zeroes
// the plane, then walks the plane's outputs in chunks of 32 (lane l takes output base + l).
// Lanes of a chunk that hit the same input pixel are grouped with __match_any_sync; the group's
// lowest lane adds the group's dy values to dx one by one in lane (= output) order. Chunks are
// separated by __syncwarp, so every pixel receives its dy values in increasing output order,
// exactly as the sequential loop "for o: dx[argmax[o]] += dy[o]" does.
__global__ void max_pool2d_backward_kernel(const float* __restrict__ dy,
                                           const int32_t* __restrict__ argmax, int64_t planes,
                                           int64_t HW, int64_t OHW, float* __restrict__ dx) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = grid_stride() / 32;
  for (int64_t p = global_thread() / 32; p < planes; p += warps) {  // uniform over the warp
    float* dxp = dx + p * HW;
    const float* dyp = dy + p * OHW;
    const int32_t* ap = argmax + p * OHW;
    for (int64_t k = lane; k < HW; k += 32) dxp[k] = 0.f;
    __syncwarp();
    for (int64_t base = 0; base < OHW; base += 32) {
      const int64_t o = base + lane;
      int target = -1;
      float g = 0.f;
      if (o < OHW) {
        target = ap[o];
        g = dyp[o];
        if (target < 0 || target >= HW) target = -1;  // empty window: nothing to route
      }
      const unsigned peers = __match_any_sync(kFullMask, target);
      const int leader = __ffs(peers) - 1;
      float acc = (lane == leader && target >= 0) ? dxp[target] : 0.f;
      for (int src = 0; src < 32; ++src) {  // all lanes shuffle; only leaders accumulate
        const float v = __shfl_sync(kFullMask, g, src);
        if (lane == leader && ((peers >> src) & 1u)) acc += v;
      }
      if (lane == leader && target >= 0) dxp[target] = acc;
      __syncwarp();
    }
  }
}

// y = (sum of in-image taps) / divisor; divisor = kh*kw if count_include_pad, else the number
// of in-image taps. One thread per output.
// That divisor (kh*kw in float: no integer overflow for a huge window; exact while kh and kw are
// below 2^24, as any real one is; the CPU's avg_divisor).
template <typename I>
__device__ __forceinline__ float avg_divisor(bool count_include_pad, I kh, I kw, I taps) {
  return count_include_pad ? static_cast<float>(kh) * static_cast<float>(kw)
                           : static_cast<float>(taps);
}

template <typename I>
__global__ void avg_pool2d_forward_kernel(const float* __restrict__ x, int64_t total, I H, I W,
                                          I kh, I kw, I sh, I sw, I ph, I pw, I OH, I OW,
                                          bool count_include_pad, float* __restrict__ y) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I ow = idx % OW;
    const I oh = (idx / OW) % OH;
    const I p = idx / (OW * OH);
    const I hs = oh * sh - ph, ws = ow * sw - pw;
    const I h0 = max(hs, I(0)), h1 = min(hs + kh, H);
    const I w0 = max(ws, I(0)), w1 = min(ws + kw, W);
    const float* plane = x + static_cast<int64_t>(p) * H * W;
    float sum = 0.f;
    for (I h = h0; h < h1; ++h)
      for (I w = w0; w < w1; ++w) sum += plane[static_cast<int64_t>(h) * W + w];
    const I taps = max(h1 - h0, I(0)) * max(w1 - w0, I(0));
    const float divisor = avg_divisor(count_include_pad, kh, kw, taps);
    y[t] = divisor > 0.f ? sum / divisor : 0.f;
  }
}

// dx[h, w] = sum over the windows (oh, ow) containing (h, w) of dy[oh, ow] / divisor(oh, ow).
// Gather, one thread per input pixel; windows containing h: oh in [oh_lo, oh_hi) with
// oh_lo = hp < kh ? 0 : (hp - kh)/sh + 1, oh_hi = min(hp/sh + 1, OH), hp = h + ph. Windows are
// visited in increasing (oh, ow) order, the order of a CPU scatter loop.
template <typename I>
__global__ void avg_pool2d_backward_kernel(const float* __restrict__ dy, int64_t total, I H, I W,
                                           I kh, I kw, I sh, I sw, I ph, I pw, I OH, I OW,
                                           bool count_include_pad, float* __restrict__ dx) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I w = idx % W;
    const I h = (idx / W) % H;
    const I p = idx / (W * H);
    const I hp = h + ph, wp = w + pw;
    const I oh_lo = hp < kh ? 0 : (hp - kh) / sh + 1, oh_hi = min(hp / sh + 1, OH);
    const I ow_lo = wp < kw ? 0 : (wp - kw) / sw + 1, ow_hi = min(wp / sw + 1, OW);
    const float* g = dy + static_cast<int64_t>(p) * OH * OW;
    float sum = 0.f;
    for (I oh = oh_lo; oh < oh_hi; ++oh) {
      const I hs = oh * sh - ph;
      const I hn = min(hs + kh, H) - max(hs, I(0));
      for (I ow = ow_lo; ow < ow_hi; ++ow) {
        const I ws = ow * sw - pw;
        const I wn = min(ws + kw, W) - max(ws, I(0));
        const float divisor = avg_divisor(count_include_pad, kh, kw, hn * wn);  // >= 1
        sum += g[static_cast<int64_t>(oh) * OW + ow] / divisor;
      }
    }
    dx[t] = sum;
  }
}

// Runs launch with the index type (int32_t or int64_t) that every extent of the pooling fits.
template <typename Launch>
void with_pool_index_type(int64_t planes, int64_t H, int64_t W, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, int64_t OH, int64_t OW, Launch&& launch) {
  // Every index the kernels form along an axis lies in [-pad, input + 2*pad] (kernel <= the
  // padded input, o*stride <= padded - kernel): those bounds, the strides and the plane sizes
  // decide, with no sum that could itself overflow.
  with_index_type({planes * H * W, planes * OH * OW, H + 2 * ph, W + 2 * pw, sh, sw}, launch);
}

}  // namespace

void max_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, float* y, int32_t* argmax) {
  const int64_t total = planes * OH * OW;
  if (total <= 0) return;
  with_pool_index_type(planes, H, W, sh, sw, ph, pw, OH, OW, [&](auto index) {
    using I = decltype(index);
    max_pool2d_forward_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
        x, total, I(H), I(W), I(kh), I(kw), I(sh), I(sw), I(ph), I(pw), I(OH), I(OW), y, argmax);
  });
  NNCORE_CUDA_LAUNCH_CHECK("max_pool2d_forward");
}

int64_t max_pool2d_backward(const float* dy, const int32_t* argmax, int64_t planes, int64_t H,
                            int64_t W, int64_t OH, int64_t OW, float* dx) {
  if (planes <= 0 || H * W <= 0) return 0;
  const unsigned blocks = blocks_for(planes, kThreads / 32);  // one warp per plane
  max_pool2d_backward_kernel<<<blocks, kThreads, 0, stream()>>>(dy, argmax, planes, H * W,
                                                                 std::max<int64_t>(OH * OW, 0), dx);
  NNCORE_CUDA_LAUNCH_CHECK("max_pool2d_backward");
  return 0;  // out-of-range entries are skipped in the kernel, not counted
}

void avg_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, bool count_include_pad, float* y) {
  const int64_t total = planes * OH * OW;
  if (total <= 0) return;
  with_pool_index_type(planes, H, W, sh, sw, ph, pw, OH, OW, [&](auto index) {
    using I = decltype(index);
    avg_pool2d_forward_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
        x, total, I(H), I(W), I(kh), I(kw), I(sh), I(sw), I(ph), I(pw), I(OH), I(OW),
        count_include_pad, y);
  });
  NNCORE_CUDA_LAUNCH_CHECK("avg_pool2d_forward");
}

void avg_pool2d_backward(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                         int64_t OW, bool count_include_pad, float* dx) {
  const int64_t total = planes * H * W;
  if (total <= 0) return;
  with_pool_index_type(planes, H, W, sh, sw, ph, pw, OH, OW, [&](auto index) {
    using I = decltype(index);
    avg_pool2d_backward_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
        dy, total, I(H), I(W), I(kh), I(kw), I(sh), I(sw), I(ph), I(pw), I(OH), I(OW),
        count_include_pad, dx);
  });
  NNCORE_CUDA_LAUNCH_CHECK("avg_pool2d_backward");
}

}  // namespace nncore::cuda
