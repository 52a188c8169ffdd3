// The dispatch layer: validates shapes, dtypes and devices once, allocates outputs and scratch,
// and calls the kernel of the tensors' device. Every function here is bound 1:1 in
// bindings.cpp under the same name (nncore._C.<name>).
//
// Error contract: ValueError/TypeError whose message starts with the op's name and shows the
// shapes involved. Gradients of parameters are *accumulated* into the tensors passed in
// (`dw += ...`), as layers expect; every other output is freshly allocated.
#pragma once
#include <optional>
#include <tuple>
#include <vector>

#include "nncore/tensor.h"

namespace nncore::ops {

// ---- creation and elementwise helpers -------------------------------------------------------
void fill_(Tensor& y, float value);
void fill_tensors_(const std::vector<Tensor>& ys, float value);  // every tensor of ys
void axpy_(Tensor& y, float alpha, const Tensor& x);  // y += alpha * x
void scale_(Tensor& y, float alpha);                  // y *= alpha
Tensor mul(const Tensor& a, const Tensor& b);         // elementwise, same shape
Tensor index_select_rows(const Tensor& x, const Tensor& index);  // x[index] along axis 0
Tensor argmax_rows(const Tensor& x);                  // (rows, cols) float -> (rows,) int32

// ---- GEMM -----------------------------------------------------------------------------------
// c = alpha * op(a) @ op(b) + beta * c (2-D float32 tensors, c already shaped (M, N)).
void gemm_(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, float alpha,
           float beta);
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// ---- linear: y = x w^T + b,  x (N, in), w (out, in), b (out) --------------------------------
// relu: y = max(x w^T + b, 0) in the same pass as the bias (Sequential: a Linear + ReLU).
Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                      bool relu);
// Returns dx (undefined Tensor when need_dx is false); dw += g^T x; db += sum_rows g; dx = g w,
// with g = dy, or g = dy * [relu_y > 0] when relu_y (the output of a forward with relu) is given:
// the fused ReLU's backward, applied in the bias gradient's pass.
Tensor linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, bool need_dx,
                       const std::optional<Tensor>& relu_y = std::nullopt);
void bias_add_(Tensor& y, const Tensor& b);  // y (N, C, ...) += b (C)
void bias_grad_(const Tensor& dy, Tensor& db);  // db (C) += sum over all axes but 1 of dy

// ---- convolution: NCHW input, weight (Cout, Cin, kh, kw) ------------------------------------
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
              int64_t pw);
// col (C*kh*kw, N*OH*OW) -> image gradient of shape (N, C, H, W).
Tensor col2im(const Tensor& col, const Shape& x_shape, int64_t kh, int64_t kw, int64_t sh,
              int64_t sw, int64_t ph, int64_t pw);
// y = conv(x, w) + b, then max(y, 0) when relu (the ReLU fused into the convolution's passes).
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                      int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool relu = false);
// Returns dx (undefined when need_dx is false); dw += ..., db += ... . relu_y: the output of a
// forward with relu, whose mask [relu_y > 0] is applied to dy first (the fused ReLU's backward).
Tensor conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
                       std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bool need_dx, const std::optional<Tensor>& relu_y = std::nullopt);
// (y, argmax) = max_pool2d(conv2d_forward(x, w, b, ..., relu), 2x2, stride 2), exactly, with
// the pool fused into the convolution's passes: the full-size output is never stored.
std::tuple<Tensor, Tensor> conv2d_pool_forward(const Tensor& x, const Tensor& w,
                                               const std::optional<Tensor>& b, int64_t sh,
                                               int64_t sw, int64_t ph, int64_t pw, bool relu);
// The backward of conv2d_pool_forward: dy, argmax and relu_y (its y, when relu) are pooled;
// the same as conv2d_backward of max_pool2d_backward(relu_backward(relu_y, dy), argmax).
Tensor conv2d_pool_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                            const Tensor& argmax, Tensor& dw, std::optional<Tensor> db,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool need_dx,
                            const std::optional<Tensor>& relu_y = std::nullopt);

// ---- pooling (input (N, C, H, W) or (C, H, W)) ----------------------------------------------
std::tuple<Tensor, Tensor> max_pool2d_forward(const Tensor& x, int64_t kh, int64_t kw,
                                              int64_t sh, int64_t sw, int64_t ph, int64_t pw);
Tensor max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Shape& x_shape);
Tensor avg_pool2d_forward(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                          int64_t ph, int64_t pw, bool count_include_pad);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                           bool count_include_pad);

// ---- activations (any shape) ------------------------------------------------------------------
Tensor relu_forward(const Tensor& x);
// dx = (x <= 0 ? 0 : dy), PyTorch's rule; with db (C), also db += sum of dx over all axes but 1,
// in the same pass (the bias gradient of the layer before the ReLU).
Tensor relu_backward(const Tensor& x, const Tensor& dy,
                     const std::optional<Tensor>& db = std::nullopt);
Tensor leaky_relu_forward(const Tensor& x, float slope);
Tensor leaky_relu_backward(const Tensor& x, const Tensor& dy, float slope);
Tensor sigmoid_forward(const Tensor& x);
Tensor sigmoid_backward(const Tensor& y, const Tensor& dy);  // takes the forward output
Tensor tanh_forward(const Tensor& x);
Tensor tanh_backward(const Tensor& y, const Tensor& dy);     // takes the forward output
// Over the last axis (any rank >= 1).
Tensor softmax_forward(const Tensor& x);
Tensor softmax_backward(const Tensor& y, const Tensor& dy);
Tensor log_softmax_forward(const Tensor& x);
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy);

// ---- losses: the loss comes back as a float32 tensor of shape () ---------------------------
// logits (N, C); target int32 labels (N,) or float32 probabilities (N, C).
// Returns (loss, probs); probs feeds the backward.
std::tuple<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& target);
// dlogits = grad_scale * d(mean loss)/dlogits.
Tensor cross_entropy_backward(const Tensor& probs, const Tensor& target, float grad_scale);
Tensor mse_forward(const Tensor& pred, const Tensor& target);
Tensor mse_backward(const Tensor& pred, const Tensor& target, float grad_scale);

// ---- optimizers (in place) ------------------------------------------------------------------
// Over lists of tensors (a whole model per call); tensor t of every list has params[t]'s shape.
void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::optional<std::vector<Tensor>>& momentum_bufs, double lr,
               double momentum, double dampening, double weight_decay, bool nesterov,
               bool first_step);
void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& m, const std::vector<Tensor>& v, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step);

// ---- dropout ----------------------------------------------------------------------------------
// Returns (y, mask); p in [0, 1).
std::tuple<Tensor, Tensor> dropout_forward(const Tensor& x, double p, uint64_t seed,
                                           uint64_t offset);

}  // namespace nncore::ops
