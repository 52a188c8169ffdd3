// CPU emulation harness for the CUDA backend: every kernel entry point of
// src/include/nncore/kernel_signatures.inc runs as nncore::cuda:: (cuda/*.cu rewritten by
// preprocess.py, executed by the emulator in include/cuda_runtime.h on host memory) and as
// nncore::cpu:: (src/cpu/*.cpp) on the same small, awkward inputs, and the outputs are compared:
// bitwise where both backends do the same float operations in the same order (copies, max pool,
// ReLU, argmax, dropout, ...), within a tolerance relative to the output's scale where the
// summation order or the libm differ (GEMM, reductions, softmax, losses, conv, sigmoid/tanh).
// Every case runs with the real grid caps (the grid covers the work), with tiny ones
// (emu::g_max_blocks = 2, transpose grid.y = 1: every grid-stride loop takes several turns) and
// with tiny caps plus 64-bit indexing (fits_int32 forced false: the int64_t instantiations).
// Outputs start as NaN (a missed element shows), padding and untouched regions hold sentinels,
// and buffers are allocated to their exact size (ASan catches out-of-bounds accesses).
//
// Build and run (ASan + UBSan, ~8 min on 2 cores):  bash bench/dev/cuda_emulate/run.sh
// With ThreadSanitizer instead (SANITIZER=thread), a check also fails when its kernels raced:
// two threads of a block touching one address, one writing, with no barrier between them.
// Exit status 1 when any check fails. It cannot measure speed or check GPU-only behaviour (see
// include/cuda_runtime.h): a pass here means the indexing, bounds, tiling, barriers and
// reductions are right on these shapes, not that the kernels are fast or race-free across
// blocks.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../../../cuda/layout.cuh"
#include "../../../cuda/tensor_cores.cuh"
#include "../../../src/cpu/sgemm.h"
#include "nncore/device.h"
#include "nncore/kernels.h"
#include "../format.h"

namespace cpu = nncore::cpu;
namespace gpu = nncore::cuda;
using V = std::vector<float>;
using VI = std::vector<int32_t>;

static const float kNaN = std::numeric_limits<float>::quiet_NaN();
static const float kInf = std::numeric_limits<float>::infinity();
static int g_checks = 0, g_failures = 0;
static std::mt19937 g_rng(20240607);
static std::string g_cap = "";  // which grid caps the current case runs with

// ---- inputs ------------------------------------------------------------------------------------
static V rnd(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  V v(n);
  for (float& x : v) x = u(g_rng);
  return v;
}
static V nans(size_t n) { return V(n, kNaN); }
static int irand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }

// ---- comparisons -------------------------------------------------------------------------------
struct Cmp {
  bool ok = true;
  std::string detail;
};
// Bitwise equal (any NaN matches any NaN).
static Cmp exact(const float* got, const float* want, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (std::memcmp(&got[i], &want[i], 4) != 0)
      return {false, fmt("[%zu] cuda %.9g cpu %.9g", i, got[i], want[i])};
  }
  return {};
}
static Cmp exact(const V& got, const V& want) { return exact(got.data(), want.data(), want.size()); }
static Cmp exact(const VI& got, const VI& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i]) return {false, fmt("[%zu] cuda %d cpu %d", i, got[i], want[i])};
  return {};
}
// |got - want| <= rel * scale, scale = max |want| over the finite entries; non-finite entries
// (NaN, +-inf) must match exactly.
static Cmp close(const float* got, const float* want, size_t n, double rel) {
  double scale = 0, worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::isfinite(want[i])) scale = std::max(scale, std::fabs(double(want[i])));
  for (size_t i = 0; i < n; ++i) {
    const bool gf = std::isfinite(got[i]), wf = std::isfinite(want[i]);
    if (!gf || !wf) {
      if ((std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i]) continue;
      return {false, fmt("[%zu] cuda %.9g cpu %.9g", i, got[i], want[i])};
    }
    const double e = std::fabs(double(got[i]) - double(want[i]));
    if (e > worst) worst = e, at = i;
  }
  if (worst > rel * std::max(scale, 1e-30))
    return {false, fmt("max err %.3g = %.3g x scale %.3g at [%zu] (cuda %.9g cpu %.9g)", worst,
                       worst / std::max(scale, 1e-30), scale, at, got[at], want[at])};
  return {};
}
static Cmp close(const V& got, const V& want, double rel) {
  return close(got.data(), want.data(), want.size(), rel);
}
// A rows x cols matrix at `offset` in a buffer with leading dimension ld: its values close to
// rel of their own scale, and the rest of the buffer (padding, which keeps its sentinel) bit for
// bit. (One close() over the whole buffer would take the sentinel for the scale.)
static Cmp close_in(const V& got, const V& want, int64_t offset, int64_t rows, int64_t cols,
                    int64_t ld, double rel) {
  V got_in, want_in, got_out = got, want_out = want;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(offset + r * ld + c);
      got_in.push_back(got[i]);
      want_in.push_back(want[i]);
      got_out[i] = want_out[i] = 0.f;
    }
  const Cmp outside = exact(got_out, want_out);
  if (!outside.ok) return {false, "outside the matrix: " + outside.detail};
  return close(got_in, want_in, rel);
}

// Under ThreadSanitizer: the data races it reported since the last check are this check's
// (its kernels ran since then); "" when there are none.
static long g_races_seen = 0;
static std::string new_races() {
  const long n = emu::g_race_reports.load() - g_races_seen;
  g_races_seen += n;
  if (n == 0) return "";
  return fmt("ThreadSanitizer reported %ld data race(s) (its report is on stderr)", n);
}

static void check(const std::string& what, Cmp c) {
  ++g_checks;
  if (const std::string races = new_races(); !races.empty())
    c = {false, c.ok ? races : races + "; " + c.detail};
  if (!c.ok) {
    ++g_failures;
    std::printf("  FAIL %s %s: %s\n", what.c_str(), g_cap.c_str(), c.detail.c_str());
  }
}

// Runs the CUDA side; a launch failure reported by the emulator (divergent barrier, bad shuffle,
// deadlock, invalid configuration) arrives as the library's std::runtime_error.
static bool run_cuda(const std::string& what, const std::function<void()>& f) {
  try {
    f();
    return true;
  } catch (const std::exception& e) {
    ++g_checks;
    ++g_failures;
    std::printf("  FAIL %s %s: %s\n", what.c_str(), g_cap.c_str(), e.what());
    return false;
  }
}

// The failure lines' label for the current case: its grid caps and, unless the threads run
// freely (always under TSan), how g_schedule serializes them.
static void set_cap_label(std::string caps) {
  if (!emu::kRaceDetector && emu::g_schedule != emu::kFree)
    caps += std::string(caps.empty() ? "" : ", ") +
            (emu::g_schedule == emu::kAscending ? "asc" : "desc");
  g_cap = caps.empty() ? "" : "(" + caps + ")";
}

// Each case three times: with the real grid caps, threads running freely; with tiny caps (grid-
// stride loops turn), threads taking turns in ascending order; with tiny caps, 64-bit index
// arithmetic (the kernels' int64_t instantiations, which real sizes reach only beyond 2^31
// elements) and turns in descending order (emu::Schedule: exposes missing barriers).
static void for_caps(const std::function<void()>& body) {
  for (int variant = 0; variant < 3; ++variant) {
    emu::g_max_blocks = variant ? 2 : 65535;
    emu::g_max_grid_y = variant ? 1 : 65535;
    emu::g_force_int64 = variant == 2;
    emu::g_schedule = emu::Schedule(variant);
    set_cap_label(variant == 0 ? "" : variant == 1 ? "cap 2" : "cap 2, int64");
    body();
  }
  g_cap = "";
  emu::g_max_blocks = emu::g_max_grid_y = 65535;
  emu::g_force_int64 = false;
  emu::g_schedule = emu::kFree;
}
// For the groups not run through for_caps: the schedule cycles from case to case.
static void cycle_schedule(int i) {
  emu::g_schedule = emu::Schedule(i % 3);
  set_cap_label("");
}

struct Group {
  const char* name;
  int checks0 = g_checks, failures0 = g_failures;
  long launches0 = emu::g_launches;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  explicit Group(const char* n) : name(n) {}
  ~Group() {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-30s %4d checks  %3d failures  %5ld launches  %6.2f s  %s\n", name,
                g_checks - checks0, g_failures - failures0, emu::g_launches - launches0, s,
                g_failures == failures0 ? "ok" : "FAILED");
    std::fflush(stdout);
  }
};

