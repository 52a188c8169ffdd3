// Dropout and the small elementwise / indexing helpers. Where an output may alias an input
// exactly (y = x), the pointers are not restrict; every loop reads element i before writing it.
#include <cstring>

#include "nncore/kernels.h"
#include "nncore/philox.h"

namespace nncore::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kParallelMinDropout = 1 << 12;  // ~40 integer ops per element: parallel sooner
}  // namespace

// mask[i] = u_i >= p ? 1/(1-p) : 0 with u_i = philox_uniform(seed, offset, i); y = x * mask.
// philox_uniform(seed, offset, i) is word i%4 of Philox block offset + i/4, so one Philox call
// here serves four consecutive elements (4x less work; same numbers, checked in
// bench/dev/cpu_kernels_check.cpp against philox_uniform itself).
void dropout_forward(const float* x, float* y, float* mask, int64_t n, double p_double,
                     uint64_t seed, uint64_t offset) {
  const float p = static_cast<float>(p_double);
  const float keep_scale = dropout_keep_scale(p_double);  // inf when p == 1: nothing is kept
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const int64_t groups = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > kParallelMinDropout)
  for (int64_t g = 0; g < groups; ++g) {
    const uint64_t block = offset + static_cast<uint64_t>(g);
    const Philox4 bits = philox4x32_10(
        Philox4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}}, key0,
        key1);
    const int64_t base = 4 * g;
    const int64_t count = n - base < 4 ? n - base : 4;
    for (int64_t k = 0; k < count; ++k) {
      const float u = static_cast<float>(bits.v[k] >> 8) * (1.0f / 16777216.0f);
      const float m = u >= p ? keep_scale : 0.0f;
      mask[base + k] = m;
      y[base + k] = x[base + k] * m;
    }
  }
}

// y = a * b
void mul(const float* a, const float* b, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

// y = value
void fill(float* y, float value, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = value;
}

void fill_tensors(float* const* ys, const int64_t* sizes, int64_t count, float value) {
  for (int64_t t = 0; t < count; ++t) fill(ys[t], value, sizes[t]);
}

// y += alpha * x
void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// y *= alpha
void scale(float* y, float alpha, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

// y[r, :] = x[index[r], :], rows of row_bytes bytes; all-one bits for an index out of range
void gather_rows(const void* x, const int32_t* index, int64_t rows, int64_t source_rows,
                 int64_t row_bytes, void* y) {
  const char* src = static_cast<const char*>(x);
  char* dst = static_cast<char*>(y);
#pragma omp parallel for schedule(static) if (rows * row_bytes > 4 * kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = index[r];
    if (s >= 0 && s < source_rows)
      std::memcpy(dst + r * row_bytes, src + s * row_bytes, static_cast<size_t>(row_bytes));
    else
      std::memset(dst + r * row_bytes, 0xff, static_cast<size_t>(row_bytes));
  }
}

// out[r] = argmax_c x[r, c], the first maximum; NaN counts as the maximum (as in
// torch/numpy argmax), the first NaN wins.
void argmax_rows(const float* x, int64_t rows, int64_t cols, int32_t* out) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float best = row[0];
    int64_t best_c = 0;
    if (best == best) {
      for (int64_t c = 1; c < cols; ++c) {
        const float v = row[c];
        if (v > best || v != v) {
          best = v;
          best_c = c;
          if (v != v) break;
        }
      }
    }
    out[r] = static_cast<int32_t>(best_c);
  }
}

}  // namespace nncore::cpu
