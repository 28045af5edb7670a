"""DeepSeek-OCR-2 measured on transformers' native module against validation/data/ocr2_*.csv (exact integers).

Runtime: about 45 s on 2 cores (meta runs take 0.1-3 s each; the real-CPU global view under FlopCounterMode
is ~25 s of it). fvcore's run of the same view is in test_ocr2_validate.py (one run serves both files' needs).
The CPU decoder check (bf16, the MoE layers sharing one set of weights: 1.5 GB, ~45 s) is marked slow
(`-m "not slow"` skips it).
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import validation  # noqa: E402
from validation import ocr2  # noqa: E402
from validation.ocr2_grid import processor_grid  # noqa: E402

# fvcore traces with torch.jit, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

DATA = Path(validation.__file__).parent / "data"
ROWS = list(csv.DictReader((DATA / "ocr2_flops.csv").read_text().splitlines()))
DECODE_ROWS = list(csv.DictReader((DATA / "ocr2_decode_flops.csv").read_text().splitlines()))
# Stated in docs/models.md (not in the CSVs).
STATED_TOTAL_PARAMS = 3_389_119_360
ARCHITECTURE_EXAMPLES = [((1024, 1024), (2, 2), 833), ((1280, 720), (2, 1), 545), ((700, 500), (1, 1), 257)]
VIEW_COLUMNS = ocr2.VIEW_COLUMNS


def ints(row, *keys):
    return [int(row[k]) for k in keys]


@pytest.fixture(scope="module")
def model():
    return ocr2.meta_model()


def test_import_does_not_load_torch():
    code = "import sys, validation.ocr2, validation.ocr2_grid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- parameters


def test_config_builds_the_real_model(model):
    from transformers import DeepseekOcr2Config

    got = ocr2.param_counts(model)
    assert got["total"] == STATED_TOTAL_PARAMS
    layers = model.config.text_config.mlp_layer_types
    parts = (
        got["sam"]
        + got["encoder"]
        + got["projector"]
        + got["view_separator"]
        + got["embed_tokens"]
        + layers.count("dense") * got["decoder_layer_dense"]
        + layers.count("sparse") * got["decoder_layer_moe"]
        + got["final_norm"]
        + got["lm_head"]
    )
    assert parts == got["total"]
    assert set(got) == set(ocr2.PARAM_COMPONENTS)
    # the JSON is a plain config.json: from_dict gives the same config
    assert DeepseekOcr2Config.from_dict(ocr2.load_config()).to_dict() == model.config.to_dict()


def test_class_defaults_are_not_the_model():
    """``DeepseekOcr2Config()`` builds, but the model from it does not (docs/models.md)."""
    from transformers import DeepseekOcr2Config, DeepseekOcr2ForConditionalGeneration

    with pytest.raises(TypeError), torch.device("meta"):
        DeepseekOcr2ForConditionalGeneration(DeepseekOcr2Config())


# --------------------------------------------------------------------------- vision


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['W']}x{r['H']}")
def test_vision_equals_reference(row, model):
    n_crops = int(row["n_crops"])
    got = ocr2.measure_vision(n_crops, model=model)
    views = ["global"] + (["crops"] if n_crops else [])
    assert set(got) == {f"{v}_{c}" for v in views for c in VIEW_COLUMNS} | {"vision_total", "image_features"}
    assert got["image_features"] == int(row["image_tokens"])

    def total(column):
        return sum(got[f"{v}_{column}"] for v in views)

    assert got["vision_total"] == int(row["vision_flops"])
    assert total("sam_total") == int(row["vision_sam_flops"])
    assert total("encoder_total") == int(row["vision_encoder_flops"])
    assert total("proj_total") == int(row["projector_flops"])
    for v in views:
        c = {k: got[f"{v}_{k}"] for k in VIEW_COLUMNS}
        assert c["sam_total"] == sum(
            c[k]
            for k in (
                "sam_patch_embed",
                "sam_win_blocks",
                "sam_glob_blocks",
                "sam_neck",
                "sam_net2",
                "sam_net3",
            )
        )
        blocks = c["sam_win_blocks"] + c["sam_glob_blocks"]
        assert blocks == c["sam_linear"] + c["sam_relpos"] + c["sam_attn_core"]
        assert c["encoder_total"] == c["encoder_linear"] + c["encoder_attn_core"] + c["encoder_rope"]
        assert c["sam_norms"] == c["encoder_rope"] == 0  # FlopCounterMode counts neither


def test_tiles_are_one_batch_linear_in_n(model):
    """The crops columns (one call with the tiles minus one without) scale with the number of tiles, and
    the global view counts the same with or without tiles; a batch of images scales every column."""
    one, four = ocr2.measure_vision(1, model=model), ocr2.measure_vision(4, model=model)
    assert all(four[f"crops_{c}"] == 4 * one[f"crops_{c}"] for c in VIEW_COLUMNS)
    assert all(four[f"global_{c}"] == one[f"global_{c}"] for c in VIEW_COLUMNS)
    assert one["image_features"] == ocr2.tokens_for_crops(1)
    assert four["image_features"] == ocr2.tokens_for_crops(4)
    three = ocr2.measure_vision(1, model=model, batch=3)
    assert {k: v for k, v in three.items() if k != "image_features"} == {
        k: 3 * v for k, v in one.items() if k != "image_features"
    }
    assert three["image_features"] == one["image_features"]


# --------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"S{r['S']}")
def test_prefill_equals_reference(row, model):
    image_tokens, prompt, s = ints(row, "image_tokens", "prompt_tokens", "S")
    assert s == image_tokens + prompt
    got = ocr2.measure_decoder(s, 0, logits="all", model=model)
    assert got["total_full_depth"] == int(row["prefill_flops_logits_all_positions"])
    assert got["lm_head"] == int(row["prefill_lm_head_flops"])
    assert got["other_outside_layers_and_lm_head"] == 0
    assert got["moe_layers_min"] == got["moe_layers_max"] == got["moe_L1_total"]
    n_moe = model.config.text_config.mlp_layer_types.count("sparse")
    assert got["total_full_depth"] == got["dense_L0_total"] + n_moe * got["moe_L1_total"] + got["lm_head"]


@pytest.mark.parametrize("row", ROWS[:1], ids=lambda r: f"S{r['S']}")
def test_prefill_last_logits_only_changes_lm_head(row, model):
    s = int(row["S"])
    every, last = (ocr2.measure_decoder(s, 0, logits=k, model=model) for k in ("all", "last"))
    one = ocr2.measure_decoder(1, 0, model=model)
    assert last["lm_head"] == one["lm_head"] and every["lm_head"] == s * one["lm_head"]
    assert {k: v for k, v in every.items() if k not in ("lm_head", "total_full_depth")} == {
        k: v for k, v in last.items() if k not in ("lm_head", "total_full_depth")
    }
    assert every["total_full_depth"] - every["lm_head"] == last["total_full_depth"] - last["lm_head"]


@pytest.mark.parametrize("row", DECODE_ROWS, ids=lambda r: f"L{r['L_cached']}")
def test_decode_equals_reference(row, model):
    l_cached, new = ints(row, "L_cached", "new_tokens")
    got = ocr2.measure_decoder(new, l_cached, model=model)
    assert got["total_full_depth"] == int(row["decode_flops"])
    assert got["lm_head"] == int(row["lm_head_flops"])
    assert ocr2.measure_decoder(new, l_cached, logits="last", model=model) == got  # one position either way


def test_routed_experts_are_counted(model):
    """``_grouped_mm`` (6 rows per token) is counted: out of the box (torch-cpu) moe_routed is 0."""
    a, b = (ocr2.measure_decoder(s, 0, model=model) for s in (1, 2))
    assert a["moe_L1_moe_routed"] > 0 and b["moe_L1_moe_routed"] == 2 * a["moe_L1_moe_routed"]
    assert ocr2.measure_decoder(1, 0, "torch-cpu", model=model)["moe_L1_moe_routed"] == 0


def test_decoder_batch_and_attention(model):
    """A batch of sequences scales every column; eager attention counts what SDPA counts (its two matmuls
    are the SDPA formula's MACs) and leaves the model on SDPA."""
    one, two = (ocr2.measure_decoder(5, 9, model=model, batch=b) for b in (1, 2))
    assert two == {k: 2 * v for k, v in one.items()}
    assert ocr2.measure_decoder(5, 9, model=model, attention="eager") == one
    assert model.config.text_config._attn_implementation == "sdpa"
    assert ocr2.measure_decoder(5, 9, "torch-cpu", model=model)["dense_L0_attn_core"] == 0  # CPU SDPA: 0
    assert (
        ocr2.measure_decoder(5, 9, "torch-cpu", model=model, attention="eager")["dense_L0_attn_core"]
        == one["dense_L0_attn_core"]
    )


def test_bad_arguments_are_refused(model):
    with pytest.raises(ValueError):
        ocr2.measure_decoder(1, 0, "ptflops", model=model)
    with pytest.raises(ValueError):
        ocr2.measure_decoder(1, 0, logits="first", model=model)
    with pytest.raises(ValueError):
        ocr2.measure_decoder(1, 4, "fvcore", model=model)
    with pytest.raises(ValueError):
        ocr2.measure_vision(0, "ptflops", model=model)
    with pytest.raises(ValueError):
        ocr2.measure_decoder(1, 0, attention="flash", model=model)
    with pytest.raises(ValueError):
        ocr2.measure_vision(-1, model=model)


def test_unattributed_counts_raise():
    with pytest.raises(KeyError):
        ocr2._vision_columns("model.vision_tower.vision_encoder", "mm", set())
    with pytest.raises(KeyError):
        ocr2._vision_columns("model.vision_tower.sam_encoder.layers.0.attn.qkv", "convolution", set())
    with pytest.raises(KeyError):
        ocr2._vision_columns("model.language_model.layers.0", "mm", set())
    with pytest.raises(KeyError):
        ocr2._decoder_columns("model.language_model.layers.0.mlp", "convolution", {0})


# --------------------------------------------------------------------------- tiles and image tokens


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['W']}x{r['H']}")
def test_tiles_and_image_tokens_equal_reference(row):
    w, h, cols, rows, n_crops, tokens = ints(row, "W", "H", "w_tiles", "h_tiles", "n_crops", "image_tokens")
    assert ocr2.tile_grid(w, h) == (cols, rows)
    run = ocr2.run_processor(w, h)
    assert run["image_tokens"] == tokens == ocr2.image_tokens(w, h)
    assert run["num_local_patches"] == n_crops


