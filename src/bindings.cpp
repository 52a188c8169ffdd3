// nncore._C: the only file that knows pybind11. Binds Tensor, DLPack exchange, the CUDA runtime
// queries and every op of ops.h under its own name.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "nncore/check.h"
#include "nncore/dlpack.h"
#include "nncore/ops.h"
#include "nncore/tensor.h"
#ifdef NNCORE_WITH_CUDA
#include "nncore/device.h"
#endif
#include "cpu/conv_direct.h"
#include "cpu/sgemm.h"

namespace py = pybind11;
using namespace nncore;

namespace {

// obj as a T, or a TypeError naming the argument (py::cast's own failure is a RuntimeError).
template <typename T>
T cast_argument(const py::handle& obj, const char* what, const char* expected) {
  try {
    return obj.cast<T>();
  } catch (const py::cast_error&) {
    throw TypeError(concat(what, " must be ", expected, ", got ",
                           std::string(py::str(py::type::of(obj)))));
  }
}

// A device argument: "cpu", "cuda" or "cuda:0"; None means if_none (PyTorch's device=None:
// the default device, or for to() the tensor's own).
Device parse_device(const py::handle& device, Device if_none) {
  if (device.is_none()) return if_none;
  const auto name = cast_argument<std::string>(device, "device", "a string such as 'cpu' or 'cuda'");
  if (name == "cpu") return Device::cpu;
  if (name == "cuda" || name == "cuda:0") {
#ifdef NNCORE_WITH_CUDA
    cuda::require_device();
    return Device::cuda;
#else
    throw ValueError("device 'cuda': nncore was built without CUDA (reinstall with nvcc present "
                     "or NNCORE_CUDA=ON)");
#endif
  }
  throw ValueError(concat("unknown device '", name, "': expected 'cpu', 'cuda' or 'cuda:0'"));
}

// copy=None / True / False of the array and DLPack protocols.
bool copy_requested(const py::object& copy, const char* what) {
  return !copy.is_none() && cast_argument<bool>(copy, what, "None or a bool");
}

// nncore.tensor's rule: whatever numpy.dtype() takes ("float32", "f4", np.int32, ...) when it
// is float32 or int32; None is float32.
DType parse_dtype(const py::object& spec) {
  if (spec.is_none()) return DType::float32;
  const py::dtype dtype = py::dtype::from_args(spec);
  if (dtype.equal(py::dtype::of<float>())) return DType::float32;
  if (dtype.equal(py::dtype::of<int32_t>())) return DType::int32;
  throw TypeError(concat("unsupported dtype ", std::string(py::str(dtype)),
                         ": nncore tensors are float32 or int32"));
}

// Python's None <-> an undefined Tensor (an op that skipped an optional output).
py::object tensor_or_none(Tensor t) {
  return t.defined() ? py::cast(std::move(t)) : py::none();
}

Tensor tensor_from_array(const py::array& array, const py::object& device) {
  const bool is_f32 = py::isinstance<py::array_t<float>>(array);
  const bool is_i32 = py::isinstance<py::array_t<int32_t>>(array);
  NNCORE_CHECK_TYPE(is_f32 || is_i32, "tensor: expected a float32 or int32 array, got dtype ",
                    std::string(py::str(array.dtype())));
  NNCORE_CHECK(array.flags() & py::array::c_style, "tensor: array must be C-contiguous");
  Shape shape(array.shape(), array.shape() + array.ndim());
  Tensor t = Tensor::empty(shape, is_f32 ? DType::float32 : DType::int32,
                           parse_device(device, Device::cpu));
  t.copy_from_host(array.data());
  return t;
}

py::dtype numpy_dtype(DType dtype) {
  return dtype == DType::float32 ? py::dtype::of<float>() : py::dtype::of<int32_t>();
}

// CPU: a zero-copy view that keeps the tensor alive. CUDA: a synchronizing copy.
py::array tensor_to_numpy(const py::object& self) {
  const Tensor& t = self.cast<const Tensor&>();
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  if (t.device() == Device::cpu) return py::array(numpy_dtype(t.dtype()), shape, {}, t.raw(), self);
  py::array out(numpy_dtype(t.dtype()), shape);
  t.copy_to_host(out.mutable_data());
  return out;
}

// The one element of a one-element tensor as a Python float or int (item(), float(t), ...).
py::object tensor_item(const Tensor& t, const char* op) {
  NNCORE_CHECK(t.numel() == 1, op, ": only one-element tensors can be converted to Python "
               "scalars; this one has shape ", shape_str(t.shape()), " (", t.numel(),
               " elements)");
  int32_t bits;
  t.copy_to_host(&bits);
  if (t.dtype() == DType::int32) return py::int_(bits);
  float value;
  std::memcpy(&value, &bits, 4);
  return py::float_(value);
}

// Python's integers (int, NumPy integers and 0-d integer arrays, anything with __index__), not
// bools (NumPy's masks), tensors (an int32 tensor of indices is ops.index_select_rows' job) or
// arrays of more than 0 dimensions (their __index__ raises).
bool is_integer(const py::handle& obj) {
  return PyIndex_Check(obj.ptr()) && !PyBool_Check(obj.ptr()) && !py::isinstance<Tensor>(obj) &&
         !(py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() != 0);
}

// An integer's value; one beyond int64 raises `overflow` (nullptr: clamps to the int64 range).
int64_t integer_value(const py::handle& obj, PyObject* overflow) {
  const Py_ssize_t value = PyNumber_AsSsize_t(obj.ptr(), overflow);
  if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
  return value;
}

// A shape as NumPy takes one: an int (one axis) or a sequence of ints (NumPy ints too).
Shape parse_shape(const py::handle& spec, const char* op) {
  const auto bad = [&] {
    return TypeError(concat(op, ": a shape is an int or a sequence of ints, got ",
                            std::string(py::repr(spec))));
  };
  if (is_integer(spec)) return {integer_value(spec, nullptr)};
  if (!PySequence_Check(spec.ptr()) || PyUnicode_Check(spec.ptr()) || PyBytes_Check(spec.ptr()) ||
      py::isinstance<Tensor>(spec)) {
    throw bad();
  }
  Shape shape;
  for (const py::handle item : py::reinterpret_borrow<py::sequence>(spec)) {
    if (!is_integer(item)) throw bad();
    shape.push_back(integer_value(item, nullptr));  // out of int64: clamped, then too large
  }
  return shape;
}

// t[key] for the keys that give a view: on axis 0 an int (negative counts from the end; the
// axis is dropped) or a slice of step 1; `...`; a tuple of one of these followed by `:`s and
// at most one `...`.
Tensor tensor_getitem(const Tensor& t, const py::handle& key) {
  const char* supported = "tensor indices must be an int or a slice with step 1 on axis 0, "
                          "'...', or a tuple of one of these followed by ':'s (a view); for "
                          "rows picked by a list or tensor use ops.index_select_rows; got ";
  if (key.is(py::ellipsis())) return t;
  if (py::isinstance<py::tuple>(key)) {
    const auto items = py::reinterpret_borrow<py::tuple>(key);
    int64_t ellipses = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const py::handle item = items[i];
      const bool full_slice = py::isinstance<py::slice>(item) && item.attr("start").is_none() &&
                              item.attr("stop").is_none() && item.attr("step").is_none();
      const bool ellipsis = item.is(py::ellipsis());
      ellipses += ellipsis;
      NNCORE_CHECK_TYPE(i == 0 || full_slice || ellipsis, supported, std::string(py::repr(key)));
    }
    if (ellipses > 1) throw py::index_error("an index can only have a single ellipsis ('...')");
    const int64_t indexed = static_cast<int64_t>(items.size()) - ellipses;
    if (indexed > t.dim()) {
      throw py::index_error(concat("too many indices for a ", t.dim(), "-d tensor: ", indexed,
                                   " were indexed"));
    }
    return items.empty() ? t : tensor_getitem(t, items[0]);
  }
  const bool is_slice = py::isinstance<py::slice>(key);
  NNCORE_CHECK_TYPE(is_slice || is_integer(key), supported, std::string(py::repr(key)));
  if (t.dim() == 0) throw py::index_error("too many indices for a 0-d tensor (use item())");
  const int64_t rows = t.size(0);
  if (is_slice) {
    py::ssize_t start, stop, step, length;
    if (!py::reinterpret_borrow<py::slice>(key).compute(rows, &start, &stop, &step, &length)) {
      throw py::error_already_set();
    }
    NNCORE_CHECK(step == 1, "tensor[a:b]: only step 1 is supported (a view of rows), got ", step);
    return t.narrow_rows(start, length);
  }
  const int64_t index = integer_value(key, PyExc_IndexError);
  if (index < -rows || index >= rows) {
    throw py::index_error(concat("index ", index, " is out of bounds for axis 0 with size ",
                                 rows));
  }
  return t.narrow_rows(index < 0 ? index + rows : index, 1)
      .reshape(Shape(t.shape().begin() + 1, t.shape().end()));
}

