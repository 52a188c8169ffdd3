// CPU single-precision GEMM, BLIS/Goto style:
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C      (row-major, leading dimensions)
//
// Loop nest (the vector dimension of the register tile is N, the broadcast dimension is M):
//   for each M panel   (mb <= kMaxPanelRows rows)            A panel  mb x kc  -> L2 or L3
//     for each K block (kc <= kc_max)                        (per thread, or shared if large)
//       for each N chunk of this thread (nb <= nb_max)       B chunk  kc x nb  -> private, L2
//         for each MR-row A sliver of this thread            A sliver mr x kc  -> L1
//           for each NR-column B sliver of the chunk         streamed from L2
//             micro-kernel: C tile (mr x nr) (+)= alpha * Asliver * Bsliver
// Packing turns every transpose combination into the one layout the micro-kernel reads and
// zero-pads partial slivers, so the kernel always runs whole tiles; it writes back only the
// valid m x n part (short edge tiles get row-count-specialized kernels, no wasted FMAs).
// The first K block applies beta (beta == 0: C write-only), the later ones accumulate.
//
// Micro-kernels are picked at run time (see sgemm.h): avx512 14x32, avx2 6x16, generic 6x8.
// Force one with NNCORE_CPU_KERNEL=avx512|avx2|generic or nncore::cpu::sgemm_force_kernel().
// Threads: OpenMP over a tm x tn grid (rows of A slivers x columns of C), single-threaded for
// small problems or when called from inside a parallel region.
#include "sgemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "nncore/kernels.h"
#include "work_split.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nncore {
namespace cpu {
namespace {

using sgemm_detail::MicroKernel;

// ---- portable micro-kernel: 6 x 8 plain C++ -------------------------------------------------
// The compiler vectorizes the j loop; 6 x 8 floats of accumulators are 12 SSE registers, so the
// tile stays in the 16 registers of baseline x86-64 (a 4 x 16 tile spilled).
constexpr int kGenericMR = 6;
constexpr int kGenericNR = 8;

template <int MROWS>
void tile_generic_rows(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                       int64_t ldc, int n, float alpha, float beta) {
  float acc[MROWS][kGenericNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 8
    for (int r = 0; r < MROWS; ++r) {
      const float av = a[r];
#pragma GCC unroll 8
      for (int j = 0; j < kGenericNR; ++j) acc[r][j] += av * b[j];
    }
    a += kGenericMR;
    b += b_stride;
  }
  for (int r = 0; r < MROWS; ++r) {
    float* cr = c + r * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < n; ++j) cr[j] = alpha * acc[r][j];
    } else {
      for (int j = 0; j < n; ++j) cr[j] = alpha * acc[r][j] + beta * cr[j];
    }
  }
}

void sgemm_tile_generic_6x8(int64_t kc, const float* a, const float* b, int64_t bs, float* c,
                            int64_t ldc, int m, int n, float alpha, float beta) {
  switch (m) {
    case 6: tile_generic_rows<6>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 5: tile_generic_rows<5>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 4: tile_generic_rows<4>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 3: tile_generic_rows<3>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    case 2: tile_generic_rows<2>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
    default: tile_generic_rows<1>(kc, a, b, bs, c, ldc, n, alpha, beta); break;
  }
}


// ---- scratch: the calling thread's, 64-byte aligned, grow-only (freed at thread exit) -------
// One call's packing buffers, for all of its threads, are taken by the calling thread before any
// parallel region: an exception leaving a region (bad_alloc) would terminate the process. (A
// caller inside a region passes its own: sgemm_serial.)
struct Scratch {
  float* data = nullptr;
  size_t capacity = 0;  // in floats
  float* get(size_t floats) {
    if (floats > capacity) {
      std::free(data);
      data = nullptr;
      capacity = 0;
      const size_t bytes = ((floats * sizeof(float) + 63) / 64) * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (data == nullptr) throw std::bad_alloc();
      capacity = bytes / sizeof(float);
    }
    return data;
  }
  ~Scratch() { std::free(data); }
};
thread_local Scratch t_scratch;

