"""The engine's small parts: the Cost type, composition, conventions, op formulas."""

import pytest
import sympy as sp

from symcost import SymcostError, choose, op, repeat, seq, sum_over, when
from symcost.conventions import CONVENTIONS, flops
from symcost.cost import ZERO, Cost
from symcost.ops import OPS, fvcore_einsum
from symcost.tree import Node

n, t = sp.symbols("n t", integer=True, positive=True)


def test_cost_adds_counts_and_chains_liveness():
    a = Cost(mm_macs=3, peak_bytes=10, out_bytes=4, params=1)
    b = Cost(mm_macs=4, peak_bytes=7, out_bytes=2, params=2)
    # a then b: counts add; a's output (4) is live while b runs (7): peak max(10, 11)
    assert a + b == Cost(mm_macs=7, params=3, peak_bytes=11, out_bytes=2)
    assert 3 * a == Cost(mm_macs=9, params=3, peak_bytes=10, out_bytes=4)
    assert sum([a, b]) == a + b
    s = Cost(mm_macs=n) + Cost(mm_macs=2 * n, peak_bytes=n)
    assert s.mm_macs == 3 * n and s.peak_bytes == n


def _leaf(name, out, retained=0, peak=None, keep=False):
    return Node(
        name,
        own=Cost(out_bytes=out, peak_bytes=out if peak is None else peak, retained_bytes=retained),
        kind="x",
        keep=keep,
    )


def test_liveness_walk_frees_inputs_and_keeps_marked_outputs():
    # a -> b -> c: b reads a (a live while b runs), c reads b; a kept: live until the seq ends
    chain = seq("s", _leaf("a", 5), _leaf("b", 3), _leaf("c", 2))
    assert chain.cost.peak_bytes == 8 and chain.cost.out_bytes == 2  # a + b
    kept = seq("s", _leaf("a", 5, keep=True), _leaf("b", 3), _leaf("c", 2))
    assert kept.cost.peak_bytes == 10  # a + b + c
    grow = seq("s", _leaf("a", 1, retained=100), _leaf("b", 3, peak=7))
    assert grow.cost.peak_bytes == 108 and grow.cost.retained_bytes == 100
    # chained repeats read the previous output; collected ones keep every output
    assert repeat("r", 4, _leaf("a", 5, retained=1)).cost.peak_bytes == 3 * 1 + 5 + 5
    assert repeat("r", 4, _leaf("a", 5), collect=True).cost.peak_bytes == 3 * 5 + 5
    assert repeat("r", 4, _leaf("a", 5), collect=True).cost.out_bytes == 20
    steps = sum_over("d", t, 1, n - 1, lambda k: _leaf("step", 2, retained=k, peak=10 * k))
    for value in range(1, 8):  # brute force: step k sees the growth of steps < k
        want = max((sum(range(1, k)) + 2 + 10 * k for k in range(1, value)), default=0)
        assert int(steps.cost.peak_bytes.subs(n, value)) == want


def test_when_gates_per_call_costs_and_leaves_vanishing_ones():
    k = sp.Symbol("k", integer=True, nonnegative=True)
    node = when(k > 0, op("fc", "linear", tokens=k, d_in=4, d_out=8))
    assert node.cost.mm_macs == 32 * k  # zero at k = 0 anyway: not gated
    assert node.cost.weight_read_bytes.subs(k, 0) == 0  # weights read only when it runs
    assert node.cost.weight_read_bytes.subs(k, 3) == (32 + 8) * 2


def test_composition_in_context():
    block = op("fc", "linear", tokens=n, d_in=4, d_out=8)
    tree = seq(
        "root",
        repeat("layers", 3, block),
        when(n > 5, op("extra", "linear", tokens=n, d_in=2, d_out=2, bias=False)),
    )
    comps = tree.components()
    assert comps["root.layers.fc"].mm_macs == 3 * 32 * n
    assert comps["root.layers"].params == 3 * (32 + 8)
    gated = comps["root.extra"].mm_macs
    assert gated.subs(n, 5) == 0 and gated.subs(n, 6) == 24
    assert tree.cost.mm_macs.subs(n, 6) == 3 * 32 * 6 + 24
    assert tree.by_kind()["linear"].mm_macs.subs(n, 6) == tree.cost.mm_macs.subs(n, 6)