// ---- DLPack ---------------------------------------------------------------------------------

struct DLPackExport {
  Tensor tensor;  // keeps the storage alive
  std::vector<int64_t> shape;
  DLManagedTensor managed;
};

// (kDLCPU, 0), or (kDLCUDA, the device nncore runs on).
DLDevice dlpack_device([[maybe_unused]] const Tensor& t) {
#ifdef NNCORE_WITH_CUDA
  if (t.device() == Device::cuda) return {kDLCUDA, cuda::current_device()};
#endif
  return {kDLCPU, 0};
}

void dlpack_export_deleter(DLManagedTensor* managed) {
  auto* ctx = static_cast<DLPackExport*>(managed->manager_ctx);
#ifdef NNCORE_WITH_CUDA
  // The consumer may still have work queued on its own stream, which DLPack does not name: wait
  // for the device before the block goes back to nncore's cache and to nncore's next kernel.
  if (ctx->tensor.device() == Device::cuda) cuda::wait_for_device();
#endif
  delete ctx;
}

void dlpack_capsule_destructor(PyObject* capsule) {
  // A consumer renames the capsule to "used_dltensor" and owns it; otherwise we free it.
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed && managed->deleter) managed->deleter(managed);
  }
}

py::capsule tensor_to_dlpack(const Tensor& t) {
#ifdef NNCORE_WITH_CUDA
  // The consumer may read on another stream: make our pending work visible first.
  if (t.device() == Device::cuda) cuda::synchronize();
#endif
  auto* ctx = new DLPackExport{t, t.shape(), {}};
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = t.raw();
  dl.device = dlpack_device(t);
  dl.ndim = static_cast<int32_t>(t.dim());
  dl.dtype = {t.dtype() == DType::float32 ? kDLFloat : kDLInt, 32, 1};
  dl.shape = ctx->shape.data();
  dl.strides = nullptr;
  dl.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = dlpack_export_deleter;
  return py::capsule(&ctx->managed, "dltensor", dlpack_capsule_destructor);
}

