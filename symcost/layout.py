"""Layout rules: how image inputs decide a model's discrete layout (e.g. a tile grid).

A layout maps its input arrays to a small set of outcomes (rows of integers bound to its
output symbols). The engine evaluates a compiled model once per outcome and gathers, so a
layout only has to say, per point, which outcome applies (:meth:`codes`), and give the same
rule as ordered SymPy conditions for closed forms (:attr:`pieces`).

:class:`AspectTiler` is the "nearest aspect ratio" tiler many vision models use: images that
meet a shortcut predicate get grid (1, 1); otherwise walk candidate grids ``(i, j)`` in a
given order with ``d = |W/H - i/j|`` in float arithmetic; a strictly smaller ``d`` wins; an
exactly equal ``d`` lets the later candidate win only if ``W*H > 0.5 * tie_tile**2 * i*j``.

Why a table: between two adjacent candidate ratios the winner is fixed, up to the area
tie-break within a group of equal ratios. Only on an exact midpoint ray ``W/H = m`` do floats
decide, and there ``float(W/H) == float(m)`` for every point, so one float walk per ray
settles the whole ray. The rule is therefore a finite table of integer conditions:
- rays ``q*W == p*H`` for each rational midpoint ``p/q``, outcome by area bin;
- open regions between midpoints, outcome by area bin;
where an area bin is ``t_k < W*H <= t_{k+1}`` over the tie thresholds ``0.5*tie_tile**2*i*j``.
NB: "winner fixed inside a region" holds while float error (~1e-16 relative) is below the gap
``1/(H*q)`` between a lattice point and a midpoint: :meth:`AspectTiler.codes` refuses sides
where ``max(W*q, H*p)`` reaches 2**52 (far beyond any image a model takes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from math import ceil, log2
from types import SimpleNamespace
from typing import Protocol

import numpy as np
import sympy as sp

from .errors import SymcostError
from .inputs import Input

__all__ = ["Layout", "AspectTiler", "FixedLayout", "ComputedLayout", "dense_table", "by_tile_count"]


class Layout(Protocol):
    inputs: tuple[Input, ...]  # the inputs it reads
    outputs: tuple[sp.Symbol, ...]  # the symbols it sets

    @property
    def outcomes(self) -> np.ndarray | None: ...  # int64 [code, output]; None: computed per point

    def codes(self, *arrays, out: np.ndarray | None = None) -> np.ndarray: ...  # intp per point

    def at(self, *arrays) -> tuple[np.ndarray, ...]: ...  # each output per point (int64 arrays)

    @property
    def maxima(self) -> tuple[int, ...]: ...  # each output's largest value over the input bounds

    @property
    def expressions(self) -> tuple[sp.Expr, ...]: ...  # each output as a Piecewise in inputs

    @property
    def pieces(self) -> tuple[tuple[object, tuple[int, ...]], ...]: ...  # ordered conditions

    def describe(self) -> str: ...


def by_tile_count(candidates: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Candidates stably sorted by tile count ``i*j`` (the order every tiler we know uses)."""
    return tuple(sorted(candidates, key=lambda c: c[0] * c[1]))


@dataclass(frozen=True)
class FixedLayout:
    """One outcome for every input (a mode without tiles)."""

    inputs: tuple[Input, ...]
    outputs: tuple[sp.Symbol, ...]
    values: tuple[int, ...]
    reason: str

    @property
    def outcomes(self) -> np.ndarray:
        return np.array([self.values], dtype=np.int64)

    def codes(self, *arrays, out: np.ndarray | None = None) -> np.ndarray:
        shape = np.broadcast_shapes(*[np.shape(a) for a in arrays])
        code = np.empty(shape, dtype=np.intp) if out is None else out
        code.fill(0)
        return code

    @property
    def expressions(self) -> tuple[sp.Expr, ...]:
        return tuple(sp.Integer(v) for v in self.values)

    @property
    def pieces(self):
        return ((sp.true, self.values),)

    @property
    def maxima(self) -> tuple[int, ...]:
        return self.values

    def at(self, *arrays) -> tuple[np.ndarray, ...]:
        return _table_at(self, arrays)

    def describe(self) -> str:
        names = ", ".join(map(str, self.outputs))
        return f"({names}) = {self.values}: {self.reason}"


