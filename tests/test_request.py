"""The whole request: parameters, KV cache, stage sums, attention variants, time."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost
from derivations.common.decoder import activated_params_per_token
from derivations.common.vlm import STAGE_NAMES
from derivations.deepseek_ocr import DECODER, VENDOR

PARAMS = json.load(
    open(__import__("pathlib").Path(__file__).resolve().parents[1] / "validation" / "data" / "params.json")
)["params"]


@pytest.fixture(scope="module")
def gundam():
    return symcost.load("deepseek-ocr", preset="gundam")


def test_parameters_per_component(gundam):
    p = gundam.parameters()
    assert p["model"] == PARAMS["model_total_full_depth"] == 3_336_106_240
    assert p["model.vision"] == PARAMS["vision_total"]
    assert p["model.vision.sam"] == PARAMS["sam"]["total"]
    assert p["model.vision.clip"] == PARAMS["clip"]["total"]
    assert (
        p["model.vision.clip.embeddings.patch_conv_unused"] == PARAMS["clip"]["patch_embedding_conv_unused"]
    )
    assert p["model.vision.projector"] == PARAMS["projector"]["total"]
    assert p["model.decoder.layer0"] == PARAMS["decoder_layer_dense"]["total"]
    assert p["model.decoder.moe_layers"] == 11 * PARAMS["decoder_layer_moe"]["total"]
    assert p["model.decoder.moe_layers.mlp.routed"] == 11 * PARAMS["decoder_layer_moe"]["routed_experts"]
    assert p["model.decoder.embed_tokens"] == PARAMS["embed_tokens"]
    assert p["model.decoder.lm_head"] == PARAMS["lm_head"]
    assert p["model.decoder"] == PARAMS["language_model_total_full_depth"]
    activated = PARAMS["activated_lm_params_per_token_full_depth_excl_embed"]
    assert activated_params_per_token(DECODER, VENDOR) == activated


def test_kv_bytes_by_hand(gundam):
    # 1280x720 Gundam: 483 image tokens + 17 prompt tokens = 500 cached after prefill.
    # per token: 2 (K, V) x 12 layers x 10 heads x 128 dims = 30,720 values; bf16 = 2 bytes.
    r = gundam.evaluate(1280, 720, "prefill", prompt_tokens=17, batch=3)
    assert r["kv_bytes"] == 500 * 30_720 * 2 * 3 == 92_160_000
    r = gundam.evaluate(1280, 720, "request", prompt_tokens=17, new_tokens=100, kv_dtype="fp8")
    assert r["kv_bytes"] == (500 + 99) * 30_720 * 1
    assert gundam.evaluate(stage="decode", kv_len=0)["kv_bytes"] == 30_720 * 2
    # memory = weights + the input cache + activations (which hold only the cache's growth)
    d = gundam.evaluate(stage="decode", kv_len=4096, batch=8)
    assert d["memory_bytes"] == d["weight_bytes"] + 4096 * 30_720 * 2 * 8 + d["activation_bytes"]
    assert d["activation_bytes"] < 4096 * 30_720 * 2 * 8 / 12  # less than one layer's K and V


@settings(max_examples=max(60, settings.default.max_examples))
@given(
    w=st.integers(1, 6000),
    h=st.integers(1, 6000),
    prompt=st.integers(0, 300),
    new=st.integers(1, 12),
    batch=st.integers(1, 4),
    runtime=st.sampled_from(["hf", "vllm"]),
    attention=st.sampled_from([None, "sdpa"]),
)
def test_request_is_vision_plus_prefill_plus_decode_steps(w, h, prompt, new, batch, runtime, attention):
    """Brute force: the request equals its stages, decode steps evaluated one by one; the
    one next-token pick after prefill is the only extra."""
    if runtime == "vllm" and attention == "sdpa":
        attention = None
    m = _model(runtime, attention)
    kw = dict(batch=batch)
    request = m.evaluate(w, h, "request", prompt_tokens=prompt, new_tokens=new, **kw)
    parts = [m.evaluate(w, h, "vision", **kw), m.evaluate(w, h, "prefill", prompt_tokens=prompt, **kw)]
    s0 = parts[1]["prefill_tokens"]
    parts += [m.evaluate(stage="decode", kv_len=s0 + t - 1, **kw) for t in range(1, new)]
    for metric in ("flops", "macs"):
        assert request[metric] == sum(p[metric] for p in parts), metric
    next_token = batch * DECODER.vocab * (2 + 4)  # read the bf16 logits, write fp32
    if runtime == "hf":  # transformers 4.46's generate() first clones all the fp32 logits
        next_token += 2 * 4 * batch * s0 * DECODER.vocab
    assert request["io_bytes"] == sum(p["io_bytes"] for p in parts) + next_token
    for metric in ("activation_bytes", "memory_bytes"):  # a request holds at least what a part does
        assert request[metric] >= max(p[metric] for p in parts), metric


_MODELS: dict = {}


def _model(runtime, attention):
    key = (runtime, attention)
    if key not in _MODELS:
        _MODELS[key] = symcost.load("deepseek-ocr", preset="gundam", runtime=runtime, attention=attention)
    return _MODELS[key]


@settings(max_examples=max(100, settings.default.max_examples))
@given(
    w=st.integers(1, 6000),
    h=st.integers(1, 6000),
    prompt=st.integers(0, 2000),
    extra=st.integers(1, 500),
    stage=st.sampled_from(["prefill", "request"]),
)
def test_prefill_monotone_in_prompt_length(gundam, w, h, prompt, extra, stage):
    a = gundam.evaluate(w, h, stage, prompt_tokens=prompt)
    b = gundam.evaluate(w, h, stage, prompt_tokens=prompt + extra)
    for metric in ("flops", "io_bytes", "kv_bytes", "activation_bytes"):
        assert a[metric] <= b[metric]
    assert a["flops"] < b["flops"]


def test_prefill_is_not_monotone_in_image_size(gundam):
    """NB: the vendor's tiler is not monotone: a wider image can get fewer tiles."""
    small = gundam.evaluate(641, 640, "prefill")
    wide = gundam.evaluate(1280, 640, "prefill")
    assert (small["n_crops"], wide["n_crops"]) == (4, 2)
    assert small["flops"] > wide["flops"]