Tensor tensor_from_dlpack(const py::object& obj) {
  NNCORE_CHECK_TYPE(py::hasattr(obj, "__dlpack__"),
                    "from_dlpack: object of type ", std::string(py::str(py::type::of(obj))),
                    " does not implement __dlpack__");
  const auto device_info = cast_argument<std::pair<int, int>>(
      obj.attr("__dlpack_device__")(), "from_dlpack: __dlpack_device__()",
      "a (device_type, device_id) pair of ints");
  py::object capsule;
  if (device_info.first == kDLCUDA) {
#ifdef NNCORE_WITH_CUDA
    const int own_device = cuda::current_device();
    NNCORE_CHECK(device_info.second == own_device, "from_dlpack: the tensor is on CUDA device ",
                 device_info.second, " but nncore runs on device ", own_device);
    // Ask the producer to make the data ready on our stream.
    capsule = obj.attr("__dlpack__")(py::arg("stream") =
                                         reinterpret_cast<uintptr_t>(cuda::current_stream()));
#else
    throw ValueError("from_dlpack: a CUDA tensor was given but nncore was built without CUDA");
#endif
  } else {
    NNCORE_CHECK(device_info.first == kDLCPU, "from_dlpack: unsupported device type ",
                 device_info.first, " (expected CPU or CUDA)");
    capsule = obj.attr("__dlpack__")();
  }
  PyObject* raw_capsule = capsule.ptr();
  NNCORE_CHECK(PyCapsule_IsValid(raw_capsule, "dltensor"),
               "from_dlpack: __dlpack__ did not return an unused 'dltensor' capsule");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(raw_capsule, "dltensor"));
  const DLTensor& dl = managed->dl_tensor;
  // Validate before taking ownership so a rejected capsule is still freed by its destructor.
  Shape shape(dl.shape, dl.shape + dl.ndim);
  const bool f32 = dl.dtype.code == kDLFloat && dl.dtype.bits == 32 && dl.dtype.lanes == 1;
  const bool i32 = dl.dtype.code == kDLInt && dl.dtype.bits == 32 && dl.dtype.lanes == 1;
  NNCORE_CHECK_TYPE(f32 || i32, "from_dlpack: unsupported dtype (code ", int(dl.dtype.code),
                    ", bits ", int(dl.dtype.bits), "): nncore tensors are float32 or int32");
  const int64_t numel = shape_numel(shape, "from_dlpack");
  if (dl.strides != nullptr && numel > 0) {  // an empty tensor's strides are arbitrary
    int64_t expected = 1;
    for (int64_t axis = dl.ndim - 1; axis >= 0; --axis) {
      NNCORE_CHECK(shape[axis] == 1 || dl.strides[axis] == expected,
                   "from_dlpack: non-contiguous tensor of shape ", shape_str(shape),
                   " is not supported (make it contiguous first, e.g. numpy.ascontiguousarray)");
      expected *= shape[axis];
    }
  }
  void* data = static_cast<char*>(dl.data) + dl.byte_offset;
  NNCORE_CHECK(numel == 0 || reinterpret_cast<uintptr_t>(data) % 4 == 0,
               "from_dlpack: the data at ", data, " is not 4-byte aligned, as nncore's kernels "
               "need for float32/int32 elements (copy it first, e.g. nncore.tensor(x))");
  PyCapsule_SetName(raw_capsule, "used_dltensor");
  const Device device = device_info.first == kDLCUDA ? Device::cuda : Device::cpu;
  const size_t nbytes = static_cast<size_t>(numel) * 4;
  auto storage = std::make_shared<Storage>(data, nbytes, device, [managed, device] {
#ifdef NNCORE_WITH_CUDA
    // nncore's queued kernels may still use the memory: finish them before the producer gets
    // it back (and may hand it to a new tensor on its own stream).
    if (device == Device::cuda) cuda::wait_for_device();
#endif
    if (managed->deleter) managed->deleter(managed);
  });
  return Tensor(storage, shape, f32 ? DType::float32 : DType::int32);
}

