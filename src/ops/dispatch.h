// Internal to src/ops: picking the kernel of a tensor's device, and the validation helpers every
// op uses so that error messages read the same everywhere ("<op>: <what> <shape>").
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

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

// A per-channel op's view of y (N, C, ...), or of a 1-D y (C): (outer, channels, inner) with
// channels on axis 1 (axis 0 of a 1-D y), as the bias kernels take it.
struct ChannelLayout {
  int64_t outer, channels, inner;
};
inline ChannelLayout channel_layout(const char* op, const char* name, const Tensor& y) {
  NNCORE_CHECK(y.dim() >= 1, op, ": ", name, " must have at least one axis");
  const int64_t outer = y.dim() >= 2 ? y.size(0) : 1;
  const int64_t channels = y.dim() >= 2 ? y.size(1) : y.size(0);
  const int64_t inner = channels == 0 || outer == 0 ? 0 : y.numel() / (outer * channels);
  return {outer, channels, inner};
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
  int64_t padded;  // input + 2*pad; every index a kernel forms along the axis is below it
  NNCORE_CHECK(!__builtin_mul_overflow(pad, 2, &padded) &&
                   !__builtin_add_overflow(input, padded, &padded),
               op, ": the padded input (", input, " + 2*", pad, ") along ", axis,
               " does not fit in 64 bits");
  NNCORE_CHECK(padded >= kernel, op, ": kernel ", kernel, " is larger than the padded ",
               "input (", input, " + 2*", pad, ") along ", axis);
  return (padded - kernel) / stride + 1;
}

// A max pool's argmax holds int32 indices into one H x W input plane: at most 2**31 elements.
inline void require_int32_argmax_plane(const char* op, int64_t H, int64_t W) {
  constexpr int64_t kMaxPlane = int64_t{1} << 31;
  NNCORE_CHECK(H <= 0 || W <= 0 || H <= kMaxPlane / W, op, ": the pooled plane ", H, " x ", W,
               " has more elements than the int32 argmax can index (2**31)");
}

// ---- tensor lists (optimizer updates and zero_grad over a whole model) ----------------------
using NamedList = std::pair<const char*, const std::vector<Tensor>*>;

// What the list kernels take: data[l][t] is tensor t of list l, sizes[t] its element count.
struct TensorListArgs {
  Device device = Device::cpu;  // (cpu for empty lists: nothing runs)
  std::vector<int64_t> sizes;
  std::vector<std::vector<float*>> data;
};

// Parallel tensor lists of one in-place op: equally long, float32, tensor t of every list the
// shape of the first list's tensor t, all on one device. Messages name the tensor: "grads[3]".
inline TensorListArgs tensor_list_args(const char* op, std::initializer_list<NamedList> lists) {
  const auto& [lead_name, lead] = *lists.begin();
  const size_t n = lead->size();
  TensorListArgs args;
  for (const auto& [name, list] : lists) {
    NNCORE_CHECK(list->size() == n, op, ": ", name, " holds ", list->size(), " tensors but ",
                 lead_name, " holds ", n);
    std::vector<float*>& data = args.data.emplace_back();
    data.reserve(n);
    for (size_t t = 0; t < n; ++t) {
      const Tensor& x = (*list)[t];
      NNCORE_CHECK_TYPE(x.defined(), op, ": ", name, "[", t, "] is an empty tensor handle");
      NNCORE_CHECK_TYPE(x.dtype() == DType::float32, op, ": ", name, "[", t,
                        "] must be float32, got ", describe(x));
      const Tensor& first = (*lead)[t];
      NNCORE_CHECK(x.shape() == first.shape(), op, ": ", lead_name, "[", t, "] ",
                   shape_str(first.shape()), " and ", name, "[", t, "] ", shape_str(x.shape()),
                   " must have the same shape");
      NNCORE_CHECK(x.device() == (*lead)[0].device(), op, ": all tensors must be on one "
                   "device, got ", describe((*lead)[0]), " and ", describe(x), " (", name, "[",
                   t, "])");
      data.push_back(x.f32());
    }
  }
  if (n == 0) return args;
  args.device = (*lead)[0].device();
  args.sizes.reserve(n);
  for (const Tensor& x : *lead) args.sizes.push_back(x.numel());
  return args;
}

// Whether the bytes of a and b overlap (never for an empty tensor).
inline bool share_memory(const Tensor& a, const Tensor& b) {
  const auto pa = reinterpret_cast<uintptr_t>(a.raw()), pb = reinterpret_cast<uintptr_t>(b.raw());
  return a.numel() > 0 && b.numel() > 0 && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// The outputs of an op that writes them while it reads its inputs overlap neither an input nor
// each other (the CPU kernels declare such pointers __restrict; on the GPU other blocks read
// what one block wrote). A null tensor is an absent optional one; inputs may share memory.
inline void require_separate(const char* op, std::initializer_list<NamedTensor> outputs,
                             std::initializer_list<NamedTensor> inputs) {
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    if (out->second == nullptr) continue;
    for (auto other = outputs.begin(); other != out; ++other)
      NNCORE_CHECK(other->second == nullptr || !share_memory(*other->second, *out->second), op,
                   ": ", other->first, " and ", out->first, " share memory (two outputs in one "
                   "buffer)");
    for (const auto& [name, in] : inputs)
      NNCORE_CHECK(in == nullptr || !share_memory(*out->second, *in), op, ": ", out->first,
                   " and ", name, " share memory (the output would overwrite an input it reads)");
  }
}

// No two tensors of the lists overlap in memory: an update that reads and writes them (an
// optimizer step) would apply twice to the shared floats, mix one tensor's state into another's,
// and race on the GPU. Messages name both tensors: "params[0] and m[2]".
inline void require_disjoint(const char* op, std::initializer_list<NamedList> lists) {
  struct Span {
    uintptr_t start;
    size_t order;  // position in the concatenated lists
    const char* name;
    size_t index;
    const Tensor* tensor;
  };
  std::vector<Span> spans;
  size_t order = 0;
  for (const auto& [name, list] : lists)
    for (size_t t = 0; t < list->size(); ++t, ++order)
      if ((*list)[t].numel() > 0)
        spans.push_back({reinterpret_cast<uintptr_t>((*list)[t].raw()), order, name, t,
                         &(*list)[t]});
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.start != b.start ? a.start < b.start : a.order < b.order;
  });
  for (size_t k = 1; k < spans.size(); ++k) {  // sorted by start: an overlap shows in a neighbour
    const Span& a = spans[k - 1].order < spans[k].order ? spans[k - 1] : spans[k];
    const Span& b = spans[k - 1].order < spans[k].order ? spans[k] : spans[k - 1];
    NNCORE_CHECK(!share_memory(*a.tensor, *b.tensor), op, ": ", a.name, "[", a.index, "] and ",
                 b.name, "[", b.index, "] share memory (a tensor listed twice?)");
  }
}

}  // namespace nncore::ops::detail