@settings(max_examples=max(100, settings.default.max_examples))
@given(
    w=st.integers(1, 6000),
    h=st.integers(1, 6000),
    prompt=st.integers(0, 2000),
    kv=st.integers(0, 8000),
    new=st.integers(1, 50),
    batch=st.integers(1, 8),
    stage=st.sampled_from(STAGE_NAMES),
)
def test_fused_attention_never_moves_more_than_eager(w, h, prompt, kv, new, batch, stage):
    values = dict(prompt_tokens=prompt, kv_len=kv, new_tokens=new, batch=batch, width=w, height=h)
    eager, fused = _model("hf", "eager"), _model("hf", "sdpa")
    kw = {k: values[k] for k in (i.name for i in eager.stage_inputs(stage))}
    a, b = eager.evaluate(stage=stage, **kw), fused.evaluate(stage=stage, **kw)
    assert b["io_bytes"] <= a["io_bytes"]
    assert b["activation_bytes"] <= a["activation_bytes"]
    assert b["macs"] == a["macs"]  # same math; only traffic differs
    assert b["flops"] == a["flops"]  # torch counts SDPA as it counts the two matmuls


def test_roofline_time(gundam):
    r = gundam.evaluate(1280, 720, "request", prompt_tokens=10, new_tokens=200, hardware="h100-sxm")
    assert 0 < r["ttft_s"] < r["time_s"]
    assert r["time_s"] == pytest.approx(r["ttft_s"] + 199 * r["tpot_s"])
    # decode at batch 1 is memory bound: a step takes at least its bytes over the bandwidth
    step = gundam.evaluate(stage="decode", kv_len=500, hardware="h100-sxm")
    assert step["time_s"] >= step["io_bytes"] / 3350e9
    faster = gundam.evaluate(stage="decode", kv_len=500, hardware="h200")
    assert faster["time_s"] < step["time_s"]
    compiled = gundam.compile("request", ("flops",), hardware="h100-sxm")(
        1280, 720, prompt_tokens=10, new_tokens=200
    )
    for k in ("time_s", "ttft_s", "tpot_s"):
        assert float(compiled[k]) == pytest.approx(r[k], rel=1e-9)


def test_user_hardware_file(tmp_path, gundam):
    f = tmp_path / "hw.json"
    f.write_text(
        json.dumps(
            {
                "name": "toy",
                "matmul_tflops": {"bf16": 100},
                "vector_tflops": 10,
                "memory_gbps": 1000,
                "memory_gb": 16,
            }
        )
    )
    r = gundam.evaluate(stage="decode", hardware=str(f))
    assert r["time_s"] > gundam.evaluate(stage="decode", hardware="h100-sxm")["time_s"]
    f.write_text(
        json.dumps(
            {
                "name": "toy",
                "matmul_tflops": {"bf16": 100},
                "vector_tflops": 10,
                "memory_gbps": -1,
                "memory_gb": 16,
            }
        )
    )
    with pytest.raises(symcost.SymcostError, match="memory_gbps"):
        gundam.evaluate(stage="decode", hardware=str(f))
    f.write_text(
        json.dumps(
            {
                "name": "toy",
                "matmul_tflops": {"bf16": 1},
                "vector_tflops": 1,
                "memory_gbps": 1,
                "memory_gb": 1,
                "clock": 2,
            }
        )
    )
    with pytest.raises(symcost.SymcostError, match="unknown key 'clock'"):
        gundam.evaluate(stage="decode", hardware=str(f))
