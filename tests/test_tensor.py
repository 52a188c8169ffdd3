"""nncore.Tensor: construction, dtypes, metadata, views, buffer protocol, DLPack, devices."""
from __future__ import annotations

import copy
import gc
import operator
import pickle

import numpy as np
import pytest

import nncore as nc


def test_tensor_copies_its_source(device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = nc.tensor(a, device=device)
    a[0, 0] = 100.0
    assert t.numpy()[0, 0] == 0.0
    np.testing.assert_array_equal(t.numpy(), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("src,dtype", [
    (np.ones(3, np.float64), "float32"), (np.ones(3, np.float32), "float32"),
    (np.ones(3, np.float16), "float32"), (np.ones(3, np.int64), "int32"),
    (np.ones(3, np.int32), "int32"), (np.ones(3, np.uint8), "int32"),
    (np.ones(3, np.int16), "int32"),
    ([1.5, 2.5], "float32"), ([1, 2], "int32"), (3.0, "float32"),
])
def test_dtype_conversion(device, src, dtype):
    t = nc.tensor(src, device=device)
    assert t.dtype == dtype
    assert t.numpy().dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), np.asarray(src).astype(dtype))


def test_scalar_tensor_is_0d(device):
    """Like np.asarray / torch.tensor: a Python or NumPy scalar gives shape ()."""
    for value in (3.0, np.float32(2.5), np.array(1.5), 7):
        t = nc.tensor(value, device=device)
        assert t.shape == () and t.ndim == 0 and t.numel() == 1, (value, t.shape)
        assert t.item() == float(value)


def test_float64_values_round_to_float32():
    t = nc.tensor(np.array([0.1, 1e-50, 1e30], np.float64))
    np.testing.assert_array_equal(t.numpy(), np.array([0.1, 1e-50, 1e30], np.float32))


def test_explicit_dtype(device):
    assert nc.tensor([1, 2], device=device, dtype="float32").dtype == "float32"
    assert nc.tensor([1.0, 2.0], device=device, dtype=np.int32).dtype == "int32"
    assert nc.tensor([1, 2], device=device, dtype=np.float32).numpy().tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="tensor"):
        nc.tensor([1, 2], dtype="float64")


def test_bool_is_rejected():
    with pytest.raises(TypeError, match="tensor: unsupported dtype bool"):
        nc.tensor(np.array([True, False]))


@pytest.mark.parametrize("bad", [np.array(["a"]), np.array([1 + 2j])])
def test_other_dtypes_are_rejected(bad):
    with pytest.raises(TypeError, match="tensor"):
        nc.tensor(bad)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**40])
def test_int_out_of_int32_range(value):
    with pytest.raises(ValueError, match="int32"):
        nc.tensor(np.array([0, value], np.int64))
    # the limits themselves fit
    nc.tensor(np.array([2**31 - 1, -(2**31)], np.int64))


@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3), (4, 1, 3), (2, 3, 4, 5)])
def test_metadata(device, shape):
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = nc.tensor(a, device=device)
    assert t.shape == shape and isinstance(t.shape, tuple)
    assert t.ndim == len(shape)
    assert t.numel() == a.size
    assert t.dtype == "float32"
    assert t.device == device
    if shape:
        assert len(t) == shape[0]
    else:
        with pytest.raises(TypeError):
            len(t)
    assert "Tensor" in repr(t)


def test_item(device):
    assert nc.tensor(np.array([2.5], np.float32), device=device).item() == 2.5
    assert isinstance(nc.tensor(np.float32(2.5), device=device).item(), float)
    i = nc.tensor(np.array([[7]], np.int32), device=device).item()
    assert i == 7 and isinstance(i, int)
    with pytest.raises(ValueError, match="item"):
        nc.tensor(np.ones(3, np.float32), device=device).item()


