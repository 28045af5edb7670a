"""DeepSeek-OCR-2 proved against transformers' module: analytic (symcost's trees) vs measured, per component.

Every case goes through ``validation.ocr2_compare.validate_case``, the function ``symcost validate
deepseek-ocr2`` calls: the measured side runs the real module (meta device, or real CPU tensors for fvcore),
the analytic side reads ``symcost.load("deepseek-ocr2", ...)``; the reference CSV rows are checked against
the measured numbers as well.

Runtime: 90-130 s on 2 cores shared with other jobs: the exhaustive [1, 4096]^2 tile grid 24-37 s (the
processor's Python rule on 16.8 M pairs, over every core), the one fvcore run (a real bf16 global view on
CPU, shared with the fvcore-vs-FlopCounterMode checks) 8-35 s, ~50 meta-device cases 0.3-3 s each.
"""

import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import symcost  # noqa: E402
import validation  # noqa: E402
from symcost import SymcostError  # noqa: E402
from symcost.cli import main  # noqa: E402
from validation import ocr2  # noqa: E402
from validation.ocr2_compare import param_columns, validate_case, validate_params  # noqa: E402
from validation.ocr2_grid import grid_mismatches, processor_grid  # noqa: E402

# fvcore traces with torch.jit, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

DATA = Path(validation.__file__).parent / "data"
ROWS = list(csv.DictReader((DATA / "ocr2_flops.csv").read_text().splitlines()))
DECODE_ROWS = list(csv.DictReader((DATA / "ocr2_decode_flops.csv").read_text().splitlines()))
STATED_TOTAL_PARAMS = 3_389_119_360  # ARCHITECTURE.md
MAX_SIDE = 4096


@functools.cache
def _load(options: tuple):
    return symcost.load("deepseek-ocr2", **dict(options))


def load(**options):
    """One model per set of options, shared by the tests (its trees and programs are built once)."""
    return _load(tuple(sorted(options.items())))


def assert_all_match(case):
    bad = [r for r in case["rows"] if not r["ok"]]
    assert not bad, f"{case['title']}: {bad}"
    assert case["ok"] and len(case["rows"]) >= 20


def view_sum(measured, column):
    return sum(
        v for k, v in measured.items() if k.endswith(f"_{column}") and k.split("_")[0] in ("global", "crops")
    )


def test_import_does_not_load_torch():
    code = (
        "import sys, symcost, validation.ocr2_compare as c\n"
        "m = symcost.load('deepseek-ocr2')\n"
        "c.validate_case(m, 'decode', 'torch', {'kv_len': 9}, check_only=True)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the reference CSVs


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['W']}x{r['H']}")
def test_reference_vision_row(row):
    w, h = int(row["W"]), int(row["H"])
    case = validate_case(load(), "vision", "torch", {"width": w, "height": h})
    assert_all_match(case)
    got = case["measured"]
    assert (got["w_tiles"], got["h_tiles"], got["n_crops"], got["image_tokens"]) == tuple(
        int(row[k]) for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens")
    )
    assert got["vision_total"] == int(row["vision_flops"])
    assert view_sum(got, "sam_total") == int(row["vision_sam_flops"])
    assert view_sum(got, "encoder_total") == int(row["vision_encoder_flops"])
    assert view_sum(got, "proj_total") == int(row["projector_flops"])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"S{r['S']}")
def test_reference_prefill_row(row):
    point = {"width": int(row["W"]), "height": int(row["H"]), "prompt_tokens": int(row["prompt_tokens"])}
    case = validate_case(load(logits="all"), "prefill", "torch", point)
    assert_all_match(case)
    got = case["measured"]
    assert got["prefill_tokens"] == case["s_new"] == int(row["S"])
    assert got["total_full_depth"] == int(row["prefill_flops_logits_all_positions"])
    assert got["lm_head"] == int(row["prefill_lm_head_flops"])


@pytest.mark.parametrize("row", DECODE_ROWS, ids=lambda r: f"L{r['L_cached']}")
def test_reference_decode_row(row):
    assert int(row["new_tokens"]) == 1  # a decode step
    case = validate_case(load(), "decode", "torch", {"kv_len": int(row["L_cached"])})
    assert_all_match(case)
    assert case["measured"]["total_full_depth"] == int(row["decode_flops"])
    assert case["measured"]["lm_head"] == int(row["lm_head_flops"])


# --------------------------------------------------------------------------- shapes of our own, live on meta

# one size per tile count 0, 2, 3, 4, 5, 6 (the grid is the processor's; the test checks it is that count)
VISION_SIZES = [
    ((640, 480), 0),
    ((1600, 900), 2),
    ((2400, 800), 3),
    ((1500, 1500), 4),
    ((800, 4000), 5),
    ((3000, 2000), 6),
]


