"""Argument checks at the API boundary: one message shape, naming the parameter and what is allowed."""
from __future__ import annotations

import numbers

import numpy as np

from .errors import SymcostError

__all__ = ["LIMITS", "check_int", "check_ints", "check_shapes", "check_efficiency"]

# Inclusive bounds of each stage argument.
# NB: 65,535 px is the largest side a JPEG can have; the tile rule is exact far beyond it.
# Token counts stop at 2**20 (the model's positions end at 8192; 128x headroom) and batch at
# 2**16, so every metric stays below 2**62 and int64 evaluation is exact.
LIMITS = {
    "width": (1, 65_535), "height": (1, 65_535),
    "prompt_tokens": (0, 1 << 20), "kv_len": (0, 1 << 20), "new_tokens": (1, 1 << 20),
    "batch": (1, 1 << 16),
}


def check_int(name: str, value) -> int:
    """A plain integer within ``LIMITS[name]`` (bools, floats, NaN and strings refused)."""
    lo, hi = LIMITS[name]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise SymcostError(f"{name}: {value!r} is not an integer in [{lo}, {hi}]")
    if not lo <= int(value) <= hi:
        raise SymcostError(f"{name}: {int(value)} is out of range [{lo}, {hi}]")
    return int(value)


def check_ints(name: str, values) -> np.ndarray:
    """An integer array with every element within ``LIMITS[name]``."""
    lo, hi = LIMITS[name]
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged nesting
        raise SymcostError(f"{name}: expected integers in [{lo}, {hi}], got a ragged sequence") \
            from None
    if arr.size == 0:  # no points: nothing to check, e.g. [] (float64 by default)
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                       for v in arr.reshape(-1)):
            for v in arr.reshape(-1):  # range first: Python ints beyond int64 cannot be cast
                check_int(name, v)
            arr = arr.astype(np.int64)
        else:
            raise SymcostError(f"{name}: expected integers in [{lo}, {hi}], got dtype {arr.dtype}")
    if arr.min() < lo or arr.max() > hi:
        bad = arr[(arr < lo) | (arr > hi)].reshape(-1)[0]
        raise SymcostError(f"{name}: {int(bad)} is out of range [{lo}, {hi}]")
    return arr.astype(np.int64, copy=False)


def check_shapes(**arrays) -> tuple[int, ...]:
    """The common broadcast shape of named arrays; a mismatch names the parameters and shapes."""
    shapes = {}
    for n, a in arrays.items():
        try:
            shapes[n] = np.shape(a)
        except ValueError:
            raise SymcostError(f"{n}: got a ragged sequence, not an integer array") from None
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        shown = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise SymcostError(f"shapes do not broadcast together: {shown}") from None


def check_efficiency(value) -> float:
    """A real number in (0, 1] (NaN, inf, bools and strings refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not 0 < value <= 1:  # the comparison is False for NaN
        raise SymcostError(f"efficiency: {value!r} is not a number in (0, 1]")
    return float(value)
