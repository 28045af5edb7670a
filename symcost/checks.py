"""Argument checks at the API boundary: one message shape, naming the parameter and what is allowed."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import SymcostError

__all__ = [
    "check_int",
    "check_ints",
    "check_shapes",
    "check_fraction",
    "check_positive",
    "shown",
    "printable",
]


def check_int(name: str, value, lo: int, hi: int) -> int:
    """A plain integer within ``[lo, hi]`` (bools, durations, floats, NaN and strings refused)."""
    if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(value, numbers.Integral):
        raise SymcostError(f"{name}: {shown(value)} is not an integer in [{lo}, {hi}]")
    if not lo <= int(value) <= hi:
        raise SymcostError(f"{name}: {shown(int(value))} is out of range [{lo}, {hi}]")
    return int(value)


def check_ints(name: str, values, lo: int, hi: int) -> np.ndarray:
    """An int64 array with every element within ``[lo, hi]`` (masked arrays refused: the mask
    would be dropped)."""
    if isinstance(values, np.ma.MaskedArray):
        raise SymcostError(f"{name}: expected integers in [{lo}, {hi}], got a masked array (fill it first)")
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # ragged nesting
        raise SymcostError(f"{name}: expected integers in [{lo}, {hi}], got a ragged sequence") from None
    if arr.size == 0:  # no points: nothing to check, e.g. [] (float64 by default)
        return arr.astype(np.int64)
    if arr.dtype == bool or arr.dtype.kind == "m" or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.reshape(-1)
        ):
            for v in arr.reshape(-1):  # range first: Python ints beyond int64 cannot be cast
                check_int(name, v, lo, hi)
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


# Smallest efficiency accepted: below it a time in seconds stops being a meaningful number
# (a 1e-6 fraction of a peak is already a machine a million times slower).
MIN_FRACTION = 1e-6


def check_fraction(name: str, value) -> float:
    """A real number in [1e-6, 1] (NaN, inf, bools and strings refused)."""
    number = _real(value)
    if number is None or not MIN_FRACTION <= number <= 1:  # the comparison is False for NaN
        raise SymcostError(f"{name}: {shown(value)} is not a number in [{MIN_FRACTION:g}, 1]")
    return number


def check_positive(name: str, value, unit: str, lo: float, hi: float) -> float:
    """A finite real in [lo, hi] (``unit`` names what it measures)."""
    number = _real(value)
    if number is None or not (math.isfinite(number) and lo <= number <= hi):
        raise SymcostError(f"{name}: {shown(value)} is not a number of {unit} in [{lo:g}, {hi:g}]")
    return number


def _real(value) -> float | None:
    """``value`` as a float when it is a real number (not a bool, a duration or a string), else None
    (also for a Python int beyond float range)."""
    if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def shown(value) -> str:
    """A value's repr on one line, cut to 40 characters (an array's rows, a 5,000-digit
    integer are not echoed whole)."""
    if (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and abs(int(value)) >= 10**37
    ):  # repr() raises beyond 4,300 digits
        return f"an integer of about {int(int(value).bit_length() * math.log10(2)) + 1} digits"
    try:
        text = " ".join(repr(value).split())
    except ValueError:  # e.g. an object array holding such an integer
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (a newline in a file name shows as
    ``\\n``, never breaks the line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
