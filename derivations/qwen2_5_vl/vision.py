"""Qwen2.5-VL's vision tower (transformers 5.23 ``Qwen2_5_VisionTransformerPretrainedModel``): one
call on every image of a batch, the patches of all images concatenated.

    patch_embed (Conv3d 2x14x14, as a matmul per patch) -> 2-D RoPE table (h, w)
    -> reorder into windows -> blocks (windowed attention, full attention at fullatt_block_indexes)
    -> merger (RMSNorm, 2x2 patches -> Linear(4C, 4C), GELU, Linear(4C, out)) -> original order

An image of ``w x h`` tokens (28 px each) has ``4 w h`` patches. Windows: 112 px = 4 x 4 tokens
(64 patches); ``get_window_index`` pads the token grid to whole windows and drops the padding, so
windows are whole (4 x 4) but for one column of ``w mod 4`` tokens and one row of ``h mod 4``:

    interior ``floor(w/4) floor(h/4)`` windows of 16 tokens; right edge ``floor(h/4)`` of
    ``4 (w mod 4)``; bottom edge ``floor(w/4)`` of ``4 (h mod 4)``; corner one of
    ``(w mod 4)(h mod 4)`` (a class is absent where its mod is 0: the padded windows are empty
    and ``unique_consecutive`` drops them)

so the attention work is ``sum n_i^2 = 16 (16 floor(h/4) + (h mod 4)^2)(16 floor(w/4) + (w mod 4)^2)``
patches squared per image: piecewise in the grid, but a polynomial in (w, h, w mod 4, h mod 4), the
layout's four outputs (``floor(w/4) = (w - w mod 4)/4``), so closed forms need no floor.
NB: transformers (sdpa, eager) splits q, k, v at ``cu_seqlens`` and calls SDPA once per window (and
once per image in the full-attention blocks): FlopCounterMode sees each call's own square, no
padding, no mask. vLLM runs one flash-attention varlen call per block over all windows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from symcost import SymcostError, current, op, repeat, seq
from symcost.dtypes import FP32_BYTES

__all__ = ["VisionConfig", "tower", "windows"]

# Kernels per op in transformers' eager code: the RoPE apply (apply_rotary_pos_emb_vision: q, k
# upcast, x*cos, rotate_half = neg + cat, *sin, +, cast back; for q and k); the table (positions
# x inv_freq, cos, scale, sin, scale, two cats each for cos and sin, then two index gathers).
_ROPE_APPLY_KERNELS = 14
_ROPE_TABLE_KERNELS = 11


@dataclass(frozen=True)
class VisionConfig:
    hidden: int  # C
    ff: int  # SwiGLU width
    depth: int
    heads: int
    patch: int  # px
    temporal_patch: int  # frames per patch (an image is repeated to fill them)
    in_channels: int
    merge: int  # patches per merged token, per side
    window_px: int  # attention window side
    full_blocks: tuple[int, ...]  # blocks with full attention
    out_hidden: int  # the merger's output: the decoder's width

    def __post_init__(self):  # whole heads, whole windows of merged tokens, blocks that exist
        if self.hidden % self.heads:
            raise SymcostError(f"vision hidden_size: {self.hidden} is not a multiple of {self.heads} heads")
        if self.window_px % (self.patch * self.merge):
            raise SymcostError(f"vision window_size: {self.window_px} is not whole merged tokens")
        if any(not 0 <= b < self.depth for b in self.full_blocks):
            raise SymcostError(
                f"vision fullatt_block_indexes: {self.full_blocks} outside 0..{self.depth - 1}"
            )

    @classmethod
    def from_hf(cls, c: dict) -> VisionConfig:
        """From a Qwen2.5-VL ``vision_config`` dict."""
        return cls(
            hidden=c["hidden_size"],
            ff=c["intermediate_size"],
            depth=c["depth"],
            heads=c["num_heads"],
            patch=c["patch_size"],
            temporal_patch=c["temporal_patch_size"],
            in_channels=c.get("in_channels", c.get("in_chans", 3)),
            merge=c["spatial_merge_size"],
            window_px=c["window_size"],
            full_blocks=tuple(c["fullatt_block_indexes"]),
            out_hidden=c["out_hidden_size"],
        )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def window(self) -> int:
        """Merged tokens per window side."""
        return self.window_px // (self.patch * self.merge)

    @property
    def unit(self) -> int:
        """Patches per merged token."""
        return self.merge * self.merge


def windows(cfg: VisionConfig, w_tokens, h_tokens, w_rest, h_rest) -> tuple[tuple[str, Any, Any, Any], ...]:
    """The window classes of one image of ``w_tokens x h_tokens`` tokens whose last window column
    and row hold ``w_rest`` and ``h_rest`` tokens (``tokens mod 4``; 0: no partial one):
    ``(name, windows, merged tokens per window, SDPA calls)``.

    A class absent for a rest of 0 still counts its windows but has size 0, so every cost that
    grows with the size is right as a polynomial; only the calls (kernel launches) need the
    indicator ``rest > 0``. Polynomial in the four inputs (ints or SymPy symbols alike), so
    compiled programs need no floor division and closed forms no Min."""
    k = cfg.window
    w_full, h_full = _whole(w_tokens - w_rest, k), _whole(h_tokens - h_rest, k)
    w_edge, h_edge = _nonzero(w_rest, k), _nonzero(h_rest, k)
    return (
        ("interior", w_full * h_full, k * k, w_full * h_full),
        ("right_edge", h_full, k * w_rest, h_full * w_edge),
        ("bottom_edge", w_full, k * h_rest, w_full * h_edge),
        ("corner", 1, w_rest * h_rest, w_edge * h_edge),
    )


def _whole(x, k: int):
    """``x / k`` for an ``x`` that ``k`` divides: an int for ints, a rational multiple for SymPy."""
    return x // k if isinstance(x, int) else x / k


def _nonzero(r, k: int):
    """1 where ``r`` (in 0..k-1) is positive, else 0: for SymPy, the polynomial
    ``1 - prod_j (1 - r/j)`` over j = 1..k-1, which takes those values there."""
    if isinstance(r, int):
        return int(r > 0)
    return sp.expand(1 - sp.Mul(*[1 - r / sp.Integer(j) for j in range(1, k)]))


def _rope(tokens, dim: int, fused: bool):
    """``apply_rotary_pos_emb_vision`` on q and k (``tokens`` rows of ``dim`` each).

    HF upcasts q and k to fp32 and builds ``x*cos + rotate_half(x)*sin`` there, then casts back:
    at its busiest (k's last add) q and k in fp32, q's result, and two fp32 temporaries of k's
    are live: 6 fp32 tensors of one of them (4 where activations are fp32 already). vLLM: one
    fused kernel in the activation dtype.
    """
    node = op(
        "rope",
        "elementwise",
        elems=2 * tokens * dim,
        fn="rope",
        kernels=1 if fused else _ROPE_APPLY_KERNELS,
        keep=True,
    )
    if fused:
        return node
    one = tokens * dim * FP32_BYTES  # one of q, k in fp32
    upcast = current().act != FP32_BYTES
    # reads q, k and the fp32 intermediates; writes the upcasts, 5 fp32 steps each, the casts back
    cost = replace(
        node.own,
        act_read_bytes=node.own.act_read_bytes + 12 * one,
        act_write_bytes=node.own.act_write_bytes + (2 * upcast + 10) * one,
        peak_bytes=(4 + 2 * upcast) * one,
    )
    return replace(node, own=cost)


def _attention(cfg: VisionConfig, batch, grid, full: bool, fused: bool):
    """qkv, RoPE, SDPA per window (or per image), the heads merged back, proj."""
    c, d = cfg.hidden, cfg.head_dim
    w_tokens, h_tokens, w_rest, h_rest = grid
    n = batch * cfg.unit * w_tokens * h_tokens  # patches in the call
    if full:  # one SDPA call per image over all its patches
        patches = cfg.unit * w_tokens * h_tokens
        cores = [
            op(
                "attn_core",
                "sdpa",
                batch_heads=batch * cfg.heads,
                s_q=patches,
                s_k=patches,
                d_qk=d,
                d_v=d,
                kernels=1 if fused else batch,
                keep=True,
            )
        ]
        calls = batch
    else:
        cores, calls = [], 0
        for k, (name, count, size, launches) in enumerate(windows(cfg, *grid)):
            calls += batch * launches
            s = cfg.unit * size
            cores.append(
                op(
                    name,
                    "sdpa",
                    batch_heads=batch * count * cfg.heads,
                    s_q=s,
                    s_k=s,
                    d_qk=d,
                    d_v=d,
                    # HF: one call per window; vLLM: one varlen call for all (put on the first class)
                    kernels=(1 if k == 0 else 0) if fused else batch * launches,
                    keep=True,
                )
            )
    # every call's output stays live (the list HF concatenates) until the module returns
    return seq(
        "attn",
        op("qkv", "linear", tokens=n, d_in=c, d_out=3 * c, keep=True),
        _rope(n, c, fused),
        *cores,
        # HF: each call's output made contiguous, then one cat; vLLM: one copy
        op("merge_heads", "elementwise", elems=n * c, fn="copy", kernels=1 if fused else calls + 1),
        op("proj", "linear", tokens=n, d_in=c, d_out=c),
    )


def _block(cfg: VisionConfig, name: str, count: int, batch, grid, full: bool, fused: bool):
    """Pre-norm block: RMSNorm, attention, +x, RMSNorm, SwiGLU (with biases), +h."""
    c, f = cfg.hidden, cfg.ff
    n = batch * cfg.unit * grid[0] * grid[1]
    norm = dict(tokens=n, dim=c, fused=fused)
    return repeat(
        name,
        count,
        op("norm1", "rms_norm", **norm),
        _attention(cfg, batch, grid, full, fused),
        op("residual1", "elementwise", elems=n * c, n_inputs=2, keep=True),
        op("norm2", "rms_norm", **norm),
        seq(  # down(silu(gate(x)) * up(x)): gate is freed once silu has read it
            "mlp",
            op("gate_proj", "linear", tokens=n, d_in=c, d_out=f),
            op("silu", "elementwise", elems=n * f, fn="silu", keep=True),
            op("up_proj", "linear", tokens=n, d_in=c, d_out=f),
            op("mul", "elementwise", elems=n * f, fn="mul", n_inputs=2),
            op("down_proj", "linear", tokens=n, d_in=f, d_out=c),
        ),
        op("residual2", "elementwise", elems=n * c, n_inputs=2),
    )


def tower(cfg: VisionConfig, batch, grid, fused: bool, name: str = "vision"):
    """One tower call on ``batch`` images of ``grid = (w_tokens, h_tokens, w_rest, h_rest)`` each
    (see :func:`windows`); ``fused``: vLLM's kernels (fused norms and RoPE, one varlen attention
    call per block)."""
    c = cfg.hidden
    w_tokens, h_tokens = grid[:2]
    n = batch * cfg.unit * w_tokens * h_tokens
    tokens = batch * w_tokens * h_tokens
    pixels = cfg.in_channels * cfg.temporal_patch * cfg.patch * cfg.patch  # per patch
    n_full = len(cfg.full_blocks)
    return seq(
        name,
        # get_image_features casts the processor's fp32 pixels to the model's dtype
        op("to_dtype", "elementwise", elems=n * pixels, fn="copy"),
        op(
            "patch_embed",
            "conv2d",  # Conv3d whose kernel is the whole patch: frames fold into channels
            batch=n,
            c_in=cfg.in_channels * cfg.temporal_patch,
            c_out=c,
            kernel=cfg.patch,
            in_hw=cfg.patch,
            out_hw=1,
        ),
        # cos/sin for the (h, w) positions, reordered into windows: fp32 [n, head_dim] each
        op(
            "rotary",
            "elementwise",
            elems=2 * n * cfg.head_dim * (FP32_BYTES // current().act),
            fn="copy",
            kernels=1 if fused else _ROPE_TABLE_KERNELS,
            keep=True,
        ),
        op("window_order", "elementwise", elems=n * c, fn="copy"),
        _block(cfg, "window_blocks", cfg.depth - n_full, batch, grid, full=False, fused=fused),
        _block(cfg, "full_blocks", n_full, batch, grid, full=True, fused=fused),
        seq(
            "merger",
            op("ln_q", "rms_norm", tokens=n, dim=c, fused=fused),
            op("fc1", "linear", tokens=tokens, d_in=cfg.unit * c, d_out=cfg.unit * c),
            op("gelu", "elementwise", elems=tokens * cfg.unit * c, fn="gelu"),
            op("fc2", "linear", tokens=tokens, d_in=cfg.unit * c, d_out=cfg.out_hidden),
        ),
        op("image_order", "elementwise", elems=tokens * cfg.out_hidden, fn="copy"),
    )
