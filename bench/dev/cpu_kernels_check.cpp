// Standalone check of the CPU kernels in src/cpu/ (all but sgemm) against plain double-precision
// reference loops written here, on awkward shapes; plus adjoint checks (im2col/col2im,
// avg pool), argmax routing, dropout statistics/determinism, and a few LeNet-sized timings.
//
// Build and run from the repository root:
//   g++ -O3 -fno-math-errno -std=c++17 -fopenmp -Isrc/include bench/dev/cpu_kernels_check.cpp
//       src/cpu/{bias,im2col,pool,activation,softmax,loss,optim,optim_avx2,elementwise}.cpp \
//       src/cpu/sgemm*.cpp -Isrc -o /tmp/cpu_check
//   /tmp/cpu_check            (exit status 0 when every check passes)
// im2col/col2im rows and the 2x2 max-pool rows are cloned for AVX-512, AVX2 and baseline and the
// CPU picks one; to check the others, add -DNNCORE_WIDEST_VECTORS= (baseline) or
// -DNNCORE_WIDEST_VECTORS= -mavx2.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "nncore/kernels.h"
#include "../../src/cpu/pool_2x2.h"
#include "format.h"
#include "nncore/philox.h"

namespace k = nncore::cpu;
using std::vector;

static int g_checks = 0, g_failures = 0;
static std::mt19937_64 g_rng(12345);

static void report(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL  %s\n", what.c_str());
  }
}

static vector<float> randn(int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}
static vector<float> rand_int_valued(int64_t n, int levels) {  // many exact ties
  std::uniform_int_distribution<int> d(0, levels - 1);
  vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(g_rng));
  return v;
}
static int64_t rand_int(int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng);
}

// max |got - want| / (atol + rtol*|want|) <= 1
static bool close(const float* got, const double* want, int64_t n, double rtol, double atol,
                  const std::string& what) {
  double worst = 0.0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = std::fabs(got[i] - want[i]);  // exact match (incl. inf == inf) is 0
    const double err = (got[i] == want[i]) ? 0.0 : diff / (atol + rtol * std::fabs(want[i]));
    if (!(err <= worst)) {  // catches NaN too
      worst = std::isnan(err) ? INFINITY : err;
      worst_i = i;
    }
  }
  const bool ok = worst <= 1.0;
  if (!ok)
    std::printf("      %s: worst at %lld got %.9g want %.9g\n", what.c_str(),
                static_cast<long long>(worst_i), got[worst_i], want[worst_i]);
  report(ok, what);
  return ok;
}
static bool close(const vector<float>& got, const vector<double>& want, double rtol, double atol,
                  const std::string& what) {
  if (got.size() != want.size()) {
    report(false, what + " (size)");
    return false;
  }
  return close(got.data(), want.data(), static_cast<int64_t>(got.size()), rtol, atol, what);
}


// ------------------------------------------------------------------ bias
static void check_bias() {
  const int64_t shapes[][3] = {{1, 1, 1},  {3, 7, 1},  {5, 300, 1}, {200, 800, 1}, {2, 3, 13},
                               {4, 5, 49}, {1, 1, 97}, {64, 16, 100}};
  for (auto& s : shapes) {
    const int64_t O = s[0], C = s[1], I = s[2], n = O * C * I;
    auto y = randn(n), b = randn(C), dy = randn(n), db = randn(C);
    vector<double> y_ref(n), db_ref(C);
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < I; ++i) {
          const int64_t idx = (o * C + c) * I + i;
          y_ref[idx] = static_cast<double>(y[idx]) + b[c];
        }
    for (int64_t c = 0; c < C; ++c) {
      double acc = db[c];
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i) acc += dy[(o * C + c) * I + i];
      db_ref[c] = acc;
    }
    const auto db0 = db;
    k::bias_add(y.data(), b.data(), O, C, I, false);
    k::bias_grad(dy.data(), nullptr, nullptr, db.data(), O, C, I);
    const std::string shape = fmt("(%lld,%lld,%lld)", (long long)O, (long long)C, (long long)I);
    close(y, y_ref, 1e-6, 1e-6, "bias_add " + shape);
    close(db, db_ref, 1e-5, 1e-5, "bias_grad " + shape);
    // With the ReLU's mask, bit for bit: g is relu_backward's (a NaN or inf masked away gives
    // 0), db is bias_grad of g; in place (g over dy) too.
    for (bool in_place : {false, true}) {
      auto relu_y = randn(n), dy_m = randn(n);
      for (int64_t k = 0; k < n; k += 5) relu_y[k] = k % 2 ? -0.0f : 0.0f;
      dy_m[0] = NAN;
      vector<float> g_want(n), db_want = db0, db_got = db0, g(n, NAN);
      k::relu_backward(relu_y.data(), dy_m.data(), g_want.data(), n);
      k::bias_grad(g_want.data(), nullptr, nullptr, db_want.data(), O, C, I);
      float* g_out = in_place ? dy_m.data() : g.data();
      k::bias_grad(dy_m.data(), relu_y.data(), g_out, db_got.data(), O, C, I);
      report(std::memcmp(g_out, g_want.data(), n * sizeof(float)) == 0 &&
                 std::memcmp(db_got.data(), db_want.data(), C * sizeof(float)) == 0,
             fmt("bias_grad+relu bitwise%s %s", in_place ? " in place" : "", shape.c_str()));
    }
    // With and without the ReLU, bit for bit against act(v + b), on special values too.
    for (bool relu : {false, true}) {
      auto v = randn(O * C * I);
      const float specials[] = {NAN, -0.0f, 0.0f, -INFINITY, INFINITY, -1e-30f};
      for (size_t k = 0; k < v.size(); k += 3) v[k] = specials[(k / 3) % 6];
      vector<float> want(v.size());
      for (int64_t idx = 0; idx < O * C * I; ++idx) {
        const float s = v[idx] + b[(idx / I) % C];
        want[idx] = relu && s < 0.0f ? 0.0f : s;  // NaN and -0 pass through
      }
      k::bias_add(v.data(), b.data(), O, C, I, relu);
      report(std::memcmp(v.data(), want.data(), v.size() * sizeof(float)) == 0,
             fmt("bias_add%s bitwise %s", relu ? "+relu" : "", shape.c_str()));
    }
  }
}

