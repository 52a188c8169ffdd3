// The CUDA SGEMM ladder: every numbered variant checked against cuBLAS and timed, in one run.
//
//   ./sgemm_ladder [options]            (build with build.sh; run.sh builds, runs, saves results)
//
// For each shape (square sizes, default 1024 2048 4096 8192, plus the MLP / LeNet training shapes)
// and each variant (01..08 in this folder, 09 = the library's nncore::cuda::sgemm, 10 = the opt-in
// TF32 tensor-core rung and 11 = the library with its TF32 path on, both measured against cuBLAS
// in TF32 mode; see below):
//   1. correctness: C = 0.75 * A * B + 0.5 * C0 (random A, B, C0 in [-1, 1)) against cuBLAS SGEMM
//      on the same inputs; error = max |C - C_cublas| / max |C_cublas| (normwise max relative
//      error), PASS when <= --tol (default 1e-4) and every value is finite;
//   2. timing: C = A * B (alpha 1, beta 0, the forward-pass case), warm-up runs, then --reps runs
//      each bracketed by its own pair of CUDA events; the median is reported, as ms, TFLOP/s
//      (2*M*N*K flops) and % of cuBLAS FP32 measured in the same run, on the same stream.
// cuBLAS itself is checked against a float64 CPU computation of 256 sampled entries of C.
//
// cuBLAS precision: the handle is set to CUBLAS_DEFAULT_MATH and called through cublasSgemm
// (compute type CUBLAS_COMPUTE_32F). cuBLAS accelerates FP32 routines with TF32 tensor cores only
// when asked to (math mode CUBLAS_TF32_TENSOR_OP_MATH or a *_FAST_TF32 compute type; the BF16x9
// emulation likewise needs CUBLAS_FP32_EMULATED_BF16X9_MATH and exists on Blackwell only), so this
// is true FP32 FFMA math, the same arithmetic as the ladder. The program prints any CUBLAS_* /
// NVIDIA_TF32_OVERRIDE environment variable it sees, and the float64 spot check would expose
// TF32 (its error is ~100x that of FP32: it fails the 1e-4 tolerance). --cublas-pedantic switches
// to CUBLAS_PEDANTIC_MATH for a cross-check (may be slower, not the baseline).
//
// TF32 (variants 10 and 11): operands rounded to 10 mantissa bits, so they are checked at
// --tol-tf32 (default 5e-3; TF32's unit roundoff is 2^-11 = 4.9e-4) against the same FP32
// reference, and their %cuBLAS column is relative to a second handle in
// CUBLAS_TF32_TENSOR_OP_MATH, timed in the same run (row 00_cublas_tf32, whose own error against
// the FP32 reference is printed beside it).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "01_naive.cuh"
#include "02_coalesced.cuh"
#include "03_smem_tiles.cuh"
#include "04_register_blocking_1d.cuh"
#include "05_register_blocking_2d.cuh"
#include "06_vectorized_loads.cuh"
#include "07_warptiling.cuh"
#include "08_double_buffering.cuh"
#ifndef LADDER_NO_LIBRARY
#include "09_library.cuh"
#endif
#include "10_tf32_tensor_cores.cuh"

#ifndef LADDER_ARCH
#define LADDER_ARCH "unknown"
#endif

extern char** environ;

namespace {

#define CUBLAS_CHECK(expr)                                                                  \
  do {                                                                                      \
    const cublasStatus_t st_ = (expr);                                                      \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      std::fprintf(stderr, "%s:%d: %s failed: cuBLAS status %d\n", __FILE__, __LINE__, #expr, \
                   static_cast<int>(st_));                                                  \
      std::exit(2);                                                                         \
    }                                                                                       \
  } while (0)

using Launcher = void (*)(int, int, int, float, const float*, const float*, float, float*,
                          cudaStream_t);
using Support = const char* (*)(int, int, int);  // nullptr: supported; else the reason

struct Variant {
  int id;
  const char* name;
  Launcher run;
  Support unsupported;  // may be null
  bool int32_indices;   // 01-08 and 10 use 32-bit indices
  bool tf32;            // TF32 operands: --tol-tf32, timed against cuBLAS TF32
};

