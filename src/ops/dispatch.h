// Internal to src/ops: picking the kernel of a tensor's device, and the validation helpers every
// op uses so that error messages read the same everywhere ("<op>: <what> <shape>").
#pragma once
#include <initializer_list>
#include <string>

#include "nncore/check.h"
#include "nncore/kernels.h"
#include "nncore/tensor.h"

// Calls nncore::cpu::kernel or nncore::cuda::kernel (same signature) by device.
#ifdef NNCORE_WITH_CUDA
#define NNCORE_DISPATCH(device, kernel, ...)                                 \
  ((device) == ::nncore::Device::cuda ? ::nncore::cuda::kernel(__VA_ARGS__) \
                                      : ::nncore::cpu::kernel(__VA_ARGS__))
#else
#define NNCORE_DISPATCH(device, kernel, ...) ((void)(device), ::nncore::cpu::kernel(__VA_ARGS__))
#endif

namespace nncore::ops::detail {

using NamedTensor = std::pair<const char*, const Tensor*>;  // for validating several at once

inline std::string describe(const Tensor& t) {
  return concat(shape_str(t.shape()), " ", dtype_name(t.dtype()), " on ", device_name(t.device()));
}

inline void require_defined(const char* op, const char* name, const Tensor& t) {
  NNCORE_CHECK_TYPE(t.defined(), op, ": ", name, " is an empty tensor handle");
}

inline void require_float(const char* op, const char* name, const Tensor& t) {
  require_defined(op, name, t);
  NNCORE_CHECK_TYPE(t.dtype() == DType::float32, op, ": ", name, " must be float32, got ",
                    describe(t));
}

inline void require_int(const char* op, const char* name, const Tensor& t) {
  require_defined(op, name, t);
  NNCORE_CHECK_TYPE(t.dtype() == DType::int32, op, ": ", name, " must be int32, got ",
                    describe(t));
}

inline void require_rank(const char* op, const char* name, const Tensor& t, int64_t rank) {
  NNCORE_CHECK(t.dim() == rank, op, ": ", name, " must be ", rank, "-D, got shape ",
               shape_str(t.shape()));
}

// A bias (or its gradient) must be a float32 vector with one value per channel of the output.
inline void require_bias(const char* op, const char* name, const Tensor& b, int64_t channels,
                         const Shape& output_shape) {
  require_float(op, name, b);
  NNCORE_CHECK(b.shape() == Shape({channels}), op, ": ", name, " ", shape_str(b.shape()),
               " does not match the ", channels, " channels of output ", shape_str(output_shape));
}

// All tensors on one device; returns it.
inline Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = *tensors.begin();
  for (const Tensor* t : tensors) {
    NNCORE_CHECK(t->device() == first->device(), op, ": all tensors must be on one device, got ",
                 describe(*first), " and ", describe(*t));
  }
  return first->device();
}

inline void require_same_shape(const char* op, const char* a_name, const Tensor& a,
                               const char* b_name, const Tensor& b) {
  NNCORE_CHECK(a.shape() == b.shape(), op, ": ", a_name, " ", shape_str(a.shape()), " and ",
               b_name, " ", shape_str(b.shape()), " must have the same shape");
}

// Output size of a sliding window; validates the window against the padded input.
inline int64_t window_output_size(const char* op, const char* axis, int64_t input, int64_t kernel,
                                  int64_t stride, int64_t pad) {
  NNCORE_CHECK(kernel > 0 && stride > 0 && pad >= 0, op, ": kernel size and stride must be "
               "positive and padding non-negative, got kernel ", kernel, ", stride ", stride,
               ", padding ", pad, " along ", axis);
  NNCORE_CHECK(input + 2 * pad >= kernel, op, ": kernel ", kernel, " is larger than the padded ",
               "input (", input, " + 2*", pad, ") along ", axis);
  return (input + 2 * pad - kernel) / stride + 1;
}

}  // namespace nncore::ops::detail