// ------------------------------------------------------------------ im2col / col2im
struct ConvCfg {
  int64_t N, C, H, W, kh, kw, ph, pw, sh, sw;
};

static void check_conv_cfg(const ConvCfg& g) {
  const int64_t OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1, OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  const int64_t rows = g.C * g.kh * g.kw, cols = g.N * OH * OW, nx = g.N * g.C * g.H * g.W;
  const std::string name =
      fmt("N%lld C%lld %lldx%lld k%lldx%lld p%lld,%lld s%lld,%lld", (long long)g.N,
          (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.kh, (long long)g.kw,
          (long long)g.ph, (long long)g.pw, (long long)g.sh, (long long)g.sw);
  auto x = randn(nx);
  vector<float> col(rows * cols, NAN);  // NaN: any entry im2col forgets to write shows up
  vector<double> col_ref(rows * cols, 0.0);
  auto c_in = randn(rows * cols);
  vector<double> x_ref(nx, 0.0);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t r = (c * g.kh + i) * g.kw + j;
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
              const int64_t ci = r * cols + (n * OH + oh) * OW + ow;
              if (h >= 0 && h < g.H && w >= 0 && w < g.W) {
                const int64_t xi = ((n * g.C + c) * g.H + h) * g.W + w;
                col_ref[ci] = x[xi];
                x_ref[xi] += c_in[ci];  // col2im reference as a scatter
              }
            }
      }
  k::im2col(x.data(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, col.data());
  close(col, col_ref, 0, 0, "im2col " + name);
  vector<float> x_back(nx, NAN);  // NaN: col2im must overwrite
  k::col2im(c_in.data(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, x_back.data());
  close(x_back, x_ref, 1e-5, 1e-5, "col2im " + name);
  // adjoint: <im2col(x), c> == <x, col2im(c)>
  double lhs = 0, rhs = 0, mag = 0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    lhs += static_cast<double>(col[i]) * c_in[i];
    mag += std::fabs(static_cast<double>(col[i]) * c_in[i]);
  }
  for (int64_t i = 0; i < nx; ++i) rhs += static_cast<double>(x[i]) * x_back[i];
  report(std::fabs(lhs - rhs) <= 1e-5 * (mag + 1), "im2col/col2im adjoint " + name);
}

static void check_random_conv_cfgs(int count, int64_t max_pad, int64_t max_stride);
static void check_im2col_large_padding();

