"""LightOnOCR's vision side: a Pixtral encoder and a Mistral3-style projector (2 x 2 patch merger).

    tower     = patch_conv (14 x 14, stride 14, no bias) -> ln_pre (RMSNorm)
                -> 24 x [RMSNorm -> attention (2-D RoPE) -> + -> RMSNorm -> SwiGLU -> +]
    projector = RMSNorm -> patch_merger (unfold 2 x 2 per image, Linear(4 x 1024, 1024))
                -> Linear(1024, 1024) -> GELU -> Linear(1024, 1024)            (no biases)

All images of a call are concatenated into one sequence (transformers' ``PixtralVisionModel``, vLLM's
``PixtralHFVisionModel``). How attention keeps them apart is where the runtimes differ (``packed``):
- transformers (SDPA, its default): ``generate_block_attention_mask`` builds a dense block-diagonal
  additive mask over the whole sequence, so SDPA runs on the full (B*N)^2 square (counters count it);
- vLLM (``MMEncoderAttention`` with per-image ``cu_seqlens``, vllm-project/vllm PR #52185): each image
  attends over its own N patches.
"""

from __future__ import annotations

from dataclasses import dataclass

from symcost import SymcostError, op, repeat, seq

__all__ = ["PixtralConfig", "VisionConfig", "tower", "projector", "vision", "vision_weights"]


@dataclass(frozen=True)
class PixtralConfig:
    hidden: int
    layers: int
    heads: int
    ff: int
    patch: int
    channels: int

    @property
    def head_dim(self) -> int:  # PixtralAttention: hidden // heads (config.head_dim only sizes RoPE)
        return self.hidden // self.heads

    @classmethod
    def from_hf(cls, v: dict) -> PixtralConfig:
        cfg = cls(
            hidden=v["hidden_size"],
            layers=v["num_hidden_layers"],
            heads=v["num_attention_heads"],
            ff=v["intermediate_size"],
            patch=v["patch_size"],
            channels=v.get("num_channels", 3),
        )
        if cfg.hidden % cfg.heads or v.get("head_dim", cfg.head_dim) != cfg.head_dim:
            raise SymcostError(
                f"vision head_dim: {v.get('head_dim')} is not hidden_size / num_attention_heads "
                f"({cfg.hidden} / {cfg.heads}), which the attention uses"
            )
        return cfg


@dataclass(frozen=True)
class VisionConfig:
    encoder: PixtralConfig
    merge: int  # spatial_merge_size: merge x merge patches per image token
    text_hidden: int

    @classmethod
    def from_hf(cls, c: dict) -> VisionConfig:
        """From a LightOnOCR config dict (``vision_config``, ``text_config``, ``spatial_merge_size``)."""
        return cls(
            PixtralConfig.from_hf(c["vision_config"]),
            c["spatial_merge_size"],
            c["text_config"]["hidden_size"],
        )


# Kernels per op in eager PyTorch (transformers): RMSNorm 8 (see derivations.common.decoder); RoPE
# apply 14 (rotate_half and the products for q and k); the 2-D cos/sin table 12 (float, angles, then
# cos and sin each: trig, scale, two cats for the H-W layout, cast) plus 5 per image for its position
# grid (two aranges, meshgrid flattened twice, stack).
_ROPE_APPLY_KERNELS = 14
_ROPE_TABLE_KERNELS = 12
_POSITION_KERNELS_PER_IMAGE = 5


def _attention(e: PixtralConfig, batch, patches, packed: bool):
    t = batch * patches
    proj = dict(tokens=t, d_in=e.hidden, d_out=e.hidden, bias=False)
    if packed:  # per image: batch x heads independent (N x N) problems, no mask
        core = op(
            "attn_core",
            "sdpa",
            batch_heads=batch * e.heads,
            s_q=patches,
            s_k=patches,
            d_qk=e.head_dim,
            d_v=e.head_dim,
        )
    else:  # one (B*N x B*N) problem per head, masked to the diagonal blocks
        core = op(
            "attn_core",
            "sdpa",
            batch_heads=e.heads,
            s_q=t,
            s_k=t,
            d_qk=e.head_dim,
            d_v=e.head_dim,
            mask_elems=t * t,
        )
    return seq(
        "attn",
        op("q_proj", "linear", **proj, keep=True),
        op("k_proj", "linear", **proj, keep=True),
        op("v_proj", "linear", **proj, keep=True),
        op(
            "rope",
            "elementwise",
            elems=2 * t * e.hidden,
            fn="rope",
            kernels=1 if packed else _ROPE_APPLY_KERNELS,
            keep=True,
        ),
        core,
        op("o_proj", "linear", **proj),
    )


