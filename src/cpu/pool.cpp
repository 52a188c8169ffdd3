// Max and average 2-D pooling over `planes` independent H x W planes (planes = N*C).
// Window (oh, ow) covers rows oh*sh - ph .. + kh - 1 and columns ow*sw - pw .. + kw - 1;
// OH = (H + 2ph - kh)/sh + 1. One thread owns whole planes, so every kernel is deterministic.
#include <algorithm>
#include <cstring>
#include <limits>

#include "nncore/kernels.h"
#include "pool_2x2.h"
#include "wide_vectors.h"
#include "work_split.h"

namespace nncore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;

// The part of a window that lies inside the image, [lo, hi) along one axis.
struct Span {
  int64_t lo, hi;
  int64_t size() const { return hi > lo ? hi - lo : 0; }
};
inline Span clip_window(int64_t start, int64_t k, int64_t size) {
  return {std::max<int64_t>(start, 0), std::min(start + k, size)};
}

// Outputs o in [lo, hi) whose tap `tap` lands inside the image: 0 <= o*stride - pad + tap < size.
inline Span valid_outputs(int64_t size, int64_t pad, int64_t tap, int64_t stride, int64_t out) {
  const int64_t first = pad - tap;
  int64_t lo = first > 0 ? ceil_div(first, stride) : 0;
  const int64_t limit = size + pad - tap;
  int64_t hi = limit > 0 ? (limit - 1) / stride + 1 : 0;
  lo = std::min(lo, out);
  return {lo, std::max(lo, std::min(hi, out))};
}

// valid_outputs for every column tap j < kw, computed once per call (two integer divisions each,
// which would otherwise dominate small windows); kernels wider than kMaxTaps compute on the fly.
constexpr int64_t kMaxTaps = 64;
struct TapRanges {
  Span range[kMaxTaps];
  int64_t size, pad, stride, out;
  // The taps j that land inside the image for some output, 0 <= o*stride - pad + j < size with
  // o < out; the others sweep nothing, and a huge kernel (padded as much) has few of these.
  Span taps;
  TapRanges(int64_t size_, int64_t pad_, int64_t k, int64_t stride_, int64_t out_)
      : size(size_), pad(pad_), stride(stride_), out(out_),
        taps{std::max<int64_t>(pad - (out - 1) * stride, 0), std::min(k, size + pad)} {
    for (int64_t j = 0; j < std::min(k, kMaxTaps); ++j)
      range[j] = valid_outputs(size, pad, j, stride, out);
  }
  Span operator[](int64_t j) const {
    return j < kMaxTaps ? range[j] : valid_outputs(size, pad, j, stride, out);
  }
};

// The loops below are tap-major: for one output row, each window tap (h, j) sweeps all the
// outputs it belongs to, so the innermost loop runs over ow (vectorized; contiguous when sw == 1)
// instead of over a tiny window. Taps are visited in row-major window order (h, then j).

}  // namespace

// y = max over the in-image part of the window (padding is -inf, so it never wins);
// argmax = h*W + w of the tap PyTorch picks: scanning the window in row-major order from its
// first in-image tap, a later tap takes over when it is greater or NaN (takes_over), so the
// first maximum wins, or the last NaN. A window with no in-image tap (only possible when a
// padding is >= its kernel size; PyTorch forbids pad > k/2) gives y = -inf, argmax = -1
// (backward skips it).
namespace {

// PyTorch's max-pool rule for a tap cand met after best: take = (cand > best) | (cand != cand),
// for floats and for vectors alike (two compares and an or; no branch; an out-parameter, as a
// wide vector returned by value changes the ABI between target clones). It is associative, so a
// tree of takes_over picks the tap that the row-major scan picks, NaN included.
template <typename T, typename Mask>
NNCORE_ALWAYS_INLINE void takes_over(const T& cand, const T& best, Mask& take) {
  take = (cand > best) | (cand != cand);
}

// ---- 2x2, stride 2, unpadded (LeNet's), in vector chunks ------------------------------------
// Output ow's window is top[2ow], top[2ow+1], bottom[2ow], bottom[2ow+1] (window order). A chunk
// of L outputs loads 2L floats of each row and splits them into even and odd lanes with two
// shuffles; rows are covered by chunks of the widest width that fits, the last one pulled back
// to end at the row's end (overlapping outputs are computed twice, identically).

// v = {first, first + step, ...}, as a constant ramp plus a broadcast (filled lane by lane it
// costs one insert per lane). (Vectors go through references: a function returning a wide
// vector type by value changes the ABI between the target clones, which GCC warns about.)
template <typename IVec>
NNCORE_ALWAYS_INLINE void lane_indices(IVec& v, int32_t first, int32_t step) {
  IVec ramp{};
  for (int i = 0; i < static_cast<int>(sizeof(IVec) / 4); ++i) ramp[i] = i;
  v = ramp * step + first;
}

template <typename Vec>
struct Pool2x2 {
  static constexpr int L = sizeof(Vec) / sizeof(float);
  typedef typename IntsOf<Vec>::type IVec;