// Per-thread slices of the scratch start on a new 128-byte line pair (no false sharing).
constexpr size_t round_slice(size_t floats) { return (floats + 31) / 32 * 32; }

// ---- packing -------------------------------------------------------------------------------
// A sliver: rows [i0, i0+m) of op(A), K range [p0, p0+kc) -> dst[k*MR + r], rows m..MR-1 zero.
template <int MR>
void pack_a_sliver(bool trans_a, const float* A, int64_t lda, int64_t i0, int m, int64_t p0,
                   int64_t kc, float* dst) {
  if (!trans_a) {
    // op(A) = A stored M x K: row r of the sliver is contiguous in k.
    const float* rows[MR];
    for (int r = 0; r < MR; ++r) rows[r] = A + (i0 + std::min(r, m - 1)) * lda + p0;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * MR;
      for (int r = 0; r < MR; ++r) d[r] = r < m ? rows[r][k] : 0.0f;
    }
  } else {
    // op(A) = A^T, A stored K x M: the MR values for one k are contiguous.
    const float* src = A + p0 * lda + i0;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * MR;
      const float* s = src + k * lda;
      if (m == MR) {
        for (int r = 0; r < MR; ++r) d[r] = s[r];
      } else {
        for (int r = 0; r < MR; ++r) d[r] = r < m ? s[r] : 0.0f;
      }
    }
  }
}

// B sliver: columns [j0, j0+n) of op(B), K range [p0, p0+kc) -> dst[k*NR + j], cols n.. zero.
template <int NR>
void pack_b_sliver(bool trans_b, const float* B, int64_t ldb, int64_t j0, int n, int64_t p0,
                   int64_t kc, float* dst) {
  if (!trans_b) {
    // op(B) = B stored K x N: the NR values for one k are contiguous.
    const float* src = B + p0 * ldb + j0;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      const float* s = src + k * ldb;
      if (n == NR) {
        for (int j = 0; j < NR; ++j) d[j] = s[j];
      } else {
        for (int j = 0; j < NR; ++j) d[j] = j < n ? s[j] : 0.0f;
      }
    }
  } else {
    // op(B) = B^T, B stored N x K: column j of the sliver is contiguous in k. Transpose in
    // 8-column groups so each pass reads 8 rows of B and writes whole 32-byte runs.
    const float* src = B + j0 * ldb + p0;
    for (int jg = 0; jg < NR; jg += 8) {
      if (jg >= n) {
        for (int64_t k = 0; k < kc; ++k)
          for (int j = 0; j < 8; ++j) dst[k * NR + jg + j] = 0.0f;
        continue;
      }
      const float* cols[8];
      for (int j = 0; j < 8; ++j) cols[j] = src + std::min(jg + j, n - 1) * ldb;
      const int valid = std::min(8, n - jg);
      for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * NR + jg;
        for (int j = 0; j < 8; ++j) d[j] = j < valid ? cols[j][k] : 0.0f;
      }
    }
  }
}

void pack_a_portable_generic(bool trans, const float* src, int64_t ld, int64_t i0, int m,
                             int64_t p0, int64_t kc, float* dst) {
  pack_a_sliver<kGenericMR>(trans, src, ld, i0, m, p0, kc, dst);
}
void pack_b_portable_generic(bool trans, const float* src, int64_t ld, int64_t j0, int n,
                             int64_t p0, int64_t kc, float* dst) {
  pack_b_sliver<kGenericNR>(trans, src, ld, j0, n, p0, kc, dst);
}

const MicroKernel kGenericKernel{"generic", kGenericMR, kGenericNR, &sgemm_tile_generic_6x8,
                                 &pack_a_portable_generic, &pack_b_portable_generic};

// ---- run-time kernel selection -------------------------------------------------------------
enum KernelLevel { kLevelGeneric = 0, kLevelAvx2 = 1, kLevelAvx512 = 2 };

