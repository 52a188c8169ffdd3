"""Argument checks shared by the Python layer."""
from __future__ import annotations

import numpy as np


def checked_int(where: str, name: str | None, value, low: int = 0, high: int | None = None) -> int:
    """``value`` as an int in [low, high) (high None: no upper bound), else ValueError. Floats
    (2.5 epochs, and 3.0 too) and bools are refused, NumPy integers taken. The message reads
    "{where}: {name} must be ..." or, without a name, "{where}: expected ..."."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
            (high is not None and value >= high):
        if high is not None:
            bound = f"2**{high.bit_length() - 1}" if high & (high - 1) == 0 else str(high)
            wanted = f"an integer in [{low}, {bound})"
        else:
            wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        raise ValueError(f"{where}: {name} must be {wanted}, got {value!r}" if name else
                         f"{where}: expected {wanted}, got {value!r}")
    return int(value)
