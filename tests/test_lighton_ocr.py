"""LightOnOCR proved against transformers' module: analytic (symcost's trees) vs measured, per component.

Every FLOP case goes through ``validation.lighton_ocr_compare.validate_case``, the function ``symcost
validate lighton-ocr`` calls: the measured side runs the real ``LightOnOcrForConditionalGeneration`` on the
meta device (built once per process), the analytic side reads ``symcost.load("lighton-ocr", ...)``. The
layout is checked against the processors' own code (the exhaustive grid is ``slow``).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import symcost  # noqa: E402
from derivations.lighton_ocr import resize_config  # noqa: E402
from derivations.lighton_ocr.layout import patch_sides  # noqa: E402
from symcost import SymcostError  # noqa: E402
from symcost.cli import main  # noqa: E402
from validation import lighton_ocr as lo  # noqa: E402
from validation.lighton_ocr_compare import grid_mismatches, validate_case, validate_params  # noqa: E402

# shared/field/README.md: LightOnOcrForConditionalGeneration built on meta from the Hub config, tied
STATED_PARAMS = {"total": 1_005_647_872, "vision_tower": 403_305_472, "projector": 6_292_480}
STATED_LANGUAGE_MODEL = 596_049_920  # embeddings (tied with lm_head), 28 layers, final norm


def load(**options):
    return symcost.load("lighton-ocr", **options)


def assert_all_match(case):
    bad = [r for r in case["rows"] if not r["ok"]]
    assert not bad, f"{case['title']}: {bad}"
    assert case["ok"] and len(case["rows"]) >= 10


@pytest.fixture(scope="module")
def hf():
    return load()


def test_import_does_not_load_torch():
    code = (
        "import sys, symcost, validation.lighton_ocr_compare as c\n"
        "m = symcost.load('lighton-ocr')\n"
        "c.validate_case(m, 'decode', 'torch', {'kv_len': 9}, check_only=True)\n"
        "m.evaluate(995, 1288, 'request', new_tokens=5)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- FLOPs on meta

# (W, H) -> 14-px patches across x down: a US Letter page at 1288 (no resize), the 150 dpi page (scaled
# down, 85 patches: the merger drops a column), the smallest image the model runs (2 x 2 patches), an
# odd 3 x 3 grid (1 token), an extreme aspect ratio (110 x 3), the edge plus one px (float scale)
VISION_SIZES = [
    ((995, 1288), (72, 92)),
    ((1275, 1650), (85, 110)),
    ((15, 15), (2, 2)),
    ((30, 30), (3, 3)),
    ((4096, 100), (110, 3)),
    ((1541, 1541), (110, 110)),
]


@pytest.mark.parametrize("size,grid", VISION_SIZES, ids=lambda x: str(x))
def test_vision_shapes(hf, size, grid):
    case = validate_case(hf, "vision", "torch", {"width": size[0], "height": size[1]})
    assert_all_match(case)
    got = case["measured"]
    assert (got["w_patches"], got["h_patches"]) == grid
    assert got["image_features"] == got["image_tokens"] == (grid[0] // 2) * (grid[1] // 2)


def test_vision_batch_is_one_masked_sequence(hf):
    """Three images run as one sequence of 3N patches under a block-diagonal mask: SDPA counts the whole
    (3N)^2 square (9 x one image's), every linear layer 3 x."""
    one = validate_case(hf, "vision", "torch", {"width": 640, "height": 480})
    three = validate_case(hf, "vision", "torch", {"width": 640, "height": 480, "batch": 3})
    assert_all_match(three)
    a, b = one["measured"], three["measured"]
    assert b["layer0_attn_core"] == 9 * a["layer0_attn_core"] > 0
    assert (b["layer0_mlp"], b["proj_total"]) == (3 * a["layer0_mlp"], 3 * a["proj_total"])
    ootb = validate_case(hf, "vision", "torch-cpu", {"width": 640, "height": 480})
    assert_all_match(ootb)
    assert ootb["measured"]["layer0_attn_core"] == 0


@pytest.mark.parametrize("logits,batch", [("all", 1), ("last", 2)])
def test_prefill(logits, batch):
    point = {"width": 995, "height": 1288, "prompt_tokens": 12, "batch": batch}
    case = validate_case(load(logits=logits), "prefill", "torch", point)
    assert_all_match(case)
    got = case["measured"]
    assert got["prefill_tokens"] == case["s_new"] == 12 + 1656
    one = 2 * 1024 * 151936  # lm_head per row
    assert got["lm_head"] == batch * (got["prefill_tokens"] if logits == "all" else 1) * one


def test_prefill_eager():
    point = {"width": 300, "height": 200, "prompt_tokens": 5}
    assert_all_match(validate_case(load(attention="eager"), "prefill", "torch", point))


@pytest.mark.parametrize("kv_len,batch", [(0, 1), (8191, 1), (1000, 4)])
def test_decode(hf, kv_len, batch):
    case = validate_case(hf, "decode", "torch", {"kv_len": kv_len, "batch": batch})
    assert_all_match(case)
    assert case["measured"]["L0_qk_norm"] == 0 and case["measured"]["L0_attn_core"] > 0


def test_parameters(hf):
    case = validate_params(hf)
    assert_all_match(case)
    got = case["measured"]
    assert {k: got[k] for k in STATED_PARAMS} == STATED_PARAMS
    assert got["total"] - got["vision_tower"] - got["projector"] == STATED_LANGUAGE_MODEL
    assert hf.parameters()["model"] == STATED_PARAMS["total"]
    assert load(runtime="vllm").parameters() == hf.parameters()


# --------------------------------------------------------------------------- image tokens and layout


@pytest.mark.parametrize("size", [(995, 1288), (1275, 1650), (30, 30), (1290, 600), (4096, 3000), (60, 15)])
@pytest.mark.parametrize("runtime", ["hf", "vllm"])
def test_image_tokens_are_what_the_processor_writes(size, runtime):
    """hf: LightOnOcrProcessor writes only image tokens; vllm: PixtralProcessor (what vLLM runs) writes a
    [IMG_BREAK] after every row but the last and one [IMG_END], which vLLM's LightOnOCR processor drops."""
    run = lo.run_processor(*size, runtime)
    r = load(runtime=runtime).evaluate(*size, "vision")
    assert run["resized"] == (14 * r["h_patches"], 14 * r["w_patches"]) == run["pixels"][2:]
    assert run["image_tokens"] == r["image_tokens"]
    rows = r["h_patches"] // 2
    assert (run["break_tokens"], run["end_tokens"]) == ((0, 0) if runtime == "hf" else (rows - 1, 1))


def test_the_runtimes_differ_on_a_letter_page():
    """The 200-dpi US Letter render LightOnOCR recommends (1540 px long): 1190 px is 85 patches of 14
    (hf: 42 merged columns) but 43 units of 28 under vLLM's processor."""
    assert load().evaluate(1275, 1650, "vision")["image_tokens"] == 2310
    assert load(runtime="vllm").evaluate(1275, 1650, "vision")["image_tokens"] == 2365


def test_layout_on_sampled_and_edge_sizes():
    """The rule (both runtimes) == the image processor's own function on 20,000 random sizes and every
    square and 1540-multiple edge case in [1, 4096], where the float scale-down decides."""
    rng = np.random.default_rng(0)
    sides = np.arange(1, 4097)
    pairs = np.concatenate(
        [
            rng.integers(1, 4097, (20_000, 2)),
            np.stack([sides, sides], 1),
            np.stack([sides, np.full_like(sides, 1540)], 1),
            np.stack([sides, np.full_like(sides, 1541)], 1),
            np.stack([3 * sides[:1365], 2 * sides[:1365]], 1),
        ]
    )
    size = lo.resize_function()
    want = np.array([size(int(h), int(w)) for w, h in pairs])  # (H', W') at patch 14
    for runtime in ("hf", "vllm"):
        cfg = resize_config(runtime)
        w_p, h_p = patch_sides(cfg, pairs[:, 0], pairs[:, 1])
        unit = cfg.unit
        assert (14 * w_p == -(-want[:, 1] // unit) * unit).all()
        assert (14 * h_p == -(-want[:, 0] // unit) * unit).all()


def test_grid_function_counts_mismatches(monkeypatch):
    """The grid comparison itself (the slow test's engine) on a small block, with and without a bug."""
    from derivations.lighton_ocr import layout

    widths, heights = np.arange(1, 200, 7), np.arange(1500, 1700, 3)
    got = grid_mismatches(widths, heights, processes=1)
    assert got["mismatches_hf"] == got["mismatches_vllm"] == 0 and got["pairs"] == 29 * 67
    w_r, h_r = layout.resized(resize_config("hf"), widths[:, None], heights[None, :])
    assert got["refused"] == np.count_nonzero((w_r == 0) | (h_r == 0)) > 0  # width 1 above 1540 px high
    right = layout.patch_sides

    def off_by_one_at_99(cfg, w, h):  # one patch too many on every 99-px-wide image
        w_p, h_p = right(cfg, w, h)
        return w_p + (w == 99), h_p

    monkeypatch.setattr(layout, "patch_sides", off_by_one_at_99)
    got = grid_mismatches(widths, heights, processes=1, show=3)
    assert got["mismatches_hf"] == got["mismatches_vllm"] == 67
    assert [(r, w, h) for r, w, h, _, _ in got["first"]] == [
        ("hf", 99, 1500),
        ("hf", 99, 1503),
        ("hf", 99, 1506),
    ] + [
        ("vllm", 99, 1500),
        ("vllm", 99, 1503),
        ("vllm", 99, 1506),
    ]


@pytest.mark.slow
def test_layout_exhaustive():
    """All 16.8 M (W, H) in [1, 4096]^2: the rule for hf and vllm == the image processor's own
    get_resize_output_image_size (patch 14, once per pair; vLLM's patch 28 by its own rounding of those)."""
    sides = range(1, 4097)
    got = grid_mismatches(sides, sides, processes=2)
    print(
        f"resize grid: {got['pairs']} pairs, mismatches hf {got['mismatches_hf']} vllm "
        f"{got['mismatches_vllm']}, {got['refused']} refused; symcost {got['analytic_s']:.1f} s, "
        f"processor {got['processor_s']:.1f} s"
    )
    assert got["pairs"] == 4096 * 4096
    assert got["mismatches_hf"] == got["mismatches_vllm"] == 0, got["first"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "size,runtime,what",
    [((1541, 1), "hf", "0-px side"), ((1, 5000), "vllm", "0-px side"), ((14, 500), "hf", "patch merger")],
)
def test_sizes_the_pipeline_refuses(size, runtime, what):
    """The processor raises on a side resized to 0 px; transformers' merger (unfold 2 x 2) raises on a
    side of one patch, which only 14-px rounding produces. The layout refuses both in one line."""
    with pytest.raises(SymcostError, match=f"^--image: {size[0]}x{size[1]} .*{what}"):
        load(runtime=runtime).evaluate(*size, "vision")
    if what == "0-px side":
        with pytest.raises(ValueError, match="Size must contain"):
            lo.run_processor(*size, runtime)
    else:
        assert lo.run_processor(*size, runtime)["image_tokens"] == 0
        with pytest.raises(RuntimeError, match="sliding blocks"):
            lo.measure_vision(14, 504)
        with pytest.raises(SymcostError, match="^--image: transformers' model refuses"):
            validate_case(load(), "vision", "torch", {"width": size[0], "height": size[1]}, check_only=True)


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
def test_validate_refusals(stage, counter, point, options, flag):
    with pytest.raises(SymcostError) as err:
        validate_case(load(**options), stage, counter, point, check_only=True)
    assert str(err.value).startswith(flag) and "\n" not in str(err.value)


def test_cli(capsys):
    assert main(["validate", "lighton-ocr", "--json", "--stage", "decode", "--kv-len", "77"]) == 0
    (case,) = json.loads(capsys.readouterr().out)
    assert_all_match(case)
    assert main(["eval", "lighton-ocr", "--image", "995x1288", "--stage", "vision", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["image_tokens"] == 1656 and rec["flops"] == rec["components"]["vision"] > 0
    assert main(["eval", "lighton-ocr", "--image", "1x5000"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --------------------------------------------------------------------------- the engine on this family


@pytest.mark.parametrize("runtime", ["hf", "vllm"])
def test_compiled_equals_evaluate_and_the_closed_form(runtime):
    """Compiled (the table of 111^2 patch grids, gathered) == Model.evaluate per point (vllm: every integer
    metric; hf: FLOPs, its full program is benchmarks/run.py's, checked there the same way), and the
    closed form of the request's FLOPs == both where the rule's float steps agree with their real-valued
    counterparts."""
    from symcost.metrics import INT_METRICS

    metrics = INT_METRICS if runtime == "vllm" else ("flops",)
    m = load(runtime=runtime)
    rng = np.random.default_rng(1)
    w, h = rng.integers(15, 4097, 300), rng.integers(15, 4097, 300)
    keep = np.minimum(*patch_sides(resize_config(runtime), w, h)) >= 2
    w, h = w[keep], h[keep]
    out = m.compile("request", list(metrics))(w, h, prompt_tokens=7, new_tokens=30)
    closed = m.formula("request", "flops", image=True)
    names = ("width", "height", "prompt_tokens", "new_tokens", "batch")
    W, H, P, N, B = (m.family.input(n).symbol for n in names)
    for k in range(0, len(w), 30):
        r = m.evaluate(int(w[k]), int(h[k]), "request", prompt_tokens=7, new_tokens=30)
        assert {x: int(out[x][k]) for x in metrics} == {x: r[x] for x in metrics}
        assert r["flops"] == closed.subs({W: int(w[k]), H: int(h[k]), P: 7, N: 30, B: 1})


# --------------------------------------------------------------------------- peak memory

MEMORY_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def cpu_model():
    """Real bf16 CPU tensors at the checkpoint's widths, 2 encoder and 2 decoder layers (uninitialised:
    a peak reads no values)."""
    return lo.build_model("cpu", vision_layers=2, text_layers=2, random=False)


def _reduced(runtime="hf"):
    """The family's trees at the measured depth (2 and 2 layers)."""
    from dataclasses import replace

    from derivations.common.vlm import execution
    from derivations.lighton_ocr import DECODER, HF, VISION

    ex, _ = execution(runtime, None, None, "expected", HF)
    vis = replace(VISION, encoder=replace(VISION.encoder, layers=2))
    return vis, replace(DECODER, layers=2, dense_layers=2), ex


def _check_memory(analytic: int, measured: int):
    print(f"analytic {analytic:,} B, measured {measured:,} B, ratio {analytic / measured:.4f}")
    assert abs(analytic - measured) <= MEMORY_TOLERANCE * measured


def _analytic_memory(stage, **p) -> int:
    from derivations.common.decoder import decode_step, decoder, next_token
    from derivations.lighton_ocr.vision import vision
    from symcost.dtypes import building, precision

    vis, dec, ex = _reduced()
    with building(precision("bf16")):
        if stage == "vision":
            patches, tokens = (
                (p["height"] // 14) * (p["width"] // 14),
                (p["height"] // 28) * (p["width"] // 28),
            )
            tree = vision(vis, p["batch"], patches, tokens, packed=False)
        elif stage == "prefill":
            b = p["batch"]
            tree = symcost.seq("prefill", decoder(dec, ex, b, p["seq"], 0), next_token(dec, ex, b, b))
        else:
            tree = decode_step(dec, ex, p["batch"], p["kv_len"])
        return int(tree.cost.peak_bytes)


@pytest.mark.parametrize(
    "stage,params",
    [
        ("vision", {"height": 70, "width": 98, "batch": 2}),  # 5 x 7 patches each: mask over 70 x 70
        ("prefill", {"seq": 64, "batch": 1}),
        ("decode", {"kv_len": 500, "batch": 4}),
        pytest.param("vision", {"height": 126, "width": 182, "batch": 1}, marks=pytest.mark.slow),
        pytest.param("prefill", {"seq": 300, "batch": 2}, marks=pytest.mark.slow),
        pytest.param("decode", {"kv_len": 2000, "batch": 8}, marks=pytest.mark.slow),
    ],
    ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}{v}" for k, v in x.items()),
)
def test_peak_memory(cpu_model, stage, params):
    """activation_bytes (the liveness walk) within 10 % of the live-tensor peak of transformers' code on
    real CPU tensors (validation.memory.LiveBytes); the cases land within 1 %."""
    _check_memory(_analytic_memory(stage, **params), lo.measure_memory(cpu_model, stage, **params))


def test_vision_peak_does_not_depend_on_depth():
    """The encoder's layers retain nothing, so the 2-layer tree's peak is the 24-layer stage's."""
    r = load().evaluate(98, 70, "vision", batch=2)
    assert r["activation_bytes"] == _analytic_memory("vision", height=70, width=98, batch=2)
