"""The tile rule: symbolic pieces, the vectorised evaluator and the vendor's float walk agree."""

import random
import time
from functools import cache

import numpy as np
import pytest
import sympy as sp

import symcost
from derivations.common.vlm import H, W

GUNDAM = symcost.load("deepseek-ocr", preset="gundam")
RULE = GUNDAM.layout  # 640 tiles, up to 9

# The documented candidate order (docs/models.md), written out by hand.
ORDER = [
    (1, 2),
    (2, 1),
    (3, 1),
    (1, 3),
    (2, 2),
    (4, 1),
    (1, 4),
    (5, 1),
    (1, 5),
    (1, 6),
    (6, 1),
    (3, 2),
    (2, 3),
    (7, 1),
    (1, 7),
    (4, 2),
    (2, 4),
    (1, 8),
    (8, 1),
    (1, 9),
    (3, 3),
    (9, 1),
]


def vendor_grid(w, h, tile=640, order=ORDER):
    """The documented rule, plainly, one point at a time."""
    if w <= 640 and h <= 640:
        return (1, 1)
    aspect, best, best_diff = w / h, (1, 1), float("inf")
    for i, j in order:
        d = abs(aspect - i / j)
        if d < best_diff:
            best, best_diff = (i, j), d
        elif d == best_diff and w * h > 0.5 * tile * tile * i * j:
            best = (i, j)
    return best


def vendor_grid_arrays(w, h, tile=640):
    """The same walk over arrays: float64 ops are IEEE doubles, as Python floats are (in place:
    the exhaustive grid runs it over 67 million points)."""
    aspect = w / h
    area = w * h
    best_i, best_j = np.ones_like(w), np.ones_like(w)
    best_diff = np.full(w.shape, np.inf)
    d = np.empty_like(aspect)
    closer, take = np.empty(w.shape, dtype=bool), np.empty(w.shape, dtype=bool)
    for i, j in ORDER:
        np.abs(np.subtract(aspect, i / j, out=d), out=d)
        np.less(d, best_diff, out=closer)
        np.equal(d, best_diff, out=take)  # a tie goes to the later candidate past half its area
        take &= area > 0.5 * tile * tile * i * j
        take |= closer
        np.copyto(best_i, i, where=take)
        np.copyto(best_j, j, where=take)
        np.copyto(best_diff, d, where=closer)
    small = (w <= 640) & (h <= 640)
    best_i[small] = 1
    best_j[small] = 1
    return best_i, best_j


def test_candidate_order_is_the_vendors():
    assert list(RULE.candidates) == ORDER


@pytest.mark.parametrize(
    "w,h,grid",
    [
        (640, 640, (1, 1)),
        (641, 640, (2, 2)),
        (1024, 1024, (2, 2)),
        (4000, 4000, (3, 3)),
        (1280, 720, (2, 1)),
        (1920, 1080, (4, 2)),
        (2000, 1000, (4, 2)),
        (2560, 1440, (4, 2)),
        (3000, 400, (7, 1)),
        (400, 3000, (1, 8)),
        (378, 648, (2, 3)),
        (1654, 2339, (2, 3)),
    ],
)
def test_documented_examples(w, h, grid):
    rule = RULE
    assert vendor_grid(w, h) == grid
    assert tuple(int(x) for x in GUNDAM.tile_grid(w, h)) == grid
    assert tuple(int(e.xreplace({W: w, H: h})) for e in rule.expressions) == grid


def symbolic_grid(w, h):
    """The rule's symbolic pieces (``RULE.expressions``, conditions in exact integers) evaluated
    on arrays by SymPy's NumPy printer: one ``select`` over every point."""
    cols, rows = _symbolic()(np.asarray(w, dtype=np.int64), np.asarray(h, dtype=np.int64))
    return np.asarray(cols).astype(np.int64), np.asarray(rows).astype(np.int64)


@cache
def _symbolic():
    return sp.lambdify((W, H), RULE.expressions, "numpy")