static void check_im2col() {
  const ConvCfg fixed[] = {
      {1, 1, 1, 1, 1, 1, 0, 0, 1, 1},   // everything 1
      {2, 3, 5, 7, 3, 2, 0, 0, 1, 1},   // rectangular 3x2
      {1, 2, 6, 9, 1, 5, 0, 2, 1, 1},   // 1x5, pad w
      {3, 2, 7, 11, 3, 3, 1, 1, 2, 2},  // stride 2
      {2, 1, 13, 10, 3, 2, 2, 1, 3, 3}, // stride 3, pad 2
      {1, 1, 4, 4, 4, 4, 0, 0, 1, 1},   // kernel == input
      {2, 2, 3, 2, 5, 4, 1, 1, 1, 1},   // kernel == padded input
      {1, 3, 5, 5, 5, 5, 2, 2, 1, 1},   // "same" 5x5
      {2, 1, 5, 8, 2, 3, 1, 2, 2, 3},   // different strides per axis
      {1, 1, 2, 2, 3, 3, 2, 2, 1, 1},   // pad >= kernel/2: windows of pure padding
      {2, 1, 28, 28, 5, 5, 0, 0, 1, 1}, // LeNet conv1
      {3, 6, 14, 14, 5, 5, 0, 0, 1, 1}, // LeNet conv2
      {2, 2, 9, 11, 3, 3, 0, 0, 1, 1},  // rows of 9, 11, 12: a chunk of 8 and one exact move
      {2, 2, 9, 13, 3, 3, 0, 0, 1, 1},  //   or overlapping chunks
      {2, 2, 9, 14, 3, 3, 0, 0, 1, 1},
      {2, 1, 2, 70, 1, 66, 0, 1, 1, 2}, // kw > 64 (taps past the kernels' cached ranges)
      // large enough for the parallel paths (> 2^15 col entries):
      {13, 1, 28, 28, 5, 5, 2, 2, 1, 1},  // LeNet conv1 pass ("same" padding, few planes)
      {17, 6, 14, 14, 5, 5, 0, 0, 1, 1},  // LeNet conv2 pass
      {5, 1, 61, 50, 5, 3, 2, 1, 2, 3},   // few planes (row blocks), padded, strided
      {3, 2, 40, 9, 3, 1, 1, 0, 1, 1},    // kw 1: contiguous rows
  };
  for (const auto& g : fixed) check_conv_cfg(g);
  // col2im must not depend on the thread count (bitwise)
  const ConvCfg det[] = {{13, 1, 28, 28, 5, 5, 2, 2, 1, 1},
                         {17, 6, 14, 14, 5, 5, 0, 0, 1, 1},
                         {5, 1, 61, 50, 5, 3, 2, 1, 2, 3}};
  const int threads = omp_get_max_threads();
  for (const auto& g : det) {
    const int64_t OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1,
                  OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
    const auto c_in = randn(g.C * g.kh * g.kw * g.N * OH * OW);
    vector<float> a(g.N * g.C * g.H * g.W), b(a.size());
    omp_set_num_threads(1);
    k::col2im(c_in.data(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, a.data());
    omp_set_num_threads(std::max(threads, 2));
    k::col2im(c_in.data(), g.N, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, b.data());
    omp_set_num_threads(threads);
    report(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
           fmt("col2im deterministic across thread counts N%lld C%lld %lldx%lld",
               (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W));
  }
  check_random_conv_cfgs(200, 2, 3);
  check_im2col_large_padding();
}

// `count` random configurations (some skipped: kernel larger than the padded input), padding
// up to max_pad and strides up to max_stride.
static void check_random_conv_cfgs(int count, int64_t max_pad, int64_t max_stride) {
  for (int t = 0; t < count; ++t) {
    ConvCfg g;
    g.N = rand_int(1, 3), g.C = rand_int(1, 4), g.H = rand_int(1, 12), g.W = rand_int(1, 12);
    g.kh = rand_int(1, 5), g.kw = rand_int(1, 5);
    g.ph = rand_int(0, max_pad), g.pw = rand_int(0, max_pad);
    g.sh = rand_int(1, max_stride), g.sw = rand_int(1, max_stride);
    if (g.H + 2 * g.ph < g.kh || g.W + 2 * g.pw < g.kw) continue;
    check_conv_cfg(g);
  }
}

// Padding past the kernel: windows of pure padding around the image, and buffers that hold only
// the part of the padded plane that the windows on the image read.
static void check_im2col_large_padding() {
  const std::mt19937_64 saved = g_rng;  // restored at the end: the other checks keep their inputs
  const ConvCfg fixed[] = {
      {2, 2, 4, 5, 3, 3, 5, 7, 1, 1},
      {1, 1, 1, 1, 1, 1, 3, 3, 1, 1},
      {2, 1, 4, 4, 3, 3, 1000, 1000, 700, 700},
      {1, 2, 4, 4, 3, 3, 4000, 9, 4000, 2},  // every row of windows on padding only
      {2, 1, 6, 5, 2, 3, 4, 6, 5, 4},
      {40, 1, 30, 30, 3, 3, 40, 40, 30, 29},  // parallel
  };
  for (const auto& g : fixed) check_conv_cfg(g);
  check_random_conv_cfgs(100, 12, 8);
  g_rng = saved;
}

// ------------------------------------------------------------------ pooling
struct PoolCfg {
  int64_t planes, H, W, kh, kw, sh, sw, ph, pw;
};

static void check_pool_cfg(const PoolCfg& g, bool tie_inputs, bool nan_inputs = false) {
  const int64_t OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1, OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  const int64_t nx = g.planes * g.H * g.W, ny = g.planes * OH * OW;
  const std::string name =
      fmt("P%lld %lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld%s%s", (long long)g.planes,
          (long long)g.H, (long long)g.W, (long long)g.kh, (long long)g.kw, (long long)g.sh,
          (long long)g.sw, (long long)g.ph, (long long)g.pw, tie_inputs ? " ties" : "",
          nan_inputs ? " NaNs" : "");
  auto x = tie_inputs ? rand_int_valued(nx, 3) : randn(nx);
  for (auto& v : x) v -= 5.0f;  // all negative: a padding 0 must not win the max
  if (nan_inputs)  // 40%: many windows with several NaNs
    for (auto& v : x) v = rand_int(0, 9) < 4 ? NAN : v;
  auto dy = randn(ny);
  // max forward reference, PyTorch's: over the in-image taps in row-major window order, a tap
  // takes over when greater or NaN (the first maximum wins, or the last NaN)
  vector<double> y_ref(ny);
  vector<int32_t> idx_ref(ny);
  vector<double> avg_ref[2] = {vector<double>(ny), vector<double>(ny)};
  vector<double> davg_ref[2] = {vector<double>(nx, 0.0), vector<double>(nx, 0.0)};
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double best = -INFINITY, sum = 0;
        int32_t best_i = -1;
        int64_t taps = 0;
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
            if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
            const double v = x[(p * g.H + h) * g.W + w];
            ++taps;
            sum += v;
            if (best_i < 0 || v > best || std::isnan(v))
              best = v, best_i = static_cast<int32_t>(h * g.W + w);
          }
        const int64_t o = (p * OH + oh) * OW + ow;
        y_ref[o] = best, idx_ref[o] = best_i;
        for (int cip = 0; cip < 2; ++cip) {
          const double div = cip ? double(g.kh * g.kw) : double(taps);
          avg_ref[cip][o] = div > 0 ? sum / div : 0.0;
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
              if (h < 0 || h >= g.H || w < 0 || w >= g.W || div == 0) continue;
              davg_ref[cip][(p * g.H + h) * g.W + w] += dy[o] / div;
            }
        }
      }
  vector<float> y(ny, NAN);
  vector<int32_t> idx(ny, -7);
  k::max_pool2d_forward(x.data(), g.planes, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, OH, OW,
                        y.data(), idx.data());
  bool same_y = true;  // (NaN where the reference has NaN)
  for (int64_t o = 0; o < ny; ++o)
    same_y &= std::isnan(y_ref[o]) ? std::isnan(y[o]) : y[o] == y_ref[o];
  report(same_y, "max_pool2d_forward " + name);
  report(idx == idx_ref, "max_pool2d argmax (first max, last NaN) " + name);
  // backward: dx = scatter of dy to argmax; routes only to argmax positions
  vector<double> dx_ref(nx, 0.0);
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t o = 0; o < OH * OW; ++o)
      if (idx_ref[p * OH * OW + o] >= 0)
        dx_ref[p * g.H * g.W + idx_ref[p * OH * OW + o]] += dy[p * OH * OW + o];
  vector<float> dx(nx, NAN);
  k::max_pool2d_backward(dy.data(), idx.data(), g.planes, g.H, g.W, OH, OW, dx.data());
  close(dx, dx_ref, 1e-6, 1e-6, "max_pool2d_backward " + name);
  {
    vector<char> is_arg(nx, 0);
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t o = 0; o < OH * OW; ++o)
        if (idx[p * OH * OW + o] >= 0) is_arg[p * g.H * g.W + idx[p * OH * OW + o]] = 1;
    bool routed = true;
    for (int64_t i = 0; i < nx; ++i) routed &= is_arg[i] || dx[i] == 0.0f;
    report(routed, "max_pool2d_backward routes only to argmax " + name);
  }
  if (nan_inputs) return;  // (the average pool has no NaN rule to check)
  for (int cip = 0; cip < 2; ++cip) {
    vector<float> ya(ny, NAN), dxa(nx, NAN);
    k::avg_pool2d_forward(x.data(), g.planes, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, OH,
                          OW, cip == 1, ya.data());
    k::avg_pool2d_backward(dy.data(), g.planes, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, OH,
                           OW, cip == 1, dxa.data());
    const std::string tag = cip ? " include_pad " : " exclude_pad ";
    close(ya, avg_ref[cip], 1e-5, 1e-6, "avg_pool2d_forward" + tag + name);
    close(dxa, davg_ref[cip], 1e-5, 1e-6, "avg_pool2d_backward" + tag + name);
    double lhs = 0, rhs = 0, mag = 0;  // adjoint: <avg(x), dy> == <x, avg_backward(dy)>
    for (int64_t i = 0; i < ny; ++i) lhs += double(ya[i]) * dy[i], mag += std::fabs(ya[i] * dy[i]);
    for (int64_t i = 0; i < nx; ++i) rhs += double(x[i]) * dxa[i];
    report(std::fabs(lhs - rhs) <= 1e-5 * (mag + 1), "avg_pool2d adjoint" + tag + name);
  }
}

