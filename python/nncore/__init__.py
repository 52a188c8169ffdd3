"""nncore: a neural-network core you can read end to end.

Hand-written C++ (CPU) and CUDA kernels behind a thin Python layer::

    import nncore as nc
    t = nc.tensor(np_array, device="cpu")      # copy; float32 or int32
    import nncore.functional as F
    y = F.relu(F.linear(t, w, b))
"""
from __future__ import annotations

import numpy as np

from . import _C
from ._C import Tensor, empty, zeros
from . import cuda, ops
from .random import get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "empty", "zeros", "from_dlpack", "manual_seed", "get_rng_state",
           "set_rng_state", "cuda", "memory_stats", "reset_peak_memory_stats", "empty_cache",
           "set_float32_matmul_precision", "get_float32_matmul_precision"]

_MATMUL_PRECISIONS = ("highest", "high")
_matmul_precision = "highest"


def tensor(data, device: str = "cpu", dtype=None) -> Tensor:
    """A new tensor holding a copy of ``data`` (array-like) on ``device``.

    Floating-point data becomes float32 and integer data int32 (values must fit); ``dtype``
    ("float32"/"int32" or the NumPy types) forces one of the two.
    """
    if isinstance(data, Tensor):
        data = data.numpy()
    return _C._tensor_from_array(_host_array(data, dtype), device)


def _host_array(data, dtype=None, what: str = "tensor") -> np.ndarray:
    """``data`` as a C-contiguous array in its nncore dtype (float -> float32, integer -> int32,
    values checked to fit; ``dtype`` forces one), as ``tensor`` uploads it; copied only when
    it is not that already."""
    array = np.asarray(data)
    if dtype is not None:
        target = np.dtype(dtype)
    elif array.dtype.kind == "f":
        target = np.dtype(np.float32)
    elif array.dtype.kind in "iu":
        target = np.dtype(np.int32)
    else:
        raise TypeError(
            f"{what}: unsupported dtype {array.dtype}: nncore tensors are float32 or int32")
    if target not in (np.dtype(np.float32), np.dtype(np.int32)):
        raise TypeError(f"{what}: unsupported dtype {target}: nncore tensors are float32 or int32")
    if target == np.int32 and array.dtype.kind in "iuf" and array.size:
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"{what}: NaN or infinity cannot be converted to int32")
        # Floats are truncated toward zero, as NumPy casts; the bounds compared in double (in
        # float32, -2**31 - 1 rounds to -2**31, refusing it; in float16, 2**31 overflows).
        low, high = float(array.min()), float(array.max())
        if low <= -2.0**31 - 1 or high >= 2.0**31:
            raise ValueError(f"{what}: values in [{low}, {high}] do not fit in int32")
    return np.asarray(array, dtype=target, order="C")  # keeps 0-d arrays 0-d


def set_float32_matmul_precision(precision: str) -> None:
    """How float32 matrix products may be computed on the GPU (the name and the two levels are
    PyTorch's):

    * ``"highest"`` (the default): FP32 arithmetic throughout.
    * ``"high"``: GEMMs large enough to fill the GPU with 128x128 tiles (matmul, Linear, the
      convolutions' GEMMs, forward and backward) run on TF32 tensor cores: each operand rounded
      to 10 mantissa bits (relative error up to 2**-11 per product), FP32 accumulation.

    The CPU always computes in FP32. PyTorch's ``"medium"`` (bfloat16) is not supported.
    """
    global _matmul_precision
    if not isinstance(precision, str):
        raise TypeError(f"set_float32_matmul_precision: precision must be a str, got "
                        f"{type(precision).__name__}")
    if precision not in _MATMUL_PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: precision must be one of "
                         f"{', '.join(map(repr, _MATMUL_PRECISIONS))}, got {precision!r}")
    if cuda.is_compiled():
        _C.cuda.set_allow_tf32(precision == "high")
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    """The level set by :func:`set_float32_matmul_precision` ("highest" unless changed)."""
    return _matmul_precision


def from_dlpack(obj) -> Tensor:
    """A tensor sharing memory with ``obj`` (any object with ``__dlpack__``), without a copy."""
    return _C.from_dlpack(obj)


def _device_type(device: str) -> str:
    """"cpu" or "cuda" for a device name, checked by the parser tensors use (so "gpu" is a
    ValueError, and "cuda" in a build without CUDA says so)."""
    if device == "cpu":
        return "cpu"
    return empty((0,), device=device).device


def memory_stats(device: str = "cpu") -> dict:
    """The caching allocator's counters for ``device``: allocated, reserved (allocated + cached)
    and peak bytes, and how many raw allocations (malloc / cudaMalloc) it has made."""
    if _device_type(device) == "cuda":
        return cuda.memory_stats()
    return dict(_C.cpu_memory_stats())


def reset_peak_memory_stats(device: str = "cpu") -> None:
    if _device_type(device) == "cuda":
        cuda.reset_peak_memory_stats()
    else:
        _C.cpu_reset_peak_memory_stats()


def empty_cache(device: str = "cpu") -> None:
    """Returns cached, unused blocks of ``device`` to the system."""
    if _device_type(device) == "cuda":
        cuda.empty_cache()
    else:
        _C.cpu_empty_cache()


from . import nn, optim, models  # noqa: E402  (they build on the names above)