  // The windows of outputs ow .. ow + L-1, tap by tap in window order: taps[k][l] is tap k
  // (0: top left, 1: top right, 2: bottom left, 3: bottom right) of output ow + l.
  NNCORE_ALWAYS_INLINE static void load_taps(const float* top, const float* bottom, int64_t ow,
                                             Vec (&taps)[4]) {
    IVec even, odd;
    lane_indices(even, 0, 2);
    lane_indices(odd, 1, 2);
    Vec t0, t1, b0, b1;
    std::memcpy(&t0, top + 2 * ow, sizeof t0);
    std::memcpy(&t1, top + 2 * ow + L, sizeof t1);
    std::memcpy(&b0, bottom + 2 * ow, sizeof b0);
    std::memcpy(&b1, bottom + 2 * ow + L, sizeof b1);
    taps[0] = __builtin_shuffle(t0, t1, even);
    taps[1] = __builtin_shuffle(t0, t1, odd);
    taps[2] = __builtin_shuffle(b0, b1, even);
    taps[3] = __builtin_shuffle(b0, b1, odd);
  }

  // A fused convolution's PoolInputActivation as vectors: a(x) = max(x + bias, floor), floor 0
  // for ReLU, else -inf (which keeps every x + bias, NaN and -0 included; one vmaxps either way).
  struct Activation {
    Vec bias, floor;
    explicit Activation(const PoolInputActivation& a)
        : bias(Vec{} + a.bias),
          floor(Vec{} + (a.relu ? 0.0f : -std::numeric_limits<float>::infinity())) {}
  };

  // The taps of outputs ow .. ow + L-1, with a applied when kActivate.
  template <bool kActivate>
  NNCORE_ALWAYS_INLINE static void load_activated_taps(const float* top, const float* bottom,
                                                       int64_t ow, const Activation& act,
                                                       Vec (&taps)[4]) {
    load_taps(top, bottom, ow, taps);
    if constexpr (kActivate) {
      for (int k = 0; k < 4; ++k) {
        const Vec t = taps[k] + act.bias;
        taps[k] = act.floor > t ? act.floor : t;
      }
    }
  }

  // out[ow + l], out_index[ow + l] for l < L: takes_over as a tree, top pair, bottom pair, then
  // the two (each blend keeps the earlier side unless the later takes over; a tie keeps the
  // earlier tap, to the bit: -0 then +0 gives -0). rel = 0, 1, W, W+1: which tap won.
  template <bool kActivate>
  NNCORE_ALWAYS_INLINE static void forward(const float* top, const float* bottom, int64_t ow,
                                           int32_t top_index, int32_t W, const Activation& act,
                                           float* out, int32_t* out_index) {
    Vec t[4];
    load_activated_taps<kActivate>(top, bottom, ow, act, t);
    IVec top_takes, bottom_takes, bottom_wins;
    takes_over(t[1], t[0], top_takes);
    takes_over(t[3], t[2], bottom_takes);
    const Vec top_best = top_takes ? t[1] : t[0];
    const Vec bottom_best = bottom_takes ? t[3] : t[2];
    takes_over(bottom_best, top_best, bottom_wins);
    const Vec best = bottom_wins ? bottom_best : top_best;
    const IVec top_rel = -top_takes;          // 0 or 1 (a true lane is -1)
    const IVec bottom_rel = W - bottom_takes;  // W or W+1
    store(ow, top_index, best, bottom_wins ? bottom_rel : top_rel, out, out_index);
  }

