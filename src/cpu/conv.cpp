// Convolution as im2col + GEMM in passes of images (Caffe's scheme, batched):
//   col = im2col(x_pass) (C*kh*kw, images*OH*OW);  y_cn = W col;  y_pass = swap(y_cn)
//   dW += dy_cn col^T;  dcol = W^T dy_cn;  dx_pass = col2im(dcol)
// A pass covers as many images as keep its column buffer (~1 MiB) in L2, so the GEMM reads what
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

constexpr int64_t kColumnBytes = int64_t(1) << 20;  // half of a 2 MiB L2

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

// Per-thread scratch: col (col_rows x pass) and the (Cout x pass) GEMM output / dy_cn.
int64_t per_thread_floats(const Passes& p, int64_t col_rows, int64_t cout, int64_t spatial) {
  return (col_rows + cout) * p.images * spatial;
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

}  // namespace

int64_t conv2d_scratch_floats(int64_t N, int64_t C, int64_t, int64_t, int64_t cout, int64_t kh,
                              int64_t kw, int64_t OH, int64_t OW, bool backward) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW;
  const Passes p = plan_passes(N, col_rows, spatial);
  const int64_t dw_partials = backward && p.threads > 1 ? p.threads * cout * col_rows : 0;
  return p.threads * per_thread_floats(p, col_rows, cout, spatial) + dw_partials;
}

void conv2d_forward(const float* x, const float* w, int64_t N, int64_t C, int64_t H, int64_t W,
                    int64_t cout, int64_t kh, int64_t kw, int64_t ph, int64_t pw, int64_t sh,
                    int64_t sw, int64_t OH, int64_t OW, float* y, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Passes p = plan_passes(N, col_rows, spatial);
  const int64_t stride = per_thread_floats(p, col_rows, cout, spatial);
  run_passes(p, [&](int64_t i, int thread) {
    float* col = scratch + thread * stride;
    float* y_cn = col + col_rows * p.images * spatial;
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    float* y_pass = y + n0 * cout * spatial;
    // (Cout, images, OH*OW) is already NCHW when either outer axis has length 1.
    const bool nchw = images == 1 || cout == 1;
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    sgemm(false, false, cout, cols, col_rows, 1.0f, w, col_rows, col, cols, 0.0f,
          nchw ? y_pass : y_cn, cols);
    if (!nchw) swap_outer_axes(y_cn, y_pass, cout, images, spatial);
  });
}

void conv2d_backward(const float* x, const float* w, const float* dy, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw, int64_t ph,
                     int64_t pw, int64_t sh, int64_t sw, int64_t OH, int64_t OW, float* dw,
                     float* dx, float* scratch) {
  const int64_t col_rows = C * kh * kw, spatial = OH * OW, image = C * H * W;
  const Passes p = plan_passes(N, col_rows, spatial);
  const int64_t stride = per_thread_floats(p, col_rows, cout, spatial);
  const int64_t weights = cout * col_rows;
  float* dw_partials = scratch + p.threads * stride;  // used when passes run on several threads
  if (p.threads > 1) std::memset(dw_partials, 0, sizeof(float) * p.threads * weights);
  run_passes(p, [&](int64_t i, int thread) {
    float* col = scratch + thread * stride;
    float* dy_cn = col + col_rows * p.images * spatial;
    float* dw_sum = p.threads > 1 ? dw_partials + thread * weights : dw;
    const int64_t n0 = i * p.images, images = std::min(p.images, N - n0), cols = images * spatial;
    const float* dy_pass = dy + n0 * cout * spatial;
    const bool nchw = images == 1 || cout == 1;
    if (!nchw) swap_outer_axes(dy_pass, dy_cn, images, cout, spatial);
    const float* dy_c = nchw ? dy_pass : dy_cn;  // (Cout, images*OH*OW)
    im2col(x + n0 * image, images, C, H, W, kh, kw, ph, pw, sh, sw, col);
    // dW += dy_c col^T
    sgemm(false, true, cout, col_rows, cols, 1.0f, dy_c, cols, col, cols, 1.0f, dw_sum, col_rows);
    if (dx == nullptr) return;
    // dcol = W^T dy_c into col's memory (col is used up), then dx = col2im(dcol).
    sgemm(true, false, col_rows, cols, cout, 1.0f, w, col_rows, dy_c, cols, 0.0f, col, cols);
    col2im(col, images, C, H, W, kh, kw, ph, pw, sh, sw, dx + n0 * image);
  });
  for (int64_t t = 0; t < (p.threads > 1 ? p.threads : 0); ++t) {
    axpy(1.0f, dw_partials + t * weights, dw, weights);
  }
}

}  // namespace nncore::cpu
