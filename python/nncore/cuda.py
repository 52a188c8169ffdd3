"""CUDA status and memory queries (all safe to call on a machine without a GPU)."""
from __future__ import annotations

from typing import NamedTuple

from . import _C

_cuda = _C.cuda


def is_compiled() -> bool:
    """True when this build of nncore contains the CUDA kernels."""
    return bool(_cuda.is_compiled())


def device_count() -> int:
    """Number of usable CUDA devices (0 without a driver or GPU, or in a CPU-only build)."""
    return int(_cuda.device_count())


def is_available() -> bool:
    """True when tensors can be placed on ``"cuda"``."""
    return is_compiled() and device_count() > 0


def _require() -> None:
    if not is_available():
        raise RuntimeError("nncore: no CUDA device is available"
                           + ("" if is_compiled() else " (this build has no CUDA backend)"))


def device_name() -> str:
    _require()
    return _cuda.device_name()


class DeviceProperties(NamedTuple):
    """The GPU's properties, with ``torch.cuda.get_device_properties``'s field names."""
    name: str
    major: int  # compute capability (major, minor)
    minor: int
    multi_processor_count: int  # SMs
    total_memory: int  # bytes


def get_device_properties() -> DeviceProperties:
    """Name, compute capability, SM count and memory of the GPU nncore uses."""
    _require()
    return DeviceProperties(**_cuda.device_properties())


def synchronize() -> None:
    """Waits for all queued GPU work (no-op without a GPU)."""
    if is_available():
        _cuda.synchronize()


def memory_stats() -> dict:
    """The caching allocator's counters: allocated, reserved and peak bytes, cudaMalloc calls."""
    _require()
    return dict(_cuda.memory_stats())


def reset_peak_memory_stats() -> None:
    _require()
    _cuda.reset_peak_memory_stats()


def empty_cache() -> None:
    """Returns cached, unused device blocks to the driver."""
    if is_available():
        _cuda.empty_cache()
