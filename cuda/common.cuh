// Internal to the CUDA backend: launch geometry, grid-stride helpers, warp/block reductions and
// the generic elementwise kernels shared by several files.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "check.cuh"
#include "nncore/device.h"

namespace nncore::cuda::detail {

constexpr int kThreads = 256;           // default block size for 1-D kernels
constexpr int64_t kMaxBlocks = 65535;   // grid cap; grid-stride loops cover the rest
constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for n work items of `threads` each (at least 1; callers skip n == 0 themselves).
inline unsigned blocks_for(int64_t n, int threads = kThreads, int64_t cap = kMaxBlocks) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, cap)));
}

// Streaming multiprocessors of the current device (read once).
inline int sm_count() {
  static const int count = [] {
    int device = 0, sms = 0;
    NNCORE_CUDA_CHECK(cudaGetDevice(&device));
    NNCORE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms > 0 ? sms : 1;
  }();
  return count;
}

// TF32 tensor cores (mma.sync with .tf32, cvt.rna.tf32): compute capability 8.0 and newer.
inline bool has_tf32_tensor_cores() {
  static const bool has = [] {
    int device = 0, major = 0;
    NNCORE_CUDA_CHECK(cudaGetDevice(&device));
    NNCORE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major >= 8;
  }();
  return has;
}