@pytest.mark.parametrize("size,n_crops", VISION_SIZES, ids=lambda x: str(x))
def test_vision_shapes(size, n_crops):
    case = validate_case(load(), "vision", "torch", {"width": size[0], "height": size[1]})
    assert_all_match(case)
    assert case["n_crops"] == case["measured"]["n_crops"] == n_crops
    assert any(r["component"].startswith("vision.crops.") for r in case["rows"]) == bool(n_crops)


def test_vision_batch_nocrop_and_torch_cpu():
    row = next(r for r in ROWS if (r["W"], r["H"]) == ("1280", "720"))
    case = validate_case(load(), "vision", "torch", {"width": 1280, "height": 720, "batch": 3})
    assert_all_match(case)
    assert case["measured"]["vision_total"] == 3 * int(row["vision_flops"])
    nocrop = validate_case(load(vision_mode="nocrop"), "vision", "torch", {"width": 3000, "height": 2000})
    assert_all_match(nocrop)
    assert nocrop["measured"]["n_crops"] == 0 and nocrop["measured"]["image_features"] == 257
    ootb = validate_case(load(), "vision", "torch-cpu", {"width": 1280, "height": 720})
    assert_all_match(ootb)
    assert ootb["measured"]["global_sam_attn_core"] == 0 < case["measured"]["global_sam_attn_core"]


PREFILL_POINTS = [(640, 480, 0), (1600, 900, 37), (2400, 800, 1), (3000, 2000, 500)]


@pytest.mark.parametrize("logits", ["all", "last"])
@pytest.mark.parametrize("w,h,p", PREFILL_POINTS, ids=lambda x: str(x))
def test_prefill_shapes(w, h, p, logits):
    point = {"width": w, "height": h, "prompt_tokens": p}
    case = validate_case(load(logits=logits), "prefill", "torch", point)
    assert_all_match(case)
    got = case["measured"]
    lm_rows = got["prefill_tokens"] if logits == "all" else 1
    one = validate_case(load(), "decode", "torch", {"kv_len": 0})["measured"]["lm_head"]
    assert got["lm_head"] == lm_rows * one


@pytest.mark.parametrize(
    "point,options",
    [
        ({"width": 1024, "height": 1024, "prompt_tokens": 12, "batch": 2}, {"logits": "all"}),
        ({"width": 1280, "height": 720, "prompt_tokens": 5}, {"attention": "eager"}),
        ({"width": 700, "height": 500, "prompt_tokens": 3}, {"vision_mode": "nocrop", "logits": "all"}),
    ],
    ids=["batch2", "eager", "nocrop"],
)
def test_prefill_options(point, options):
    assert_all_match(validate_case(load(**options), "prefill", "torch", point))


@pytest.mark.parametrize(
    "kv_len,batch,attention",
    [
        (0, 1, "sdpa"),
        (1, 1, "sdpa"),
        (777, 1, "sdpa"),
        (8191, 1, "sdpa"),
        (100_000, 1, "sdpa"),
        (1000, 4, "sdpa"),
        (300, 1, "eager"),
    ],
)
def test_decode_shapes(kv_len, batch, attention):
    case = validate_case(load(attention=attention), "decode", "torch", {"kv_len": kv_len, "batch": batch})
    assert_all_match(case)
    assert case["l_past"] == kv_len and case["s_new"] == 1


# --------------------------------------------------------------------------- fvcore on real CPU tensors


@pytest.fixture(scope="module")
def fvcore_case():
    pytest.importorskip("fvcore")
    return validate_case(load(), "vision", "fvcore", {"width": 500, "height": 300})