@pytest.mark.parametrize("size,grid,tokens", ARCHITECTURE_EXAMPLES, ids=lambda x: str(x))
def test_architecture_examples(size, grid, tokens):
    assert ocr2.tile_grid(*size) == grid
    assert ocr2.image_tokens(*size) == tokens


@pytest.mark.parametrize(
    "size",
    [
        (768, 768),
        (769, 768),
        (768, 769),
        (769, 40),
        (40, 769),
        (1536, 768),
        (2304, 768),
        (768, 4608),
        (4096, 700),
        (1000, 999),
        (3000, 64),
        (4096, 4096),
    ],
)
def test_tile_grid_is_what_the_processor_cuts(size):
    """tile_grid against a real processor run: tile count, tile size, 1024 global view."""
    cols, rows = ocr2.tile_grid(*size)
    run = ocr2.run_processor(*size)
    global_px, tile_px = ocr2._pixel_sizes()
    n = 0 if (cols, rows) == (1, 1) else cols * rows
    assert run["num_local_patches"] == n
    assert run["local_shape"] == ((n, 3, tile_px, tile_px) if n else None)
    assert run["global_shape"] == (3, global_px, global_px)


def test_processor_grid_equals_tile_grid():
    widths, heights = range(1, 4097, 61), range(1, 4097, 53)
    cols, rows = processor_grid(widths, heights, processes=1)
    assert all(
        (cols[i, j], rows[i, j]) == ocr2.tile_grid(w, h)
        for i, w in enumerate(widths)
        for j, h in enumerate(heights)
    )
    assert (processor_grid(widths[:7], heights, processes=2)[0] == cols[:7]).all()


