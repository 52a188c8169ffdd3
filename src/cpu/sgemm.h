// CPU SGEMM internals shared by sgemm.cpp (driver, packing, dispatch, portable kernel) and the
// per-ISA micro-kernel files sgemm_avx512.cpp / sgemm_avx2.cpp. The public entry point is
// nncore::cpu::sgemm, declared in nncore/kernel_signatures.inc.
//
// Kernel selection happens at run time (CPU feature detection). To force a lower path:
//   * environment: NNCORE_CPU_KERNEL=avx512|avx2|generic (read once, at the first sgemm call);
//   * code/tests:  nncore::cpu::sgemm_force_kernel("avx2"); sgemm_force_kernel(nullptr) or
//     "auto" goes back to the best kernel the CPU supports.
// A request for a path the CPU cannot run is clamped to the best path it can run.
#pragma once
#include <cstdint>

namespace nncore {
namespace cpu {

// Name of the micro-kernel the next sgemm call will use: "avx512", "avx2" or "generic".
const char* sgemm_kernel_name();
// Force a kernel path by name ("avx512", "avx2", "generic"); nullptr or "auto" = autodetect.
// Not meant to be called while another thread is inside sgemm.
void sgemm_force_kernel(const char* name);

// sgemm on the calling thread alone, packing into the caller's `scratch`: for a caller inside a
// parallel region (a conv pass), whose workspace holds each thread's packing buffers.
// scratch: sgemm_serial_scratch_floats(trans_a, trans_b, M, N, K) floats, 64-byte aligned.
int64_t sgemm_serial_scratch_floats(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);
void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc, float* scratch);

namespace sgemm_detail {

// One register tile: C[m, n] (op)= alpha * Apack[m, kc] * B[kc, n].
//   a: packed A sliver, element (k, r) at a[k*mr + r], zero-padded to mr rows;
//   b: B sliver, element (k, j) at b[k*b_stride + j]; b_stride = nr for a packed sliver, or ldb
//      when B is read in place. Columns up to nr are always readable (padding or real data);
//   m <= mr rows and n <= nr columns of C are written: C = alpha*AB + beta*C, and when
//   beta == 0 C is not read (write-only).
using TileFn = void (*)(int64_t kc, const float* a, const float* b, int64_t b_stride, float* c,
                        int64_t ldc, int m, int n, float alpha, float beta);

// Packs one sliver. For A: rows [i0, i0+count) of op(A) (count <= mr), K range [p0, p0+kc)
// -> dst[k*mr + r], rows count..mr-1 zero. For B: columns [j0, j0+count) of op(B) (count <=
// nr) -> dst[k*nr + j], columns count..nr-1 zero. `trans` says op(X) = X^T.
using PackFn = void (*)(bool trans, const float* src, int64_t ld, int64_t idx0, int count,
                        int64_t p0, int64_t kc, float* dst);

// Inner-product tile, for A (m x kc) and B (n x kc) both contiguous along k (C = A B^T):
//   C[i, j] = alpha * sum_{k < kc} a[i*lda + k] * b[j*ldb + k] + beta * C[i, j]
// for i < m <= dot_mr, j < n <= dot_nr; beta == 0: C is not read. Vectors run along k.
using DotTileFn = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb,
                           float* c, int64_t ldc, int m, int n, float alpha, float beta);

struct MicroKernel {
  const char* name;
  int mr;  // rows of the register tile (broadcast dimension)
  int nr;  // columns of the register tile (vector dimension)
  TileFn tile;
  PackFn pack_a;
  PackFn pack_b;
  int dot_mr = 0, dot_nr = 0;  // inner-product tile (nullptr: the family has none)
  DotTileFn dot_tile = nullptr;
};

// Portable packing routines (sgemm.cpp), for the families without their own.
void pack_a_portable_6(bool, const float*, int64_t, int64_t, int, int64_t, int64_t, float*);
void pack_b_portable_16(bool, const float*, int64_t, int64_t, int, int64_t, int64_t, float*);

// Each returns nullptr when the family was not compiled in (non-x86 builds).
const MicroKernel* microkernel_avx512();
const MicroKernel* microkernel_avx2();

}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace nncore
