"""Compiled NumPy == SymPy evaluated exactly == the numeric model, and the shape of the costs."""

from functools import cache
from itertools import product

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import symcost
from derivations.common.vlm import STAGE_NAMES
from derivations.deepseek_ocr import PRESETS, VISION_MODES
from symcost import SymcostError
from symcost.metrics import INT_METRICS

STAGES = STAGE_NAMES
CROP_PRESETS = [p for p, spec in PRESETS.items() if spec.crop_mode]
FAMILIES = [("deepseek-ocr", dict(preset=p, vision_mode=m)) for p in PRESETS for m in VISION_MODES] + [
    ("deepseek-ocr2", dict(vision_mode=m)) for m in ("crops", "nocrop")
]


@cache
def model(family, options=(), **kw):
    return symcost.load(family, **dict(options), **kw)


def load(family, options):
    return model(family, tuple(sorted(options.items())))


def inputs_of(m, stage, **values):
    """The stage's inputs out of a pool of values."""
    return {i.name: values[i.name] for i in m.stage_inputs(stage)}


def sympy_exact(m, stage, expr, values):
    """Evaluate with SymPy alone: the layout rule's pieces, then the metric's closed form."""
    subs = {i.symbol: sp.Integer(values[i.name]) for i in m.stage_inputs(stage)}
    if m.uses_layout(stage):
        subs.update(sympy_layout(m.layout, *(values[i.name] for i in m.layout.inputs)))
    return int(expr.xreplace(subs))


@cache
def sympy_layout(layout, *image) -> dict:
    """The layout rule's pieces evaluated by SymPy at one image (once per image: every metric
    of a point reads the same outputs)."""
    values = {i.symbol: sp.Integer(v) for i, v in zip(layout.inputs, image)}
    return {o: e.xreplace(values) for o, e in zip(layout.outputs, layout.expressions)}


POOL = dict(
    width=st.integers(1, 10_000),
    height=st.integers(1, 10_000),
    prompt_tokens=st.integers(0, 4000),
    kv_len=st.integers(0, 20_000),
    new_tokens=st.integers(1, 64),
    batch=st.integers(1, 16),
)


@settings(max_examples=max(500, settings.default.max_examples))  # "long" profile: 1000
@pytest.mark.slow
@given(
    fam=st.sampled_from(FAMILIES),
    stage=st.sampled_from(STAGES),
    runtime=st.sampled_from(["hf", "vllm"]),
    **POOL,
)
def test_compiled_equals_sympy_and_numeric(fam, stage, runtime, **values):
    assume(runtime == "hf" or fam[1].get("vision_mode") != "nocrop-hf")  # the HF code's path alone
    m = load(fam[0], {**fam[1], "runtime": runtime})
    kw = inputs_of(m, stage, **values)
    got = m.compile(stage, INT_METRICS, "fvcore")(**kw)
    ref = m.evaluate(stage=stage, convention="fvcore", **kw)
    names = INT_METRICS + tuple(m.stage_quantities(stage))
    names += tuple(str(o) for o in m.layout.outputs) if m.uses_layout(stage) else ()
    for name in names:
        assert int(got[name]) == ref[name], name
    exprs = m.expressions(stage, "fvcore")
    for name in INT_METRICS:
        assert sympy_exact(m, stage, exprs[name], kw) == ref[name], name


@settings(max_examples=max(200, settings.default.max_examples))
@given(
    fam=st.sampled_from(FAMILIES),
    convention=st.sampled_from(sorted(symcost.CONVENTIONS)),
    w=st.integers(1, 10_000),
    h=st.integers(1, 10_000),
)
def test_every_convention_compiled_equals_numeric(fam, convention, w, h):
    m = load(*fam)
    got = m.compile("vision", ("flops",), convention)(w, h)
    assert int(got["flops"]) == m.evaluate(w, h, convention=convention)["flops"]