// ---- GEMM --------------------------------------------------------------------------------------
// One stored operand: rows x cols inside a buffer with leading dimension ld (padding = NaN, must
// never be used) starting `offset` floats in (offset 1 breaks 16-byte alignment).
struct Mat {
  V buf;
  int64_t ld, offset;
  float* p() { return buf.data() + offset; }
};
static Mat make_mat(int64_t rows, int64_t cols, int64_t ld, int64_t offset, float pad) {
  Mat m{V(size_t(std::max<int64_t>(1, offset + rows * ld)), pad), ld, offset};
  const V v = rnd(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m.buf[size_t(offset + r * ld + c)] = v[size_t(r * cols + c)];
  return m;
}

// One GEMM case's operands: op(A) (M x K) and op(B) (K x N) stored as ta / tb say, each row cols
// long in a row of ld_of(cols) floats, `off` floats into a NaN-padded buffer; C0 (M x N) inside
// 12345 padding, which must stay 12345, and all NaN when beta == 0 (C is write-only then: NaN
// must not leak into the result).
struct GemmCase {
  Mat A, B, C0;
};
static GemmCase make_gemm_case(int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                               const std::function<int64_t(int64_t)>& ld_of, int64_t off,
                               float beta) {
  const int64_t ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
  GemmCase g{make_mat(ra, ca, ld_of(ca), off, kNaN), make_mat(rb, cb, ld_of(cb), off, kNaN),
             make_mat(M, N, ld_of(N), off, 12345.f)};
  if (beta == 0.f)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < N; ++c) g.C0.buf[size_t(off + r * g.C0.ld + c)] = kNaN;
  return g;
}

static void test_sgemm() {
  Group g("sgemm");
  // emu::g_sm_count = 4: tiles(128) >= 4 -> 128x128 (L); tiles(64) >= 2 -> 64x64 (M); else
  // 32x32 (S). Shapes: 1s, K = 0, primes, partial tiles, exact multiples, skinny. With
  // emu::g_min_slice_k = 32, S and M launches of fewer than 4 tiles split K when K >= 64
  // ("+kN": N slices, the last one partial where K says so).
  struct S { int64_t M, N, K; const char* cfg; };
  const S shapes[] = {{1, 1, 1, "S"},      {1, 37, 5, "S"},      {37, 53, 29, "S"},
                      {64, 64, 64, "S"},   {33, 7, 0, "S"},      {5, 3, 100, "S+k3"},
                      {65, 33, 9, "M"},    {130, 70, 20, "M"},   {128, 128, 16, "M"},
                      {2, 300, 13, "M"},   {129, 257, 17, "L"},  {256, 256, 12, "L"},
                      {300, 140, 40, "L"}, {520, 3, 7, "L"},     {6, 25, 277, "S+k7"},
                      {33, 20, 97, "S+k3"}, {3, 1, 64, "S+k2"},  {70, 60, 75, "M+k2"},
                      {40, 9, 300, "S+k4"}};
  emu::g_min_slice_k = 32;
  // layout 0: tight; 1: ld + 3 (odd: scalar loads); 2: ld rounded up to 4 + 4 (float4 loads);
  // 3: as 2 but every pointer one float past 16-byte alignment (scalar loads).
  for (const S& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int layout = 0; layout < 4; ++layout)
          for (int ab = 0; ab < 2; ++ab) {
            if (layout != 2 && ab == 1 && (ta != tb)) continue;  // fewer runs; all paths still hit
            const int64_t M = s.M, N = s.N, K = s.K;
            auto ld_of = [&](int64_t cols) {
              return layout == 0 ? std::max<int64_t>(cols, 1)
                     : layout == 1 ? cols + 3
                                   : (cols + 3) / 4 * 4 + 4;
            };
            const int64_t off = layout == 3 ? 1 : 0;
            const float alpha = ab ? 0.75f : 1.f, beta = ab ? 0.5f : 0.f;
            auto [A, B, C0] = make_gemm_case(M, N, K, ta, tb, ld_of, off, beta);
            Mat Cc = C0, Cg = C0;
            cpu::sgemm(ta, tb, M, N, K, alpha, A.p(), A.ld, B.p(), B.ld, beta, Cc.p(), Cc.ld);
            static int case_no = 0;
            cycle_schedule(case_no++);
            const std::string what =
                fmt("sgemm[%s] %ldx%ldx%ld ta=%d tb=%d layout=%d beta=%g", s.cfg, long(M),
                    long(N), long(K), ta, tb, layout, beta);
            if (!run_cuda(what, [&] {
                  gpu::sgemm(ta, tb, M, N, K, alpha, A.p(), A.ld, B.p(), B.ld, beta, Cg.p(), Cg.ld);
                }))
              continue;
            check(what, close_in(Cg.buf, Cc.buf, off, M, N, Cg.ld, 1e-5));
          }
  // linear_forward: y (M x N) = act(x (M x K) w (N x K)^T + b), bias and ReLU in the GEMM's
  // epilogue (or, split, in the panel sum): the bits of sgemm then bias_add (relu_forward without
  // a bias), NaN and -0 included, on every configuration; and the CPU's result to rounding.
  for (const S& s : shapes)
    for (int offset = 0; offset < 2; ++offset)  // 1: x, w and y off 16-byte alignment
      for (int with_bias = 0; with_bias < 2; ++with_bias)
        for (int relu = 0; relu < 2; ++relu) {
          const int64_t M = s.M, N = s.N, K = s.K;
          Mat X = make_mat(M, K, std::max<int64_t>(K, 1), offset, kNaN);
          Mat Wt = make_mat(N, K, std::max<int64_t>(K, 1), offset, kNaN);
          if (M * K > 1) X.p()[1] = kNaN;  // row 0 of y is NaN
          V b = rnd(size_t(N));
          b[0] = -0.f;
          const float* bp = with_bias ? b.data() : nullptr;
          V yg(size_t(offset + M * N), 12345.f), ys = yg, yc = yg;
          static int case_no = 0;
          cycle_schedule(case_no++);
          const std::string what = fmt("linear_forward[%s] %ldx%ldx%ld offset=%d%s%s", s.cfg,
                                       long(M), long(N), long(K), offset,
                                       with_bias ? " bias" : "", relu ? " relu" : "");
          if (!run_cuda(what, [&] {
                gpu::linear_forward(X.p(), Wt.p(), bp, M, K, N, relu, yg.data() + offset);
              }))
            continue;
          gpu::sgemm(false, true, M, N, K, 1.f, X.p(), X.ld, Wt.p(), Wt.ld, 0.f,
                     ys.data() + offset, N);
          if (with_bias) gpu::bias_add(ys.data() + offset, bp, M, N, 1, relu);
          else if (relu) gpu::relu_forward(ys.data() + offset, ys.data() + offset, M * N);
          check(what + " vs sgemm + bias_add", exact(yg, ys));
          cpu::linear_forward(X.p(), Wt.p(), bp, M, K, N, relu, yc.data() + offset);
          check(what + " vs cpu", close_in(yg, yc, offset, M, N, N, 1e-5));
        }
  cycle_schedule(0);
  emu::g_min_slice_k = 256;
}

// TF32 (gpu::set_allow_tf32): the L-sized GEMMs run sgemm_tf32_kernel (mma.sync), which must equal
// the CPU's GEMM of the TF32-rounded operands to FP32 accumulation error (a kernel that ignored
// the flag, or rounded any other way, is ~1e-4 off); smaller ones keep the FP32 kernels, bit for
// bit. sgemm on every op(A)/op(B) and on aligned, odd-ld and misaligned operands; linear_forward
// with bias and ReLU in the epilogue.
static void round_to_tf32(Mat& m) {
  for (float& x : m.buf) x = __uint_as_float(emu::cvt_rna_tf32(x));
}
static void test_sgemm_tf32() {
  Group g("sgemm (TF32 tensor cores)");
  struct S { int64_t M, N, K; bool tf32; };
  // emu::g_sm_count = 4: tiles(128) >= 4 picks L, so TF32 for the first four.
  const S shapes[] = {{129, 257, 17, true}, {300, 140, 20, true}, {520, 3, 7, true},
                      {260, 260, 0, true},  {37, 53, 29, false}};
  gpu::set_allow_tf32(true);
  int case_no = 0;
  for (const S& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int layout = 0; layout < 3; ++layout) {  // tight; ld + 3; off 16-byte alignment
          const int64_t M = s.M, N = s.N, K = s.K;
          auto ld_of = [&](int64_t cols) {
            return std::max<int64_t>(cols, 1) + (layout == 1 ? 3 : 0);
          };
          const int64_t off = layout == 2 ? 1 : 0;
          const float alpha = layout == 0 ? 0.75f : 1.f, beta = layout == 0 ? 0.5f : 0.f;
          auto [A, B, C0] = make_gemm_case(M, N, K, ta, tb, ld_of, off, beta);
          Mat Cc = C0, Cg = C0;
          cycle_schedule(case_no++);
          const std::string what = fmt("sgemm tf32=%d %ldx%ldx%ld ta=%d tb=%d layout=%d", s.tf32,
                                       long(M), long(N), long(K), ta, tb, layout);
          if (!run_cuda(what, [&] {
                gpu::sgemm(ta, tb, M, N, K, alpha, A.p(), A.ld, B.p(), B.ld, beta, Cg.p(), Cg.ld);
              }))
            continue;
          if (s.tf32) {
            round_to_tf32(A);
            round_to_tf32(B);
            cpu::sgemm(ta, tb, M, N, K, alpha, A.p(), A.ld, B.p(), B.ld, beta, Cc.p(), Cc.ld);
            check(what + " vs cpu on TF32 operands",
                  close_in(Cg.buf, Cc.buf, off, M, N, Cg.ld, 1e-5));
          } else {
            gpu::set_allow_tf32(false);
            Mat Cf = C0;
            gpu::sgemm(ta, tb, M, N, K, alpha, A.p(), A.ld, B.p(), B.ld, beta, Cf.p(), Cf.ld);
            gpu::set_allow_tf32(true);
            check(what + " vs the FP32 kernel", exact(Cg.buf, Cf.buf));
          }
        }
  for (const S& s : shapes) {
    if (!s.tf32) continue;
    for (int relu = 0; relu < 2; ++relu) {
      const int64_t M = s.M, N = s.N, K = s.K;
      Mat X = make_mat(M, K, std::max<int64_t>(K, 1), 0, kNaN);
      Mat Wt = make_mat(N, K, std::max<int64_t>(K, 1), 0, kNaN);
      V b = rnd(size_t(N));
      V yg(size_t(M * N), 12345.f), ys = yg, yc = yg;
      cycle_schedule(case_no++);
      const std::string what = fmt("linear_forward tf32 %ldx%ldx%ld bias%s", long(M), long(N),
                                   long(K), relu ? " relu" : "");
      if (!run_cuda(what, [&] {
            gpu::linear_forward(X.p(), Wt.p(), b.data(), M, K, N, relu, yg.data());
          }))
        continue;
      gpu::sgemm(false, true, M, N, K, 1.f, X.p(), X.ld, Wt.p(), Wt.ld, 0.f, ys.data(), N);
      gpu::bias_add(ys.data(), b.data(), M, N, 1, relu);
      check(what + " vs sgemm + bias_add", exact(yg, ys));
      round_to_tf32(X);
      round_to_tf32(Wt);
      cpu::linear_forward(X.p(), Wt.p(), b.data(), M, K, N, relu, yc.data());
      check(what + " vs cpu on TF32 operands", close(yg, yc, 1e-5));
    }
  }
  gpu::set_allow_tf32(false);
  cycle_schedule(0);
}