const Variant kVariants[] = {
    {1, "01_naive", sgemm_v01, nullptr, true, false},
    {2, "02_coalesced", sgemm_v02, nullptr, true, false},
    {3, "03_smem_tiles", sgemm_v03, nullptr, true, false},
    {4, "04_register_blocking_1d", sgemm_v04, nullptr, true, false},
    {5, "05_register_blocking_2d", sgemm_v05, nullptr, true, false},
    {6, "06_vectorized_loads", sgemm_v06, sgemm_v06_unsupported, true, false},
    {7, "07_warptiling", sgemm_v07, sgemm_v07_unsupported, true, false},
    {8, "08_double_buffering", sgemm_v08, sgemm_v08_unsupported, true, false},
#ifndef LADDER_NO_LIBRARY
    {9, "09_library", sgemm_v09, nullptr, false, false},
#endif
    {10, "10_tf32_tensor_cores", sgemm_v10, sgemm_v10_unsupported, true, true},
#ifndef LADDER_NO_LIBRARY
    {11, "11_library_tf32", sgemm_v11, nullptr, false, true},
#endif
};

struct Shape {
  int M, N, K;
  std::string label;
};

struct Options {
  std::vector<int> sizes{1024, 2048, 4096, 8192};
  std::vector<Shape> extra_shapes;
  bool training_shapes = true;
  std::vector<int> variants;  // empty: all
  int warmup = 3;
  int reps = 10;
  double budget_ms = 3000.0;  // per variant and shape: fewer reps (>= 3) past this much GPU time
  int naive_max = 4096;       // 01_naive runs only when max(M, N, K) <= this
  double tol = 1e-4;
  double tol_tf32 = 5e-3;
  bool flush_l2 = false;
  bool pedantic = false;
  std::string csv, json;
};

// ---- inputs: a counter-based hash, identical on host and device (no host copies needed) -------

__host__ __device__ inline float init_value(uint32_t seed, uint64_t i) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + (uint64_t(seed) + 1) * 0xD1B54A32D192ED03ull;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;  // 24 bits -> [-1, 1)
}

__global__ void fill_kernel(float* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = init_value(seed, static_cast<uint64_t>(i));
}

constexpr uint32_t kSeedA = 1, kSeedB = 2, kSeedC = 3;
constexpr float kCheckAlpha = 0.75f, kCheckBeta = 0.5f;  // correctness run (exercises beta)
constexpr float kTimeAlpha = 1.0f, kTimeBeta = 0.0f;     // timed runs

// ---- results ---------------------------------------------------------------------------------

struct Row {
  std::string variant, shape;
  int M = 0, N = 0, K = 0;
  double ms = NAN, tflops = NAN, pct = NAN, cublas_ms = NAN, max_abs = NAN, max_rel = NAN;
  int reps = 0;
  std::string status, note;
};