def test_exact_midpoint_rays_follow_floats():
    """On W/H = midpoint, float arithmetic decides; check every ray at several scales."""
    rule = RULE
    ks = np.array([1, 2, 3, 7, 50, 333])
    w = np.array([m.numerator for m in rule.midpoints])[:, None] * ks
    h = np.array([m.denominator for m in rule.midpoints])[:, None] * ks
    want = np.array([[vendor_grid(int(a), int(b)) for a, b in zip(rw, rh)] for rw, rh in zip(w, h)])
    assert np.array_equal(np.stack(GUNDAM.tile_grid(w, h), axis=-1), want)
    assert np.array_equal(np.stack(symbolic_grid(w, h), axis=-1), want)
    assert want.shape == (len(rule.midpoints), 6, 2)


def test_symbolic_pieces_match_the_walk_on_random_points():
    rng = random.Random(0)
    points = [(rng.randint(1, 10_000), rng.randint(1, 10_000)) for _ in range(3000)]
    w, h = (np.array(c) for c in zip(*points))
    want = np.array([vendor_grid(a, b) for a, b in points])
    assert np.array_equal(np.stack(symbolic_grid(w, h), axis=-1), want)


def test_integer_comparisons_stay_integer():
    """No condition of the rule may compare floats or rationals (SymPy likes W < 60*H/11)."""
    rule = RULE
    for cond, _ in rule.pieces:
        for atom in sp.preorder_traversal(cond):
            assert not isinstance(atom, (sp.Float, sp.Rational)) or isinstance(atom, sp.Integer)


@pytest.mark.slow
def test_exhaustive_8192_squared():
    """All 67,108,864 pairs in [1, 8192]^2: evaluator == an independent array walk."""
    n = 8192
    w = np.arange(1, n + 1, dtype=np.int64)
    mismatches = 0
    start = time.perf_counter()
    for h0 in range(1, n + 1, 512):
        hh = np.arange(h0, min(h0 + 512, n + 1), dtype=np.int64)
        ww, hh = np.meshgrid(w, hh, indexing="xy")
        gi, gj = GUNDAM.tile_grid(ww, hh)
        vi, vj = vendor_grid_arrays(ww, hh)
        mismatches += int(np.count_nonzero((gi != vi) | (gj != vj)))
    elapsed = time.perf_counter() - start
    print(f"exhaustive layout: {n * n} pairs, {mismatches} mismatches, {elapsed:.1f} s")
    assert mismatches == 0


def test_gundam_m_uses_1024_tiles_and_threshold():
    m = symcost.load("deepseek-ocr", preset="gundam-m")
    assert m.layout.tile == 1024
    assert tuple(int(x) for x in m.tile_grid(1280, 720)) == (2, 1)
    # square images tie (2,2) with (3,3); (3,3) wins above 0.5*tile^2*9 px:
    # 1.84 Mpx for 640 tiles, 4.72 Mpx for 1024 tiles. 1900^2 = 3.61 Mpx lies between.
    assert vendor_grid(1900, 1900, tile=640) == (3, 3)
    assert vendor_grid(1900, 1900, tile=1024) == (2, 2)
    assert tuple(int(x) for x in m.tile_grid(1900, 1900)) == (2, 2)
    assert tuple(int(x) for x in m.tile_grid(2200, 2200)) == (3, 3)


def test_max_crops_restricts_the_candidates():
    m = symcost.load("deepseek-ocr", preset="gundam", max_crops=6)
    order6 = [c for c in ORDER if c[0] * c[1] <= 6]
    for w, h in [(3000, 400), (4000, 4000), (1920, 1080), (641, 640)]:
        assert tuple(int(x) for x in m.tile_grid(w, h)) == vendor_grid(w, h, order=order6)


def test_sides_beyond_exact_floats_are_refused():
    """The float comparison is exact while max(W*q, H*p) < 2**52; beyond, codes() refuses."""
    big = np.array([2**50], dtype=np.int64)
    with pytest.raises(symcost.SymcostError, match="too large"):
        RULE.codes(big, big)