def test_python_scalar_conversions(device):
    """float(), int(), operator.index() and bool() read the one element (as item() does), not
    the buffer's bytes; like NumPy and PyTorch, only integer tensors are indices and more than
    one element is an error."""
    i = nc.tensor(np.array([0x20203231], np.int32), device=device)  # the bytes b"12  "
    assert int(i) == 0x20203231 and float(i) == float(0x20203231)
    assert operator.index(i) == 0x20203231 and [10, 11, 12][nc.tensor(-1, device=device)] == 12
    f = nc.tensor(np.array([[-2.75]], np.float32), device=device)
    assert float(f) == -2.75 and int(f) == -2 and isinstance(int(f), int)
    with pytest.raises(TypeError, match="only integer tensors of a single element"):
        operator.index(f)
    assert bool(nc.tensor(0.5, device=device)) and not bool(nc.tensor([0], device=device))
    assert not bool(nc.tensor(-0.0, device=device))
    for many in (nc.zeros((2,), device=device), nc.zeros((0,), device=device)):
        for convert in (float, int):
            with pytest.raises(ValueError, match="only one-element tensors"):
                convert(many)
        with pytest.raises(ValueError, match="ambiguous"):
            bool(many)
        with pytest.raises(TypeError, match="index"):
            operator.index(nc.zeros(many.shape, dtype="int32", device=device))


def test_numpy_is_a_zero_copy_view_on_cpu():
    t = nc.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    view = t.numpy()
    assert np.shares_memory(view, np.asarray(t))
    view[1, 2] = -5.0
    assert t.numpy()[1, 2] == -5.0
    assert np.asarray(t)[1, 2] == -5.0


def test_numpy_view_keeps_tensor_alive():
    view = nc.tensor(np.arange(1000, dtype=np.float32)).numpy()
    gc.collect()
    np.testing.assert_array_equal(view, np.arange(1000))


def test_buffer_protocol():
    t = nc.tensor(np.arange(6, dtype=np.int32).reshape(2, 3))
    m = memoryview(t)
    assert m.shape == (2, 3) and m.format == "i" and m.itemsize == 4 and m.c_contiguous
    a = np.asarray(t)
    assert a.dtype == np.int32 and a.shape == (2, 3)
    assert np.shares_memory(a, t.numpy())
    f = np.asarray(nc.zeros((4, 5)))
    assert f.dtype == np.float32 and f.strides == (20, 4)


@pytest.mark.parametrize("n", [1, 3, 17, 1000, 4097])
def test_data_is_64_byte_aligned(n):
    for t in (nc.tensor(np.ones(n, np.float32)), nc.zeros((n,)), nc.empty((n, 3)),
              nc.tensor(np.ones(n, np.int32)), nc.zeros((n,)).clone()):
        assert np.asarray(t).ctypes.data % 64 == 0


def test_reshape_is_a_view(device):
    t = nc.tensor(np.arange(24, dtype=np.float32), device=device)
    r = t.reshape(2, 3, 4)
    assert r.shape == (2, 3, 4)
    assert t.reshape((4, 6)).shape == (4, 6)
    assert t.reshape(-1, 8).shape == (3, 8)
    assert t.reshape(2, -1, 3).shape == (2, 4, 3)
    np.testing.assert_array_equal(r.numpy(), np.arange(24).reshape(2, 3, 4))
    if device == "cpu":
        assert np.shares_memory(np.asarray(r), np.asarray(t))
    r.fill_(1.0)  # same storage
    np.testing.assert_array_equal(t.numpy(), np.ones(24))


