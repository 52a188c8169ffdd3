// How the CPU kernels split work into blocks and over threads: the integer rounding of block
// counts and the thread count a kernel may fork (never nested inside another parallel region).
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nncore::cpu {

// ceil(a / b) for b > 0 and any sign of a (division truncates toward zero), without the
// overflow of a + b - 1 (huge paddings and strides).
constexpr int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b > 0 ? 1 : 0); }

// n rounded up to a multiple of `multiple` (> 0), for n >= 0.
constexpr int64_t round_up(int64_t n, int64_t multiple) {
  return ceil_div(n, multiple) * multiple;
}

// Threads a kernel may fork: OpenMP's maximum, or 1 inside a parallel region (the caller's
// threads already share the work) or without OpenMP.
inline int available_threads() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

// Splits [0, total) into `parts` nearly equal ranges; returns range `index` as [lo, hi)
// (contiguous, sizes differ by at most one).
inline void split_range(int64_t total, int parts, int index, int64_t* lo, int64_t* hi) {
  const int64_t base = total / parts, extra = total % parts;
  *lo = index * base + std::min<int64_t>(index, extra);
  *hi = *lo + base + (index < extra ? 1 : 0);
}

}  // namespace nncore::cpu
