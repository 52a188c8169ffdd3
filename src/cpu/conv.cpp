// Convolution on the CPU, by one of two algorithms, both in passes of images:
//
// im2col + GEMM (Caffe's scheme, batched), any stride:
//   col = im2col(x_pass) (C*kh*kw, images*OH*OW);  y_cn = W col;  y_pass = act(swap(y_cn) + b)
//   g_cn = swap(dy * act'(y));  db += sum(g);  dW += g_cn col^T;  dcol = W^T g_cn;
//   dx_pass = col2im(dcol)
// direct, stride 1 (conv_direct.h): the image is zero-padded once into Hp x Wp planes and
//   y[o][q] = sum_k W[o][k] xpad[off[k] + q]                     (q = oh*Wp + ow)
//   dW[o][k] += sum_q g[o][q] xpad[off[k] + q]                   (g zero past OW in each row)
//   dxpad[c][p] = sum_{o,i,j} W[o][c][i][j] gpad[o][front + p - i*Wp - j]
// where gpad is g framed by `front` = (kh-1)*Wp + kw-1 zeros, so the input gradient is the same
// shifted-row GEMM run on g with the taps mirrored. Nothing is expanded kh*kw-fold: with few
// channels (LeNet: 1 and 6) im2col's copies and GEMMs with 6 or 16 rows cost more than the math.
// The dropped columns multiply real inputs by zero gradients (and the zero frame of g by the
// weights): exact for finite operands only, as 0 * inf is NaN. A pass whose images hold an inf
// or NaN sums its dW over the valid terms only, and weights with one compute dx so (scalar,
// exact_weight_grad / exact_input_grad): the non-finite entries are then im2col's and PyTorch's
// (an inf pixel made the dW of taps that never read it NaN, in other channels too).
//
// A pass covers as many images as keep its buffers (~512 KiB) in L2. Passes are spread over the
// threads, each running the kernels single-threaded on its own pass and scratch, because the
// per-pass kernels are too small to split across threads well. dW (and db) are summed per
// thread, then the partial sums are added in thread order: deterministic for a given thread
// count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "conv_direct.h"
#include "nncore/kernels.h"
#include "pool_2x2.h"
#include "region_errors.h"
#include "sgemm.h"
#include "vector_math.h"
#include "wide_vectors.h"
#include "work_split.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nncore::cpu {

namespace {

// A quarter of a 2 MiB L2: the pass's output and the GEMM's buffers share it. LeNet-5 at batch
// 256 ran conv2 fwd+bwd ~12% faster with 512 KiB than with 1 MiB (256-384 KiB: the same).
constexpr int64_t kColumnBytes = int64_t(512) << 10;

struct Passes {
  int64_t images;   // images per pass
  int64_t count;    // number of passes
  int64_t threads;  // threads that run passes (1: passes run in turn, kernels go parallel)
};

Passes plan_passes(int64_t N, int64_t bytes_per_image) {
  const int64_t threads = available_threads();
  int64_t images = std::clamp<int64_t>(kColumnBytes / std::max<int64_t>(bytes_per_image, 1), 1,
                                       std::max<int64_t>(N, 1));
  // Enough passes to keep every thread busy.
  if (threads > 1) images = std::min(images, std::max<int64_t>(1, (N + threads - 1) / threads));
  const int64_t count = (N + images - 1) / images;
  return {images, count, count >= threads ? threads : 1};
}

constexpr int64_t round_line(int64_t floats) { return round_up(floats, 16); }

// Runs pass(index, thread) for every pass: spread over threads, or in turn. A pass's GEMM may
// fail to allocate its packing buffers: the error is raised after the region.
template <typename PassFn>
void run_passes(const Passes& p, PassFn pass) {
  if (p.threads > 1) {
    RegionErrors errors;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(p.threads))
    for (int64_t i = 0; i < p.count; ++i) {
#ifdef _OPENMP
      const int thread = omp_get_thread_num();
#else
      const int thread = 0;
#endif
      errors.run([&] { pass(i, thread); });
    }
    errors.rethrow();
  } else {
    for (int64_t i = 0; i < p.count; ++i) pass(i, 0);
  }
}

// out[r*out_ld + s] = in[r*in_ld + s] + bias, then max(., 0) when relu (NaN stays NaN), for
// rows x cols floats. (Compiled at the baseline width it was 5% of a LeNet-5 training step: it
// runs over every unpooled conv output plane.)
NNCORE_WIDEST_VECTORS
void add_bias_rows(const float* in, int64_t in_ld, int64_t rows, int64_t cols, float bias,
                   bool relu, float* out, int64_t out_ld) {
  for (int64_t r = 0; r < rows; ++r, in += in_ld, out += out_ld)
    add_bias_row(in, out, cols, bias, relu);
}

