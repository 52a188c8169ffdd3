// im2col / col2im in Caffe's batched layout: col is (C*kh*kw, N*OH*OW), row r = (c*kh + i)*kw + j,
// column (n*OH + oh)*OW + ow, with OH = (H + 2ph - kh)/sh + 1 (likewise OW).
//
// Both kernels work on (n, c) planes and walk the taps (i, j) in the outer loops, so the inner
// loop is one output row: OW contiguous floats of col against a shifted row of the plane.
// Padding is handled once per plane rather than per element: im2col copies the plane into a
// zero-bordered buffer, col2im accumulates into a buffer with zero column borders (rows outside
// the image are simply never visited). The buffers hold only the part of the padded plane that
// windows touching the image read (windows reading only padding give zeros), so their size
// does not grow with the padding. For stride 1 the row copies/adds are vector chunks, as
// wide as the CPU has (the per-row functions are compiled for AVX-512, AVX2 and baseline).
#include <algorithm>
#include <cstring>
#include <vector>

#include "nncore/kernels.h"
#include "region_errors.h"
#include "wide_vectors.h"
#include "work_split.h"

namespace nncore::cpu {

namespace {

// Below this many col elements a call runs on one thread (a fork/join costs a few us).
constexpr int64_t kParallelMin = 1 << 15;

// Output positions [lo, hi) along one axis whose window [o*stride, o*stride + kernel) of the
// padded input overlaps the image [pad, pad + size); the other windows read only padding.
struct WindowSpan {
  int64_t lo, hi;
  bool empty() const { return lo >= hi; }
};
inline WindowSpan windows_on_image(int64_t size, int64_t kernel, int64_t stride, int64_t pad,
                                   int64_t out) {
  const int64_t lo = std::clamp<int64_t>(ceil_div(pad - kernel + 1, stride), 0, out);
  const int64_t hi = size > 0 ? std::min(out, ceil_div(pad + size, stride)) : lo;
  return {lo, std::max(lo, hi)};
}

// dst[0, n) = src[0, n), n >= lanes of Vec: the last chunk is pulled back to end at n and
// overlaps the previous one (both write the same values), so there is no scalar tail. (A plain
// chunked loop would be recognized as a memcpy idiom and become a library call per short row.)
template <typename Vec>
NNCORE_ALWAYS_INLINE void copy_chunks(float* __restrict dst, const float* __restrict src, int64_t n) {
  constexpr int64_t L = sizeof(Vec) / sizeof(float);
  Vec v;
  for (int64_t t = 0;; t = std::min(t + L, n - L)) {
    std::memcpy(&v, src + t, sizeof v);
    std::memcpy(dst + t, &v, sizeof v);
    if (t + L >= n) break;
  }
}

// dst[0, n) += src[0, n), n >= lanes of Vec: the last chunk [n - L, n) is summed from the
// original dst before the loop and stored after it; the lanes it shares with the loop's last
// chunk get the same value dst + src twice, so each element is still added exactly once.
template <typename Vec>
NNCORE_ALWAYS_INLINE void add_chunks(float* __restrict dst, const float* __restrict src, int64_t n) {
  constexpr int64_t L = sizeof(Vec) / sizeof(float);
  Vec last, d, s;
  std::memcpy(&last, dst + n - L, sizeof last);
  std::memcpy(&s, src + n - L, sizeof s);
  last += s;
  for (int64_t t = 0; t + L < n; t += L) {
    std::memcpy(&d, dst + t, sizeof d);
    std::memcpy(&s, src + t, sizeof s);
    d += s;
    std::memcpy(dst + t, &d, sizeof d);
  }
  std::memcpy(dst + n - L, &last, sizeof last);
}

// dst[0, R) = src[0, R) as one move (R floats in one register).
template <int R>
NNCORE_ALWAYS_INLINE void copy_exact(float* __restrict dst, const float* __restrict src) {
  float v[R];
  std::memcpy(v, src, sizeof v);
  std::memcpy(dst, v, sizeof v);
}

// The moves for one row of n floats (copy_chunks, or the fixed-length ones below, which
// ignore n).
using RowCopy = void (*)(float* __restrict, const float* __restrict, int64_t);

// A row of 8 + Rest floats: one chunk of 8 and one exact move.
template <int Rest>
NNCORE_ALWAYS_INLINE void copy_row_8_plus(float* __restrict dst, const float* __restrict src,
                                          int64_t) {
  copy_exact<8>(dst, src);
  if constexpr (Rest > 0) copy_exact<Rest>(dst + 8, src + 8);
}

NNCORE_ALWAYS_INLINE void copy_row_scalar(float* __restrict dst, const float* __restrict src,
                                          int64_t n) {
  for (int64_t t = 0; t < n; ++t) dst[t] = src[t];
}

template <RowCopy copy>
NNCORE_ALWAYS_INLINE void copy_rows_with(float* dst, int64_t dst_step, const float* src,
                                         int64_t src_step, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) copy(dst + r * dst_step, src + r * src_step, n);
}

// rows x n floats: dst[r*dst_step + t] = src[r*src_step + t], with the widest chunks that fit
// in n, chosen once for all the rows (chosen per row, the branches cost as much as the copy:
// LeNet conv2's im2col, rows of 10, ran 1.7x faster with the choice outside the loop).
// Rows of 8 + 1, 2 or 4 floats go as a chunk and one exact move: rows of 10 as 8 + 2 ran
// 1.3-1.5x faster than as two overlapping chunks of 8 (the second store 8 bytes after the
// first); rests of 3, 5, 6 or 7 floats would take two or three moves, and overlapping chunks
// ran as fast or faster there (rows of 14 equal, of 7 as 4 + 2 + 1 1.4x slower).
NNCORE_ALWAYS_INLINE void copy_rows(float* dst, int64_t dst_step, const float* src,
                                    int64_t src_step, int64_t rows, int64_t n) {
  if (n >= 16) {
    copy_rows_with<copy_chunks<Floats16>>(dst, dst_step, src, src_step, rows, n);
  } else if (n == 8) {
    copy_rows_with<copy_row_8_plus<0>>(dst, dst_step, src, src_step, rows, n);
  } else if (n == 9) {
    copy_rows_with<copy_row_8_plus<1>>(dst, dst_step, src, src_step, rows, n);
  } else if (n == 10) {
    copy_rows_with<copy_row_8_plus<2>>(dst, dst_step, src, src_step, rows, n);
  } else if (n == 12) {
    copy_rows_with<copy_row_8_plus<4>>(dst, dst_step, src, src_step, rows, n);
  } else if (n >= 8) {
    copy_rows_with<copy_chunks<Floats8>>(dst, dst_step, src, src_step, rows, n);
  } else if (n >= 4) {
    copy_rows_with<copy_chunks<Floats4>>(dst, dst_step, src, src_step, rows, n);
  } else {
    copy_rows_with<copy_row_scalar>(dst, dst_step, src, src_step, rows, n);
  }
}

NNCORE_ALWAYS_INLINE void add_row(float* __restrict dst, const float* __restrict src, int64_t n) {
  if (n >= 16) {
    add_chunks<Floats16>(dst, src, n);
  } else if (n >= 8) {
    add_chunks<Floats8>(dst, src, n);
  } else if (n >= 4) {
    add_chunks<Floats4>(dst, src, n);
  } else {
    for (int64_t t = 0; t < n; ++t) dst[t] += src[t];
  }
}

// The kw col rows of one (image, channel, tap row i), for `rows` x `n` windows: for j < kw,
//   out[j*cols + oh*out_ld + ow] = tap_rows[oh*sh*ld + ow*sw + j]
// where tap_rows is row i of the (padded) plane's box and ld its row length.
NNCORE_WIDEST_VECTORS
void im2col_tap_row(const float* tap_rows, int64_t ld, int64_t kw, int64_t rows, int64_t n,
                    int64_t sh, int64_t sw, float* out, int64_t out_ld, int64_t cols) {
  for (int64_t j = 0; j < kw; ++j, out += cols) {
    const float* __restrict in = tap_rows + j;
    if (sw == 1) {
      if (sh == 1 && n == ld && n == out_ld) {  // kw == 1 unpadded in w: contiguous rows
        copy_rows(out, 0, in, 0, 1, rows * n);
      } else {
        copy_rows(out, out_ld, in, sh * ld, rows, n);
      }
    } else {
      for (int64_t oh = 0; oh < rows; ++oh) {
        const float* __restrict in_row = in + oh * sh * ld;
        float* __restrict out_row = out + oh * out_ld;
        for (int64_t ow = 0; ow < n; ++ow) out_row[ow] = in_row[ow * sw];
      }
    }
  }
}

// Zeros the col entries of the windows that read only padding: for j < kw, the OH x OW block
// at out + j*cols outside rows [hs.lo, hs.hi) x columns [ws.lo, ws.hi).
void zero_padding_windows(float* out, int64_t cols, int64_t kw, int64_t OH, int64_t OW,
                          WindowSpan hs, WindowSpan ws) {
  for (int64_t j = 0; j < kw; ++j, out += cols) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* row = out + oh * OW;
      const bool on_image = oh >= hs.lo && oh < hs.hi;
      std::fill(row, row + (on_image ? ws.lo : OW), 0.0f);
      if (on_image) std::fill(row + ws.hi, row + OW, 0.0f);
    }
  }
}

