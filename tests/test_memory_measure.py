"""validation.memory: the live-storage tracker on synthetic ops, and the vendor-path runners.

The runner cases check exact closed forms of the measured peaks (torch 2.13 CPU, bf16):
  vision, one view, batch 1 (peak inside a SAM global block, at attn.proj):
      12*T^2*2 (rel-pos bias) + T*2304*2 (qkv Linear output; q/k/v are views of it at B=1)
      + 4*T*768*2 (block input, norm1 output, SDPA output, proj output) + 2*12*T*g*2 (rel_h, rel_w)
      with g = P/16, T = g^2.
  prefill, S tokens, n layers (peak at logits.float()):
      S*V*(2+4) + n*2*S*1280*2 (4.46 cache: k_embed and the v_proj output) + S*1280*2 (final norm).
  decode, B x 1 token on L cached tokens, logits-bound (small L):
      B*V*(2+4) + n*2*B*10*128*2 (cache growth) + B*1280*2 (final norm).
Slow cases (full 12-layer decoder, 1024 px) are marked ``slow``.
"""

import gc
import weakref

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from validation.memory import (  # noqa: E402
    AllocatorPeak,
    LiveBytes,
    VendorDecoder,
    VendorVision,
    measure,
    scope,
    tag_pattern,
)

V = 129280
H = 1280
needs_slow = pytest.mark.slow  # full-size cases (up to 8 GB, ~1 min): deselect with -m "not slow"


# ---------------------------------------------------------------------------------------------------
# tracker on synthetic ops


def test_alloc_free_view_cat():
    with LiveBytes() as m:
        a = torch.empty(1000)  # +4000
        b = a[10:].view(-1, 10)  # view: nothing
        c = torch.cat([a, a])  # +8000 -> 12000
        del a, b  # -4000 -> 8000 (the view kept it alive until now)
        d = torch.empty(500, dtype=torch.float64)  # +4000 -> 12000
        del c  # -> 4000
    assert (m.peak_bytes, m.final_bytes, m.n_allocs) == (12000, 4000, 3)
    del d


def test_views_share_one_storage():
    with LiveBytes() as m:
        x = torch.empty(64, 32)
        views = [x.t(), x[::2], x.reshape(32, 64), x.unsqueeze(0).expand(3, 64, 32), x.view(-1)]
        y = x.t().contiguous()  # a real copy
    assert m.peak_bytes == 2 * 64 * 32 * 4
    del views, x, y


def test_peak_breakdown_snapshot():
    with LiveBytes() as m:
        with scope("outer"):
            a = torch.zeros(256, dtype=torch.bfloat16)
            with scope("inner"):
                b = torch.ones(100, 10)
                c = a.float() * 2  # _to_copy (freed) then mul
            del b, c
        e = torch.empty(10)
    b = m.breakdown(top=5)
    assert m.peak_bytes == 512 + 4000 + 1024 + 1024  # a, b, a.float(), the product
    assert [(r["bytes"], r["tag"]) for r in b["top"]] == [
        (4000, "outer/inner"),
        (1024, "outer/inner"),
        (1024, "outer/inner"),
        (512, "outer"),
    ]
    assert {r["op"] for r in b["top"]} == {
        "aten.ones.default",
        "aten._to_copy.default",
        "aten.mul.Tensor",
        "aten.zeros.default",
    }
    assert b["rest_bytes"] == 0 and b["by_tag"] == {"outer/inner": 6048, "outer": 512}
    assert m.peak_by_tag["outer/inner"] == 6560 and m.peak_by_tag[""] == 512 + 40
    del a, e


def test_parameters_and_buffers_are_baseline():
    lin = torch.nn.Linear(64, 32).to(torch.bfloat16)
    x = torch.randn(8, 64, dtype=torch.bfloat16)
    with LiveBytes() as m:
        w_t = lin.weight.t()  # a view of a parameter: not counted
        y = lin(x)  # the output only
        w32 = lin.weight.float()  # a copy of a parameter: an allocation
    assert m.peak_bytes == 8 * 32 * 2 + 64 * 32 * 4
    del w_t, y, w32


