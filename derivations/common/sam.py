"""SAM ViT-B image encoder with the neck and two stride-2 convs (both OCR families' front end).

``sam(cfg, batch, px)``: one call on ``batch`` square views of ``px`` pixels; ``px`` is an int
(it fixes every shape), ``batch`` may be symbolic (the tile count).

    patch_embed -> windowed blocks (14x14 windows, padded) and global blocks -> neck -> net2 -> net3

Attention: SDPA with the rel-pos bias as its mask (DeepSeek's SAM), or eager (``eager_attention``:
GOT-OCR2's, ``(q * scale) @ k^T + bias``, softmax in fp32, ``@ v``). A config without
``downsample`` convs ends at the neck (a model whose projector holds them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from symcost import SymcostError, current, op, repeat, seq, when
from symcost.dtypes import FP32_BYTES, building

__all__ = ["SamConfig", "sam", "down2"]


@dataclass(frozen=True)
class SamConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    window: int = 14
    global_blocks: tuple[int, ...] = (2, 5, 8, 11)
    patch: int = 16
    pos_grid: int = 64  # the absolute position table is pos_grid x pos_grid
    neck: int = 256
    downsample: tuple[int, ...] = (512, 1024)  # net_2, net_3 output channels; () = none
    mlp_ratio: int = 4
    neck_norm_aten: bool = False  # the neck's LayerNorm2d calls aten layer_norm (else elementwise)
    eager_attention: bool = False  # eager matmuls and an fp32 softmax (else SDPA, bias as mask)

    def __post_init__(self):  # heads split the width; the tail is two convs or none
        if self.width % self.heads:
            raise SymcostError(f"sam hidden_size: {self.width} is not a multiple of {self.heads} heads")
        if len(self.downsample) not in (0, 2):
            raise SymcostError(
                f"sam downsample_channels: {self.downsample} is not two channel counts or none"
            )

    @classmethod
    def from_hf(cls, c: dict) -> SamConfig:
        """From a dict with the keys of transformers' SAM vision config (or the vendor's
        ``sam_vit_b`` entry: width, layers, heads)."""

        def first(*keys):  # transformers' key, else the vendor's
            return next(c[k] for k in keys if k in c)

        return cls(
            width=first("hidden_size", "width"),
            layers=first("num_hidden_layers", "layers"),
            heads=first("num_attention_heads", "heads"),
            window=c.get("window_size", 14),
            global_blocks=tuple(c.get("global_attn_indexes", (2, 5, 8, 11))),
            patch=c.get("patch_size", 16),
            pos_grid=c.get("image_size", 1024) // c.get("patch_size", 16),
            neck=c.get("output_channels", 256),
            downsample=tuple(c.get("downsample_channels", (512, 1024))),
            mlp_ratio=int(c.get("mlp_ratio", 4)),
        )

    @property
    def out_channels(self) -> int:
        return self.downsample[-1] if self.downsample else self.neck

    def grid(self, px: int) -> int:
        """Side of the output map for a ``px`` view."""
        g = px // self.patch
        return down2(down2(g)) if self.downsample else g


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def down2(x: int) -> int:
    """Output side of a 3x3 stride-2 pad-1 conv."""
    return (x + 2 - 3) // 2 + 1


def _rel(name: str, heads, hw: int, side: int, head_dim: int, keep: bool = False):
    """One decomposed rel-pos einsum, ``q . R`` along one axis: ``[heads, hw, side]``."""
    return op(
        name,
        "einsum",
        out_elems=heads * hw * side,
        contracted=head_dim,
        operand_elems=heads * hw * head_dim + side * side * head_dim,
        keep=keep,
    )


def _eager_core(heads, hw: int, side: int, head_dim: int, rel_len: int, merged):
    """Eager attention over ``heads`` (batch x windows x heads) maps of ``hw`` tokens, as
    transformers' GOT-OCR2 runs it: ``(q * scale) @ k^T + bias``, softmax in fp32 (a cast up,
    the softmax, a cast back), ``@ v``, heads merged back (a copy of ``merged`` elements).

    The bias is built first (transformers builds it just after the scores): the same bytes are
    live at the add either way, and the liveness walk needs each input next to its reader. The
    bias stays live to the end of the attention (a local of its forward); rel_h and rel_w die
    with the function that makes them.
    NB: the layer also keeps the probabilities (returned as ``attn_weights``) through its MLP;
    that is below the softmax's peak and is left out.
    """
    scores = heads * hw * hw
    p = current()
    if p.act == FP32_BYTES:
        softmax = [op("softmax", "softmax", elems=scores)]
    else:  # softmax(x, dtype=float32) on bf16: x.to(fp32), softmax in fp32, then .to(bf16)
        up = op("to_fp32", "cast", elems=scores)
        with building(replace(p, act=FP32_BYTES)):
            softmax = [
                up,
                op("softmax", "softmax", elems=scores),
                op("to_act", "cast", elems=scores, to_bytes=p.act),
            ]
    return [
        seq(
            "decomposed_rel_pos",
            _rel("rel_h", heads, hw, side, head_dim, keep=True),
            _rel("rel_w", heads, hw, side, head_dim),
            op("bias", "elementwise", elems=scores, n_inputs=0),  # its reads neglected, as above
            keep=True,
        ),
        op("rel_pos", "parameter", elems=2 * rel_len * head_dim),
        op("q_scale", "elementwise", elems=heads * hw * head_dim, fn="mul"),
        op("scores", "bmm", batch=heads, m=hw, k=head_dim, n=hw),
        op("bias_add", "elementwise", elems=scores, n_inputs=2),
        seq("softmax", *softmax),
        op("pv", "bmm", batch=heads, m=hw, k=hw, n=head_dim),
        op("merge_heads", "elementwise", elems=merged, fn="copy"),
    ]


def _block(cfg: SamConfig, name: str, batch, g: int, windowed: bool, count: int):
    """A pre-LN ViT block; windowed blocks attend in windows over the zero-padded map."""
    c, w = cfg.width, cfg.window
    head_dim = c // cfg.heads
    tokens = batch * g * g
    if windowed:
        gp = _ceil_to(g, w)
        side, groups, attn_tokens = w, batch * (gp // w) ** 2, batch * gp * gp
    else:
        side, groups, attn_tokens = g, batch, tokens
    heads = groups * cfg.heads  # batch * windows * heads
    hw = side * side
    bias_elems = heads * hw * hw  # rel-pos bias, materialised as SDPA's attn_mask
    rel_len = 2 * (w if windowed else cfg.pos_grid) - 1
    attn = [op("qkv", "linear", tokens=attn_tokens, d_in=c, d_out=3 * c, keep=True)]
    # q, k, v = qkv.reshape(3, batch*heads, hw, -1): a view at batch 1, a copy when windows or
    # images share the batch dimension (when() gates every figure of the op, kernels included)
    split = op("qkv_split", "elementwise", elems=3 * attn_tokens * c, fn="copy", keep=True)
    attn.append(split if windowed else when(batch >= 2, split))
    if cfg.eager_attention:
        attn += _eager_core(heads, hw, side, head_dim, rel_len, attn_tokens * c)
    else:
        attn += [
            # decomposed rel-pos on the unscaled q: rel_h = q.Rh, rel_w = q.Rw (two einsums)
            _rel("rel_h", heads, hw, side, head_dim, keep=True),
            _rel("rel_w", heads, hw, side, head_dim, keep=True),
            # rel_h[..., None] + rel_w[..., None, :]; its reads (side/hw of the output) are neglected
            op("rel_pos_bias", "elementwise", elems=bias_elems, n_inputs=0),
            op("rel_pos", "parameter", elems=2 * rel_len * head_dim),
            op(
                "attn_core",
                "sdpa",
                batch_heads=heads,
                s_q=hw,
                s_k=hw,
                d_qk=head_dim,
                d_v=head_dim,
                mask_elems=bias_elems,
            ),
        ]
    attn.append(op("proj", "linear", tokens=attn_tokens, d_in=c, d_out=c))
    if windowed:  # pad and split into windows, then merge and crop back: two copies each way
        attn.insert(0, op("partition", "elementwise", elems=attn_tokens * c, fn="copy", kernels=2))
        attn.append(op("unpartition", "elementwise", elems=tokens * c, fn="copy", kernels=2))
    return repeat(
        name,
        count,
        op("norm1", "layer_norm", tokens=tokens, dim=c),
        seq("attn", *attn),
        op("residual1", "elementwise", elems=tokens * c, n_inputs=2, keep=True),
        op("norm2", "layer_norm", tokens=tokens, dim=c),
        op("fc1", "linear", tokens=tokens, d_in=c, d_out=cfg.mlp_ratio * c),
        op("gelu", "elementwise", elems=tokens * cfg.mlp_ratio * c, fn="gelu"),
        op("fc2", "linear", tokens=tokens, d_in=cfg.mlp_ratio * c, d_out=c),
        op("residual2", "elementwise", elems=tokens * c, n_inputs=2),
    )


def sam(cfg: SamConfig, batch, px: int, keep: bool = False):
    """Patch embed, windowed + global blocks, neck, net_2, net_3 (``keep``: the map is read
    again after the next op, e.g. by a projector).

    Block order does not change any count, so the tree groups blocks by kind.
    NB: the vendor's (v1) neck LayerNorm2d is hand-written from elementwise ops, which counters
    miss; transformers' (OCR-2) subclasses nn.LayerNorm, which fvcore counts.
    """
    g = px // cfg.patch
    c, neck = cfg.width, cfg.neck
    n_global = len(cfg.global_blocks)
    return seq(
        "sam",
        seq(
            "patch_embed",
            op(
                "conv",
                "conv2d",
                batch=batch,
                c_in=3,
                c_out=c,
                kernel=cfg.patch,
                in_hw=px,
                out_hw=g,
                bias=True,
            ),
            op("pos_embed", "parameter", elems=cfg.pos_grid * cfg.pos_grid * c),
            op("pos_add", "elementwise", elems=batch * g * g * c, n_inputs=2),
        ),
        *[
            _block(cfg, name, batch, g, windowed=windowed, count=count)
            for name, windowed, count in (
                ("win_blocks", True, cfg.layers - n_global),
                ("glob_blocks", False, n_global),
            )
            if count  # a kind of block the config has none of (a reduced model) is no node
        ],
        seq(
            "neck",
            op("conv1", "conv2d", batch=batch, c_in=c, c_out=neck, kernel=1, in_hw=g, out_hw=g),
            op("norm1", "layer_norm", tokens=batch * g * g, dim=neck, aten=cfg.neck_norm_aten),
            op("conv2", "conv2d", batch=batch, c_in=neck, c_out=neck, kernel=3, in_hw=g, out_hw=g),
            op("norm2", "layer_norm", tokens=batch * g * g, dim=neck, aten=cfg.neck_norm_aten),
        ),
        *_tail(cfg, batch, g),
        keep=keep,
    )


def _tail(cfg: SamConfig, batch, g: int):
    """net_2 and net_3: two 3x3 stride-2 convs (none when the config has no downsample)."""
    if not cfg.downsample:
        return []
    g2, g4 = down2(g), down2(down2(g))
    c2, c3 = cfg.downsample
    return [
        op("net2", "conv2d", batch=batch, c_in=cfg.neck, c_out=c2, kernel=3, in_hw=g, out_hw=g2),
        op("net3", "conv2d", batch=batch, c_in=c2, c_out=c3, kernel=3, in_hw=g2, out_hw=g4),
    ]
