// Standalone check of the CPU convolution kernels (src/cpu/conv.cpp) with exact-size buffers, for
// running under AddressSanitizer: the direct path reads past each padded image and gradient
// plane by design (whole vectors), and this is where such reads would show. Every shape runs
// through both algorithms (im2col, direct) and every micro-kernel family, forward and backward,
// with and without the fused ReLU, the fused 2x2 max pool and dx; the two algorithms must agree.
//
// Build and run from the repository root:
//   g++ -O1 -g -std=gnu++17 -fopenmp -fsanitize=address,undefined -Isrc/include
//       bench/dev/cpu_conv_check.cpp src/cpu/conv*.cpp src/cpu/sgemm*.cpp src/cpu/im2col.cpp
//       src/cpu/pool.cpp src/cpu/elementwise.cpp -o /tmp/conv_check
//   /tmp/conv_check            (exit status 0 when every check passes)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../src/cpu/conv_direct.h"
#include "../../src/cpu/sgemm.h"
#include "nncore/kernels.h"

namespace {

struct Shape {
  int64_t N, C, H, W, cout, kh, kw, sh, sw, ph, pw;
};

struct Result {
  std::vector<float> y, dw, db, dx;
  std::vector<int32_t> argmax;
};

std::vector<float> random_floats(std::mt19937& gen, size_t n) {
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Scratch of n floats holding a NaN whose bits, read as an int32 offset, are 2143292333: what a
// kernel reads before writing shows up as NaN results or a wild (ASan-reported) access.
std::vector<float> poisoned_scratch(int64_t n) {
  const uint32_t bits = 0x7fc00badu;
  float poison;
  std::memcpy(&poison, &bits, sizeof poison);
  return std::vector<float>(static_cast<size_t>(n), poison);
}

// One forward + backward with buffers of exactly the sizes the kernels are told about.
Result run(const Shape& s, bool relu, bool pool, bool need_dx, const std::vector<float>& x,
           const std::vector<float>& w, const std::vector<float>& b,
           const std::vector<float>& dy_pool, const std::vector<float>& dy_full) {
  using namespace nncore::cpu;
  const int64_t OH = (s.H + 2 * s.ph - s.kh) / s.sh + 1, OW = (s.W + 2 * s.pw - s.kw) / s.sw + 1;
  const int64_t out = pool ? s.N * s.cout * (OH / 2) * (OW / 2) : s.N * s.cout * OH * OW;
  Result r;
  r.y.resize(out);
  r.argmax.resize(pool ? out : 0);
  std::vector<float> scratch = poisoned_scratch(conv2d_scratch_floats(
      s.N, s.C, s.H, s.W, s.cout, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, false, pool));
  conv2d_forward(x.data(), w.data(), b.data(), s.N, s.C, s.H, s.W, s.cout, s.kh, s.kw, s.ph, s.pw,
                 s.sh, s.sw, OH, OW, relu, r.y.data(), pool ? r.argmax.data() : nullptr,
                 scratch.data());
  r.dw.assign(w.size(), 0.0f);
  r.db.assign(b.size(), 0.0f);
  r.dx.resize(need_dx ? x.size() : 0);
  std::vector<float> dy(pool ? dy_pool.begin() : dy_full.begin(),
                        pool ? dy_pool.begin() + out : dy_full.begin() + out);
  std::vector<float> back = poisoned_scratch(conv2d_scratch_floats(
      s.N, s.C, s.H, s.W, s.cout, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, true, pool));
  const int64_t skipped = conv2d_backward(
      x.data(), w.data(), dy.data(), relu ? r.y.data() : nullptr,
      pool ? r.argmax.data() : nullptr, s.N, s.C, s.H, s.W, s.cout, s.kh, s.kw, s.ph, s.pw, s.sh,
      s.sw, OH, OW, r.dw.data(), r.db.data(), need_dx ? r.dx.data() : nullptr, back.data());
  if (skipped != 0) std::printf("  unexpected skipped argmax: %lld\n", (long long)skipped);
  return r;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, scale = 1e-3;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(double(b[i])));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}

}  // namespace