// Where the forward's outputs go: y[n, o] = act(conv + b[o]) (N, Cout, OH, OW), or with
// argmax (the fused pool) y[n, o] = max_pool2d 2x2 of that, (N, Cout, OH/2, OW/2).
struct OutputSink {
  float* y;
  int32_t* argmax;  // null: no pool
  const float* b;
  bool relu;
  int64_t cout, OH, OW;

  int64_t plane_size() const { return argmax != nullptr ? (OH / 2) * (OW / 2) : OH * OW; }

  // Output plane (n, o) from the convolution's plane src (OH rows of OW, row pitch ld); with a
  // pool, the pool applies the activation as it loads src (one pass over the plane, not two).
  void store(int64_t n, int64_t o, const float* src, int64_t ld) const {
    const float bias = b != nullptr ? b[o] : 0.0f;
    const int64_t at = (n * cout + o) * plane_size();
    if (argmax != nullptr) {
      const PoolInputActivation act{bias, relu};
      max_pool_plane_2x2(src, ld, OH / 2, OW / 2, static_cast<int32_t>(OW), y + at, argmax + at,
                         &act);
    } else {
      add_bias_rows(src, ld, OH, OW, bias, relu, y + at, OW);
    }
  }
};

// Where the backward's gradient comes from: g = dy * [relu_y > 0] (relu_y null: g = dy) per
// output plane, or with argmax (a pooled forward's) the pool's backward of that.
struct GradSource {
  const float* dy;
  const float* relu_y;    // null: no fused ReLU
  const int32_t* argmax;  // null: no pool
  int64_t cout, OH, OW;
  mutable std::atomic<int64_t> skipped{0};  // argmax entries outside the plane (never placed)

  int64_t plane_size() const { return argmax != nullptr ? (OH / 2) * (OW / 2) : OH * OW; }

  // True when the pass can multiply dy itself: (Cout, images*OH*OW) is dy's own layout when
  // either axis has length 1, and there is nothing to mask or unpool.
  bool in_place(int64_t images) const {
    return (images == 1 || cout == 1) && relu_y == nullptr && argmax == nullptr;
  }

  // Writes g of plane (n, o) into dst (OH rows of OW, row pitch ld; dst null: only summed)
  // and returns its sum (float, in the order of dy's plane, as bias_grad sums a plane).
  float load(int64_t n, int64_t o, float* dst, int64_t ld) const {
    const int64_t at = (n * cout + o) * plane_size();
    return argmax != nullptr ? load_pooled(at, dst, ld) : load_full(at, dst, ld);
  }

 private:
  float load_full(int64_t at, float* dst, int64_t ld) const {
    float sum = 0.0f;
    const float* d = dy + at;
    for (int64_t r = 0; r < OH; ++r, d += OW) {
      float* out = dst != nullptr ? dst + r * ld : nullptr;
      if (relu_y != nullptr) {
        const float* y = relu_y + at + r * OW;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < OW; ++s) {
          const float g = relu_grad(y[s], d[s]);
          out[s] = g;
          sum += g;
        }
      } else if (out != nullptr) {
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < OW; ++s) {
          out[s] = d[s];
          sum += d[s];
        }
      } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < OW; ++s) sum += d[s];
      }
    }
    return sum;
  }

  // What max_pool2d_backward writes (dst = 0, then dst[argmax] += g), window by window in
  // vectors when the pooled rows are wide enough and every argmax is in its own window (a
  // pooled forward's always is), else by the scatter.
  float load_pooled(int64_t at, float* dst, int64_t ld) const {
    const int64_t POH = OH / 2, POW = OW / 2;
    const float* mask = relu_y != nullptr ? relu_y + at : nullptr;
    if (POW >= 4 && max_pool_plane_2x2_backward(dy + at, mask, argmax + at, POH, POW,
                                                static_cast<int32_t>(OW), dst, ld)) {
      for (int64_t h = 0; OW % 2 != 0 && h < 2 * POH; ++h) dst[h * ld + OW - 1] = 0.0f;
      if (OH % 2 != 0) std::memset(dst + (OH - 1) * ld, 0, sizeof(float) * OW);
    } else {
      scatter_pooled(at, dst, ld);
    }
    // Locals, not members, in the loops: with this->dy reloaded each step GCC keeps them scalar.
    const float* d = dy + at;
    const int64_t n = POH * POW;
    float sum = 0.0f;
    if (mask != nullptr) {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < n; ++i) sum += relu_grad(mask[i], d[i]);
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < n; ++i) sum += d[i];
    }
    return sum;
  }

  void scatter_pooled(int64_t at, float* dst, int64_t ld) const {
    for (int64_t r = 0; r < OH; ++r) std::memset(dst + r * ld, 0, sizeof(float) * OW);
    for (int64_t i = 0; i < (OH / 2) * (OW / 2); ++i) {
      const int64_t index = argmax[at + i];
      if (index < 0 || index >= OH * OW) {
        skipped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const float g = relu_y != nullptr ? relu_grad(relu_y[at + i], dy[at + i])
                                        : dy[at + i];
      dst[index / OW * ld + index % OW] += g;
    }
  }
};

