"""FLOPs traced symbolically from the reference modules (FakeTensorMode + ShapeEnv + FlopCounterMode)
equal the hand derivations as SymPy expressions, over the guard region the ShapeEnv recorded.

The three extra SAM windowed traces (g a multiple of 14 >= 28; g <= 13; g = 14) take ~12-15 s
each on 2 cores: they are marked slow (the full suite runs them; `-m "not slow"` skips them).
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import sympy as sp  # noqa: E402

from validation import symbolic as Y  # noqa: E402
from validation.symbolic import B, L, S, g, n  # noqa: E402

slow = pytest.mark.slow


def spot(a, b, points):
    for p in points:
        va, vb = a.subs(p), b.subs(p)
        assert va.is_Integer and va == vb, (p, va, vb)


def test_equal_detects_a_difference():
    assert Y.equal(n * (n + 1), n**2 + n) and not Y.equal(n * (n + 1), n**2 + n + 1)


@pytest.fixture(scope="module")
def clip_layer():
    return Y.clip_layer()


def test_clip_layer(clip_layer):
    traced, hand, t = clip_layer
    assert traced.free_symbols == {B, n} and not t.specialized
    assert Y.equal(traced, hand)
    assert sp.expand(traced) == 4096 * B * n**2 + 25165824 * B * n
    assert t.guards == [] and t.ranges == {B: (2, sp.oo), n: (2, sp.oo)}
    spot(traced, hand, [{B: 1, n: 257}, {B: 7, n: 101}, {B: 3, n: 2}])


def test_clip_full():
    traced, hand, t = Y.clip_full()
    assert Y.equal(traced, hand)
    # only the branch that resizes the position table was traced
    assert t.guards == [sp.Ne(g, 16)]
    assert [v for v in range(2, 40) if not t.holds({B: 2, g: v})] == [16]
    spot(traced, hand, [{B: 1, g: 10}, {B: 6, g: 16}])


@pytest.mark.parametrize(
    "case", [dict(), dict(past=False), dict(s_static=1)], ids=["prefill_with_past", "prefill", "decode_step"]
)
def test_decoder_layers(case):
    parts, t = Y.decoder_layers(**case)
    assert not t.guards and not t.specialized
    for name, (traced, hand) in parts.items():
        assert Y.equal(traced, hand), name
    dense, moe = parts["layer0"][0], parts["layer1"][0]
    keys = (S if "s_static" not in case else 1) + (L if case.get("past", True) else 0)
    s = S if "s_static" not in case else 1
    assert sp.expand(dense - 5120 * s * keys) == 65699968 * s
    assert sp.expand(moe - 5120 * s * keys) == 68321408 * s
    spot(parts["total"][0], parts["total"][1], [{S: 2, L: 3}, {S: 913, L: 0}, {S: 5, L: 4096}])


def test_sam_global_block():
    traced, hand, t = Y.sam_global_block()
    assert Y.equal(traced, hand)
    assert sp.factor(traced) == 3072 * g**2 * (g**2 + g + 4608)
    assert all(gd == sp.true for gd in t.guards)
    # unpatched, get_rel_pos's int() fixes g at the hint; the copy agrees with it there
    traced0, _, t0 = Y.sam_global_block(patched=False)
    assert t0.specialized == {g: 40} and sp.Eq(2 * g - 1, 79) in t0.guards
    assert traced0 == traced.subs(g, 40) == hand.subs(g, 40)
    spot(traced, hand, [{g: 64}, {g: 40}, {g: 2}])


@pytest.fixture(scope="module")
def sam_windowed():
    return Y.sam_windowed_block(g_hint=40)


def test_sam_windowed_block(sam_windowed):
    traced, hand, t = sam_windowed
    # the trace keeps the padding symbolic: Mod(13*g, 14) == (14 - g % 14) % 14
    assert traced.has(sp.Mod) and traced.has(sp.floor) and not t.specialized
    region = [v for v in range(2, 120) if t.holds({g: v})]
    assert region == [v for v in range(15, 120) if v % 14], region
    # g = 14 q + r, r = 1..13, q >= 1 covers exactly that region
    proof = Y.by_residue(traced, hand, q_min=1)
    assert all(proof[r] for r in range(1, 14)), proof
    spot(traced, hand, [{g: 15}, {g: 40}, {g: 64}, {g: 97}])


@slow
def test_sam_windowed_block_multiple_of_14():
    traced, hand, t = Y.sam_windowed_block(g_hint=28)
    assert [v for v in range(2, 120) if t.holds({g: v})] == list(range(28, 120, 14))
    assert Y.by_residue(traced, hand, q_min=2)[0]


@slow
def test_sam_windowed_block_one_window():
    traced, hand, t = Y.sam_windowed_block(g_hint=10)
    assert [v for v in range(2, 120) if t.holds({g: v})] == list(range(2, 14))
    for v in range(2, 14):  # the whole region, point by point
        assert traced.subs(g, v) == hand.subs(g, v), v
    assert not Y.by_residue(traced, hand)[1]  # and it is a different formula outside it


@slow
def test_sam_windowed_block_exactly_one_window():
    traced, hand, t = Y.sam_windowed_block(g_hint=14)
    assert [v for v in range(2, 120) if t.holds({g: v})] == [14]
    assert traced.subs(g, 14) == hand.subs(g, 14)