// ---- bias and layout ----------------------------------------------------------------------------
static void test_bias() {
  Group g("bias_add / bias_grad");
  // The last two give bias_grad several chunks of outer rows per channel (emu::g_sm_count = 4):
  // 3 chunks of 137 rows (the last 26), and 2 of 41 (the last 23).
  const int64_t shapes[][3] = {{1, 1, 1},  {3, 5, 1},  {7, 33, 1},  {1, 300, 1}, {100, 33, 1},
                               {37, 70, 1}, {2, 3, 7}, {5, 4, 65}, {1, 3, 1000}, {4, 6, 100},
                               {300, 2, 30}, {64, 3, 100}};
  for_caps([&] {
    for (const auto& s : shapes) {
      const int64_t O = s[0], Ch = s[1], I = s[2], n = O * Ch * I;
      V y0 = rnd(size_t(n));
      const V b = rnd(size_t(Ch));
      y0[0] = kNaN;  // the activation keeps NaN and -0
      if (n > 1) y0[n - 1] = -0.f;
      for (int relu = 0; relu < 2; ++relu) {
        V yc = y0, yg = y0;
        cpu::bias_add(yc.data(), b.data(), O, Ch, I, relu);
        const std::string w =
            fmt("bias_add %ldx%ldx%ld%s", long(O), long(Ch), long(I), relu ? " relu" : "");
        if (run_cuda(w, [&] { gpu::bias_add(yg.data(), b.data(), O, Ch, I, relu); }))
          check(w, exact(yg, yc));
      }
      const V db0 = rnd(size_t(Ch));
      V dbc = db0, dbg = db0;
      cpu::bias_grad(y0.data(), nullptr, nullptr, dbc.data(), O, Ch, I);
      const std::string w2 = fmt("bias_grad %ldx%ldx%ld", long(O), long(Ch), long(I));
      if (run_cuda(w2, [&] { gpu::bias_grad(y0.data(), nullptr, nullptr, dbg.data(), O, Ch, I); }))
        check(w2, close(dbg, dbc, 1e-5));
      // With the ReLU's mask: g = (relu_y <= 0 ? 0 : dy) is written (an inf masked away gives 0,
      // a NaN relu_y passes dy) and summed; in place (g over dy) too.
      V relu_y = rnd(size_t(n)), dy = rnd(size_t(n));
      relu_y[0] = 0.f;
      dy[0] = kInf;
      if (n > 1) relu_y[1] = kNaN;
      V g_want = nans(size_t(n));
      cpu::relu_backward(relu_y.data(), dy.data(), g_want.data(), n);
      for (int in_place = 0; in_place < 2; ++in_place) {
        V dbm = db0, g = in_place ? dy : nans(size_t(n));
        const std::string w3 = fmt("bias_grad relu %ldx%ldx%ld%s", long(O), long(Ch), long(I),
                                   in_place ? " in place" : "");
        if (run_cuda(w3, [&] {
              gpu::bias_grad(in_place ? g.data() : dy.data(), relu_y.data(), g.data(), dbm.data(),
                             O, Ch, I);
            })) {
          check(w3 + " g", exact(g, g_want));
          V db_sep = db0;
          cpu::bias_grad(g_want.data(), nullptr, nullptr, db_sep.data(), O, Ch, I);
          check(w3 + " db", close(dbm, db_sep, 1e-5));
        }
      }
    }
  });
}

static void test_swap() {
  Group g("swap_outer_axes");
  const int64_t shapes[][3] = {{1, 1, 1},   {33, 65, 1}, {70, 5, 1}, {5, 70, 1}, {100, 40, 1},
                               {3, 5, 7},   {1, 4, 9},   {7, 3, 33}, {2, 1, 300}};
  for_caps([&] {
    for (const auto& s : shapes) {
      const int64_t A = s[0], B = s[1], I = s[2], n = A * B * I;
      const V x = rnd(size_t(n));
      V yc = nans(size_t(n)), yg = nans(size_t(n));
      for (int64_t a = 0; a < A; ++a)  // (CUDA only: the CPU convolution never swaps)
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < I; ++i)
            yc[size_t((b * A + a) * I + i)] = x[size_t((a * B + b) * I + i)];
      const std::string w = fmt("swap_outer_axes %ldx%ldx%ld", long(A), long(B), long(I));
      if (run_cuda(w, [&] { gpu::swap_outer_axes(x.data(), yg.data(), A, B, I); }))
        check(w, exact(yg, yc));
    }
  });
}

// ---- im2col / col2im -----------------------------------------------------------------------------
struct ConvShape {
  int64_t N, C, H, W, kh, kw, ph, pw, sh, sw;
  int64_t OH() const { return (H + 2 * ph - kh) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - kw) / sw + 1; }
  std::string str() const {
    return fmt("N%ld C%ld %ldx%ld k%ldx%ld p%ld,%ld s%ld,%ld", long(N), long(C), long(H), long(W),
               long(kh), long(kw), long(ph), long(pw), long(sh), long(sw));
  }
};
static const ConvShape kConvShapes[] = {
    {1, 1, 1, 1, 1, 1, 0, 0, 1, 1}, {2, 3, 7, 5, 3, 3, 1, 1, 1, 1}, {1, 2, 8, 9, 3, 2, 0, 1, 2, 3},
    {3, 1, 5, 5, 5, 5, 2, 2, 1, 1}, {2, 2, 6, 7, 2, 2, 0, 0, 2, 2}, {1, 3, 10, 4, 4, 1, 3, 0, 3, 1},
    {2, 1, 9, 11, 3, 5, 1, 2, 2, 1}, {1, 1, 20, 19, 3, 3, 1, 1, 1, 1}};

static void test_im2col() {
  Group g("im2col / col2im");
  for_caps([&] {
    for (const ConvShape& s : kConvShapes) {
      const int64_t rows = s.C * s.kh * s.kw, cols = s.N * s.OH() * s.OW();
      const V x = rnd(size_t(s.N * s.C * s.H * s.W));
      V cc = nans(size_t(rows * cols)), cg = cc;
      cpu::im2col(x.data(), s.N, s.C, s.H, s.W, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, cc.data());
      const std::string w = "im2col " + s.str();
      if (run_cuda(w, [&] {
            gpu::im2col(x.data(), s.N, s.C, s.H, s.W, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, cg.data());
          }))
        check(w, exact(cg, cc));
      const V col = rnd(size_t(rows * cols));
      V xc = nans(x.size()), xg = xc;
      cpu::col2im(col.data(), s.N, s.C, s.H, s.W, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, xc.data());
      const std::string w2 = "col2im " + s.str();
      if (run_cuda(w2, [&] {
            gpu::col2im(col.data(), s.N, s.C, s.H, s.W, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw,
                        xg.data());
          }))
        check(w2, close(xg, xc, 1e-6));
    }
  });
}