std::string fmt(double v, const char* f) {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

std::string json_num(double v, const char* f) { return std::isnan(v) ? "null" : fmt(v, f); }

void write_csv(const std::string& path, const std::vector<Row>& rows) {
  if (path.empty()) return;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  std::fprintf(f, "variant,shape,M,N,K,ms,tflops,pct_cublas,cublas_ms,max_abs_err,max_rel_err,"
                  "status,reps,note\n");
  for (const Row& r : rows) {
    std::string note = r.note;
    std::replace(note.begin(), note.end(), ',', ';');
    std::fprintf(f, "%s,%s,%d,%d,%d,%s,%s,%s,%s,%s,%s,%s,%d,%s\n", r.variant.c_str(),
                 r.shape.c_str(), r.M, r.N, r.K, fmt(r.ms, "%.5f").c_str(),
                 fmt(r.tflops, "%.4f").c_str(), fmt(r.pct, "%.2f").c_str(),
                 fmt(r.cublas_ms, "%.5f").c_str(), fmt(r.max_abs, "%.3e").c_str(),
                 fmt(r.max_rel, "%.3e").c_str(), r.status.c_str(), r.reps, note.c_str());
  }
  std::fclose(f);
}

void write_json(const std::string& path, const std::string& meta, const std::vector<Row>& rows) {
  if (path.empty()) return;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  std::fprintf(f, "{\n  \"meta\": %s,\n  \"results\": [\n", meta.c_str());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"variant\": \"%s\", \"shape\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, "
                 "\"ms\": %s, \"tflops\": %s, \"pct_cublas\": %s, \"cublas_ms\": %s, "
                 "\"max_abs_err\": %s, \"max_rel_err\": %s, \"status\": \"%s\", \"reps\": %d, "
                 "\"note\": \"%s\"}%s\n",
                 json_escape(r.variant).c_str(), json_escape(r.shape).c_str(), r.M, r.N, r.K,
                 json_num(r.ms, "%.6f").c_str(), json_num(r.tflops, "%.5f").c_str(),
                 json_num(r.pct, "%.3f").c_str(), json_num(r.cublas_ms, "%.6f").c_str(),
                 json_num(r.max_abs, "%.4e").c_str(), json_num(r.max_rel, "%.4e").c_str(),
                 r.status.c_str(), r.reps, json_escape(r.note).c_str(),
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

void print_header() {
  std::printf("%-25s %-16s %18s %10s %9s %9s %10s %-6s %s\n", "variant", "shape", "M x N x K",
              "ms", "TFLOP/s", "%cuBLAS", "max_rel", "status", "note");
}

void print_row(const Row& r) {
  char dims[48];
  std::snprintf(dims, sizeof dims, "%dx%dx%d", r.M, r.N, r.K);
  std::printf("%-25s %-16s %18s %10s %9s %9s %10s %-6s %s\n", r.variant.c_str(), r.shape.c_str(),
              dims, fmt(r.ms, "%.4f").c_str(), fmt(r.tflops, "%.3f").c_str(),
              fmt(r.pct, "%.1f").c_str(), fmt(r.max_rel, "%.2e").c_str(), r.status.c_str(),
              r.note.c_str());
  std::fflush(stdout);
}

// ---- timing ----------------------------------------------------------------------------------

struct Timing {
  double median_ms = NAN;
  int reps = 0;
};

struct Flusher {  // optional: overwrite a buffer 2x the L2 size before each timed run
  void* buf = nullptr;
  size_t bytes = 0;
  void operator()(cudaStream_t s) const {
    if (buf) LADDER_CUDA_CHECK(cudaMemsetAsync(buf, 0, bytes, s));
  }
};

template <typename F>
Timing time_runs(F&& run, cudaStream_t s, const Options& o, const Flusher& flush) {
  cudaEvent_t e0, e1;
  LADDER_CUDA_CHECK(cudaEventCreate(&e0));
  LADDER_CUDA_CHECK(cudaEventCreate(&e1));
  // First warm-up run, timed, to size the rest.
  flush(s);
  LADDER_CUDA_CHECK(cudaEventRecord(e0, s));
  run();
  LADDER_CUDA_CHECK(cudaEventRecord(e1, s));
  LADDER_CUDA_CHECK(cudaEventSynchronize(e1));
  float first = 0.f;
  LADDER_CUDA_CHECK(cudaEventElapsedTime(&first, e0, e1));
  const double per = std::max(1e-3, static_cast<double>(first));
  const int warm = per > 500.0 ? 0 : std::max(0, o.warmup - 1);
  int reps = o.reps;
  if (per * (warm + reps) > o.budget_ms)
    reps = std::max(3, std::min(reps, static_cast<int>(o.budget_ms / per) - warm));
  for (int i = 0; i < warm; ++i) run();

  std::vector<cudaEvent_t> ev(2 * reps);
  for (cudaEvent_t& e : ev) LADDER_CUDA_CHECK(cudaEventCreate(&e));
  for (int r = 0; r < reps; ++r) {
    flush(s);
    LADDER_CUDA_CHECK(cudaEventRecord(ev[2 * r], s));
    run();
    LADDER_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], s));
  }
  LADDER_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> ms(reps);
  for (int r = 0; r < reps; ++r) {
    float t = 0.f;
    LADDER_CUDA_CHECK(cudaEventElapsedTime(&t, ev[2 * r], ev[2 * r + 1]));
    ms[r] = t;
  }
  for (cudaEvent_t& e : ev) LADDER_CUDA_CHECK(cudaEventDestroy(e));
  LADDER_CUDA_CHECK(cudaEventDestroy(e0));
  LADDER_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.reps = reps;
  t.median_ms = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
  return t;
}

// ---- checking --------------------------------------------------------------------------------

