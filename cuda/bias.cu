// Bias and layout kernels: bias_add, bias_grad, swap_outer_axes.
#include <cuda_runtime.h>

#include "common.cuh"
#include "layout.cuh"
#include "nncore/kernels.h"

namespace nncore::cuda {
namespace {
using namespace detail;

// y[o, c, i] = act(y[o, c, i] + b[c]). One thread per element of y (grid-stride);
// c = (idx / inner) % channels. I is the index type used for the division (int32 when every
// extent fits).
template <typename I>
__global__ void bias_add_kernel(float* __restrict__ y, BiasActivation act, int64_t total,
                                I channels, I inner) {
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const I c = (static_cast<I>(idx) / inner) % channels;
    y[idx] = act(y[idx], c);
  }
}

// The gradient bias_grad sums: g = dy, or with the fused ReLU's output relu_y,
// g = dy * [relu_y > 0] stored to g_out (which may alias dy: each element is read, then written,
// by one thread).
struct BiasGradSource {
  const float* dy;
  const float* relu_y;  // null: no ReLU
  float* g_out;
  __device__ __forceinline__ float operator()(int64_t j) const {
    if (relu_y == nullptr) return dy[j];
    const float g = ReluGrad{}(relu_y[j], dy[j]);
    g_out[j] = g;
    return g;
  }
};

// inner == 1 (linear layers): db[c] += sum_o g[o, c], g is (outer, channels) row-major.
// Block (32, 32): threadIdx.x picks a channel of the block's 32-channel slice (so each warp reads
// 32 consecutive floats of a row), threadIdx.y starts at row threadIdx.y and strides by 32.
// The 32 partial sums of a channel are added in threadIdx.y order: deterministic.
__global__ void __launch_bounds__(1024)
bias_grad_rows_kernel(BiasGradSource g, float* __restrict__ db, int64_t outer, int64_t channels) {
  __shared__ float partial[32][33];
  const int64_t slices = (channels + 31) / 32;
  for (int64_t slice = blockIdx.x; slice < slices; slice += gridDim.x) {
    const int64_t c = slice * 32 + threadIdx.x;
    float sum = 0.f;
    if (c < channels)
      for (int64_t o = threadIdx.y; o < outer; o += blockDim.y) sum += g(o * channels + c);
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < channels) {
      float total = 0.f;
      for (int r = 0; r < static_cast<int>(blockDim.y); ++r) total += partial[r][threadIdx.x];
      db[c] += total;
    }
    __syncthreads();  // partial is rewritten by the next slice
  }
}

// inner > 1 (NCHW): one block per (chunk k of `chunk` outer rows, channel c), grid-stride over
// the chunks * channels units; the block's threads walk the chunk's values of the channel (index
// j = o*inner + i) and block-reduce. One chunk: db[c] += sum. Several (few channels, e.g. 6 for
// LeNet-5's conv1, would leave most SMs idle): partial[k * channels + c] = sum, one panel of
// channels per chunk, for sum_panels.
template <typename I>
__global__ void bias_grad_planes_kernel(BiasGradSource g, float* __restrict__ db,
                                        float* __restrict__ partial, I outer, I channels, I inner,
                                        I chunk, I chunks) {
  __shared__ float scratch[32];
  for (I unit = blockIdx.x; unit < channels * chunks; unit += gridDim.x) {
    const I c = unit % channels, o0 = unit / channels * chunk;
    const I values = (outer - o0 < chunk ? outer - o0 : chunk) * inner;
    const int64_t base = (static_cast<int64_t>(o0) * channels + c) * inner;
    float sum = 0.f;
    for (I j = threadIdx.x; j < values; j += blockDim.x) {
      const I o = j / inner, i = j - o * inner;
      sum += g(base + static_cast<int64_t>(o) * channels * inner + i);
    }
    sum = block_allreduce(sum, SumOp{}, scratch);
    if (threadIdx.x == 0) {
      if (chunks == 1) db[c] += sum;
      else partial[unit] = sum;
    }
  }
}


// y[b, a, i] = x[a, b, i], inner > 1: one thread per output element (reads are contiguous runs
// of `inner`, writes fully coalesced).
template <typename I>
__global__ void swap_outer_axes_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       int64_t total, I A, I B, I inner) {
  for (int64_t idx = global_thread(); idx < total; idx += grid_stride()) {
    const I id = static_cast<I>(idx);
    const I i = id % inner;
    const I t = id / inner;  // = b*A + a
    const I a = t % A, b = t / A;
    y[idx] = x[(static_cast<int64_t>(a) * B + b) * inner + i];
  }
}