static void check_pool() {
  const PoolCfg fixed[] = {
      {1, 1, 1, 1, 1, 1, 1, 0, 0},   {3, 4, 4, 2, 2, 2, 2, 0, 0},   {2, 5, 7, 3, 2, 2, 1, 1, 1},
      {2, 7, 5, 1, 5, 1, 3, 0, 2},   {1, 6, 6, 6, 6, 1, 1, 0, 0},   {1, 4, 3, 6, 5, 1, 1, 1, 1},
      {4, 13, 11, 3, 3, 3, 2, 1, 1}, {6, 28, 28, 2, 2, 2, 2, 0, 0}, {2, 9, 9, 3, 3, 2, 2, 1, 1},
      {2, 2, 70, 1, 66, 1, 2, 0, 1},  // kw > 64 (taps past the cached ranges)
      {1, 3, 3, 3, 3, 1, 1, 2, 2},  // padding >= kernel/2 (not allowed by PyTorch; kernels cope)
  };
  for (const auto& g : fixed) {
    check_pool_cfg(g, false);
    check_pool_cfg(g, true);
    check_pool_cfg(g, true, true);
  }
  for (int t = 0; t < 150; ++t) {
    PoolCfg g;
    g.planes = rand_int(1, 4), g.H = rand_int(1, 10), g.W = rand_int(1, 10);
    g.kh = rand_int(1, 4), g.kw = rand_int(1, 4), g.sh = rand_int(1, 3), g.sw = rand_int(1, 3);
    g.ph = rand_int(0, g.kh / 2), g.pw = rand_int(0, g.kw / 2);
    if (g.H + 2 * g.ph < g.kh || g.W + 2 * g.pw < g.kw) continue;
    check_pool_cfg(g, t % 2 == 0, t % 3 == 0);
  }
  // NaN propagates through max pooling and its position is the argmax
  vector<float> x = {1, NAN, 3, 2};
  float y;
  int32_t a;
  k::max_pool2d_forward(x.data(), 1, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, &y, &a);
  report(std::isnan(y) && a == 1, "max_pool2d NaN propagates");
  // several NaNs: the last one is the argmax (PyTorch's rule)
  vector<float> xn = {NAN, NAN, 1, 2};
  k::max_pool2d_forward(xn.data(), 1, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, &y, &a);
  report(std::isnan(y) && a == 1, "max_pool2d last NaN wins");
  // all -inf window: argmax is the first in-image tap, not -1
  vector<float> xi = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  k::max_pool2d_forward(xi.data(), 1, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, &y, &a);
  report(y == -INFINITY && a == 0, "max_pool2d all -inf window");
}

// The fused convolution's pool (max_pool_plane_2x2 with a PoolInputActivation): the same bits as
// a(x) = x + bias, then max(., 0) when relu, stored and pooled with the first-maximum / last-NaN
// rule, at every row width (the vector chunks and the scalar rows) and a row pitch past 2*OW.
static void check_activated_pool_plane() {
  for (int64_t OW : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33}) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool relu = variant & 1, ties = variant & 2;
      const int64_t OH = 3, W = 2 * OW + (OW % 2), ld = W + 3, n = 2 * OH * ld;
      // ties: integers plus a small offset that the bias's rounding erases (tie after a)
      auto x = ties ? rand_int_valued(n, 3) : randn(n);
      if (ties)
        for (auto& v : x) v += static_cast<float>(rand_int(0, 1)) * 0x1p-20f;
      x[rand_int(0, n - 1)] = -0.0f;
      if (OW % 4 == 1)  // 30% NaN: windows with several
        for (auto& v : x) v = rand_int(0, 9) < 3 ? NAN : v;
      const k::PoolInputActivation act{ties ? 1024.0f : 0.25f, relu};
      vector<float> y(OH * OW, -7.0f), want(OH * OW);
      vector<int32_t> idx(OH * OW, -7), want_idx(OH * OW);
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t pos[4] = {2 * oh * ld + 2 * ow, 2 * oh * ld + 2 * ow + 1,
                                  (2 * oh + 1) * ld + 2 * ow, (2 * oh + 1) * ld + 2 * ow + 1};
          const int32_t at[4] = {int32_t(2 * oh * W + 2 * ow), int32_t(2 * oh * W + 2 * ow + 1),
                                 int32_t((2 * oh + 1) * W + 2 * ow),
                                 int32_t((2 * oh + 1) * W + 2 * ow + 1)};
          float best = 0.0f;
          for (int t = 0; t < 4; ++t) {
            const float sum = x[pos[t]] + act.bias;
            const float v = relu ? std::max(sum, 0.0f) : sum;
            if (t == 0 || v > best || std::isnan(v)) {
              best = v;
              want_idx[oh * OW + ow] = at[t];
            }
          }
          want[oh * OW + ow] = best;
        }
      k::max_pool_plane_2x2(x.data(), ld, OH, OW, static_cast<int32_t>(W), y.data(), idx.data(),
                            &act);
      const bool same_bits = std::memcmp(y.data(), want.data(), sizeof(float) * y.size()) == 0;
      report(same_bits && idx == want_idx,
             fmt("max_pool_plane_2x2 with bias %g relu %d, OW %lld%s", act.bias, int(relu),
                 (long long)OW, ties ? " ties" : ""));
    }
  }
}