// Per-thread dW and db partial sums of a backward call (used when passes run on several
// threads; db partials always, as doubles), added in thread order at the end.
struct GradPartials {
  float* dw;       // threads x dw_stride floats, or null (one thread: it adds into dw itself)
  double* db;      // threads x db_stride doubles
  int64_t dw_stride, db_stride, threads;

  static int64_t floats(const Passes& p, int64_t weights, int64_t cout) {
    return (p.threads > 1 ? p.threads * round_line(weights) : 0) + p.threads * round_line(2 * cout);
  }
  GradPartials(const Passes& p, int64_t weights, int64_t cout, float* scratch, bool want_db)
      : dw(p.threads > 1 ? scratch : nullptr),
        db(reinterpret_cast<double*>(scratch + (p.threads > 1 ? p.threads * round_line(weights) : 0))),
        dw_stride(round_line(weights)), db_stride(round_line(2 * cout) / 2), threads(p.threads) {
    if (dw != nullptr) std::memset(dw, 0, sizeof(float) * threads * dw_stride);
    if (want_db) std::memset(db, 0, sizeof(double) * threads * db_stride);
  }
  float* dw_for(int thread, float* dw_out) const { return dw ? dw + thread * dw_stride : dw_out; }
  double* db_for(int thread) const { return db + thread * db_stride; }
  // Partial sums added in thread order: deterministic for a given thread count.
  void finish(float* dw_out, int64_t weights, float* db_out, int64_t cout) const {
    for (int64_t t = 0; dw != nullptr && t < threads; ++t) axpy(1.0f, dw + t * dw_stride, dw_out, weights);
    if (db_out == nullptr) return;
    for (int64_t o = 0; o < cout; ++o) {
      double sum = 0.0;
      for (int64_t t = 0; t < threads; ++t) sum += db[t * db_stride + o];
      db_out[o] += static_cast<float>(sum);
    }
  }
};

// ---- im2col + GEMM -------------------------------------------------------------------------

// Scratch: per thread the columns (col_rows x pass), the (Cout x pass) GEMM output / g_cn and,
// when the passes run in parallel, the packing buffers of the pass's GEMMs (sgemm_serial), each
// region a whole number of 64-byte lines (threads never share a line); then, backward, the
// gradient partial sums.
struct Im2colPlan {
  Passes p;
  int64_t per_thread, gemm_at, partials, total;  // offsets/sizes in floats
  Im2colPlan(int64_t N, int64_t col_rows, int64_t cout, int64_t spatial, bool backward)
      : p(plan_passes(N, col_rows * spatial * 4)) {
    gemm_at = round_line((col_rows + cout) * p.images * spatial);
    int64_t gemm = 0;
    if (p.threads > 1) {
      for (const int64_t images : {p.images, N - (p.count - 1) * p.images}) {  // a full, the last
        const int64_t cols = images * spatial;
        if (backward) {  // dW += g_c col^T, dcol = W^T g_c
          gemm = std::max({gemm, sgemm_serial_scratch_floats(false, true, cout, col_rows, cols),
                           sgemm_serial_scratch_floats(true, false, col_rows, cols, cout)});
        } else {  // y_cn = W col
          gemm = std::max(gemm, sgemm_serial_scratch_floats(false, false, cout, cols, col_rows));
        }
      }
    }
    per_thread = gemm_at + round_line(gemm);
    partials = p.threads * per_thread;
    total = partials + (backward ? GradPartials::floats(p, cout * col_rows, cout) : 0);
  }

  // The pass's GEMM: alone on its thread, packing into the thread's scratch, when the passes run
  // in parallel; else over every thread, as the passes run in turn.
  void gemm(float* thread_scratch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
            int64_t ldc) const {
    if (p.threads > 1)
      sgemm_serial(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc,
                   thread_scratch + gemm_at);
    else
      sgemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  }
};