// ---- convolution -------------------------------------------------------------------------------
static void test_conv() {
  Group g("conv2d_forward / backward");
  struct CS { ConvShape s; int64_t cout; };
  const CS shapes[] = {{{1, 1, 5, 5, 3, 3, 0, 0, 1, 1}, 1},  {{2, 3, 7, 6, 3, 3, 1, 1, 1, 1}, 4},
                       {{3, 2, 9, 8, 5, 5, 2, 2, 1, 1}, 5},  {{2, 2, 8, 7, 3, 2, 0, 1, 2, 2}, 3},
                       {{4, 1, 6, 6, 2, 2, 0, 0, 1, 1}, 1},  {{1, 3, 12, 13, 3, 3, 1, 1, 1, 1}, 6}};
  for (const CS& cs : shapes) {
    const ConvShape& s = cs.s;
    const int64_t OH = s.OH(), OW = s.OW(), cout = cs.cout, taps = s.C * s.kh * s.kw;
    const V x = rnd(size_t(s.N * s.C * s.H * s.W)), w = rnd(size_t(cout * taps)),
            b = rnd(size_t(cout));
    for (int pooled = 0; pooled < 2; ++pooled)
      for (int relu = 0; relu < 2; ++relu)
        for (int bias = 0; bias < 2; ++bias) {
          if (pooled && (OH < 2 || OW < 2)) continue;
          const int64_t yh = pooled ? OH / 2 : OH, yw = pooled ? OW / 2 : OW;
          const size_t ny = size_t(s.N * cout * yh * yw);
          static int case_no = 0;
          cycle_schedule(case_no++);
          const std::string tag = fmt("%s cout%ld%s%s%s", s.str().c_str(), long(cout),
                                      pooled ? " pool" : "", relu ? " relu" : "", bias ? " bias" : "");
          // forward
          V yc = nans(ny), yg = nans(ny);
          VI ac(pooled ? ny : 0, -7), ag(pooled ? ny : 0, -7);
          V scc = nans(size_t(cpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw, s.ph,
                                                        s.pw, s.sh, s.sw, OH, OW, false, pooled)));
          V scg = nans(size_t(gpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw, s.ph,
                                                        s.pw, s.sh, s.sw, OH, OW, false, pooled)));
          cpu::conv2d_forward(x.data(), w.data(), bias ? b.data() : nullptr, s.N, s.C, s.H, s.W,
                              cout, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, relu, yc.data(),
                              pooled ? ac.data() : nullptr, scc.data());
          if (run_cuda("conv2d_forward " + tag, [&] {
                gpu::conv2d_forward(x.data(), w.data(), bias ? b.data() : nullptr, s.N, s.C, s.H,
                                    s.W, cout, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, relu,
                                    yg.data(), pooled ? ag.data() : nullptr, scg.data());
              })) {
            check("conv2d_forward y " + tag, close(yg, yc, 1e-5));
            if (pooled) check("conv2d_forward argmax " + tag, exact(ag, ac));
          }
          // backward: relu_y = the CPU forward's output, pool_argmax = the CPU's argmax
          for (int with_dx = 0; with_dx < 2; ++with_dx) {
            const V dy = rnd(ny);
            const V dw0 = rnd(size_t(cout * taps)), db0 = rnd(size_t(cout));
            V dwc = dw0, dwg = dw0, dbc = db0, dbg = db0;
            V dxc = nans(x.size()), dxg = nans(x.size());
            V sbc = nans(size_t(cpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw,
                                                          s.ph, s.pw, s.sh, s.sw, OH, OW, true,
                                                          pooled)));
            V sbg = nans(size_t(gpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw,
                                                          s.ph, s.pw, s.sh, s.sw, OH, OW, true,
                                                          pooled)));
            float* dbc_p = bias ? dbc.data() : nullptr;
            float* dbg_p = bias ? dbg.data() : nullptr;
            cpu::conv2d_backward(x.data(), w.data(), dy.data(), relu ? yc.data() : nullptr,
                                 pooled ? ac.data() : nullptr, s.N, s.C, s.H, s.W, cout, s.kh,
                                 s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, dwc.data(), dbc_p,
                                 with_dx ? dxc.data() : nullptr, sbc.data());
            const std::string bt = tag + (with_dx ? " dx" : "");
            if (!run_cuda("conv2d_backward " + bt, [&] {
                  gpu::conv2d_backward(x.data(), w.data(), dy.data(), relu ? yc.data() : nullptr,
                                       pooled ? ac.data() : nullptr, s.N, s.C, s.H, s.W, cout,
                                       s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, dwg.data(),
                                       dbg_p, with_dx ? dxg.data() : nullptr, sbg.data());
                }))
              continue;
            check("conv2d_backward dw " + bt, close(dwg, dwc, 1e-5));
            if (bias) check("conv2d_backward db " + bt, close(dbg, dbc, 1e-5));
            if (with_dx) check("conv2d_backward dx " + bt, close(dxg, dxc, 1e-5));
          }
        }
  }
  // The fused pool over outputs whose windows hold several NaNs (NaN inputs), forward: pooled
  // rows of 6 and 17 (the CPU's 4- and 16-float chunks).
  const CS nan_shapes[] = {{{2, 2, 9, 12, 3, 3, 1, 1, 1, 1}, 3},
                           {{1, 1, 6, 34, 1, 1, 0, 0, 1, 1}, 2}};
  for (const CS& cs : nan_shapes) {
    const ConvShape& s = cs.s;
    const int64_t OH = s.OH(), OW = s.OW(), cout = cs.cout;
    const size_t ny = size_t(s.N * cout * (OH / 2) * (OW / 2));
    V x = rnd(size_t(s.N * s.C * s.H * s.W));
    for (float& v : x) v = irand(0, 99) < (s.kh > 1 ? 5 : 30) ? kNaN : v;
    const V w = rnd(size_t(cout * s.C * s.kh * s.kw)), b = rnd(size_t(cout));
    for (int relu = 0; relu < 2; ++relu) {
      const std::string tag = fmt("%s cout%ld pool%s NaNs", s.str().c_str(), long(cout),
                                  relu ? " relu" : "");
      V yc = nans(ny), yg = nans(ny);
      VI ac(ny, -7), ag(ny, -7);
      V scc = nans(size_t(cpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw, s.ph,
                                                    s.pw, s.sh, s.sw, OH, OW, false, true)));
      V scg = nans(size_t(gpu::conv2d_scratch_floats(s.N, s.C, s.H, s.W, cout, s.kh, s.kw, s.ph,
                                                    s.pw, s.sh, s.sw, OH, OW, false, true)));
      cpu::conv2d_forward(x.data(), w.data(), b.data(), s.N, s.C, s.H, s.W, cout, s.kh, s.kw,
                          s.ph, s.pw, s.sh, s.sw, OH, OW, relu, yc.data(), ac.data(), scc.data());
      if (run_cuda("conv2d_forward " + tag, [&] {
            gpu::conv2d_forward(x.data(), w.data(), b.data(), s.N, s.C, s.H, s.W, cout, s.kh,
                                s.kw, s.ph, s.pw, s.sh, s.sw, OH, OW, relu, yg.data(), ag.data(),
                                scg.data());
          })) {
        check("conv2d_forward y " + tag, close(yg, yc, 1e-5));
        check("conv2d_forward argmax " + tag, exact(ag, ac));
      }
    }
  }
  cycle_schedule(0);
}

// ---- pooling -----------------------------------------------------------------------------------
struct PoolShape {
  int64_t planes, H, W, kh, kw, sh, sw, ph, pw;
  int64_t OH() const { return (H + 2 * ph - kh) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - kw) / sw + 1; }
  std::string str() const {
    return fmt("P%ld %ldx%ld k%ldx%ld s%ld,%ld p%ld,%ld", long(planes), long(H), long(W), long(kh),
               long(kw), long(sh), long(sw), long(ph), long(pw));
  }
};
static const PoolShape kPoolShapes[] = {
    {1, 1, 1, 1, 1, 1, 1, 0, 0},   {3, 5, 5, 2, 2, 2, 2, 0, 0},   {2, 7, 6, 3, 3, 1, 1, 1, 1},
    {2, 6, 9, 3, 2, 2, 3, 1, 1},   {4, 4, 4, 4, 4, 1, 1, 2, 2},   {1, 10, 3, 5, 1, 2, 1, 2, 0},
    {20, 9, 9, 2, 2, 2, 2, 0, 0},  {3, 17, 18, 2, 2, 2, 2, 0, 0}, {2, 16, 16, 2, 2, 2, 2, 0, 0}};

// Values on a coarse grid (many ties), with nan_percent% NaN and 3% -inf.
static V pool_input(size_t n, int nan_percent) {
  V x(n);
  for (float& v : x) {
    const int r = irand(0, 99);
    v = r < nan_percent ? kNaN : r < nan_percent + 3 ? -kInf : float(irand(-4, 4)) * 0.25f;
  }
  return x;
}

