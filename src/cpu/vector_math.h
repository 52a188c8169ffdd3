// Branch-free float exp / sigmoid / tanh that GCC auto-vectorizes at the baseline x86-64 ISA
// (SSE2, no -ffast-math): no libm calls, no data-dependent branches, selects done on bit
// patterns (select_bits) and float<->int punning through std::memcpy.
// Max error against double-precision libm (sweep of [-104, 89] every 1e-4, 4M random points,
// every 3rd/7th bit pattern of |x| in [2^-31, 88]): exp_approx 0.99 ulp (denormal results
// included), sigmoid_approx 2.35 ulp, tanh_approx 1.51 ulp. NaN passes through; inf behaves.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "wide_vectors.h"

namespace nncore::cpu {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// c ? a : b through an integer bit mask. GCC (with the default -ftrapping-math) will not
// if-convert a ?: whose arms are computed floats (it does not speculate FP ops that may trap),
// so such a loop stays scalar; integer and/or on the bit patterns vectorizes.
inline float select_bits(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return bits_to_float((float_to_bits(a) & m) | (float_to_bits(b) & ~m));
}

// relu_backward's rule, PyTorch's threshold_backward: dx = (x <= 0 ? 0 : dy), a select (dy NaN
// or inf where x <= 0 gives 0; a NaN x passes dy, as PyTorch's does); on the bits, so that it
// vectorizes inside any loop.
inline float relu_grad(float x, float dy) { return select_bits(!(x <= 0.0f), dy, 0.0f); }

// out[s] = act(in[s] + bias) for s < n, act = max(., 0) when relu (NaN stays NaN), else the
// identity: a bias (+ ReLU) over one row of a plane. out may be in itself (each element is read,
// then written), never partly overlap it. Inlined, so it vectorizes at the caller's width.
NNCORE_ALWAYS_INLINE void add_bias_row(const float* in, float* out, int64_t n, float bias,
                                       bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t s = 0; s < n; ++s) out[s] = std::max(in[s] + bias, 0.0f);
  } else {
#pragma omp simd
    for (int64_t s = 0; s < n; ++s) out[s] = in[s] + bias;
  }
}

// e^x. Like std::exp it overflows to inf above ln(FLT_MAX) ~ 88.72, gives denormals below
// ln(FLT_MIN) ~ -87.34 and 0 below ~ -103.97 (the input is clamped to [-104, 88.8], where
// 2^n, n in [-150, 128], is the product of two normal powers of 2).
// x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 = C1 + C2, C1 exact in 9 bits so n*C1 is
// exact); e^r = 1 + r + r^2*P(r), P of degree 4
// (weighted least-squares fit, relative error ~4e-9); 2^n built in the exponent
// bits, split into two factors so n = 128 at the top of the range does not overflow.
inline float exp_approx(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kC1 = 0.693359375f;
  constexpr float kC2 = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr float kLo = -104.0f;  // e^x < FLT_TRUE_MIN / 2: the result rounds to 0
  constexpr float kHi = 88.8f;    // n <= 128; er * 2^128 > FLT_MAX overflows to inf
  // Clamp with bit-mask selects (a NaN fails both compares and passes through). std::max/min
  // here become branches that jump threading duplicates the rest of the body into, which
  // then no longer if-converts.
  x = select_bits(x < kLo, kLo, x);
  x = select_bits(x > kHi, kHi, x);
  const float t = x * kLog2e + kRound;  // round-to-nearest n, held in t's low mantissa bits
  const float fn = t - kRound;
  const int32_t n = static_cast<int32_t>(float_to_bits(t)) - 0x4B400000;  // n in [-150, 128]
  const float r = (x - fn * kC1) - fn * kC2;
  float p = 1.3751407e-3f;
  p = p * r + 8.3689168e-3f;
  p = p * r + 4.1669533e-2f;
  p = p * r + 1.6666518e-1f;
  p = p * r + 4.9999988e-1f;
  const float er = (p * (r * r) + r) + 1.0f;
  const int32_t n1 = n >> 1, n2 = n - n1;  // each in [-75, 64]: normal powers of 2
  const float s1 = bits_to_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = bits_to_float(static_cast<uint32_t>(n2 + 127) << 23);
  return er * s1 * s2;  // one rounding where the result is denormal
}

// 1/(1+e^-x) in the stable form: e = e^-|x| <= 1; x >= 0: 1/(1+e), x < 0: e/(1+e).
inline float sigmoid_approx(float v) {
  const float e = exp_approx(-std::fabs(v));
  // Numerator 1 or e as max(e, 1 or 0) (e <= 1): a select against a constant plus a max,
  // which vectorize where a select between two computed values does not. NaN propagates.
  const float num = std::max(e, v >= 0.0f ? 1.0f : 0.0f);
  return num / (1.0f + e);
}

// tanh(x) = sign(x) * (1 - e)/(1 + e), e = e^-2|x|, for |x| >= 0.55; below that 1 - e would
// cancel, so an odd polynomial x + x^3*P(x^2) (least-squares fit, rel. error ~3e-9) is used.
inline float tanh_approx(float v) {
  const float a = std::fabs(v);
  const float a2 = a * a;
  float p = -6.287601e-3f;
  p = p * a2 + 2.108202e-2f;
  p = p * a2 + -5.385511e-2f;
  p = p * a2 + 1.3332617e-1f;
  p = p * a2 + -3.333332e-1f;
  const float small = a + a * a2 * p;
  const float e = exp_approx(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  const bool is_small = a < 0.55f;
  const float t = select_bits(is_small, small, big);
  return std::copysign(t, v);
}

}  // namespace nncore::cpu