@pytest.mark.parametrize("shape", [(5, 5), (7,), (-1, -1), (2, -1, 5), (0, -1), (-2, 12)])
def test_bad_reshape(device, shape):
    t = nc.tensor(np.arange(24, dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="reshape"):
        t.reshape(*shape)


def test_element_count_overflow_is_rejected(device):
    """Shapes whose element count (or byte count) overflows: a wrapped count gave tensors far
    smaller than their shape, and crashes."""
    with pytest.raises(ValueError, match=r"too many elements"):
        nc.zeros((2**62 - 1,), device=device)
    with pytest.raises(ValueError, match=r"too many elements"):
        nc.empty([2**62 - 1], device=device)
    with pytest.raises(ValueError, match=r"too many elements"):
        nc.empty([2**32, 2**32], device=device)  # 2**64 elements: wrapped to 0
    t = nc.tensor(np.ones(4, np.float32), device=device)
    with pytest.raises(ValueError, match="^reshape: .*too many elements"):
        t.reshape(2**62 + 1, 4)  # (2**62 + 1) * 4 wraps to 4
    with pytest.raises(ValueError, match="^reshape: "):
        t.reshape(-1, 2**62, 2**62)
    empty = nc.zeros((2**40, 2**40, 0), device=device)  # empty however large the other axes
    assert empty.numel() == 0 and empty.shape == (2**40, 2**40, 0)


def test_allocation_too_large_for_memory_is_a_memory_error():
    with pytest.raises(MemoryError, match="out of memory"):
        nc.empty([2**61 - 1])  # as many elements as addressable, far more than memory


def test_clone_is_independent(device):
    t = nc.tensor(np.arange(5, dtype=np.float32), device=device)
    c = t.clone()
    assert c.shape == t.shape and c.dtype == t.dtype and c.device == t.device
    c.fill_(9.0)
    np.testing.assert_array_equal(t.numpy(), np.arange(5))
    np.testing.assert_array_equal(c.numpy(), np.full(5, 9.0))
    if device == "cpu":
        assert not np.shares_memory(np.asarray(c), np.asarray(t))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_copy_deepcopy_and_pickle(device, dtype):
    """copy.copy, copy.deepcopy and a pickle round trip give an independent tensor with the same
    values, shape, dtype and device."""
    base = np.arange(6, dtype=dtype).reshape(2, 3)
    for shape in ((2, 3), (), (0, 4)):
        source = base.reshape(-1)[:1].reshape(()) if shape == () else np.zeros(shape, dtype)
        t = nc.tensor(base if shape == (2, 3) else source, device=device)
        pickled = [pickle.loads(pickle.dumps(t, protocol)) for protocol in range(6)]
        for copied in [copy.copy(t), copy.deepcopy(t), copy.deepcopy([t, t])[0]] + pickled:
            assert (copied.shape, copied.dtype, copied.device) == (t.shape, t.dtype, t.device)
            np.testing.assert_array_equal(copied.numpy(), t.numpy())
            copied.zero_()
            np.testing.assert_array_equal(t.numpy(), base if shape == (2, 3) else source)


def test_deepcopy_of_a_model_is_independent(device):
    model = nc.models.mlp(4, 3, 2, device=device)
    x = nc.tensor(np.random.default_rng(0).standard_normal((5, 4)), device=device)
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin(x).numpy(), model(x).numpy())
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        assert a is not b and a.data.device == b.data.device == device, name
        b.data.fill_(0.5)
        assert not np.all(a.data.numpy() == 0.5), name
    assert not np.array_equal(twin(x).numpy(), model(x).numpy())


def test_deepcopy_and_pickle_of_a_trained_model_keep_the_used_up_state(device):
    """A copy taken after a backward still says so clearly on a second backward (the markers
    of saved state survive copying), and a pickled model predicts the same."""
    model = nc.models.mlp(4, 3, 2, device=device)
    x = nc.tensor(np.random.default_rng(0).standard_normal((5, 4)), device=device)
    model.backward(model(x), need_dx=False)  # any gradient will do
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with pytest.raises(RuntimeError, match="backward already ran"):
            twin.backward(nc.zeros((5, 2), device=device), need_dx=False)
        np.testing.assert_array_equal(twin(x).numpy(), model(x).numpy())


def test_numpy_array_protocol(device):
    """np.asarray(t) is .numpy(): a view on the CPU, a copy from a GPU (not an element-by-element
    walk through indexing); np.array copies; a dtype converts; copy=False that cannot hold is
    NumPy 2's ValueError."""
    t = nc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), device=device)
    viewed = np.asarray(t)
    np.testing.assert_array_equal(viewed, np.arange(6).reshape(2, 3))
    copied = np.array(t)
    converted = np.asarray(t, dtype=np.float64)
    assert converted.dtype == np.float64
    np.testing.assert_array_equal(converted, viewed)
    t.fill_(7.0)
    assert np.all(copied != 7.0) and np.all(converted != 7.0)
    assert np.all(viewed == 7.0) == (device == "cpu")
    if device == "cpu":
        assert np.shares_memory(np.asarray(t, copy=False), viewed)
    else:
        with pytest.raises(ValueError, match="copy=False, but a cuda tensor"):
            np.asarray(t, copy=False)
    with pytest.raises(ValueError):  # NumPy's or ours: a float64 array needs a copy
        np.asarray(t, dtype=np.float64, copy=False)
    ints = np.asarray(nc.tensor(np.arange(3, dtype=np.int32), device=device))
    assert ints.dtype == np.int32 and ints.tolist() == [0, 1, 2]