void bind_ops(py::module_& m) {
  using py::arg;
  m.def("fill_", &ops::fill_, arg("y"), arg("value"));
  m.def("fill_tensors_", &ops::fill_tensors_, arg("tensors"), arg("value"));
  m.def("axpy_", &ops::axpy_, arg("y"), arg("alpha"), arg("x"));
  m.def("scale_", &ops::scale_, arg("y"), arg("alpha"));
  m.def("mul", &ops::mul, arg("a"), arg("b"));
  m.def("index_select_rows", &ops::index_select_rows, arg("x"), arg("index"));
  m.def("argmax_rows", &ops::argmax_rows, arg("x"));

  m.def("gemm_", &ops::gemm_, arg("a"), arg("b"), arg("c"), arg("trans_a") = false,
        arg("trans_b") = false, arg("alpha") = 1.0f, arg("beta") = 0.0f);
  m.def("matmul", &ops::matmul, arg("a"), arg("b"), arg("trans_a") = false,
        arg("trans_b") = false);

  m.def("linear_forward", &ops::linear_forward, arg("x"), arg("weight"), arg("bias") = py::none(),
        arg("relu") = false);
  m.def("linear_backward",
        [](const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
           std::optional<Tensor> db, bool need_dx, const std::optional<Tensor>& relu_y) {
          return tensor_or_none(
              ops::linear_backward(x, w, dy, dw, std::move(db), need_dx, relu_y));
        },
        arg("x"), arg("weight"), arg("dy"), arg("dweight"), arg("dbias") = py::none(),
        arg("need_dx") = true, arg("relu_y") = py::none());
  m.def("bias_add_", &ops::bias_add_, arg("y"), arg("bias"));
  m.def("bias_grad_", &ops::bias_grad_, arg("dy"), arg("dbias"));

  m.def("im2col", &ops::im2col, arg("x"), arg("kh"), arg("kw"), arg("sh") = 1, arg("sw") = 1,
        arg("ph") = 0, arg("pw") = 0);
  m.def("col2im", &ops::col2im, arg("col"), arg("x_shape"), arg("kh"), arg("kw"), arg("sh") = 1,
        arg("sw") = 1, arg("ph") = 0, arg("pw") = 0);
  m.def("conv2d_forward", &ops::conv2d_forward, arg("x"), arg("weight"), arg("bias") = py::none(),
        arg("sh") = 1, arg("sw") = 1, arg("ph") = 0, arg("pw") = 0, arg("relu") = false);
  m.def("conv2d_backward",
        [](const Tensor& x, const Tensor& w, const Tensor& dy, Tensor& dw,
           std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
           bool need_dx, const std::optional<Tensor>& relu_y) {
          return tensor_or_none(ops::conv2d_backward(x, w, dy, dw, std::move(db), sh, sw, ph, pw,
                                                     need_dx, relu_y));
        },
        arg("x"), arg("weight"), arg("dy"), arg("dweight"), arg("dbias") = py::none(),
        arg("sh") = 1, arg("sw") = 1, arg("ph") = 0, arg("pw") = 0, arg("need_dx") = true,
        arg("relu_y") = py::none());
  m.def("conv2d_pool_forward", &ops::conv2d_pool_forward, arg("x"), arg("weight"),
        arg("bias") = py::none(), arg("sh") = 1, arg("sw") = 1, arg("ph") = 0, arg("pw") = 0,
        arg("relu") = false);
  m.def("conv2d_pool_backward",
        [](const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& argmax, Tensor& dw,
           std::optional<Tensor> db, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
           bool need_dx, const std::optional<Tensor>& relu_y) {
          return tensor_or_none(ops::conv2d_pool_backward(x, w, dy, argmax, dw, std::move(db), sh,
                                                          sw, ph, pw, need_dx, relu_y));
        },
        arg("x"), arg("weight"), arg("dy"), arg("argmax"), arg("dweight"),
        arg("dbias") = py::none(), arg("sh") = 1, arg("sw") = 1, arg("ph") = 0, arg("pw") = 0,
        arg("need_dx") = true, arg("relu_y") = py::none());

  m.def("max_pool2d_forward", &ops::max_pool2d_forward, arg("x"), arg("kh"), arg("kw"),
        arg("sh"), arg("sw"), arg("ph") = 0, arg("pw") = 0);
  m.def("max_pool2d_backward", &ops::max_pool2d_backward, arg("dy"), arg("argmax"),
        arg("x_shape"));
  m.def("avg_pool2d_forward", &ops::avg_pool2d_forward, arg("x"), arg("kh"), arg("kw"),
        arg("sh"), arg("sw"), arg("ph") = 0, arg("pw") = 0, arg("count_include_pad") = true);
  m.def("avg_pool2d_backward", &ops::avg_pool2d_backward, arg("dy"), arg("x_shape"), arg("kh"),
        arg("kw"), arg("sh"), arg("sw"), arg("ph") = 0, arg("pw") = 0,
        arg("count_include_pad") = true);

  m.def("relu_forward", &ops::relu_forward, arg("x"));
  m.def("relu_backward", &ops::relu_backward, arg("x"), arg("dy"), arg("dbias") = py::none());
  m.def("leaky_relu_forward", &ops::leaky_relu_forward, arg("x"), arg("slope") = 0.01f);
  m.def("leaky_relu_backward", &ops::leaky_relu_backward, arg("x"), arg("dy"),
        arg("slope") = 0.01f);
  m.def("sigmoid_forward", &ops::sigmoid_forward, arg("x"));
  m.def("sigmoid_backward", &ops::sigmoid_backward, arg("y"), arg("dy"));
  m.def("tanh_forward", &ops::tanh_forward, arg("x"));
  m.def("tanh_backward", &ops::tanh_backward, arg("y"), arg("dy"));
  m.def("softmax_forward", &ops::softmax_forward, arg("x"));
  m.def("softmax_backward", &ops::softmax_backward, arg("y"), arg("dy"));
  m.def("log_softmax_forward", &ops::log_softmax_forward, arg("x"));
  m.def("log_softmax_backward", &ops::log_softmax_backward, arg("y"), arg("dy"));

  m.def("cross_entropy_forward", &ops::cross_entropy_forward, arg("logits"), arg("target"));
  m.def("cross_entropy_backward", &ops::cross_entropy_backward, arg("probs"), arg("target"),
        arg("grad_scale") = 1.0f);
  m.def("mse_forward", &ops::mse_forward, arg("pred"), arg("target"));
  m.def("mse_backward", &ops::mse_backward, arg("pred"), arg("target"), arg("grad_scale") = 1.0f);

  m.def("sgd_step_", &ops::sgd_step_, arg("params"), arg("grads"),
        arg("momentum_bufs") = py::none(), arg("lr"), arg("momentum") = 0.0,
        arg("dampening") = 0.0, arg("weight_decay") = 0.0, arg("nesterov") = false,
        arg("first_step") = false);
  m.def("adam_step_", &ops::adam_step_, arg("params"), arg("grads"), arg("m"), arg("v"), arg("lr"),
        // Double defaults, as the hyper-parameters are doubles (rounded once, as PyTorch does):
        // 0.9f would make 1 - beta1 = 0.100000024.
        arg("beta1") = 0.9, arg("beta2") = 0.999, arg("eps") = 1e-8,
        arg("weight_decay") = 0.0, arg("step"));
  m.def("dropout_forward", &ops::dropout_forward, arg("x"), arg("p"), arg("seed"),
        arg("offset") = 0);
}

