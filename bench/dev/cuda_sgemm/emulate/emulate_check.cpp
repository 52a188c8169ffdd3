// CPU emulation check of the ladder's kernels 01-08 and 10 (no GPU needed): each variant's
// launcher runs on small awkward shapes (primes, 1, partial tiles in M, N and K) with one host
// thread per CUDA thread, and is compared with a float64 reference, for beta = 0 (C write-only: C
// starts as NaN) and beta != 0. The TF32 variant 10 is compared with the float64 product of the
// TF32-rounded inputs, so the same tolerance catches a wrong fragment layout or rounding; the
// emulator's mma.sync also fails the launch on an operand that was not rounded to TF32.
// Built with ThreadSanitizer (SANITIZER=thread), a case whose kernel raced (threads of a block
// touching one address, one writing, with no barrier between them) fails as RACE.
// Build and run: bash bench/dev/cuda_sgemm/emulate/run_emulation.sh
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../01_naive.cuh"
#include "../02_coalesced.cuh"
#include "../03_smem_tiles.cuh"
#include "../04_register_blocking_1d.cuh"
#include "../05_register_blocking_2d.cuh"
#include "../06_vectorized_loads.cuh"
#include "../07_warptiling.cuh"
#include "../08_double_buffering.cuh"
#include "../10_tf32_tensor_cores.cuh"

using Launcher = void (*)(int, int, int, float, const float*, const float*, float, float*,
                          cudaStream_t);
struct V {
  const char* name;
  Launcher run;
  const char* (*unsupported)(int, int, int);
  bool tf32 = false;  // operands rounded to TF32 (the reference rounds them too)
};

int main() {
  const V variants[] = {{"01_naive", sgemm_v01, nullptr},
                        {"02_coalesced", sgemm_v02, nullptr},
                        {"03_smem_tiles", sgemm_v03, nullptr},
                        {"04_register_blocking_1d", sgemm_v04, nullptr},
                        {"05_register_blocking_2d", sgemm_v05, nullptr},
                        {"06_vectorized_loads", sgemm_v06, sgemm_v06_unsupported},
                        {"07_warptiling", sgemm_v07, sgemm_v07_unsupported},
                        {"08_double_buffering", sgemm_v08, sgemm_v08_unsupported},
                        {"10_tf32_tensor_cores", sgemm_v10, sgemm_v10_unsupported, true}};
  // (M, N, K): 1s, primes, partial tiles; the K%4 == 0 && N%4 == 0 ones reach 06-08 and 10 too.
  // (130, 4, 8) / (129, 132, 20): a second block row with one valid row; a partial BK slice.
  const int shapes[][3] = {{1, 1, 1},     {37, 53, 29},  {65, 33, 9},   {3, 4, 4},
                           {133, 260, 36}, {129, 132, 20}, {256, 128, 16}, {17, 200, 52},
                           {130, 4, 8}};
  int passed = 0, failed = 0, skipped = 0;
  long races_seen = 0;  // ThreadSanitizer's reports so far (always 0 without it)
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    std::vector<float> A(size_t(M) * K), B(size_t(K) * N), C0(size_t(M) * N);
    for (float& x : A) x = u(rng);
    for (float& x : B) x = u(rng);
    for (float& x : C0) x = u(rng);
    for (const V& v : variants) {
      if (v.unsupported && v.unsupported(M, N, K)) {
        ++skipped;
        continue;
      }
      for (int pass = 0; pass < 2; ++pass) {
        const float alpha = pass ? 0.75f : 1.0f, beta = pass ? 0.5f : 0.0f;
        std::vector<float> C = C0;
        if (beta == 0.f) std::fill(C.begin(), C.end(), NAN);  // must never be read
        v.run(M, N, K, alpha, A.data(), B.data(), beta, C.data(), nullptr);
        const long races = emu::g_race_reports.load();
        const bool raced = races != races_seen;
        races_seen = races;
        auto operand = [&](float x) {
          return v.tf32 ? double(__uint_as_float(emu::cvt_rna_tf32(x))) : double(x);
        };
        double max_err = 0, ref_max = 0;
        bool finite = true;
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < N; ++j) {
            double acc = 0;
            for (int k = 0; k < K; ++k)
              acc += operand(A[size_t(i) * K + k]) * operand(B[size_t(k) * N + j]);
            const double want = alpha * acc + (beta != 0.f ? beta * double(C0[size_t(i) * N + j]) : 0.0);
            const float got = C[size_t(i) * N + j];
            if (!std::isfinite(got)) finite = false;
            max_err = std::max(max_err, std::fabs(want - double(got)));
            ref_max = std::max(ref_max, std::fabs(want));
          }
        const double rel = ref_max > 0 ? max_err / ref_max : max_err;
        const bool ok = finite && rel <= 1e-5 && !raced;
        ok ? ++passed : ++failed;
        if (!ok || pass == 1)
          std::printf("%-24s %4dx%4dx%3d beta=%.1f  max_rel=%.2e  %s\n", v.name, M, N, K, beta,
                      rel, ok ? "ok" : raced ? "RACE" : finite ? "WRONG" : "NON-FINITE");
      }
    }
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