  // out[ow + l] = best, out_index[ow + l] = index of the window's top left tap + rel.
  NNCORE_ALWAYS_INLINE static void store(int64_t ow, int32_t top_index, const Vec& best,
                                         const IVec& rel, float* out, int32_t* out_index) {
    IVec index;
    lane_indices(index, top_index + 2 * static_cast<int32_t>(ow), 2);
    index += rel;
    std::memcpy(out + ow, &best, sizeof best);
    std::memcpy(out_index + ow, &index, sizeof index);
  }

  // The inverse for non-overlapping windows: each of the 4L inputs under the chunk gets g of
  // its window if it is the window's argmax, else 0 (0 + g, as dx = 0; dx[argmax] += g
  // gives), g = dy, or dy * [relu_y > 0] when relu_y is not null. Lanes whose argmax is not in
  // their window are flagged in `outside`.
  NNCORE_ALWAYS_INLINE static void backward(const float* dy, const float* relu_y,
                                            const int32_t* index, int64_t ow, int32_t top_index,
                                            int32_t W, float* top, float* bottom,
                                            IVec& outside) {
    IVec rel, first, lanes;
    std::memcpy(&rel, index + ow, sizeof rel);
    lane_indices(first, top_index + 2 * static_cast<int32_t>(ow), 2);
    rel -= first;
    const IVec is[4] = {rel == 0, rel == 1, rel == W, rel == W + 1};
    outside |= ~(is[0] | is[1] | is[2] | is[3]);
    Vec g;
    std::memcpy(&g, dy + ow, sizeof g);
    g += 0.0f;
    const Vec zero = Vec{};
    if (relu_y != nullptr) {
      Vec y;
      std::memcpy(&y, relu_y + ow, sizeof y);
      g = y <= zero ? zero : g;  // relu_grad: a NaN y passes g
    }
    Vec grad[4];
    for (int k = 0; k < 4; ++k) grad[k] = is[k] ? g : zero;
    // Interleave (even, odd) lanes back: {e0, o0, e1, o1, ...}.
    lane_indices(lanes, 0, 1);
    const IVec lo = lanes / 2 + (lanes % 2) * L;
    const IVec hi = lo + L / 2;
    const Vec rows[4] = {__builtin_shuffle(grad[0], grad[1], lo), __builtin_shuffle(grad[0], grad[1], hi),
                         __builtin_shuffle(grad[2], grad[3], lo), __builtin_shuffle(grad[2], grad[3], hi)};
    std::memcpy(top + 2 * ow, &rows[0], sizeof(Vec));
    std::memcpy(top + 2 * ow + L, &rows[1], sizeof(Vec));
    std::memcpy(bottom + 2 * ow, &rows[2], sizeof(Vec));
    std::memcpy(bottom + 2 * ow + L, &rows[3], sizeof(Vec));
  }

  // The average pool's chunk: out[ow + l] = (((0 + t0) + t1) + b0) + b1) / 4, summed in window
  // order from 0 like the general loop (so the results are the same bits).
  NNCORE_ALWAYS_INLINE static void average(const float* top, const float* bottom, int64_t ow,
                                           float* out) {
    Vec taps[4];
    load_taps(top, bottom, ow, taps);
    Vec sum = Vec{} + taps[0];
    for (int k = 1; k < 4; ++k) sum += taps[k];
    sum /= 4.0f;
    std::memcpy(out + ow, &sum, sizeof sum);
  }

