"""Seeding. One seed drives parameter initialisation (a NumPy generator) and dropout masks
(Philox streams: each dropout call takes the next unused block of counters)."""
from __future__ import annotations

import numpy as np

_seed = 0
_generator = np.random.default_rng(0)
_philox_offset = 0


def manual_seed(seed: int) -> None:
    """Makes initialisation, shuffling defaults and dropout reproducible; 0 <= seed < 2**64."""
    global _seed, _generator, _philox_offset
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"manual_seed: expected an integer in [0, 2**64), got {seed!r}")
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    _philox_offset = 0


def generator() -> np.random.Generator:
    """The generator used for parameter initialisation."""
    return _generator


def next_philox_stream(n: int) -> tuple[int, int]:
    """(seed, offset) for a dropout mask of ``n`` values; reserves the counters it uses."""
    global _philox_offset
    offset = _philox_offset
    _philox_offset += (n + 3) // 4  # Philox yields four values per counter
    return _seed, offset