def _layer_norm_elements(model):
    """Elements each SAM LayerNorm normalises in one global view, split blocks / neck (hooks, meta run)."""
    seen = {"blocks": 0, "neck": 0}
    sam = model.model.vision_tower.sam_encoder
    hooks = []
    for name, m in sam.named_modules():
        if isinstance(m, torch.nn.LayerNorm):
            where = "neck" if name.startswith("neck") else "blocks"
            hooks.append(
                m.register_forward_hook(
                    lambda mod, inp, out, where=where: seen.__setitem__(where, seen[where] + inp[0].numel())
                )
            )
    global_px, _ = ocr2._pixel_sizes()
    pixels = torch.zeros(1, 3, global_px, global_px, device="meta", dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            model.model.vision_tower(pixels)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.slow  # real bf16 tensors on the CPU: minutes on AVX2 machines
def test_fvcore_all_rows_match(fvcore_case):
    """fvcore measured == the analytic ``fvcore`` convention on every row, the SAM neck's two
    LayerNorms included: transformers' OCR-2 neck uses nn.LayerNorm, which fvcore counts (5 per
    element), so the derivation marks them aten (DeepSeek-OCR's hand-written ones are not)."""
    assert_all_match(fvcore_case)
    neck = 5 * _layer_norm_elements(ocr2.meta_model())["neck"]
    assert fvcore_case["measured"]["global_sam_norms"] >= neck > 0
    assert fvcore_case["measured"]["global_sam_relpos"] > 0  # the einsum rounding rule is exercised


@pytest.mark.slow  # shares the real bf16 fvcore run above
def test_fvcore_against_flop_counter_mode(fvcore_case):
    """fvcore = FlopCounterMode / 2 per column, except its two conventions: layer_norm (5 per element,
    FlopCounterMode: 0) and the rel-pos einsums (numpy's einsum_path FLOP count, 4 significant digits)."""
    fv = fvcore_case["measured"]
    fc = validate_case(load(), "vision", "torch", {"width": 500, "height": 300})["measured"]
    norms = _layer_norm_elements(ocr2.meta_model())
    special = {
        "global_sam_total",
        "global_sam_win_blocks",
        "global_sam_glob_blocks",
        "global_sam_neck",
        "global_sam_relpos",
        "global_sam_norms",
        "vision_total",
    }
    halved = {k for k in fc if k.startswith("global_") or k == "vision_total"} - special
    assert {k: 2 * fv[k] for k in halved} == {k: fc[k] for k in halved}
    assert fv["global_sam_norms"] == 5 * (norms["blocks"] + norms["neck"])
    assert 2 * fv["global_sam_neck"] == fc["global_sam_neck"] + 2 * 5 * norms["neck"]
    assert abs(2 * fv["global_sam_relpos"] - fc["global_sam_relpos"]) < 1e-3 * fc["global_sam_relpos"]
    blocks = fv["global_sam_win_blocks"] + fv["global_sam_glob_blocks"]
    assert blocks == (
        fv["global_sam_linear"] + fv["global_sam_relpos"] + fv["global_sam_attn_core"] + 5 * norms["blocks"]
    )
    assert fv["vision_total"] == fv["global_sam_total"] + fv["global_encoder_total"] + fv["global_proj_total"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "stage,counter,point,options,flag",
    [
        ("decode", "fvcore", {"kv_len": 10}, {}, "--counter"),
        ("prefill", "fvcore", {"width": 100, "height": 100}, {}, "--counter"),  # 5.9 GB of real weights
        ("vision", "fvcore", {"width": 4000, "height": 4000, "batch": 8}, {}, "--counter"),
        ("prefill", "torch-cpu", {"width": 100, "height": 100}, {}, "--counter"),
        ("decode", "fvcore-default", {"kv_len": 1}, {}, "--counter"),
        ("vision", "ptflops", {"width": 100, "height": 100}, {}, "--counter"),
        ("vision", "torch", {"width": 100, "height": 100}, {"runtime": "vllm"}, "--runtime"),
        ("decode", "torch", {"kv_len": 1}, {"attention": "flash"}, "--attention"),
        ("request", "torch", {"width": 100, "height": 100}, {}, "--stage"),
        ("decode", "torch", {"kv_len": 1, "width": 5}, {}, "width"),
    ],
)
def test_refusals(stage, counter, point, options, flag):
    with pytest.raises(SymcostError) as err:
        validate_case(load(**options), stage, counter, point, check_only=True)
    message = str(err.value)
    assert message.startswith(flag) and "\n" not in message


def test_check_only_returns_nothing():
    assert validate_case(load(), "prefill", "torch", {"width": 9, "height": 9}, check_only=True) == {}


# --------------------------------------------------------------------------- the CLI


def run_cli(capsys, *argv):
    code = main(["validate", "deepseek-ocr2", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else []


@pytest.mark.parametrize(
    "argv",
    [
        ("--image", "769x768", "--image", "4096x1000"),
        ("--stage", "prefill", "--logits", "all", "--prompt-tokens", "12", "--image", "1024x1024"),
        ("--stage", "prefill", "--image", "640x480", "--batch", "2"),
        ("--stage", "decode", "--kv-len", "1000"),
        ("--counter", "torch-cpu", "--image", "1280x720"),
    ],
)
def test_cli_validates(capsys, argv):
    code, cases = run_cli(capsys, *argv)
    assert code == 0 and cases
    for case in cases:
        assert_all_match(case)


def test_cli_exit_1_on_a_difference(capsys, monkeypatch):
    real = ocr2.measure_decoder

    def off_by_one(*args, **kwargs):
        got = real(*args, **kwargs)
        return got | {"lm_head": got["lm_head"] + 1}

    monkeypatch.setattr(ocr2, "measure_decoder", off_by_one)
    code, (case,) = run_cli(capsys, "--stage", "decode", "--kv-len", "5")
    assert code == 1 and not case["ok"]
    assert [(r["component"], r["column"]) for r in case["rows"] if not r["ok"]] == [
        ("decode.decoder.lm_head", "lm_head")
    ]


def test_cli_refuses_in_one_line(capsys):
    assert main(["validate", "deepseek-ocr2", "--stage", "decode", "--counter", "fvcore"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--counter" in err


# --------------------------------------------------------------------------- parameters


def test_parameters_per_component():
    case = validate_params(load())
    assert_all_match(case)
    assert case["measured"]["total"] == param_columns(load())["total"] == STATED_TOTAL_PARAMS
    assert load().parameters()["model"] == STATED_TOTAL_PARAMS


# --------------------------------------------------------------------------- tile grid and image tokens


def test_tile_grid_on_the_tie_rays():
    """Every (k*p, k*q) in [1, 4096]^2 on the aspect ratios p/q equidistant from two candidate grids, where
    the processor's float tie-break (and its area rule) decides."""
    model = load()
    pairs = [
        (k * m.numerator, k * m.denominator)
        for m in model.layout.midpoints
        for k in range(1, MAX_SIDE // max(m.numerator, m.denominator) + 1)
    ]
    pairs += [(h, w) for w, h in pairs]
    w, h = np.array(pairs).T
    cols, rows = model.tile_grid(w, h)
    assert len(pairs) > 5000
    assert [ocr2.tile_grid(a, b) for a, b in pairs] == list(zip(cols.tolist(), rows.tolist()))


@pytest.mark.slow
def test_tile_grid_exhaustive():
    """All 16.8 M (W, H) in [1, 4096]^2: symcost's vectorised tile_grid == the processor's own rule
    (get_optimal_tiled_canvas behind the max(W, H) > 768 shortcut)."""
    sides = np.arange(1, MAX_SIDE + 1)
    got = grid_mismatches(load(), sides, sides)
    assert got["pairs"] == MAX_SIDE**2
    assert got["mismatches"] == 0, got["first"]


# every candidate grid at its own aspect ratio (768*c x 768*r), plus the shortcut's edges
TOKEN_SIZES = [(768 * c, 768 * r) for c in range(1, 7) for r in range(1, 7) if 2 <= c * r <= 6]
TOKEN_SIZES += [
    (1, 1),
    (768, 768),
    (769, 768),
    (768, 769),
    (769, 769),
    (769, 1),
    (1, 769),
    (2047, 1),
    (3, 2000),
    (500, 300),
    (1280, 720),
]


def test_image_tokens_sample_covers_every_grid():
    model = load()
    w, h = np.array(TOKEN_SIZES).T
    covered = set(zip(*(a.tolist() for a in model.tile_grid(w, h))))
    assert covered == {tuple(g) for g in model.layout.outcomes.tolist()}


@pytest.mark.parametrize("size", TOKEN_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_image_tokens_equal_what_the_processor_writes(size):
    r = load().evaluate(*size, "vision")
    run = ocr2.run_processor(*size)
    assert run["num_local_patches"] == r["n_crops"]
    assert run["image_tokens"] == r["image_tokens"] == ocr2.image_tokens(*size)
    assert ocr2.tile_grid(*size) == (r["w_tiles"], r["h_tiles"])
    assert ocr2.tokens_for_crops(run["num_local_patches"]) == run["image_tokens"]


@pytest.mark.parametrize("size", [(2048, 1), (1, 4096), (4096, 2)])
def test_processor_refuses_a_global_view_of_0_px(size):
    """The global view is resized to round(short * 1024 / long) px, 0 once long >= 2048 * short (round half
    to even), and the processor raises; validate says so in one line rather than costing it."""
    with pytest.raises(ValueError, match="Size must contain"):
        ocr2.run_processor(*size)
    with pytest.raises(SymcostError, match="^--image: transformers' processor refuses"):
        validate_case(load(), "vision", "torch", {"width": size[0], "height": size[1]}, check_only=True)


def test_processor_grid_is_process_count_independent():
    sides = list(range(700, 800)) + [4096]
    one, two = processor_grid(sides, sides, processes=1), processor_grid(sides, sides, processes=2)
    assert (one[0] == two[0]).all() and (one[1] == two[1]).all()
