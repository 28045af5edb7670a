"""The tile-grid rule machinery: a "nearest aspect ratio" tiler as an exact piecewise expression.

The vendor rule (DeepSeek-OCR ``dynamic_preprocess``): images with both sides <= ``shortcut``
get no tiles, grid (1,1). Otherwise walk the candidates ``(i, j)`` in order with
``d = |W/H - i/j|`` in float arithmetic; a strictly smaller ``d`` wins; an exactly equal ``d``
lets the later candidate win only if ``W*H > 0.5 * tile**2 * i*j``.

Why a table: between two adjacent candidate ratios the winner is fixed, up to the area
tie-break within a group of equal ratios. Only on an exact midpoint ray ``W/H = m`` do floats
decide, and there ``float(W/H) == float(m)`` for every point, so one float walk per ray
settles the whole ray. The rule is therefore a finite table of integer conditions:
- rays ``q*W == p*H`` for each rational midpoint ``p/q``, outcome by area bin;
- open regions between midpoints, outcome by area bin;
where an area bin is ``t_k < W*H <= t_{k+1}`` over the tie thresholds ``0.5*tile**2*i*j``.
NB: "winner fixed inside a region" holds while float error (~1e-16 relative) is below the gap
``1/(H*q)`` between a lattice point and a midpoint, i.e. for sides far beyond any real image
(the exhaustive test checks every pair in [1, 8192]^2).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np
import sympy as sp

from .symbols import H, W

__all__ = ["TileRule", "candidate_order"]


def candidate_order(min_num: int, max_num: int) -> tuple[tuple[int, int], ...]:
    """Grids with ``min_num <= i*j <= max_num``, sorted by ``i*j`` stably over CPython's set order.

    NB: the vendor sorts a ``set`` of small-int tuples; CPython's iteration order for them is
    deterministic, so we reproduce it by building the same set here.
    """
    cands = {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
             for j in range(1, n + 1) if min_num <= i * j <= max_num}
    return tuple(sorted(cands, key=lambda c: c[0] * c[1]))


@dataclass(frozen=True)
class TileRule:
    tile: int            # tile side in px; also sets the tie-break area
    shortcut: int = 640  # both sides <= this: no tiles (hard-coded 640 in the vendor code)
    min_num: int = 2
    max_num: int = 9

    @cached_property
    def candidates(self) -> tuple[tuple[int, int], ...]:
        return candidate_order(self.min_num, self.max_num)

    def walk(self, aspect: float, area: int) -> tuple[int, int]:
        """The vendor's candidate walk for a float aspect ratio and an integer area."""
        best, best_diff = (1, 1), float("inf")
        for i, j in self.candidates:
            d = abs(aspect - i / j)
            if d < best_diff:
                best, best_diff = (i, j), d
            elif d == best_diff and area > 0.5 * self.tile * self.tile * i * j:
                best = (i, j)
        return best

    @cached_property
    def thresholds(self) -> tuple[int, ...]:
        """Tie-break areas ``0.5*tile^2*i*j`` (exact integers), ascending, distinct."""
        return tuple(sorted({self.tile * self.tile * i * j // 2 for i, j in self.candidates}))

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
        out = [(sp.And(W <= self.shortcut, H <= self.shortcut), (1, 1))]
        n_regions = len(self.midpoints) + 1

        def area_split(cond, outcomes):
            merged = []  # (upper threshold or None, outcome), equal neighbours merged
            for t, o in zip(self.thresholds + (None,), outcomes):
                if merged and merged[-1][1] == o:
                    merged[-1] = (t, o)
                else:
                    merged.append((t, o))
            for t, o in merged:
                out.append((cond if t is None else sp.And(cond, W * H <= t), o))

        for k, m in enumerate(self.midpoints):
            area_split(sp.Eq(m.denominator * W, m.numerator * H), self.table[n_regions + k])
        for k, m in enumerate(self.midpoints):
            area_split(m.denominator * W < m.numerator * H, self.table[k])
        area_split(sp.true, self.table[n_regions - 1])
        return tuple(out)

    @cached_property
    def expressions(self) -> tuple[sp.Expr, sp.Expr]:
        """``(w_tiles, h_tiles)`` as Piecewise expressions in ``W``, ``H``."""
        return tuple(sp.Piecewise(*[(o[axis], c) for c, o in self.pieces]) for axis in (0, 1))

    # -- numeric --------------------------------------------------------------------------
    @cached_property
    def _arrays(self):
        mids = self.midpoints
        return (np.array([float(m) for m in mids]),
                np.array([m.numerator for m in mids], dtype=np.int64),
                np.array([m.denominator for m in mids], dtype=np.int64),
                np.array(self.thresholds, dtype=np.int64),
                np.array(self.table, dtype=np.int64))  # [row, area bin, axis]

    def numpy(self, width, height) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``(w_tiles, h_tiles)`` for int arrays, exact (integer comparisons decide)."""
        w = np.asarray(width, dtype=np.int64)
        h = np.asarray(height, dtype=np.int64)
        mid_f, p, q, thr, table = self._arrays
        n_mid = len(mid_f)
        # float guess of #{midpoints < W/H}, then exact integer fix-up by one step either way
        k = np.searchsorted(mid_f, w / h, side="left")
        below = np.maximum(k - 1, 0)
        k = np.where((k > 0) & (p[below] * h >= q[below] * w), k - 1, k)
        above = np.minimum(k, n_mid - 1)
        k = np.where((k < n_mid) & (p[above] * h < q[above] * w), k + 1, k)
        at = np.minimum(k, n_mid - 1)
        on_ray = (k < n_mid) & (p[at] * h == q[at] * w)
        row = np.where(on_ray, n_mid + 1 + at, k)
        grid = table[row, np.searchsorted(thr, w * h, side="left")]
        small = (w <= self.shortcut) & (h <= self.shortcut)
        return np.where(small, 1, grid[..., 0]), np.where(small, 1, grid[..., 1])
