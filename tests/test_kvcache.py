"""vLLM's KV-cache accounting (symcost.kvcache): the driver's memory, the profiling run, the parts
adding up, plan and simulate agreeing, and the flags' errors."""

from __future__ import annotations

import json

import pytest

import symcost
from symcost.cli import main
from symcost.dtypes import precision
from symcost.hardware import HARDWARE
from symcost.kvcache import VLLM_MEMORY, kv_cache, profile_image
from symcost.simulation import Arrivals, engine_limits, simulate, workload

_MIB = 2**20


@pytest.fixture(scope="module")
def model():
    return symcost.load("deepseek-ocr", runtime="vllm")


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of `symcost plan`."""

    def run(*argv):
        code = main(["plan", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_presets_hold_the_drivers_total():
    """nvidia-smi's totals (modal-labs/modal-client PR #2797): GDDR cards hold less than their
    datasheet's GB read as GiB."""
    for name, mib in {"l4": 23_034, "l40s": 46_068, "a100-40gb": 40_960, "a100-80gb": 81_920}.items():
        assert HARDWARE[name].memory_bytes == mib * _MIB
        assert HARDWARE[name].memory_source.startswith("nvidia-smi")
    assert HARDWARE["l4"].memory_bytes < 24 * 2**30 and HARDWARE["l40s"].memory_bytes < 48 * 2**30


def _kv(model, hw="l4", **kw):
    args = (
        dict(
            max_num_seqs=256,
            max_num_batched_tokens=8192,
            block_size=16,
            gpu_memory_utilization=0.9,
            max_model_len=8192,
            image=(1280, 1280),
        )
        | kw
    )
    return kv_cache(model, HARDWARE[hw], precision("bf16"), **args)


def test_the_parts_add_up_and_blocks_fill_what_is_left(model):
    kv = _kv(model)
    usable = int(kv.total_bytes * 0.9)
    parts = kv.weight_bytes + kv.profile_activation_bytes + kv.non_torch_bytes + kv.cuda_graph_bytes
    assert kv.kv_bytes == usable - parts
    block = kv.bytes_per_token * kv.block_size
    assert kv.blocks == kv.kv_bytes // block and kv.tokens == kv.blocks * 16
    assert kv.non_torch_bytes == VLLM_MEMORY.non_torch_bytes and kv.cuda_graph_bytes == 0
    assert kv.log_lines()[0] == f"GPU KV cache size: {kv.tokens:,} tokens"
    assert kv.log_lines()[1].endswith(f"{kv.tokens / 8192:.2f}x")


def test_the_profiling_run_is_vllms(model):
    """``profile_run``: ceil(max(budget, tokens per image) / tokens per image) images, capped by
    max_num_seqs; its peak is the larger of the vision stage on them and the step's."""
    kv = _kv(model)
    p = kv.profile
    per = model.evaluate(1280, 1280, stage="vision")["image_tokens"]
    assert p["image_tokens"] == per and p["images"] == -(-8192 // per)
    assert p["sequences"] == 256 and p["tokens"] == 8192
    assert _kv(model, max_num_seqs=3).profile["images"] == 3
    vision = model.evaluate(1280, 1280, stage="vision", batch=p["images"])["activation_bytes"]
    assert kv.profile_activation_bytes >= vision
    text = _kv(model, image=None)
    assert text.profile["images"] == 0 and text.profile_activation_bytes <= kv.profile_activation_bytes
    # a larger budget runs a larger step: the cache shrinks
    assert _kv(model, max_num_batched_tokens=32_768).tokens < kv.tokens
    # utilization scales what is usable
    assert _kv(model, gpu_memory_utilization=0.5).tokens < kv.tokens


def test_the_family_declares_the_dummy_image(model):
    image, why = profile_image(model, [(100, 100)])
    assert image == (1280, 1280) and "declares" in why


def test_plan_and_simulate_share_the_accounting(model, cli):
    code, out, _ = cli(
        "deepseek-ocr",
        "--image",
        "640x640",
        "--hardware",
        "l4",
        "--runtime",
        "vllm",
        "--new-tokens",
        "10",
        "--batch",
        "4",
        "--max-model-len",
        "8192",
        "--gpu-memory-utilization",
        "0.8",
        "--json",
    )
    assert code == 0
    plan = json.loads(out)
    hw = HARDWARE["l4"]
    eng = engine_limits(model, hw, Arrivals(), max_num_seqs=4, gpu_memory_utilization=0.8, max_model_len=8192)
    sim = simulate(model, hw, workload([(640, 640)], 8, 0, 10), Arrivals(), eng)
    assert plan["kv_capacity_tokens"] == sim["kv_capacity_tokens"] == sim["kv_cache"]["kv_capacity_tokens"]
    assert plan["kv_cache"]["gpu_memory_utilization"] == 0.8


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--runtime", "hf", "--max-model-len", "8192"), "--max-model-len: applies to --runtime vllm only"),
        (("--runtime", "vllm", "--max-num-batched-tokens", "unlimited"), "plan needs a number"),
        (("--runtime", "vllm", "--gpu-memory-utilization", "1.5"), "--gpu-memory-utilization"),
    ],
)
def test_flags_that_do_not_apply_are_errors(cli, extra, message):
    code, out, err = cli("deepseek-ocr", "--image", "640x640", "--hardware", "l4", *extra)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_text_prints_as_vllm_logs(cli):
    code, out, _ = cli("deepseek-ocr", "--image", "640x640", "--hardware", "l4", "--runtime", "vllm")
    assert code == 0
    assert "GPU KV cache size: " in out and "Maximum concurrency for 8,192 tokens per request: " in out
    assert "vLLM's KV cache (vLLM 0.8 V1 accounting)" in out
