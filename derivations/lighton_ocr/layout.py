"""LightOnOCR's image layout: the Pixtral resize rule, as each runtime's processor runs it.

transformers 5.23, ``get_resize_output_image_size`` (``models/pixtral/image_processing_pil_pixtral.py``;
the copies in ``image_processing_pixtral.py`` and ``models/lighton_ocr/processing_lighton_ocr.py`` are
the same code), for an image of H x W px, ``longest_edge`` L and a rounding unit u::

    ratio = max(H / L, W / L)                     # IEEE doubles
    if ratio > 1: H, W = floor(H / ratio), floor(W / ratio)   # never upscaled
    H', W' = ((H - 1) // u + 1) * u, ((W - 1) // u + 1) * u   # each side up to a multiple of u

The vision tower then sees (H'/14) x (W'/14) patches, merged 2 x 2 into (H'/14 // 2) x (W'/14 // 2)
image tokens. The unit u is where the runtimes differ:
- ``hf``: ``LightOnOcrProcessor`` calls the image processor with its ``patch_size`` 14, so u = 14 and
  an odd patch count loses its last row or column in the merger (``unfold``, stride 2).
- ``vllm``: vLLM builds LightOnOCR inputs with transformers' ``PixtralProcessor``
  (``Mistral3ProcessingInfo.get_hf_processor``), which passes ``patch_size * spatial_merge_size``:
  u = 28, every patch count even, and its token count ``PixtralHFEncoderInfo.get_patch_grid_size``
  (ceil(side / 28)) agrees.
A side that resizes to 0 px (an aspect ratio beyond L : 1) makes the image processor raise, and a side
of fewer than 2 patches (at most 14 px, possible with u = 14 only) makes the model raise: the merger's
``unfold`` finds no 2 x 2 block (the processor wrote 0 image tokens). The rule refuses both, naming
``--image``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from symcost import ComputedLayout, Input, SymcostError, dense_table

__all__ = ["ResizeConfig", "resized", "patch_sides", "resize_layout"]


@dataclass(frozen=True)
class ResizeConfig:
    longest_edge: int  # px: neither side exceeds it after the resize
    patch: int  # px per vision patch
    unit: int  # px each side is rounded up to a multiple of (patch, or patch x merge)
    min_patches: int  # patches a side needs for the model to run (the merge size)

    @classmethod
    def from_hf(cls, preprocessor: dict, merge: int, unit_patches: int) -> ResizeConfig:
        """From the image processor's ``preprocessor_config.json``, the spatial ``merge`` size and
        ``unit_patches`` patches per rounding unit (the merge size where the processor passes it)."""
        patch = preprocessor["patch_size"]
        patch = patch if isinstance(patch, int) else patch["height"]
        return cls(preprocessor["size"]["longest_edge"], patch, patch * unit_patches, merge)


def resized(cfg: ResizeConfig, width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, H) after the scale-down, before rounding: the processor's float steps, in the same order
    (0 where a side vanishes; the processor then refuses the image)."""
    w, h = width.astype(np.float64), height.astype(np.float64)
    ratio = np.maximum(h / cfg.longest_edge, w / cfg.longest_edge)
    ratio = np.where(ratio > 1, ratio, 1.0)  # x / 1.0 == x: the sides the processor leaves alone
    return np.floor(w / ratio).astype(np.int64), np.floor(h / ratio).astype(np.int64)


def patch_sides(cfg: ResizeConfig, width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patches across, patches down): each resized side rounded up to whole units of ``cfg.unit`` px
    (0 on a side that vanished).

    The doubles of :func:`resized` in fewer passes (the engine runs this per point): max(W, H) / L is
    max(W / L, H / L), a correctly rounded division by L > 0 being monotone; max(ratio, 1) divides
    the sides the processor leaves alone by 1.0, exactly; and the ceiling of an integer-valued side
    over the unit is exact in doubles (a fractional quotient is at least 1/unit from an integer).
    """
    w, h = (np.array(a, dtype=np.float64) for a in np.broadcast_arrays(width, height))
    ratio = np.maximum(np.maximum(w, h) / cfg.longest_edge, 1.0)
    out = []
    for side in (w, h):
        side /= ratio
        np.floor(side, out=side)
        side /= cfg.unit
        np.ceil(side, out=side)
        if cfg.unit != cfg.patch:
            side *= cfg.unit // cfg.patch
        out.append(side.astype(np.int64))
    return out[0], out[1]


def _side(cfg: ResizeConfig, side, other):
    """The closed form of one side's patches (the float steps as their real-valued counterparts)."""
    longest = sp.Max(side, other)
    scaled = sp.Piecewise(
        (sp.floor(cfg.longest_edge * side / longest), longest > cfg.longest_edge), (side, True)
    )
    return (cfg.unit // cfg.patch) * sp.ceiling(scaled / cfg.unit)


def resize_layout(cfg: ResizeConfig, inputs: tuple[Input, Input], outputs: tuple[sp.Symbol, sp.Symbol]):
    """The rule as a :class:`symcost.ComputedLayout` over ``(width, height)`` setting
    ``(patches across, patches down)``."""
    w_sym, h_sym = (i.symbol for i in inputs)
    top = -(-cfg.longest_edge // cfg.unit) * (cfg.unit // cfg.patch)  # no side exceeds L after the resize

    def rule(width, height):
        w_p, h_p = patch_sides(cfg, width, height)
        if w_p.size and min(w_p.min(), h_p.min()) < cfg.min_patches:
            bad = np.flatnonzero(np.minimum(w_p, h_p) < cfg.min_patches)
            w, h = (int(np.ravel(a)[bad[0]]) for a in (width, height))
            w_r, h_r = (int(x[0]) for x in resized(cfg, np.array([w]), np.array([h])))
            why = (
                "the image processor refuses a 0-px side"
                if min(w_r, h_r) == 0
                else f"a side of fewer than {cfg.min_patches} patches, which the model's patch merger cannot "
                "unfold (transformers raises)"
            )
            raise SymcostError(
                f"--image: {w}x{h} resizes to {w_r}x{h_r} px (longest edge {cfg.longest_edge}, sides to "
                f"{cfg.unit} px): {why}"
            )
        return w_p, h_p

    table, index = dense_table((top, top))  # (top + 1)^2 grids: evaluated once each, then gathered
    return ComputedLayout(
        inputs=inputs,
        outputs=outputs,
        rule=rule,
        expressions=(_side(cfg, w_sym, h_sym), _side(cfg, h_sym, w_sym)),
        maxima=(top, top),
        text=(
            f"scale down (never up) so that max(W, H) <= {cfg.longest_edge} (floor of IEEE-double "
            f"divisions, as the processor), round each side up to a multiple of {cfg.unit} px; "
            f"{cfg.patch}-px patches, at most {top} a side"
        ),
        table=table,
        index=index,
    )