  // Its inverse: each input under the chunk gets 0 + dy/4 of its window.
  NNCORE_ALWAYS_INLINE static void average_backward(const float* dy, int64_t ow, float* top,
                                                    float* bottom) {
    Vec share;
    std::memcpy(&share, dy + ow, sizeof share);
    share = Vec{} + share / 4.0f;
    IVec lanes;
    lane_indices(lanes, 0, 1);
    const IVec lo = lanes / 2, hi = lo + L / 2;  // {s0, s0, s1, s1, ...}
    const Vec first = __builtin_shuffle(share, lo), second = __builtin_shuffle(share, hi);
    std::memcpy(top + 2 * ow, &first, sizeof(Vec));
    std::memcpy(top + 2 * ow + L, &second, sizeof(Vec));
    std::memcpy(bottom + 2 * ow, &first, sizeof(Vec));
    std::memcpy(bottom + 2 * ow + L, &second, sizeof(Vec));
  }
};

// Calls chunk(ow) for chunks of L outputs covering a row of OW >= L, the last pulled back.
template <int64_t L, typename Chunk>
NNCORE_ALWAYS_INLINE void for_each_chunk(int64_t OW, Chunk chunk) {
  for (int64_t ow = 0;; ow = std::min(ow + L, OW - L)) {
    chunk(ow);
    if (ow + L >= OW) return;
  }
}

// A plane of a 2x2, stride-2, unpadded average pool (OW >= 4): y from x (row pitch W), or dx
// rows 2oh, 2oh+1 (columns < 2*OW) from dy.
template <typename Vec>
NNCORE_ALWAYS_INLINE void avg_pool_plane_2x2_chunks(const float* x, int64_t W, int64_t OH,
                                                    int64_t OW, float* y) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* top = x + 2 * oh * W;
    for_each_chunk<Pool2x2<Vec>::L>(OW, [&](int64_t ow) __attribute__((always_inline)) {
      Pool2x2<Vec>::average(top, top + W, ow, y + oh * OW);
    });
  }
}

template <typename Vec>
NNCORE_ALWAYS_INLINE void avg_pool_plane_2x2_backward_chunks(const float* dy, int64_t W,
                                                             int64_t OH, int64_t OW, float* dx) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* top = dx + 2 * oh * W;
    for_each_chunk<Pool2x2<Vec>::L>(OW, [&](int64_t ow) __attribute__((always_inline)) {
      Pool2x2<Vec>::average_backward(dy + oh * OW, ow, top, top + W);
    });
  }
}

// A plane of rows of OW >= L outputs, in chunks of L (the last one pulled back).
template <typename Vec, bool kActivate>
NNCORE_ALWAYS_INLINE void max_pool_plane_2x2_chunks(const float* x, int64_t ld, int64_t OH,
                                                    int64_t OW, int32_t W, float* y,
                                                    int32_t* argmax,
                                                    const PoolInputActivation& activation) {
  typedef Pool2x2<Vec> Chunk;
  const typename Chunk::Activation act(activation);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* top = x + 2 * oh * ld;
    const int32_t top_index = static_cast<int32_t>(2 * oh * W);
    for_each_chunk<Chunk::L>(OW, [&](int64_t ow) __attribute__((always_inline)) {
      Chunk::template forward<kActivate>(top, top + ld, ow, top_index, W, act, y + oh * OW,
                                         argmax + oh * OW);
    });
  }
}

template <typename Vec>
NNCORE_ALWAYS_INLINE bool max_pool_plane_2x2_backward_chunks(const float* dy, const float* relu_y,
                                                             const int32_t* index, int64_t OH,
                                                             int64_t OW, int32_t W, float* dx,
                                                             int64_t ld) {
  constexpr int64_t L = Pool2x2<Vec>::L;
  typename Pool2x2<Vec>::IVec outside{};
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* top = dx + 2 * oh * ld;
    const float* mask = relu_y != nullptr ? relu_y + oh * OW : nullptr;
    for (int64_t ow = 0;; ow = std::min(ow + L, OW - L)) {
      Pool2x2<Vec>::backward(dy + oh * OW, mask, index + oh * OW, ow,
                             static_cast<int32_t>(2 * oh * W), W, top, top + ld, outside);
      if (ow + L >= OW) break;
    }
  }
  for (int l = 0; l < L; ++l)
    if (outside[l] != 0) return false;
  return true;
}

// The general scatter, for one plane: dx = 0, then dx[argmax] += dy; returns how many argmax
// entries were outside [-1, HW) (skipped).
int64_t max_pool_plane_backward(const float* __restrict grad_out, const int32_t* __restrict idx,
                                int64_t HW, int64_t outputs, float* __restrict grad_in) {
  std::memset(grad_in, 0, static_cast<size_t>(HW) * sizeof(float));
  int64_t skipped = 0;
  for (int64_t o = 0; o < outputs; ++o) {
    if (idx[o] >= 0 && idx[o] < HW) {
      grad_in[idx[o]] += grad_out[o];
    } else if (idx[o] != -1) {
      ++skipped;
    }
  }
  return skipped;
}