struct Error {
  double max_abs = 0, max_rel = 0;
  int64_t non_finite = 0;
};

Error compare(const std::vector<float>& out, const std::vector<float>& ref, double ref_max) {
  Error e;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      ++e.non_finite;
      continue;
    }
    e.max_abs = std::max(e.max_abs, std::fabs(double(out[i]) - double(ref[i])));
  }
  e.max_rel = ref_max > 0 ? e.max_abs / ref_max : e.max_abs;
  return e;
}

// Synchronizes `s` and reports (then exits on) a CUDA error: after a fault the context is dead.
void sync_or_die(cudaStream_t s, const char* what) {
  const cudaError_t err = cudaStreamSynchronize(s);
  const cudaError_t last = err != cudaSuccess ? err : cudaGetLastError();
  if (last != cudaSuccess) {
    std::fprintf(stderr, "FATAL: CUDA error after %s: %s (the context is unusable; stopping)\n",
                 what, cudaGetErrorString(last));
    std::exit(3);
  }
}

// ---- command line ----------------------------------------------------------------------------

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(sep, start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos
                                                                      : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

int parse_positive(const std::string& s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v <= 0 || v > 1000000) {
    std::fprintf(stderr, "bad %s: '%s' (a positive integer)\n", what, s.c_str());
    std::exit(1);
  }
  return static_cast<int>(v);
}

void usage() {
  std::printf(
      "usage: sgemm_ladder [options] [SIZE ...]\n"
      "  SIZE ...             square sizes M=N=K (default 1024 2048 4096 8192)\n"
      "  --sizes A,B,...      same, comma separated\n"
      "  --shape MxNxK        add a rectangular shape (repeatable; also comma separated)\n"
      "  --no-training-shapes leave out the MLP/LeNet shapes (256x800x784, 800x784x256,\n"
      "                       16x25600x150, 150x25600x16)\n"
      "  --only-training      only the training shapes (no square sizes)\n"
      "  --variants 1,2,9     run these variants only (ids; cuBLAS always runs)\n"
      "  --warmup N           warm-up runs (default 3)       --reps N  timed runs (default 10)\n"
      "  --budget-ms X        per variant and shape: fewer reps (>= 3) past X ms (default 3000)\n"
      "  --naive-max N        run 01_naive only when max(M,N,K) <= N (default 4096)\n"
      "  --tol X              max normwise relative error for PASS (default 1e-4)\n"
      "  --tol-tf32 X         the same for the TF32 variants 10, 11 (default 5e-3)\n"
      "  --flush-l2           overwrite 2x L2 before each timed run (cold-cache timing)\n"
      "  --cublas-pedantic    reference with CUBLAS_PEDANTIC_MATH instead of DEFAULT_MATH\n"
      "  --csv PATH  --json PATH   also write the results there\n"
      "  --list               list the variants and exit\n");
}

Options parse(int argc, char** argv) {
  Options o;
  bool sizes_given = false;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", argv[i]);
      std::exit(1);
    }
    return argv[++i];
  };
  auto add_size = [&](const std::string& s) {
    if (!sizes_given) o.sizes.clear();
    sizes_given = true;
    o.sizes.push_back(parse_positive(s, "size"));
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else if (a == "--list") {
      for (const Variant& v : kVariants) std::printf("%d %s\n", v.id, v.name);
      std::exit(0);
    } else if (a == "--sizes") {
      for (const std::string& s : split(need(i), ',')) add_size(s);
    } else if (a == "--shape") {
      for (const std::string& s : split(need(i), ',')) {
        const std::vector<std::string> d = split(s, 'x');
        if (d.size() != 3) {
          std::fprintf(stderr, "bad --shape '%s' (MxNxK)\n", s.c_str());
          std::exit(1);
        }
        o.extra_shapes.push_back({parse_positive(d[0], "M"), parse_positive(d[1], "N"),
                                  parse_positive(d[2], "K"), "custom"});
      }
    } else if (a == "--no-training-shapes") {
      o.training_shapes = false;
    } else if (a == "--only-training") {
      o.sizes.clear();
      sizes_given = true;
    } else if (a == "--variants") {
      for (const std::string& s : split(need(i), ',')) o.variants.push_back(parse_positive(s, "variant"));
    } else if (a == "--warmup") {
      o.warmup = parse_positive(need(i), "warmup");
    } else if (a == "--reps") {
      o.reps = parse_positive(need(i), "reps");
    } else if (a == "--budget-ms") {
      o.budget_ms = std::atof(need(i).c_str());
    } else if (a == "--naive-max") {
      o.naive_max = parse_positive(need(i), "naive-max");
    } else if (a == "--tol") {
      o.tol = std::atof(need(i).c_str());
    } else if (a == "--tol-tf32") {
      o.tol_tf32 = std::atof(need(i).c_str());
    } else if (a == "--flush-l2") {
      o.flush_l2 = true;
    } else if (a == "--cublas-pedantic") {
      o.pedantic = true;
    } else if (a == "--csv") {
      o.csv = need(i);
    } else if (a == "--json") {
      o.json = need(i);
    } else if (!a.empty() && a[0] != '-') {
      add_size(a);
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      usage();
      std::exit(1);
    }
  }
  return o;
}