def test_to_same_device_is_equivalent(device):
    t = nc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), device=device)
    u = t.to(device)
    assert u.device == device and u.shape == t.shape
    np.testing.assert_array_equal(u.numpy(), t.numpy())
    if device == "cpu":
        u = t.to("cpu")
        assert np.shares_memory(np.asarray(u), np.asarray(t))  # "self when already there"


def test_round_trip_through_cuda(cuda_device):
    a = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    g = nc.tensor(a).to("cuda")
    assert g.device == "cuda"
    np.testing.assert_array_equal(g.to("cpu").numpy(), a)
    np.testing.assert_array_equal(g.numpy(), a)  # synchronising copy
    assert nc.tensor(a, device="cuda:0").device == "cuda"
    with pytest.raises((ValueError, RuntimeError, BufferError)):
        memoryview(g)


def test_cuda_without_gpu_raises_clearly():
    if nc.cuda.is_available():
        pytest.skip("a CUDA device is available")
    t = nc.tensor(np.ones(3, np.float32))
    for make in (lambda: t.to("cuda"), lambda: nc.tensor(np.ones(3), device="cuda"),
                 lambda: nc.zeros((2,), device="cuda"), lambda: t.to("cuda:0")):
        with pytest.raises((ValueError, RuntimeError), match="(?i)cuda"):
            make()


def test_unknown_device():
    with pytest.raises(ValueError, match="device"):
        nc.tensor(np.ones(3), device="tpu")
    with pytest.raises(ValueError, match="device"):
        nc.zeros((2,), device="cuda:7")


def test_zeros_and_empty(device):
    z = nc.zeros((3, 4), device=device)
    assert z.shape == (3, 4) and z.dtype == "float32" and z.device == device
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4)))
    zi = nc.zeros((5,), dtype="int32", device=device)
    assert zi.dtype == "int32"
    np.testing.assert_array_equal(zi.numpy(), np.zeros(5))
    e = nc.empty((2, 0, 3), device=device)
    assert e.shape == (2, 0, 3) and e.numel() == 0
    assert nc.empty((), device=device).shape == ()
    with pytest.raises(TypeError, match="dtype"):
        nc.zeros((2,), dtype="float64")


def test_zeros_and_empty_take_numpy_shapes_and_dtypes(device):
    """nc.tensor's dtype rule (what numpy.dtype() takes, when float32 or int32) and an int shape."""
    for make in (nc.zeros, nc.empty):
        assert make(3, device=device).shape == (3,)
        assert make(np.int64(2), device=device).shape == (2,)
        assert make([2, np.int32(3)], device=device).shape == (2, 3)
        assert make(np.array([4, 1]), device=device).shape == (4, 1)
        for dtype in (np.float32, np.dtype("float32"), "f4", "float32", None):
            assert make((2, 3), dtype=dtype, device=device).dtype == "float32", dtype
        for dtype in (np.int32, np.dtype("int32"), "i4", "int32"):
            assert make(2, dtype=dtype, device=device).dtype == "int32", dtype
        for dtype in (np.float64, "int64", ">f4", bool):
            with pytest.raises(TypeError, match="unsupported dtype"):
                make(2, dtype=dtype, device=device)
        for shape in (3.0, "3", (2, 1.5), [None], {2: 3}):
            with pytest.raises(TypeError, match=f"{make.__name__}: a shape is an int or a"):
                make(shape, device=device)
    np.testing.assert_array_equal(nc.zeros(4, dtype=np.int32, device=device).numpy(), np.zeros(4))


def test_reshape_shape_types(device):
    t = nc.zeros((12,), device=device)
    for shape in ((3, 4), [3, 4], np.array([3, 4]), (np.int64(3), -1)):
        assert t.reshape(shape).shape == (3, 4)
    assert t.reshape(3, np.int32(4)).shape == (3, 4) and t.reshape(np.int64(12)).shape == (12,)
    for bad in ((12.0,), ((3, 4.0),), (3.0, 4), ("12",)):
        with pytest.raises(TypeError, match="reshape: a shape is an int or a sequence of ints"):
            t.reshape(*bad)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_zero_any_dtype(device, dtype):
    """zero_() clears any dtype in place (a memset), also through a view, and returns the tensor."""
    t = nc.tensor(np.arange(1, 13, dtype=dtype).reshape(4, 3), device=device)
    assert t[1:3].zero_().shape == (2, 3)
    np.testing.assert_array_equal(t.numpy()[[0, 3]], np.arange(1, 13).reshape(4, 3)[[0, 3]])
    np.testing.assert_array_equal(t.numpy()[1:3], np.zeros((2, 3)))
    assert t.zero_() is not None and t.numpy().dtype == dtype and not t.numpy().any()
    nc.empty((0, 3), dtype=np.dtype(dtype).name, device=device).zero_()