def test_sum_over_is_the_brute_force_sum():
    node = sum_over("steps", t, 1, n - 1, lambda k: op("attn", "bmm", batch=1, m=1, k=k, n=4))
    for value in range(1, 12):
        brute = sum(4 * k for k in range(1, value))
        assert node.cost.mm_macs.subs(n, value) == brute
    numeric = sum_over("steps", t, 1, 9, lambda k: op("attn", "bmm", batch=1, m=1, k=k, n=4))
    assert numeric.cost.mm_macs == 4 * 45


def test_choose_names_the_parameter_and_allowed_values():
    assert choose("mode", {"a": 1, "b": 2}, "b") == 2
    with pytest.raises(SymcostError, match=r"mode: 'c' is not one of a, b"):
        choose("mode", {"a": 1, "b": 2}, "c")


def test_conventions_weigh_fields():
    c = Cost(
        mm_macs=10, conv_macs=1, einsum_macs=100, einsum_fvcore=98, sdpa_macs=1000, ln_elems=2, vector_flops=7
    )
    assert flops(c, "torch") == 2 * (10 + 1 + 100 + 1000)
    assert flops(c, "torch-cpu") == 2 * (10 + 1 + 100)
    assert flops(c, "fvcore") == 10 + 1 + 98 + 1000 + 5 * 2
    assert flops(c, "fvcore-default") == 10 + 1 + 98 + 5 * 2
    assert flops(c, "symcost") == 2 * 1111 + 7
    assert set(CONVENTIONS) == {"torch", "torch-cpu", "fvcore", "fvcore-default", "symcost"}
    with pytest.raises(SymcostError, match="convention"):
        flops(c, "tvm")


@pytest.mark.parametrize(
    "macs,expected", [(52_684_800, 52_700_000), (201_326_592, 201_350_000), (4999, 4999), (6172, 6170)]
)
def test_fvcore_einsum_rounding(macs, expected):
    # floor(float('%.3e' % (2*macs)) / 2): 4 significant digits of the doubled count
    assert int(fvcore_einsum(macs)) == expected == int(float("%.3e" % (2 * macs)) // 2)


def test_every_op_is_int_or_symbol_alike():
    shapes = {
        "linear": dict(tokens=3, d_in=4, d_out=5),
        "conv2d": dict(batch=2, c_in=3, c_out=4, kernel=3, in_hw=8, out_hw=4),
        "layer_norm": dict(tokens=3, dim=4),
        "rms_norm": dict(tokens=3, dim=4),
        "elementwise": dict(elems=6),
        "bmm": dict(batch=2, m=3, k=4, n=5),
        "softmax": dict(elems=6),
        "einsum": dict(out_elems=6, contracted=7, operand_elems=8),
        "moe_linear": dict(tokens=12, d_in=4, d_out=5, experts=8, experts_read=2),
        "attention": dict(heads=4, kv_heads=2, queries=6, pairs=24, keys=8, d=5),
        "sdpa": dict(batch_heads=2, s_q=3, s_k=4, d_qk=5, d_v=5),
        "kv_cache": dict(kv_heads=2, d=4, new=6, cached=10),
        "cast": dict(elems=6),
        "embedding": dict(tokens=3, vocab=10, dim=4),
        "parameter": dict(elems=5),
    }
    assert set(shapes) == set(OPS)
    for kind, shape in shapes.items():
        ints = OPS[kind](**shape)
        syms = OPS[kind](**{k: sp.Integer(v) for k, v in shape.items()})
        assert ints == syms.map(lambda x: int(sp.sympify(x))), kind
        assert ints != ZERO


def test_unknown_op_kind_and_negative_shapes_are_named():
    with pytest.raises(SymcostError, match=r"op kind: 'linaer' is not one of .*linear"):
        op("fc", "linaer", tokens=1)
    with pytest.raises(SymcostError, match=r"fc \(linear\): tokens = -1 must be >= 0"):
        op("fc", "linear", tokens=-1, d_in=2, d_out=2)