// Adds every tap of one plane's col rows that lands in image rows [h0, h1) into acc, for the
// first n windows of each output row: tap j of window ow adds col row entry ow (of the OW
// from `taps`) into acc[(h - h0)*ld + ow*sw + j], taps in (i, j) ascending order.
// taps = col + (c*kh*kw)*cols + n*OH*OW (+ the first window's column), the plane's first col row.
NNCORE_WIDEST_VECTORS
void col2im_add_taps(const float* taps, int64_t cols, int64_t kh, int64_t kw, int64_t OH,
                     int64_t OW, int64_t n, int64_t sh, int64_t sw, int64_t ph, int64_t h0,
                     int64_t h1, float* acc, int64_t ld) {
  for (int64_t i = 0; i < kh; ++i) {
    // oh with h = oh*sh - ph + i in [h0, h1)
    const int64_t oh_lo = std::max<int64_t>(0, ceil_div(h0 + ph - i, sh));
    const int64_t oh_hi = std::min(OH, ceil_div(h1 + ph - i, sh));
    if (oh_lo >= oh_hi) continue;
    for (int64_t j = 0; j < kw; ++j) {
      const float* __restrict tap = taps + (i * kw + j) * cols;
      for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
        float* __restrict acc_row = acc + (oh * sh - ph + i - h0) * ld + j;  // + ow*sw
        const float* __restrict col_row = tap + oh * OW;
        if (sw == 1) {
          add_row(acc_row, col_row, n);
        } else {
          for (int64_t ow = 0; ow < n; ++ow) acc_row[ow * sw] += col_row[ow];
        }
      }
    }
  }
}

