"""DeepSeek-OCR language model: DeepSeek-V2 code without MLA (ARCHITECTURE.md §7).

``decoder(batch, s, k, flash)``: one forward of ``s`` new tokens per sequence attending to
``k`` keys (cached + new), for ``batch`` sequences. Shapes may be symbolic.
"""
from __future__ import annotations

from symcost import op, repeat, seq, smin

__all__ = ["decoder", "LAYERS", "KV_ELEMS_PER_TOKEN", "activated_params_per_token"]

HIDDEN, HEADS, HEAD_DIM = 1280, 10, 128
VOCAB = 129_280
DENSE_FF = 6848
N_EXPERTS, TOP_K, EXPERT_FF, SHARED_FF = 64, 6, 896, 1792
LAYERS = 12                    # layer 0 dense, layers 1..11 MoE
ROPE_FREQS = HEAD_DIM // 2     # inv_freq [64] @ positions: the counted cos/sin matmul
KV_ELEMS_PER_TOKEN = 2 * LAYERS * HEADS * HEAD_DIM


def _swiglu(name: str, t, ff: int):
    """``down(silu(gate(x)) * up(x))``, no bias."""
    return seq(name,
               op("gate_proj", "linear", tokens=t, d_in=HIDDEN, d_out=ff, bias=False),
               op("up_proj", "linear", tokens=t, d_in=HIDDEN, d_out=ff, bias=False),
               op("silu", "elementwise", elems=t * ff, fn="silu"),
               op("mul", "elementwise", elems=t * ff, fn="mul", n_inputs=2),
               op("down_proj", "linear", tokens=t, d_in=ff, d_out=HIDDEN, bias=False))


def _attention(batch, s, k, flash: bool):
    t = batch * s
    return seq(
        "attn",
        seq("attn_proj", *[op(f"{p}_proj", "linear", tokens=t, d_in=HIDDEN, d_out=HIDDEN,
                              bias=False) for p in "qkvo"]),
        seq("rope",
            op("cos_sin", "bmm", batch=batch, m=ROPE_FREQS, k=1, n=s),  # recomputed every layer
            op("apply", "elementwise", elems=2 * t * HIDDEN, fn="rope")),
        op("kv_append", "kv_append", tokens=t, dim=HIDDEN),
        op("attn_core", "attention", batch_heads=batch * HEADS, s_q=s, s_k=k, d=HEAD_DIM,
           materialise_scores=not flash),
    )


def _routed(t):
    """``moe_infer``: each of the ``6*t`` (token, expert) rows runs through its expert once."""
    rows = TOP_K * t
    touched = smin(N_EXPERTS, rows)  # experts whose weights are read
    proj = dict(experts=N_EXPERTS, experts_read=touched)
    return seq("routed",
               op("gate_proj", "moe_linear", tokens=rows, d_in=HIDDEN, d_out=EXPERT_FF, **proj),
               op("up_proj", "moe_linear", tokens=rows, d_in=HIDDEN, d_out=EXPERT_FF, **proj),
               op("silu", "elementwise", elems=rows * EXPERT_FF, fn="silu"),
               op("mul", "elementwise", elems=rows * EXPERT_FF, fn="mul", n_inputs=2),
               op("down_proj", "moe_linear", tokens=rows, d_in=EXPERT_FF, d_out=HIDDEN, **proj),
               op("combine", "elementwise", elems=rows * HIDDEN, fn="mul", n_inputs=2))


def _layer(name: str, batch, s, k, flash: bool, moe: bool, count: int = 1):
    t = batch * s
    if moe:
        mlp = seq("mlp",
                  seq("gate",  # router in fp32, softmax, greedy top-6 (not renormalised)
                      op("router", "linear", tokens=t, d_in=HIDDEN, d_out=N_EXPERTS, bias=False),
                      op("softmax", "softmax", elems=t * N_EXPERTS)),
                  _swiglu("shared", t, SHARED_FF),  # 2 shared experts as one SwiGLU
                  _routed(t),
                  op("add_shared", "elementwise", elems=t * HIDDEN, n_inputs=2))
    else:
        mlp = _swiglu("mlp", t, DENSE_FF)
    return repeat(name, count,
                  op("input_norm", "rms_norm", tokens=t, dim=HIDDEN),
                  _attention(batch, s, k, flash),
                  op("residual1", "elementwise", elems=t * HIDDEN, n_inputs=2),
                  op("post_norm", "rms_norm", tokens=t, dim=HIDDEN),
                  mlp,
                  op("residual2", "elementwise", elems=t * HIDDEN, n_inputs=2))


def decoder(batch, s, k, flash: bool = False, name: str = "decoder"):
    """Embedding, dense layer 0, 11 MoE layers, final norm, untied lm_head on every position."""
    t = batch * s
    return seq(name,
               op("embed_tokens", "embedding", tokens=t, vocab=VOCAB, dim=HIDDEN),
               _layer("layer0", batch, s, k, flash, moe=False),
               _layer("moe_layers", batch, s, k, flash, moe=True, count=LAYERS - 1),
               op("final_norm", "rms_norm", tokens=t, dim=HIDDEN),
               op("lm_head", "linear", tokens=t, d_in=HIDDEN, d_out=VOCAB, bias=False))


def activated_params_per_token() -> int:
    """Parameters one token uses, embedding excluded: weights read by a 1-token forward."""
    tree = decoder(1, 1, 1)
    return int(tree.cost.weight_elems - tree.find("embed_tokens").cost.weight_elems)
