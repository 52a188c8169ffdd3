// Small functions that the CPU kernels and their CUDA twins share, so that both devices compute
// the same thing from one definition: compiled as __host__ __device__ by nvcc, inline otherwise.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define NNCORE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define NNCORE_HOST_DEVICE inline
#endif

namespace nncore {

// Optimizer state (SGD's momentum buffers, Adam's moments) is stored with subnormals flushed to a
// zero of the same sign. The state of a parameter whose gradient stays 0 (a dead ReLU unit)
// decays geometrically into the subnormal range within ~800 steps, and there every x86 FP
// operation on it takes a microcode assist, ~100x slower. A subnormal entry would move its
// parameter by under lr * FLT_MIN (~1e-39): no parameter above ~1e-31 changes.
NNCORE_HOST_DEVICE float flush_subnormal(float x) {
  return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}

// ---- the multiply-adds of the optimizer updates, as PyTorch's CPU kernels compute them ---------
// HardwareFma: fmaf, a*b + c rounded once, one instruction where the code is compiled for one:
// CUDA, the CPU loops built for AVX2 + FMA, aarch64. PyTorch's AVX2 / AVX-512 kernels fuse the
// same way. UnfusedFma: a*b, rounded, + c, rounded: what PyTorch computes on x86-64 CPUs without
// FMA (its DEFAULT kernels), used by the loops built for that baseline target, which has no FMA
// instruction a compiler could contract the two into.
struct HardwareFma {
  NNCORE_HOST_DEVICE static float apply(float a, float b, float c) { return fmaf(a, b, c); }
};
struct UnfusedFma {
  static float apply(float a, float b, float c) { return a * b + c; }
};

// ---- optimizer updates, one element: torch.optim's arithmetic, bit for bit -----------------
// PyTorch's CPU kernels compute `x.add_(y, alpha=a)` as Fma(y, a, x), `lerp` as one Fma and
// `addcmul` as Fma(value * t1, t2, self), Fma as above; its hyper-parameters are Python doubles,
// rounded once to float where a kernel takes them. The same operations give PyTorch 2.13's CPU
// bits (tests/test_optim.py), and the GPU's are those of an AVX2 / AVX-512 CPU; only Adam's
// parameter can differ, in the last bit, where PyTorch's sqrt is not correctly rounded.
// Subnormal state is flushed (above).

struct SgdScalars {
  float neg_lr, momentum, keep, weight_decay;  // keep = 1 - dampening
  bool decay, with_momentum;                   // weight_decay != 0, momentum != 0
};
inline SgdScalars sgd_scalars(double lr, double momentum, double dampening, double weight_decay) {
  return {static_cast<float>(-lr), static_cast<float>(momentum),
          static_cast<float>(1.0 - dampening), static_cast<float>(weight_decay),
          weight_decay != 0.0, momentum != 0.0};
}

// g = grad + wd*p (grad.add(p, alpha=wd)); with momentum: buf = momentum*buf + (1-dampening)*g
// (buf.mul_(momentum).add_(g, alpha=1-dampening); buf = g on the first step), then
// g = nesterov ? g + momentum*buf : buf; returns p - lr*g (p.add_(g, alpha=-lr)).
// (decay and momentum are s.decay and s.with_momentum, parameters so that CPU loops can make
// them constants. Without decay wd*p is skipped, as torch does: 0*p would turn an inf p to NaN.)
template <class Fma>
NNCORE_HOST_DEVICE float sgd_update(float p, float grad, float* buf, const SgdScalars& s,
                                    bool decay, bool momentum, bool first_step, bool nesterov) {
  float g = decay ? Fma::apply(p, s.weight_decay, grad) : grad;
  if (momentum) {
    const float b = flush_subnormal(first_step ? g : Fma::apply(g, s.keep, s.momentum * *buf));
    *buf = b;
    g = nesterov ? Fma::apply(b, s.momentum, g) : b;
  }
  return Fma::apply(g, s.neg_lr, p);
}

struct AdamScalars {
  float weight, weight_minus_1;  // lerp weight 1 - beta1, and weight - 1 (rounded in float)
  bool lerp_from_m;              // |weight| < 0.5: lerp computes from m's side, else from g's
  float beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, weight_decay;
  bool decay;                    // weight_decay != 0
};
// bc1 = 1 - beta1^step, bc2 = 1 - beta2^step; step_size = lr / bc1 (all in double).
inline AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps,
                                double weight_decay, int64_t step) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const float weight = static_cast<float>(1.0 - beta1);
  return {weight, weight - 1.0f, std::fabs(weight) < 0.5f, static_cast<float>(beta2),
          static_cast<float>(1.0 - beta2), static_cast<float>(-(lr / bc1)),
          static_cast<float>(std::sqrt(bc2)), static_cast<float>(eps),
          static_cast<float>(weight_decay), weight_decay != 0.0};
}

// g = grad + wd*p; m = lerp(m, g, 1 - beta1); v = beta2*v + (1-beta2)*g^2
// (v.mul_(beta2).addcmul_(g, g, value=1-beta2)); returns
// p - step_size * m / (sqrt(v) / sqrt(bc2) + eps) (p.addcdiv_(m, denom, value=-step_size)).
// (decay and lerp_from_m are s.decay and s.lerp_from_m, parameters so that CPU loops can make
// them constants.)
template <class Fma>
NNCORE_HOST_DEVICE float adam_update(float p, float grad, float* m, float* v,
                                     const AdamScalars& s, bool decay, bool lerp_from_m) {
  const float g = decay ? Fma::apply(p, s.weight_decay, grad) : grad;
  const float mi = flush_subnormal(lerp_from_m ? Fma::apply(s.weight, g - *m, *m)
                                               : Fma::apply(s.weight_minus_1, g - *m, g));
  const float vi = flush_subnormal(Fma::apply(s.one_minus_beta2 * g, g, s.beta2 * *v));
  *m = mi;
  *v = vi;
  return p + s.neg_step_size * mi / (sqrtf(vi) / s.bc2_sqrt + s.eps);
}

// ---- dropout: the scale of the kept values, 1/(1-p), as PyTorch's bits -----------------------
// PyTorch divides by the double 1 - p, rounded to float: 10 for p = 0.9, where
// 1.0f / (1.0f - 0.9f) = 9.999998 (and 1000.0129 for p = 0.999, against 999.99994).
inline float dropout_keep_scale(double p) { return 1.0f / static_cast<float>(1.0 - p); }

}  // namespace nncore
