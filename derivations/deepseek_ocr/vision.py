"""DeepSeek-OCR vision encoder: SAM-B -> CLIP-L -> linear projector (ARCHITECTURE.md §4-6).

Each function returns a cost tree for one call on ``batch`` square views of ``px`` pixels.
``px`` is a concrete int (it fixes every shape); ``batch`` may be symbolic (the tile count).
"""
from __future__ import annotations

from symcost import op, repeat, seq

__all__ = ["sam", "clip", "projector", "view", "SAM_OUT_CHANNELS"]

C = 768                # SAM width
HEADS, HEAD_DIM = 12, 64
WINDOW = 14
PATCH = 16
NECK = 256
SAM_OUT_CHANNELS = 1024
CLIP_W, CLIP_HEADS, CLIP_MLP, CLIP_POS = 1024, 16, 4096, 257
LLM_HIDDEN = 1280


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def _down2(x: int) -> int:
    """Output side of a 3x3 stride-2 pad-1 conv."""
    return (x + 2 - 3) // 2 + 1


def _sam_block(name: str, batch, g: int, windowed: bool, count: int):
    """A pre-LN ViT block; windowed blocks attend in 14x14 windows over the zero-padded map."""
    tokens = batch * g * g
    if windowed:
        gp = _ceil_to(g, WINDOW)
        side, groups, attn_tokens = WINDOW, batch * (gp // WINDOW) ** 2, batch * gp * gp
    else:
        side, groups, attn_tokens = g, batch, tokens
    heads = groups * HEADS                  # batch * windows * heads
    hw = side * side
    bias_elems = heads * hw * hw            # rel-pos bias, materialised as SDPA's attn_mask
    q_elems = heads * hw * HEAD_DIM
    return repeat(
        name, count,
        op("norm1", "layer_norm", tokens=tokens, dim=C),
        op("qkv", "linear", tokens=attn_tokens, d_in=C, d_out=3 * C),
        # decomposed rel-pos on the unscaled q: rel_h = q.Rh, rel_w = q.Rw (two einsums)
        op("rel_h", "einsum", out_elems=heads * hw * side, contracted=HEAD_DIM,
           operand_elems=q_elems + side * side * HEAD_DIM),
        op("rel_w", "einsum", out_elems=heads * hw * side, contracted=HEAD_DIM,
           operand_elems=q_elems + side * side * HEAD_DIM),
        # rel_h[..., None] + rel_w[..., None, :]; its reads (side/hw of the output) are neglected
        op("rel_pos_bias", "elementwise", elems=bias_elems, n_inputs=0),
        op("rel_pos", "parameter", elems=2 * (2 * (WINDOW if windowed else 64) - 1) * HEAD_DIM),
        op("attn_core", "sdpa", batch_heads=heads, s_q=hw, s_k=hw, d_qk=HEAD_DIM,
           d_v=HEAD_DIM, mask_elems=bias_elems),
        op("proj", "linear", tokens=attn_tokens, d_in=C, d_out=C),
        op("residual1", "elementwise", elems=tokens * C, n_inputs=2),
        op("norm2", "layer_norm", tokens=tokens, dim=C),
        op("fc1", "linear", tokens=tokens, d_in=C, d_out=4 * C),
        op("gelu", "elementwise", elems=tokens * 4 * C, fn="gelu"),
        op("fc2", "linear", tokens=tokens, d_in=4 * C, d_out=C),
        op("residual2", "elementwise", elems=tokens * C, n_inputs=2),
    )


def sam(batch, px: int):
    """SAM-B: patch embed, 8 windowed + 4 global blocks (vendor order 2,5,8,11 global), neck, net_2, net_3.

    Block order does not change any count, so the tree groups blocks by kind.
    """
    g = px // PATCH
    g2 = _down2(g)
    g4 = _down2(g2)
    return seq(
        "sam",
        seq("patch_embed",
            op("conv", "conv2d", batch=batch, c_in=3, c_out=C, kernel=PATCH, in_hw=px, out_hw=g,
               bias=True),
            op("pos_embed", "parameter", elems=64 * 64 * C),
            op("pos_add", "elementwise", elems=batch * g * g * C, n_inputs=2)),
        _sam_block("win_blocks", batch, g, windowed=True, count=8),
        _sam_block("glob_blocks", batch, g, windowed=False, count=4),
        seq("neck",
            op("conv1", "conv2d", batch=batch, c_in=C, c_out=NECK, kernel=1, in_hw=g, out_hw=g),
            op("norm1", "layer_norm", tokens=batch * g * g, dim=NECK, aten=False),
            op("conv2", "conv2d", batch=batch, c_in=NECK, c_out=NECK, kernel=3, in_hw=g, out_hw=g),
            op("norm2", "layer_norm", tokens=batch * g * g, dim=NECK, aten=False)),
        op("net2", "conv2d", batch=batch, c_in=NECK, c_out=2 * NECK, kernel=3, in_hw=g, out_hw=g2),
        op("net3", "conv2d", batch=batch, c_in=2 * NECK, c_out=SAM_OUT_CHANNELS, kernel=3,
           in_hw=g2, out_hw=g4),
    )


def clip(batch, g4: int):
    """CLIP-L on the SAM map as patch tokens (+ CLS); its own patch conv is never run."""
    n = g4 * g4 + 1
    tokens = batch * n
    return seq(
        "clip",
        seq("embeddings",
            op("patch_conv_unused", "parameter", elems=3 * 14 * 14 * CLIP_W),
            op("class_embedding", "parameter", elems=CLIP_W),
            op("position_embedding", "parameter", elems=CLIP_POS * CLIP_W),
            op("pos_add", "elementwise", elems=tokens * CLIP_W, n_inputs=2)),
        op("pre_layrnorm", "layer_norm", tokens=tokens, dim=CLIP_W),
        repeat("layers", 24,
               op("norm1", "layer_norm", tokens=tokens, dim=CLIP_W),
               op("qkv", "linear", tokens=tokens, d_in=CLIP_W, d_out=3 * CLIP_W),
               op("attn_core", "sdpa", batch_heads=batch * CLIP_HEADS, s_q=n, s_k=n,
                  d_qk=CLIP_W // CLIP_HEADS, d_v=CLIP_W // CLIP_HEADS),
               op("out_proj", "linear", tokens=tokens, d_in=CLIP_W, d_out=CLIP_W),
               op("residual1", "elementwise", elems=tokens * CLIP_W, n_inputs=2),
               op("norm2", "layer_norm", tokens=tokens, dim=CLIP_W),
               op("fc1", "linear", tokens=tokens, d_in=CLIP_W, d_out=CLIP_MLP),
               op("quick_gelu", "elementwise", elems=tokens * CLIP_MLP, fn="quick_gelu"),
               op("fc2", "linear", tokens=tokens, d_in=CLIP_MLP, d_out=CLIP_W),
               op("residual2", "elementwise", elems=tokens * CLIP_W, n_inputs=2)),
    )


def projector(batch, g4: int):
    """concat(CLIP tokens without CLS, SAM map) [.., 2048] -> Linear(2048, 1280)."""
    return op("projector", "linear", tokens=batch * g4 * g4, d_in=CLIP_W + SAM_OUT_CHANNELS,
              d_out=LLM_HIDDEN)


def view(name: str, batch, px: int):
    """One encoder call on ``batch`` views of ``px`` x ``px``."""
    g4 = _down2(_down2(px // PATCH))
    return seq(name, sam(batch, px), clip(batch, g4), projector(batch, g4))
