"""Shared fixtures: `device` (every test runs on each available device, CUDA skipped with a
visible reason), `rng` (seeded NumPy generator) and a CI-friendly Hypothesis profile."""
from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import reference` from any rootdir

import nncore as nc  # noqa: E402

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", deadline=None, max_examples=40, derandomize=True, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.register_profile(
        "thorough", deadline=None, max_examples=500,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test extra; property tests skip without it
    pass


@functools.lru_cache(maxsize=None)
def cuda_skip_reason() -> str | None:
    """None when CUDA tensors can be made, else why not (with the runtime's own words). Asked
    once per session: every CUDA-parametrised test consults it."""
    if not nc.cuda.is_compiled():
        return "CUDA not available: nncore was built without the CUDA backend (no nvcc at build)"
    if not nc.cuda.is_available():
        try:
            nc.zeros((1,), device="cuda")
            why = "no device"
        except RuntimeError as error:  # e.g. "CUDA driver version is insufficient ..."
            why = str(error)
        return f"CUDA not available: built with CUDA but no CUDA device/driver was found ({why})"
    return None


def pytest_sessionstart(session):
    """NNCORE_REQUIRE_CUDA=1 (bench/gpu_check.sh sets it): a GPU run where every CUDA test would
    skip (no device, or a driver older than the CUDA runtime nncore links) stops instead of
    passing on the CPU tests alone."""
    reason = cuda_skip_reason()
    if os.environ.get("NNCORE_REQUIRE_CUDA") == "1" and reason is not None:
        pytest.exit(f"NNCORE_REQUIRE_CUDA=1, but {reason}", returncode=3)


DEVICES = ["cpu", "cuda"]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """"cpu", then "cuda" (skipped with the reason when no GPU can be used)."""
    if request.param == "cuda":
        reason = cuda_skip_reason()
        if reason is not None:
            pytest.skip(reason)
    return request.param


@pytest.fixture
def cuda_device() -> str:
    """Only "cuda"; skips (with the reason) where no GPU can be used."""
    reason = cuda_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return "cuda"


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, yet different per test."""
    seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