int best_supported_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider register state (XCR0).
  if (sgemm_detail::microkernel_avx512() && __builtin_cpu_supports("avx512f")) return kLevelAvx512;
  if (sgemm_detail::microkernel_avx2() && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return kLevelAvx2;
#endif
  return kLevelGeneric;
}

// -1 = no request (autodetect); otherwise the requested level (clamped at use).
int level_from_name(const char* name) {
  if (name == nullptr) return -1;
  if (std::strcmp(name, "avx512") == 0) return kLevelAvx512;
  if (std::strcmp(name, "avx2") == 0) return kLevelAvx2;
  if (std::strcmp(name, "generic") == 0) return kLevelGeneric;
  return -1;  // "auto", "" or unknown: autodetect
}

std::atomic<int> g_selected_level{-2};  // -2 = not decided yet

int selected_level() {
  int level = g_selected_level.load(std::memory_order_acquire);
  if (level != -2) return level;
  const int best = best_supported_level();
  const int requested = level_from_name(std::getenv("NNCORE_CPU_KERNEL"));
  level = requested < 0 ? best : std::min(requested, best);
  g_selected_level.store(level, std::memory_order_release);
  return level;
}

const MicroKernel* kernel_for_level(int level) {
  if (level == kLevelAvx512) return sgemm_detail::microkernel_avx512();
  if (level == kLevelAvx2) return sgemm_detail::microkernel_avx2();
  return &kGenericKernel;
}

// ---- blocking ------------------------------------------------------------------------------
// kc_max: the A sliver (mr x kc floats: 14 x 512 x 4 B = 28 KiB) stays in the 48 KiB L1 while
//   the B slivers stream past it; a long kc also amortizes the C tile load/store (512 beat 384
//   by 2-20% from square 1024 to LeNet's 256x120x400, which then needs one K block, not two).
// nb_max: the packed B chunk (kc x nb: 512 x 640 x 4 B = 1.25 MiB) stays in the 2 MiB L2,
//   leaving room for the A sliver stream and C.
// kMaxPanelRows: the packed A panel (mb x kc: 4096 x 512 x 4 B = 8 MiB) lives in the shared L3.
struct Blocking {
  int64_t kc_max;
  int64_t nb_max;
};
Blocking blocking_for(const MicroKernel& kern) {
  if (kern.nr == 32) return {512, 640};
  return {256, 512};  // avx2 / generic: 32 KiB L1 class machines
}
constexpr int64_t kMaxPanelRows = 4096;
// Above this many bytes of A slivers per grid row, the threads of the row share one packed panel.
constexpr int64_t kMaxPrivateAPanelBytes = int64_t{1} << 20;

// Each thread gets at least this many multiply-adds (a parallel region costs a few us). Measured
// at 2 threads with per-thread A panels: 64x64x64 and 48x100x50 ran 0.75-0.85x of one thread,
// 128x64x32 1.25x, 64x800x10 and 10x800x64 1.35x.
constexpr double kMinMacsPerThread = 250000.0;

struct Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
};

// Equal K blocks, not a short tail: the K step, a multiple of 8. Slivers sit kc_even apart in
// the A panel for every block (the last may be shorter), so a thread's slivers never move onto
// another's.
int64_t even_k_block(int64_t K, int64_t kc_max) {
  return round_up(ceil_div(K, ceil_div(K, kc_max)), 8);
}

struct Plan {
  const MicroKernel* kern;
  int64_t kc_max, nb_max, mb_max;
  int64_t kc_even;      // the K step: even_k_block(K, kc_max)
  int threads, tm, tn;  // threads = tm * tn
  bool direct_b;        // read B in place (not transposed, few A slivers reuse it)
  // true: the tn threads of a grid row pack the mb_max x kc_even A panel together, into one
  // shared panel; false: each thread packs the A slivers it multiplies into its own.
  bool share_a = false;
  // The call's scratch: the shared A panel (share_a), then a slice of slice_floats per thread.
  float* scratch = nullptr;
  size_t slice_floats = 0;

  size_t shared_a_floats() const {
    return share_a ? round_slice(static_cast<size_t>(mb_max * kc_even)) : 0;
  }
  float* slice(int tid) const { return scratch + shared_a_floats() + tid * slice_floats; }
};

