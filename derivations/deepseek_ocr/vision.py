"""DeepSeek-OCR vision tower: SAM-B -> CLIP-L -> linear projector, per view.

Each function returns a cost tree for one call on ``batch`` square views of ``px`` pixels.
``px`` is a concrete int (it fixes every shape); ``batch`` may be symbolic (the tile count).
"""

from __future__ import annotations

from dataclasses import dataclass

from symcost import op, repeat, seq

from ..common.sam import SamConfig, sam

__all__ = ["ClipConfig", "VisionConfig", "clip", "projector", "view"]


@dataclass(frozen=True)
class ClipConfig:
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp: int = 4096
    patch: int = 14
    image_size: int = 224

    @property
    def positions(self) -> int:
        """Rows of the position table: the class token and a (224/14)^2 grid."""
        return (self.image_size // self.patch) ** 2 + 1


@dataclass(frozen=True)
class VisionConfig:
    sam: SamConfig
    clip: ClipConfig
    llm_hidden: int

    @classmethod
    def from_hf(cls, c: dict) -> VisionConfig:
        """From the vendor's ``config.json`` (``vision_config.width`` holds both encoders)."""
        enc = c["vision_config"]["width"]
        cl = enc["clip-l-14-224"]
        return cls(
            SamConfig.from_hf(enc["sam_vit_b"]),
            ClipConfig(
                width=cl["width"],
                layers=cl["layers"],
                heads=cl["heads"],
                mlp=4 * cl["width"],
                patch=cl["patch_size"],
                image_size=cl["image_size"],
            ),
            c["projector_config"]["n_embed"],
        )


def clip(cfg: ClipConfig, batch, g4):
    """CLIP-L on the SAM map as patch tokens (+ CLS); its own patch conv is never run."""
    n = g4 * g4 + 1
    tokens = batch * n
    w = cfg.width
    return seq(
        "clip",
        seq(
            "embeddings",
            op("patch_conv_unused", "parameter", elems=3 * cfg.patch * cfg.patch * w),
            op("class_embedding", "parameter", elems=w),
            op("position_embedding", "parameter", elems=cfg.positions * w),
            op("pos_add", "elementwise", elems=tokens * w, n_inputs=2),
        ),
        op("pre_layrnorm", "layer_norm", tokens=tokens, dim=w),
        repeat(
            "layers",
            cfg.layers,
            op("norm1", "layer_norm", tokens=tokens, dim=w),
            seq(
                "attn",
                op("qkv", "linear", tokens=tokens, d_in=w, d_out=3 * w, keep=True),
                op(
                    "attn_core",
                    "sdpa",
                    batch_heads=batch * cfg.heads,
                    s_q=n,
                    s_k=n,
                    d_qk=w // cfg.heads,
                    d_v=w // cfg.heads,
                ),
                op("out_proj", "linear", tokens=tokens, d_in=w, d_out=w),
            ),
            op("residual1", "elementwise", elems=tokens * w, n_inputs=2, keep=True),
            op("norm2", "layer_norm", tokens=tokens, dim=w),
            op("fc1", "linear", tokens=tokens, d_in=w, d_out=cfg.mlp),
            op("quick_gelu", "elementwise", elems=tokens * cfg.mlp, fn="quick_gelu"),
            op("fc2", "linear", tokens=tokens, d_in=cfg.mlp, d_out=w),
            op("residual2", "elementwise", elems=tokens * w, n_inputs=2),
        ),
    )


def projector(cfg: VisionConfig, batch, g4: int):
    """concat(CLIP tokens without CLS, SAM map) -> Linear(clip + sam channels, LLM hidden)."""
    return op(
        "projector",
        "linear",
        tokens=batch * g4 * g4,
        d_in=cfg.clip.width + cfg.sam.out_channels,
        d_out=cfg.llm_hidden,
    )


def view(cfg: VisionConfig, name: str, batch, px: int, keep: bool = False):
    """One encoder call on ``batch`` views of ``px`` x ``px``: SAM -> CLIP -> projector."""
    g4 = cfg.sam.grid(px)
    return seq(
        name,
        sam(cfg.sam, batch, px, keep=True),
        clip(cfg.clip, batch, g4),
        projector(cfg, batch, g4),
        keep=keep,
    )
