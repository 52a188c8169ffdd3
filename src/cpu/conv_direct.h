// Direct convolution for stride 1, as a GEMM whose B rows are shifted views of the padded image
// ("shifted-row GEMM"). Shared by the driver (conv.cpp) and the per-ISA kernel files
// conv_direct_{avx512,avx2,generic}.cpp, which compile conv_direct_kernels.inc for their target.
//
// With an image zero-padded to C planes of Hp x Wp and outputs indexed q = oh*Wp + ow (the
// Wp - OW columns past OW are computed and dropped), tap (c, i, j) of output q reads
//   src[off[k] + q],  off[k] = c*Hp*Wp + i*Wp + j,  k = (c*kh + i)*kw + j:
// for every tap the outputs read one contiguous run of the padded image, so
//   y[o][q] = sum_k W[o][k] * src[off[k] + q]
// is a GEMM with nothing copied (im2col would write kh*kw copies of the image). The same kernel
// computes the input gradient from the zero-framed output gradient (see conv.cpp), and the
// weight gradient dW[o][k] = sum_q g[o][q] * src[off[k] + q] is its inner-product twin.
#pragma once
#include <cstdint>

namespace nncore {
namespace cpu {
namespace conv_direct {

// Weights are packed in groups of kGroupRows output rows: wpack[k*kGroupRows + r] (zero rows
// past the real ones), so one k step broadcasts kGroupRows consecutive floats.
constexpr int kGroupRows = 6;
// Upper bounds over all families, for sizing buffers: lanes per vector and taps per dot tile.
constexpr int kMaxLanes = 16;
constexpr int kMaxDotTaps = 8;

// How many tap offsets the driver writes for K taps (zero past K): a dot tile of any family's
// width that starts below K reads at most this far. (Rounding K up to kMaxDotTaps is not enough:
// 6-tap tiles at K = 8 read offsets 8..11.)
constexpr int64_t padded_taps(int64_t K) { return K + kMaxDotTaps - 1; }

struct Kernels {
  const char* name;
  int lanes;  // floats per vector
  // out[r*ldo + p] = sum_{k < K} wpack[k*kGroupRows + r] * src[off[k] + p] for r < kGroupRows
  // and p < P rounded up to whole vectors (so src must be readable that far past each run and
  // out rows must hold that many floats).
  void (*shifted_gemm)(const float* wpack, const int32_t* off, int64_t K, const float* src,
                       int64_t P, float* out, int64_t ldo);
  int dot_rows;  // g rows per inner-product tile (divides kGroupRows)
  int dot_taps;  // taps per inner-product tile (<= kMaxDotTaps)
  // dw[r*ldw + k] += sum_{n < images} sum_{p < nvec*lanes} g[n*g_image + r*g_row + p] *
  //                  x[n*x_image + off[k] + p]
  // for r < rows (<= dot_rows; g rows up to dot_rows must be readable) and k < K; off must hold
  // valid offsets (0 past K) up to K rounded up to dot_taps: padded_taps(K) of them do.
  void (*shifted_dot)(const float* g, int64_t g_row, int64_t g_image, const float* x,
                      int64_t x_image, const int32_t* off, int64_t K, int64_t nvec,
                      int64_t images, float* dw, int64_t ldw, int rows);
};

// nullptr when the family was not compiled in (non-x86 builds).
const Kernels* kernels_avx512();
const Kernels* kernels_avx2();
const Kernels* kernels_generic();

}  // namespace conv_direct

// Which algorithm conv2d_forward (backward = false) or conv2d_backward (need_dx: dx is
// wanted) uses for a shape: "direct" or "im2col".
const char* conv2d_algorithm(int64_t C, int64_t H, int64_t W, int64_t cout, int64_t kh,
                             int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                             bool backward, bool need_dx);
// Force "im2col" or "direct" (direct still needs stride 1; otherwise im2col runs); nullptr or
// "auto" = choose by shape. Not meant to be called while a convolution runs.
void conv2d_force_algorithm(const char* name);

}  // namespace cpu
}  // namespace nncore