def test_preexisting_storage_freed_during_run():
    """A DynamicCache-like replacement: the old K leaves the live total when the cat drops it."""
    cache = {"k": torch.randn(4, 10, 100, 128)}
    old_bytes = cache["k"].untyped_storage().nbytes()
    m = LiveBytes(preexisting=[cache["k"], cache["k"][0]])  # a view of the same storage counts once
    assert m.baseline_bytes == old_bytes
    with m:
        cache["k"] = torch.cat([cache["k"], torch.randn(4, 10, 1, 128)], dim=-2)
    new_bytes = 4 * 10 * 101 * 128 * 4
    step = 4 * 10 * 1 * 128 * 4
    assert m.peak_bytes == new_bytes + step  # randn temp + new K while the old K is alive
    assert m.final_bytes == new_bytes - old_bytes == step
    b = m.breakdown()
    assert b["preexisting_freed_bytes"] == 0  # the old K was still alive at the peak
    with LiveBytes(preexisting=[cache["k"]]) as m2:
        cache["k"] = torch.cat([cache["k"], torch.empty(4, 10, 1, 128)], dim=-2)
        big = torch.empty(10**6)  # peak after the old K died
    b2 = m2.breakdown()
    assert b2["preexisting_freed_bytes"] == new_bytes
    assert m2.peak_bytes == 4 * 10 * 102 * 128 * 4 - new_bytes + 4 * 10**6
    assert [g["op"] for g in b2["groups"][:2]] == ["aten.empty.memory_format", "aten.cat.default"]
    assert any(g["op"] == "<preexisting, freed>" and g["bytes"] == -new_bytes for g in b2["groups"])
    del big


def test_tracker_keeps_no_reference():
    t = torch.empty(100)
    ref = weakref.ref(t)
    m = LiveBytes(preexisting=[t])
    del t
    gc.collect()
    assert ref() is None
    with m:
        pass
    assert m.peak_bytes == 0 and m.final_bytes == -400


def test_inplace_out_and_resize():
    with LiveBytes() as m:
        a = torch.ones(1000)
        a.add_(1)  # in place: nothing new
        out = torch.empty(0)
        torch.add(a, a, out=out)  # resized by the out= op: +4000
        s = torch.tensor([1.0, 2.0, 3.0])  # torch.tensor (lift_fresh): +12
    assert m.peak_bytes == 4000 + 4000 + 12
    del a, out, s


def test_allocator_peak_sees_kernel_scratch_and_preexisting_frees():
    with AllocatorPeak() as ap:
        pre = [torch.empty(10**5)]  # allocated inside the session: its free is reported
        with ap.stage():
            pre.pop()
            x = torch.empty(2 * 10**5)
            del x
    assert ap.peak_bytes == 4 * 10**5  # 8e5 allocated after 4e5 freed
    assert ap.final_bytes == -4 * 10**5


def test_tag_pattern():
    assert tag_pattern("model/L11/moe/routed") == "model/L*/moe/routed"
    assert tag_pattern("sam/b2/attn") == "sam/b*/attn"
    assert tag_pattern("clip/b23") == "clip/b*" and tag_pattern("lm_head") == "lm_head"


# ---------------------------------------------------------------------------------------------------
# vendor-path runners


def sam_global_peak(size):
    g = size // 16
    t = g * g
    return 12 * t * t * 2 + t * 2304 * 2 + 4 * t * 768 * 2 + 2 * 12 * t * g * 2


@pytest.fixture(scope="module")
def vision():
    return VendorVision()


@pytest.fixture(scope="module")
def decoder2():
    return VendorDecoder(n_layers=2)  # layer 0 dense + layer 1 MoE, full lm_head


