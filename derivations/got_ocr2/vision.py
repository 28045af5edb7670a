"""GOT-OCR2 vision tower: SAM ViT-B to its neck, then the projector (two stride-2 convs and a
Linear), on views that are all resized to one square size.

    tower(n views of px^2) = sam (patch 16, 12 blocks with eager attention, neck to 256 channels)
                             -> projector: conv_upsampler1 (256 -> 512, stride 2)
                                           -> conv_upsampler2 (512 -> 1024, stride 2)
                                           -> (px/64)^2 tokens -> Linear(1024, 1024)

transformers 5.23 ``models/got_ocr2/modeling_got_ocr2.py``: ``GotOcr2VisionEncoder`` (the SAM, whose
``GotOcr2VisionAttention`` is eager whatever the attention implementation: ``(q * scale) @ k^T``
plus the decomposed rel-pos bias, softmax in fp32, ``@ v``; its neck's ``GotOcr2LayerNorm``
subclasses ``nn.LayerNorm``, an aten layer_norm) and ``GotOcr2MultiModalProjector``.
"""

from __future__ import annotations

from dataclasses import dataclass

from symcost import SymcostError, op, seq

from ..common.sam import SamConfig, down2, sam

__all__ = ["VISION_DEFAULTS", "VisionConfig", "tower"]

# transformers 5.23 ``GotOcr2VisionConfig`` defaults: the checkpoint's ``vision_config`` is empty
# (``{"model_type": ""}``), so the class defaults are the model (tests check them against the class)
VISION_DEFAULTS = {
    "hidden_size": 768,
    "output_channels": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 1024,
    "patch_size": 16,
    "qkv_bias": True,
    "use_abs_pos": True,
    "use_rel_pos": True,
    "window_size": 14,
    "global_attn_indexes": [2, 5, 8, 11],
    "mlp_dim": 3072,
}


@dataclass(frozen=True)
class VisionConfig:
    sam: SamConfig  # ends at the neck: the stride-2 convs belong to the projector
    px: int  # every view's side (the SAM's image_size: its patch embedding refuses any other)
    text_hidden: int  # the projector's output width (the decoder's hidden size)

    @classmethod
    def from_hf(cls, vision: dict, text_hidden: int) -> VisionConfig:
        """From a ``GotOcr2VisionConfig`` dict (missing keys take the class defaults)."""
        c = VISION_DEFAULTS | {k: x for k, x in vision.items() if k != "model_type"}
        for flag in ("qkv_bias", "use_abs_pos", "use_rel_pos"):
            if not c[flag]:
                raise SymcostError(f"vision_config {flag}: false is not modelled (the checkpoint has true)")
        if c["num_channels"] != 3 or c["mlp_dim"] % c["hidden_size"]:
            raise SymcostError("vision_config: num_channels must be 3 and mlp_dim a multiple of hidden_size")
        sam_cfg = SamConfig(
            width=c["hidden_size"],
            layers=c["num_hidden_layers"],
            heads=c["num_attention_heads"],
            window=c["window_size"],
            global_blocks=tuple(c["global_attn_indexes"]),
            patch=c["patch_size"],
            pos_grid=c["image_size"] // c["patch_size"],
            neck=c["output_channels"],
            downsample=(),
            mlp_ratio=c["mlp_dim"] // c["hidden_size"],
            neck_norm_aten=True,
            eager_attention=True,
        )
        return cls(sam_cfg, c["image_size"], text_hidden)

    @property
    def tokens_per_view(self) -> int:
        """Feature rows one view becomes: the neck's map after two stride-2 convs."""
        return down2(down2(self.sam.grid(self.px))) ** 2


def projector(cfg: VisionConfig, views):
    """``GotOcr2MultiModalProjector`` on the neck's maps: two 3x3 stride-2 convs (no bias), then a
    Linear with bias on every token."""
    g = cfg.sam.grid(cfg.px)
    g2, g4 = down2(g), down2(down2(g))
    mid = 2 * cfg.sam.neck
    return seq(
        "projector",
        op(
            "conv_upsampler1",
            "conv2d",
            batch=views,
            c_in=cfg.sam.neck,
            c_out=mid,
            kernel=3,
            in_hw=g,
            out_hw=g2,
        ),
        op(
            "conv_upsampler2",
            "conv2d",
            batch=views,
            c_in=mid,
            c_out=cfg.text_hidden,
            kernel=3,
            in_hw=g2,
            out_hw=g4,
        ),
        op(
            "multimodal_projector",
            "linear",
            tokens=views * g4 * g4,
            d_in=cfg.text_hidden,
            d_out=cfg.text_hidden,
        ),
    )


def tower(cfg: VisionConfig, views, name: str = "vision"):
    """One ``get_image_features`` call on ``views`` views of ``px`` x ``px`` (a symbolic count)."""
    return seq(name, sam(cfg.sam, views, cfg.px), projector(cfg, views))