static void test_pool() {
  Group g("max/avg_pool2d");
  for_caps([&] {
    for (const PoolShape& s : kPoolShapes) {
      const int64_t OH = s.OH(), OW = s.OW(), nx = s.planes * s.H * s.W, ny = s.planes * OH * OW;
      VI ac(size_t(ny), -7), ag(size_t(ny), -7);
      for (int nan_percent : {3, 40}) {  // 40: windows with several NaNs (the last one wins)
        const V x = pool_input(size_t(nx), nan_percent);
        V yc = nans(size_t(ny)), yg = yc;
        cpu::max_pool2d_forward(x.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw,
                                OH, OW, yc.data(), ac.data());
        const std::string w = fmt("max_pool2d_forward %s NaN %d%%", s.str().c_str(), nan_percent);
        if (run_cuda(w, [&] {
              gpu::max_pool2d_forward(x.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph,
                                      s.pw, OH, OW, yg.data(), ag.data());
            })) {
          check(w + " y", exact(yg, yc));
          check(w + " argmax", exact(ag, ac));
        }
      }
      // backward from the CPU's argmax (overlapping windows: repeated targets), plus entries out
      // of range that both must skip.
      for (int corrupt = 0; corrupt < 2; ++corrupt) {
        VI am = ac;
        if (corrupt)
          for (size_t i = 0; i < am.size(); i += 3)
            am[i] = std::vector<int32_t>{-1, int32_t(s.H * s.W), -5, 1 << 30}[(i / 3) % 4];
        const V dy = rnd(size_t(ny));
        V dxc = nans(size_t(nx)), dxg = dxc;
        cpu::max_pool2d_backward(dy.data(), am.data(), s.planes, s.H, s.W, OH, OW, dxc.data());
        const std::string w2 = "max_pool2d_backward " + s.str() + (corrupt ? " bad-argmax" : "");
        if (run_cuda(w2, [&] {
              gpu::max_pool2d_backward(dy.data(), am.data(), s.planes, s.H, s.W, OH, OW, dxg.data());
            }))
          check(w2, exact(dxg, dxc));
      }
      for (int cip = 0; cip < 2; ++cip) {
        const V xa = rnd(size_t(nx));
        V ac2 = nans(size_t(ny)), ag2 = ac2;
        cpu::avg_pool2d_forward(xa.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw,
                                OH, OW, cip, ac2.data());
        const std::string w3 = "avg_pool2d_forward " + s.str() + (cip ? " cip" : "");
        if (run_cuda(w3, [&] {
              gpu::avg_pool2d_forward(xa.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph,
                                      s.pw, OH, OW, cip, ag2.data());
            }))
          check(w3, close(ag2, ac2, 1e-6));
        const V dy = rnd(size_t(ny));
        V dxc = nans(size_t(nx)), dxg = dxc;
        cpu::avg_pool2d_backward(dy.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw,
                                 OH, OW, cip, dxc.data());
        const std::string w4 = "avg_pool2d_backward " + s.str() + (cip ? " cip" : "");
        if (run_cuda(w4, [&] {
              gpu::avg_pool2d_backward(dy.data(), s.planes, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph,
                                       s.pw, OH, OW, cip, dxg.data());
            }))
          check(w4, close(dxg, dxc, 1e-6));
      }
    }
  });
}

// ---- activations -------------------------------------------------------------------------------
// Random values plus the special ones: +-0, +-inf, NaN, large, tiny.
static V act_input(size_t n) {
  V x = rnd(n, -6.f, 6.f);
  const float special[] = {0.f, -0.f, kInf, -kInf, kNaN, 100.f, -100.f, 1e-30f, -1e-30f, 20.f};
  for (size_t i = 0; i < n; i += 7) x[i] = special[(i / 7) % 10];
  return x;
}

static void test_activations() {
  Group g("activations");
  using Fwd = void (*)(const float*, float*, int64_t);
  using Bwd = void (*)(const float*, const float*, float*, int64_t);
  struct A { const char* name; Fwd fc, fg; Bwd bc, bg; double tol; };
  const A acts[] = {
      {"relu", cpu::relu_forward, gpu::relu_forward, cpu::relu_backward, gpu::relu_backward, 0},
      {"sigmoid", cpu::sigmoid_forward, gpu::sigmoid_forward, cpu::sigmoid_backward,
       gpu::sigmoid_backward, 2e-6},
      {"tanh", cpu::tanh_forward, gpu::tanh_forward, cpu::tanh_backward, gpu::tanh_backward, 2e-6}};
  for_caps([&] {
    for (int64_t n : {1, 31, 257, 3000}) {
      const V x = act_input(size_t(n)), dy = rnd(size_t(n));
      auto cmp = [](const V& a, const V& b, double tol) { return tol == 0 ? exact(a, b) : close(a, b, tol); };
      for (const A& a : acts) {
        for (int inplace = 0; inplace < 2; ++inplace) {
          V yc = inplace ? x : nans(size_t(n)), yg = yc;
          a.fc(x.data(), yc.data(), n);  // (in place: x's values, y's buffer)
          const std::string w = fmt("%s_forward n=%ld%s", a.name, long(n), inplace ? " in-place" : "");
          if (run_cuda(w, [&] { a.fg(inplace ? yg.data() : x.data(), yg.data(), n); }))
            check(w, cmp(yg, yc, a.tol));
          // backward takes x (relu) or y (sigmoid, tanh): feed the CPU forward's output for those
          const V& in = std::strcmp(a.name, "relu") == 0 ? x : yc;
          V dc = inplace ? dy : nans(size_t(n)), dg = dc;
          a.bc(in.data(), dy.data(), dc.data(), n);
          const std::string w2 = fmt("%s_backward n=%ld%s", a.name, long(n), inplace ? " in-place" : "");
          if (run_cuda(w2, [&] { a.bg(in.data(), inplace ? dg.data() : dy.data(), dg.data(), n); }))
            check(w2, cmp(dg, dc, a.tol));
        }
      }
      for (float slope : {0.01f, -0.5f}) {
        V yc = nans(size_t(n)), yg = yc;
        cpu::leaky_relu_forward(x.data(), yc.data(), n, slope);
        const std::string w = fmt("leaky_relu_forward n=%ld slope=%g", long(n), slope);
        if (run_cuda(w, [&] { gpu::leaky_relu_forward(x.data(), yg.data(), n, slope); }))
          check(w, exact(yg, yc));
        V dc = nans(size_t(n)), dg = dc;
        cpu::leaky_relu_backward(x.data(), dy.data(), dc.data(), n, slope);
        const std::string w2 = fmt("leaky_relu_backward n=%ld slope=%g", long(n), slope);
        if (run_cuda(w2, [&] { gpu::leaky_relu_backward(x.data(), dy.data(), dg.data(), n, slope); }))
          check(w2, exact(dg, dc));
      }
    }
  });
}

// ---- softmax -----------------------------------------------------------------------------------
// rows x cols, scaled, with rows holding -inf entries, constant values, a NaN, a +inf.
static V softmax_input(int64_t rows, int64_t cols) {
  V x = rnd(size_t(rows * cols), -5.f, 5.f);
  if (rows > 1)
    for (int64_t c = 0; c < cols; c += 3) x[size_t(cols + c)] = -kInf;
  if (rows > 2)
    for (int64_t c = 0; c < cols; ++c) x[size_t(2 * cols + c)] = 0.5f;
  if (rows > 3) x[size_t(3 * cols + cols / 2)] = kNaN;  // NaN propagates to the whole row
  if (rows > 4) x[size_t(4 * cols + cols - 1)] = kInf;
  return x;
}
static const int64_t kRowShapes[][2] = {{1, 1},   {3, 7},   {17, 32},  {40, 33},
                                         {5, 1024}, {3, 1025}, {2, 2500}, {1, 64}};

static void test_softmax() {
  Group g("softmax / log_softmax");
  using Fwd = void (*)(const float*, float*, int64_t, int64_t);
  using Bwd = void (*)(const float*, const float*, float*, int64_t, int64_t);
  struct S { const char* name; Fwd fc, fg; Bwd bc, bg; };
  const S ops[] = {{"softmax", cpu::softmax_forward, gpu::softmax_forward, cpu::softmax_backward,
                    gpu::softmax_backward},
                   {"log_softmax", cpu::log_softmax_forward, gpu::log_softmax_forward,
                    cpu::log_softmax_backward, gpu::log_softmax_backward}};
  for_caps([&] {
    for (const auto& rc : kRowShapes) {
      const int64_t R = rc[0], Cn = rc[1];
      const V x = softmax_input(R, Cn), dy = rnd(size_t(R * Cn));
      for (const S& o : ops)
        for (int inplace = 0; inplace < 2; ++inplace) {
          V yc = inplace ? x : nans(x.size()), yg = yc;
          o.fc(inplace ? yc.data() : x.data(), yc.data(), R, Cn);
          const std::string w = fmt("%s_forward %ldx%ld%s", o.name, long(R), long(Cn), inplace ? " in-place" : "");
          if (run_cuda(w, [&] { o.fg(inplace ? yg.data() : x.data(), yg.data(), R, Cn); }))
            check(w, close(yg, yc, 1e-5));
          V dc = inplace ? dy : nans(x.size()), dg = dc;
          o.bc(yc.data(), inplace ? dc.data() : dy.data(), dc.data(), R, Cn);
          const std::string w2 = fmt("%s_backward %ldx%ld%s", o.name, long(R), long(Cn), inplace ? " in-place" : "");
          if (run_cuda(w2, [&] { o.bg(yc.data(), inplace ? dg.data() : dy.data(), dg.data(), R, Cn); }))
            check(w2, close(dg, dc, 1e-5));
        }
    }
  });
}