@pytest.mark.slow  # real bf16 tensors on the CPU: minutes on AVX2 machines
def test_vision_tiny(vision):
    out = vision(torch.zeros(1, 3, 512, 512, dtype=torch.bfloat16))
    assert tuple(out.shape) == (73, H)
    r1 = measure(vision, "vision", {"size": 512})
    r2 = measure(vision, "vision", {"size": 512}, allocator=False, warmup=False)
    assert r1["peak_bytes"] == r2["peak_bytes"] == sam_global_peak(512) == 37_748_736
    assert r1["allocator_peak_bytes"] >= r1["peak_bytes"]
    top = r1["breakdown"]["top"][0]
    assert (top["shape"], top["dtype"], top["tag"]) == ((1, 12, 1024, 32, 32), "bfloat16", "sam/b2/attn/bias")
    assert r1["final_bytes"] == 73 * H * 2  # only the returned [73, 1280] layout is left
    assert "aten._scaled_dot_product_flash_attention_for_cpu.default" in r1["attention_kernels"]


@pytest.mark.slow  # real bf16 tensors on the CPU: minutes on AVX2 machines
def test_prefill_two_layers(decoder2):
    seq = 273
    r1 = measure(decoder2, "prefill", {"seq": seq})
    r2 = measure(decoder2, "prefill", {"seq": seq}, allocator=False, warmup=False)
    expected = seq * V * 6 + 2 * 2 * seq * H * 2 + seq * H * 2
    assert r1["peak_bytes"] == r2["peak_bytes"] == expected
    assert r1["allocator_peak_bytes"] >= r1["peak_bytes"]
    groups = r1["breakdown"]["groups"]
    assert (groups[0]["shape"], groups[0]["dtype"]) == ((1, seq, V), "float32")
    assert (groups[1]["shape"], groups[1]["dtype"]) == ((seq, V), "bfloat16")
    assert r1["final_bytes"] == seq * V * 4 + 2 * 2 * seq * H * 2  # fp32 logits + the new cache
    assert r1["peak_by_phase"]["model/L*/moe/routed"] > 6 * seq * H * 2 * 4  # moe_infer's 6N-row copies


def test_decode_two_layers(decoder2):
    batch, past = 1, 64
    r = measure(decoder2, "decode", {"batch": batch, "past": past})
    layer_kv = batch * 10 * past * 128 * 2
    growth = 2 * 2 * batch * 10 * 128 * 2
    assert r["baseline_bytes"] == 2 * 2 * layer_kv
    assert r["peak_bytes"] == batch * V * 6 + growth + batch * H * 2
    assert r["final_bytes"] == batch * V * 4 + growth
    assert r["breakdown"]["preexisting_freed_bytes"] == 2 * 2 * layer_kv
    again = measure(decoder2, "decode", {"batch": batch, "past": past}, allocator=False, warmup=False)
    assert again["peak_bytes"] == r["peak_bytes"]


# ---------------------------------------------------------------------------------------------------
# slow: full-size cases


@pytest.fixture(scope="module")
def decoder_full():
    return VendorDecoder()


@pytest.mark.slow
@needs_slow
def test_vision_base(vision):
    r = measure(vision, "vision", {"size": 1024})
    assert r["peak_bytes"] == sam_global_peak(1024) == 459_276_288
    assert r["allocator_peak_bytes"] > r["peak_bytes"]  # oneDNN's patch-embed conv scratch (see report)


@pytest.mark.slow
@needs_slow
def test_prefill_full(decoder_full):
    seq = 1000
    r = measure(decoder_full, "prefill", {"seq": seq})
    assert r["peak_bytes"] == seq * V * 6 + 12 * 2 * seq * H * 2 + seq * H * 2 == 839_680_000
    g = measure(decoder_full, "prefill", {"seq": seq, "generate_step": True}, allocator=False)
    assert g["peak_bytes"] == 2 * seq * V * 4 + 12 * 2 * seq * H * 2 == 1_095_680_000


@pytest.mark.slow
@needs_slow
@pytest.mark.parametrize("batch", [1, 8])
def test_decode_full(decoder_full, batch):
    past = 1024
    r = measure(decoder_full, "decode", {"batch": batch, "past": past})
    new_layer_v = batch * 10 * (past + 1) * 128 * 2
    growth = batch * 10 * 128 * 2
    floor = max(new_layer_v + 23 * growth, batch * V * 6 + 24 * growth)  # last V cat, or the logits
    assert floor <= r["peak_bytes"] <= floor + 2**20
    assert r["final_bytes"] == batch * V * 4 + 24 * growth
