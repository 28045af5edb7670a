"""DeepSeek-OCR-2 vision tower: SAM-B -> a Qwen2-style encoder read out through learned
queries -> linear projector, per view.

    view(n, px) = SAM (n x px^2 -> T = (px/64)^2 tokens of 896)
                  -> encoder over [T image tokens ; T learned queries] (24 layers, GQA 14/2)
                  -> the T query positions -> Linear(896, 1280)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from symcost import SymcostError, op, repeat, seq

from ..common.sam import SamConfig, sam

__all__ = ["EncoderConfig", "VisionConfig", "encoder", "view"]


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int
    ff: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    def __post_init__(self):  # repeat_kv expands whole groups of heads
        if self.heads % self.kv_heads:
            raise SymcostError(
                f"encoder num_key_value_heads: {self.kv_heads} does not divide "
                f"num_attention_heads {self.heads}"
            )

    @classmethod
    def from_hf(cls, c: dict) -> EncoderConfig:
        heads = c["num_attention_heads"]
        return cls(
            hidden=c["hidden_size"],
            ff=c["intermediate_size"],
            layers=c["num_hidden_layers"],
            heads=heads,
            kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        )


@dataclass(frozen=True)
class VisionConfig:
    sam: SamConfig
    encoder: EncoderConfig
    llm_hidden: int
    query_sides: tuple[int, ...] = (16, 12)  # learned query grids: 1024 views, 768 tiles

    @classmethod
    def from_hf(cls, c: dict) -> VisionConfig:
        """From transformers' ``DeepseekOcr2Config`` dict (``vision_config``, ``text_config``)."""
        v = c["vision_config"]
        # transformers' neck norm subclasses nn.LayerNorm: an aten layer_norm (fvcore counts it)
        sam_cfg = replace(SamConfig.from_hf(v["sam_config"]), neck_norm_aten=True)
        return cls(sam_cfg, EncoderConfig.from_hf(v["encoder_config"]), c["text_config"]["hidden_size"])


# Kernels per op in eager PyTorch (transformers' Qwen2-style layer): RMSNorm 8 (see
# common.decoder), RoPE apply 14 (rotate_half and the products for q and k), repeat_kv 2 copies.
_ROPE_APPLY_KERNELS = 14


def encoder(cfg: EncoderConfig, batch, image: int, queries: int, fused: bool):
    """The encoder over ``image`` tokens followed by ``queries`` learned queries per view.

    NB: the hybrid mask (image tokens bidirectional, queries causal) is never None, so
    transformers expands the 2 KV heads to 14 (``repeat_kv``, two copies) before SDPA, which
    every counter counts as the full square; RoPE cos/sin is computed once per forward.
    """
    s = image + queries
    t = batch * s
    h, q_dim, kv_dim = cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    proj = dict(tokens=t, d_in=h, bias=True, keep=True)
    norm = dict(tokens=t, dim=h, fused=fused)
    return seq(
        "encoder",
        op("queries", "elementwise", elems=t * h, fn="copy", n_inputs=1),  # cat([image; queries])
        op("mask_rope", "elementwise", elems=batch * s * s, fn="copy", kernels=8, keep=True),
        repeat(
            "layers",
            cfg.layers,
            op("input_norm", "rms_norm", **norm),
            seq(
                "attn",
                op("q_proj", "linear", d_out=q_dim, **proj),
                op("k_proj", "linear", d_out=kv_dim, **proj),
                op("v_proj", "linear", d_out=kv_dim, **proj),
                op(
                    "rope",
                    "elementwise",
                    elems=t * (q_dim + kv_dim),
                    fn="rope",
                    kernels=1 if fused else _ROPE_APPLY_KERNELS,
                    keep=True,
                ),
                op(
                    "repeat_kv",
                    "elementwise",
                    elems=2 * batch * cfg.heads * s * cfg.head_dim,
                    fn="copy",
                    kernels=2,
                ),
                op(
                    "attn_core",
                    "sdpa",
                    batch_heads=batch * cfg.heads,
                    s_q=s,
                    s_k=s,
                    d_qk=cfg.head_dim,
                    d_v=cfg.head_dim,
                    mask_elems=batch * s * s,
                ),
                op("o_proj", "linear", tokens=t, d_in=q_dim, d_out=h, bias=False),
            ),
            op("residual1", "elementwise", elems=t * h, n_inputs=2, keep=True),
            op("post_norm", "rms_norm", **norm),
            seq(
                "mlp",
                op("gate_proj", "linear", tokens=t, d_in=h, d_out=cfg.ff, bias=False, keep=True),
                op("up_proj", "linear", tokens=t, d_in=h, d_out=cfg.ff, bias=False, keep=True),
                op("silu", "elementwise", elems=t * cfg.ff, fn="silu"),
                op("mul", "elementwise", elems=t * cfg.ff, fn="mul", n_inputs=2),
                op("down_proj", "linear", tokens=t, d_in=cfg.ff, d_out=h, bias=False),
            ),
            op("residual2", "elementwise", elems=t * h, n_inputs=2),
        ),
        op("final_norm", "rms_norm", **norm),
    )


def view(cfg: VisionConfig, name: str, batch, px: int, fused: bool, keep: bool = False):
    """One tower call on ``batch`` views of ``px`` x ``px``: SAM, encoder, projector."""
    tokens = cfg.sam.grid(px) ** 2
    return seq(
        name,
        sam(cfg.sam, batch, px),
        encoder(cfg.encoder, batch, tokens, tokens, fused),
        op("projector", "linear", tokens=batch * tokens, d_in=cfg.encoder.hidden, d_out=cfg.llm_hidden),
        keep=keep,
    )


def query_params(cfg: VisionConfig):
    """The learned query tables (one per view size) and the encoder's weights, as parameters."""
    return [
        op(f"query_{side * 64}_resolution", "parameter", elems=side * side * cfg.encoder.hidden)
        for side in cfg.query_sides
    ]