// inner == 1: a plain transpose (A, B) -> (B, A) through a 32x32 shared tile (padded against bank
// conflicts) so both the reads and the writes are coalesced. Block (32, 8); grid.x over B tiles,
// grid.y (strided) over A tiles.
__global__ void transpose_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t A,
                                 int64_t B) {
  __shared__ float tile[32][33];
  const int64_t tiles_a = (A + 31) / 32;
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * 32;
  for (int64_t ta = blockIdx.y; ta < tiles_a; ta += gridDim.y) {
    const int64_t a0 = ta * 32;
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t a = a0 + j, b = b0 + threadIdx.x;
      if (a < A && b < B) tile[j][threadIdx.x] = x[a * B + b];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t b = b0 + j, a = a0 + threadIdx.x;
      if (a < A && b < B) y[b * A + a] = tile[threadIdx.x][j];
    }
    __syncthreads();  // the tile is refilled by the next A tile
  }
}

}  // namespace

void bias_add(float* y, const float* b, int64_t outer, int64_t channels, int64_t inner,
              bool relu) {
  const int64_t total = outer * channels * inner;
  if (total <= 0) return;
  with_index_type({total}, [&](auto index) {
    using I = decltype(index);
    bias_add_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(
        y, BiasActivation{b, relu}, total, I(channels), I(inner));
  });
  NNCORE_CUDA_LAUNCH_CHECK("bias_add");
}

void bias_grad(const float* dy, const float* relu_y, float* g_out, float* db, int64_t outer,
               int64_t channels, int64_t inner) {
  const BiasGradSource g{dy, relu_y, g_out};
  if (channels <= 0) return;
  // With no elements the sums are 0 and db is unchanged.
  if (outer <= 0 || inner <= 0) return;
  if (inner == 1) {
    const unsigned blocks = blocks_for(channels, 32);
    bias_grad_rows_kernel<<<blocks, dim3(32, 32), 0, stream()>>>(g, db, outer, channels);
    NNCORE_CUDA_LAUNCH_CHECK("bias_grad_rows");
    return;
  }
  // Chunks of at least kMinChunkValues values, and enough of them for about two blocks per SM.
  constexpr int64_t kMinChunkValues = 4096;
  const int64_t wanted = (2 * sm_count() + channels - 1) / channels;
  const int64_t chunk =
      std::max((outer + wanted - 1) / wanted, (kMinChunkValues + inner - 1) / inner);
  const int64_t chunks = (outer + chunk - 1) / chunk;
  const Workspace partial(chunks > 1 ? static_cast<size_t>(channels * chunks) : 0);
  const unsigned blocks = blocks_for(channels * chunks, 1);
  // + kThreads: a thread's value index j steps up to blockDim.x past the last value.
  with_index_type({outer * channels * inner + kThreads}, [&](auto index) {
    using I = decltype(index);
    bias_grad_planes_kernel<I><<<blocks, kThreads, 0, stream()>>>(
        g, db, partial.data, I(outer), I(channels), I(inner), I(chunk), I(chunks));
  });
  NNCORE_CUDA_LAUNCH_CHECK("bias_grad_planes");
  // db = (sum of the chunks, in order) + 1 * db: the bits of db[c] += sum.
  if (chunks > 1)
    sum_panels("bias_grad_chunks", partial.data, chunks, 1, channels, 1.0f, db, channels);
}

void swap_outer_axes(const float* x, float* y, int64_t A, int64_t B, int64_t inner) {
  const int64_t total = A * B * inner;
  if (total <= 0) return;
  if (inner == 1) {
    const int64_t tiles_b = (B + 31) / 32, tiles_a = (A + 31) / 32;
    if (tiles_b > 0x7fffffff)
      throw std::runtime_error("nncore: swap_outer_axes: tensor too large");
    const dim3 grid(static_cast<unsigned>(tiles_b),
                    static_cast<unsigned>(std::min<int64_t>(tiles_a, 65535)));
    transpose_kernel<<<grid, dim3(32, 8), 0, stream()>>>(x, y, A, B);
    NNCORE_CUDA_LAUNCH_CHECK("swap_outer_axes_transpose");
    return;
  }
  with_index_type({total}, [&](auto index) {
    using I = decltype(index);
    swap_outer_axes_kernel<I><<<blocks_for(total), kThreads, 0, stream()>>>(x, y, total, I(A),
                                                                            I(B), I(inner));
  });
  NNCORE_CUDA_LAUNCH_CHECK("swap_outer_axes");
}

}  // namespace nncore::cuda