@settings(max_examples=max(200, settings.default.max_examples))
@given(
    fam=st.sampled_from([f for f in FAMILIES if f[1].get("vision_mode") == "crops"]),
    stage=st.sampled_from(["vision", "prefill", "request"]),
    hardware=st.sampled_from(["h100-sxm", "l4"]),
    w=st.integers(1, 10_000),
    h=st.integers(1, 10_000),
    new=st.integers(1, 16),
)
def test_crops_equals_nocrop_without_tiles(fam, stage, hardware, w, h, new):
    """Every metric and the time: crop mode costs at least no-crop, exactly as much when no
    tile is encoded (no phantom tile pass: the tile view's weights are not read)."""
    crops = load(fam[0], fam[1])
    nocrop = load(fam[0], {**fam[1], "vision_mode": "nocrop"})
    kw = dict(new_tokens=new) if stage == "request" else {}
    a = crops.evaluate(w, h, stage, hardware=hardware, **kw)
    b = nocrop.evaluate(w, h, stage, hardware=hardware, **kw)
    for metric in INT_METRICS + ("time_s",):
        assert a[metric] >= b[metric], metric
        if a["n_crops"] == 0:
            assert a[metric] == b[metric], metric


def test_modes_share_the_global_view():
    """Switching modes neither drops nor double-counts: crops = nocrop + the tile view."""
    for preset in CROP_PRESETS:
        crops = load("deepseek-ocr", dict(preset=preset, vision_mode="crops"))
        nocrop = load("deepseek-ocr", dict(preset=preset, vision_mode="nocrop"))
        for w, h in [(641, 640), (1280, 720), (3000, 400), (4000, 4000)]:
            c = crops.evaluate(w, h)["components"]
            n = nocrop.evaluate(w, h)["components"]
            assert c["vision.global"] == n["vision.global"] == n["vision"]
            assert c["vision"] == c["vision.global"] + c["vision.crops"] > n["vision"]


@settings(max_examples=max(200, settings.default.max_examples))
@given(fam=st.sampled_from(FAMILIES), stage=st.sampled_from(STAGES), **POOL)
def test_memory_holds_every_part(fam, stage, **values):
    """memory = weights + input KV + activations, and at least each of those parts."""
    m = load(*fam)
    r = m.evaluate(stage=stage, **inputs_of(m, stage, **values))
    kv_in = r["memory_bytes"] - r["weight_bytes"] - r["activation_bytes"]
    assert kv_in >= 0
    assert kv_in == (
        2 * values["batch"] * values["kv_len"] * 12 * 10 * 128 * 2  # bf16
        if stage == "decode"
        else 0
    )
    for part in ("weight_bytes", "activation_bytes"):
        assert r["memory_bytes"] >= r[part] > 0


GRIDS = [(i, j) for i in range(1, 10) for j in range(1, 10) if 2 <= i * j <= 9]


@settings(max_examples=max(200, settings.default.max_examples))
@given(
    preset=st.sampled_from(CROP_PRESETS),
    stage=st.sampled_from(["vision", "prefill", "request"]),
    a=st.sampled_from(GRIDS),
    b=st.sampled_from(GRIDS),
)
def test_cost_monotone_in_tile_count(preset, stage, a, b):
    assume(a[0] * a[1] != b[0] * b[1])
    small, large = sorted((a, b), key=lambda g: g[0] * g[1])
    m = load("deepseek-ocr", dict(preset=preset))
    flops = m.formula(stage, "flops", "torch")
    v = m.symbols()

    def at(grid):
        values = {v.w_tiles: grid[0], v.h_tiles: grid[1], v.prompt_tokens: 5, v.new_tokens: 3, v.batch: 1}
        return int(flops.xreplace(values))

    assert at(small) < at(large)


@settings(max_examples=max(100, settings.default.max_examples))
@given(
    fam=st.sampled_from(FAMILIES),
    stage=st.sampled_from(["vision", "prefill"]),
    metric=st.sampled_from(["flops", "io_bytes", "activation_bytes"]),
    w=st.integers(1, 10_000),
    h=st.integers(1, 10_000),
)
def test_image_formula_equals_numeric(fam, stage, metric, w, h):
    """``formula(image=True)``: one branch per case of the layout rule, in W and H."""
    m = load(*fam)
    expr = _image_formula(fam[0], tuple(sorted(fam[1].items())), stage, metric)
    subs = {i.symbol: sp.Integer(v) for i, v in zip(m.layout.inputs, (w, h))}
    subs |= {i.symbol: sp.Integer(i.default) for i in m.stage_inputs(stage) if i.default is not None}
    assert int(expr.xreplace(subs)) == m.evaluate(w, h, stage)[metric]