// ---- losses ------------------------------------------------------------------------------------
static void test_losses() {
  Group g("losses");
  const int64_t shapes[][2] = {{0, 5}, {1, 1}, {3, 10}, {33, 7}, {70, 100}, {5, 40}, {2, 1500}};
  for_caps([&] {
    for (const auto& rc : shapes) {
      const int64_t R = rc[0], Cn = rc[1], n = R * Cn;
      const V logits = rnd(size_t(n), -4.f, 4.f);
      VI labels(static_cast<size_t>(R));
      for (int32_t& l : labels) l = irand(0, int(Cn) - 1);
      V target = rnd(size_t(n), 0.f, 1.f);
      for (int64_t r = 0; r < R; ++r) {
        float s = 0;
        for (int64_t c = 0; c < Cn; ++c) s += target[size_t(r * Cn + c)];
        for (int64_t c = 0; c < Cn; ++c) target[size_t(r * Cn + c)] /= s;
      }
      const std::string sh = fmt("%ldx%ld", long(R), long(Cn));
      for (int probs_target = 0; probs_target < 2; ++probs_target) {
        const char* name = probs_target ? "cross_entropy_probs" : "cross_entropy_labels";
        V pc = nans(size_t(n)), pg = pc, lc = {kNaN}, lg = {kNaN};
        if (probs_target)
          cpu::cross_entropy_probs_forward(logits.data(), target.data(), R, Cn, pc.data(), lc.data());
        else
          cpu::cross_entropy_labels_forward(logits.data(), labels.data(), R, Cn, pc.data(), lc.data());
        const std::string w = fmt("%s_forward %s", name, sh.c_str());
        if (run_cuda(w, [&] {
              if (probs_target)
                gpu::cross_entropy_probs_forward(logits.data(), target.data(), R, Cn, pg.data(), lg.data());
              else
                gpu::cross_entropy_labels_forward(logits.data(), labels.data(), R, Cn, pg.data(), lg.data());
            })) {
          check(w + " probs", close(pg, pc, 1e-5));
          check(w + " loss", close(lg, lc, 1e-5));
        }
        if (n == 0) continue;
        const float scale = 0.37f;
        V dc = nans(size_t(n)), dg = dc;
        if (probs_target)
          cpu::cross_entropy_probs_backward(pc.data(), target.data(), R, Cn, scale, dc.data());
        else
          cpu::cross_entropy_labels_backward(pc.data(), labels.data(), R, Cn, scale, dc.data());
        const std::string w2 = fmt("%s_backward %s", name, sh.c_str());
        if (run_cuda(w2, [&] {
              if (probs_target)
                gpu::cross_entropy_probs_backward(pc.data(), target.data(), R, Cn, scale, dg.data());
              else
                gpu::cross_entropy_labels_backward(pc.data(), labels.data(), R, Cn, scale, dg.data());
            }))
          check(w2, probs_target ? close(dg, dc, 1e-5) : exact(dg, dc));
      }
      // A label outside [0, cols): the CUDA kernel documents a NaN loss (CPU: dispatch checks).
      if (R > 0) {
        VI bad = labels;
        bad[size_t(R - 1)] = int32_t(Cn);
        V pg = nans(size_t(n)), lg = {0.f};
        const std::string w = "cross_entropy_labels_forward bad label gives NaN " + sh;
        if (run_cuda(w, [&] {
              gpu::cross_entropy_labels_forward(logits.data(), bad.data(), R, Cn, pg.data(), lg.data());
            }))
          check(w, std::isnan(lg[0]) ? Cmp{} : Cmp{false, fmt("loss %g", lg[0])});
      }
    }
    for (int64_t n : {0, 1, 5, 1000, 3001}) {
      const V p = rnd(size_t(n)), t = rnd(size_t(n));
      V lc = {kNaN}, lg = {kNaN};
      cpu::mse_forward(p.data(), t.data(), n, lc.data());
      const std::string w = fmt("mse_forward n=%ld", long(n));
      if (run_cuda(w, [&] { gpu::mse_forward(p.data(), t.data(), n, lg.data()); }))
        check(w, close(lg, lc, 1e-5));
      V dc = nans(size_t(n)), dg = dc;
      cpu::mse_backward(p.data(), t.data(), n, 0.3f, dc.data());
      const std::string w2 = fmt("mse_backward n=%ld", long(n));
      if (run_cuda(w2, [&] { gpu::mse_backward(p.data(), t.data(), n, 0.3f, dg.data()); }))
        check(w2, exact(dg, dc));
    }
  });
}

// ---- optimizers (and fill_tensors): one call over a list of tensors ----------------------------
// The tensor lists: a few tensors, and 38 of them, more than one launch takes (32), with sizes
// around the launch's chunk of 1024 floats, empty tensors, and small ones that share a chunk.
static std::vector<std::vector<int64_t>> tensor_list_cases() {
  std::vector<int64_t> many = {0, 1, 1023, 1024, 1025, 2049, 0};
  for (int64_t k = 1; k <= 31; ++k) many.push_back(k * 3);
  return {{1}, {300, 1000, 7}, many};
}
static std::vector<V> rnd_list(const std::vector<int64_t>& sizes, float lo = -1.f, float hi = 1.f) {
  std::vector<V> list;
  for (int64_t n : sizes) list.push_back(rnd(size_t(n), lo, hi));
  return list;
}
static std::vector<float*> ptrs(std::vector<V>& list) {
  std::vector<float*> p;
  for (V& v : list) p.push_back(v.data());
  return p;
}
static std::vector<const float*> cptrs(const std::vector<V>& list) {
  std::vector<const float*> p;
  for (const V& v : list) p.push_back(v.data());
  return p;
}
// One check per list: the first tensor that differs is reported.
static void check_list(const std::string& what, const std::vector<V>& got,
                       const std::vector<V>& want, double rel = -1) {
  Cmp c;
  for (size_t t = 0; t < want.size() && c.ok; ++t) {
    c = rel < 0 ? exact(got[t], want[t]) : close(got[t], want[t], rel);
    if (!c.ok) c.detail = fmt("tensor %zu (n=%zu): %s", t, want[t].size(), c.detail.c_str());
  }
  check(what, c);
}