// ------------------------------------------------------------------ activations
static void check_activations() {
  for (int64_t n : {1LL, 7LL, 1000LL, 100003LL}) {
    auto x = randn(n, 3.0f);
    if (n >= 7) x[0] = 1e4f, x[1] = -1e4f, x[2] = 0.0f, x[3] = 100.f, x[4] = -100.f, x[5] = -0.0f;
    auto dy = randn(n);
    const float slope = 0.01f;
    vector<double> relu(n), drelu(n), lrelu(n), dlrelu(n), sig(n), tnh(n), dsig(n), dtnh(n);
    vector<float> y(n), dx(n), ys(n), yt(n);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      relu[i] = v > 0 ? v : 0;
      drelu[i] = v > 0 ? dy[i] : 0;
      lrelu[i] = v > 0 ? v : slope * v;
      dlrelu[i] = v > 0 ? dy[i] : double(slope) * dy[i];
      sig[i] = 1.0 / (1.0 + std::exp(-v));
      tnh[i] = std::tanh(v);
    }
    const std::string nn = fmt(" n=%lld", (long long)n);
    k::relu_forward(x.data(), y.data(), n);
    close(y, relu, 0, 0, "relu_forward" + nn);
    k::relu_backward(x.data(), dy.data(), dx.data(), n);
    close(dx, drelu, 0, 0, "relu_backward" + nn);
    k::leaky_relu_forward(x.data(), y.data(), n, slope);
    close(y, lrelu, 1e-6, 0, "leaky_relu_forward" + nn);
    k::leaky_relu_backward(x.data(), dy.data(), dx.data(), n, slope);
    close(dx, dlrelu, 1e-6, 0, "leaky_relu_backward" + nn);
    k::sigmoid_forward(x.data(), ys.data(), n);
    close(ys, sig, 2e-6, 1e-30, "sigmoid_forward (relative, tails too)" + nn);
    k::tanh_forward(x.data(), yt.data(), n);
    close(yt, tnh, 2e-6, 1e-30, "tanh_forward" + nn);
    for (int64_t i = 0; i < n; ++i) {  // derivatives from the float forward outputs
      dsig[i] = double(dy[i]) * ys[i] * (1.0 - ys[i]);
      dtnh[i] = double(dy[i]) * (1.0 - double(yt[i]) * yt[i]);
    }
    k::sigmoid_backward(ys.data(), dy.data(), dx.data(), n);
    close(dx, dsig, 1e-5, 1e-7, "sigmoid_backward" + nn);
    k::tanh_backward(yt.data(), dy.data(), dx.data(), n);
    close(dx, dtnh, 1e-5, 1e-7, "tanh_backward" + nn);
    // in place (y aliases x, dx aliases dy)
    vector<float> xa = x;
    k::sigmoid_forward(xa.data(), xa.data(), n);
    close(xa, sig, 2e-6, 1e-30, "sigmoid_forward in place" + nn);
    xa = x;
    k::relu_forward(xa.data(), xa.data(), n);
    close(xa, relu, 0, 0, "relu_forward in place" + nn);
    vector<float> dya = dy;
    k::relu_backward(x.data(), dya.data(), dya.data(), n);
    close(dya, drelu, 0, 0, "relu_backward in place" + nn);
  }
  float nan_in = NAN, out;
  k::relu_forward(&nan_in, &out, 1);
  report(std::isnan(out), "relu(NaN) = NaN");
}

// ------------------------------------------------------------------ softmax + losses
static void ref_log_softmax(const vector<float>& x, int64_t R, int64_t C, vector<double>& ls) {
  ls.assign(R * C, 0);
  for (int64_t r = 0; r < R; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, double(x[r * C + c]));
    for (int64_t c = 0; c < C; ++c) s += std::exp(double(x[r * C + c]) - m);
    for (int64_t c = 0; c < C; ++c) ls[r * C + c] = double(x[r * C + c]) - m - std::log(s);
  }
}