@cache
def _image_formula(family, options, stage, metric):
    return load(family, dict(options)).formula(stage, metric, image=True)


# -- time_s: the compiled program = the numeric model = the closed form formula() gives ------
TIME_HARDWARE = "h200"
TIMES = ("time_s", "ttft_s", "tpot_s")


def _choices(family: str, option: str) -> list:
    return [c for o in symcost.get_family(family).options if o.name == option for c in o.choices]


def _loads(family: str, options: dict) -> bool:
    try:
        load(family, options)
    except SymcostError:  # a combination the family refuses (nocrop-hf under vllm)
        return False
    return True


def _variants(family: str) -> list[dict]:
    """Every runtime x vision mode a family declares and accepts, its other options at their
    defaults."""
    axes = {name: _choices(family, name) for name in ("runtime", "vision_mode")}
    axes = {name: choices for name, choices in axes.items() if choices}
    combos = [dict(zip(axes, combo)) for combo in product(*axes.values())]
    return [c for c in combos if _loads(family, c)]


TIME_CASES = [(f, v) for f in symcost.families() for v in _variants(f)]


@cache
def _time_formula(family, options, stage):
    return load(family, dict(options)).formula(stage, "time_s", hardware=TIME_HARDWARE)


@settings(max_examples=max(25, settings.default.max_examples // 4))  # each new model derives anew
@given(case=st.sampled_from(TIME_CASES), stage=st.sampled_from(["vision", "prefill", "decode"]), **POOL)
@example(  # issue 20: the SAM qkv_split's kernels were paid at batch 1 by the compiled tree only
    case=("deepseek-ocr2", dict(vision_mode="crops", runtime="hf")),
    stage="vision",
    width=1654,
    height=2339,
    prompt_tokens=0,
    kv_len=0,
    new_tokens=1,
    batch=1,
)
def test_time_compiled_equals_numeric_and_closed_form(case, stage, **values):
    """``time_s``: every op pays for its launches exactly where it runs, in the compiled program,
    the numeric model and the closed form ``formula()`` gives (in the layout outputs); every
    family, runtime and vision mode (the request, at every batch: below)."""
    family, options = case
    m = load(family, options)
    kw = inputs_of(m, stage, **values)
    compiled = m.compile(stage, ("time_s",), hardware=TIME_HARDWARE)
    try:
        ref = m.evaluate(stage=stage, hardware=TIME_HARDWARE, **kw)["time_s"]
    except SymcostError as e:  # a size the family's processor refuses: refused compiled too
        assert str(e).startswith("--image:"), e
        with pytest.raises(SymcostError, match="--image:"):
            compiled(**kw)
        return
    got = compiled(**kw)["time_s"]
    assert float(got) == pytest.approx(ref, rel=1e-9, abs=1e-15)
    subs = {m.family.input(k).symbol: sp.Integer(v) for k, v in kw.items()}
    if m.uses_layout(stage):
        grid = m.tile_grid(*[kw[i.name] for i in m.layout.inputs])
        subs |= {o: sp.Integer(int(g)) for o, g in zip(m.layout.outputs, grid)}
    closed = _time_formula(family, tuple(sorted(options.items())), stage).xreplace(subs)
    assert float(closed) == pytest.approx(ref, rel=1e-9, abs=1e-15)


SERVED = [(f, r) for f in symcost.families() for r in _choices(f, "runtime")]


@pytest.mark.parametrize("family,runtime", SERVED)
def test_request_times_agree_at_every_batch(family, runtime):
    """The request runs every op of every stage: compiled = numeric for ``time_s`` and the
    serving latencies at batches 1..16 (an A4 page at 200 dpi)."""
    m = load(family, {"runtime": runtime})
    s = m.family.serving
    batches = np.arange(1, 17)
    kw = {**dict(zip(m.family.image, (1654, 2339))), s.prompt_tokens: 12, s.new_tokens: 7}
    got = m.compile(s.stage, ("time_s",), hardware=TIME_HARDWARE)(**kw, **{s.batch: batches})
    for k, batch in enumerate(batches):
        ref = m.evaluate(stage=s.stage, hardware=TIME_HARDWARE, **kw, **{s.batch: int(batch)})
        for name in TIMES:
            assert float(got[name][k]) == pytest.approx(ref[name], rel=1e-9, abs=1e-15), (name, batch)