// Stride 1 with accumulation rows of at most 16 floats (LeNet's conv2: 14): each row is summed
// in a register over the taps that land in it, then stored once (the scatter above adds each
// tap into memory, its overlapping row chunks making loads wait on the stores before them).
// Tap (i, j) gives acc column p the value col_row[oh*OW + p - j] for p - j in [0, OW): a
// 16-float vector of the col row shifted back by j, its other lanes masked to 0. Per pixel the
// sum runs from 0 over the taps in (i, j) order, as in the scatter, and adding a masked +0
// never changes it (a sum that starts at +0 is never -0): the same bits. The caller makes sure
// every vector read stays inside col. A row's store spills zeros past ld into the rows after
// it, which their own stores overwrite; the last row stores only its ld floats.
NNCORE_WIDEST_VECTORS
void col2im_gather_rows(const float* taps, int64_t cols, int64_t kh, int64_t kw, int64_t OH,
                        int64_t OW, int64_t ph, int64_t h0, int64_t h1, float* acc,
                        int64_t ld) {
  Ints16 inside[16];  // per j (< kw <= ld <= 16): all ones on lanes j .. j + OW - 1
  for (int64_t j = 0; j < kw; ++j)
    for (int l = 0; l < 16; ++l) inside[j][l] = l >= j && l < j + OW ? -1 : 0;
  for (int64_t h = h0; h < h1; ++h) {
    Floats16 sum = Floats16{};
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t oh = h + ph - i;
      if (oh < 0 || oh >= OH) continue;
      for (int64_t j = 0; j < kw; ++j) {
        Ints16 bits;  // the col vector's bit patterns, masked (0 bits: +0)
        std::memcpy(&bits, taps + (i * kw + j) * cols + oh * OW - j, sizeof bits);
        bits &= inside[j];
        Floats16 x;
        std::memcpy(&x, &bits, sizeof x);
        sum += x;
      }
    }
    float* row = acc + (h - h0) * ld;
    if (h + 1 < h1 && 16 <= (h1 - h) * ld) {
      std::memcpy(row, &sum, sizeof sum);
    } else {
      for (int64_t p = 0; p < ld; ++p) row[p] = sum[p];
    }
  }
}

}  // namespace

