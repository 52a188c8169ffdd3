// Tensor and Storage: allocation, views and copies between devices.
#include "nncore/tensor.h"

#include <cstdlib>
#include <cstring>

#include "nncore/caching_allocator.h"
#include "nncore/check.h"
#ifdef NNCORE_WITH_CUDA
#include "nncore/device.h"
#endif

namespace nncore {

const char* dtype_name(DType dtype) { return dtype == DType::float32 ? "float32" : "int32"; }
const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

std::string shape_str(const Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    out += std::to_string(shape[i]);
    if (i + 1 < shape.size() || shape.size() == 1) out += shape.size() == 1 ? "," : ", ";
  }
  return out + ")";
}

int64_t shape_numel(const Shape& shape, const char* op) {
  for (int64_t d : shape) {
    NNCORE_CHECK(d >= 0, op, ": negative dimension in shape ", shape_str(shape));
    if (d == 0) return 0;  // empty, however large the other dimensions
  }
  // At most PTRDIFF_MAX bytes, so byte counts, pointer offsets and size classes cannot overflow.
  constexpr int64_t kMaxElements = PTRDIFF_MAX / 4;  // 4 bytes an element (dtype_size)
  int64_t n = 1;
  for (int64_t d : shape) {
    NNCORE_CHECK(!__builtin_mul_overflow(n, d, &n) && n <= kMaxElements, op, ": shape ",
                 shape_str(shape), " has too many elements (more than ", kMaxElements,
                 ", the most 4-byte elements one block of memory can hold)");
  }
  return n;
}

namespace {

struct HostMemory {
  static constexpr size_t kAlignment = 64;  // a cache line, and the widest vector load (AVX-512)
  void* allocate(size_t bytes) { return std::aligned_alloc(kAlignment, bytes); }  // bytes: x512
  void deallocate(void* ptr) { std::free(ptr); }
  void wait_idle() {}
  [[noreturn]] void out_of_memory(size_t requested, size_t held) {
    throw OutOfMemoryError(concat("nncore: CPU out of memory: tried to allocate ", requested,
                                  " bytes; nncore holds ", held, " bytes in tensors"));
  }
};

CachingAllocator<HostMemory>& host_allocator() {
  static auto* instance = new CachingAllocator<HostMemory>();  // outlives every tensor
  return *instance;
}

void* allocate(size_t nbytes, Device device) {
  if (device == Device::cuda) {
#ifdef NNCORE_WITH_CUDA
    return cuda::device_malloc(nbytes);
#else
    throw ValueError("nncore was built without CUDA: device 'cuda' is not available");
#endif
  }
  return host_allocator().allocate(nbytes);
}

}  // namespace

AllocatorStats host_allocator_stats() { return host_allocator().stats(); }
void host_reset_peak_stats() { host_allocator().reset_peak(); }
void host_empty_cache() { host_allocator().empty_cache(); }

Storage::Storage(size_t nbytes, Device device)
    : data_(allocate(nbytes, device)), nbytes_(nbytes), device_(device) {}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (device_ == Device::cpu) {
    host_allocator().deallocate(data_);
  } else {
#ifdef NNCORE_WITH_CUDA
    cuda::device_free(data_);
#endif
  }
}

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), dtype_(dtype) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(std::make_shared<Storage>(nbytes, device), shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

void Tensor::zero_() {
  if (nbytes() == 0) return;
  if (device() == Device::cpu) {
    std::memset(raw(), 0, nbytes());
  } else {
#ifdef NNCORE_WITH_CUDA
    cuda::memset_zero(raw(), nbytes());
#endif
  }
}

int64_t Tensor::size(int64_t axis) const {
  const int64_t rank = dim();
  NNCORE_CHECK(axis >= -rank && axis < rank, "tensor: axis ", axis, " out of range for shape ",
               shape_str(shape_));
  return shape_[axis < 0 ? axis + rank : axis];
}

float* Tensor::f32() const {
  NNCORE_CHECK_TYPE(dtype_ == DType::float32, "expected a float32 tensor, got ", dtype_name(dtype_));
  return static_cast<float*>(raw());
}

int32_t* Tensor::i32() const {
  NNCORE_CHECK_TYPE(dtype_ == DType::int32, "expected an int32 tensor, got ", dtype_name(dtype_));
  return static_cast<int32_t*>(raw());
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape resolved = shape;
  int64_t inferred_axis = -1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] != -1) continue;
    NNCORE_CHECK(inferred_axis < 0, "reshape: only one -1 allowed in ", shape_str(shape));
    inferred_axis = static_cast<int64_t>(i);
  }
  if (inferred_axis >= 0) {
    resolved[inferred_axis] = 1;
    const int64_t known = shape_numel(resolved, "reshape");
    NNCORE_CHECK(known != 0 && numel() % known == 0, "reshape: cannot reshape ",
                 shape_str(shape_), " into ", shape_str(shape));
    resolved[inferred_axis] = numel() / known;
  }
  NNCORE_CHECK(shape_numel(resolved, "reshape") == numel(), "reshape: cannot reshape ",
               shape_str(shape_), " (", numel(), " elements) into ", shape_str(shape));
  Tensor view(storage_, resolved, dtype_);
  view.offset_bytes_ = offset_bytes_;
  return view;
}

Tensor Tensor::narrow_rows(int64_t start, int64_t length) const {
  NNCORE_CHECK(dim() >= 1, "narrow: a 0-d tensor has no rows");
  // (start + length could overflow: compare length with what is left after start)
  NNCORE_CHECK(start >= 0 && length >= 0 && start <= shape_[0] && length <= shape_[0] - start,
               "narrow: ", length, " rows from row ", start, " are out of range for shape ",
               shape_str(shape_));
  Shape shape = shape_;
  shape[0] = length;
  Tensor view(storage_, shape, dtype_);
  const int64_t row_elements = shape_[0] == 0 ? 0 : numel() / shape_[0];
  view.offset_bytes_ = offset_bytes_ + static_cast<size_t>(start * row_elements) * dtype_size(dtype_);
  return view;
}

void Tensor::copy_from(const Tensor& src) {
  NNCORE_CHECK(src.numel() == numel() && src.dtype() == dtype_, "copy: source ",
               shape_str(src.shape()), " ", dtype_name(src.dtype()), " does not match destination ",
               shape_str(shape_), " ", dtype_name(dtype_));
  if (nbytes() == 0) return;
  if (device() == Device::cpu && src.device() == Device::cpu) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
#ifdef NNCORE_WITH_CUDA
  if (device() == Device::cuda && src.device() == Device::cuda) {
    cuda::copy_device_to_device(raw(), src.raw(), nbytes());
  } else if (device() == Device::cuda) {
    cuda::copy_host_to_device(raw(), src.raw(), nbytes());
  } else {
    cuda::copy_device_to_host(raw(), src.raw(), nbytes());
  }
#endif
}

void Tensor::copy_from_host(const void* src) {
  if (nbytes() == 0) return;
  if (device() == Device::cpu) {
    std::memcpy(raw(), src, nbytes());
  } else {
#ifdef NNCORE_WITH_CUDA
    cuda::copy_host_to_device(raw(), src, nbytes());
#endif
  }
}

void Tensor::copy_to_host(void* dst) const {
  if (nbytes() == 0) return;
  if (device() == Device::cpu) {
    std::memcpy(dst, raw(), nbytes());
  } else {
#ifdef NNCORE_WITH_CUDA
    cuda::copy_device_to_host(dst, raw(), nbytes());
#endif
  }
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = empty(shape_, dtype_, target);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_from(*this);
  return out;
}

}  // namespace nncore