def tower(e: PixtralConfig, batch, patches, packed: bool, keep: bool = False):
    """The encoder over ``batch`` images of ``patches`` patches each, in one call; ``packed``: as vLLM
    runs it (attention per image, fused norms and RoPE, a conv per image), else as transformers does.
    The position table and the mask come first here (they read only shapes) and live through every
    layer; the conv output does too (the per-image views of it are kept for the positions)."""
    t, h = batch * patches, e.hidden
    norm = dict(tokens=t, dim=h, fused=packed)
    parts = [
        op(
            "rope_table",
            "elementwise",
            elems=2 * t * e.head_dim,
            fn="copy",
            kernels=_ROPE_TABLE_KERNELS + _POSITION_KERNELS_PER_IMAGE * batch,
            keep=True,
        )
    ]
    if not packed:  # torch.full of the (B*N)^2 mask, then one zeroed block per image
        parts.append(
            op("block_mask", "elementwise", elems=t * t, fn="copy", n_inputs=0, kernels=1 + batch, keep=True)
        )
    parts += [
        # a stride = kernel conv is one patch-sized dot product per output: t outputs of 1 x 1;
        # transformers convolves the padded batch at once, vLLM each image on its own
        op(
            "patch_conv",
            "conv2d",
            batch=t,
            c_in=e.channels,
            c_out=h,
            kernel=e.patch,
            in_hw=e.patch,
            out_hw=1,
            bias=False,
            keep=True,
            kernels=batch if packed else 1,
        ),
        op("flatten", "elementwise", elems=t * h, fn="copy"),  # torch.cat of the per-image [N, h] maps
        op("ln_pre", "rms_norm", **norm),
        repeat(
            "layers",
            e.layers,
            op("attention_norm", "rms_norm", **norm),
            _attention(e, batch, patches, packed),
            op("residual1", "elementwise", elems=t * h, n_inputs=2, keep=True),
            op("ffn_norm", "rms_norm", **norm),
            seq(
                "feed_forward",
                seq(  # silu(gate(x)) * up(x), left to right: gate's output dies after silu
                    "gated",
                    op("gate_proj", "linear", tokens=t, d_in=h, d_out=e.ff, bias=False),
                    op("silu", "elementwise", elems=t * e.ff, fn="silu", keep=True),
                    op("up_proj", "linear", tokens=t, d_in=h, d_out=e.ff, bias=False, keep=True),
                    op("mul", "elementwise", elems=t * e.ff, fn="mul", n_inputs=2),
                ),
                op("down_proj", "linear", tokens=t, d_in=e.ff, d_out=h, bias=False),
            ),
            op("residual2", "elementwise", elems=t * h, n_inputs=2),
        ),
    ]
    return seq("tower", *parts, keep=keep)


def projector(cfg: VisionConfig, batch, patches, tokens, fused: bool):
    """RMSNorm, 2 x 2 patch merger and the two-layer MLP on ``batch`` images of ``patches`` patches
    (``tokens`` merged positions each). The merger's per-image blocks live until it returns, its
    output until the projector does."""
    h, m2 = cfg.encoder.hidden, cfg.merge * cfg.merge
    rows = batch * tokens
    return seq(
        "projector",
        op("norm", "rms_norm", tokens=batch * patches, dim=h, fused=fused),
        seq(
            "patch_merger",
            op("unfold", "elementwise", elems=rows * m2 * h, fn="copy", kernels=batch, keep=True),
            op("cat", "elementwise", elems=rows * m2 * h, fn="copy"),
            op("merging_layer", "linear", tokens=rows, d_in=m2 * h, d_out=h, bias=False),
            keep=True,
        ),
        op("linear_1", "linear", tokens=rows, d_in=h, d_out=cfg.text_hidden, bias=False),
        op("act", "elementwise", elems=rows * cfg.text_hidden, fn="gelu"),
        op("linear_2", "linear", tokens=rows, d_in=cfg.text_hidden, d_out=cfg.text_hidden, bias=False),
    )


def vision(cfg: VisionConfig, batch, patches, tokens, packed: bool):
    """The vision stage: every image of the batch in one tower call, the projector, and the
    ``torch.cat`` of the per-image features into the image block. ``packed`` (vLLM): attention per
    image and fused norms/RoPE; else transformers' block-diagonal mask and eager ops."""
    return seq(
        "vision",
        tower(cfg.encoder, batch, patches, packed, keep=True),
        projector(cfg, batch, patches, tokens, packed),
        op("features", "elementwise", elems=batch * tokens * cfg.text_hidden, fn="copy"),
    )


def vision_weights(cfg: VisionConfig):
    """The vision modules once, for parameter counts."""
    return seq(
        "vision",
        tower(cfg.encoder, 1, 1, packed=True),
        projector(cfg, 1, cfg.merge * cfg.merge, 1, fused=False),
    )