void im2col_forward(const float* x, const float* w, const OutputSink& sink, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Im2colPlan plan(N, col_rows, cout, spatial, false);
  const Passes& p = plan.p;
  run_passes(p, [&](int64_t i, int thread) {
    float* const thread_scratch = scratch + thread * plan.per_thread;
    float* col = thread_scratch;
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    float* y_pass = sink.y + n0 * cout * spatial;
    // (Cout, images, OH*OW) is already NCHW when either outer axis has length 1: then the
    // epilogue (if any) runs in place.
    const bool nchw = (images == 1 || cout == 1) && sink.argmax == nullptr;
    float* y_cn = nchw ? y_pass : col + col_rows * p.images * spatial;
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    plan.gemm(thread_scratch, false, false, cout, cols, col_rows, w, col_rows, col, cols, 0.0f,
              y_cn, cols);
    if (nchw && sink.b == nullptr && !sink.relu) return;
    for (int64_t o = 0; o < cout; ++o) {  // y[n, o] from y_cn[o, n]
      for (int64_t n = 0; n < images; ++n) {
        sink.store(n0 + n, o, y_cn + (o * images + n) * spatial, OW);
      }
    }
  });
}

void im2col_backward(const float* x, const float* w, const GradSource& grad, int64_t N,
                     int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                     int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW,
                     float* dw, float* db, float* dx, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Im2colPlan plan(N, col_rows, cout, spatial, true);
  const Passes& p = plan.p;
  const GradPartials partials(p, cout * col_rows, cout, scratch + plan.partials, db != nullptr);
  run_passes(p, [&](int64_t i, int thread) {
    float* const thread_scratch = scratch + thread * plan.per_thread;
    float* col = thread_scratch;
    float* dw_sum = partials.dw_for(thread, dw);
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    // g_c (Cout, images*OH*OW): dy itself when the layouts coincide and nothing is masked.
    const bool in_place = grad.in_place(images);
    float* g_cn = in_place ? nullptr : col + col_rows * p.images * spatial;
    if (g_cn != nullptr || db != nullptr) {
      double* db_sum = partials.db_for(thread);
      for (int64_t o = 0; o < cout; ++o) {  // g_cn[o, n, s] = g[n, o, s]
        double acc = 0.0;
        for (int64_t n = 0; n < images; ++n) {
          acc += grad.load(n0 + n, o, g_cn != nullptr ? g_cn + (o * images + n) * spatial : nullptr,
                           OW);
        }
        db_sum[o] += acc;
      }
    }
    const float* g_c = in_place ? grad.dy + n0 * cout * spatial : g_cn;
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    // dW += g_c col^T
    plan.gemm(thread_scratch, false, true, cout, col_rows, cols, g_c, cols, col, cols, 1.0f,
              dw_sum, col_rows);
    if (dx == nullptr) return;
    // dcol = W^T g_c into col's memory (col is used up), then dx = col2im(dcol).
    plan.gemm(thread_scratch, true, false, col_rows, cols, cout, w, col_rows, g_c, cols, 0.0f,
              col, cols);
    col2im(col, images, C, H, W, kh, kw, ph, pw, sh, sw, dx + n0 * image);
  });
  partials.finish(dw, cout * col_rows, db, cout);
}

// ---- direct (stride 1) ---------------------------------------------------------------------

using conv_direct::kGroupRows;
using conv_direct::kMaxLanes;
using conv_direct::padded_taps;

// The kernel family follows the SGEMM's choice (and so NNCORE_CPU_KERNEL / its forcing).
const conv_direct::Kernels& direct_kernels() {
  const char* name = sgemm_kernel_name();
  if (std::strcmp(name, "avx512") == 0 && conv_direct::kernels_avx512() != nullptr)
    return *conv_direct::kernels_avx512();
  if (std::strcmp(name, "avx2") == 0 && conv_direct::kernels_avx2() != nullptr)
    return *conv_direct::kernels_avx2();
  return *conv_direct::kernels_generic();
}

// Sizes (in floats) of the direct path's buffers, all rounded to whole 64-byte lines, and the
// scratch layout: shared packed weights and tap offsets, then per thread a pass of padded
// images (+ the forward's outputs or the backward's framed gradients and one dx image), then
// the backward's gradient partial sums.
struct DirectPlan {
  int64_t Hp, Wp, plane;  // padded input plane
  int64_t K;              // taps C*kh*kw
  int64_t Q;              // output positions per plane, OH*Wp (columns past OW are dropped)
  int64_t front;          // zeros before each gradient plane: (kh-1)*Wp + kw-1
  int64_t x_image;        // padded image + what the last vector of a run reads past it
  int64_t g_plane;        // front + plane + a vector of zeros
  int64_t out_groups, in_groups;  // Cout and C in groups of kGroupRows
  int64_t out_ld, dx_ld;  // floats per forward output row (Q) / padded dx row (plane), whole vectors
  Passes p;
  // scratch offsets: packed weights (forward: W in groups of Cout rows; backward: W flipped
  // to rows of C for dx), tap offsets (forward/dW; backward also the flipped ones for dx)
  int64_t weights, off, off_flip, per_thread_at, per_thread, partials, total;