py::dict stats_dict(const AllocatorStats& s) {
  py::dict d;
  d["allocated_bytes"] = s.allocated_bytes;
  d["reserved_bytes"] = s.reserved_bytes;
  d["peak_allocated_bytes"] = s.peak_allocated_bytes;
  d["num_system_allocs"] = s.num_system_allocs;
  return d;
}

void bind_cuda(py::module_& m) {
  py::module_ c = m.def_submodule("cuda", "CUDA runtime queries");
#ifdef NNCORE_WITH_CUDA
  c.def("is_compiled", [] { return true; });
  c.def("device_count", &cuda::device_count);
  c.def("device_name", &cuda::device_description);
  c.def("device_properties", [] {
    const cuda::DeviceProperties p = cuda::device_properties();
    py::dict d;
    d["name"] = p.name;
    d["major"] = p.major;
    d["minor"] = p.minor;
    d["multi_processor_count"] = p.multi_processor_count;
    d["total_memory"] = p.total_memory;
    return d;
  });
  c.def("synchronize", &cuda::synchronize);
  c.def("empty_cache", &cuda::empty_cache);
  c.def("reset_peak_memory_stats", &cuda::reset_peak_stats);
  c.def("memory_stats", [] { return stats_dict(cuda::allocator_stats()); });
  c.def("set_allow_tf32", &cuda::set_allow_tf32, py::arg("allow"));
  c.def("allow_tf32", &cuda::allow_tf32);
#else
  c.def("is_compiled", [] { return false; });
  c.def("device_count", [] { return 0; });
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "nncore's compiled core: tensors and hand-written CPU/CUDA kernels";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const OutOfMemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  py::class_<Tensor>(m, "Tensor", py::buffer_protocol())
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("dtype", [](const Tensor& t) { return dtype_name(t.dtype()); })
      .def_property_readonly("device", [](const Tensor& t) { return device_name(t.device()); })
      .def_property_readonly("ndim", &Tensor::dim)
      .def("numel", &Tensor::numel)
      .def("__len__", [](const Tensor& t) {
        NNCORE_CHECK_TYPE(t.dim() > 0, "len() of a 0-d tensor");
        return t.size(0);
      })
      .def("numpy", &tensor_to_numpy)
      // NumPy's protocol (np.asarray, np.array): .numpy()'s view on the CPU, its copy from a GPU;
      // copy=False where only a copy would do is NumPy 2's ValueError, not a silent copy.
      .def("__array__", [](const py::object& self, const py::object& dtype,
                           const py::object& copy) -> py::object {
        const Tensor& t = self.cast<const Tensor&>();
        const bool must_copy = copy_requested(copy, "__array__: copy");
        const bool may_copy = copy.is_none() || must_copy;
        const bool converts = !dtype.is_none() &&
                              !py::dtype::from_args(dtype).equal(numpy_dtype(t.dtype()));
        if (!may_copy && (t.device() != Device::cpu || converts))
          throw ValueError(concat("__array__: copy=False, but a ", device_name(t.device()),
                                  converts ? " tensor converted to another dtype" : " tensor",
                                  " can only be had as a copy"));
        py::object array = tensor_to_numpy(self);
        if (converts) return array.attr("astype")(dtype);
        if (must_copy && t.device() == Device::cpu) return array.attr("copy")();
        return array;
      }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("to", [](const Tensor& t, const py::object& device) {
             return t.to(parse_device(device, t.device()));
           },
           py::arg("device"))
      .def("reshape", [](const Tensor& t, const py::args& args) {
        // reshape(2, 3) or reshape((2, 3))
        const py::handle first = args.size() == 1 ? args[0] : py::handle();
        return t.reshape(parse_shape(first && !is_integer(first) ? first : args, "reshape"));
      })
      .def("narrow", [](const Tensor& t, int64_t dim, int64_t start, int64_t length) {
        // A negative dim or start counts from the end (PyTorch's rule).
        NNCORE_CHECK(dim == 0 || dim + t.dim() == 0,
                     "narrow: only axis 0 gives a contiguous view, got dim=", dim);
        if (start < 0 && t.dim() > 0) start += t.size(0);
        return t.narrow_rows(start, length);
      }, py::arg("dim"), py::arg("start"), py::arg("length"))
      .def("__getitem__", &tensor_getitem, py::arg("key"),
           "A view: t[i] is row i (negative counts from the end), t[a:b] rows a..b-1, t[...] t")
      .def("__iter__", [](const py::object& self) {
        NNCORE_CHECK_TYPE(self.cast<const Tensor&>().dim() > 0, "iteration over a 0-d tensor");
        // Python's sequence iterator: self[0], self[1], ... until IndexError, each a view.
        PyObject* rows = PySeqIter_New(self.ptr());
        if (rows == nullptr) throw py::error_already_set();
        return py::reinterpret_steal<py::iterator>(rows);
      })
      .def("__contains__", [](const Tensor&, const py::object&) -> bool {
        // Iteration would compare rows by identity (there is no elementwise ==): never True.
        throw TypeError("'in' is not supported for nncore tensors: test t.numpy() instead");
      })
      .def("clone", &Tensor::clone)
      .def("__copy__", &Tensor::clone,
           "copy.copy(t): a copy with its own memory, as clone() (t[...] is the view)")
      .def("__deepcopy__", [](const Tensor& t, const py::object& /*memo*/) { return t.clone(); },
           py::arg("memo"), "copy.deepcopy(t): clone(), on the same device")
      .def("__reduce__", [](const py::object& self) {
        // Pickled as _tensor_from_array(values as a NumPy array, device name): a CUDA tensor's
        // values go through the host and back to "cuda". (Not py::pickle: its protocols 0 and
        // 1 abort the interpreter.)
        return py::make_tuple(py::module_::import("nncore._C").attr("_tensor_from_array"),
                              py::make_tuple(tensor_to_numpy(self),
                                             device_name(self.cast<const Tensor&>().device())));
      })
      .def("item", [](const Tensor& t) { return tensor_item(t, "item"); })
      .def("__float__", [](const Tensor& t) { return py::float_(tensor_item(t, "float()")); })
      .def("__int__", [](const Tensor& t) { return py::int_(tensor_item(t, "int()")); })
      .def("__index__", [](const Tensor& t) {
        NNCORE_CHECK_TYPE(t.dtype() == DType::int32 && t.numel() == 1, "only integer tensors "
                          "of a single element can be converted to an index, got ",
                          dtype_name(t.dtype()), " ", shape_str(t.shape()));
        return tensor_item(t, "__index__");
      })
      .def("__bool__", [](const Tensor& t) {
        NNCORE_CHECK(t.numel() == 1, "bool(): the truth value of a tensor with ", t.numel(),
                     " elements is ambiguous");
        return tensor_item(t, "bool()").cast<double>() != 0.0;
      })
      .def("fill_", [](Tensor& t, float value) {
        NNCORE_CHECK_TYPE(t.dtype() == DType::float32, "fill_: only float32 tensors can be "
                          "filled (there is no int32 fill kernel), got an int32 tensor; zero_() "
                          "clears any dtype");
        ops::fill_(t, value);
        return t;
      }, py::arg("value"))
      .def("zero_", [](Tensor& t) { t.zero_(); return t; }, "Sets every element to 0 (any dtype)")
      .def("__dlpack__", [](const Tensor& t, const py::object& /*stream*/,
                            const py::object& /*max_version*/, const py::object& dl_device,
                            const py::object& copy) {
        // The array API's rules: the capsule is on dl_device or BufferError; copy=True exports
        // a copy; copy=False and None share (we never need to copy). tensor_to_dlpack
        // synchronizes, so any stream may read it; the capsule is always the unversioned kind.
        if (!dl_device.is_none()) {
          const auto requested = cast_argument<std::pair<int, int>>(
              dl_device, "__dlpack__: dl_device", "a (device_type, device_id) pair of ints");
          const DLDevice own = dlpack_device(t);
          if (requested != std::make_pair(int(own.device_type), int(own.device_id))) {
            throw py::buffer_error(concat(
                "__dlpack__: dl_device (", requested.first, ", ", requested.second,
                ") is not the tensor's device (", int(own.device_type), ", ", own.device_id,
                "); move it with .to() first"));
          }
        }
        return tensor_to_dlpack(copy_requested(copy, "__dlpack__: copy") ? t.clone() : t);
      }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
         py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const Tensor& t) {
        const DLDevice device = dlpack_device(t);
        return py::make_tuple(int(device.device_type), device.device_id);
      })
      .def_buffer([](const Tensor& t) -> py::buffer_info {
        NNCORE_CHECK(t.device() == Device::cpu, "buffer protocol: tensor is on ",
                     device_name(t.device()), "; call .numpy() or .to('cpu') first");
        std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
        std::vector<py::ssize_t> strides(shape.size());
        py::ssize_t stride = 4;
        for (size_t i = shape.size(); i-- > 0;) {
          strides[i] = stride;
          stride *= shape[i];
        }
        return py::buffer_info(t.raw(), 4,
                               t.dtype() == DType::float32 ? py::format_descriptor<float>::format()
                                                           : py::format_descriptor<int32_t>::format(),
                               static_cast<py::ssize_t>(shape.size()), shape, strides);
      })
      .def("__repr__", [](const Tensor& t) {
        return concat("nncore.Tensor(shape=", shape_str(t.shape()), ", dtype=",
                      dtype_name(t.dtype()), ", device='", device_name(t.device()), "')");
      });

  m.def("_tensor_from_array", &tensor_from_array, py::arg("array"), py::arg("device") = "cpu");
  m.def("empty", [](const py::object& shape, const py::object& dtype, const py::object& device) {
    return Tensor::empty(parse_shape(shape, "empty"), parse_dtype(dtype),
                         parse_device(device, Device::cpu));
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu",
     "An uninitialized tensor; shape an int or ints, dtype float32 or int32 (as NumPy names)");
  m.def("zeros", [](const py::object& shape, const py::object& dtype, const py::object& device) {
    return Tensor::zeros(parse_shape(shape, "zeros"), parse_dtype(dtype),
                         parse_device(device, Device::cpu));
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu",
     "A tensor of zeros; shape an int or ints, dtype float32 or int32 (as NumPy names)");
  m.def("from_dlpack", &tensor_from_dlpack, py::arg("obj"));
  m.def("cpu_gemm_kernel", [] { return std::string(cpu::sgemm_kernel_name()); },
        "The CPU GEMM micro-kernel picked for this machine (avx512, avx2 or generic)");
  m.def("_force_cpu_gemm_kernel", [](const std::string& name) { cpu::sgemm_force_kernel(name.c_str()); },
        py::arg("name"));
  m.def("cpu_conv_algorithm", &cpu::conv2d_algorithm,
        "The CPU conv2d algorithm ('direct' or 'im2col') for input channels C, input H x W, "
        "Cout, kernel kh x kw, padding ph, pw and stride sh, sw: forward, or backward with or "
        "without the input gradient",
        py::arg("C"), py::arg("H"), py::arg("W"), py::arg("cout"), py::arg("kh"), py::arg("kw"),
        py::arg("ph"), py::arg("pw"), py::arg("sh"), py::arg("sw"), py::arg("backward") = false,
        py::arg("need_dx") = true);
  m.def("_force_cpu_conv_algorithm",
        [](const std::string& name) { cpu::conv2d_force_algorithm(name.c_str()); },
        py::arg("name"));

  m.def("cpu_memory_stats", [] { return stats_dict(host_allocator_stats()); });
  m.def("cpu_reset_peak_memory_stats", &host_reset_peak_stats);
  m.def("cpu_empty_cache", &host_empty_cache);

  bind_ops(m);
  bind_cuda(m);
}
