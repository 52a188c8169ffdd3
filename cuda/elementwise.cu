// Dropout, small elementwise helpers, row gather and row argmax.
#include <cuda_runtime.h>

#include <cmath>

#include "common.cuh"
#include "nncore/kernels.h"
#include "nncore/philox.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// Inverted dropout: mask[i] = u_i >= p ? 1/(1-p) : 0, y = x * mask, with
// u_i = philox_uniform(seed, offset, i) (philox.h; the CPU draws the same numbers).
// philox_uniform(i) takes word i%4 of Philox block offset + i/4, so thread k computes block
// offset + k once and serves elements 4k .. 4k+3 (4x fewer Philox evaluations than one call per
// element, identical values). y may alias x.
__global__ void dropout_kernel(const float* x, float* y, float* __restrict__ mask, int64_t n,
                               float p, float keep_scale, uint64_t seed, uint64_t offset) {
  const int64_t groups = (n + 3) / 4;
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  for (int64_t k = global_thread(); k < groups; k += grid_stride()) {
    const uint64_t block = offset + static_cast<uint64_t>(k);
    const Philox4 counter{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
    const Philox4 bits = philox4x32_10(counter, key0, key1);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * k + w;
      if (i < n) {
        const float u = static_cast<float>(bits.v[w] >> 8) * (1.0f / 16777216.0f);
        const float mk = u >= p ? keep_scale : 0.f;
        mask[i] = mk;
        y[i] = x[i] * mk;
      }
    }
  }
}

struct Mul {
  __device__ float operator()(float a, float b) const { return a * b; }
};

struct Fill {
  float value;
  __device__ void operator()(float* const (&y)[1], int64_t i) const { y[0][i] = value; }
};
// y += alpha * x (x may alias y)
__global__ void axpy_kernel(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] += alpha * x[i];
}
__global__ void scale_kernel(float* __restrict__ y, float alpha, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] *= alpha;
}

// A word of all-one bits: what an out-of-range index gathers (NaN as float32, -1 as int32).
template <typename T>
__device__ __forceinline__ T all_one_bits();
template <>
__device__ __forceinline__ uint32_t all_one_bits<uint32_t>() { return ~0u; }
template <>
__device__ __forceinline__ uint4 all_one_bits<uint4>() { return make_uint4(~0u, ~0u, ~0u, ~0u); }

// y[r, :] = x[index[r], :] on words of type T (4 or 16 bytes); one thread per output word.
template <typename T, typename I>
__global__ void gather_rows_kernel(const T* __restrict__ x, const int32_t* __restrict__ index,
                                   int64_t total, int64_t source_rows, I row_words,
                                   T* __restrict__ y) {
  for (int64_t t = global_thread(); t < total; t += grid_stride()) {
    const I idx = static_cast<I>(t);
    const I r = idx / row_words, w = idx - r * row_words;
    const int64_t s = index[r];
    y[t] = s >= 0 && s < source_rows ? x[s * row_words + w] : all_one_bits<T>();
  }
}

// Is (v, i) a better argmax candidate than (bv, bi)? Larger value wins, ties go to the lower
// index; NaN counts as the largest value (NumPy's rule: the first NaN is the argmax).
__device__ __forceinline__ bool argmax_better(float v, int64_t i, float bv, int64_t bi) {
  const bool vn = isnan(v), bn = isnan(bv);
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}

// out[r] = argmax_c x[r, c] (first maximum). One warp per row: each lane scans its columns in
// increasing order, then a butterfly reduction keeps the best (value, index) pair.
__global__ void argmax_rows_kernel(const float* __restrict__ x, int64_t rows, int64_t cols,
                                   int32_t* __restrict__ out) {
  using G = RowGroup<false>;
  for (int64_t r = G::first_row(); r < rows; r += G::row_stride()) {
    const float* xr = x + r * cols;
    float best = -INFINITY;
    int64_t best_i = INT64_MAX;
    for (int64_t c = G::lane(); c < cols; c += 32) {
      const float v = xr[c];
      if (argmax_better(v, c, best, best_i)) best = v, best_i = c;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float ov = __shfl_xor_sync(kFullMask, best, offset);
      const int64_t oi = __shfl_xor_sync(kFullMask, best_i, offset);
      if (argmax_better(ov, oi, best, best_i)) best = ov, best_i = oi;
    }
    if (G::lane() == 0) out[r] = static_cast<int32_t>(best_i);
  }
}

}  // namespace

void dropout_forward(const float* x, float* y, float* mask, int64_t n, double p, uint64_t seed,
                     uint64_t offset) {
  if (n <= 0) return;
  const int64_t groups = (n + 3) / 4;
  dropout_kernel<<<blocks_for(groups), kThreads, 0, stream()>>>(
      x, y, mask, n, static_cast<float>(p), dropout_keep_scale(p), seed, offset);
  NNCORE_CUDA_LAUNCH_CHECK("dropout_forward");
}

void mul(const float* a, const float* b, float* y, int64_t n) { launch_map2("mul", a, b, y, n, Mul{}); }

void fill(float* y, float value, int64_t n) { fill_tensors(&y, &n, 1, value); }

void fill_tensors(float* const* ys, const int64_t* sizes, int64_t count, float value) {
  launch_tensor_lists<1>("fill", {ys}, sizes, count, Fill{value});
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  axpy_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(alpha, x, y, n);
  NNCORE_CUDA_LAUNCH_CHECK("axpy");
}

void scale(float* y, float alpha, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(y, alpha, n);
  NNCORE_CUDA_LAUNCH_CHECK("scale");
}

void gather_rows(const void* x, const int32_t* index, int64_t rows, int64_t source_rows,
                 int64_t row_bytes, void* y) {
  if (rows <= 0 || row_bytes <= 0) return;
  const bool wide = row_bytes % 16 == 0 && (reinterpret_cast<uintptr_t>(x) & 15u) == 0 &&
                    (reinterpret_cast<uintptr_t>(y) & 15u) == 0;
  const int64_t word = wide ? 16 : 4;
  const int64_t row_words = row_bytes / word;
  const int64_t total = rows * row_words;
  // Source offsets are computed in 64 bits in the kernel (index[r] * row_words); only the
  // output position and the row split use I.
  with_index_type({total}, [&](auto position) {
    using I = decltype(position);
    if (wide)
      gather_rows_kernel<uint4, I><<<blocks_for(total), kThreads, 0, stream()>>>(
          static_cast<const uint4*>(x), index, total, source_rows, I(row_words),
          static_cast<uint4*>(y));
    else
      gather_rows_kernel<uint32_t, I><<<blocks_for(total), kThreads, 0, stream()>>>(
          static_cast<const uint32_t*>(x), index, total, source_rows, I(row_words),
          static_cast<uint32_t*>(y));
  });
  NNCORE_CUDA_LAUNCH_CHECK("gather_rows");
}

void argmax_rows(const float* x, int64_t rows, int64_t cols, int32_t* out) {
  if (rows <= 0) return;
  argmax_rows_kernel<<<row_blocks(rows, false), kThreads, 0, stream()>>>(x, rows, cols, out);
  NNCORE_CUDA_LAUNCH_CHECK("argmax_rows");
}

}  // namespace nncore::cuda