// The same problem for one thread alone (no grid, no shared panel).
Plan solo_of(const Plan& plan) {
  Plan solo = plan;
  solo.threads = solo.tm = solo.tn = 1;
  solo.share_a = false;
  return solo;
}

// What thread tid of a plan multiplies, and the scratch it packs into: its columns of C
// [col_lo, col_hi) in chunks of `chunk`, its private A panel (a_floats; none when shared) and
// its B chunk (b_floats; one sliver when B is read in place, for a partial last sliver).
struct ThreadWork {
  int64_t col_lo, col_hi, chunk;
  int64_t a_floats, b_floats;
  size_t slice_floats() const { return round_slice(static_cast<size_t>(a_floats + b_floats)); }
};

ThreadWork thread_work(const Problem& p, const Plan& plan, int tid) {
  const int mr = plan.kern->mr, nr = plan.kern->nr;
  ThreadWork w;
  // Whole NR slivers [js, je) of C's columns.
  int64_t js, je;
  split_range(ceil_div(p.N, nr), plan.tn, tid % plan.tn, &js, &je);
  w.col_lo = js * nr;
  w.col_hi = std::min(p.N, je * nr);
  const int64_t width = std::max<int64_t>(0, w.col_hi - w.col_lo);
  const int64_t nchunks = width > 0 ? ceil_div(width, plan.nb_max) : 0;
  w.chunk = nchunks > 0 ? round_up(ceil_div(width, nchunks), nr) : 0;
  // A private panel holds this thread's slivers of one M panel: at most ceil(slivers / tm).
  w.a_floats = plan.share_a ? 0 : ceil_div(ceil_div(plan.mb_max, mr), plan.tm) * mr * plan.kc_even;
  w.b_floats = width == 0 ? 0 : (plan.direct_b ? 1 : ceil_div(w.chunk, nr)) * nr * plan.kc_even;
  return w;
}

// The widest slice any thread of the plan needs.
size_t max_slice_floats(const Problem& p, const Plan& plan) {
  size_t floats = 0;
  for (int tid = 0; tid < plan.threads; ++tid)
    floats = std::max(floats, thread_work(p, plan, tid).slice_floats());
  return floats;
}