@dataclass(frozen=True)
class AspectTiler:
    """The nearest-aspect-ratio tiler (see the module docstring) over inputs ``(width, height)``
    setting outputs ``(cols, rows)``."""

    inputs: tuple[Input, Input]
    outputs: tuple[sp.Symbol, sp.Symbol]
    candidates: tuple[tuple[int, int], ...]  # (cols, rows) in walk order
    tile: int  # tile side, px
    shortcut: Callable  # (w, h) -> true where no tiles (SymPy, NumPy, int)
    shortcut_text: str  # the shortcut in words, e.g. "max(W, H) <= S"
    tie_tile: int | None = None  # side in the area tie-break (default: tile)

    def __post_init__(self):
        if not self.candidates or any(i < 1 or j < 1 for i, j in self.candidates):
            raise ValueError("candidates must be a non-empty list of positive (cols, rows)")

    @property
    def _tie(self) -> int:
        return self.tie_tile or self.tile

    def walk(self, aspect: float, area: int) -> tuple[int, int]:
        """The candidate walk for a float aspect ratio and an integer area."""
        best, best_diff = (1, 1), float("inf")
        for i, j in self.candidates:
            d = abs(aspect - i / j)
            if d < best_diff:
                best, best_diff = (i, j), d
            elif d == best_diff and area > 0.5 * self._tie * self._tie * i * j:
                best = (i, j)
        return best

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """One point, plainly: the shortcut, else the walk."""
        if self.shortcut(width, height):
            return (1, 1)
        return self.walk(width / height, width * height)

    @cached_property
    def thresholds(self) -> tuple[int, ...]:
        """Tie-break areas ``0.5*tie_tile^2*i*j`` as integers (``area > t`` <=> ``area > floor(t)``),
        ascending, distinct."""
        return tuple(sorted({self._tie * self._tie * i * j // 2 for i, j in self.candidates}))

    def _by_area(self, aspect: float) -> tuple[tuple[int, int], ...]:
        """Walk outcome for each area bin: bin k holds ``t_{k-1} < area <= t_k``."""
        reps = self.thresholds + (self.thresholds[-1] + 1,)
        return tuple(self.walk(aspect, a) for a in reps)

    @cached_property
    def midpoints(self) -> tuple[Fraction, ...]:
        ratios = sorted({Fraction(i, j) for i, j in self.candidates})
        return tuple((a + b) / 2 for a, b in zip(ratios, ratios[1:]))

    @cached_property
    def table(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Rows: open regions 0..n-1 (ascending ratio), then rays on midpoints 0..n-2."""
        ratios = sorted({Fraction(i, j) for i, j in self.candidates})
        regions = tuple(self._by_area(float(r)) for r in ratios)
        rays = tuple(self._by_area(m.numerator / m.denominator) for m in self.midpoints)
        return regions + rays

    # -- symbolic -------------------------------------------------------------------------
    @cached_property
    def pieces(self) -> tuple[tuple[object, tuple[int, int]], ...]:
        """Ordered ``(condition, (i, j))`` pairs; the first true condition wins."""
        w, h = (i.symbol for i in self.inputs)
        shortcut = self.shortcut(w, h)
        out = [] if shortcut is sp.false else [(shortcut, (1, 1))]  # one that never holds is no case
        n_regions = len(self.midpoints) + 1

        def area_split(cond, outcomes):
            merged: list = []  # (upper threshold or None, outcome), equal neighbours merged
            for t, o in zip(self.thresholds + (None,), outcomes):
                if merged and merged[-1][1] == o:
                    merged[-1] = (t, o)
                else:
                    merged.append((t, o))
            for t, o in merged:
                out.append((cond if t is None else sp.And(cond, w * h <= t), o))

        for k, m in enumerate(self.midpoints):
            area_split(sp.Eq(m.denominator * w, m.numerator * h), self.table[n_regions + k])
        for k, m in enumerate(self.midpoints):
            area_split(m.denominator * w < m.numerator * h, self.table[k])
        area_split(sp.true, self.table[n_regions - 1])
        return tuple(out)

    @cached_property
    def expressions(self) -> tuple[sp.Expr, sp.Expr]:
        """``(cols, rows)`` as Piecewise expressions in the width and height symbols."""
        return tuple(sp.Piecewise(*[(o[axis], c) for c, o in self.pieces]) for axis in (0, 1))

    def describe(self) -> str:
        counts = sorted({i * j for i, j in self.candidates})
        return (
            f"tile {self.tile}px, {counts[0]} <= {self.outputs[0]}*{self.outputs[1]} <= "
            f"{counts[-1]}; none when {self.shortcut_text}; ties to the later candidate "
            f"above {self._tie}^2*i*j/2 px"
        )

    # -- numeric --------------------------------------------------------------------------
    @cached_property
    def outcomes(self) -> np.ndarray:
        """Distinct grids, int64 ``[code, axis]``; code 0 is (1, 1) (the shortcut)."""
        grids = sorted({g for row in self.table for g in row} - {(1, 1)})
        return np.array([(1, 1)] + grids, dtype=np.int64)

    @property
    def maxima(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.outcomes.max(axis=0))

    def at(self, *arrays) -> tuple[np.ndarray, ...]:
        return _table_at(self, arrays)

    @cached_property
    def _arrays(self):
        mids = self.midpoints
        n_mid = len(mids)
        index = {tuple(g): c for c, g in enumerate(self.outcomes.tolist())}
        # ratio bins floor(x*scale): scale is a power of two (x*scale is exact, the bin monotone
        # in x) of at least 2/gap, so a bin holds at most one midpoint; the last bin is past all
        gap = min((b - a for a, b in zip(mids, mids[1:])), default=Fraction(1))
        scale = 2.0 ** ceil(log2(2 / gap))
        n_bins = int(float(mids[-1]) * scale) + 2 if mids else 1
        mid = np.full(n_bins, np.inf)  # the bin's midpoint (inf: none)
        base = np.zeros(n_bins, dtype=np.intp)  # 2 x the midpoints in lower bins
        for m in map(float, mids):
            mid[int(m * scale)] = m
            base[int(m * scale) + 1 :] += 2
        # row base[b] + (x >= m_b) + (x > m_b): 2k on the open region k, 2k+1 on the ray of
        # midpoint k
        rows = [
            self.table[r // 2] if r % 2 == 0 else self.table[n_mid + 1 + r // 2] for r in range(2 * n_mid + 1)
        ]
        # area bin from u = (k*area - 1) // (k*tie**2/2), k (area_mul) 1 for an even tie, else
        # 2: area > tie**2*n/2 <=> n <= u; by_u holds bin * len(rows), so code = lut[by_u[u] + row]
        area_mul = 1 if self._tie % 2 == 0 else 2
        sizes = sorted({i * j for i, j in self.candidates})
        by_u = np.array([len(rows) * sum(n <= u for n in sizes) for u in range(sizes[-1] + 1)], dtype=np.intp)
        lut = np.array([[index[row[u]] for row in rows] for u in range(len(rows[0]))], dtype=np.intp)
        return SimpleNamespace(
            scale=scale,
            mid=mid,
            base=base,
            by_u=by_u,
            lut=lut.reshape(-1),
            area_mul=area_mul,
            area_div=area_mul * self._tie * self._tie // 2,
            p_max=max((m.numerator for m in mids), default=1),
            q_max=max((m.denominator for m in mids), default=1),
        )

    def codes(self, width, height, out: np.ndarray | None = None) -> np.ndarray:
        """Index into :attr:`outcomes` of each point's grid (intp), exact; written into ``out``
        (intp, the points' shape) when given."""
        w, h = np.broadcast_arrays(np.asarray(width, dtype=np.int64), np.asarray(height, dtype=np.int64))
        code = np.empty(w.shape, dtype=np.intp) if out is None else out
        if not code.flags.c_contiguous:  # written through a flat view
            raise ValueError("codes: out must be C-contiguous")
        if w.size == 0:
            return code
        a = self._arrays
        w_max, h_max = int(w.max()), int(h.max())
        if w_max * a.q_max >= 2**52 or h_max * a.p_max >= 2**52:
            raise SymcostError(
                f"image sides up to {w_max} x {h_max} are too large for the exact "
                "float comparison of the tile rule"
            )
        w, h, flat = w.reshape(-1), h.reshape(-1), code.reshape(-1)
        for s in range(0, w.size, BLOCK):
            self._codes(w[s : s + BLOCK], h[s : s + BLOCK], flat[s : s + BLOCK])
        return code

    def _codes(self, w: np.ndarray, h: np.ndarray, out: np.ndarray) -> None:
        """:meth:`codes` of at most ``BLOCK`` points, in place in this thread's scratch arrays:
        one pass per step and no allocation (freed temporaries cost page faults)."""
        a = self._arrays
        ratio, m, b, row, u, ge, gt = _scratch(w.size)
        # |W/H - p/q| >= 1/(H*q), more than 2 ulp relative while max(W*q, H*p) < 2**52: float
        # order of W/H against a midpoint is exact, equality included
        np.divide(w, h, out=ratio)
        np.multiply(ratio, a.scale, out=m)
        np.minimum(m, len(a.base) - 1, out=m)
        np.copyto(b, m, casting="unsafe")  # the ratio bin: floor, as m >= 0
        np.take(a.mid, b, out=m, mode="clip")  # indices are in range: this mode skips the check
        np.take(a.base, b, out=row, mode="clip")
        side = np.greater_equal(ratio, m, out=ge).view(np.int8)  # 0, 1 (on the ray), 2
        side += np.greater(ratio, m, out=gt).view(np.int8)
        row += side
        np.multiply(w, h, out=u)
        if a.area_mul != 1:
            u *= a.area_mul
        u -= 1
        u //= a.area_div
        np.minimum(u, len(a.by_u) - 1, out=u)
        row += np.take(a.by_u, u, out=b, mode="clip")
        np.take(a.lut, row, out=out, mode="clip")
        out *= ~self.shortcut(w, h)  # code 0, grid (1, 1), where the shortcut applies


def _table_at(layout, arrays) -> tuple[np.ndarray, ...]:
    """A table layout's outputs per point: its outcome rows gathered by code."""
    rows = layout.outcomes[layout.codes(*np.broadcast_arrays(*arrays))]
    return tuple(rows[..., k] for k in range(rows.shape[-1]))


@dataclass(frozen=True)
class ComputedLayout:
    """A layout computed point by point: a rule with too many outcomes for a tiler's table, such
    as a resize that maps every image size to its own grid of patches.

    ``rule(*arrays)`` takes int64 arrays of the inputs (checked against their bounds) and returns
    one int64 array per output, exactly as the model's own preprocessing computes them (float
    steps done in the same IEEE operations, in the same order); ``expressions`` state the rule
    as closed forms in the input symbols (for formulas; a float step may appear as its real-valued
    counterpart, which ``describe`` says); ``maxima`` bound each output over the input bounds.

    Optionally ``table`` (int64 ``[code, output]``) lists every outcome the rule can give (a finite
    superset, e.g. every grid within a token budget, or :func:`dense_table`) and ``index(*outputs)``
    gives each point's row in it: the engine then evaluates a model once per outcome and gathers
    per point, as for a tiler, instead of running the whole program at every point.
    """

    inputs: tuple[Input, ...]
    outputs: tuple[sp.Symbol, ...]
    rule: Callable[..., tuple[np.ndarray, ...]]
    expressions: tuple[sp.Expr, ...]
    maxima: tuple[int, ...]
    text: str  # the rule in words
    table: np.ndarray | None = field(default=None, compare=False, repr=False)
    index: Callable[..., np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not len(self.outputs) == len(self.expressions) == len(self.maxima):
            raise ValueError("one expression and one maximum per output")
        if (self.table is None) != (self.index is None):
            raise ValueError("a table of outcomes needs its index, and an index its table")
        if self.table is not None and (self.table.ndim != 2 or self.table.shape[1] != len(self.outputs)):
            raise ValueError("the table has one row per outcome and one column per output")

    @property
    def outcomes(self) -> np.ndarray | None:
        """The table of outcomes, if the layout has one (else the engine evaluates per point)."""
        return self.table

    def codes(self, *arrays, out: np.ndarray | None = None) -> np.ndarray:
        """Each point's row in :attr:`table` (intp), written into ``out`` when given."""
        if self.index is None:
            raise TypeError("a computed layout without a table has no outcome codes; use at()")
        code = self.index(*self.at(*arrays))
        if out is None:
            return np.asarray(code, dtype=np.intp)
        out[...] = code
        return out

    def at(self, *arrays) -> tuple[np.ndarray, ...]:
        shape = np.broadcast_shapes(*[np.shape(a) for a in arrays])
        got = self.rule(*(np.broadcast_to(np.asarray(a, dtype=np.int64), shape) for a in arrays))
        return tuple(np.broadcast_to(np.asarray(g, dtype=np.int64), shape) for g in got)

    @property
    def pieces(self):
        return ((sp.true, self.expressions),)

    def describe(self) -> str:
        return self.text


def dense_table(maxima: Sequence[int]) -> tuple[np.ndarray, Callable[..., np.ndarray]]:
    """``(table, index)`` for a :class:`ComputedLayout` whose outputs are small nonnegative
    integers: every combination in ``[0, maximum]`` (mixed radix, the last output fastest)."""
    sizes = tuple(m + 1 for m in maxima)
    grids = np.meshgrid(*[np.arange(n, dtype=np.int64) for n in sizes], indexing="ij")
    table = np.stack([g.reshape(-1) for g in grids], axis=1)

    def index(*outputs) -> np.ndarray:
        for g, m in zip(outputs, maxima):  # a rule beyond its declared range would gather wrong rows
            if g.size and not 0 <= int(g.min()) <= int(g.max()) <= m:
                raise ValueError(
                    f"computed layout: an output outside [0, {m}]: {int(g.min())}..{int(g.max())}"
                )
        code = np.array(outputs[0], dtype=np.intp)
        for n, g in zip(sizes[1:], outputs[1:]):
            code *= n
            code += g
        return code

    return table, index


BLOCK = 1 << 16  # points per pass of AspectTiler.codes: its scratch arrays stay in cache
_SCRATCH = threading.local()


def _scratch(n: int) -> list[np.ndarray]:
    """This thread's work arrays for :meth:`AspectTiler._codes`, cut to ``n`` points: float64
    ratio and midpoint, intp bin, row and area, bool comparisons."""
    if not hasattr(_SCRATCH, "arrays"):
        _SCRATCH.arrays = [
            np.empty(BLOCK, dtype=t) for t in (np.float64, np.float64, np.intp, np.intp, np.int64, bool, bool)
        ]
    return [x[:n] for x in _SCRATCH.arrays]