  DirectPlan(int64_t N, int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
             int64_t ph, int64_t pw, int64_t OH, bool backward)
      : Hp(H + 2 * ph), Wp(W + 2 * pw), plane(Hp * Wp), K(C * kh * kw), Q(OH * Wp),
        front((kh - 1) * Wp + kw - 1) {
    // The last vector of a run at off[k] reads at most kw + kMaxLanes floats past C planes.
    x_image = round_line(C * plane + kw + kMaxLanes);
    g_plane = round_line(front + plane + kMaxLanes);
    out_groups = (cout + kGroupRows - 1) / kGroupRows;
    in_groups = (C + kGroupRows - 1) / kGroupRows;
    out_ld = round_up(Q, kMaxLanes);
    dx_ld = round_up(plane, kMaxLanes);
    const int64_t g_image = out_groups * kGroupRows * g_plane;
    if (backward) {
      p = plan_passes(N, 4 * (x_image + g_image));
    } else {  // one image at a time: its outputs are final, nothing to share
      const int64_t threads = available_threads();
      p = {1, N, N >= threads ? threads : 1};
    }
    const int64_t flip_taps = cout * kh * kw;
    weights = 0;
    off = weights + round_line(backward ? in_groups * kGroupRows * flip_taps
                                        : out_groups * kGroupRows * K);
    off_flip = off + round_line(padded_taps(K));
    per_thread_at = off_flip + (backward ? round_line(flip_taps) : 0);
    per_thread = backward ? p.images * (x_image + g_image) + in_groups * kGroupRows * dx_ld
                          : x_image + out_groups * kGroupRows * out_ld;
    partials = per_thread_at + p.threads * per_thread;
    total = partials + (backward ? GradPartials::floats(p, cout * K, cout) : 0);
  }
};

// Which algorithm a call uses. Direct needs stride 1, tap offsets that fit in int32 and (a
// conservative bound, not measured beyond) a padded image within 256 KiB. Where both apply,
// by a sweep of stride-1 shapes (N 64/256, C 1-64, H 8-32, k 3/5) on AVX-512:
//   forward: direct 0.98-1.56x im2col + GEMM, so always direct;
//   backward: direct computes the kw - 1 dropped columns of every padded row too, and im2col
//     copies rows of OW floats (since each run of rows copies with one choice of moves,
//     short rows cost it little). Measured (N 64/256, Cout 6-32, with and without dx):
//     up to 27 taps direct 1.06-1.37x; from 36 to 128 taps with OW <= 16 im2col 1.1-1.6x,
//     with OW 20-24 even (0.95-1.05), with OW 28 direct 1.09-1.44x; from 144 taps up
//     direct 0.6-1.1x;
//   backward, dx: direct computes C rows in groups of 6, so with C < 6 it wastes most of them
//     (C = 1: 0.45x); from C = 6 up it matched im2col.
// Forcing (tests): conv2d_force_algorithm.
enum class Phase { forward, backward, backward_dx };
std::atomic<int> g_forced_algorithm{-1};  // -1 auto, 0 im2col, 1 direct

bool direct_applies(int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                    int64_t ph, int64_t pw, int64_t sh, int64_t sw) {
  if (sh != 1 || sw != 1) return false;
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  // Bounds on the largest tap offsets (x_image, and Cout rounded up to groups x g_plane).
  const int64_t g_plane = (kh - 1) * Wp + kw + Hp * Wp + kMaxLanes + 32;
  const int64_t limit = std::numeric_limits<int32_t>::max() / 2;
  if (C * Hp * Wp + kw + kMaxLanes > limit || (cout + kGroupRows) * g_plane > limit) return false;
  return g_forced_algorithm.load(std::memory_order_relaxed) == 1 ||
         C * Hp * Wp * 4 <= (int64_t(256) << 10);
}

bool use_direct(int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                int64_t ph, int64_t pw, int64_t sh, int64_t sw, Phase phase) {
  if (!direct_applies(C, H, W, cout, kh, kw, ph, pw, sh, sw)) return false;
  const int forced = g_forced_algorithm.load(std::memory_order_relaxed);
  if (forced >= 0) return forced == 1;
  if (phase == Phase::forward) return true;
  const int64_t taps = C * kh * kw, OW = W + 2 * pw - kw + 1;
  return (taps <= 32 || (taps <= 128 && OW > 16)) &&
         (phase == Phase::backward || C >= kGroupRows);
}

