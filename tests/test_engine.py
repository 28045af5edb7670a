"""The engine's small parts: the Cost type, composition, conventions, op formulas."""
import pytest
import sympy as sp

from symcost import SymcostError, choose, op, repeat, seq, sum_over, when
from symcost.conventions import CONVENTIONS, flops
from symcost.cost import ZERO, Cost
from symcost.ops import OPS, fvcore_einsum

n, t = sp.symbols("n t", integer=True, positive=True)


def test_cost_adds_counts_and_maxes_the_peak():
    a = Cost(mm_macs=3, peak_act_elems=10, params=1)
    b = Cost(mm_macs=4, peak_act_elems=7, params=2)
    assert a + b == Cost(mm_macs=7, peak_act_elems=10, params=3)
    assert 3 * a == Cost(mm_macs=9, peak_act_elems=10, params=3)
    assert sum([a, b]) == a + b
    s = Cost(mm_macs=n) + Cost(mm_macs=2 * n, peak_act_elems=n)
    assert s.mm_macs == 3 * n and s.peak_act_elems == sp.Max(0, n)


def test_composition_in_context():
    block = op("fc", "linear", tokens=n, d_in=4, d_out=8)
    tree = seq("root", repeat("layers", 3, block), when(n > 5, op("extra", "linear", tokens=n,
                                                                  d_in=2, d_out=2, bias=False)))
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
    c = Cost(mm_macs=10, conv_macs=1, einsum_macs=100, einsum_fvcore=98, sdpa_macs=1000,
             ln_elems=2, vector_flops=7)
    assert flops(c, "torch") == 2 * (10 + 1 + 100 + 1000)
    assert flops(c, "torch-cpu") == 2 * (10 + 1 + 100)
    assert flops(c, "fvcore") == 10 + 1 + 98 + 1000 + 5 * 2
    assert flops(c, "fvcore-default") == 10 + 1 + 98 + 5 * 2
    assert flops(c, "symcost") == 2 * 1111 + 7
    assert set(CONVENTIONS) == {"torch", "torch-cpu", "fvcore", "fvcore-default", "symcost"}
    with pytest.raises(SymcostError, match="convention"):
        flops(c, "tvm")


@pytest.mark.parametrize("macs,expected", [(52_684_800, 52_700_000), (201_326_592, 201_350_000),
                                           (4999, 4999), (6172, 6170)])
def test_fvcore_einsum_rounding(macs, expected):
    # floor(float('%.3e' % (2*macs)) / 2): 4 significant digits of the doubled count
    assert int(fvcore_einsum(macs)) == expected == int(float("%.3e" % (2 * macs)) // 2)


def test_every_op_is_int_or_symbol_alike():
    shapes = {"linear": dict(tokens=3, d_in=4, d_out=5), "conv2d": dict(batch=2, c_in=3, c_out=4,
              kernel=3, in_hw=8, out_hw=4), "layer_norm": dict(tokens=3, dim=4),
              "rms_norm": dict(tokens=3, dim=4), "elementwise": dict(elems=6),
              "bmm": dict(batch=2, m=3, k=4, n=5), "softmax": dict(elems=6),
              "einsum": dict(out_elems=6, contracted=7, operand_elems=8),
              "moe_linear": dict(tokens=12, d_in=4, d_out=5, experts=8, experts_read=2),
              "attention": dict(batch_heads=2, s_q=3, s_k=4, d=5),
              "sdpa": dict(batch_heads=2, s_q=3, s_k=4, d_qk=5, d_v=5),
              "kv_append": dict(tokens=3, dim=4), "embedding": dict(tokens=3, vocab=10, dim=4),
              "parameter": dict(elems=5)}
    assert set(shapes) == set(OPS)
    for kind, shape in shapes.items():
        ints = OPS[kind](**shape)
        syms = OPS[kind](**{k: sp.Integer(v) for k, v in shape.items()})
        assert ints == syms.map(lambda x: int(sp.sympify(x))), kind
        assert ints != ZERO
