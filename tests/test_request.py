"""The whole request: parameters, KV cache, stage sums, attention variants, roofline time."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost
from derivations.deepseek_ocr.decoder import activated_params_per_token

PARAMS = json.load(open(__import__("pathlib").Path(__file__).resolve().parents[1]
                        / "validation" / "data" / "params.json"))["params"]


@pytest.fixture(scope="module")
def gundam():
    return symcost.load("deepseek-ocr", preset="gundam")


def test_parameters_per_component(gundam):
    p = gundam.parameters()
    assert p["model"] == PARAMS["model_total_full_depth"] == 3_336_106_240
    assert p["model.vision"] == PARAMS["vision_total"]
    assert p["model.vision.sam"] == PARAMS["sam"]["total"]
    assert p["model.vision.clip"] == PARAMS["clip"]["total"]
    assert p["model.vision.clip.embeddings.patch_conv_unused"] == \
        PARAMS["clip"]["patch_embedding_conv_unused"]
    assert p["model.vision.projector"] == PARAMS["projector"]["total"]
    assert p["model.decoder.layer0"] == PARAMS["decoder_layer_dense"]["total"]
    assert p["model.decoder.moe_layers"] == 11 * PARAMS["decoder_layer_moe"]["total"]
    assert p["model.decoder.moe_layers.mlp.routed"] == 11 * PARAMS["decoder_layer_moe"]["routed_experts"]
    assert p["model.decoder.embed_tokens"] == PARAMS["embed_tokens"]
    assert p["model.decoder.lm_head"] == PARAMS["lm_head"]
    assert p["model.decoder"] == PARAMS["language_model_total_full_depth"]
    assert activated_params_per_token() == PARAMS["activated_lm_params_per_token_full_depth_excl_embed"]


def test_kv_bytes_by_hand(gundam):
    # 1280x720 Gundam: 483 image tokens + 17 prompt tokens = 500 cached after prefill.
    # per token: 2 (K, V) x 12 layers x 10 heads x 128 dims = 30,720 values; bf16 = 2 bytes.
    r = gundam.evaluate(1280, 720, "prefill", prompt_tokens=17, batch=3)
    assert r["kv_bytes"] == 500 * 30_720 * 2 * 3 == 92_160_000
    r = gundam.evaluate(1280, 720, "request", prompt_tokens=17, new_tokens=100, kv_dtype="fp8")
    assert r["kv_bytes"] == (500 + 99) * 30_720 * 1
    assert gundam.evaluate(1280, 720, "decode", kv_len=0)["kv_bytes"] == 30_720 * 2


@settings(max_examples=max(60, settings.default.max_examples))
@given(w=st.integers(1, 6000), h=st.integers(1, 6000), prompt=st.integers(0, 300),
       new=st.integers(1, 12), batch=st.integers(1, 4), attention=st.sampled_from(["eager", "flash"]))
def test_request_is_vision_plus_prefill_plus_decode_steps(gundam, w, h, prompt, new, batch,
                                                          attention):
    """Brute force: the request equals its stages, decode steps evaluated one by one."""
    def ev(stage, **kw):
        return gundam.evaluate(w, h, stage, prompt_tokens=prompt, batch=batch,
                               attention=attention, **kw)
    request = ev("request", new_tokens=new)
    parts = [ev("vision"), ev("prefill")]
    s0 = parts[1]["prefill_tokens"]
    parts += [ev("decode", kv_len=s0 + t - 1) for t in range(1, new)]
    for metric in ("flops", "macs", "io_bytes"):
        assert request[metric] == sum(p[metric] for p in parts), metric
    assert request["activation_bytes"] == max(p["activation_bytes"] for p in parts)


@settings(max_examples=max(100, settings.default.max_examples))
@given(w=st.integers(1, 6000), h=st.integers(1, 6000), prompt=st.integers(0, 2000),
       extra=st.integers(1, 500), stage=st.sampled_from(["prefill", "request"]))
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
@given(w=st.integers(1, 6000), h=st.integers(1, 6000), prompt=st.integers(0, 2000),
       kv=st.integers(0, 8000), new=st.integers(1, 50), batch=st.integers(1, 8),
       stage=st.sampled_from(["vision", "prefill", "decode", "request"]))
def test_flash_never_moves_more_than_eager(gundam, w, h, prompt, kv, new, batch, stage):
    kw = dict(prompt_tokens=prompt, kv_len=kv, new_tokens=new, batch=batch)
    eager = gundam.evaluate(w, h, stage, attention="eager", **kw)
    flash = gundam.evaluate(w, h, stage, attention="flash", **kw)
    assert flash["io_bytes"] <= eager["io_bytes"]
    assert flash["activation_bytes"] <= eager["activation_bytes"]
    assert flash["flops"] == eager["flops"]  # same math; only traffic differs


def test_roofline_time(gundam):
    r = gundam.evaluate(1280, 720, "request", prompt_tokens=10, new_tokens=200,
                        hardware="h100-sxm")
    assert 0 < r["ttft_s"] < r["time_s"]
    assert r["time_s"] == pytest.approx(r["ttft_s"] + 199 * r["tpot_s"])
    # decode at batch 1 is memory bound: a step takes at least its bytes over the bandwidth
    step = gundam.evaluate(1280, 720, "decode", kv_len=500, hardware="h100-sxm")
    assert step["time_s"] >= step["io_bytes"] / 3350e9
    faster = gundam.evaluate(1280, 720, "decode", kv_len=500, hardware="h200")
    assert faster["time_s"] < step["time_s"]
    compiled = gundam.compile("request", ("flops",), hardware="h100-sxm")(
        1280, 720, prompt_tokens=10, new_tokens=200)
    for k in ("time_s", "ttft_s", "tpot_s"):
        assert float(compiled[k]) == pytest.approx(r[k], rel=1e-9)


def test_user_hardware_file(tmp_path, gundam):
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"name": "toy", "matmul_tflops": {"bf16": 100},
                             "vector_tflops": 10, "memory_gbps": 1000}))
    r = gundam.evaluate(640, 640, "decode", hardware=str(f))
    assert r["time_s"] > gundam.evaluate(640, 640, "decode", hardware="h100-sxm")["time_s"]
    f.write_text(json.dumps({"name": "toy", "matmul_tflops": {"bf16": 100},
                             "vector_tflops": 10, "memory_gbps": -1}))
    with pytest.raises(symcost.SymcostError, match="memory_gbps"):
        gundam.evaluate(640, 640, "decode", hardware=str(f))
    f.write_text(json.dumps({"name": "toy", "matmul_tflops": {"bf16": 1}, "vector_tflops": 1,
                             "memory_gbps": 1, "clock": 2}))
    with pytest.raises(symcost.SymcostError, match="unknown key 'clock'"):
        gundam.evaluate(640, 640, "decode", hardware=str(f))