// Copies image x (C x H x W) into the interior of its zero-framed planes (C x Hp x Wp). With
// kCheck, returns false when it holds an inf or NaN (an integer test of the exponent bits, in
// the copy's pass: the backward's; the forward's dropped columns are dropped after the sums).
template <bool kCheck>
bool pad_image(const float* x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw,
               int64_t Wp, int64_t plane, float* xpad) {
  uint32_t non_finite = 0;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t h = 0; h < H; ++h) {
      const float* src = x + (c * H + h) * W;
      float* dst = xpad + c * plane + (h + ph) * Wp + pw;
#pragma omp simd reduction(| : non_finite)
      for (int64_t i = 0; i < W; ++i) {
        dst[i] = src[i];
        if constexpr (kCheck) {
          uint32_t bits;
          std::memcpy(&bits, src + i, sizeof bits);
          non_finite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        }
      }
    }
  return non_finite == 0;
}

// off[k] = c*plane + i*Wp + j for tap k = (c*kh + i)*kw + j; zero past K (padded_taps).
void tap_offsets(const DirectPlan& d, int64_t kh, int64_t kw, int32_t* off) {
  for (int64_t k = 0; k < padded_taps(d.K); ++k) {
    const int64_t c = k / (kh * kw), i = k / kw % kh, j = k % kw;
    off[k] = k < d.K ? static_cast<int32_t>(c * d.plane + i * d.Wp + j) : 0;
  }
}

// wpack[(grp*taps + k)*kGroupRows + r] = at(grp*kGroupRows + r, k), zero past `count` rows.
template <typename At>
void pack_weight_groups(int64_t count, int64_t taps, At at, float* wpack) {
  const int64_t groups = (count + kGroupRows - 1) / kGroupRows;
  for (int64_t grp = 0; grp < groups; ++grp)
    for (int64_t k = 0; k < taps; ++k)
      for (int64_t r = 0; r < kGroupRows; ++r) {
        const int64_t row = grp * kGroupRows + r;
        wpack[(grp * taps + k) * kGroupRows + r] = row < count ? at(row, k) : 0.0f;
      }
}

// Sets the zero frames of a thread's buffers once per call, before its first pass: everything
// outside what each pass writes must read as zero.
void zero_once(std::vector<char>& zeroed, int thread, float* region, int64_t floats) {
  if (zeroed[thread]) return;
  std::memset(region, 0, sizeof(float) * floats);
  zeroed[thread] = 1;
}

void direct_forward(const float* x, const float* w, const OutputSink& sink, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t OH, float* scratch) {
  const conv_direct::Kernels& kern = direct_kernels();
  const DirectPlan d(N, C, H, W, cout, kh, kw, ph, pw, OH, false);
  float* wpack = scratch + d.weights;
  int32_t* off = reinterpret_cast<int32_t*>(scratch + d.off);
  const int64_t K = d.K;
  pack_weight_groups(cout, K, [&](int64_t o, int64_t k) { return w[o * K + k]; }, wpack);
  tap_offsets(d, kh, kw, off);
  std::vector<char> zeroed(d.p.threads, 0);
  run_passes(d.p, [&](int64_t n, int thread) {
    float* xpad = scratch + d.per_thread_at + thread * d.per_thread;
    float* out = xpad + d.x_image;
    zero_once(zeroed, thread, xpad, d.x_image);
    pad_image<false>(x + n * C * H * W, C, H, W, ph, pw, d.Wp, d.plane, xpad);
    for (int64_t grp = 0; grp < d.out_groups; ++grp) {
      kern.shifted_gemm(wpack + grp * K * kGroupRows, off, K, xpad, d.Q,
                        out + grp * kGroupRows * d.out_ld, d.out_ld);
    }
    for (int64_t o = 0; o < cout; ++o) sink.store(n, o, out + o * d.out_ld, d.Wp);
  });
}