def test_fill_is_float32_only(device):
    f = nc.tensor(np.zeros(3, np.float32), device=device).fill_(2)
    np.testing.assert_array_equal(f.numpy(), [2.0, 2.0, 2.0])
    with pytest.raises(TypeError, match="fill_: only float32 .* zero_"):
        nc.tensor(np.ones(2, np.int32), device=device).fill_(3)


@pytest.mark.parametrize("shape", [(-1, 3), (3, -2), (-5,)])
def test_negative_sizes(shape):
    with pytest.raises(ValueError, match="negative"):
        nc.zeros(shape)
    with pytest.raises(ValueError, match="negative"):
        nc.empty(shape)


# ---- DLPack --------------------------------------------------------------------------------

def test_dlpack_export_shares_memory():
    t = nc.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    a = np.from_dlpack(t)
    assert a.shape == (3, 4) and a.dtype == np.float32
    assert np.shares_memory(a, np.asarray(t))
    assert t.__dlpack_device__() == (1, 0)
    i = np.from_dlpack(nc.tensor(np.arange(5, dtype=np.int32)))
    assert i.dtype == np.int32 and i.tolist() == [0, 1, 2, 3, 4]


def test_dlpack_export_copy_and_device(device):
    """The array API's __dlpack__ keywords: copy=True exports a copy, copy=False/None share, and
    a dl_device other than the tensor's own raises BufferError."""
    t = nc.tensor(np.arange(6, dtype=np.float32), device=device)
    own = t.__dlpack_device__()
    assert own == ((1, 0) if device == "cpu" else (2, own[1]))
    shared = nc.from_dlpack(t)  # nncore's import of nncore's export shares on either device
    copied = nc.from_dlpack(_DLPackWith(t, copy=True, dl_device=own))
    assert copied.device == device
    t.fill_(-1.0)
    np.testing.assert_array_equal(shared.numpy(), np.full(6, -1.0))
    np.testing.assert_array_equal(copied.numpy(), np.arange(6))
    for kwargs in ({"copy": False}, {"copy": None}, {"dl_device": own, "max_version": (1, 0)}):
        nc.from_dlpack(_DLPackWith(t, **kwargs)).fill_(5.0)
        np.testing.assert_array_equal(t.numpy(), np.full(6, 5.0))
    other = (2, 0) if device == "cpu" else (1, 0)
    with pytest.raises(BufferError, match="dl_device"):
        t.__dlpack__(dl_device=other)
    if device == "cpu":  # NumPy passes copy= and dl_device= through
        a = np.from_dlpack(t, copy=True)
        t.fill_(7.0)
        assert not np.shares_memory(a, np.asarray(t)) and np.all(a == 5.0)
        assert np.shares_memory(np.from_dlpack(t, copy=False), np.asarray(t))


def test_protocol_arguments_of_the_wrong_type_are_type_errors(device):
    """copy= and dl_device= of the array and DLPack protocols, and a producer's
    __dlpack_device__(), that pybind cannot convert: TypeError naming the argument (pybind's
    cast failure was a RuntimeError "Unable to cast Python instance ...")."""
    t = nc.zeros((2, 3), device=device)
    with pytest.raises(TypeError, match="__array__: copy must be None or a bool, got <class 'str'>"):
        t.__array__(copy="x")
    with pytest.raises(TypeError, match="__dlpack__: copy must be None or a bool"):
        t.__dlpack__(copy="x")
    for dl_device in ("cpu", (1,), (1, 0, 0)):
        with pytest.raises(TypeError, match=r"__dlpack__: dl_device must be a \(device_type, "):
            t.__dlpack__(dl_device=dl_device)

    class Producer:
        def __dlpack__(self, **kwargs):
            return t.__dlpack__()

        def __dlpack_device__(self):
            return "cpu"

    with pytest.raises(TypeError, match=r"from_dlpack: __dlpack_device__\(\) must be a "):
        nc.from_dlpack(Producer())