// The plane for any OW, with a applied to the inputs when kActivate.
template <bool kActivate>
NNCORE_ALWAYS_INLINE void max_pool_plane_2x2_any(const float* x, int64_t ld, int64_t OH,
                                                 int64_t OW, int32_t W, float* y, int32_t* argmax,
                                                 const PoolInputActivation& act) {
  if (OW >= 16)
    return max_pool_plane_2x2_chunks<Floats16, kActivate>(x, ld, OH, OW, W, y, argmax, act);
  if (OW >= 8)
    return max_pool_plane_2x2_chunks<Floats8, kActivate>(x, ld, OH, OW, W, y, argmax, act);
  if (OW >= 4)
    return max_pool_plane_2x2_chunks<Floats4, kActivate>(x, ld, OH, OW, W, y, argmax, act);
  const auto a = [&](float v) { return kActivate ? act(v) : v; };
  for (int64_t oh = 0; oh < OH; ++oh, y += OW, argmax += OW) {
    const float* top = x + 2 * oh * ld;
    const float* bottom = top + ld;
    const int32_t top_index = static_cast<int32_t>(2 * oh * W);
    for (int64_t ow = 0; ow < OW; ++ow) {
      const float taps[4] = {a(top[2 * ow]), a(top[2 * ow + 1]), a(bottom[2 * ow]),
                             a(bottom[2 * ow + 1])};
      const int32_t rel[4] = {0, 1, W, W + 1};
      int k_best = 0;
      for (int k = 1; k < 4; ++k) {
        bool take;
        takes_over(taps[k], taps[k_best], take);
        if (take) k_best = k;
      }
      y[ow] = taps[k_best];
      argmax[ow] = top_index + 2 * static_cast<int32_t>(ow) + rel[k_best];
    }
  }
}

}  // namespace

// In the widest chunks that fit (rows of 14, LeNet's conv1, go as two chunks of 8); rows of
// fewer than 4 outputs one window at a time, with the same rule.
NNCORE_WIDEST_VECTORS
void max_pool_plane_2x2(const float* x, int64_t ld, int64_t OH, int64_t OW, int32_t W, float* y,
                        int32_t* argmax, const PoolInputActivation* act) {
  if (act != nullptr) return max_pool_plane_2x2_any<true>(x, ld, OH, OW, W, y, argmax, *act);
  max_pool_plane_2x2_any<false>(x, ld, OH, OW, W, y, argmax, PoolInputActivation{0.0f, false});
}

NNCORE_WIDEST_VECTORS
bool max_pool_plane_2x2_backward(const float* dy, const float* relu_y, const int32_t* index,
                                 int64_t OH, int64_t OW, int32_t W, float* dx, int64_t ld) {
  if (OW >= 16) {
    return max_pool_plane_2x2_backward_chunks<Floats16>(dy, relu_y, index, OH, OW, W, dx, ld);
  }
  if (OW >= 8) {
    return max_pool_plane_2x2_backward_chunks<Floats8>(dy, relu_y, index, OH, OW, W, dx, ld);
  }
  return max_pool_plane_2x2_backward_chunks<Floats4>(dy, relu_y, index, OH, OW, W, dx, ld);
}

namespace {

NNCORE_WIDEST_VECTORS
void avg_pool_plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y) {
  if (OW >= 16) {
    avg_pool_plane_2x2_chunks<Floats16>(x, W, OH, OW, y);
  } else if (OW >= 8) {
    avg_pool_plane_2x2_chunks<Floats8>(x, W, OH, OW, y);
  } else {
    avg_pool_plane_2x2_chunks<Floats4>(x, W, OH, OW, y);
  }
}

NNCORE_WIDEST_VECTORS
void avg_pool_plane_2x2_backward(const float* dy, int64_t W, int64_t OH, int64_t OW, float* dx) {
  if (OW >= 16) {
    avg_pool_plane_2x2_backward_chunks<Floats16>(dy, W, OH, OW, dx);
  } else if (OW >= 8) {
    avg_pool_plane_2x2_backward_chunks<Floats8>(dy, W, OH, OW, dx);
  } else {
    avg_pool_plane_2x2_backward_chunks<Floats4>(dy, W, OH, OW, dx);
  }
}

}  // namespace

