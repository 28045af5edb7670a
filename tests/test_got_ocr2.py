"""GOT-OCR2 proved against transformers' module: analytic (symcost's trees) vs measured, per component.

Every FLOP case goes through ``validation.got_ocr2.validate_case``, the function ``symcost validate
got-ocr2`` calls: the measured side runs ``GotOcr2ForConditionalGeneration`` on the meta device (one
model, built once), the analytic side reads ``symcost.load("got-ocr2", ...)``. The exhaustive tile grid
and the fvcore runs (real CPU tensors, up to ~3 GB) are marked slow.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import symcost  # noqa: E402
from derivations.got_ocr2 import CANDIDATES, DECODER, PREPROCESSOR, PROCESSOR, VISION  # noqa: E402
from derivations.got_ocr2.vision import VISION_DEFAULTS, VisionConfig, tower  # noqa: E402
from symcost import SymcostError  # noqa: E402
from symcost.cli import main  # noqa: E402
from validation import got_ocr2 as got  # noqa: E402
from validation import got_ocr2_memory as gotmem  # noqa: E402
from validation.lifted import lifted  # noqa: E402

# fvcore traces with torch.jit, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

MEASURED_TOTAL_PARAMS = 560_528_640  # /work/shared/field/README.md: the meta-built count
MAX_SIDE = 4096


def load(**options):
    return symcost.load("got-ocr2", **options)


def assert_all_match(case, rows=10):
    bad = [r for r in case["rows"] if not r["ok"]]
    assert not bad, f"{case['title']}: {bad}"
    assert case["ok"] and len(case["rows"]) >= rows


# --------------------------------------------------------------------------- the config is the checkpoint


def test_config_defaults_are_transformers():
    """The vision defaults we fill the checkpoint's empty vision_config with are GotOcr2VisionConfig's,
    the processor defaults are the classes', and the decoder we read is the text model transformers
    builds from config.json."""
    from transformers import GotOcr2Processor, GotOcr2VisionConfig
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    defaults = GotOcr2VisionConfig().to_dict()
    assert {k: defaults[k] for k in VISION_DEFAULTS} == {
        k: (list(v) if isinstance(v, list) else v) for k, v in VISION_DEFAULTS.items()
    }
    ip = GotOcr2ImageProcessorPil.from_dict(PREPROCESSOR)
    assert (ip.min_patches, ip.max_patches, ip.crop_to_patches) == (
        PROCESSOR["min_patches"],
        PROCESSOR["max_patches"],
        False,
    )
    assert GotOcr2Processor.num_image_tokens == PROCESSOR["num_image_tokens"] == VISION.tokens_per_view
    text = got.hf_config().text_config
    assert (DECODER.hidden, DECODER.layers, DECODER.heads, DECODER.kv_heads, DECODER.head_dim) == (
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.num_key_value_heads,
        text.hidden_size // text.num_attention_heads,
    )
    assert (DECODER.dense_ff, DECODER.vocab, DECODER.tied_embeddings) == (
        text.intermediate_size,
        text.vocab_size,
        text.tie_word_embeddings,
    )
    assert not text.use_sliding_window and set(text.layer_types) == {"full_attention"}


def test_candidates_are_the_processors():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_all_supported_aspect_ratios

    assert list(CANDIDATES) == get_all_supported_aspect_ratios.__wrapped__(1, 12)


# --------------------------------------------------------------------------- FLOPs, live on meta

# global mode: one view whatever the size; crops: 2 tiles (+ thumbnail), the
# Letter page (3x4 + thumbnail), 12 tiles in a row, a tie ray (1:1 at 2 tiles' area is 2x2 only above
# it) and a 1-px side
VISION_POINTS = [
    ("global", (995, 1288), 1),
    ("crops", (2000, 1000), 3),
    ("crops", (995, 1288), 13),
    ("crops", (4096, 1), 13),
    ("crops", (1448, 1448), 1),
    ("crops", (1449, 1449), 5),
]


@pytest.mark.parametrize("mode,size,views", VISION_POINTS, ids=lambda x: str(x))
def test_vision_shapes(mode, size, views):
    case = got.validate_case(load(vision_mode=mode), "vision", "torch", {"width": size[0], "height": size[1]})
    assert_all_match(case)
    assert case["measured"]["n_crops"] + 1 == views
    assert case["measured"]["image_tokens"] == 256 * views


def test_vision_batch_and_torch_cpu():
    """Two images of 3 views in one call; the SAM has no SDPA, so torch-cpu counts vision alike."""
    point = {"width": 2000, "height": 1000, "batch": 2}
    case = got.validate_case(load(vision_mode="crops"), "vision", "torch", point)
    assert_all_match(case)
    cpu = got.validate_case(load(vision_mode="crops"), "vision", "torch-cpu", point)
    assert_all_match(cpu)
    assert cpu["measured"]["vision_total"] == case["measured"]["vision_total"]
    assert case["measured"]["sam_attn_core"] > 0 and case["measured"]["sam_relpos"] > 0


@pytest.mark.parametrize(
    "options,point",
    [
        ({"logits": "all"}, {"width": 995, "height": 1288, "prompt_tokens": 40}),
        ({"logits": "last"}, {"width": 995, "height": 1288, "prompt_tokens": 40}),
        (
            {"vision_mode": "crops", "attention": "eager"},
            {"width": 500, "height": 300, "prompt_tokens": 9, "batch": 3},
        ),
    ],
    ids=["all", "last", "crops-eager-batch3"],
)
def test_prefill(options, point):
    case = got.validate_case(load(**options), "prefill", "torch", point)
    assert_all_match(case)
    measured = case["measured"]
    assert measured["prefill_tokens"] == point["prompt_tokens"] + measured["image_tokens"]
    if options.get("logits") == "all":  # lm_head on every position: S times the last position's
        last = load().evaluate(995, 1288, stage="prefill", prompt_tokens=40)["components"]["prefill.lm_head"]
        assert measured["lm_head"] == measured["prefill_tokens"] * last


@pytest.mark.parametrize(
    "kv_len,batch,attention,counter",
    [(0, 1, "sdpa", "torch"), (1000, 1, "eager", "torch-cpu"), (8191, 4, "sdpa", "torch")],
)
def test_decode(kv_len, batch, attention, counter):
    case = got.validate_case(load(attention=attention), "decode", counter, {"kv_len": kv_len, "batch": batch})
    assert_all_match(case)


# --------------------------------------------------------------------------- parameters


def test_parameters_per_component():
    case = got.validate_params(load())
    assert_all_match(case)
    assert case["measured"]["total"] == load().parameters()["model"] == MEASURED_TOTAL_PARAMS
    assert case["measured"]["lm_head_untied"] == 0  # tied to the embedding


# --------------------------------------------------------------------------- tiles and image tokens


def test_tile_grid_on_the_tie_rays():
    """Every (k*p, k*q) in [1, 4096]^2 on the aspect ratios equidistant from two candidate grids, and on
    the candidates' own ratios (where equal ratios tie and the area decides), by the processor's scalar
    function."""
    model = load(vision_mode="crops")
    ratios = set(model.layout.midpoints) | {(c, r) for c, r in CANDIDATES}
    pairs = set()
    for m in ratios:
        p, q = (m.numerator, m.denominator) if not isinstance(m, tuple) else m
        pairs |= {(k * p, k * q) for k in range(1, MAX_SIDE // max(p, q) + 1)}
    pairs |= {(h, w) for w, h in pairs}
    w, h = np.array(sorted(pairs)).T
    cols, rows = model.tile_grid(w, h)
    assert len(pairs) > 10_000
    assert [got.tile_grid(a, b) for a, b in zip(w.tolist(), h.tolist())] == list(
        zip(cols.tolist(), rows.tolist())
    )


def test_lifted_canvas_equals_the_scalar_calls():
    """``validation.lifted`` runs the processor's function on arrays: the same answer as calling it on
    each pair (random pairs and the ratios 1:1 and 3:4 at every scale, where the area rule decides)."""
    fn, (tile, lo, hi) = got._canvas()
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.integers(1, 4097, 3000), np.arange(1, 4097), 3 * np.arange(1, 1366)])
    h = np.concatenate([rng.integers(1, 4097, 3000), np.arange(1, 4097), 4 * np.arange(1, 1366)])
    grid = lifted(fn, (h, w), tile, lo, hi)
    assert [tuple(g) for g in grid.tolist()] == [
        fn((b, a), tile, lo, hi) for a, b in zip(w.tolist(), h.tolist())
    ]


def test_lifted_refuses_what_it_cannot_run():
    with pytest.raises(TypeError):
        lifted(lambda x: 1 if x else 0, np.arange(3, dtype=np.int64))  # the truth of a number
    with pytest.raises(TypeError):
        lifted(lambda x: x * 2, np.arange(3, dtype=np.int64))  # a result that is still per point
    with pytest.raises(ValueError):
        lifted(lambda x: 0, np.array([2**53], dtype=np.int64))


def test_global_mode_is_one_view_everywhere():
    model = load()
    sides = np.array([1, 2, 1023, 1024, 1025, 4096, 65_535])
    cols, rows = model.tile_grid(sides[:, None], sides[None, :])
    assert (cols == 1).all() and (rows == 1).all()
    assert all(got.tile_grid(int(a), int(b), crop_to_patches=False) == (1, 1) for a in sides for b in sides)


@pytest.mark.slow
def test_tile_grid_exhaustive():
    """All 16.8 M (W, H) in [1, 4096]^2: the family's vectorised tile grid == the processor's own
    get_optimal_tiled_canvas (run on arrays by validation.lifted)."""
    sides = np.arange(1, MAX_SIDE + 1)
    result = got.grid_mismatches(load(vision_mode="crops"), sides, sides, columns=got.grid_columns)
    assert result["pairs"] == MAX_SIDE**2
    assert result["mismatches"] == 0, result["first"]


# one size per view count the sample covers: 1 (small, 1:1 below the 2x2 tie area), 3, 5, 7, 13, and
# the Letter page in both modes
TOKEN_SIZES = [("crops", (300, 300)), ("crops", (2100, 1000)), ("crops", (1500, 1500))]
TOKEN_SIZES += [("crops", (500, 300)), ("crops", (995, 1288)), ("global", (995, 1288)), ("global", (1, 1))]


@pytest.mark.parametrize("mode,size", TOKEN_SIZES, ids=lambda x: str(x))
def test_image_tokens_equal_what_the_processor_writes(mode, size):
    r = load(vision_mode=mode).evaluate(*size, "vision")
    run = got.run_processor(*size, crop_to_patches=mode == "crops")
    assert run["image_tokens"] == r["image_tokens"] == 256 * run["views"]
    assert run["views"] == r["n_crops"] + 1 and run["wrapped"]
    assert run["view_shape"] == (3, VISION.px, VISION.px)
    assert got._layout(*size, mode == "crops")["image_tokens"] == run["image_tokens"]


def test_image_tokens_by_the_processors_own_count_on_every_grid():
    """Every grid the tiler can pick, at its own aspect ratio: views and tokens by the image processor's
    get_number_of_image_patches and the processor's replace_image_token (no pixels)."""
    model = load(vision_mode="crops")
    for cols, rows in model.layout.outcomes.tolist():
        w, h = 1024 * cols, 1024 * rows
        r = model.evaluate(w, h, "vision")
        assert got._layout(w, h, True) == {k: r[k] for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens")}


# --------------------------------------------------------------------------- refusals and the CLI


@pytest.mark.parametrize(
    "stage,counter,point,options,flag",
    [
        ("decode", "fvcore", {"kv_len": 10}, {}, "--counter"),
        ("vision", "fvcore", {"width": 995, "height": 1288, "batch": 2}, {}, "--counter"),
        ("vision", "ptflops", {"width": 100, "height": 100}, {}, "--counter"),
        ("vision", "torch", {"width": 100, "height": 100}, {"runtime": "vllm"}, "--runtime"),
        ("decode", "torch", {"kv_len": 1}, {"attention": "flash"}, "--attention"),
        ("request", "torch", {"width": 100, "height": 100}, {}, "--stage"),
        ("decode", "torch", {"kv_len": 1, "width": 5}, {}, "width"),
    ],
)
def test_refusals(stage, counter, point, options, flag):
    with pytest.raises(SymcostError) as err:
        got.validate_case(load(**options), stage, counter, point, check_only=True)
    assert str(err.value).startswith(flag) and "\n" not in str(err.value)


def test_cli_validate(capsys):
    import json

    code = main(["validate", "got-ocr2", "--json", "--vision-mode", "crops", "--image", "995x1288"])
    (case,) = json.loads(capsys.readouterr().out)
    assert code == 0
    assert_all_match(case)


def test_eval_contract(capsys):
    """The issue's interface: ``symcost eval got-ocr2 --image 995x1288 --stage vision --json``."""
    import json

    assert main(["eval", "got-ocr2", "--image", "995x1288", "--stage", "vision", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["image_tokens"] == 256 and record["flops"] == record["components"]["vision"] > 0


# --------------------------------------------------------------------------- fvcore on real CPU tensors


@pytest.mark.slow
def test_fvcore_vision_all_columns_match():
    """fvcore on real fp32 tensors (its counts do not depend on the dtype) at 512-px views, two in one
    call (the 1024 view would need 5 GB): its layer_norm rule (blocks and neck: GotOcr2LayerNorm
    subclasses nn.LayerNorm), its matmul handle for the eager attention, its rounded einsums."""
    pytest.importorskip("fvcore")
    real = ("model.vision_tower", "model.multi_modal_projector")
    model = got.build_model("cpu", torch.float32, config=got.hf_config(image_size=512), real=real)
    measured = got.measure_vision(2, "fvcore", model=model)
    analytic = got.tower_columns(
        tower(VisionConfig.from_hf({"image_size": 512}, DECODER.hidden), 2), "fvcore"
    )
    assert {k: measured[k] for k in analytic} == analytic
    assert measured["sam_norms"] > 0 and measured["sam_relpos"] > 0 and measured["sam_attn_core"] > 0


@pytest.mark.slow
def test_fvcore_prefill_all_rows_match():
    pytest.importorskip("fvcore")
    point = {"width": 64, "height": 64, "prompt_tokens": 20}
    assert_all_match(got.validate_case(load(logits="all"), "prefill", "fvcore", point))


# --------------------------------------------------------------------------- peak memory

MEMORY_TOLERANCE = 0.10


def _memory_cases(device):
    return [
        pytest.param(n, marks=pytest.mark.slow) if device == "cpu" else n
        for n, case in gotmem.CASES.items()
        if case[1] == device
    ]


@pytest.mark.parametrize("name", _memory_cases("meta") + _memory_cases("cpu"))
def test_peak_memory_within_tolerance(name):
    """The family's liveness walk against LiveBytes on transformers' module (full size on meta; reduced,
    fp32, real tensors on CPU: slow, bf16 matmuls crawl on CPUs without AVX512-BF16)."""
    want, measured = gotmem.analytic(name), gotmem.measured(name)
    print(f"{name}: analytic {want:,} B, measured {measured:,} B, ratio {want / measured:.4f}")
    assert abs(want - measured) <= MEMORY_TOLERANCE * measured


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, case in gotmem.CASES.items() if case[1] == "cpu"])
def test_meta_allocates_what_cpu_does(name):
    """On the meta device the module makes every allocation a real CPU run makes, byte for byte."""
    assert gotmem.measured(name, device="meta") == gotmem.measured(name)


# --------------------------------------------------------------------------- every engine path


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", [{}, {"vision_mode": "crops", "runtime": "vllm"}], ids=["global-hf", "crops-vllm"]
)
def test_compiled_equals_sympy_and_numeric(options):
    """Every stage, every integer metric: compiled NumPy == the numeric model == the closed form with
    the layout rule substituted, at random points (fvcore: its rounded einsums included)."""
    import sympy as sp

    from derivations.common.vlm import STAGE_NAMES
    from symcost.metrics import INT_METRICS

    m = load(**options)
    rng = np.random.default_rng(1)
    pool = dict(
        width=rng.integers(1, 10_000, 8),
        height=rng.integers(1, 10_000, 8),
        prompt_tokens=rng.integers(0, 4000, 8),
        kv_len=rng.integers(0, 20_000, 8),
        new_tokens=rng.integers(1, 64, 8),
        batch=rng.integers(1, 16, 8),
    )
    for stage in STAGE_NAMES:
        names = [i.name for i in m.stage_inputs(stage)]
        got = m.compile(stage, INT_METRICS, "fvcore")(**{n: pool[n] for n in names})
        exprs = m.expressions(stage, "fvcore")
        for k in range(8):
            point = {n: int(pool[n][k]) for n in names}
            ref = m.evaluate(stage=stage, convention="fvcore", **point)
            subs = {m.family.input(n).symbol: sp.Integer(v) for n, v in point.items()}
            if m.uses_layout(stage):
                image = {i.symbol: subs[i.symbol] for i in m.layout.inputs}
                subs |= {o: e.xreplace(image) for o, e in zip(m.layout.outputs, m.layout.expressions)}
            for name in INT_METRICS:
                assert int(got[name][k]) == ref[name] == int(exprs[name].xreplace(subs)), (stage, name, point)
