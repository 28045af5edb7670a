"""Compiled NumPy == SymPy evaluated exactly == the numeric model, and the shape of the costs."""
from functools import lru_cache

import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost
from derivations.deepseek_ocr import PRESETS, VISION_MODES

INT_METRICS = ("flops", "macs", "params", "weight_bytes", "kv_bytes", "activation_bytes",
               "io_bytes")
STAGES = ("vision", "prefill", "decode", "request")
CROP_PRESETS = [p for p, spec in PRESETS.items() if spec.crop_mode]


@lru_cache(maxsize=None)
def model(preset, mode):
    return symcost.load("deepseek-ocr", preset=preset, vision_mode=mode)


def sympy_exact(m, expr, w, h, stage_values):
    """Evaluate with SymPy alone: the tile rule's pieces, then the metric's closed form."""
    if m.layout is None:
        i, j = sp.Integer(1), sp.Integer(1)
    else:
        i, j = (e.xreplace({symcost.W: w, symcost.H: h}) for e in m.layout.expressions)
    subs = {symcost.w_tiles: i, symcost.h_tiles: j,
            **{s: sp.Integer(v) for s, v in stage_values.items()}}
    return int(expr.xreplace(subs))


@settings(max_examples=max(500, settings.default.max_examples))  # "long" profile: 1000
@given(preset=st.sampled_from(sorted(PRESETS)), mode=st.sampled_from(sorted(VISION_MODES)),
       stage=st.sampled_from(STAGES), w=st.integers(1, 10_000), h=st.integers(1, 10_000),
       prompt=st.integers(0, 4000), kv=st.integers(0, 20_000), new=st.integers(1, 64),
       batch=st.integers(1, 16))
def test_compiled_equals_sympy_and_numeric(preset, mode, stage, w, h, prompt, kv, new, batch):
    m = model(preset, mode)
    got = m.compile(stage, INT_METRICS, "fvcore")(w, h, prompt, kv, new, batch)
    ref = m.evaluate(w, h, stage, prompt_tokens=prompt, kv_len=kv, new_tokens=new, batch=batch,
                     convention="fvcore")
    for name in INT_METRICS + ("w_tiles", "h_tiles", "n_crops", "image_tokens"):
        assert int(got[name]) == ref[name], name
    values = {symcost.P: prompt, symcost.L: kv, symcost.N: new, symcost.B: batch}
    exprs = m.expressions(stage, "fvcore")
    for name in INT_METRICS:
        assert sympy_exact(m, exprs[name], w, h, values) == ref[name], name


@settings(max_examples=max(200, settings.default.max_examples))
@given(preset=st.sampled_from(sorted(PRESETS)), convention=st.sampled_from(sorted(symcost.CONVENTIONS)),
       w=st.integers(1, 10_000), h=st.integers(1, 10_000))
def test_every_convention_compiled_equals_numeric(preset, convention, w, h):
    m = model(preset, "crops")
    got = m.compile("vision", ("flops",), convention)(w, h)
    assert int(got["flops"]) == m.evaluate(w, h, convention=convention)["flops"]


@settings(max_examples=max(200, settings.default.max_examples))
@given(preset=st.sampled_from(sorted(PRESETS)), stage=st.sampled_from(STAGES),
       convention=st.sampled_from(sorted(symcost.CONVENTIONS)),
       w=st.integers(1, 10_000), h=st.integers(1, 10_000), new=st.integers(1, 16))
def test_crops_cost_at_least_nocrop(preset, stage, convention, w, h, new):
    crops = model(preset, "crops").evaluate(w, h, stage, new_tokens=new, convention=convention)
    nocrop = model(preset, "nocrop").evaluate(w, h, stage, new_tokens=new, convention=convention)
    assert crops["flops"] >= nocrop["flops"]
    if not PRESETS[preset].crop_mode or crops["n_crops"] == 0:
        assert crops["flops"] == nocrop["flops"]  # no tiles: the two modes are the same model


def test_modes_share_the_global_view():
    """Switching modes neither drops nor double-counts: crops = nocrop + the tile view."""
    for preset in CROP_PRESETS:
        crops, nocrop = model(preset, "crops"), model(preset, "nocrop")
        for w, h in [(641, 640), (1280, 720), (3000, 400), (4000, 4000)]:
            c = crops.evaluate(w, h)["components"]
            n = nocrop.evaluate(w, h)["components"]
            assert c["vision.global"] == n["vision.global"] == n["vision"]
            assert c["vision"] == c["vision.global"] + c["vision.crops"] > n["vision"]


GRIDS = [(i, j) for i in range(1, 10) for j in range(1, 10) if 2 <= i * j <= 9]


@settings(max_examples=max(200, settings.default.max_examples))
@given(preset=st.sampled_from(CROP_PRESETS), stage=st.sampled_from(STAGES),
       a=st.sampled_from(GRIDS), b=st.sampled_from(GRIDS))
def test_cost_monotone_in_tile_count(preset, stage, a, b):
    if a[0] * a[1] == b[0] * b[1]:
        return
    small, large = sorted((a, b), key=lambda g: g[0] * g[1])
    flops = model(preset, "crops").formula(stage, "flops", "torch")

    def at(grid):
        return int(flops.xreplace({symcost.w_tiles: grid[0], symcost.h_tiles: grid[1],
                                   symcost.P: 5, symcost.L: 7, symcost.N: 3, symcost.B: 1}))
    if stage == "decode":  # one step at a given cache length never sees the image
        assert at(small) == at(large)
    else:
        assert at(small) < at(large)