static void test_optim() {
  Group g("sgd / adam / fill_tensors");
  // One element update on both devices (nncore/host_device.h): the same bits where the CPU twin
  // fuses its multiply-adds as the CUDA twin does (AVX2 / AVX-512 CPUs); a CPU without FMA
  // rounds them twice (as PyTorch does there): each of up to three may land an ulp apart.
  const double rel = std::strcmp(cpu::sgemm_kernel_name(), "generic") != 0 ? -1.0 : 4e-6;
  for_caps([&] {
    for (const std::vector<int64_t>& sizes : tensor_list_cases()) {
      const int64_t count = int64_t(sizes.size());
      const std::vector<V> p0 = rnd_list(sizes), grad = rnd_list(sizes), buf0 = rnd_list(sizes);
      const std::vector<const float*> gp = cptrs(grad);
      for (float momentum : {0.f, 0.9f})
        for (float damp : {0.f, 0.1f})
          for (float wd : {0.f, 0.01f})
            for (int nesterov = 0; nesterov < 2; ++nesterov)
              for (int first = 0; first < 2; ++first) {
                if (momentum == 0.f && (damp != 0.f || nesterov || first)) continue;
                std::vector<V> pc = p0, pg = p0, bc = buf0, bg = buf0;
                std::vector<float*> pcp = ptrs(pc), pgp = ptrs(pg), bcp = ptrs(bc), bgp = ptrs(bg);
                cpu::sgd_step(pcp.data(), gp.data(), momentum != 0.f ? bcp.data() : nullptr,
                              sizes.data(), count, 0.05f, momentum, damp, wd, nesterov, first);
                const std::string w = fmt("sgd_step %ld tensors mom=%g damp=%g wd=%g nesterov=%d "
                                          "first=%d", long(count), momentum, damp, wd, nesterov,
                                          first);
                if (run_cuda(w, [&] {
                      gpu::sgd_step(pgp.data(), gp.data(), momentum != 0.f ? bgp.data() : nullptr,
                                    sizes.data(), count, 0.05f, momentum, damp, wd, nesterov,
                                    first);
                    })) {
                  check_list(w + " param", pg, pc, rel);
                  check_list(w + " buf", bg, bc, rel);
                }
              }
      for (int64_t step : {1, 5})
        for (float wd : {0.f, 0.01f}) {
          std::vector<V> pc = p0, pg = p0, mc = rnd_list(sizes), vc = rnd_list(sizes, 0.f, 1.f);
          std::vector<V> mg = mc, vg = vc;
          std::vector<float*> pcp = ptrs(pc), pgp = ptrs(pg), mcp = ptrs(mc), mgp = ptrs(mg),
                              vcp = ptrs(vc), vgp = ptrs(vg);
          cpu::adam_step(pcp.data(), gp.data(), mcp.data(), vcp.data(), sizes.data(), count,
                         1e-3f, 0.9f, 0.999f, 1e-8f, wd, step);
          const std::string w =
              fmt("adam_step %ld tensors step=%ld wd=%g", long(count), long(step), wd);
          if (run_cuda(w, [&] {
                gpu::adam_step(pgp.data(), gp.data(), mgp.data(), vgp.data(), sizes.data(), count,
                               1e-3f, 0.9f, 0.999f, 1e-8f, wd, step);
              })) {
            check_list(w + " param", pg, pc, rel);
            check_list(w + " m", mg, mc, rel);
            check_list(w + " v", vg, vc, rel);
          }
        }
      {  // State around FLT_MIN under a zero gradient: decays into (or starts in) the subnormal
         // range, which both devices store as +-0 (flush_subnormal, nncore/host_device.h).
        const float tiny = std::numeric_limits<float>::min();
        std::vector<V> zero, bc = rnd_list(sizes, -2.f * tiny, 2.f * tiny);
        std::vector<V> mc = rnd_list(sizes, -2.f * tiny, 2.f * tiny);
        std::vector<V> vc = rnd_list(sizes, 0.f, 2.f * tiny);
        for (int64_t n : sizes) zero.emplace_back(size_t(n), 0.f);
        std::vector<V> pc = p0, pg = p0, bg = bc, mg = mc, vg = vc;
        std::vector<float*> pcp = ptrs(pc), pgp = ptrs(pg), bcp = ptrs(bc), bgp = ptrs(bg),
                            mcp = ptrs(mc), mgp = ptrs(mg), vcp = ptrs(vc), vgp = ptrs(vg);
        const std::vector<const float*> zp = cptrs(zero);
        cpu::sgd_step(pcp.data(), zp.data(), bcp.data(), sizes.data(), count, 0.05f, 0.9f, 0.f,
                      0.f, false, false);
        cpu::adam_step(pcp.data(), zp.data(), mcp.data(), vcp.data(), sizes.data(), count, 1e-3f,
                       0.9f, 0.999f, 1e-8f, 0.f, 5);
        const std::string w = fmt("sgd_step + adam_step %ld tensors, state near FLT_MIN",
                                  long(count));
        if (run_cuda(w, [&] {
              gpu::sgd_step(pgp.data(), zp.data(), bgp.data(), sizes.data(), count, 0.05f, 0.9f,
                            0.f, 0.f, false, false);
              gpu::adam_step(pgp.data(), zp.data(), mgp.data(), vgp.data(), sizes.data(), count,
                             1e-3f, 0.9f, 0.999f, 1e-8f, 0.f, 5);
            })) {
          check_list(w + " param", pg, pc);
          check_list(w + " buf", bg, bc);
          check_list(w + " m", mg, mc);
          check_list(w + " v", vg, vc);
        }
      }
      {
        std::vector<V> yc, yg;
        for (int64_t n : sizes) yc.push_back(nans(size_t(n)));
        yg = yc;
        std::vector<float*> ycp = ptrs(yc), ygp = ptrs(yg);
        cpu::fill_tensors(ycp.data(), sizes.data(), count, -2.5f);
        const std::string w = fmt("fill_tensors %ld tensors", long(count));
        if (run_cuda(w, [&] { gpu::fill_tensors(ygp.data(), sizes.data(), count, -2.5f); }))
          check_list(w, yg, yc);
      }
    }
  });
}

// ---- dropout and small helpers -----------------------------------------------------------------
static void test_elementwise() {
  Group g("dropout / mul / fill / axpy / scale");
  for_caps([&] {
    for (int64_t n : {1, 3, 4, 5, 257, 1001, 2050}) {
      const V x = rnd(size_t(n)), x2 = rnd(size_t(n));
      for (float p : {0.f, 0.3f, 0.9f})
        for (uint64_t offset : {uint64_t(0), uint64_t(7), uint64_t(0xFFFFFFFFull)})
          for (int inplace = 0; inplace < 2; ++inplace) {
            const uint64_t seed = 0x123456789abcdefull;
            V yc = inplace ? x : nans(size_t(n)), yg = yc, mc = nans(size_t(n)), mg = mc;
            cpu::dropout_forward(x.data(), yc.data(), mc.data(), n, p, seed, offset);
            const std::string w = fmt("dropout_forward n=%ld p=%g offset=%llu%s", long(n), p,
                                      (unsigned long long)offset, inplace ? " in-place" : "");
            if (run_cuda(w, [&] {
                  gpu::dropout_forward(inplace ? yg.data() : x.data(), yg.data(), mg.data(), n, p,
                                       seed, offset);
                })) {
              check(w + " y", exact(yg, yc));
              check(w + " mask", exact(mg, mc));
            }
          }
      {
        V yc = nans(size_t(n)), yg = yc;
        cpu::mul(x.data(), x2.data(), yc.data(), n);
        const std::string w = fmt("mul n=%ld", long(n));
        if (run_cuda(w, [&] { gpu::mul(x.data(), x2.data(), yg.data(), n); })) check(w, exact(yg, yc));
      }
      {
        V yc = nans(size_t(n)), yg = yc;
        cpu::fill(yc.data(), -2.5f, n);
        const std::string w = fmt("fill n=%ld", long(n));
        if (run_cuda(w, [&] { gpu::fill(yg.data(), -2.5f, n); })) check(w, exact(yg, yc));
      }
      for (int alias = 0; alias < 2; ++alias) {
        V yc = x2, yg = x2;
        cpu::axpy(0.7f, alias ? yc.data() : x.data(), yc.data(), n);
        const std::string w = fmt("axpy n=%ld%s", long(n), alias ? " x=y" : "");
        if (run_cuda(w, [&] { gpu::axpy(0.7f, alias ? yg.data() : x.data(), yg.data(), n); }))
          check(w, exact(yg, yc));
      }
      {
        V yc = x, yg = x;
        cpu::scale(yc.data(), -1.3f, n);
        const std::string w = fmt("scale n=%ld", long(n));
        if (run_cuda(w, [&] { gpu::scale(yg.data(), -1.3f, n); })) check(w, exact(yg, yc));
      }
    }
  });
}

static void test_gather_argmax() {
  Group g("gather_rows / argmax_rows");
  for_caps([&] {
    // row_bytes % 16 == 0 with aligned pointers: 16-byte words; otherwise 4-byte words.
    for (int64_t row_bytes : {4, 12, 16, 48, 400})
      for (int misalign = 0; misalign < 2; ++misalign)
        for (int64_t rows : {1, 7, 300}) {
          const int64_t src_rows = 13, words = row_bytes / 4;
          const V x = rnd(size_t(src_rows * words + 1));
          VI idx(static_cast<size_t>(rows));
          for (int32_t& i : idx) i = irand(0, int(src_rows) - 1);  // duplicates likely
          if (rows == 7) {  // out of range: a row of all-one bits on both (the GPU op cannot check)
            idx[1] = -1;
            idx[4] = int32_t(src_rows);
            idx[6] = std::numeric_limits<int32_t>::max();
          }
          V yc = nans(size_t(rows * words + 1)), yg = yc;
          const float* xs = x.data() + misalign;
          cpu::gather_rows(xs, idx.data(), rows, src_rows, row_bytes, yc.data() + misalign);
          const std::string w = fmt("gather_rows rows=%ld row_bytes=%ld%s", long(rows),
                                    long(row_bytes), misalign ? " misaligned" : "");
          if (run_cuda(w, [&] {
                gpu::gather_rows(xs, idx.data(), rows, src_rows, row_bytes, yg.data() + misalign);
              }))
            check(w, exact(yg, yc));
          if (rows == 7) {
            uint32_t bits;
            std::memcpy(&bits, yc.data() + misalign + 4 * words, sizeof bits);
            check(w + " out-of-range row", Cmp{bits == ~0u, fmt("first word %08x", bits)});
          }
        }
    const int64_t shapes[][2] = {{1, 1}, {3, 31}, {40, 33}, {5, 100}, {2, 1}, {6, 64}};
    for (const auto& rc : shapes) {
      const int64_t R = rc[0], Cn = rc[1];
      V x(size_t(R * Cn));
      for (float& v : x) v = float(irand(-3, 3));  // many ties: the first maximum must win
      for (int64_t r = 0; r < R; ++r) {
        float* row = x.data() + r * Cn;
        if (r % 6 == 1) row[Cn / 2] = kNaN, row[Cn - 1] = kNaN;           // first NaN wins
        if (r % 6 == 2) std::fill(row, row + Cn, -kInf);                  // all -inf: index 0
        if (r % 6 == 3) std::fill(row, row + Cn, kNaN);                   // all NaN: index 0
        if (r % 6 == 4) row[Cn - 1] = 10.f;                               // last column
      }
      VI oc(size_t(R), -7), og = oc;
      cpu::argmax_rows(x.data(), R, Cn, oc.data());
      const std::string w = fmt("argmax_rows %ldx%ld", long(R), long(Cn));
      if (run_cuda(w, [&] { gpu::argmax_rows(x.data(), R, Cn, og.data()); })) check(w, exact(og, oc));
    }
  });
}

