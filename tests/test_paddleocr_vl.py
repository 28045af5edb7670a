"""PaddleOCR-VL proved against transformers 5.23's native PaddleOCRVLForConditionalGeneration.

Every FLOP case goes through ``validation.paddleocr_vl.validate_case`` (what ``symcost validate
paddleocr-vl`` calls): the module measured on the meta device with FlopCounterMode, per component,
against the family's trees; the image tokens against the processor run on blank images; the resize
rule against the processor's own smart_resize (a sample here, every (W, H) in [1, 4096]^2 in the slow
test); parameters against the module built on meta; peak memory against the live-tensor tracker on a
reduced-depth model of real CPU tensors (fp32 here, bf16 in the slow tests).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symcost
from symcost import SymcostError
from symcost.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from validation import paddleocr_vl as pv  # noqa: E402

CHECKPOINT_PARAMS = 905_601_648  # /work/shared/field/README.md: the checkpoint's separate lm_head
TOLERANCE = 0.10  # peak memory, modelled vs measured


def load(**options):
    return symcost.load("paddleocr-vl", **options)


def assert_all_match(case, at_least=10):
    bad = [r for r in case["rows"] if not r["ok"]]
    assert not bad, f"{case['title']}: {bad}"
    assert case["ok"] and len(case["rows"]) >= at_least


def test_import_does_not_load_torch():
    code = (
        "import sys, symcost, validation.paddleocr_vl as v\n"
        "m = symcost.load('paddleocr-vl')\n"
        "v.validate_case(m, 'decode', 'torch', {'kv_len': 9}, check_only=True)\n"
        "m.evaluate(995, 1288, 'request', new_tokens=3)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- FLOPs on meta

# every branch of smart_resize: both sides short (min-pixels), a short width at the 200 aspect limit,
# a round-half-even tie (406 = 14.5 x 28 -> 14), in range (a Letter page at 1288), max-pixels, and the
# 1.5 checkpoint's bounds; batch 2 packs two images in one tower call
VISION_CASES = [
    ((1, 1), {}, 1, 196),
    ((5, 1000), {}, 1, 200),
    ((406, 406), {}, 1, 196),
    ((995, 1288), {}, 1, 1656),
    ((1700, 2200), {}, 1, 3536),
    ((500, 300), {"preset": "paddleocr-vl-1.5"}, 2, 198),
]


@pytest.mark.parametrize("size,options,batch,tokens", VISION_CASES, ids=lambda x: str(x))
def test_vision(size, options, batch, tokens):
    point = {"width": size[0], "height": size[1], "batch": batch}
    case = pv.validate_case(load(**options), "vision", "torch", point)
    assert_all_match(case)
    got = case["measured"]
    assert got["image_tokens"] == got["image_features"] == tokens
    assert got["vision_total"] == got["tower_total"] + got["projector_total"] > 0


def test_vision_torch_cpu_counts_no_sdpa():
    case = pv.validate_case(load(), "vision", "torch-cpu", {"width": 300, "height": 500})
    assert_all_match(case)
    assert case["measured"]["encoder_attn_core"] == 0 < case["measured"]["encoder_attn_proj"]


@pytest.mark.parametrize("logits", ["all", "last"])
def test_prefill(logits):
    point = {"width": 995, "height": 1288, "prompt_tokens": 12}
    case = pv.validate_case(load(logits=logits), "prefill", "torch", point)
    assert_all_match(case)
    got = case["measured"]
    assert got["prefill_tokens"] == 1668
    vocab_row = 2 * 1024 * 103_424
    assert got["lm_head"] == (1668 if logits == "all" else 1) * vocab_row


@pytest.mark.parametrize(
    "kv_len,batch,attention", [(0, 1, "sdpa"), (1000, 1, "sdpa"), (8191, 4, "sdpa"), (300, 2, "eager")]
)
def test_decode(kv_len, batch, attention):
    case = pv.validate_case(load(attention=attention), "decode", "torch", {"kv_len": kv_len, "batch": batch})
    assert_all_match(case, at_least=9)
    assert case["measured"]["layer_min"] == case["measured"]["layer_max"]


def test_parameters_per_component():
    case = pv.validate_params(load())
    assert_all_match(case)
    assert case["measured"]["total"] == CHECKPOINT_PARAMS == load().parameters()["model"]


# --------------------------------------------------------------------------- refusals and the CLI


@pytest.mark.parametrize(
    "stage,counter,point,options,flag",
    [
        ("vision", "fvcore", {"width": 100, "height": 100}, {}, "--counter"),
        ("vision", "torch", {"width": 100, "height": 100}, {"runtime": "vllm"}, "--runtime"),
        ("decode", "torch", {"kv_len": 1}, {"attention": "flash"}, "--attention"),
        ("request", "torch", {"width": 100, "height": 100}, {}, "--stage"),
        ("vision", "torch", {"width": 1, "height": 5000}, {}, "--image"),
    ],
)
def test_validate_refuses_in_one_line(stage, counter, point, options, flag):
    with pytest.raises(SymcostError) as err:
        pv.validate_case(load(**options), stage, counter, point, check_only=True)
    assert str(err.value).startswith(flag) and "\n" not in str(err.value)


@pytest.mark.parametrize("size", [(1, 5000), (201, 1), (4096, 20), (27, 5432)])
def test_model_refuses_what_the_processor_refuses(size, capsys):
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        pv.processor_resize()(size[1], size[0])
    with pytest.raises(SymcostError, match=r"^--image: .*refuses more than 200$"):
        load().evaluate(*size)
    assert main(["eval", "paddleocr-vl", "--image", f"{size[0]}x{size[1]}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_eval_json_contract(capsys):
    assert main(["eval", "paddleocr-vl", "--image", "995x1288", "--stage", "vision", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["image_tokens"] == 1656 and (record["cols"], record["rows"]) == (36, 46)
    assert record["flops"] == record["components"]["vision"] > 0
    assert record["components"]["vision.tower"] + record["components"]["vision.projector"] == record["flops"]


# --------------------------------------------------------------------------- image tokens and the resize rule


# each branch, the small-side steps, ties, the 200 limit, and sizes near both pixel bounds
TOKEN_SIZES = [(1, 1), (27, 1), (1, 27), (28, 28), (5, 1000), (1000, 5), (406, 406), (434, 434), (995, 1288)]
TOKEN_SIZES += [(383, 384), (384, 384), (1680, 1680), (1681, 1681), (2200, 1700), (4000, 3000), (3, 600)]


@pytest.mark.parametrize("preset", ["paddleocr-vl", "paddleocr-vl-1.5"])
def test_image_tokens_equal_what_the_processor_writes(preset):
    model = load(preset=preset)
    for w, h in TOKEN_SIZES:
        run = pv.run_processor(w, h, preset)
        r = model.evaluate(w, h, "vision")
        assert run["grid_thw"] == (1, 2 * r["rows"], 2 * r["cols"]), (w, h)
        assert run["image_tokens"] == r["image_tokens"] == r["rows"] * r["cols"], (w, h)
        assert run["pixel_rows"] == 4 * r["image_tokens"]


def test_resize_on_a_sample_and_the_tie_rays():
    """Random sizes over the whole input range and every side of the form 28k + 14 (round's ties)
    against the processor's smart_resize, refusals included."""
    rng = np.random.default_rng(0)
    ties = np.arange(14, 4096, 28)
    widths = np.concatenate([rng.integers(1, 65_536, 300), ties[::9], [1, 2, 27, 28, 29]])
    heights = np.concatenate([rng.integers(1, 65_536, 300), ties[::7], [1, 2, 27, 28, 29]])
    for preset in ("paddleocr-vl", "paddleocr-vl-1.5"):
        got = pv.grid_mismatches(load(preset=preset), widths, heights, processes=1)
        assert got["mismatches"] == 0, got["first"]
        assert got["refused"] > 0


@pytest.mark.slow
def test_resize_exhaustive():
    """All 16.8 M (W, H) in [1, 4096]^2 at the checkpoint's bounds: the vectorised rule == the
    processor's smart_resize (refusals included), and every grid it gives lies in the layout's table
    of outcomes. (``python -m validation.paddleocr_vl grid`` runs the 1.5 preset's bounds as well.)"""
    model = load()
    sides = np.arange(1, 4097)
    got = pv.grid_mismatches(model, sides, sides)
    assert got["pairs"] == 4096**2 and got["refused"] == 79_840
    assert got["mismatches"] == 0, got["first"]
    for start in range(0, 4096, 512):  # in slabs: the rule's temporaries stay small
        w, h = np.broadcast_arrays(sides[start : start + 512, None], sides[None, :])
        accepted = (200 * w >= h) & (200 * h >= w)  # within 200:1 every image is accepted
        model.layout.codes(w[accepted], h[accepted])  # raises for a grid outside the table


def test_closed_form_equals_the_rule():
    model = load()
    (w, h), (cols, rows) = (i.symbol for i in model.layout.inputs), model.layout.expressions
    rng = np.random.default_rng(1)
    points = [(1, 1), (27, 1), (5, 1000), (1000, 5), (406, 406), (995, 1288), (1700, 2200), (3, 600)]
    points += [tuple(int(x) for x in p) for p in rng.integers(28, 8000, (8, 2))]
    for x, y in points:
        want = tuple(int(g) for g in model.tile_grid(x, y))
        assert (int(cols.subs({w: x, h: y})), int(rows.subs({w: x, h: y}))) == want, (x, y)


def test_table_gathers_exactly_and_plan_walks_the_ray():
    """The compiled request (a gather from the layout's table of grids) equals the numeric model per
    point; plan's largest image along the sweep's ray (every long side, the short one rounded) is the
    largest the compiled flops keep within the budget."""
    from symcost.plan import largest_image

    model = load()
    table = model.layout.outcomes
    assert len(table) == 30_060 and (table.prod(axis=1) <= 3600).all()
    assert model.layout.maxima == (3600, 3600)
    ev = model.compile("request", ["flops", "memory_bytes", "io_bytes"])
    rng = np.random.default_rng(2)
    w = rng.integers(1, 8193, 100)
    h = np.clip(rng.integers(1, 8193, 100), -(-w // 200), 200 * w)
    got = ev(w, h, prompt_tokens=7, new_tokens=5)
    for k in range(0, 100, 25):
        r = model.evaluate(int(w[k]), int(h[k]), "request", prompt_tokens=7, new_tokens=5)
        assert all(int(got[m][k]) == r[m] for m in ("flops", "memory_bytes", "io_bytes", "cols", "rows"))
    found = largest_image(model, "flops", 5e12, (3, 4), {"prompt_tokens": 0, "new_tokens": 1})
    long = np.arange(1, 16_385)  # the sweep's ray: every long side, the short one rounded
    short = np.maximum((2 * long * 3 + 4) // 8, 1)
    inside = np.maximum(long, short) <= 200 * np.minimum(long, short)  # what smart_resize accepts
    flops = ev(short[inside], long[inside], new_tokens=1)["flops"]
    best = int(long[inside][flops <= 5e12].max())
    assert (found["width"], found["height"]) == (int(short[best - 1]), best)


def test_runtimes_agree_on_flops_and_differ_in_batching():
    hf, vllm = load(), load(runtime="vllm")
    a = hf.evaluate(995, 1288, "vision", batch=3)
    b = vllm.evaluate(995, 1288, "vision", batch=3)
    assert a["flops"] == b["flops"] and a["image_tokens"] == b["image_tokens"]
    assert b["activation_bytes"] < a["activation_bytes"]  # vLLM: one image per tower call
    formula = hf.formula("vision", "flops", named=True)
    assert formula.free_symbols == {
        hf.family.input("batch").symbol,
        sp.Symbol("image_tokens", integer=True, positive=True),
    }


# --------------------------------------------------------------------------- peak memory


@pytest.fixture(scope="module")
def cpu_model():
    """A 2-layer vision tower and a 2-layer decoder of real fp32 CPU tensors (random weights)."""
    model = pv.build_model("cpu", torch.float32, vision_layers=2, text_layers=2)
    yield model
    del model


def check(analytic: int, measured: int):
    print(f"analytic {analytic:,} B, measured {measured:,} B, ratio {analytic / measured:.4f}")
    assert abs(analytic - measured) <= TOLERANCE * measured


def test_memory_vision(cpu_model):
    measured = pv.measure_memory("vision", rows=14, cols=16, model=cpu_model)  # 224 tokens: in range
    check(pv.analytic_memory("vision", width=16 * 28, height=14 * 28, dtype="fp32"), measured)


def test_memory_prefill_and_decode(cpu_model):
    measured = pv.measure_memory("prefill", s_new=300, model=cpu_model)
    check(pv.analytic_memory("prefill", s_new=300, layers=2, dtype="fp32"), measured)
    measured = pv.measure_memory("decode", batch=4, l_past=512, model=cpu_model)
    check(pv.analytic_memory("decode", batch=4, l_past=512, layers=2, dtype="fp32"), measured)


@pytest.mark.slow
def test_memory_bf16():
    """bf16, as served: the vision RoPE's fp32 copies of q and k set the tower's peak."""
    model = pv.build_model("cpu", torch.bfloat16, vision_layers=2, text_layers=2)
    measured = pv.measure_memory("vision", rows=14, cols=16, model=model)
    check(pv.analytic_memory("vision", width=16 * 28, height=14 * 28), measured)
    measured = pv.measure_memory("prefill", s_new=300, model=model)
    check(pv.analytic_memory("prefill", s_new=300, layers=2), measured)
