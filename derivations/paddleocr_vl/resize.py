"""PaddleOCR-VL's image size rule: transformers 5.23's ``smart_resize``
(``models/paddleocr_vl/image_processing_paddleocr_vl.py``), float for float, as a layout.

    smart_resize(height, width, factor = patch * merge = 28, min_pixels, max_pixels)
      a side under 28 px becomes 28, the other round(other * 28 / side)    (height first)
      max(h, w) / min(h, w) > 200: ValueError (the image is refused)
      h', w' = round(h / 28) * 28, round(w / 28) * 28
      h' * w' > max_pixels: beta = sqrt(h * w / max_pixels), h' = max(28, floor(h / beta / 28) * 28)
      h' * w' < min_pixels: beta = sqrt(min_pixels / (h * w)), h' = ceil(h * beta / 28) * 28
    (the same for w'; ``round`` is Python's: half to even). The layout's outputs are
    ``rows = h' / 28`` and ``cols = w' / 28``: the grid of merged 2x2 patches, one image token each
    (the processor's ``image_grid_thw`` is (1, 2 * rows, 2 * cols)).

NB: vLLM's copy of smart_resize (``vllm/model_executor/models/paddleocr_vl.py``) lacks the
    ``max(28, ...)`` of the max-pixels branch; it matters only when h / w < 28**2 / max_pixels, an
    aspect ratio the 200 limit already refuses, so both agree on every image either accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy as sp

from symcost import ComputedLayout, Input, SymcostError

__all__ = ["ResizeConfig", "layout", "round_half_even", "resize"]


@dataclass(frozen=True)
class ResizeConfig:
    factor: int  # px per output unit: patch_size * merge_size
    min_pixels: int
    max_pixels: int
    max_aspect: int = 200  # smart_resize refuses a larger max(h, w) / min(h, w)

    @classmethod
    def from_hf(cls, preprocessor: dict) -> ResizeConfig:
        """From a ``preprocessor_config.json`` dict (its ``min_pixels`` / ``max_pixels`` override
        the class defaults, as ``PaddleOCRVLImageProcessor.__init__`` does)."""
        return cls(
            factor=preprocessor["patch_size"] * preprocessor["merge_size"],
            min_pixels=preprocessor["min_pixels"],
            max_pixels=preprocessor["max_pixels"],
        )


def resize(cfg: ResizeConfig, width, height) -> tuple[np.ndarray, np.ndarray]:
    """``(cols, rows)`` int64 arrays, each point exactly as ``smart_resize`` computes it (the same
    IEEE operations in the same order: int64 products are exact here, ``true_divide`` of exact
    integers is Python's ``int / int``, ``rint`` is ``round``); a refused point raises."""
    f = cfg.factor
    w = np.asarray(width, dtype=np.int64)
    h = np.asarray(height, dtype=np.int64)
    short_h = h < f
    w = np.where(short_h, np.rint(w * f / h).astype(np.int64), w)
    h = np.where(short_h, f, h)
    short_w = w < f
    h = np.where(short_w, np.rint(h * f / w).astype(np.int64), h)
    w = np.where(short_w, f, w)
    aspect = np.maximum(h, w) / np.minimum(h, w)
    bad = aspect > cfg.max_aspect
    if bad.any():
        k = np.flatnonzero(bad.reshape(-1))[0]
        w0, h0 = (np.broadcast_to(a, bad.shape).reshape(-1)[k] for a in (width, height))
        raise SymcostError(
            f"--image: {int(w0)}x{int(h0)} has an aspect ratio of {aspect.reshape(-1)[k]:.6g} after "
            f"smart_resize's small-side step; transformers' PaddleOCR-VL processor refuses more "
            f"than {cfg.max_aspect}"
        )
    rows, cols = np.rint(h / f).astype(np.int64), np.rint(w / f).astype(np.int64)
    area = h * w
    over = rows * cols * f * f > cfg.max_pixels
    under = ~over & (rows * cols * f * f < cfg.min_pixels)
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where evaluates every branch
        shrink = np.sqrt(area / cfg.max_pixels)
        grow = np.sqrt(cfg.min_pixels / area)
        rows = np.where(over, np.maximum(1, np.floor(h / shrink / f)), rows)
        cols = np.where(over, np.maximum(1, np.floor(w / shrink / f)), cols)
        rows = np.where(under, np.ceil(h * grow / f), rows)
        cols = np.where(under, np.ceil(w * grow / f), cols)
    return cols.astype(np.int64), rows.astype(np.int64)


class round_half_even(sp.Function):
    """Python's ``round`` of a real number: the nearest integer, ties to the even one (exact on
    rationals; other arguments stay symbolic)."""

    is_integer = True

    @classmethod
    def eval(cls, x):
        if x.is_Rational:
            return sp.Integer(round(Fraction(int(x.p), int(x.q))))
        return None


def _expressions(cfg: ResizeConfig, w: sp.Symbol, h: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """``(cols, rows)`` as closed forms: the rule over the reals (``h / beta`` is
    ``sqrt(h * max_pixels / w)``); the float rule agrees except where a real value lands exactly
    on an integer the floats miss by an ulp."""
    f, rne = cfg.factor, round_half_even
    w1 = sp.Piecewise((rne(f * w / h), h < f), (w, True))
    h1 = sp.Piecewise((f, h < f), (h, True))
    h2 = sp.Piecewise((rne(f * h1 / w1), w1 < f), (h1, True))
    w2 = sp.Piecewise((f, w1 < f), (w1, True))
    pixels = f * f * rne(h2 / f) * rne(w2 / f)

    def side(a, b):  # the output along side a of an a x b image
        return sp.Piecewise(
            (sp.Max(1, sp.floor(sp.sqrt(a * cfg.max_pixels / b) / f)), pixels > cfg.max_pixels),
            (sp.ceiling(sp.sqrt(a * cfg.min_pixels / b) / f), pixels < cfg.min_pixels),
            (rne(a / f), True),
        )

    return side(w2, h2), side(h2, w2)


def layout(cfg: ResizeConfig, inputs: tuple[Input, Input], outputs: tuple[sp.Symbol, sp.Symbol]):
    """The resize as a :class:`symcost.ComputedLayout` over ``(width, height)`` setting
    ``(cols, rows)``.

    ``maxima``: a bound per side, ``max_pixels / factor**2`` (3600 at the checkpoint's 2,822,400):
    the max-pixels and in-range branches keep ``rows * cols`` within it and the min-pixels branch
    stays far below it; a test checks it against the rule on a grid.
    """
    w, h = (i.symbol for i in inputs)
    bound = cfg.max_pixels // (cfg.factor * cfg.factor)
    return ComputedLayout(
        inputs=inputs,
        outputs=outputs,
        rule=lambda width, height: resize(cfg, width, height),
        expressions=_expressions(cfg, w, h),
        maxima=(bound, bound),
        text=(
            f"transformers' smart_resize: sides rounded to multiples of {cfg.factor} px (half to even), "
            f"scaled into [{cfg.min_pixels:,}, {cfg.max_pixels:,}] px (floor above, ceil below), a side "
            f"under {cfg.factor} px first set to {cfg.factor}, aspect ratios above {cfg.max_aspect} "
            f"refused; {outputs[0]} x {outputs[1]} = resized px / {cfg.factor}^2 image tokens"
        ),
    )
