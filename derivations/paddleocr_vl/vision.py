"""PaddleOCR-VL's vision side: a NaViT-style SigLIP encoder at each image's own resolution, then a
projector that merges 2x2 patches into one image token of the decoder's width.

    tower(n images of p patches, one call) =
        embeddings: Conv2d(3, 1152, 14, stride 14) per patch + the learned 27x27 position grid
                    interpolated (bilinear) to the image's grid
        encoder:    27 x [LayerNorm -> q, k, v (1152 -> 1152) -> 2-D RoPE -> attention within each
                    image -> out_proj -> +x -> LayerNorm -> fc1 (1152 -> 4304) -> GELU(tanh)
                    -> fc2 -> +h]
        post_layernorm
    projector(one image) = LayerNorm(1152) -> 2x2 merge (4 x 1152 = 4608) -> Linear(4608, 4608)
                           -> GELU -> Linear(4608, 1024)

Sizes come from the checkpoint's ``config.json`` (``vision_config`` and the decoder's hidden size).
transformers 5.23 (``models/paddleocr_vl/modeling_paddleocr_vl.py``) packs the patches of every image
of a call into one sequence: the embeddings, norms, linears and MLPs run once over all of them and
``PaddleOCRVisionAttention`` calls SDPA image by image (the non-flash branch splits q, k, v by
``cu_seqlens``); the projector loops over images. vLLM (``vllm/model_executor/models/paddleocr_vl.py``,
``_process_image_input``) calls the tower once per image (fused qkv Linear, flash-attention varlen),
then the projector per image.

NB: FLOP counters see the patch Conv2d, every Linear and SDPA only: the position grid's interpolation
    is a 4-tap gather and weighted sum in transformers (``get_vision_interpolation_indices_and_weights``:
    embedding, mul, sum) and ``F.interpolate`` (``upsample_bilinear2d``, no FlopCounterMode formula) in
    vLLM; the vision RoPE is elementwise. They cost memory, traffic and launches here, no counted FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from symcost import Node, current, op, repeat, seq
from symcost.dtypes import FP32_BYTES

__all__ = ["VisionConfig", "tower", "projector"]


@dataclass(frozen=True)
class VisionConfig:
    hidden: int
    ff: int
    layers: int
    heads: int
    patch: int  # px per patch side
    channels: int
    merge: int  # patches per merged token side
    position_grid: int  # side of the learned position table (image_size // patch)
    llm_hidden: int  # the decoder's hidden size: the projector's output
    taps: int = 4  # bilinear interpolation: 2 x 2 table rows per patch

    @classmethod
    def from_hf(cls, c: dict) -> VisionConfig:
        """From a PaddleOCR-VL ``config.json`` dict (flat text keys, ``vision_config``)."""
        v = c["vision_config"]
        return cls(
            hidden=v["hidden_size"],
            ff=v["intermediate_size"],
            layers=v["num_hidden_layers"],
            heads=v["num_attention_heads"],
            patch=v["patch_size"],
            channels=v["num_channels"],
            merge=v["spatial_merge_size"],
            position_grid=v["image_size"] // v["patch_size"],
            llm_hidden=c["hidden_size"],
        )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def merged(self) -> int:
        """Width of a merged token: merge x merge patches side by side."""
        return self.merge * self.merge * self.hidden


def _holding(node: Node, **fields) -> Node:
    """``node`` with the bytes its eager op chain moves and holds (fields of its cost), where that
    chain has fp32 intermediates one elementwise formula cannot state."""
    return replace(node, own=replace(node.own, **fields))


def _position_embedding(cfg: VisionConfig, tokens, fused: bool) -> Node:
    """The learned grid resampled to every patch (bilinear, 4 table rows each).

    transformers: ``(position_embedding(indices) * weights[:, :, None]).sum(1)``: a bf16 gather of
    4 rows per patch, its product with fp32 weights (fp32, 4 rows), the sum (fp32), a cast; the
    gather and the product are live together. vLLM: ``F.interpolate`` of the table to the grid, one
    kernel, then ``repeat`` (a copy).
    """
    p = current()
    e, taps = tokens * cfg.hidden, cfg.taps
    table = cfg.position_grid * cfg.position_grid
    node = op("pos_embed", "embedding", tokens=taps * tokens, vocab=table, dim=cfg.hidden)
    if fused:
        return _holding(
            node,
            vector_flops=(2 * taps - 1) * e,
            act_read_bytes=e * p.act,
            act_write_bytes=2 * e * p.act,
            kernels=2,
            weight_read_bytes=table * cfg.hidden * p.weight,
            out_bytes=e * p.act,
            peak_bytes=2 * e * p.act,
        )
    gathered, weighted = taps * e * p.weight, taps * e * FP32_BYTES
    return _holding(
        node,
        vector_flops=(2 * taps - 1) * e,
        act_read_bytes=gathered + weighted + e * FP32_BYTES,
        act_write_bytes=gathered + weighted + e * FP32_BYTES + e * p.act,
        kernels=4,
        out_bytes=e * p.act,
        peak_bytes=gathered + weighted,
    )


def _rope(cfg: VisionConfig, tokens, fused: bool) -> Node:
    """2-D RoPE on q and k (``apply_rotary_pos_emb_vision``: computed in fp32).

    transformers, per tensor: ``x.float()``, ``x*cos``, ``rotate_half`` (neg, cat), ``*sin``, ``+``,
    cast back (14 kernels for q and k); at its busiest (k's sum) the fp32 copies of q and k, q's fp32
    result and k's three fp32 terms are live: 6 fp32 tensors of q's size (4 when activations are fp32
    already: ``.float()`` is then the tensor itself). vLLM: ``cat([q, k])`` and one fused kernel.
    """
    p = current()
    e = tokens * cfg.hidden  # elements of q (and of k)
    node = op("rope", "elementwise", elems=2 * e, fn="rope", kernels=2 if fused else 14, keep=True)
    if fused:
        return node
    copies = 2 * e * FP32_BYTES if p.act != FP32_BYTES else 0
    # per tensor and element: fp32 read by mul, neg (half), cat, mul, add (two), the cast back (6.5
    # elements) and written by the cast in, mul, neg (half), cat, mul, add (5.5)
    return _holding(
        node,
        act_read_bytes=2 * e * (p.act + 13 * FP32_BYTES // 2),
        act_write_bytes=2 * e * (p.act + 11 * FP32_BYTES // 2),
        kernels=14 if copies else 10,
        peak_bytes=copies + 4 * e * FP32_BYTES,
    )


def _attention(cfg: VisionConfig, images, patches, fused: bool) -> Node:
    t = images * patches
    h = cfg.hidden
    proj = dict(tokens=t, d_in=h, bias=True, keep=True)
    qkv = (
        [op("qkv_proj", "linear", d_out=3 * h, **proj)]  # vLLM: one QKVParallelLinear
        if fused
        else [op(f"{x}_proj", "linear", d_out=h, **proj) for x in "qkv"]
    )
    core = op(
        "attn_core",
        "sdpa",
        batch_heads=images * cfg.heads,
        s_q=patches,
        s_k=patches,
        d_qk=cfg.head_dim,
        d_v=cfg.head_dim,
        kernels=1 if fused else images,  # transformers: one SDPA call per image; vLLM: varlen
    )
    parts = [*qkv, _rope(cfg, t, fused), core]
    if not fused:  # the per-image outputs, made contiguous, concatenated
        parts.append(op("merge_heads", "elementwise", elems=t * h, fn="copy", kernels=2 * images))
    parts.append(op("out_proj", "linear", tokens=t, d_in=h, d_out=h, bias=True))
    return seq("attn", *parts)


def tower(cfg: VisionConfig, images, patches, fused: bool) -> Node:
    """One vision-tower call on ``images`` images of ``patches`` patches each, packed."""
    p = current()
    t = images * patches
    h = cfg.hidden
    norm = dict(tokens=t, dim=h)
    pixels = t * cfg.channels * cfg.patch * cfg.patch
    parts = []
    if p.act != FP32_BYTES:  # the processor's fp32 pixels cast to the tower's dtype, held by the call
        cast = op("pixels", "elementwise", elems=pixels, fn="copy", keep=True)
        parts.append(_holding(cast, act_read_bytes=pixels * FP32_BYTES))
    patch_embed = op(
        "patch_embed",
        "conv2d",
        batch=t,
        c_in=cfg.channels,
        c_out=h,
        kernel=cfg.patch,
        in_hw=cfg.patch,
        out_hw=1,
        bias=True,
        keep=True,
    )
    position = _position_embedding(cfg, t, fused)
    parts.append(seq("embeddings", patch_embed, position, op("add", "elementwise", elems=t * h, n_inputs=2)))
    # cos and sin of the 2-D positions, fp32 [t, head_dim] each, once per call
    cos_sin = 2 * t * cfg.head_dim
    rotary = op("rotary", "elementwise", elems=cos_sin, fn="copy", kernels=1 if fused else 8, keep=True)
    held = cos_sin * FP32_BYTES
    rotary = _holding(rotary, act_read_bytes=0, act_write_bytes=held, out_bytes=held, peak_bytes=held)
    layers = repeat(
        "layers",
        cfg.layers,
        op("layer_norm1", "layer_norm", **norm),
        _attention(cfg, images, patches, fused),
        op("residual1", "elementwise", elems=t * h, n_inputs=2, keep=True),
        op("layer_norm2", "layer_norm", **norm),
        seq(
            "mlp",
            op("fc1", "linear", tokens=t, d_in=h, d_out=cfg.ff),
            op("gelu", "elementwise", elems=t * cfg.ff, fn="gelu"),  # tanh approximation
            op("fc2", "linear", tokens=t, d_in=cfg.ff, d_out=h),
        ),
        op("residual2", "elementwise", elems=t * h, n_inputs=2),
    )
    parts += [seq("encoder", rotary, layers), op("post_layernorm", "layer_norm", **norm)]
    return seq("tower", *parts)


def projector(cfg: VisionConfig, tokens) -> Node:
    """One image's projector: ``tokens`` merged tokens (4 patches each)."""
    patches = cfg.merge * cfg.merge * tokens
    return seq(
        "projector",
        op("pre_norm", "layer_norm", tokens=patches, dim=cfg.hidden),
        op("merge", "elementwise", elems=patches * cfg.hidden, fn="copy"),  # 2x2 blocks side by side
        op("linear_1", "linear", tokens=tokens, d_in=cfg.merged, d_out=cfg.merged),
        op("gelu", "elementwise", elems=tokens * cfg.merged, fn="gelu"),
        op("linear_2", "linear", tokens=tokens, d_in=cfg.merged, d_out=cfg.llm_hidden),
    )
