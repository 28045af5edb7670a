"""The v1 reference model against the vendor measurements in validation/data (exact integers)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import validation  # noqa: E402
from validation.measure import measure_decoder, measure_vision  # noqa: E402
from validation.reference_model import (  # noqa: E402
    build_language_model,
    build_model,
    build_vision,
    param_counts,
)

# fvcore traces with torch.jit, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

DATA = Path(validation.__file__).parent / "data"
PARAMS = json.loads((DATA / "params.json").read_text())["params"]
VISION_ROWS = list(csv.DictReader((DATA / "vision_flops.csv").read_text().splitlines()))
DECODER_ROWS = list(csv.DictReader((DATA / "decoder_flops.csv").read_text().splitlines()))
# The components compared are the recorded data's own columns (its header), not the code's list.
DECODER_COLUMNS = [c for c in DECODER_ROWS[0] if c.startswith(("dense_L0_", "moe_L1_", "moe_layers_"))] + [
    "lm_head",
    "other_outside_layers_and_lm_head",
    "total_full_depth",
]
# The figures the brief states; params.json must carry the same.
TORCH_VISION_CASES = [r["case_id"] for r in VISION_ROWS if r["counter"] == "FlopCounterMode"]
STATED_PARAMS = {
    "sam": 95_569_152,
    "clip": 303_177_728,
    "projector": 2_622_720,
    "decoder_layer_dense": 32_852_480,
    "decoder_layer_moe": 233_720_320,
    "embed_tokens": 165_478_400,
    "lm_head": 165_478_400,
    "total": 3_336_106_240,
}


def vision_row(case_id, counter):
    return next(r for r in VISION_ROWS if r["case_id"] == case_id and r["counter"] == counter)


def decoder_row(s_new, l_past, counter):
    return next(
        r
        for r in DECODER_ROWS
        if (int(r["S_new"]), int(r["L_past"]), r["counter"]) == (s_new, l_past, counter)
    )


def vision_args(row):
    n_crops = int(row["n_crops"])
    return int(row["global_px"]), int(row["crop_px"]) if n_crops else None, n_crops


def expected_vision(row):
    views = ["global"] + (["crops"] if int(row["n_crops"]) else [])
    keys = [
        c for v in views for c in row if c.startswith(tuple(f"{v}_{m}_" for m in ("sam", "clip", "proj")))
    ]
    keys += ["vision_total", "vision_total_out_of_the_box"]
    return {k: int(row[k]) for k in keys}


def expected_decoder(row):
    return {k: int(row[k]) for k in DECODER_COLUMNS}


def test_import_does_not_load_torch():
    code = "import sys, validation.measure, validation.reference_model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parameter_counts_equal_params_json():
    p = PARAMS
    expected = {
        "sam": p["sam"]["total"],
        "clip": p["clip"]["total"],
        "projector": p["projector"]["total"],
        "image_newline": p["image_newline"],
        "view_seperator": p["view_seperator"],
        "embed_tokens": p["embed_tokens"],
        "decoder_layer_dense": p["decoder_layer_dense"]["total"],
        "decoder_layer_moe": p["decoder_layer_moe"]["total"],
        "final_norm": p["final_norm"],
        "lm_head": p["lm_head"],
        "total": p["model_total_full_depth"],
    }
    got = param_counts(build_model())
    assert got == expected
    assert {k: got[k] for k in STATED_PARAMS} == STATED_PARAMS


def test_sub_component_parameter_counts():
    model = build_model()
    sam, clip, layers = model.vision.sam, model.vision.clip, model.language.model.layers
    p_sam, p_clip = PARAMS["sam"], PARAMS["clip"]
    p_dense, p_moe = PARAMS["decoder_layer_dense"], PARAMS["decoder_layer_moe"]
    cases = {
        "sam.patch_embed": (sam.patch_embed, p_sam["patch_embed"]),
        "sam.neck": (sam.neck, p_sam["neck"]),
        "sam.net_2": (sam.proj.conv1, p_sam["net_2"]),
        "sam.net_3": (sam.proj.conv2, p_sam["net_3"]),
        "sam.block_windowed": (sam.layers[0], p_sam["block_windowed"]),
        "sam.block_global": (sam.layers[2], p_sam["block_global"]),
        "clip.embeddings": (clip.embeddings, p_clip["embeddings"]),
        "clip.patch_conv_unused": (clip.embeddings.patch_embedding, p_clip["patch_embedding_conv_unused"]),
        "clip.per_layer": (clip.encoder.layers[0], p_clip["per_layer"]),
        "dense.self_attn": (layers[0].self_attn, p_dense["self_attn"]),
        "dense.mlp": (layers[0].mlp, p_dense["mlp"]),
        "moe.gate": (layers[1].mlp.gate, p_moe["gate"]),
        "moe.routed_experts": (layers[1].mlp.experts, p_moe["routed_experts"]),
        "moe.shared_experts": (layers[1].mlp.shared_experts, p_moe["shared_experts"]),
    }
    got = {name: sum(q.numel() for q in module.parameters()) for name, (module, _) in cases.items()}
    assert got == {name: expected for name, (_, expected) in cases.items()}


@pytest.mark.parametrize("case_id", TORCH_VISION_CASES)
def test_vision_flopcountermode_on_meta_equals_reference(case_id):
    row = vision_row(case_id, "FlopCounterMode")
    assert measure_vision(*vision_args(row), "torch") == expected_vision(row)


@pytest.mark.parametrize("case_id", ["gundam_641x640", "tiny_1280x720"])
def test_vision_out_of_the_box_counts_no_attention(case_id):
    row = vision_row(case_id, "FlopCounterMode")
    got = measure_vision(*vision_args(row), "torch-cpu")
    expected = int(row["vision_total_out_of_the_box"])
    assert got["vision_total"] == got["vision_total_out_of_the_box"] == expected
    assert all(v == 0 for k, v in got.items() if k.endswith("attn_core"))


@pytest.mark.parametrize(
    "s_new,l_past",
    [(int(r["S_new"]), int(r["L_past"])) for r in DECODER_ROWS if r["counter"] == "FlopCounterMode"],
)
def test_decoder_flopcountermode_on_meta_equals_reference(s_new, l_past):
    expected = expected_decoder(decoder_row(s_new, l_past, "FlopCounterMode"))
    assert measure_decoder(s_new, l_past, "torch") == expected


def test_unknown_counter_is_refused():
    with pytest.raises(validation.ValidationError):
        measure_decoder(1, 0, "ptflops")
    with pytest.raises(validation.ValidationError):
        measure_vision(512, None, 0, "ptflops")


def test_fvcore_refuses_a_kv_cache():
    with pytest.raises(validation.ValidationError):
        measure_decoder(1, 4, "fvcore")


@pytest.fixture(scope="module")
def vision_cpu():
    """Random-weight fp32 vision tower on CPU (fvcore needs real tensors)."""
    return build_vision("cpu")


@pytest.fixture(scope="module")
def language_model_cpu():
    """Random-weight bf16 decoder (12 layers + lm_head) on CPU, the MoE layers sharing one set of
    weights (FLOPs depend on shapes): 1.5 GB instead of 6."""
    return build_language_model("cpu", torch.bfloat16, shared_layers=True)


def test_fvcore_tiny_equals_reference(vision_cpu):
    pytest.importorskip("fvcore")
    row = vision_row("tiny_1280x720", "fvcore")
    assert measure_vision(512, None, 0, "fvcore", model=vision_cpu) == expected_vision(row)


def test_fvcore_default_skips_sdpa(vision_cpu):
    pytest.importorskip("fvcore")
    row = vision_row("tiny_1280x720", "fvcore")
    got = measure_vision(512, None, 0, "fvcore-default", model=vision_cpu)
    assert got["vision_total"] == int(row["vision_total_out_of_the_box"])
    assert got["global_sam_attn_core"] == got["global_clip_attn_core"] == 0


def test_vision_real_cpu_run_equals_meta_run(vision_cpu):
    on_cpu = measure_vision(512, None, 0, "torch", model=vision_cpu)
    assert on_cpu == measure_vision(512, None, 0, "torch")


@pytest.mark.slow
def test_fvcore_decoder_prefill_one_token_equals_reference(language_model_cpu):
    pytest.importorskip("fvcore")
    got = measure_decoder(1, 0, "fvcore", model=language_model_cpu)
    assert got == expected_decoder(decoder_row(1, 0, "fvcore"))


@pytest.mark.slow
def test_decoder_real_cpu_run_equals_reference(language_model_cpu):
    got = measure_decoder(1, 0, "torch", model=language_model_cpu)
    assert got == expected_decoder(decoder_row(1, 0, "FlopCounterMode"))