// Everything one thread does, for the whole problem; barriers separate A packing and use.
void run_thread(const Problem& p, const Plan& plan, int tid) {
  const MicroKernel& kern = *plan.kern;
  const int mr = kern.mr, nr = kern.nr;
  const int nt = plan.threads;
  const int t_m = tid / plan.tn;
  const bool shared_a = plan.share_a;
  const ThreadWork work = thread_work(p, plan, tid);
  const int64_t col_lo = work.col_lo, col_hi = work.col_hi, chunk = work.chunk;
  const int64_t kc_even = plan.kc_even;
  float* const a_panel = shared_a ? plan.scratch : plan.slice(tid);
  float* const b_buf = plan.slice(tid) + work.a_floats;

  for (int64_t i0 = 0; i0 < p.M; i0 += plan.mb_max) {
    const int64_t mb = std::min(plan.mb_max, p.M - i0);
    const int64_t slivers_m = ceil_div(mb, mr);
    int64_t ms, me;
    split_range(slivers_m, plan.tm, t_m, &ms, &me);

    for (int64_t p0 = 0; p0 < p.K; p0 += kc_even) {
      const int64_t kc = std::min(kc_even, p.K - p0);
      const float beta = p0 == 0 ? p.beta : 1.0f;

      // Shared panel: thread tid packs slivers [as, ae) of all; private: its own [ms, me),
      // sliver s at (s - first) * mr * kc_even.
      int64_t as = ms, ae = me;
      if (shared_a) split_range(slivers_m, nt, tid, &as, &ae);
      const int64_t first = shared_a ? 0 : ms;
      for (int64_t s = as; s < ae; ++s) {
        const int64_t i = i0 + s * mr;
        kern.pack_a(p.trans_a, p.A, p.lda, i, static_cast<int>(std::min<int64_t>(mr, p.M - i)), p0,
               kc, a_panel + (s - first) * mr * kc_even);
      }
#ifdef _OPENMP
      if (shared_a) {
#pragma omp barrier
      }
#endif

      for (int64_t j0 = col_lo; j0 < col_hi; j0 += chunk) {
        const int64_t nb = std::min(chunk, col_hi - j0);
        const int64_t slivers_n = ceil_div(nb, nr);
        const float* b_base;
        int64_t b_stride, b_sliver_step;
        if (plan.direct_b) {
          b_base = p.B + p0 * p.ldb + j0;
          b_stride = p.ldb;
          b_sliver_step = nr;
        } else {
          for (int64_t t = 0; t < slivers_n; ++t) {
            const int64_t j = j0 + t * nr;
            kern.pack_b(p.trans_b, p.B, p.ldb, j, static_cast<int>(std::min<int64_t>(nr, p.N - j)),
                   p0, kc, b_buf + t * nr * kc);
          }
          b_base = b_buf;
          b_stride = nr;
          b_sliver_step = nr * kc;
        }

        for (int64_t s = ms; s < me; ++s) {
          const int64_t i = i0 + s * mr;
          const int m = static_cast<int>(std::min<int64_t>(mr, p.M - i));
          const float* a_sliver = a_panel + (s - first) * mr * kc_even;
          float* c_row = p.C + i * p.ldc;
          for (int64_t t = 0; t < slivers_n; ++t) {
            const int64_t j = j0 + t * nr;
            const int n = static_cast<int>(std::min<int64_t>(nr, p.N - j));
            const float* b_sliver = b_base + t * b_sliver_step;
            int64_t bs = b_stride;
            if (plan.direct_b && n < nr) {
              // The last partial sliver read in place could run past B: pack just that one.
              kern.pack_b(false, p.B, p.ldb, j, n, p0, kc, b_buf);
              b_sliver = b_buf;
              bs = nr;
            }
            kern.tile(kc, a_sliver, b_sliver, bs, c_row + j, p.ldc, m, n, p.alpha, beta);
          }
        }
      }
#ifdef _OPENMP
      if (shared_a) {  // the next K block's packing overwrites slivers others still read
#pragma omp barrier
      }
#endif
    }
  }
}

