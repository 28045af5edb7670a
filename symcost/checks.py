"""Argument checks at the API boundary: one message shape, naming the parameter and what is allowed."""
from __future__ import annotations

import numbers

import numpy as np

from .errors import SymcostError

__all__ = ["LIMITS", "check_int", "check_ints"]

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
    arr = np.asarray(values)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                       for v in arr.reshape(-1)):
            arr = arr.astype(np.int64)
        else:
            raise SymcostError(f"{name}: expected integers in [{lo}, {hi}], got dtype {arr.dtype}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr[(arr < lo) | (arr > hi)].reshape(-1)[0]
        raise SymcostError(f"{name}: {int(bad)} is out of range [{lo}, {hi}]")
    return arr.astype(np.int64, copy=False)