// dW[o][k] += sum_n sum_{oh < OH, ow < OW} g[n][o][oh*Wp + ow] * xpad[n][off[k] + oh*Wp + ow]:
// shifted_dot's sums without the dropped columns and the lanes past Q (g = gpad + front).
void exact_weight_grad(const DirectPlan& d, const float* g, int64_t g_image, const float* xpad,
                       const int32_t* off, int64_t images, int64_t cout, int64_t OW,
                       float* dw_sum) {
  const int64_t OH = d.Q / d.Wp;
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t k = 0; k < d.K; ++k) {
      double sum = 0.0;
      for (int64_t n = 0; n < images; ++n) {
        const float* gn = g + n * g_image + o * d.g_plane;
        const float* xn = xpad + n * d.x_image + off[k];
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) sum += double(gn[oh * d.Wp + ow]) * xn[oh * d.Wp + ow];
      }
      dw_sum[o * d.K + k] += static_cast<float>(sum);
    }
}

// dx[c][h][w] = sum_{o,i,j} W[o][c][i][j] g[o][h+ph-i][w+pw-j] over the g entries that exist
// (g = one image's gpad + front): the flipped shifted GEMM without the frame's zeros.
void exact_input_grad(const DirectPlan& d, const float* w, const float* g, int64_t C, int64_t H,
                      int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph, int64_t pw,
                      int64_t OW, float* dx) {
  const int64_t OH = d.Q / d.Wp;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t col = 0; col < W; ++col) {
        double sum = 0.0;
        for (int64_t o = 0; o < cout; ++o)
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t oh = h + ph - i;
            if (oh < 0 || oh >= OH) continue;
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t ow = col + pw - j;
              if (ow < 0 || ow >= OW) continue;
              sum += double(w[((o * C + c) * kh + i) * kw + j]) *
                     g[o * d.g_plane + oh * d.Wp + ow];
            }
          }
        dx[(c * H + h) * W + col] = static_cast<float>(sum);
      }
}

void direct_backward(const float* x, const float* w, const GradSource& grad, int64_t N,
                     int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                     int64_t ph, int64_t pw, int64_t OH, float* dw, float* db, float* dx,
                     float* scratch) {
  const conv_direct::Kernels& kern = direct_kernels();
  const DirectPlan d(N, C, H, W, cout, kh, kw, ph, pw, OH, true);
  const Passes& p = d.p;
  const int64_t K = d.K, flip_taps = cout * kh * kw, taps = kh * kw;
  const int64_t g_image = d.out_groups * kGroupRows * d.g_plane, OW = W + 2 * pw - kw + 1;
  const bool w_finite =
      dx == nullptr || std::all_of(w, w + cout * C * taps, [](float v) { return std::isfinite(v); });
  float* wflip = scratch + d.weights;
  int32_t* off = reinterpret_cast<int32_t*>(scratch + d.off);
  int32_t* off_flip = reinterpret_cast<int32_t*>(scratch + d.off_flip);
  tap_offsets(d, kh, kw, off);
  if (dx != nullptr) {
    // dx rows are input channels c, taps (o, i, j): W[o][c][i][j] against gpad[o] shifted back.
    pack_weight_groups(C, flip_taps, [&](int64_t c, int64_t t) {
      return w[(t / taps * C + c) * taps + t % taps];
    }, wflip);
    for (int64_t t = 0; t < flip_taps; ++t) {
      const int64_t o = t / taps, i = t / kw % kh, j = t % kw;
      off_flip[t] = static_cast<int32_t>(o * d.g_plane + d.front - i * d.Wp - j);
    }
  }
  const GradPartials partials(p, cout * K, cout, scratch + d.partials, db != nullptr);
  std::vector<char> zeroed(p.threads, 0);
  run_passes(p, [&](int64_t i, int thread) {
    float* xpad = scratch + d.per_thread_at + thread * d.per_thread;
    float* gpad = xpad + p.images * d.x_image;
    float* dxpad = gpad + p.images * g_image;
    zero_once(zeroed, thread, xpad, p.images * (d.x_image + g_image));
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0);
    double* db_sum = partials.db_for(thread);
    bool x_finite = true;
    for (int64_t n = 0; n < images; ++n) {
      x_finite &= pad_image<true>(x + (n0 + n) * C * H * W, C, H, W, ph, pw, d.Wp, d.plane,
                            xpad + n * d.x_image);
      for (int64_t o = 0; o < cout; ++o) {
        const float sum = grad.load(n0 + n, o, gpad + n * g_image + o * d.g_plane + d.front, d.Wp);
        if (db != nullptr) db_sum[o] += sum;
      }
    }
    // dW += g . X^T, g rows in tiles of dot_rows (rows past Cout are zero planes).
    float* dw_sum = partials.dw_for(thread, dw);
    const int64_t nvec = (d.Q + kern.lanes - 1) / kern.lanes;
    if (!x_finite) {
      exact_weight_grad(d, gpad + d.front, g_image, xpad, off, images, cout, OW, dw_sum);
    } else {
      for (int64_t o = 0; o < cout; o += kern.dot_rows) {
        kern.shifted_dot(gpad + o * d.g_plane + d.front, d.g_plane, g_image, xpad, d.x_image,
                         off, K, nvec, images, dw_sum + o * K, K,
                         static_cast<int>(std::min<int64_t>(kern.dot_rows, cout - o)));
      }
    }
    if (dx == nullptr) return;
    for (int64_t n = 0; n < images; ++n) {
      if (!w_finite) {
        exact_input_grad(d, w, gpad + n * g_image + d.front, C, H, W, cout, kh, kw, ph, pw, OW,
                         dx + (n0 + n) * C * H * W);
        continue;
      }
      for (int64_t grp = 0; grp < d.in_groups; ++grp) {
        kern.shifted_gemm(wflip + grp * flip_taps * kGroupRows, off_flip, flip_taps,
                          gpad + n * g_image, d.plane, dxpad + grp * kGroupRows * d.dx_ld,
                          d.dx_ld);
      }
      float* dx_image = dx + (n0 + n) * C * H * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t h = 0; h < H; ++h)
          std::memcpy(dx_image + (c * H + h) * W, dxpad + c * d.dx_ld + (h + ph) * d.Wp + pw,
                      sizeof(float) * W);
    }
  });
  partials.finish(dw, cout * K, db, cout);
}

}  // namespace