static void check_softmax_and_losses() {
  const int64_t shapes[][2] = {{1, 1}, {1, 2}, {3, 7}, {64, 10}, {200, 10}, {5, 1000}, {1, 4099}};
  for (auto& s : shapes) {
    for (float mag : {1.0f, 30.0f, 1e4f}) {
      const int64_t R = s[0], C = s[1], n = R * C;
      auto x = randn(n, mag);
      auto dy = randn(n);
      const std::string name = fmt(" (%lld,%lld) |x|~%g", (long long)R, (long long)C, mag);
      vector<double> ls;
      ref_log_softmax(x, R, C, ls);
      vector<double> sm(n);
      for (int64_t i = 0; i < n; ++i) sm[i] = std::exp(ls[i]);
      vector<float> y(n), ly(n), dx(n);
      k::softmax_forward(x.data(), y.data(), R, C);
      close(y, sm, 1e-5, 1e-12, "softmax_forward" + name);
      // log-softmax entries are ~|x| in size; float x - max is exact to its ulp
      k::log_softmax_forward(x.data(), ly.data(), R, C);
      close(ly, ls, 1e-6, 1e-5, "log_softmax_forward" + name);
      vector<double> dsm(n), dls(n);
      for (int64_t r = 0; r < R; ++r) {
        double dot = 0, tot = 0;
        for (int64_t c = 0; c < C; ++c) dot += double(dy[r * C + c]) * y[r * C + c];
        for (int64_t c = 0; c < C; ++c) tot += dy[r * C + c];
        for (int64_t c = 0; c < C; ++c) {
          dsm[r * C + c] = double(y[r * C + c]) * (dy[r * C + c] - dot);
          dls[r * C + c] = dy[r * C + c] - std::exp(double(ly[r * C + c])) * tot;
        }
      }
      k::softmax_backward(y.data(), dy.data(), dx.data(), R, C);
      close(dx, dsm, 1e-4, 1e-6, "softmax_backward" + name);
      k::log_softmax_backward(ly.data(), dy.data(), dx.data(), R, C);
      close(dx, dls, 1e-4, 1e-6, "log_softmax_backward" + name);

      // cross-entropy with integer labels
      vector<int32_t> labels(R);
      for (auto& l : labels) l = static_cast<int32_t>(rand_int(0, C - 1));
      double loss_ref = 0;
      for (int64_t r = 0; r < R; ++r) loss_ref -= ls[r * C + labels[r]];
      loss_ref /= R;
      vector<float> probs(n, NAN), dlog(n, NAN);
      float loss = NAN;
      k::cross_entropy_labels_forward(x.data(), labels.data(), R, C, probs.data(), &loss);
      close(&loss, &loss_ref, 1, 1e-5, 1e-5, "cross_entropy_labels_forward loss" + name);
      close(probs, sm, 1e-5, 1e-12, "cross_entropy_labels_forward probs" + name);
      const float scale = 0.7f / R;
      vector<double> dref(n);
      for (int64_t i = 0; i < n; ++i)
        dref[i] = (double(probs[i]) - (labels[i / C] == i % C ? 1.0 : 0.0)) * scale;
      k::cross_entropy_labels_backward(probs.data(), labels.data(), R, C, scale, dlog.data());
      close(dlog, dref, 1e-6, 1e-9, "cross_entropy_labels_backward" + name);
      vector<float> inplace = probs;  // dlogits may alias probs
      k::cross_entropy_labels_backward(inplace.data(), labels.data(), R, C, scale,
                                       inplace.data());
      close(inplace, dref, 1e-6, 1e-9, "cross_entropy_labels_backward in place" + name);

      // cross-entropy with probability targets (rows of a softmax of noise; one row scaled)
      vector<float> t(n);
      {
        auto noise = randn(n);
        for (int64_t r = 0; r < R; ++r) {
          double ssum = 0;
          for (int64_t c = 0; c < C; ++c) ssum += std::exp(double(noise[r * C + c]));
          for (int64_t c = 0; c < C; ++c)
            t[r * C + c] = float(std::exp(double(noise[r * C + c])) / ssum * (r == 0 ? 1.5 : 1));
        }
      }
      loss_ref = 0;
      for (int64_t i = 0; i < n; ++i) loss_ref -= double(t[i]) * ls[i];
      loss_ref /= R;
      k::cross_entropy_probs_forward(x.data(), t.data(), R, C, probs.data(), &loss);
      close(&loss, &loss_ref, 1, 1e-5, 1e-5, "cross_entropy_probs_forward loss" + name);
      close(probs, sm, 1e-5, 1e-12, "cross_entropy_probs_forward probs" + name);
      for (int64_t r = 0; r < R; ++r) {
        double ts = 0;
        for (int64_t c = 0; c < C; ++c) ts += t[r * C + c];
        for (int64_t c = 0; c < C; ++c)
          dref[r * C + c] = (double(probs[r * C + c]) * ts - t[r * C + c]) * scale;
      }
      k::cross_entropy_probs_backward(probs.data(), t.data(), R, C, scale, dlog.data());
      close(dlog, dref, 1e-5, 1e-9, "cross_entropy_probs_backward" + name);
    }
  }
  // MSE
  for (int64_t n : {1LL, 13LL, 100003LL}) {
    auto p = randn(n), t = randn(n);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += (double(p[i]) - t[i]) * (double(p[i]) - t[i]);
    ref /= n;
    float loss;
    k::mse_forward(p.data(), t.data(), n, &loss);
    close(&loss, &ref, 1, 1e-6, 0, fmt("mse_forward n=%lld", (long long)n));
    const float scale = 1.0f / n;
    vector<float> d(n);
    vector<double> dref(n);
    for (int64_t i = 0; i < n; ++i) dref[i] = 2.0 * scale * (double(p[i]) - t[i]);
    k::mse_backward(p.data(), t.data(), n, scale, d.data());
    close(d, dref, 1e-6, 1e-30, fmt("mse_backward n=%lld", (long long)n));
  }
  // loss is independent of the thread count (fixed-block double accumulation)
  {
    const int64_t R = 1000, C = 37;
    auto x = randn(R * C, 5);
    vector<int32_t> labels(R);
    for (auto& l : labels) l = static_cast<int32_t>(rand_int(0, C - 1));
    vector<float> probs(R * C);
    float l1, l2;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    k::cross_entropy_labels_forward(x.data(), labels.data(), R, C, probs.data(), &l1);
    omp_set_num_threads(3);
    k::cross_entropy_labels_forward(x.data(), labels.data(), R, C, probs.data(), &l2);
    omp_set_num_threads(threads);
    report(l1 == l2, "cross_entropy loss bitwise equal for 1 and 3 threads");
  }
}

// ------------------------------------------------------------------ optimizers
static void check_optim() {
  const int64_t n = 70001;
  for (float momentum : {0.0f, 0.9f})
    for (float dampening : {0.0f, 0.1f})
      for (bool nesterov : {false, true})
        for (float wd : {0.0f, 1e-2f}) {
          if (momentum == 0.0f && (dampening != 0.0f || nesterov)) continue;
          const float lr = 0.05f;
          auto p = randn(n), p0 = p;
          vector<float> buf(n, NAN);
          vector<double> pd(p.begin(), p.end()), bd(n, 0.0);
          for (int step = 0; step < 4; ++step) {
            auto g = randn(n);
            for (int64_t i = 0; i < n; ++i) {  // torch.optim.SGD, in double
              double gi = g[i] + double(wd) * pd[i];
              if (momentum != 0) {
                bd[i] = step == 0 ? gi : momentum * bd[i] + (1.0 - dampening) * gi;
                gi = nesterov ? gi + momentum * bd[i] : bd[i];
              }
              pd[i] -= lr * gi;
            }
            float* params[] = {p.data()};  // (a list of one tensor)
            const float* grads[] = {g.data()};
            float* bufs[] = {buf.data()};
            k::sgd_step(params, grads, momentum != 0 ? bufs : nullptr, &n, 1, lr, momentum,
                        dampening, wd, nesterov, step == 0);
          }
          close(p, pd, 1e-5, 1e-6,
                fmt("sgd_step momentum=%g dampening=%g nesterov=%d wd=%g", momentum, dampening,
                    nesterov, wd));
        }
  for (float wd : {0.0f, 1e-2f}) {
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    auto p = randn(n);
    vector<float> m(n, 0.0f), v(n, 0.0f);
    vector<double> pd(p.begin(), p.end()), md(n, 0.0), vd(n, 0.0);
    for (int64_t step = 1; step <= 5; ++step) {
      auto g = randn(n);
      for (int64_t i = 0; i < n; ++i) {  // torch.optim.Adam (L2 added to the gradient)
        const double gi = g[i] + double(wd) * pd[i];
        md[i] = b1 * md[i] + (1.0 - b1) * gi;
        vd[i] = b2 * vd[i] + (1.0 - b2) * gi * gi;
        const double mh = md[i] / (1.0 - std::pow(double(b1), double(step)));
        const double vh = vd[i] / (1.0 - std::pow(double(b2), double(step)));
        pd[i] -= lr * mh / (std::sqrt(vh) + eps);
      }
      float* params[] = {p.data()}, *ms[] = {m.data()}, *vs[] = {v.data()};
      const float* grads[] = {g.data()};
      k::adam_step(params, grads, ms, vs, &n, 1, lr, b1, b2, eps, wd, step);
    }
    close(p, pd, 1e-6, 1e-6, fmt("adam_step 5 steps wd=%g", wd));
    close(m, md, 1e-4, 1e-7, fmt("adam_step m wd=%g", wd));
    close(v, vd, 1e-4, 1e-9, fmt("adam_step v wd=%g", wd));
  }
}