void max_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, float* y, int32_t* argmax) {
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) {
#pragma omp parallel for schedule(static) if (planes * OH * OW * 4 > kParallelMin)
    for (int64_t p = 0; p < planes; ++p) {
      max_pool_plane_2x2(x + p * H * W, W, OH, OW, static_cast<int32_t>(W), y + p * OH * OW,
                         argmax + p * OH * OW);
    }
    return;
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int32_t stride_w = static_cast<int32_t>(sw);
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) \
    if (planes * OH * OW * std::min(kh, H) * std::min(kw, W) > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* __restrict best = y + (p * OH + oh) * OW;
      int32_t* __restrict best_idx = argmax + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {  // -inf, and the window's first in-image tap
        const Span ws = clip_window(ow * sw - pw, kw, W);
        best[ow] = neg_inf;
        best_idx[ow] = (hs.size() > 0 && ws.size() > 0) ? static_cast<int32_t>(hs.lo * W + ws.lo)
                                                         : -1;
      }
      for (int64_t h = hs.lo; h < hs.hi; ++h) {
        const float* __restrict in_row = in + h * W;
        for (int64_t j = ow_ranges.taps.lo; j < ow_ranges.taps.hi; ++j) {
          const Span os = ow_ranges[j];
          const int64_t shift = j - pw;  // w = ow*sw + shift
          const int32_t idx_base = static_cast<int32_t>(h * W + shift);
#pragma omp simd
          for (int64_t ow = os.lo; ow < os.hi; ++ow) {
            const float v = in_row[ow * sw + shift];
            const float b = best[ow];
            bool take;
            takes_over(v, b, take);
            best[ow] = take ? v : b;
            best_idx[ow] = take ? idx_base + static_cast<int32_t>(ow) * stride_w : best_idx[ow];
          }
        }
      }
    }
  }
}

// dx = 0, then dx[argmax] += dy (overlapping windows add up). When the shapes are those of a 2x2,
// stride-2 pool (OH = H/2, OW = W/2) with rows of at least 8 outputs (shorter ones gained
// nothing: LeNet's 5 ran 2x slower), a plane is first written window by window, which is the
// same when every argmax lies in its own window (checked; a plane where one does not is redone
// by the scatter).
int64_t max_pool2d_backward(const float* dy, const int32_t* argmax, int64_t planes, int64_t H,
                            int64_t W, int64_t OH, int64_t OW, float* dx) {
  const bool windows_2x2 = OH == H / 2 && OW == W / 2 && OW >= 8;
  int64_t skipped = 0;
#pragma omp parallel for schedule(static) reduction(+ : skipped) \
    if (planes * (H * W + OH * OW) > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* grad_in = dx + p * H * W;
    const float* grad_out = dy + p * OH * OW;
    const int32_t* idx = argmax + p * OH * OW;
    if (windows_2x2 && max_pool_plane_2x2_backward(grad_out, nullptr, idx, OH, OW,
                                                   static_cast<int32_t>(W), grad_in, W)) {
      for (int64_t h = 0; W > 2 * OW && h < 2 * OH; ++h) grad_in[h * W + W - 1] = 0.0f;  // odd W
      if (H > 2 * OH) std::memset(grad_in + (H - 1) * W, 0, sizeof(float) * W);       // odd H
    } else {
      skipped += max_pool_plane_backward(grad_out, idx, H * W, OH * OW, grad_in);
    }
  }
  return skipped;
}

// y = (sum of the in-image taps) / divisor, divisor = kh*kw if count_include_pad, else the
// number of in-image taps. (Without ceil_mode a window never passes the padded border, so
// kh*kw is exactly PyTorch's count_include_pad divisor.)
namespace {

// That divisor for the window of rows hs and columns from w0 (kh*kw in float: no int64
// overflow for a huge window; exact while kh and kw are below 2^24, as any real one is).
inline float avg_divisor(bool count_include_pad, int64_t kh, int64_t kw, Span hs, int64_t w0,
                         int64_t W) {
  if (count_include_pad) return static_cast<float>(kh) * static_cast<float>(kw);
  return static_cast<float>(hs.size() * clip_window(w0, kw, W).size());
}

}  // namespace

