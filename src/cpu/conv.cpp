// Convolution as im2col + GEMM in passes of images (Caffe's scheme, batched):
//   col = im2col(x_pass) (C*kh*kw, images*OH*OW);  y_cn = W col;  y_pass = act(swap(y_cn) + b)
//   g_cn = swap(dy * act'(y));  db += sum(g);  dW += g_cn col^T;  dcol = W^T g_cn;
//   dx_pass = col2im(dcol)
// A pass covers as many images as keep its column buffer (~512 KiB) in L2, so the GEMM reads what
// im2col just wrote from cache. Passes are spread over the threads, each running the kernels
// single-threaded on its own pass and scratch, because the per-pass kernels are too small to
// split across threads well. dW is summed per thread, then the partial sums are added in thread
// order: deterministic for a given thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "nncore/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nncore::cpu {

namespace {

// A quarter of a 2 MiB L2: the pass's output and the GEMM's buffers share it. LeNet-5 at batch
// 256 ran conv2 fwd+bwd ~12% faster with 512 KiB than with 1 MiB (256-384 KiB: the same).
constexpr int64_t kColumnBytes = int64_t(512) << 10;

int max_threads() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

struct Passes {
  int64_t images;   // images per pass
  int64_t count;    // number of passes
  int64_t threads;  // threads that run passes (1: passes run in turn, kernels go parallel)
};

Passes plan_passes(int64_t N, int64_t col_rows, int64_t spatial) {
  const int64_t bytes_per_image = std::max<int64_t>(col_rows * spatial * 4, 1);
  const int64_t threads = max_threads();
  int64_t images = std::clamp<int64_t>(kColumnBytes / bytes_per_image, 1, std::max<int64_t>(N, 1));
  // Enough passes to keep every thread busy.
  if (threads > 1) images = std::min(images, std::max<int64_t>(1, (N + threads - 1) / threads));
  const int64_t count = (N + images - 1) / images;
  return {images, count, count >= threads ? threads : 1};
}

// Scratch layout, each region a whole number of 64-byte lines (threads never share a line):
//   per thread: col (col_rows x pass) and the (Cout x pass) GEMM output / g_cn;
//   backward, several threads: per-thread dW partial sums; backward: per-thread db sums
//   (doubles).
struct ScratchLayout {
  int64_t per_thread, dw_partials, db_partials, total;  // offsets/sizes in floats
};

constexpr int64_t round_line(int64_t floats) { return (floats + 15) / 16 * 16; }

ScratchLayout scratch_layout(const Passes& p, int64_t col_rows, int64_t cout, int64_t spatial,
                             bool backward) {
  ScratchLayout s{};
  s.per_thread = round_line((col_rows + cout) * p.images * spatial);
  s.dw_partials = p.threads * s.per_thread;
  const int64_t dw_floats = backward && p.threads > 1 ? p.threads * round_line(cout * col_rows) : 0;
  s.db_partials = s.dw_partials + dw_floats;
  const int64_t db_floats = backward ? p.threads * round_line(2 * cout) : 0;
  s.total = s.db_partials + db_floats;
  return s;
}

// Runs pass(index, thread) for every pass: spread over threads, or in turn.
template <typename PassFn>
void run_passes(const Passes& p, PassFn pass) {
  if (p.threads > 1) {
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(p.threads))
    for (int64_t i = 0; i < p.count; ++i) {
#ifdef _OPENMP
      pass(i, omp_get_thread_num());
#else
      pass(i, 0);
#endif
    }
  } else {
    for (int64_t i = 0; i < p.count; ++i) pass(i, 0);
  }
}

// The forward epilogue of one pass: y[n, o, s] = act(y_cn[o, n, s] + b[o]). With images == 1
// or cout == 1 the two layouts coincide and y_cn may be y itself (elementwise in place).
void store_output(const float* y_cn, float* y, int64_t cout, int64_t images, int64_t spatial,
                  const float* b, bool relu) {
  for (int64_t o = 0; o < cout; ++o) {
    const float bias = b != nullptr ? b[o] : 0.0f;
    for (int64_t n = 0; n < images; ++n) {
      const float* src = y_cn + (o * images + n) * spatial;
      float* dst = y + (n * cout + o) * spatial;
      if (relu) {
        for (int64_t s = 0; s < spatial; ++s) dst[s] = std::max(src[s] + bias, 0.0f);
      } else {
        for (int64_t s = 0; s < spatial; ++s) dst[s] = src[s] + bias;
      }
    }
  }
}