void conv2d_force_algorithm(const char* name) {
  int value = -1;
  if (name != nullptr && std::strcmp(name, "im2col") == 0) value = 0;
  if (name != nullptr && std::strcmp(name, "direct") == 0) value = 1;
  g_forced_algorithm.store(value, std::memory_order_relaxed);
}

const char* conv2d_algorithm(int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh,
                             int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                             bool backward, bool need_dx) {
  const Phase phase = !backward ? Phase::forward : need_dx ? Phase::backward_dx : Phase::backward;
  return use_direct(C, H, W, cout, kh, kw, ph, pw, sh, sw, phase) ? "direct" : "im2col";
}

// Backward scratch covers both algorithms when the choice depends on whether dx is wanted.
// (The fused pool needs nothing more: its full-size planes are the passes' own buffers.)
int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t H, int64_t W, int64_t cout,
                              int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t sh,
                              int64_t sw, int64_t OH, int64_t OW, bool backward, bool) {
  auto direct = [&](Phase phase) { return use_direct(C, H, W, cout, kh, kw, ph, pw, sh, sw, phase); };
  const bool any_direct = backward ? direct(Phase::backward) || direct(Phase::backward_dx)
                                   : direct(Phase::forward);
  const bool any_im2col = backward ? !direct(Phase::backward) || !direct(Phase::backward_dx)
                                   : !direct(Phase::forward);
  int64_t floats = 0;
  if (any_direct) floats = DirectPlan(N, C, H, W, cout, kh, kw, ph, pw, OH, backward).total;
  if (any_im2col) floats = std::max(floats, Im2colPlan(N, C * kh * kw, cout, OH * OW, backward).total);
  return floats;
}

void conv2d_forward(const float* x, const float* w, const float* b, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, bool relu,
                    float* y, int32_t* pool_argmax, float* scratch) {
  const OutputSink sink{y, pool_argmax, b, relu, cout, OH, OW};
  if (use_direct(C, H, W, cout, kh, kw, ph, pw, sh, sw, Phase::forward)) {
    direct_forward(x, w, sink, N, C, H, W, cout, kh, kw, ph, pw, OH, scratch);
  } else {
    im2col_forward(x, w, sink, N, C, H, W, cout, kh, kw, ph, pw, sh, sw, OH, OW, scratch);
  }
}

int64_t conv2d_backward(const float* x, const float* w, const float* dy, const float* relu_y,
                        const int32_t* pool_argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                        int64_t cout, int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t sh,
                        int64_t sw, int64_t OH, int64_t OW, float* dw, float* db, float* dx,
                        float* scratch) {
  const GradSource grad{dy, relu_y, pool_argmax, cout, OH, OW};
  const Phase phase = dx != nullptr ? Phase::backward_dx : Phase::backward;
  if (use_direct(C, H, W, cout, kh, kw, ph, pw, sh, sw, phase)) {
    direct_backward(x, w, grad, N, C, H, W, cout, kh, kw, ph, pw, OH, dw, db, dx, scratch);
  } else {
    im2col_backward(x, w, grad, N, C, H, W, cout, kh, kw, ph, pw, sh, sw, OH, OW, dw, db, dx,
                    scratch);
  }
  return grad.skipped.load();
}

}  // namespace nncore::cpu