// col[r, n, oh, ow] = x[n, c, oh*sh - ph + i, ow*sw - pw + j], 0 outside the image.
// Work item = (n, c, i): the kw rows r = (c*kh + i)*kw + j of image n's column block.
void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
            int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* col) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1;
  const int64_t OW = (W + 2 * pw - kw) / sw + 1;
  const int64_t rows = C * kh * kw;
  const int64_t cols = N * OH * OW;
  const int64_t spatial = OH * OW;
  if (rows <= 0 || cols <= 0) return;
  const WindowSpan hs = windows_on_image(H, kh, sh, ph, OH);
  const WindowSpan ws = windows_on_image(W, kw, sw, pw, OW);
  const bool all_on_image = hs.lo == 0 && hs.hi == OH && ws.lo == 0 && ws.hi == OW;
  const bool any_on_image = !hs.empty() && !ws.empty();
  // The windows on the image read the box of padded rows [r0, r0 + box_h) and columns
  // [q0, q0 + box_w) (under H + 2kh by W + 2kw), in place when it lies inside the image, else
  // from a zero-bordered copy holding image rows [h0, h1) and columns [w0, w1).
  const int64_t r0 = hs.lo * sh, box_h = any_on_image ? (hs.hi - 1 - hs.lo) * sh + kh : 0;
  const int64_t q0 = ws.lo * sw, box_w = any_on_image ? (ws.hi - 1 - ws.lo) * sw + kw : 0;
  const bool buffered =
      any_on_image && (r0 < ph || r0 + box_h > ph + H || q0 < pw || q0 + box_w > pw + W);
  const int64_t h0 = std::max<int64_t>(0, r0 - ph), h1 = std::min(H, r0 + box_h - ph);
  const int64_t w0 = std::max<int64_t>(0, q0 - pw), w1 = std::min(W, q0 + box_w - pw);
  const int64_t items = N * C * kh;
  const bool parallel = rows * cols > kParallelMin;
  run_on_team(parallel, [&](int thread, int threads) {
    int64_t begin, end;
    split_range(items, threads, thread, &begin, &end);
    std::vector<float> buf;  // zero-bordered copy of the current plane's box
    if (buffered && begin < end) buf.assign(static_cast<size_t>(box_h * box_w), 0.0f);
    int64_t buffered_plane = -1;
    // item = (n*C + c)*kh + i, stepped without a division per item
    int64_t p = begin / kh, i = begin % kh, n = p / C, c = p % C;
    for (int64_t item = begin; item < end; ++item, ++i) {
      if (i == kh) {
        i = 0;
        ++p;
        if (++c == C) {
          c = 0;
          ++n;
        }
      }
      float* const out = col + (c * kh + i) * kw * cols + n * spatial;
      if (!all_on_image) zero_padding_windows(out, cols, kw, OH, OW, hs, ws);
      if (!any_on_image) continue;
      const float* const plane = x + p * H * W;
      const float* box;
      int64_t ld;
      if (buffered) {
        if (p != buffered_plane) {  // the borders stay zero; only the image part is rewritten
          copy_rows(&buf[(h0 + ph - r0) * box_w + w0 + pw - q0], box_w, plane + h0 * W + w0, W,
                    h1 - h0, w1 - w0);
          buffered_plane = p;
        }
        box = buf.data();
        ld = box_w;
      } else {
        box = plane + (r0 - ph) * W + (q0 - pw);
        ld = W;
      }
      im2col_tap_row(box + i * ld, ld, kw, hs.hi - hs.lo, ws.hi - ws.lo, sh, sw,
                     out + hs.lo * OW + ws.lo, OW, cols);
    }
  });
}