// Device workspace from the caching allocator (none for 0 floats), given back once the launches
// are queued: every kernel runs on the one stream, so its next user is ordered after them.
struct Workspace {
  float* data;
  explicit Workspace(size_t floats)
      : data(floats > 0 ? static_cast<float*>(device_malloc(floats * sizeof(float))) : nullptr) {}
  ~Workspace() {
    if (data != nullptr) device_free(data);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

// True when every extent fits 32-bit index arithmetic (32-bit division is several times
// cheaper than 64-bit on the GPU). Callers pass the element counts of every array they index.
inline bool fits_int32(std::initializer_list<int64_t> extents) {
  for (int64_t e : extents)
    if (e < 0 || e > std::numeric_limits<int32_t>::max()) return false;
  return true;
}

// Calls launch(I{}) with I = int32_t when every extent fits in 32 bits (cheaper index arithmetic
// in the kernel), else with I = int64_t, so one launch statement serves both index widths:
//   with_index_type({total}, [&](auto i) { using I = decltype(i); k<I><<<...>>>(..., I(n)); });
template <typename Launch>
void with_index_type(std::initializer_list<int64_t> extents, Launch&& launch) {
  if (fits_int32(extents))
    launch(int32_t{});
  else
    launch(int64_t{});
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {  // NaN-ignoring (fmaxf); callers that must propagate NaN do so through exp/sum
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly all-reduce over the 32 lanes of a fully active warp; every lane gets the same bits
// (each stage combines equal pairs, and IEEE addition is commutative).
template <class Op>
__device__ __forceinline__ float warp_allreduce(float v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// All-reduce over a block whose size is a multiple of 32 (at most 1024). `scratch` holds 32
// floats of shared memory. Deterministic: warps are combined in index order. May be called
// repeatedly with the same scratch (the leading barrier protects the previous round's readers).
template <class Op>
__device__ __forceinline__ float block_allreduce(float v, Op op, float* scratch) {
  v = warp_allreduce(v, op);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);
  return r;
}

// Row-wise kernels over a (rows, cols) matrix: one warp per row (kBlock = false; lanes stride
// over the columns) or one block per row (kBlock = true; for long rows). Rows are visited with a
// grid stride that is uniform over the warp / block, so every reduction is reached by all of
// its threads.
template <bool kBlock>
struct RowGroup {
  __device__ __forceinline__ static int lane() { return kBlock ? threadIdx.x : (threadIdx.x & 31); }
  __device__ __forceinline__ static int width() { return kBlock ? blockDim.x : 32; }
  __device__ __forceinline__ static int64_t first_row() {
    return kBlock ? static_cast<int64_t>(blockIdx.x) : global_thread() / 32;
  }
  __device__ __forceinline__ static int64_t row_stride() {
    return kBlock ? static_cast<int64_t>(gridDim.x) : grid_stride() / 32;
  }
  template <class Op>
  __device__ __forceinline__ static float allreduce(float v, Op op, float* scratch) {
    if constexpr (kBlock) return block_allreduce(v, op, scratch);
    else return warp_allreduce(v, op);
  }
};

// Rows up to this many columns get one warp each; longer rows get a block of kRowBlock threads.
constexpr int64_t kWarpRowMaxCols = 1024;
constexpr int kRowBlock = 512;
inline unsigned row_blocks(int64_t rows, bool block_per_row) {
  return block_per_row ? blocks_for(rows, 1) : blocks_for(rows, kThreads / 32);
}
inline unsigned row_threads(bool block_per_row) { return block_per_row ? kRowBlock : kThreads; }

// y[i] = f(x[i]); y may alias x (each element is read, then written, by the same thread).
template <class F>
__global__ void map1_kernel(const float* x, float* y, int64_t n, F f) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = f(x[i]);
}
// y[i] = f(a[i], b[i]); y may alias a or b.
template <class F>
__global__ void map2_kernel(const float* a, const float* b, float* y, int64_t n, F f) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = f(a[i], b[i]);
}

struct Relu {  // y = max(x, 0); NaN propagates (relu_forward and the convolution's output)
  __device__ __forceinline__ float operator()(float x) const { return x < 0.f ? 0.f : x; }
};
// dx = (x <= 0 ? 0 : dy), PyTorch's threshold_backward: dy NaN or inf where x <= 0 gives 0, a
// NaN x passes dy.
struct ReluGrad {
  __device__ __forceinline__ float operator()(float x, float dy) const {
    return x <= 0.f ? 0.f : dy;
  }
};

// A layer's output activation: v + b[c] (no add without a bias: + 0 would turn -0 into +0),
// then ReLU when asked; bias_add and the convolution's output kernels share it.
struct BiasActivation {
  const float* b;
  bool relu;
  __device__ __forceinline__ float operator()(float v, int64_t c) const {
    if (b != nullptr) v += b[c];
    return relu ? Relu{}(v) : v;
  }
};

// C[m, n] = act(P[0][m, n] + P[1][m, n] + ... (panel order: deterministic, no atomics), + beta *
// C[m, n] unless beta == 0; n) from `panels` dense M x N panels: the partial results of a
// reduction split over blocks (sgemm's split-K slices, bias_grad's chunks of rows). act is a
// Linear's bias and ReLU by column n (split-K linear_forward), else the identity. (A template
// only so that this header can define it.)
template <typename Act>
__global__ void sum_panels_kernel(const float* __restrict__ P, int64_t panels, int64_t M,
                                  int64_t N, float beta, float* __restrict__ C, int64_t ldc,
                                  Act act) {
  const int64_t panel = M * N;
  for (int64_t i = global_thread(); i < panel; i += grid_stride()) {
    float sum = P[i];
    for (int64_t p = 1; p < panels; ++p) sum += P[p * panel + i];
    const int64_t n = i % N;
    float* c = C + (i / N) * ldc + n;
    *c = act(beta != 0.f ? sum + beta * *c : sum, n);
  }
}

// Max pooling over one window of a plane with row pitch W: the taps h in [h0, h1), w in
// [w0, w1), row-major, each read as load(h, w). PyTorch's rule: a later tap takes over when it
// is greater or NaN, so the first maximum wins, or the last NaN. Returns the max and sets arg to
// its h*W + w (-inf and -1 for an empty window). Shared by max_pool2d_forward and the
// convolution's fused pool, so both pick the same tap.
template <typename I, class Load>
__device__ __forceinline__ float window_max(Load load, I W, I h0, I h1, I w0, I w1, I& arg) {
  float best = -INFINITY;
  arg = -1;
  for (I h = h0; h < h1; ++h) {
    for (I w = w0; w < w1; ++w) {
      const float v = load(h, w);
      if (arg < 0 || v > best || isnan(v)) {
        best = v;
        arg = h * W + w;
      }
    }
  }
  return best;
}

// ---- many tensors in one launch (optimizer updates and zero_grad over a whole model) ---------
// A launch takes up to kListTensors tensors, seen as one concatenation of their elements cut
// into chunks of kListChunk; block b takes chunks b, b + gridDim.x, ... and, in a chunk, the
// piece of each tensor that overlaps it. Tensor t of list l is table.ptr[l][t]: L parallel lists
// (param, grad, buffers) of equally long tensors. The table travels in the kernel's parameters
// (1.3 KB for L = 4, under the 4 KB limit), so a launch needs no host-to-device copy.
constexpr int kListTensors = 32;
constexpr int64_t kListChunk = 4 * kThreads;  // floats per block per turn

template <int L>
struct TensorListTable {
  float* ptr[L][kListTensors];
  int64_t end[kListTensors];  // tensor t is [end[t-1], end[t]) of the concatenation (end[-1] = 0)
  int count;
};

// op(p, i) updates element i of the tensor whose L pointers are p.
template <int L, class Op>
__global__ void tensor_list_kernel(const TensorListTable<L> table, Op op) {
  const int64_t total = table.end[table.count - 1];
  for (int64_t begin = static_cast<int64_t>(blockIdx.x) * kListChunk; begin < total;
       begin += static_cast<int64_t>(gridDim.x) * kListChunk) {
    const int64_t stop = begin + kListChunk < total ? begin + kListChunk : total;
    for (int t = 0; t < table.count; ++t) {
      const int64_t start = t > 0 ? table.end[t - 1] : 0, end = table.end[t];
      if (end <= begin) continue;  // tensor t ends before this chunk
      if (start >= stop) break;    // tensor t, and every later one, starts after it
      float* p[L];
#pragma unroll
      for (int l = 0; l < L; ++l) p[l] = table.ptr[l][t];
      const int64_t hi = end < stop ? end : stop;
      for (int64_t i = (begin > start ? begin : start) + threadIdx.x; i < hi; i += blockDim.x)
        op(p, i - start);
    }
  }
}

// Runs op over every element of `count` tensors (tensor t: sizes[t] floats at lists[l][t]; a
// null list passes null pointers), kListTensors tensors per launch.
template <int L, class Op>
void launch_tensor_lists(const char* name, const std::array<float* const*, L>& lists,
                         const int64_t* sizes, int64_t count, Op op) {
  TensorListTable<L> table;
  table.count = 0;
  int64_t total = 0;
  auto launch = [&] {
    tensor_list_kernel<L><<<blocks_for(total, static_cast<int>(kListChunk)), kThreads, 0,
                            stream()>>>(table, op);
    NNCORE_CUDA_LAUNCH_CHECK(name);
    table.count = 0;
    total = 0;
  };
  for (int64_t t = 0; t < count; ++t) {
    if (sizes[t] <= 0) continue;
    for (int l = 0; l < L; ++l) table.ptr[l][table.count] = lists[l] ? lists[l][t] : nullptr;
    total += sizes[t];
    table.end[table.count++] = total;
    if (table.count == kListTensors) launch();
  }
  if (table.count > 0) launch();
}

template <class F>
void launch_map1(const char* name, const float* x, float* y, int64_t n, F f) {
  if (n <= 0) return;
  map1_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(x, y, n, f);
  NNCORE_CUDA_LAUNCH_CHECK(name);
}
inline void sum_panels(const char* name, const float* P, int64_t panels, int64_t M, int64_t N,
                       float beta, float* C, int64_t ldc, BiasActivation act = {nullptr, false}) {
  sum_panels_kernel<BiasActivation>
      <<<blocks_for(M * N), kThreads, 0, stream()>>>(P, panels, M, N, beta, C, ldc, act);
  NNCORE_CUDA_LAUNCH_CHECK(name);
}
template <class F>
void launch_map2(const char* name, const float* a, const float* b, float* y, int64_t n, F f) {
  if (n <= 0) return;
  map2_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(a, b, y, n, f);
  NNCORE_CUDA_LAUNCH_CHECK(name);
}

}  // namespace nncore::cuda::detail