// ------------------------------------------------------------------ dropout + helpers
static void check_dropout_and_helpers() {
  for (int64_t n : {1LL, 5LL, 1003LL, 200001LL})
    for (float p : {0.0f, 0.25f, 0.5f, 1.0f})
      for (uint64_t offset : {0ULL, 7ULL, (1ULL << 33) + 3}) {
        const uint64_t seed = 0x1234567890abcdefULL;
        auto x = randn(n);
        vector<float> y(n), mask(n), y2(n), mask2(n);
        k::dropout_forward(x.data(), y.data(), mask.data(), n, p, seed, offset);
        k::dropout_forward(x.data(), y2.data(), mask2.data(), n, p, seed, offset);
        const std::string name = fmt(" n=%lld p=%g offset=%llu", (long long)n, p,
                                     (unsigned long long)offset);
        report(mask == mask2 && y == y2, "dropout deterministic" + name);
        bool same_as_philox = true, y_ok = true;
        int64_t kept = 0;
        const float keep_scale = nncore::dropout_keep_scale(p);
        for (int64_t i = 0; i < n; ++i) {
          const bool keep = nncore::philox_uniform(seed, offset, uint64_t(i)) >= p;
          same_as_philox &= mask[i] == (keep ? keep_scale : 0.0f);
          y_ok &= y[i] == x[i] * mask[i];
          kept += keep;
        }
        report(same_as_philox, "dropout mask == philox_uniform(seed, offset, i) >= p" + name);
        report(y_ok, "dropout y = x * mask" + name);
        if (n >= 1000) {
          const double frac = double(kept) / n, want = 1.0 - p;
          const double sd = std::sqrt(want * (1 - want) / n);
          report(std::fabs(frac - want) <= 5 * sd + 1e-12,
                 fmt("dropout kept fraction %.4f vs %.4f", frac, want) + name);
        }
      }
  {  // a different offset or seed gives a different mask
    const int64_t n = 4096;
    auto x = randn(n);
    vector<float> y(n), a(n), b(n), c(n);
    k::dropout_forward(x.data(), y.data(), a.data(), n, 0.5f, 1, 0);
    k::dropout_forward(x.data(), y.data(), b.data(), n, 0.5f, 1, n / 4);
    k::dropout_forward(x.data(), y.data(), c.data(), n, 0.5f, 2, 0);
    report(a != b && a != c, "dropout mask changes with offset and seed");
    // offset counts Philox blocks of 4 elements: offset n/4 continues the stream at element n
    vector<float> big(2 * n), ybig(2 * n), x2(2 * n, 1.0f);
    k::dropout_forward(x2.data(), ybig.data(), big.data(), 2 * n, 0.5f, 1, 0);
    report(std::equal(b.begin(), b.end(), big.begin() + n),
           "dropout offset = elements/4 continues the stream");
  }
  {
    const int64_t n = 100003;
    auto a = randn(n), b = randn(n), y0 = randn(n);
    vector<float> y(n);
    vector<double> ref(n);
    k::mul(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = double(a[i]) * b[i];
    close(y, ref, 1e-7, 0, "mul");
    k::fill(y.data(), 3.5f, n);
    report(std::all_of(y.begin(), y.end(), [](float v) { return v == 3.5f; }), "fill");
    y = y0;
    k::axpy(-0.3f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = double(y0[i]) + double(-0.3f) * a[i];
    close(y, ref, 1e-6, 1e-7, "axpy");
    y = y0;
    k::scale(y.data(), 0.37f, n);
    for (int64_t i = 0; i < n; ++i) ref[i] = double(y0[i]) * double(0.37f);
    close(y, ref, 1e-7, 0, "scale");
    y = y0;
    k::axpy(2.0f, y.data(), y.data(), n);  // y aliases x
    for (int64_t i = 0; i < n; ++i) ref[i] = 3.0 * y0[i];
    close(y, ref, 1e-7, 0, "axpy aliasing x == y");
  }
  for (int64_t row_floats : {1LL, 3LL, 784LL}) {
    const int64_t src_rows = 50, rows = 77;
    auto x = randn(src_rows * row_floats);
    vector<int32_t> index(rows);
    for (auto& i : index) i = static_cast<int32_t>(rand_int(0, src_rows - 1));
    vector<float> y(rows * row_floats);
    k::gather_rows(x.data(), index.data(), rows, src_rows, row_floats * 4, y.data());
    bool ok = true;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < row_floats; ++c)
        ok &= y[r * row_floats + c] == x[index[r] * row_floats + c];
    report(ok, fmt("gather_rows row_floats=%lld", (long long)row_floats));
    vector<int32_t> xi(src_rows * row_floats), yi(rows * row_floats);  // int32 payload
    for (size_t i = 0; i < xi.size(); ++i) xi[i] = int32_t(i * 7919);
    k::gather_rows(xi.data(), index.data(), rows, src_rows, row_floats * 4, yi.data());
    ok = true;
    for (int64_t r = 0; r < rows; ++r) ok &= yi[r * row_floats] == xi[index[r] * row_floats];
    report(ok, fmt("gather_rows int32 row_floats=%lld", (long long)row_floats));
  }
  for (int64_t cols : {1LL, 2LL, 10LL, 1001LL}) {
    const int64_t rows = 333;
    auto x = rand_int_valued(rows * cols, 4);  // ties: the first maximum must win
    vector<int32_t> out(rows);
    k::argmax_rows(x.data(), rows, cols, out.data());
    bool ok = true;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t best = 0;
      for (int64_t c = 1; c < cols; ++c)
        if (x[r * cols + c] > x[r * cols + best]) best = c;
      ok &= out[r] == best;
    }
    report(ok, fmt("argmax_rows first max cols=%lld", (long long)cols));
  }
  {
    vector<float> x = {1, 5, NAN, 9, NAN};
    int32_t out;
    k::argmax_rows(x.data(), 1, 5, &out);
    report(out == 2, "argmax_rows: first NaN wins (numpy/torch)");
  }
}