// C = beta * C over M x N (beta == 0 writes zeros without reading C).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      std::fill(c, c + N, 0.0f);
    } else {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

// Split-K for a small C with a long K (e.g. a convolution weight gradient, M x N = 6 x 25,
// K = 200704): too few tiles to share, so the K range is cut into `parts`, each multiplied into a
// private M x N partial, then C = beta*C + the sum of the partials in part order (deterministic,
// however many threads the runtime gives).
void sgemm_split_k(const Problem& p, const Plan& plan, int parts) {
  constexpr int kMaxSplit = 64;
  parts = std::min(parts, kMaxSplit);
  const auto part_problem = [&](int part) {
    int64_t k0, k1;
    split_range(p.K, parts, part, &k0, &k1);
    Problem sub = p;
    sub.K = k1 - k0;
    sub.A = p.trans_a ? p.A + k0 * p.lda : p.A + k0;
    sub.B = p.trans_b ? p.B + k0 : p.B + k0 * p.ldb;
    sub.beta = 0.0f;
    sub.ldc = p.N;
    return sub;
  };
  const auto part_plan = [&](const Problem& sub) {
    Plan solo = solo_of(plan);
    solo.kc_even = even_k_block(std::max<int64_t>(sub.K, 1), plan.kc_max);
    return solo;
  };
  // Scratch slice of a part: its partial, then what its multiply packs into.
  const size_t partial_floats = round_slice(static_cast<size_t>(p.M * p.N));
  size_t slice = 0;
  for (int part = 0; part < parts; ++part) {
    const Problem sub = part_problem(part);
    slice = std::max(slice, partial_floats + max_slice_floats(sub, part_plan(sub)));
  }
  float* const scratch = t_scratch.get(slice * parts);

#ifdef _OPENMP
#pragma omp parallel num_threads(parts)
#endif
  {
#ifdef _OPENMP
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
    const int nt = 1, tid = 0;
#endif
    for (int part = tid; part < parts; part += nt) {
      Problem sub = part_problem(part);
      sub.C = scratch + part * slice;
      Plan solo = part_plan(sub);
      solo.scratch = sub.C + partial_floats;
      if (sub.K > 0)
        run_thread(sub, solo, 0);
      else
        std::fill(sub.C, sub.C + p.M * p.N, 0.0f);
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    int64_t i0, i1;
    split_range(p.M, nt, tid, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) {
      float* c = p.C + i * p.ldc;
      for (int64_t j = 0; j < p.N; ++j) {
        float sum = scratch[i * p.N + j];
        for (int part = 1; part < parts; ++part) sum += scratch[part * slice + i * p.N + j];
        c[j] = p.beta == 0.0f ? sum : sum + p.beta * c[j];
      }
    }
  }
}

// Inner-product form of C = alpha * A B^T + beta * C, A (M x K) and B (N x K) both read in
// place along K: nothing is packed, so it wins where the packed path would spend as long
// transposing B as multiplying (small C, long K: convolution weight gradients dW = dY col^T,
// thin linear layers). K is cut into blocks so a tile's A rows stay in L1 while the B rows of
// the following tiles stream past them. Each thread owns one fixed range of C tiles for every
// K block, so the threads never wait for each other.
constexpr int64_t kDotKc = 1024;  // A block: 6 rows x 1024 x 4 B = 24 KiB of the 48 KiB L1

// Measured side by side on AVX-512, 1 and 2 threads: the inner-product form is 1.1-3x faster
// for thin C (N <= 32) or small C (M*N <= 4096) once K >= 256, and 0.5-0.9x for larger C,
// where the packed 14x32 tile's register reuse wins.
bool prefer_dot_form(int64_t M, int64_t N, int64_t K) {
  return K >= 256 && (N <= 32 || M * N <= 4096);
}

void sgemm_dot(const Problem& p, const MicroKernel& kern, int threads) {
  const int mr = kern.dot_mr, nr = kern.dot_nr;
  const int64_t tiles_n = ceil_div(p.N, nr), tiles = ceil_div(p.M, mr) * tiles_n;
  const int64_t kc_even = round_up(ceil_div(p.K, ceil_div(p.K, kDotKc)), 16);
  auto run = [&](int part, int parts) {
    int64_t t0, t1;
    split_range(tiles, parts, part, &t0, &t1);
    for (int64_t p0 = 0; p0 < p.K; p0 += kc_even) {
      const int64_t kc = std::min(kc_even, p.K - p0);
      const float beta = p0 == 0 ? p.beta : 1.0f;
      for (int64_t t = t0; t < t1; ++t) {  // row-major over tiles: runs of tiles share A rows
        const int64_t i = (t / tiles_n) * mr, j = (t % tiles_n) * nr;
        kern.dot_tile(kc, p.A + i * p.lda + p0, p.lda, p.B + j * p.ldb + p0, p.ldb,
                      p.C + i * p.ldc + j, p.ldc, static_cast<int>(std::min<int64_t>(mr, p.M - i)),
                      static_cast<int>(std::min<int64_t>(nr, p.N - j)), p.alpha, beta);
      }
    }
  };
  threads = static_cast<int>(std::min<int64_t>(threads, tiles));
  if (threads <= 1) {
    run(0, 1);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  run(omp_get_thread_num(), omp_get_num_threads());
#endif
}

// The plan's fields that do not depend on the thread count, for one thread.
Plan base_plan(const Problem& p) {
  Plan plan;
  plan.kern = kernel_for_level(selected_level());
  const int mr = plan.kern->mr;
  const Blocking blk = blocking_for(*plan.kern);
  plan.kc_max = blk.kc_max;
  plan.nb_max = blk.nb_max;
  plan.mb_max = std::min(round_up(p.M, mr), round_up(kMaxPanelRows, mr));
  plan.kc_even = even_k_block(p.K, plan.kc_max);
  plan.threads = plan.tm = plan.tn = 1;
  // Few A slivers reuse each B sliver: reading B in place beats copying it first, for one
  // sliver always, for up to four while B is small. A large B read in place is slower: each
  // tile reads 128 bytes from each of its kc rows, a row pitch apart (measured at 2 threads:
  // 16x1600x150 and 6x200704x25 direct 1.1-1.3x faster; packed: 16x25600x150 (15 MiB of B,
  // LeNet's conv2 forward at batch 256 as one GEMM) 1.14-1.5x, 16x6400x150 (3.7 MiB, batch
  // 64) 300-320 -> 240 us; 16x3200x150 (1.8 MiB) either way within noise).
  constexpr int64_t kMaxDirectBBytes = int64_t{2} << 20;
  plan.direct_b =
      !p.trans_b && (p.M <= mr || (p.M <= 4 * mr && p.K * p.N * 4 <= kMaxDirectBBytes));
  return plan;
}

bool use_dot_form(const Problem& p, const MicroKernel& kern) {
  return !p.trans_a && p.trans_b && kern.dot_tile != nullptr && prefer_dot_form(p.M, p.N, p.K);
}

// C = alpha op(A) op(B) + beta C for a problem with M, N, K > 0 and alpha != 0, on up to
// max_threads threads. given_scratch: max_threads is 1 and the packing goes there (the caller's
// workspace); null: into the calling thread's own scratch.
void run_sgemm(const Problem& prob, int max_threads, float* given_scratch) {
  const int64_t M = prob.M, N = prob.N, K = prob.K;
  Plan plan = base_plan(prob);
  const int mr = plan.kern->mr, nr = plan.kern->nr;

  // Threads: enough work per thread, never nested inside another parallel region.
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  int threads = std::max(
      1, static_cast<int>(std::min<double>(max_threads, macs / kMinMacsPerThread)));
  if (use_dot_form(prob, *plan.kern)) {
    sgemm_dot(prob, *plan.kern, threads);
    return;
  }
  // Thread grid tm x tn: the factorization that splits the slivers most evenly, preferring
  // columns on a tie (each thread then packs only its own B).
  const int64_t slivers_m = ceil_div(std::min(M, plan.mb_max), mr);
  const int64_t slivers_n = ceil_div(N, nr);
  int best_tm = 1, best_tn = 1;
  double best_eff = -1.0;
  for (int tn = threads; tn >= 1; --tn) {
    if (threads % tn != 0) continue;
    const int tm = threads / tn;
    if (tn > slivers_n || tm > slivers_m) continue;
    const double eff_n = static_cast<double>(slivers_n) / (tn * ceil_div(slivers_n, tn));
    const double eff_m = static_cast<double>(slivers_m) / (tm * ceil_div(slivers_m, tm));
    const double eff = eff_n * eff_m;
    if (eff > best_eff + 1e-9) {
      best_eff = eff;
      best_tm = tm;
      best_tn = tn;
    }
  }
  if (threads > 1 && best_eff < 0.5 && K >= 8 * plan.kc_max && M * N <= (int64_t{1} << 16)) {
    sgemm_split_k(prob, plan, threads);
    return;
  }
  if (best_eff < 0.0) {  // fewer slivers than threads in both directions
    threads = 1;
    best_tm = best_tn = 1;
  }
  // A grid of rows has every thread pack all of B (N x K), a grid of columns has every thread
  // pack all of A (M x K) or share a large A panel (barriers, slivers read from the other core's
  // cache): rows win for M >= N. Measured at 2 threads, when columns still shared A: LeNet's
  // fc1 forward 256x120x400 134 -> 102 us, 800x784x256 and square 1024/2048 2-4% faster; for
  // M < N (150x25600x16, 64x120x400) columns stayed 10-50% faster.
  const double eff_rows =
      static_cast<double>(slivers_m) / (threads * ceil_div(slivers_m, threads));
  if (threads > 1 && M >= N && slivers_m >= threads && eff_rows >= 0.85 * best_eff) {
    best_tm = threads;
    best_tn = 1;
  }
  plan.threads = threads;
  plan.tm = best_tm;
  plan.tn = best_tn;

  // The tn threads of a grid row multiply the same A slivers. Each packing them into its own
  // panel costs tn-fold packing but no barriers and no reads of slivers packed in another
  // core's cache; that wins while a thread's slivers fit its L2 (measured at 2 threads: LeNet's
  // fc1 forward at batch 64, 64x120x400, 59 -> 29 us; 64x256x256 and 64x512x128 1.15x; panels of
  // 0.1-2 MiB equal within noise). Larger panels are packed once, by all threads together.
  const int64_t row_group_panel_bytes =
      ceil_div(slivers_m, plan.tm) * mr * plan.kc_even * static_cast<int64_t>(sizeof(float));
  plan.share_a = plan.tn > 1 && row_group_panel_bytes > kMaxPrivateAPanelBytes;

  // Scratch for the plan, and for its one-thread fallback (which uses it from the start).
  plan.slice_floats = max_slice_floats(prob, plan);
  Plan solo = solo_of(plan);
  solo.slice_floats = max_slice_floats(prob, solo);
  const size_t team_floats = plan.shared_a_floats() + threads * plan.slice_floats;
  plan.scratch = solo.scratch =
      given_scratch != nullptr
          ? given_scratch
          : t_scratch.get(threads > 1 ? std::max(team_floats, solo.slice_floats) : team_floats);

#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      // The runtime may give fewer threads than asked; the plan needs exactly `threads`, so
      // then thread 0 does it all. (No `single`: its barrier would cost a second one per call.)
      if (omp_get_num_threads() == threads) {
        run_thread(prob, plan, omp_get_thread_num());
      } else if (omp_get_thread_num() == 0) {
        run_thread(prob, solo, 0);
      }
    }
    return;
  }
#endif
  run_thread(prob, plan, 0);
}

// C = beta * C when the product is empty or scaled away; false: there is a product to compute.
bool scale_only(int64_t M, int64_t N, int64_t K, float alpha, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0 && alpha != 0.0f) return false;
  scale_c(M, N, beta, C, ldc);
  return true;
}

}  // namespace