bool selected(const Options& o, int id) {
  return o.variants.empty() || std::find(o.variants.begin(), o.variants.end(), id) != o.variants.end();
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);

  std::vector<Shape> shapes;
  for (int s : opt.sizes) shapes.push_back({s, s, s, "square"});
  if (opt.training_shapes) {
    shapes.push_back({256, 800, 784, "mlp_fc1_fwd"});      // X[256,784] W1^T -> [256,800]
    shapes.push_back({800, 784, 256, "mlp_fc1_dW"});       // dY^T X: [800,256][256,784]
    shapes.push_back({16, 25600, 150, "lenet_conv2_fwd"});  // W[16,150] col[150,25600]
    shapes.push_back({150, 25600, 16, "lenet_conv2_dcol"}); // W^T[150,16] dY[16,25600]
  }
  for (const Shape& s : opt.extra_shapes) shapes.push_back(s);

  // ---- device, stream, cuBLAS ----
  int device_count = 0;
  const cudaError_t derr = cudaGetDeviceCount(&device_count);
  if (derr != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "no CUDA device: %s\n",
                 derr != cudaSuccess ? cudaGetErrorString(derr) : "device count is 0");
    return 4;
  }
  cudaDeviceProp prop{};
  LADDER_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int runtime_version = 0, driver_version = 0;
  LADDER_CUDA_CHECK(cudaRuntimeGetVersion(&runtime_version));
  LADDER_CUDA_CHECK(cudaDriverGetVersion(&driver_version));

  // One stream for everything: the library's own stream when it is linked (so variant 09 needs no
  // cross-stream ordering and its events bracket exactly its kernel), else a fresh one.
#ifndef LADDER_NO_LIBRARY
  cudaStream_t stream = nullptr;
  try {
    stream = library_stream();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nncore runtime failed to create its stream: %s\n", e.what());
    return 4;
  }
  const bool library_linked = true;
#else
  cudaStream_t stream = nullptr;
  LADDER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const bool library_linked = false;
