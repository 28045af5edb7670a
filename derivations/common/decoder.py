"""The decoder-only language model of every family: dense layers, then (DeepSeek-V2) MoE layers.

``forward(cfg, ex, shape)``: one forward over a batch of sequences, each with its own new
tokens and cached ones, given by the aggregates of :class:`Batch` (what a serving engine's step
runs: decode tokens and prefill chunks together); ``decoder(cfg, ex, batch, s, past)`` is the
uniform case, ``s`` new tokens per sequence after ``past`` cached ones for ``batch``
sequences. Shapes may be symbolic. ``cfg`` holds the sizes (read from a Hugging Face
``config.json``-style dict), ``ex`` how a runtime executes them.

    layer = input_norm -> attn (q, k, v, rope, cache, core, o) -> +x -> post_norm -> mlp -> +h
    mlp   = SwiGLU (dense layers) | router -> routed experts -> shared experts -> +  (MoE)

A dense model (Llama, Qwen2 ...) is the case without experts: every layer is dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from symcost import SymcostError, captured, current, op, repeat, seq, smin
from symcost.dtypes import FP32_BYTES
from symcost.ops import expected_distinct

__all__ = [
    "DecoderConfig",
    "Execution",
    "Batch",
    "forward",
    "decoder",
    "step",
    "decode_step",
    "next_token",
    "activated_params_per_token",
]


@dataclass(frozen=True)
class DecoderConfig:
    vocab: int
    hidden: int
    layers: int
    dense_layers: int  # the first layers are dense, the rest MoE (all of them without experts)
    heads: int
    kv_heads: int
    head_dim: int
    dense_ff: int
    experts: int  # routed experts per MoE layer (0: a dense model)
    top_k: int  # experts per token
    expert_ff: int
    shared_ff: int  # the shared experts as one SwiGLU of this width
    attention_bias: bool
    tied_embeddings: bool
    rope_matmul_per_layer: bool  # cos/sin recomputed in every layer as inv_freq @ positions
    rope_axes: int = 1  # position axes with their own cos/sin table (M-RoPE: t, h, w), recomposed
    qk_norm: bool = False  # RMSNorm over head_dim on q and k before RoPE (Qwen3)

    def __post_init__(self):  # the shapes the layers multiply must agree
        if self.heads % self.kv_heads:
            raise SymcostError(
                f"num_key_value_heads: {self.kv_heads} does not divide num_attention_heads {self.heads}"
            )
        if not 0 <= self.dense_layers <= self.layers or self.top_k > self.experts:
            raise SymcostError("decoder config: dense layers or experts per token out of range")
        if not self.experts and self.dense_layers != self.layers:
            raise SymcostError("decoder config: a model without experts has only dense layers")

    @classmethod
    def from_hf(cls, c: dict, *, rope_matmul_per_layer: bool, qk_norm: bool = False) -> DecoderConfig:
        """From a Hugging Face text config dict: DeepSeek-V2 keys, or a dense model's (Llama,
        Qwen2, Qwen3 ...), which has no ``n_routed_experts``; ``qk_norm`` where the model class
        norms q and k per head (Qwen3: no config key says so)."""
        heads = c["num_attention_heads"]
        experts = c.get("n_routed_experts") or 0
        layer_types = c.get("mlp_layer_types")
        if not experts:
            dense = c["num_hidden_layers"]
        else:
            dense = layer_types.count("dense") if layer_types else c["first_k_dense_replace"]
        moe = dict(
            experts=experts,
            top_k=c["num_experts_per_tok"] if experts else 0,
            expert_ff=c["moe_intermediate_size"] if experts else 0,
            shared_ff=c["n_shared_experts"] * c["moe_intermediate_size"] if experts else 0,
        )
        return cls(
            vocab=c["vocab_size"],
            hidden=c["hidden_size"],
            layers=c["num_hidden_layers"],
            dense_layers=dense,
            heads=heads,
            kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or c["hidden_size"] // heads,
            dense_ff=c["intermediate_size"],
            **moe,
            attention_bias=bool(c.get("attention_bias", False)),
            tied_embeddings=bool(c.get("tie_word_embeddings", False)),
            rope_matmul_per_layer=rope_matmul_per_layer,
            qk_norm=qk_norm,
        )

    @property
    def kv_elems_per_token(self) -> int:
        """K and V of every layer for one cached token."""
        return 2 * self.layers * self.kv_heads * self.head_dim


@dataclass(frozen=True)
class Execution:
    """How a runtime runs the decoder. Each field is one serving decision (see
    ``derivations.common.vlm.execution`` for which runtime makes which, and why)."""

    attention: str  # "eager" (the op chain, scores in memory), "sdpa" or "flash" (fused)
    concat_cache: bool  # the KV cache grows by torch.cat (HF DynamicCache), else paged append
    fused_norms: bool  # RMSNorm and RoPE as single kernels (else eager op by op)
    moe_loop: bool  # routed experts one by one (vendor moe_infer), else grouped kernels
    logits_all: bool  # lm_head on every prefill position (else the last one)
    logits_upcast: bool  # the forward returns logits.float() (the vendor's DeepseekV2 code)
    clone_logits: bool  # sampling clones the whole logits tensor first (transformers 4.46)
    expected_experts: bool  # experts touched: expected under uniform routing (else worst case)
    graph_decode: bool  # decode steps replay a CUDA graph

    def touched(self, cfg: DecoderConfig, tokens):
        """Experts whose weights a MoE layer reads for ``tokens`` routed tokens."""
        if self.expected_experts:
            return expected_distinct(tokens, cfg.experts, cfg.top_k)
        return smin(cfg.experts, cfg.top_k * tokens)


@dataclass(frozen=True)
class Batch:
    """The shape of one forward in aggregates over its sequences, each with ``s_i`` new tokens
    after ``L_i`` cached ones: ``seqs``; ``tokens`` = sum s_i; ``pairs`` = sum s_i*(L_i + s_i),
    the attention scores per head (each new token against every key, the full rectangle);
    ``keys`` = sum (L_i + s_i), the keys read; ``cached`` = sum L_i. Every cost of the forward
    is a closed form in these, so a mixed batch costs no loop over its sequences."""

    seqs: Any  # ints or SymPy expressions alike
    tokens: Any
    pairs: Any
    keys: Any
    cached: Any

    @classmethod
    def uniform(cls, batch, s, past) -> Batch:
        """``batch`` sequences of ``s`` new tokens after ``past`` cached ones."""
        return cls(batch, batch * s, batch * s * (past + s), batch * (past + s), batch * past)


# Kernels per op in eager PyTorch, counted from the code each runtime runs:
# RMSNorm: x.float(), pow, mean, +eps, rsqrt, *, .to(), *w (the formula's own count);
# RoPE (HF apply_rotary_pos_emb): rotate_half = 2 slices + neg + cat, then x*cos, rot*sin, +,
# for q and for k; the per-layer cos/sin (vendor LlamaRotaryEmbedding): matmul, cat, cos, sin,
# two casts; MoE (vendor moe_infer): per touched expert gate, up, act, mul, down; around the loop
# router cast + linear + softmax + topk, and argsort, gather, cat, scatter, fp32 cast, mul, sum,
# cast back; the model-level cos/sin (transformers 5.x): matmul-free outer product, cat, cos, sin,
# two casts.
_ROPE_APPLY_KERNELS = 2 * 7
_ROPE_TABLE_KERNELS = 6
_ROUTER_KERNELS = 4
_MOE_LOOP_KERNELS_PER_EXPERT = 5
_MOE_AROUND_KERNELS = 8


def _swiglu(name: str, cfg: DecoderConfig, t, ff: int, keep: bool = False):
    """``down(silu(gate(x)) * up(x))``, no bias, in Python's order (every family's code writes
    this expression): gate's output dies once silu has read it, silu's and up's after the product
    (measured on transformers' MLP)."""
    h = cfg.hidden
    gated = seq(
        "gated",
        op("gate_proj", "linear", tokens=t, d_in=h, d_out=ff, bias=False),
        op("silu", "elementwise", elems=t * ff, fn="silu", keep=True),
        op("up_proj", "linear", tokens=t, d_in=h, d_out=ff, bias=False, keep=True),
        op("mul", "elementwise", elems=t * ff, fn="mul", n_inputs=2),
    )
    return seq(name, gated, op("down_proj", "linear", tokens=t, d_in=ff, d_out=h, bias=False), keep=keep)


def _attention(cfg: DecoderConfig, ex: Execution, shape: Batch):
    t = shape.tokens
    q_dim, kv_dim = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    proj = dict(tokens=t, d_in=cfg.hidden, bias=cfg.attention_bias, keep=True)
    rope = [
        op(
            "apply",
            "elementwise",
            elems=t * (q_dim + kv_dim),
            fn="rope",
            kernels=1 if ex.fused_norms else _ROPE_APPLY_KERNELS,
        )
    ]
    if cfg.rope_matmul_per_layer:  # counted by FLOP counters: 2*64*s per layer
        rope.insert(
            0,
            op(
                "cos_sin",
                "bmm",
                batch=shape.seqs,
                m=cfg.head_dim // 2,
                k=1,
                n=1,
                n_total=t,
                kernels=_ROPE_TABLE_KERNELS,
                keep=True,
            ),
        )
    qk = [op("q_proj", "linear", d_out=q_dim, **proj), op("k_proj", "linear", d_out=kv_dim, **proj)]
    if cfg.qk_norm:  # norm(proj(x)) per head: each projection's output dies after its norm
        norm = dict(dim=cfg.head_dim, fused=ex.fused_norms, keep=True)
        qk = [
            op("q_proj", "linear", d_out=q_dim, **(proj | {"keep": False})),
            op("q_norm", "rms_norm", tokens=t * cfg.heads, **norm),
            op("k_proj", "linear", d_out=kv_dim, **(proj | {"keep": False})),
            op("k_norm", "rms_norm", tokens=t * cfg.kv_heads, **norm),
        ]
    return seq(
        "attn",
        *qk,
        op("v_proj", "linear", d_out=kv_dim, **proj),
        seq("rope", *rope, keep=True),
        op(
            "kv_cache",
            "kv_cache",
            kv_heads=cfg.kv_heads,
            d=cfg.head_dim,
            new=t,
            cached=shape.cached,
            concat=ex.concat_cache,
        ),
        op(
            "attn_core",
            "attention",
            heads=cfg.heads,
            kv_heads=cfg.kv_heads,
            queries=t,
            pairs=shape.pairs,
            keys=shape.keys,
            d=cfg.head_dim,
            fused=ex.attention != "eager",
        ),
        op("o_proj", "linear", tokens=t, d_in=q_dim, d_out=cfg.hidden, bias=False),
    )


def _moe(cfg: DecoderConfig, ex: Execution, t):
    """Router (fp32 softmax, greedy top-k, not renormalised), routed experts, shared experts.

    Routed compute is ``top_k * t`` rows through one expert each, whatever the routing; only
    the experts touched have their weights read.
    """
    h, rows = cfg.hidden, cfg.top_k * t
    touched = ex.touched(cfg, t)
    proj = dict(experts=cfg.experts, experts_read=touched)
    per_expert = touched if ex.moe_loop else 1  # grouped MoE: one kernel per projection
    return seq(
        "mlp",
        seq(
            "gate",
            op(
                "router",
                "linear",
                tokens=t,
                d_in=h,
                d_out=cfg.experts,
                bias=False,
                kernels=1 if ex.fused_norms else _ROUTER_KERNELS,
            ),
            op("softmax", "softmax", elems=t * cfg.experts),
            keep=True,
        ),
        seq(
            "routed",
            op(
                "dispatch",
                "elementwise",
                elems=rows * h,
                fn="copy",
                kernels=_MOE_AROUND_KERNELS // 2 if ex.moe_loop else 1,
            ),
            op(
                "gate_proj",
                "moe_linear",
                tokens=rows,
                d_in=h,
                d_out=cfg.expert_ff,
                kernels=per_expert,
                keep=True,
                **proj,
            ),
            op(
                "up_proj",
                "moe_linear",
                tokens=rows,
                d_in=h,
                d_out=cfg.expert_ff,
                kernels=per_expert,
                keep=True,
                **proj,
            ),
            op("silu", "elementwise", elems=rows * cfg.expert_ff, fn="silu", kernels=per_expert),
            op("mul", "elementwise", elems=rows * cfg.expert_ff, fn="mul", n_inputs=2, kernels=per_expert),
            op(
                "down_proj",
                "moe_linear",
                tokens=rows,
                d_in=cfg.expert_ff,
                d_out=h,
                kernels=per_expert,
                **proj,
            ),
            op(
                "combine",
                "elementwise",
                elems=rows * h,
                fn="mul",
                n_inputs=2,
                kernels=_MOE_AROUND_KERNELS // 2 if ex.moe_loop else 1,
            ),
            keep=True,
        ),
        _swiglu("shared", cfg, t, cfg.shared_ff),
        op("add_shared", "elementwise", elems=t * h, n_inputs=2),
    )


def _layer(name: str, cfg: DecoderConfig, ex: Execution, shape: Batch, moe: bool, count: int):
    t = shape.tokens
    norm = dict(tokens=t, dim=cfg.hidden, fused=ex.fused_norms)
    mlp = _moe(cfg, ex, t) if moe else _swiglu("mlp", cfg, t, cfg.dense_ff)
    return repeat(
        name,
        count,
        op("input_norm", "rms_norm", **norm),
        _attention(cfg, ex, shape),
        op("residual1", "elementwise", elems=t * cfg.hidden, n_inputs=2, keep=True),
        op("post_norm", "rms_norm", **norm),
        mlp,
        op("residual2", "elementwise", elems=t * cfg.hidden, n_inputs=2),
    )


def forward(cfg: DecoderConfig, ex: Execution, shape: Batch, name: str = "decoder"):
    """Embedding, dense then MoE layers, final norm, lm_head (all positions or each sequence's
    last), and the fp32 upcast of the logits where the runtime's forward does it."""
    t = shape.tokens
    logit_rows = t if ex.logits_all else shape.seqs
    parts = []
    if cfg.rope_axes > 1 and not ex.fused_norms:  # M-RoPE: half-width cos/sin per axis, 2 cats each
        axes = cfg.rope_axes * t * cfg.head_dim
        parts.append(op("rotary_axes", "elementwise", elems=axes, fn="copy", kernels=4))
    if not cfg.rope_matmul_per_layer:  # cos/sin once per forward, by broadcasting (uncounted)
        parts.append(
            op(
                "rotary",
                "elementwise",
                elems=2 * t * cfg.head_dim,
                fn="copy",
                kernels=1 if ex.fused_norms else _ROPE_TABLE_KERNELS,
                keep=True,
            )
        )
    parts.append(op("embed_tokens", "embedding", tokens=t, vocab=cfg.vocab, dim=cfg.hidden))
    if cfg.dense_layers:  # "layers" when every layer is dense
        dense_name = "layer0" if cfg.experts else "layers"
        parts.append(_layer(dense_name, cfg, ex, shape, moe=False, count=cfg.dense_layers))
    if cfg.layers > cfg.dense_layers:
        parts.append(_layer("moe_layers", cfg, ex, shape, moe=True, count=cfg.layers - cfg.dense_layers))
    parts += [
        op("final_norm", "rms_norm", tokens=t, dim=cfg.hidden, fused=ex.fused_norms),
        op(
            "lm_head",
            "linear",
            tokens=logit_rows,
            d_in=cfg.hidden,
            d_out=cfg.vocab,
            bias=False,
            tied=cfg.tied_embeddings,
        ),
    ]
    if ex.logits_upcast:
        parts.append(op("logits_float", "cast", elems=logit_rows * cfg.vocab))
    return seq(name, *parts)


def decoder(cfg: DecoderConfig, ex: Execution, batch, s, past, name: str = "decoder"):
    """``batch`` sequences of ``s`` new tokens after ``past`` cached ones: the uniform forward."""
    return forward(cfg, ex, Batch.uniform(batch, s, past), name)


def step(cfg: DecoderConfig, ex: Execution, shape: Batch, name: str = "step"):
    """One engine step: the forward over a mixed batch, then each sequence's next token (a
    sequence still in its prefill samples one too, and the engine drops it)."""
    rows = shape.tokens if ex.logits_all else shape.seqs
    return seq(name, forward(cfg, ex, shape), next_token(cfg, ex, shape.seqs, rows))


def decode_step(cfg: DecoderConfig, ex: Execution, batch, past, name: str = "step"):
    """One generated token per sequence: the decoder on 1 new token, then the next token."""
    one = step(cfg, ex, Batch.uniform(batch, 1, past), name)
    return captured(one) if ex.graph_decode else one


def next_token(cfg: DecoderConfig, ex: Execution, batch, logit_rows):
    """Greedy sampling reads the last position's logits as fp32 (generate() and vLLM's sampler
    copy them to fp32 first; transformers 4.46 clones all ``logit_rows`` rows before slicing)."""
    last = op("next_token", "cast", elems=batch * cfg.vocab)
    if not ex.clone_logits:
        return last
    p = current()
    ratio = FP32_BYTES // p.act if ex.logits_upcast else 1  # the logits' bytes per act element
    # clone() of the whole tensor in the logits' dtype, then the last row to fp32
    return seq(
        "next_token", op("clone", "elementwise", elems=logit_rows * cfg.vocab * ratio, fn="copy"), last
    )


def activated_params_per_token(cfg: DecoderConfig, ex: Execution) -> int:
    """Parameters one token uses, embedding excluded: weights a 1-token forward reads."""
    tree = decoder(cfg, ex, 1, 1, 0)
    read = tree.cost.weight_read_bytes - tree.find("embed_tokens").cost.weight_read_bytes
    return int(read) // current().weight
