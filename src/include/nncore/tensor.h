// Tensor: a contiguous float32 or int32 array on the CPU or a CUDA device.
// Storage is shared (reshape is a view); memory is 64-byte aligned on the CPU and comes from the
// caching allocator on the GPU. A storage may also wrap memory owned by someone else (DLPack).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nncore/caching_allocator.h"

namespace nncore {

enum class DType { float32, int32 };
enum class Device { cpu, cuda };

using Shape = std::vector<int64_t>;

const char* dtype_name(DType dtype);
const char* device_name(Device device);
std::string shape_str(const Shape& shape);  // "(2, 3)"
// Elements of a tensor of this shape; ValueError ("<op>: ...") for a negative dimension or a
// tensor too large to address (over PTRDIFF_MAX bytes).
int64_t shape_numel(const Shape& shape, const char* op = "tensor");
inline size_t dtype_size(DType) { return 4; }  // both dtypes are 4 bytes wide

// The CPU tensors' caching allocator (the CUDA one is in device.h).
AllocatorStats host_allocator_stats();
void host_reset_peak_stats();
void host_empty_cache();

class Storage {
 public:
  // Fresh memory of nbytes on device (uninitialized).
  Storage(size_t nbytes, Device device);
  // Borrowed memory: `release` is called once when the storage dies (DLPack import).
  Storage(void* data, size_t nbytes, Device device, std::function<void()> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void()> release_;  // empty for memory we allocated
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialized tensor.
  static Tensor empty(const Shape& shape, DType dtype, Device device);
  static Tensor zeros(const Shape& shape, DType dtype, Device device);
  // Wraps existing storage (used by DLPack import).
  Tensor(std::shared_ptr<Storage> storage, Shape shape, DType dtype);

  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const;  // negative axis counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_->device(); }
  bool defined() const { return storage_ != nullptr; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_bytes_; }
  float* f32() const;    // throws TypeError unless float32
  int32_t* i32() const;  // throws TypeError unless int32

  Tensor reshape(const Shape& shape) const;  // view; one -1 allowed
  // View of rows [start, start + length) along axis 0 (contiguous, so no copy).
  Tensor narrow_rows(int64_t start, int64_t length) const;
  Tensor to(Device device) const;            // copy (or self when already there)
  Tensor clone() const;
  // Sets every byte to 0 (0.0f and int 0 alike), any dtype, on the tensor's device.
  void zero_();
  // Copies src's bytes into this tensor (same numel and dtype, any devices).
  void copy_from(const Tensor& src);
  // Host pointer -> this tensor / this tensor -> host pointer (nbytes() bytes).
  void copy_from_host(const void* src);
  void copy_to_host(void* dst) const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  DType dtype_ = DType::float32;
  size_t offset_bytes_ = 0;  // where this view starts in the storage
};

}  // namespace nncore
