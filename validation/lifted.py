"""Run a pure Python function of numbers on arrays of inputs, each point through its own branches.

``lifted(fn, *arrays)`` calls ``fn`` itself (its own code, not a copy of it) with every numeric input
replaced by a :class:`Lifted` array: arithmetic runs elementwise in NumPy, and a comparison gives a
per-point truth value. When ``fn`` branches on one (``if``, ``and``, ``max`` ...), the call goes on only
if every point takes the same side; otherwise the points are split by the side they take and ``fn`` is
called again on each part from the start. Every point thus ends in a call whose every branch it
agrees with, and gets that call's (constant) result.

Why it is exact: each operation a point sees is the operation the scalar call makes, in the same
order, in IEEE float64 (Python floats are doubles): int / int and int vs float compare exactly as in
Python while the ints are below 2**53 (``lifted`` refuses larger ones). An operation it does not
implement raises (TypeError), and so does asking a lifted value for its truth, so a function using
anything else fails loudly rather than running differently.

Cost: the calls made per point are the depth of its leaf in the split tree (about 10 for a
nearest-aspect-ratio walk over 36 grids), each on ever fewer points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Lifted", "lifted"]

_EXACT = 2**53


class _Split(Exception):
    def __init__(self, mask):
        super().__init__("the points take different branches")
        self.mask = mask


def _value(x):
    return x.a if isinstance(x, Lifted) else x


class Lifted:
    """One number per point (a NumPy array) standing for a scalar inside the function."""

    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    def __truediv__(self, other):
        return Lifted(np.true_divide(self.a, _value(other)))

    def __rtruediv__(self, other):
        return Lifted(np.true_divide(other, self.a))

    def __mul__(self, other):
        return Lifted(np.multiply(self.a, _value(other)))

    __rmul__ = __mul__

    def __add__(self, other):
        return Lifted(np.add(self.a, _value(other)))

    __radd__ = __add__

    def __sub__(self, other):
        return Lifted(np.subtract(self.a, _value(other)))

    def __rsub__(self, other):
        return Lifted(np.subtract(other, self.a))

    def __abs__(self):
        return Lifted(np.abs(self.a))

    def __lt__(self, other):
        return _Truth(self.a < _value(other))

    def __le__(self, other):
        return _Truth(self.a <= _value(other))

    def __gt__(self, other):
        return _Truth(self.a > _value(other))

    def __ge__(self, other):
        return _Truth(self.a >= _value(other))

    def __eq__(self, other):  # type: ignore[override]
        return _Truth(self.a == _value(other))

    def __ne__(self, other):  # type: ignore[override]
        return _Truth(self.a != _value(other))

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self):
        raise TypeError("the truth of a lifted number is per point: compare it first")


class _Truth:
    """A per-point truth value: a branch on it is taken only if every point agrees."""

    __slots__ = ("mask",)

    def __init__(self, mask):
        self.mask = mask

    def __bool__(self):
        if self.mask.all():
            return True
        if not self.mask.any():
            return False
        raise _Split(self.mask)


def lifted(fn, *args, **kwargs) -> np.ndarray:
    """``np.array([fn(*point, **kwargs) for point in zip(*arrays)])``, int64, for 1-D int64 arrays given
    in ``args`` where ``fn`` takes the numbers (nested in tuples as ``fn`` takes them, e.g.
    ``fn((heights, widths), (1024, 1024))``; non-array arguments pass unchanged), computed as the module
    docstring says. ``fn`` must return an int or a tuple of ints."""
    flat = list(_arrays(args))
    n = len(flat[0])
    if any(a.ndim != 1 or len(a) != n or a.dtype != np.int64 for a in flat):
        raise ValueError("lifted: the arrays must be 1-D int64 of one length")
    if n and max(int(np.abs(a).max()) for a in flat) >= _EXACT:
        raise ValueError("lifted: values from 2**53 up do not compare with floats as Python's ints do")
    out = None
    jobs = [np.arange(n)] if n else []
    while jobs:
        idx = jobs.pop()
        try:
            result = fn(*_restrict(args, idx), **kwargs)
        except _Split as split:
            jobs += [idx[split.mask], idx[~split.mask]]
            continue
        if any(isinstance(x, Lifted) for x in np.ravel(np.array(result, dtype=object))):
            raise TypeError("lifted: the result depends on the point beyond its branches")
        row = np.asarray(result, dtype=np.int64)
        if out is None:
            out = np.empty((n, *row.shape), dtype=np.int64)
        out[idx] = row
    return out if out is not None else np.empty((0,), dtype=np.int64)


def _arrays(args):
    for a in args:
        if isinstance(a, tuple):
            yield from _arrays(a)
        elif isinstance(a, np.ndarray):
            yield a


def _restrict(args, idx):
    return tuple(
        _restrict(a, idx) if isinstance(a, tuple) else Lifted(a[idx]) if isinstance(a, np.ndarray) else a
        for a in args
    )