int main() {
  using namespace nncore::cpu;
  const Shape shapes[] = {
      {2, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2},   {3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0},
      {2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1},     {1, 4, 6, 6, 3, 6, 6, 1, 1, 0, 0},
      {2, 3, 3, 4, 2, 5, 6, 1, 1, 1, 1},     {2, 1, 4, 4, 7, 8, 8, 1, 1, 2, 2},
      {4, 5, 7, 7, 6, 1, 1, 1, 1, 0, 0},     {1, 6, 31, 17, 16, 5, 5, 1, 1, 2, 2},
      {2, 33, 6, 6, 17, 3, 3, 1, 1, 1, 1},   {2, 3, 9, 8, 4, 3, 3, 1, 1, 0, 0},
      {1, 2, 36, 35, 3, 3, 3, 1, 1, 1, 1},   {3, 2, 13, 11, 5, 3, 2, 2, 1, 1, 0},
      {23, 6, 14, 14, 5, 5, 5, 1, 1, 0, 0},  {29, 1, 28, 28, 3, 5, 5, 1, 1, 2, 2},
      {1, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0},     {2, 16, 10, 10, 13, 3, 3, 3, 3, 2, 2},
      {3, 2, 7, 5, 4, 2, 2, 1, 1, 0, 0},     {2, 1, 9, 9, 3, 4, 4, 1, 1, 1, 1},  // K = 8, 16
  };
  const char* kernels[] = {"avx512", "avx2", "generic"};
  std::mt19937 gen(7);
  int checks = 0, failures = 0;
  for (const Shape& s : shapes) {
    const auto x = random_floats(gen, s.N * s.C * s.H * s.W);
    const auto w = random_floats(gen, s.cout * s.C * s.kh * s.kw);
    const auto b = random_floats(gen, s.cout);
    const int64_t OH = (s.H + 2 * s.ph - s.kh) / s.sh + 1, OW = (s.W + 2 * s.pw - s.kw) / s.sw + 1;
    const auto dy_full = random_floats(gen, s.N * s.cout * OH * OW);
    const auto dy_pool = random_floats(gen, s.N * s.cout * (OH / 2) * (OW / 2));
    for (const char* kernel : kernels) {
      sgemm_force_kernel(kernel);
      if (std::string(sgemm_kernel_name()) != kernel) continue;  // not on this CPU
      for (int flags = 0; flags < 8; ++flags) {
        const bool relu = flags & 1, pool = flags & 2, need_dx = flags & 4;
        if (pool && (OH < 2 || OW < 2)) continue;
        conv2d_force_algorithm("im2col");
        const Result a = run(s, relu, pool, need_dx, x, w, b, dy_pool, dy_full);
        conv2d_force_algorithm("direct");
        const Result d = run(s, relu, pool, need_dx, x, w, b, dy_pool, dy_full);
        const double worst = std::max({max_rel_diff(a.y, d.y), max_rel_diff(a.dw, d.dw),
                                       max_rel_diff(a.db, d.db), max_rel_diff(a.dx, d.dx)});
        ++checks;
        if (worst > 1e-4 || a.argmax != d.argmax) {
          ++failures;
          std::printf("FAIL N%lld C%lld %lldx%lld O%lld k%lldx%lld s%lld p%lld %s relu=%d pool=%d "
                      "dx=%d: direct vs im2col %.3g\n",
                      (long long)s.N, (long long)s.C, (long long)s.H, (long long)s.W,
                      (long long)s.cout, (long long)s.kh, (long long)s.kw, (long long)s.sh,
                      (long long)s.ph, kernel, relu, pool, need_dx, worst);
        }
      }
    }
  }
  conv2d_force_algorithm(nullptr);
  sgemm_force_kernel(nullptr);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