// ---- the emulator itself: it must catch the bugs it claims to catch -----------------------------
// (Kernels written here, in the same dialect; launched directly with emu::launch.)
// A missing barrier: thread t writes s[t], then reads s[63 - t]. Returns how many threads read
// their partner's slot before it was written.
static int launch_missing_barrier() {
  static float s[64];
  int stale = 0;
  std::fill(s, s + 64, -1.f);
  emu::launch(1, 64, 0, nullptr, "race", [&] {
    s[threadIdx.x] = 1.f;
    if (s[63 - threadIdx.x] < 0) __atomic_add_fetch(&stale, 1, __ATOMIC_RELAXED);
  });
  return stale;
}

// Under ThreadSanitizer (once: TSan reports a pair of code sites only once per run):
// - the missing barrier is a reported race whatever the timing;
// - the ordering the emulator declares is CUDA's, not its own lock's: lane 0 of warp 0 writes s,
//   a barrier, lane 0 of warp 1 reads it, a shuffle in each warp (the emulator takes the block's
//   lock for it, which orders nothing across warps on a GPU), then lane 0 of warp 0 rewrites s
//   while warp 1 may still read it: a race, which the lock once hid. With a barrier before the
//   rewrite there is none. (One reader: TSan remembers only a few accesses per word.)
static void self_test_races() {
  std::printf("  (the two data races ThreadSanitizer reports next are the self-test's, expected)\n");
  launch_missing_barrier();
  check("self-test: missing barrier is a reported race",
        new_races().empty() ? Cmp{false, "not reported"} : Cmp{});
  static float s;
  for (const bool barrier : {false, true}) {
    s = 0.f;
    emu::launch(1, 64, 0, nullptr, "race model", [&] {
      const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      if (warp == 0 && lane == 0) s = 1.f;
      __syncthreads();
      float v = warp == 1 && lane == 0 ? s : 0.f;
      // Warp 0 lets warp 1 read and take the lock first: were the lock visible to TSan, that
      // would order warp 1's read before warp 0's rewrite every time, and hide the race.
      if (warp == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      v = __shfl_xor_sync(0xffffffffu, v, 1);
      if (barrier) __syncthreads();
      if (warp == 0 && lane == 0) s = v;
    });
    const bool raced = !new_races().empty();
    check(barrier ? "self-test: a barrier orders the rewrite (no race)"
                  : "self-test: a shuffle does not order other warps (race reported)",
          cudaGetLastError() == cudaSuccess && raced != barrier
              ? Cmp{}
              : Cmp{false, raced ? "race reported" : "no race reported"});
  }
}

static void self_test_one() {
  auto expect_failure = [](const char* what, dim3 grid, dim3 block, std::function<void()> body) {
    emu::launch(grid, block, 0, nullptr, what, body);
    const cudaError_t e = cudaGetLastError();
    check(fmt("self-test: %s is reported", what),
          e != cudaSuccess ? Cmp{} : Cmp{false, "the emulator did not report it"});
  };
  expect_failure("divergent __syncthreads", 1, 64, [] {
    if (threadIdx.x < 32) __syncthreads();
    else __syncthreads();
  });
  expect_failure("shuffle on a partial warp", 1, 48,
                 [] { (void)__shfl_xor_sync(0xffffffffu, 1.f, 1); });
  expect_failure("shuffle after a lane exited", 1, 32, [] {
    if (threadIdx.x == 5) return;
    (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
  });
  expect_failure("deadlock: lane 32 at a barrier, its warp in __syncwarp", 1, 64, [] {
    if (threadIdx.x <= 32) {
      __syncthreads();
    } else {
      __syncwarp();
    }
  });
  expect_failure("block of 2048 threads", 1, 2048, [] {});
  expect_failure("shuffle from a lane outside the mask", 1, 32, [] {
    if (threadIdx.x < 16) (void)__shfl_sync(0x0000ffffu, 1.f, 20);
  });
  // mma.sync: lane 4g + t holds A = 8 * row + k and B = I in the PTX ISA's fragments, so D = A's
  // first 8 columns: d = 8g + 2t, 8g + 2t + 1, 8(g + 8) + 2t, 8(g + 8) + 2t + 1.
  using nncore::cuda::detail::ptx_mma_m16n8k8_tf32;
  int mma_wrong = 0;
  emu::launch(1, 32, 0, nullptr, "mma.sync", [&] {
    const uint32_t g = threadIdx.x / 4, t = threadIdx.x % 4;
    auto bits = [](float x) { return __float_as_uint(x); };
    const uint32_t a[4] = {bits(8.f * g + t), bits(8.f * (g + 8) + t), bits(8.f * g + t + 4),
                           bits(8.f * (g + 8) + t + 4)};
    const uint32_t b[2] = {bits(t == g ? 1.f : 0.f), bits(t + 4 == g ? 1.f : 0.f)};
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    ptx_mma_m16n8k8_tf32(d, a, b);
    const float want[4] = {8.f * g + 2 * t, 8.f * g + 2 * t + 1, 8.f * (g + 8) + 2 * t,
                           8.f * (g + 8) + 2 * t + 1};
    for (int r = 0; r < 4; ++r)
      if (d[r] != want[r]) __atomic_add_fetch(&mma_wrong, 1, __ATOMIC_RELAXED);
  });
  check("self-test: mma.sync fragments", cudaGetLastError() == cudaSuccess && mma_wrong == 0
                                             ? Cmp{}
                                             : Cmp{false, fmt("%d wrong values", mma_wrong)});
  expect_failure("mma.sync with an operand not rounded to TF32", 1, 32, [] {
    const uint32_t a[4] = {__float_as_uint(1.f + 0x1p-20f), 0, 0, 0}, b[2] = {0, 0};
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    ptx_mma_m16n8k8_tf32(d, a, b);
  });
  // And a correct warp reduction over a block with an exited warp passes.
  float out[2] = {0, 0};
  emu::launch(2, 64, 0, nullptr, "warp sum", [&] {
    float v = float(threadIdx.x);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x >= 32) return;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = v;
  });
  check("self-test: warp sum", cudaGetLastError() == cudaSuccess && out[0] == 496.f && out[1] == 496.f
                                   ? Cmp{}
                                   : Cmp{false, fmt("got %g %g", out[0], out[1])});
  // The missing barrier must show in a serialized schedule: the first thread to run reads
  // before its partner wrote. (Under TSan every block runs freely: self_test_races.)
  if (!emu::kRaceDetector && emu::g_schedule != emu::kFree)
    check("self-test: missing barrier shows",
          launch_missing_barrier() > 0 ? Cmp{} : Cmp{false, "not seen"});
}
static void self_test() {
  Group g("emulator self-test");
  for (int sched = 0; sched < 3; ++sched) {
    cycle_schedule(sched);
    self_test_one();
  }
  cycle_schedule(0);
  if (emu::kRaceDetector) self_test_races();
}

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines keep their order among the sanitizers' ones
  const std::string only = argc > 1 ? argv[1] : "";
  struct T { const char* name; void (*fn)(); };
  const T tests[] = {{"self", self_test},          {"sgemm", test_sgemm},
                     {"sgemm_tf32", test_sgemm_tf32}, {"bias", test_bias},
                     {"swap", test_swap},
                     {"im2col", test_im2col},      {"conv", test_conv},
                     {"pool", test_pool},          {"act", test_activations},
                     {"softmax", test_softmax},    {"loss", test_losses},
                     {"optim", test_optim},        {"elementwise", test_elementwise},
                     {"gather", test_gather_argmax}};
  for (const T& t : tests)
    if (only.empty() || only == t.name) t.fn();
  if (const std::string races = new_races(); !races.empty()) {  // after the last check
    ++g_failures;
    std::printf("  FAIL %s\n", races.c_str());
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("SUMMARY: %d checks, %d failures, %ld emulated launches, %.1f s\n", g_checks,
              g_failures, emu::g_launches, s);
  std::fflush(stdout);
  return g_failures == 0 ? 0 : 1;
}
