"""Seeding. One seed drives parameter initialisation (a NumPy generator) and dropout masks
(Philox streams: each dropout call takes the next unused block of counters)."""
from __future__ import annotations

import numpy as np

from ._checks import checked_int

_seed = 0
_generator = np.random.default_rng(0)
_philox_offset = 0


def manual_seed(seed: int) -> None:
    """Makes initialisation, shuffling defaults and dropout reproducible; 0 <= seed < 2**64."""
    global _seed, _generator, _philox_offset
    _seed = checked_int("manual_seed", None, seed, 0, 2**64)
    _generator = np.random.default_rng(_seed)
    _philox_offset = 0


def get_rng_state() -> dict:
    """The seed, the next unused dropout counter block and the NumPy generator's state, as plain
    Python values (JSON-serialisable); ``set_rng_state`` of it makes a resumed run draw the same
    dropout masks, shuffles and initial values as an uninterrupted one."""
    return {"seed": _seed, "philox_offset": _philox_offset,
            "generator": _generator.bit_generator.state}


def set_rng_state(state: dict) -> None:
    """Restores what ``get_rng_state`` returned; nothing changes unless all of it is valid."""
    global _seed, _generator, _philox_offset
    seed = checked_int("set_rng_state", "seed", state["seed"], 0, 2**64)
    offset = checked_int("set_rng_state", "philox_offset", state["philox_offset"], 0, 2**64)
    generator = np.random.default_rng()
    generator.bit_generator.state = state["generator"]  # NumPy checks it (ValueError/TypeError)
    _seed, _generator, _philox_offset = seed, generator, offset


def generator() -> np.random.Generator:
    """The generator used for parameter initialisation."""
    return _generator


def next_philox_stream(n: int) -> tuple[int, int]:
    """(seed, offset) for a dropout mask of ``n`` values; reserves the counters it uses."""
    global _philox_offset
    offset = _philox_offset
    _philox_offset += (n + 3) // 4  # Philox yields four values per counter
    return _seed, offset