#endif

  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, stream));
  CUBLAS_CHECK(cublasSetMathMode(handle, opt.pedantic ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
  cublasMath_t math_mode;
  CUBLAS_CHECK(cublasGetMathMode(handle, &math_mode));
  int cublas_version = 0;
  CUBLAS_CHECK(cublasGetVersion(handle, &cublas_version));
  const char* math_name = math_mode == CUBLAS_DEFAULT_MATH    ? "CUBLAS_DEFAULT_MATH"
                          : math_mode == CUBLAS_PEDANTIC_MATH ? "CUBLAS_PEDANTIC_MATH"
                                                              : "OTHER";
  // The TF32 yardstick, only when a TF32 variant runs.
  bool tf32_selected = false;
  for (const Variant& v : kVariants) tf32_selected |= v.tf32 && selected(opt, v.id);
  cublasHandle_t handle_tf32 = nullptr;
  if (tf32_selected) {
    CUBLAS_CHECK(cublasCreate(&handle_tf32));
    CUBLAS_CHECK(cublasSetStream(handle_tf32, stream));
    CUBLAS_CHECK(cublasSetMathMode(handle_tf32, CUBLAS_TF32_TENSOR_OP_MATH));
  }

  std::string env_notes;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "CUBLAS_", 7) == 0 || std::strncmp(*e, "NVIDIA_TF32_OVERRIDE", 20) == 0)
      env_notes += std::string(env_notes.empty() ? "" : " ") + *e;
  if (env_notes.size() > 1000) env_notes = env_notes.substr(0, 1000) + "...";

  std::printf("== nncore CUDA SGEMM ladder\n");
  std::printf("device: %s, sm_%d%d, %d SMs, L2 %d KiB, %.1f GiB; built for %s\n", prop.name,
              prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize / 1024,
              prop.totalGlobalMem / double(1ull << 30), LADDER_ARCH);
  std::printf("CUDA runtime %d, driver %d, cuBLAS %d; library variant 09: %s\n", runtime_version,
              driver_version, cublas_version, library_linked ? "linked" : "not built");
  std::printf("reference: cublasSgemm, math mode %s, compute type CUBLAS_COMPUTE_32F: true FP32\n"
              "  (TF32 tensor cores are used for FP32 GEMM only with CUBLAS_TF32_TENSOR_OP_MATH or\n"
              "  a *_FAST_TF32 compute type, neither set here); cuBLAS env: %s\n",
              math_name, env_notes.empty() ? "none set" : env_notes.c_str());
  std::printf("check: C = %.2f*A*B + %.2f*C0, err = max|C-C_cublas|/max|C_cublas|, PASS <= %.1e"
              " (TF32: <= %.1e); timing: C = A*B (beta 0), median of up to %d runs after %d"
              " warm-up, %s L2\n",
              kCheckAlpha, kCheckBeta, opt.tol, opt.tol_tf32, opt.reps, opt.warmup,
              opt.flush_l2 ? "flushed" : "warm");
  std::printf("%%cuBLAS: of cublasSgemm FP32 in the same run; for TF32 rows, of cublasSgemm with"
              " CUBLAS_TF32_TENSOR_OP_MATH (row 00_cublas_tf32)\n\n");

  char meta[4096];
  std::snprintf(meta, sizeof meta,
                "{\"device\": \"%s\", \"sm\": \"%d%d\", \"sms\": %d, \"l2_bytes\": %d, "
                "\"built_for\": \"%s\", \"cuda_runtime\": %d, \"cuda_driver\": %d, "
                "\"cublas\": %d, \"cublas_math_mode\": \"%s\", \"cublas_env\": \"%s\", "
                "\"check_alpha\": %.2f, \"check_beta\": %.2f, \"tol\": %.3e, \"tol_tf32\": %.3e, "
                "\"time_alpha\": 1.0, \"time_beta\": 0.0, \"warmup\": %d, \"reps\": %d, "
                "\"flush_l2\": %s, \"library_linked\": %s}",
                json_escape(prop.name).c_str(), prop.major, prop.minor, prop.multiProcessorCount,
                prop.l2CacheSize, LADDER_ARCH, runtime_version, driver_version, cublas_version,
                math_name, json_escape(env_notes).c_str(), kCheckAlpha, kCheckBeta, opt.tol,
                opt.tol_tf32,
                opt.warmup, opt.reps, opt.flush_l2 ? "true" : "false",
                library_linked ? "true" : "false");

  Flusher flusher;
  if (opt.flush_l2) {
    flusher.bytes = std::max<size_t>(size_t(2) * prop.l2CacheSize, size_t(64) << 20);
    LADDER_CUDA_CHECK(cudaMalloc(&flusher.buf, flusher.bytes));
  }

  std::vector<Row> rows;
  bool any_fail = false;
  print_header();

  for (const Shape& sh : shapes) {
    const int M = sh.M, N = sh.N, K = sh.K;
    const size_t nA = size_t(M) * K, nB = size_t(K) * N, nC = size_t(M) * N;
    float *A, *B, *C0, *C;
    LADDER_CUDA_CHECK(cudaMalloc(&A, nA * sizeof(float)));
    LADDER_CUDA_CHECK(cudaMalloc(&B, nB * sizeof(float)));
    LADDER_CUDA_CHECK(cudaMalloc(&C0, nC * sizeof(float)));
    LADDER_CUDA_CHECK(cudaMalloc(&C, nC * sizeof(float)));
    fill_kernel<<<1024, 256, 0, stream>>>(A, int64_t(nA), kSeedA);
    fill_kernel<<<1024, 256, 0, stream>>>(B, int64_t(nB), kSeedB);
    fill_kernel<<<1024, 256, 0, stream>>>(C0, int64_t(nC), kSeedC);
    LADDER_LAUNCH_CHECK("fill_kernel");

    // Row-major C = A*B is column-major C^T = B^T A^T: cuBLAS gets (B, ldb = N) then (A, lda = K).
    auto cublas_with = [&](cublasHandle_t h, float alpha, float beta) {
      CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, N, A, K, &beta, C,
                               N));
    };
    auto cublas = [&](float alpha, float beta) { cublas_with(handle, alpha, beta); };

    // -- reference --
    LADDER_CUDA_CHECK(cudaMemcpyAsync(C, C0, nC * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    cublas(kCheckAlpha, kCheckBeta);
    sync_or_die(stream, "cublasSgemm (reference)");
    std::vector<float> ref(nC), out(nC);
    LADDER_CUDA_CHECK(cudaMemcpy(ref.data(), C, nC * sizeof(float), cudaMemcpyDeviceToHost));
    double ref_max = 0;
    for (float v : ref) ref_max = std::max(ref_max, double(std::fabs(v)));

    // cuBLAS vs float64 on 256 sampled entries (corners included).
    double spot_abs = 0;
    {
      uint64_t state = 0x2545F4914F6CDD1Dull;
      for (int s = 0; s < 256; ++s) {
        int i, j;
        if (s < 4) {
          i = (s & 1) ? M - 1 : 0;
          j = (s & 2) ? N - 1 : 0;
        } else {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          i = static_cast<int>((state >> 33) % uint64_t(M));
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          j = static_cast<int>((state >> 33) % uint64_t(N));
        }
        double acc = 0;
        for (int k = 0; k < K; ++k)
          acc += double(init_value(kSeedA, uint64_t(i) * K + k)) *
                 double(init_value(kSeedB, uint64_t(k) * N + j));
        const double want = double(kCheckAlpha) * acc +
                            double(kCheckBeta) * double(init_value(kSeedC, uint64_t(i) * N + j));
        spot_abs = std::max(spot_abs, std::fabs(want - double(ref[size_t(i) * N + j])));
      }
    }
    const double spot_rel = ref_max > 0 ? spot_abs / ref_max : spot_abs;

    const Timing tc = time_runs([&] { cublas(kTimeAlpha, kTimeBeta); }, stream, opt, flusher);
    sync_or_die(stream, "cublasSgemm (timing)");
    const double flops = 2.0 * M * N * K;
    // A cuBLAS row: 100% of itself, its error against its reference, REF when `ok`.
    auto yardstick_row = [&](const char* name, const Timing& t, double max_abs, double max_rel,
                             bool ok, std::string note) {
      Row r;
      r.variant = name;
      r.shape = sh.label;
      r.M = M, r.N = N, r.K = K;
      r.ms = r.cublas_ms = t.median_ms;
      r.tflops = flops / (t.median_ms * 1e-3) / 1e12;
      r.pct = 100.0;
      r.max_abs = max_abs;
      r.max_rel = max_rel;
      r.reps = t.reps;
      r.status = ok ? "REF" : "REF?";
      r.note = std::move(note);
      print_row(r);
      rows.push_back(r);
    };
    yardstick_row("00_cublas", tc, spot_abs, spot_rel, spot_rel <= opt.tol,
                  std::string("error vs float64 on 256 sampled entries") +
                      (spot_rel > opt.tol ? "; ABOVE tol: reduced precision (TF32?)" : ""));

    // The TF32 yardstick: its error against the FP32 reference, then its time.
    Timing tc_tf32;
    if (handle_tf32) {
      LADDER_CUDA_CHECK(
          cudaMemcpyAsync(C, C0, nC * sizeof(float), cudaMemcpyDeviceToDevice, stream));
      cublas_with(handle_tf32, kCheckAlpha, kCheckBeta);
      sync_or_die(stream, "cublasSgemm (TF32)");
      LADDER_CUDA_CHECK(cudaMemcpy(out.data(), C, nC * sizeof(float), cudaMemcpyDeviceToHost));
      const Error e = compare(out, ref, ref_max);
      tc_tf32 = time_runs([&] { cublas_with(handle_tf32, kTimeAlpha, kTimeBeta); }, stream, opt,
                          flusher);
      sync_or_die(stream, "cublasSgemm (TF32 timing)");
      yardstick_row("00_cublas_tf32", tc_tf32, e.max_abs, e.max_rel,
                    e.non_finite == 0 && e.max_rel <= opt.tol_tf32,
                    std::string("CUBLAS_TF32_TENSOR_OP_MATH; error vs the FP32 reference") +
                        (e.max_rel <= opt.tol ? "; within the FP32 tol: TF32 NOT in effect?" : ""));
    }

    for (const Variant& v : kVariants) {
      if (!selected(opt, v.id)) continue;
      Row r;
      r.variant = v.name;
      r.shape = sh.label;
      r.M = M, r.N = N, r.K = K;
      const Timing& yardstick = v.tf32 ? tc_tf32 : tc;
      const double tol = v.tf32 ? opt.tol_tf32 : opt.tol;
      r.cublas_ms = yardstick.median_ms;
      const char* why = v.unsupported ? v.unsupported(M, N, K) : nullptr;
      std::string skip;
      if (why) skip = why;
      else if (v.int32_indices && std::max({nA, nB, nC}) >= (size_t(1) << 31))
        skip = "32-bit indices: a matrix has >= 2^31 elements";
      else if (v.id == 1 && std::max({M, N, K}) > opt.naive_max)
        skip = "naive skipped above --naive-max " + std::to_string(opt.naive_max);
      if (!skip.empty()) {
        r.status = "SKIP";
        r.note = skip;
        print_row(r);
        rows.push_back(r);
        continue;
      }
      try {
        // Correctness on C = 0.75*A*B + 0.5*C0.
        LADDER_CUDA_CHECK(
            cudaMemcpyAsync(C, C0, nC * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        v.run(M, N, K, kCheckAlpha, A, B, kCheckBeta, C, stream);
#ifndef LADDER_NO_LIBRARY
        if (v.id == 9 || v.id == 11) nncore::cuda::synchronize();  // the library's stream
#endif
        sync_or_die(stream, v.name);
        LADDER_CUDA_CHECK(cudaMemcpy(out.data(), C, nC * sizeof(float), cudaMemcpyDeviceToHost));
        const Error e = compare(out, ref, ref_max);
        r.max_abs = e.max_abs;
        r.max_rel = e.max_rel;
        const bool pass = e.non_finite == 0 && e.max_rel <= tol;
        if (e.non_finite) r.note = std::to_string(e.non_finite) + " non-finite values";

        // Timing on C = A*B.
        const Timing t = time_runs(
            [&] { v.run(M, N, K, kTimeAlpha, A, B, kTimeBeta, C, stream); }, stream, opt,
            flusher);
        sync_or_die(stream, v.name);
        r.ms = t.median_ms;
        r.reps = t.reps;
        r.tflops = flops / (t.median_ms * 1e-3) / 1e12;
        r.pct = 100.0 * yardstick.median_ms / t.median_ms;
        r.status = pass ? "PASS" : "FAIL";
        if (!pass) any_fail = true;
      } catch (const std::exception& ex) {  // the library throws std::runtime_error
        r.status = "ERROR";
        r.note = ex.what();
        any_fail = true;
      }
      print_row(r);
      rows.push_back(r);
    }
    LADDER_CUDA_CHECK(cudaFree(A));
    LADDER_CUDA_CHECK(cudaFree(B));
    LADDER_CUDA_CHECK(cudaFree(C0));
    LADDER_CUDA_CHECK(cudaFree(C));
    // Rewritten after every shape, so a run cut short still leaves its results.
    write_csv(opt.csv, rows);
    write_json(opt.json, meta, rows);
  }

  if (flusher.buf) LADDER_CUDA_CHECK(cudaFree(flusher.buf));
  CUBLAS_CHECK(cublasDestroy(handle));
  if (handle_tf32) CUBLAS_CHECK(cublasDestroy(handle_tf32));
  std::printf("\n%s\n", any_fail ? "SOME VARIANTS FAILED (see status column)"
                                 : "all run variants PASS");
  return any_fail ? 1 : 0;
}