class _DLPackWith:
    """Calls ``tensor.__dlpack__`` with fixed keywords (what a consumer such as NumPy passes)."""

    def __init__(self, tensor, **kwargs):
        self.tensor, self.kwargs = tensor, kwargs

    def __dlpack_device__(self):
        return self.tensor.__dlpack_device__()

    def __dlpack__(self, stream=None):
        return self.tensor.__dlpack__(stream=stream, **self.kwargs)


def test_dlpack_export_keeps_storage_alive():
    a = np.from_dlpack(nc.tensor(np.arange(1000, dtype=np.float32)))
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(1000))


def test_dlpack_import_shares_memory():
    a = np.arange(20, dtype=np.float32).reshape(4, 5)
    t = nc.from_dlpack(a)
    assert t.shape == (4, 5) and t.dtype == "float32" and t.device == "cpu"
    assert np.shares_memory(np.asarray(t), a)
    a[2, 3] = -1.0
    assert t.numpy()[2, 3] == -1.0
    t.fill_(7.0)
    assert np.all(a == 7.0)
    b = np.arange(3, dtype=np.int32)
    assert nc.from_dlpack(b).dtype == "int32"


def test_dlpack_import_keeps_producer_alive():
    t = nc.from_dlpack(np.arange(777, dtype=np.float32))
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(777))


def test_dlpack_round_trip():
    t = nc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    u = nc.from_dlpack(t)
    assert np.shares_memory(np.asarray(u), np.asarray(t))
    np.testing.assert_array_equal(u.numpy(), t.numpy())


def test_dlpack_non_contiguous_is_rejected():
    a = np.arange(20, dtype=np.float32).reshape(4, 5)
    with pytest.raises(ValueError, match="from_dlpack: non-contiguous"):
        nc.from_dlpack(a[:, ::2])
    with pytest.raises(ValueError, match="from_dlpack: non-contiguous"):
        nc.from_dlpack(a.T)
    # size-1 axes may carry any stride
    assert nc.from_dlpack(a[1:2, :]).shape == (1, 5)


def test_dlpack_empty_tensors_are_contiguous():
    """An empty array's strides say nothing (NumPy gives (0, 4) for (3, 0))."""
    for shape in ((3, 0), (2, 0, 4), (0,), (0, 5)):
        t = nc.from_dlpack(np.zeros(shape, np.float32))
        assert t.shape == shape and t.numel() == 0


def test_dlpack_empty_torch_tensors():
    torch = pytest.importorskip("torch")
    for shape in ((3, 0), (2, 0, 4)):
        assert nc.from_dlpack(torch.zeros(shape)).shape == shape


def test_dlpack_misaligned_data_is_rejected():
    buffer = np.zeros(17, np.uint8)
    a = np.frombuffer(buffer, np.float32, count=4, offset=1)  # a float32 view 1 byte in
    with pytest.raises(ValueError, match="from_dlpack: .*not 4-byte aligned"):
        nc.from_dlpack(a)
    np.testing.assert_array_equal(nc.tensor(a).numpy(), np.zeros(4))  # a copy is fine


def test_dlpack_bad_dtype_and_object():
    with pytest.raises(TypeError, match="from_dlpack"):
        nc.from_dlpack(np.ones(3, np.float64))
    with pytest.raises(TypeError, match="from_dlpack"):
        nc.from_dlpack([1.0, 2.0])