// The backward prologue of one pass: g = dy * [relu_y > 0] (relu_y null: g = dy) is written to
// g_cn[o, n, s] unless g_cn is null (then relu_y must be null: g is dy, read in place), and
// db_sum[o] += the sum of g over the pass's (n, o) planes when db_sum is not null (float
// within a plane, double across planes, as bias_grad).
void load_grad(const float* dy, const float* relu_y, float* g_cn, int64_t images, int64_t cout,
               int64_t spatial, double* db_sum) {
  for (int64_t o = 0; o < cout; ++o) {
    double acc = 0.0;
    for (int64_t n = 0; n < images; ++n) {
      const float* src = dy + (n * cout + o) * spatial;
      float* dst = g_cn != nullptr ? g_cn + (o * images + n) * spatial : nullptr;
      float plane = 0.0f;
      if (relu_y != nullptr) {
        const float* y = relu_y + (n * cout + o) * spatial;
#pragma omp simd reduction(+ : plane)
        for (int64_t s = 0; s < spatial; ++s) {
          const float v = src[s];  // loaded unconditionally so the select vectorizes
          const float g = y[s] > 0.0f ? v : 0.0f;
          dst[s] = g;
          plane += g;
        }
      } else if (dst != nullptr) {
#pragma omp simd reduction(+ : plane)
        for (int64_t s = 0; s < spatial; ++s) {
          dst[s] = src[s];
          plane += src[s];
        }
      } else {
#pragma omp simd reduction(+ : plane)
        for (int64_t s = 0; s < spatial; ++s) plane += src[s];
      }
      acc += plane;
    }
    if (db_sum != nullptr) db_sum[o] += acc;
  }
}

}  // namespace

int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t, int64_t, int64_t cout, int64_t kh,
                              int64_t kw, int64_t OH, int64_t OW, bool backward) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW;
  return scratch_layout(plan_passes(N, col_rows, spatial), col_rows, cout, spatial, backward).total;
}

void conv2d_forward(const float* x, const float* w, const float* b, int64_t N, int64_t C,
                    int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                    int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, bool relu,
                    float* y, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Passes p = plan_passes(N, col_rows, spatial);
  const ScratchLayout layout = scratch_layout(p, col_rows, cout, spatial, false);
  run_passes(p, [&](int64_t i, int thread) {
    float* col = scratch + thread * layout.per_thread;
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    float* y_pass = y + n0 * cout * spatial;
    // (Cout, images, OH*OW) is already NCHW when either outer axis has length 1.
    float* y_cn = images == 1 || cout == 1 ? y_pass : col + col_rows * p.images * spatial;
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    sgemm(false, false, cout, cols, col_rows, 1.0f, w, col_rows, col, cols, 0.0f, y_cn, cols);
    if (y_cn != y_pass || b != nullptr || relu) {
      store_output(y_cn, y_pass, cout, images, spatial, b, relu);
    }
  });
}

void conv2d_backward(const float* x, const float* w, const float* dy, const float* relu_y,
                     int64_t N, int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh,
                     int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t OH,
                     int64_t OW, float* dw, float* db, float* dx, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Passes p = plan_passes(N, col_rows, spatial);
  const ScratchLayout layout = scratch_layout(p, col_rows, cout, spatial, true);
  const int64_t weights = cout * col_rows, dw_stride = round_line(weights);
  const int64_t db_stride = round_line(2 * cout) / 2;  // in doubles
  float* dw_partials = scratch + layout.dw_partials;  // used when passes run on several threads
  double* db_partials = reinterpret_cast<double*>(scratch + layout.db_partials);
  if (p.threads > 1) std::memset(dw_partials, 0, sizeof(float) * p.threads * dw_stride);
  if (db != nullptr) std::memset(db_partials, 0, sizeof(double) * p.threads * db_stride);
  run_passes(p, [&](int64_t i, int thread) {
    float* col = scratch + thread * layout.per_thread;
    float* dw_sum = p.threads > 1 ? dw_partials + thread * dw_stride : dw;
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    const int64_t offset = n0 * cout * spatial;
    // g_c (Cout, images*OH*OW): dy itself when the layouts coincide and nothing is masked.
    const bool in_place = (images == 1 || cout == 1) && relu_y == nullptr;
    float* g_cn = in_place ? nullptr : col + col_rows * p.images * spatial;
    double* db_sum = db != nullptr ? db_partials + thread * db_stride : nullptr;
    if (g_cn != nullptr || db_sum != nullptr) {
      load_grad(dy + offset, relu_y != nullptr ? relu_y + offset : nullptr, g_cn, images, cout,
                spatial, db_sum);
    }
    const float* g_c = in_place ? dy + offset : g_cn;
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    // dW += g_c col^T
    sgemm(false, true, cout, col_rows, cols, 1.0f, g_c, cols, col, cols, 1.0f, dw_sum, col_rows);
    if (dx == nullptr) return;
    // dcol = W^T g_c into col's memory (col is used up), then dx = col2im(dcol).
    sgemm(true, false, col_rows, cols, cout, 1.0f, w, col_rows, g_c, cols, 0.0f, col, cols);
    col2im(col, images, C, H, W, kh, kw, ph, pw, sh, sw, dx + n0 * image);
  });
  // Partial sums added in thread order: deterministic for a given thread count.
  for (int64_t t = 0; t < (p.threads > 1 ? p.threads : 0); ++t) {
    axpy(1.0f, dw_partials + t * dw_stride, dw, weights);
  }
  if (db != nullptr) {
    for (int64_t o = 0; o < cout; ++o) {
      double sum = 0.0;
      for (int64_t t = 0; t < p.threads; ++t) sum += db_partials[t * db_stride + o];
      db[o] += static_cast<float>(sum);
    }
  }
}

}  // namespace nncore::cpu