// ------------------------------------------------------------------ timings (informative)
// Minimum over repetitions: the build machine is shared, and the minimum is the least
// disturbed by other processes.
static double time_ms(const std::function<void()>& f, int reps = 30) {
  f();
  double best = INFINITY;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

static void timings() {
  std::printf("\ntimings, %d threads (LeNet-5 / MLP shapes, batch 200):\n", omp_get_max_threads());
  const int64_t N = 200;
  {
    auto x = randn(N * 6 * 14 * 14);
    vector<float> col(6 * 25 * N * 10 * 10), xb(x.size());
    std::printf("  im2col  conv2 (200,6,14,14) k5      %.3f ms\n",
                time_ms([&] { k::im2col(x.data(), N, 6, 14, 14, 5, 5, 0, 0, 1, 1, col.data()); }));
    std::printf("  col2im  conv2 (200,6,14,14) k5      %.3f ms\n",
                time_ms([&] { k::col2im(col.data(), N, 6, 14, 14, 5, 5, 0, 0, 1, 1, xb.data()); }));
    auto x1 = randn(N * 28 * 28);
    vector<float> col1(25 * N * 24 * 24);
    std::printf("  im2col  conv1 (200,1,28,28) k5      %.3f ms\n",
                time_ms([&] {
                  k::im2col(x1.data(), N, 1, 28, 28, 5, 5, 0, 0, 1, 1, col1.data());
                }));
  }
  {
    auto x = randn(N * 6 * 28 * 28);
    vector<float> y(N * 6 * 14 * 14), dx(x.size());
    vector<int32_t> idx(y.size());
    std::printf("  max_pool2d fwd (200,6,28,28) 2x2    %.3f ms\n", time_ms([&] {
                  k::max_pool2d_forward(x.data(), N * 6, 28, 28, 2, 2, 2, 2, 0, 0, 14, 14,
                                        y.data(), idx.data());
                }));
    std::printf("  max_pool2d bwd                      %.3f ms\n", time_ms([&] {
                  k::max_pool2d_backward(y.data(), idx.data(), N * 6, 28, 28, 14, 14, dx.data());
                }));
  }
  {
    auto x = randn(N * 800), dy = randn(N * 800), b = randn(800);
    vector<float> y(x.size()), db(800);
    std::printf("  relu fwd (200,800)                  %.3f ms\n",
                time_ms([&] { k::relu_forward(x.data(), y.data(), N * 800); }));
    std::printf("  sigmoid fwd (200,800)               %.3f ms\n",
                time_ms([&] { k::sigmoid_forward(x.data(), y.data(), N * 800); }));
    std::printf("  bias_add (200,800)                  %.3f ms\n",
                time_ms([&] { k::bias_add(y.data(), b.data(), N, 800, 1, false); }));
    std::printf("  bias_grad (200,800)                 %.3f ms\n",
                time_ms([&] { k::bias_grad(dy.data(), nullptr, nullptr, db.data(), N, 800, 1); }));
    vector<float> mask(x.size());
    std::printf("  dropout (200,800)                   %.3f ms\n", time_ms([&] {
                  k::dropout_forward(x.data(), y.data(), mask.data(), N * 800, 0.5f, 1, 0);
                }));
  }
  {
    const int64_t n = 784 * 800 + 800 + 800 * 10 + 10;
    auto p = randn(n), g = randn(n);
    vector<float> m(n), v(n), buf(n);
    float *params[] = {p.data()}, *bufs[] = {buf.data()}, *ms[] = {m.data()}, *vs[] = {v.data()};
    const float* grads[] = {g.data()};
    std::printf("  sgd momentum (MLP params %lld)    %.3f ms\n", (long long)n, time_ms([&] {
                  k::sgd_step(params, grads, bufs, &n, 1, 1e-3f, 0.9f, 0, 0, false, false);
                }));
    int64_t step = 1;
    std::printf("  adam (MLP params)                   %.3f ms\n", time_ms([&] {
                  k::adam_step(params, grads, ms, vs, &n, 1, 1e-3f, 0.9f, 0.999f,
                               1e-8f, 0, step++);
                }));
  }
}

int main(int argc, char** argv) {
  const int threads = omp_get_max_threads();  // honours OMP_NUM_THREADS
  check_bias();
  check_im2col();
  check_pool();
  check_activated_pool_plane();
  check_activations();
  check_softmax_and_losses();
  check_optim();
  check_dropout_and_helpers();
  // same checks again single-threaded: the serial paths (small sizes) and parallel paths
  // (large sizes) must agree with the reference either way
  omp_set_num_threads(1);
  check_im2col();
  check_pool();
  omp_set_num_threads(threads);
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  if (argc < 2 || std::strcmp(argv[1], "--no-timings") != 0) timings();
  return g_failures == 0 ? 0 : 1;
}