@pytest.fixture
def torch_cuda(cuda_device):
    """PyTorch with a GPU beside nncore's (DLPack across the two frameworks' streams)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    return torch


def test_dlpack_cuda_round_trip_with_torch(torch_cuda):
    torch = torch_cuda
    a = (torch.arange(12, dtype=torch.float32, device="cuda") - 5).reshape(3, 4)
    t = nc.from_dlpack(a)
    assert t.device == "cuda" and t.__dlpack_device__() == (2, 0)
    np.testing.assert_array_equal(t.numpy(), a.cpu().numpy())
    b = torch.from_dlpack(nc.ops.relu_forward(t))
    np.testing.assert_array_equal(b.cpu().numpy(), np.maximum(np.arange(12) - 5.0, 0).reshape(3, 4))


def test_dlpack_cuda_import_is_returned_after_nncore_is_done(torch_cuda):
    """The producer gets its memory back only once nncore's queued kernels are done with it:
    otherwise PyTorch hands the block to a new tensor while nncore still reads it."""
    torch = torch_cuda
    n = 1 << 24
    for _ in range(10):
        x = nc.from_dlpack(torch.full((n,), 1.0, device="cuda"))  # only nncore holds it
        y = nc.ops.relu_forward(x)
        for _ in range(20):  # a queue of kernels reading the imported memory
            nc.ops.axpy_(y, 1.0, x)
        del x
        torch.full((n,), -1e30, device="cuda")  # reuses the block if it came back too early
        got = y.numpy()
        assert got.min() == got.max() == 21.0


def test_dlpack_cuda_export_is_reused_after_the_consumer_is_done(torch_cuda):
    """A block nncore exported goes back to nncore's cache only once the consumer's queued work
    on its own stream is done: otherwise nncore's next tensor is overwritten by it."""
    torch = torch_cuda
    n = 1 << 24
    for _ in range(10):
        b = torch.from_dlpack(nc.zeros((n,), device="cuda"))
        for _ in range(20):  # queued on PyTorch's stream, writing the exported memory
            b.add_(1.0)
        del b
        got = nc.zeros((n,), device="cuda").fill_(7.0).numpy()
        assert got.min() == got.max() == 7.0


def test_cuda_flags():
    compiled, available = nc.cuda.is_compiled(), nc.cuda.is_available()
    assert isinstance(compiled, bool) and isinstance(available, bool)
    assert not available or compiled
    assert isinstance(nc.cuda.device_count(), int)
    assert available == (nc.cuda.device_count() > 0 and compiled)
    nc.cuda.synchronize()  # a no-op without a GPU, never an error


def test_cuda_device_properties():
    if not nc.cuda.is_available():
        for query in (nc.cuda.get_device_properties, nc.cuda.device_name):
            with pytest.raises(RuntimeError, match="no CUDA device is available"):
                query()
        return
    props = nc.cuda.get_device_properties()
    assert props.name and nc.cuda.device_name() == f"{props.name}, sm_{props.major}{props.minor}"
    assert props.major >= 1 and props.minor >= 0
    assert props.multi_processor_count > 0 and props.total_memory > 0


def test_manual_seed_is_reproducible():
    from nncore import random as ncrandom
    nc.manual_seed(5)
    a = ncrandom.generator().standard_normal(4)
    s1 = ncrandom.next_philox_stream(10)
    nc.manual_seed(5)
    b = ncrandom.generator().standard_normal(4)
    s2 = ncrandom.next_philox_stream(10)
    np.testing.assert_array_equal(a, b)
    assert s1 == s2
    assert ncrandom.next_philox_stream(10) != s2  # the next call reserves fresh counters


def test_row_slice_is_a_view(device):
    base = np.arange(24, dtype=np.float32).reshape(6, 4)
    t = nc.tensor(base, device=device)
    rows = t[2:5]
    assert rows.shape == (3, 4)
    np.testing.assert_array_equal(rows.numpy(), base[2:5])
    np.testing.assert_array_equal(t.narrow(0, 1, 2).numpy(), base[1:3])
    np.testing.assert_array_equal(rows.reshape(-1).numpy(), base[2:5].ravel())
    # A view shares memory: writing through it changes the base tensor.
    rows.fill_(-1.0)
    expected = base.copy()
    expected[2:5] = -1.0
    np.testing.assert_array_equal(t.numpy(), expected)
    # Ops read the view's rows, not the storage's first rows.
    np.testing.assert_array_equal(nc.ops.relu_forward(t[4:6]).numpy(), np.maximum(expected[4:6], 0))


