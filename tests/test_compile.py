"""Compiled NumPy functions: exact integer printing, overflow never wraps, chunking is invisible."""

import numpy as np
import pytest
import sympy as sp

import symcost
from symcost import SymcostError
from symcost.compile import CHUNK, CompiledFunction
from symcost.metrics import INT_METRICS

x, y, z = sp.symbols("x y z", integer=True)

EXPRS = {
    "triangle": x * (x + 1) / 2,
    "nested": x * (y + sp.Rational(1, 3)) * (12 * y + 12) / 4 + x / 2 + x / 2,  # = x*(3y+1)*(y+1) + x
    "tetra": x * (x + 1) * (x + 2) / 6 - y * (y - 1) / 2,
    "floor": sp.floor((3 * x + y) / 7),
    "ceiling": sp.ceiling(x / (y + 1)),
    "floor_neg": sp.floor((x - 2 * y) / 5),
    "max_min": sp.Max(x * y, 3 * z) - sp.Min(x, y, 2),
    "piecewise": sp.Piecewise((x * (x - 1) / 2, x >= y), (y**2, sp.Eq(x, z)), (z, True)),
    "half_sum": sp.Max(x, y * (y + 1) / 2),
}


def _reference(expr, xs, ys, zs):
    values = [expr.xreplace({x: int(a), y: int(b), z: int(c)}) for a, b, c in zip(xs, ys, zs)]
    assert all(v.is_Integer for v in values)
    return [int(v) for v in values]


@pytest.mark.parametrize("name", sorted(EXPRS))
def test_exact_printing_equals_sympy(name):
    rng = np.random.default_rng(1)
    xs = rng.integers(-1000, 1000, 300)
    ys = rng.integers(0, 1000, 300)
    zs = rng.integers(-1000, 1000, 300)
    got = CompiledFunction((x, y, z), {name: EXPRS[name]})(xs, ys, zs)[name]
    assert got.dtype == np.int64
    assert got.tolist() == _reference(EXPRS[name], xs, ys, zs)


def test_no_float_division_in_source():
    src = CompiledFunction((x, y, z), EXPRS).source.split("Source code:")[1]
    assert "/" not in src.replace("//", "")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        CompiledFunction((x,), {"f": 0.5 * x})


@pytest.mark.parametrize("expr", [x**3, x * y * 4096 // 3, x * (x + 1) / 2 * y])
def test_overflow_is_exact_never_wrapped(expr):
    f = CompiledFunction((x, y), {"v": expr})
    xs = np.array([2, 3_000_000, 2**31, 2**40, 5], dtype=np.int64)
    ys = np.array([3, 2**20, 2**30, 2**33, 7], dtype=np.int64)
    got = f(xs, ys)["v"]
    want = _reference(expr, xs, ys, ys)
    assert max(abs(v) for v in want) >= 2**63  # the test really passes int64
    assert got.dtype == object
    assert [int(v) for v in got] == want


def test_overflow_in_an_intermediate_only():
    """x*(x+1)/2 fits int64 while x*(x+1) does not: the bound covers intermediates."""
    xs = np.array([3_037_000_499, 4_000_000_000, 10], dtype=np.int64)
    got = CompiledFunction((x,), {"t": x * (x + 1) / 2})(xs)["t"]
    assert [int(v) for v in got] == [a * (a + 1) // 2 for a in xs.tolist()]


def test_extremes_of_different_points_stay_int64():
    """The chunk's largest x and largest y (together past int64) come from different points, each of
    which fits: the per-point bound keeps the result int64 (no Python ints)."""
    xs = np.array([2**40, 1, 7], dtype=np.int64)
    ys = np.array([1, 2**40, 5], dtype=np.int64)
    got = CompiledFunction((x, y), {"v": x * y + 3})(xs, ys)["v"]
    assert got.dtype == np.int64
    assert got.tolist() == [2**40 + 3, 2**40 + 3, 38]


def test_large_constants():
    got = CompiledFunction((x,), {"v": (2**70) * x - 2**70 * (x - 1)})(np.arange(3))["v"]
    assert [int(v) for v in got] == [2**70] * 3


def test_chunking_is_invisible():
    n = 2 * CHUNK + 123
    rng = np.random.default_rng(2)
    xs, ys, zs = (rng.integers(-(10**6), 10**6, n) for _ in range(3))
    f = CompiledFunction((x, y, z), EXPRS)
    whole = f(xs, ys, zs)
    for k in (0, CHUNK - 1, CHUNK, n - 1):
        one = f(xs[k], ys[k], zs[k])
        for name in EXPRS:
            assert int(whole[name][k]) == int(one[name])
    head = f(xs[:CHUNK], ys[:CHUNK], zs[:CHUNK])
    for name in EXPRS:
        assert np.array_equal(whole[name][:CHUNK], head[name])
    # only one chunk overflows: that chunk is exact, the others stay exact too
    xs2 = xs.copy()
    xs2[CHUNK + 5] = 2**40
    big = CompiledFunction((x,), {"c": x**2})(xs2)["c"]
    assert big.dtype == object and int(big[CHUNK + 5]) == 2**80
    assert [int(v) for v in big[:10]] == [int(v) ** 2 for v in xs2[:10]]


def test_scalars_and_shapes():
    f = CompiledFunction((x, y), {"s": x + y})
    assert f(2, 3)["s"].shape == ()
    assert f(np.arange(6).reshape(2, 3), 1)["s"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert f(np.arange(0), 1)["s"].shape == (0,)
    with pytest.raises(SymcostError):
        f(1)


def test_evaluator_gather_equals_per_point():
    """The tile-grid gather path equals per-point evaluation with array stage arguments."""
    m = symcost.load("deepseek-ocr", preset="gundam")
    ev = m.compile("request", list(INT_METRICS) + ["arithmetic_intensity"])
    rng = np.random.default_rng(3)
    w, h = rng.integers(1, 8193, 2000), rng.integers(1, 8193, 2000)
    gathered = ev(w, h, prompt_tokens=12, new_tokens=3, batch=2)
    per_point = ev(w, h, prompt_tokens=np.full(2000, 12), new_tokens=3, batch=2)
    assert gathered.keys() == per_point.keys()
    for k in gathered:
        assert np.array_equal(gathered[k], per_point[k]), k
    for k in range(0, 2000, 400):
        num = m.evaluate(int(w[k]), int(h[k]), "request", prompt_tokens=12, new_tokens=3, batch=2)
        for metric in INT_METRICS:
            assert int(gathered[metric][k]) == num[metric]