void avg_pool2d_forward(const float* x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                        int64_t OW, bool count_include_pad, float* y) {
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && OW >= 4) {
#pragma omp parallel for schedule(static) if (planes * OH * OW * 4 > kParallelMin)
    for (int64_t p = 0; p < planes; ++p) {  // no padding: both divisors are 4
      avg_pool_plane_2x2(x + p * H * W, W, OH, OW, y + p * OH * OW);
    }
    return;
  }
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) \
    if (planes * OH * OW * std::min(kh, H) * std::min(kw, W) > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* __restrict in = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* __restrict sum = y + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      for (int64_t ow = 0; ow < OW; ++ow) sum[ow] = 0.0f;
      for (int64_t h = hs.lo; h < hs.hi; ++h) {
        const float* __restrict in_row = in + h * W;
        for (int64_t j = ow_ranges.taps.lo; j < ow_ranges.taps.hi; ++j) {
          const Span os = ow_ranges[j];
          const int64_t shift = j - pw;
#pragma omp simd
          for (int64_t ow = os.lo; ow < os.hi; ++ow) sum[ow] += in_row[ow * sw + shift];
        }
      }
      for (int64_t ow = 0; ow < OW; ++ow) {
        const float divisor = avg_divisor(count_include_pad, kh, kw, hs, ow * sw - pw, W);
        sum[ow] = divisor > 0.0f ? sum[ow] / divisor : 0.0f;
      }
    }
  }
}

// dx[h, w] = sum over windows containing (h, w) of dy / divisor (same divisor as forward).
void avg_pool2d_backward(const float* dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                         int64_t OW, bool count_include_pad, float* dx) {
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && OW >= 4) {
#pragma omp parallel for schedule(static) if (planes * (H * W + OH * OW) > kParallelMin)
    for (int64_t p = 0; p < planes; ++p) {
      float* grad_in = dx + p * H * W;
      avg_pool_plane_2x2_backward(dy + p * OH * OW, W, OH, OW, grad_in);
      for (int64_t h = 0; W > 2 * OW && h < 2 * OH; ++h) grad_in[h * W + W - 1] = 0.0f;  // odd W
      if (H > 2 * OH) std::memset(grad_in + (H - 1) * W, 0, sizeof(float) * W);       // odd H
    }
    return;
  }
  constexpr int64_t kChunk = 256;  // outputs per pass: their shares live in a stack buffer
  const TapRanges ow_ranges(W, pw, kw, sw, OW);
#pragma omp parallel for schedule(static) \
    if (planes * OH * OW * std::min(kh, H) * std::min(kw, W) > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* __restrict grad_in = dx + p * H * W;
    std::memset(grad_in, 0, static_cast<size_t>(H * W) * sizeof(float));
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* __restrict grad_out = dy + (p * OH + oh) * OW;
      const Span hs = clip_window(oh * sh - ph, kh, H);
      if (hs.size() == 0) continue;
      for (int64_t ow0 = 0; ow0 < OW; ow0 += kChunk) {
        const int64_t ow1 = std::min(OW, ow0 + kChunk);
        float share[kChunk];  // share[ow - ow0] = dy / divisor of window ow
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          const float divisor = avg_divisor(count_include_pad, kh, kw, hs, ow * sw - pw, W);
          share[ow - ow0] = divisor > 0.0f ? grad_out[ow] / divisor : 0.0f;
        }
        for (int64_t h = hs.lo; h < hs.hi; ++h) {
          float* __restrict grad_row = grad_in + h * W;
          for (int64_t j = ow_ranges.taps.lo; j < ow_ranges.taps.hi; ++j) {
            const Span os = ow_ranges[j];
            const int64_t lo = std::max(os.lo, ow0), hi = std::min(os.hi, ow1);
            const int64_t shift = j - pw;
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) grad_row[ow * sw + shift] += share[ow - ow0];
          }
        }
      }
    }
  }
}

}  // namespace nncore::cpu