def test_crop_to_patches_false_writes_tokens_the_model_does_not_produce(model):
    """transformers 5.23: no tiles, the global view is resized to the tile size (768 -> 144 queries + the
    separator), but replace_image_token still counts 1024's 256 queries, so the forward's placeholder check
    fails."""
    run = ocr2.run_processor(1280, 720, crop_to_patches=False)
    _, tile_px = ocr2._pixel_sizes()
    assert run["num_local_patches"] == 0 and run["local_shape"] is None
    assert run["global_shape"] == (3, tile_px, tile_px)
    assert run["image_tokens"] == ocr2.image_tokens(700, 500)  # what a 1024 global view gets
    p = model.model.multi_modal_projector.weight
    with torch.no_grad():
        features = model.model.get_image_features(
            torch.zeros(1, *run["global_shape"], device="meta", dtype=p.dtype)
        ).pooler_output[0]
    queries = model.model.vision_tower.query_768_resolution.num_embeddings
    assert features.shape[0] == queries + 1 != run["image_tokens"]
    ids = torch.full((1, run["image_tokens"]), model.config.image_token_id)
    embeds = torch.zeros(1, run["image_tokens"], p.shape[0], device="meta", dtype=p.dtype)
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model.model.get_placeholder_mask(ids, embeds, features)


# --------------------------------------------------------------------------- real CPU tensors, fvcore


@pytest.fixture(scope="module")
def vision_cpu():
    """Random bf16 vision tower + projector + separator on CPU (the rest of the model stays on meta)."""
    return ocr2.build_model(
        "cpu", real=("model.vision_tower", "model.multi_modal_projector", "model.view_separator")
    )


@pytest.mark.slow  # real bf16 tensors on the CPU: minutes on AVX2 machines
def test_vision_real_cpu_run_equals_meta_run(vision_cpu, model):
    assert ocr2.measure_vision(0, model=vision_cpu) == ocr2.measure_vision(0, model=model)


@pytest.mark.slow  # the MoE layers share one set of weights: 1.5 GB, ~30-45 s
def test_decoder_real_cpu_and_fvcore(model):
    pytest.importorskip("fvcore")
    cpu = ocr2.build_model("cpu", real=("model.language_model", "lm_head"), shared_layers=True)
    s = int(ROWS[0]["prompt_tokens"])
    meta = ocr2.measure_decoder(s, 0, model=model)
    assert ocr2.measure_decoder(s, 0, model=cpu) == meta
    assert ocr2.measure_decoder(3, 5, logits="last", model=cpu) == ocr2.measure_decoder(
        3, 5, logits="last", model=model
    )
    fv = ocr2.measure_decoder(s, 0, "fvcore", model=cpu)
    assert {k: 2 * v for k, v in fv.items()} == meta