def test_integer_index_ellipsis_and_iteration(device):
    """t[i] (NumPy integers too, negative from the end) is a view of row i without axis 0, t[...]
    a view of t; iteration yields the rows; errors follow NumPy and PyTorch."""
    base = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    t = nc.tensor(base, device=device)
    for key in (1, -1, np.int64(2), np.int32(-4), np.array(3), 0):
        row = t[key]
        assert row.shape == (2, 3) and row.device == device
        np.testing.assert_array_equal(row.numpy(), base[int(key)])
    np.testing.assert_array_equal(t[2][1][0].numpy(), base[2, 1, 0])  # a 0-d view
    assert t[-1][-1][-1].shape == () and t[-1][-1][-1].item() == 23.0
    for key, expected in (((1, slice(None)), base[1]), ((slice(1, 3), ...), base[1:3]),
                          ((..., slice(None)), base), ((), base), (..., base),
                          ((-2, ..., slice(None)), base[-2])):
        np.testing.assert_array_equal(t[key].numpy(), expected)
    t[1].fill_(-1.0)  # views: writing through them changes t
    t[...][3].zero_()
    expected = base.copy()
    expected[1], expected[3] = -1.0, 0.0
    np.testing.assert_array_equal(t.numpy(), expected)
    assert [row.numpy().tolist() for row in t] == expected.tolist()
    assert [float(x) for x in t[0][1]] == expected[0, 1].tolist() and list(t[0:0]) == []
    assert len(list(iter(t))) == len(t) == 4


def test_index_errors():
    t = nc.tensor(np.zeros((4, 2), np.float32))
    for key in (4, -5, np.int64(7)):
        with pytest.raises(IndexError, match="out of bounds for axis 0 with size 4"):
            t[key]
    with pytest.raises(IndexError):
        t[2**70]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, :, :]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., ...]
    for key in (1.0, [0, 1], None, True, (0, 1), (slice(None), 0), nc.tensor(1),
                nc.tensor([1]), "0"):
        with pytest.raises(TypeError, match="int or a slice with step 1"):
            t[key]
    scalar = nc.tensor(3.0)
    with pytest.raises(IndexError, match="0-d"):
        scalar[0]
    with pytest.raises(IndexError, match="0-d"):
        scalar[:]
    assert scalar[...].item() == 3.0 and scalar[()].shape == ()
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(scalar)
    with pytest.raises(TypeError, match="len"):
        len(scalar)
    with pytest.raises(TypeError, match="'in' is not supported"):
        0.0 in t


def test_row_slice_errors():
    t = nc.tensor(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="only step 1"):
        t[::2]
    with pytest.raises(ValueError, match="out of range"):
        t.narrow(0, 3, 2)
    with pytest.raises(ValueError, match="only axis 0"):
        t.narrow(1, 0, 1)
    for start, length in ((2**62, 2**62), (2, 2**63 - 1), (-1, 2), (1, -1), (5, 0)):
        with pytest.raises(ValueError, match="out of range"):  # start + length overflowed
            t.narrow(0, start, length)
    assert t.narrow(0, 4, 0).shape == (0, 2)


def test_narrow_negative_dim_and_start(device):
    """PyTorch's rule: a negative dim or start counts from the end."""
    base = np.arange(12, dtype=np.float32).reshape(4, 3)
    t = nc.tensor(base, device=device)
    np.testing.assert_array_equal(t.narrow(-2, -3, 2).numpy(), base[1:3])
    np.testing.assert_array_equal(t.narrow(0, -1, 1).numpy(), base[3:])
    np.testing.assert_array_equal(nc.tensor(base[0], device=device).narrow(-1, -2, 2).numpy(),
                                  base[0, 1:])
    with pytest.raises(ValueError, match="only axis 0"):
        t.narrow(-1, 0, 1)
    with pytest.raises(ValueError, match="out of range"):
        t.narrow(0, -5, 1)


def test_caching_allocator_reuses_freed_blocks(device):
    nc.empty_cache(device)
    first = nc.zeros((1000, 1000), device=device)
    del first
    gc.collect()
    before = nc.memory_stats(device)
    assert before["reserved_bytes"] >= 4_000_000  # the freed block stays cached
    again = nc.zeros((1000, 1000), device=device)  # same size class: no new system allocation
    after = nc.memory_stats(device)
    assert after["num_system_allocs"] == before["num_system_allocs"]
    assert after["allocated_bytes"] >= 4_000_000
    nc.reset_peak_memory_stats(device)
    assert nc.memory_stats(device)["peak_allocated_bytes"] == nc.memory_stats(device)["allocated_bytes"]
    del again
    gc.collect()
    nc.empty_cache(device)
    assert nc.memory_stats(device)["reserved_bytes"] == nc.memory_stats(device)["allocated_bytes"]
