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
from types import SimpleNamespace

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
    def outcomes(self) -> np.ndarray:
        """Distinct grids, int64 ``[code, axis]``; code 0 is (1, 1) (the small-image shortcut)."""
        grids = sorted({g for row in self.table for g in row} - {(1, 1)})
        return np.array([(1, 1)] + grids, dtype=np.int64)

    @cached_property
    def _arrays(self):
        mids = self.midpoints
        n_mid = len(mids)
        index = {tuple(g): c for c, g in enumerate(self.outcomes.tolist())}
        # interleaved float boundaries m_k, nextafter(m_k): #{boundaries <= W/H} is 2k on the
        # open region k and 2k+1 on the ray of midpoint k
        mid_f = np.array([float(m) for m in mids])
        bounds = np.stack([mid_f, np.nextafter(mid_f, np.inf)], axis=1).reshape(-1)
        rows = [self.table[r // 2] if r % 2 == 0 else self.table[n_mid + 1 + r // 2]
                for r in range(2 * n_mid + 1)]
        # that count without a binary search: bins b = min(floor(x*K), n_bins-1) (K a power of
        # two, so monotone in x); base[b] counts boundaries in lower bins, the few in bin b
        # (columns of `inside`, +inf padded) are compared one by one
        gap = float(np.diff(mid_f).min()) if n_mid > 1 else 1.0
        scale = 2.0 ** int(np.ceil(np.log2(2 / gap)))
        n_bins = int(bounds[-1] * scale) + 2
        bins = np.minimum((bounds * scale).astype(np.intp), n_bins - 1)
        base = np.searchsorted(bins, np.arange(n_bins), side="left")
        width = int(np.bincount(bins, minlength=n_bins).max())
        inside = np.full((width, n_bins), np.inf)
        for k, (b, x) in enumerate(zip(bins, bounds)):
            inside[k - base[b], b] = x
        # area bin from u = (2*area - 1) // tile**2: area > tile**2*n/2  <=>  n <= u
        sizes = sorted({i * j for i, j in self.candidates})
        by_u = np.array([sum(n <= u for n in sizes) for u in range(sizes[-1] + 1)], dtype=np.intp)
        codes = np.array([[index[g] for g in row] for row in rows], dtype=np.intp)
        return SimpleNamespace(
            scale=scale, base=base, inside=tuple(inside), by_u=by_u, codes=codes.reshape(-1),
            n_area=codes.shape[1], mid_f=mid_f, p_max=max(m.numerator for m in mids),
            q_max=max(m.denominator for m in mids),
            p=np.array([m.numerator for m in mids], dtype=np.int64),
            q=np.array([m.denominator for m in mids], dtype=np.int64))

    def codes(self, width, height) -> np.ndarray:
        """Index into :attr:`outcomes` of each point's grid (intp), exact."""
        w = np.asarray(width, dtype=np.int64)
        h = np.asarray(height, dtype=np.int64)
        a = self._arrays
        if w.size == 0 or h.size == 0:
            return np.zeros(np.broadcast_shapes(w.shape, h.shape), dtype=np.intp)
        w_max, h_max = int(w.max()), int(h.max())
        if w_max * h_max >= 2 ** 61:  # 2*W*H must fit int64
            raise ValueError(f"image sides up to {w_max} x {h_max} are too large for the tile rule")
        ratio = w / h
        if w_max * a.q_max < 2 ** 52 and h_max * a.p_max < 2 ** 52:
            # |W/H - p/q| >= 1/(H*q), i.e. more than 2 ulp relative while max(W*q, H*p) < 2**52:
            # float order of W/H against a midpoint is exact, equality included
            b = np.minimum((ratio * a.scale).astype(np.intp), len(a.base) - 1)
            row = a.base[b]
            for col in a.inside:
                row += ratio >= col[b]
        else:  # beyond that, a float guess fixed up with integer comparisons
            n_mid, p, q = len(a.mid_f), a.p, a.q
            k = np.searchsorted(a.mid_f, ratio, side="left")
            below = np.maximum(k - 1, 0)
            k = np.where((k > 0) & (p[below] * h >= q[below] * w), k - 1, k)
            above = np.minimum(k, n_mid - 1)
            k = np.where((k < n_mid) & (p[above] * h < q[above] * w), k + 1, k)
            at = np.minimum(k, n_mid - 1)
            row = 2 * k + ((k < n_mid) & (p[at] * h == q[at] * w))
        u = np.minimum((2 * (w * h) - 1) // (self.tile * self.tile), len(a.by_u) - 1)
        code = a.codes[row * a.n_area + a.by_u[u]]
        return np.where(np.maximum(w, h) <= self.shortcut, 0, code)

    def numpy(self, width, height) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``(w_tiles, h_tiles)`` for int arrays, exact (see :meth:`codes`)."""
        grid = self.outcomes[self.codes(width, height)]
        return grid[..., 0], grid[..., 1]