// x[n, c, h, w] = sum over taps (i, j) with h = oh*sh - ph + i, w = ow*sw - pw + j (oh, ow in
// range) of col[(c*kh + i)*kw + j, n, oh, ow]. Caffe's CPU scheme: zero the plane, then add each
// tap's col rows into the shifted plane. Work item = (plane, block of image rows); the thread
// that owns it writes those rows of x and nothing else, so there are no races or atomics, and
// every pixel sums its taps starting from 0 in (i, j) ascending order whatever the thread
// count or the row blocking, so the result is deterministic.
void col2im(const float* col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh,
            int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, float* x) {
  const int64_t OH = (H + 2 * ph - kh) / sh + 1;
  const int64_t OW = (W + 2 * pw - kw) / sw + 1;
  const int64_t rows = C * kh * kw;
  const int64_t cols = N * OH * OW;
  const int64_t spatial = OH * OW;
  const int64_t planes = N * C;
  if (planes <= 0 || H <= 0 || W <= 0) return;
  const WindowSpan hs = windows_on_image(H, kh, sh, ph, OH);
  const WindowSpan ws = windows_on_image(W, kw, sw, pw, OW);
  if (rows <= 0 || cols <= 0 || hs.empty() || ws.empty()) {  // no tap lands on x: all zeros
    std::memset(x, 0, static_cast<size_t>(planes * H * W) * sizeof(float));
    return;
  }
  const bool parallel = rows * cols > kParallelMin;
  // Few planes (conv1: one channel) balance badly over the threads: split them into row blocks.
  const int64_t team = parallel ? available_threads() : 1;
  const int64_t want_items = 8 * team;
  const int64_t splits =
      (team > 1 && planes < want_items) ? std::min(H, ceil_div(want_items, planes)) : 1;
  const int64_t block = ceil_div(H, splits);
  const int64_t items = planes * splits;
  // acc[(h - h0)*ld + q - c0] accumulates padded column q of row h, for q in [c0, c1): the
  // image's columns and those the windows on the image reach. It is x's rows in place when
  // that is the image alone, else a buffer with zero column borders.
  const int64_t c0 = std::min(ws.lo * sw, pw), c1 = std::max((ws.hi - 1) * sw + kw, pw + W);
  const bool buffered = c0 < pw || c1 > pw + W;
  const int64_t ld = c1 - c0;
  run_on_team(parallel, [&](int thread, int threads) {
    int64_t begin, end;
    split_range(items, threads, thread, &begin, &end);
    std::vector<float> buf;  // accumulator with zero column borders
    if (buffered && begin < end) buf.resize(static_cast<size_t>(block * ld));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t p = item / splits, s = item % splits;
      const int64_t n = p / C, c = p % C;
      const int64_t h0 = s * block, h1 = std::min(H, h0 + block);
      if (h0 >= h1) continue;
      float* const x_rows = x + (p * H + h0) * W;
      float* const acc = buffered ? buf.data() : x_rows;
      const float* taps = col + c * kh * kw * cols + n * spatial;
      // The gather reads 16 floats from tap row (i, j) at oh*OW - j: within col for every tap
      // of this plane when the last tap row's last read ends inside it.
      const bool gather = sh == 1 && sw == 1 && ld <= 16 && ws.lo == 0 && ws.hi == OW &&
                          (kh * kw - 1) * cols + n * spatial + (OH - 1) * OW + 16 <=
                              (rows - c * kh * kw) * cols;
      if (gather) {
        col2im_gather_rows(taps, cols, kh, kw, OH, OW, ph, h0, h1, acc, ld);
      } else {
        std::memset(acc, 0, static_cast<size_t>((h1 - h0) * ld) * sizeof(float));
        col2im_add_taps(taps + ws.lo, cols, kh, kw, OH, OW, ws.hi - ws.lo, sh, sw, ph, h0, h1,
                        acc + ws.lo * sw - c0, ld);
      }
      if (buffered) copy_rows(x_rows, W, acc + pw - c0, ld, h1 - h0, W);
    }
  });
}

}  // namespace nncore::cpu