namespace sgemm_detail {
void pack_a_portable_6(bool trans, const float* src, int64_t ld, int64_t i0, int m, int64_t p0,
                       int64_t kc, float* dst) {
  pack_a_sliver<6>(trans, src, ld, i0, m, p0, kc, dst);
}
void pack_b_portable_16(bool trans, const float* src, int64_t ld, int64_t j0, int n, int64_t p0,
                        int64_t kc, float* dst) {
  pack_b_sliver<16>(trans, src, ld, j0, n, p0, kc, dst);
}
}  // namespace sgemm_detail

const char* sgemm_kernel_name() { return kernel_for_level(selected_level())->name; }

void sgemm_force_kernel(const char* name) {
  const int best = best_supported_level();
  const int requested = level_from_name(name);
  g_selected_level.store(requested < 0 ? best : std::min(requested, best),
                         std::memory_order_release);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  if (scale_only(M, N, K, alpha, beta, C, ldc)) return;
  // Never nested inside another parallel region (available_threads() is 1 there).
  run_sgemm({trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc}, available_threads(),
            nullptr);
}

int64_t sgemm_serial_scratch_floats(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0 || K <= 0) return 0;
  const Problem prob{trans_a, trans_b, M, N, K, 1.0f, nullptr, 0, nullptr, 0, 0.0f, nullptr, 0};
  const Plan plan = base_plan(prob);
  return use_dot_form(prob, *plan.kern) ? 0 : static_cast<int64_t>(max_slice_floats(prob, plan));
}

void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc, float* scratch) {
  if (scale_only(M, N, K, alpha, beta, C, ldc)) return;
  run_sgemm({trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc}, 1, scratch);
}

}  // namespace cpu
}  // namespace nncore
