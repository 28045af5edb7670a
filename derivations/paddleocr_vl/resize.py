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

from collections.abc import Callable
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


def resize(cfg: ResizeConfig, width, height, refuse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(cols, rows)`` int64 arrays, each point exactly as ``smart_resize`` computes it (the same
    IEEE operations in the same order: int64 products are exact here, ``true_divide`` of exact
    integers is Python's ``int / int``, ``rint`` is ``round``, ``h * w`` and the grid's pixels are
    exact in float64). A point smart_resize refuses raises (``refuse``) or gets (-1, -1).
    Each branch runs on its own points only (most images take one of them)."""
    f = cfg.factor
    shape = np.broadcast_shapes(np.shape(width), np.shape(height))
    w0 = np.broadcast_to(np.asarray(width, dtype=np.int64), shape).reshape(-1)  # 1-D from here on
    h0 = np.broadcast_to(np.asarray(height, dtype=np.int64), shape).reshape(-1)
    w, h = w0, h0
    short = np.flatnonzero((h < f) | (w < f))
    if short.size:  # a side under f: height first, then width, as smart_resize
        w, h = w.copy(), h.copy()
        ws, hs = w[short], h[short]
        sh = hs < f
        ws = np.where(sh, np.rint(ws * f / hs).astype(np.int64), ws)
        hs = np.where(sh, f, hs)
        sw = ws < f
        hs = np.where(sw, np.rint(hs * f / ws).astype(np.int64), hs)
        w[short], h[short] = np.where(sw, f, ws), hs
    # max / min > limit as floats <=> max > limit * min as integers (min < 2**22: 1 / min is no
    # rounding error next to the limit)
    refused = np.maximum(h, w) > cfg.max_aspect * np.minimum(h, w)
    if refuse and refused.any():
        k = np.flatnonzero(refused)[0]
        aspect = max(h[k], w[k]) / min(h[k], w[k])
        raise SymcostError(
            f"--image: {w0[k]}x{h0[k]} has an aspect ratio of {aspect:.6g} after smart_resize's small-side "
            f"step; transformers' PaddleOCR-VL processor refuses more than {cfg.max_aspect}"
        )
    rows, cols = np.rint(h / f), np.rint(w / f)
    pixels = rows * cols * (f * f)
    over = np.flatnonzero(pixels > cfg.max_pixels)
    under = np.flatnonzero(pixels < cfg.min_pixels)
    if over.size:
        ho, wo = h[over], w[over]
        shrink = np.sqrt(ho * wo / cfg.max_pixels)
        rows[over] = np.maximum(1, np.floor(ho / shrink / f))
        cols[over] = np.maximum(1, np.floor(wo / shrink / f))
    if under.size:
        hu, wu = h[under], w[under]
        grow = np.sqrt(cfg.min_pixels / (hu * wu))
        rows[under] = np.ceil(hu * grow / f)
        cols[under] = np.ceil(wu * grow / f)
    if not refuse:
        rows[refused], cols[refused] = -1, -1
    return cols.astype(np.int64).reshape(shape), rows.astype(np.int64).reshape(shape)


def grid_table(cfg: ResizeConfig) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Every ``(cols, rows)`` with ``cols * rows <= T = max_pixels // factor**2`` (T = 3600 at the
    checkpoint's bounds: 30,060 grids) and the index of a grid in that table.

    Why every outcome is there: the in-range branch keeps ``rows * cols * factor**2 <= max_pixels``;
    the max-pixels branch floors two sides whose product is ``max_pixels / factor**2`` (up to an
    ulp, which flooring an integer product absorbs), or clamps one side to 1, leaving the other at
    most ``sqrt(max_aspect * T)`` (848); the min-pixels branch ceils two sides whose product is
    ``min_pixels / factor**2``, at most that plus ``sqrt(max_aspect * min / factor**2) + 2`` (384).
    The index refuses a grid outside the table (a bug, never a user's input).
    """
    top = cfg.max_pixels // (cfg.factor * cfg.factor)
    per_col = top // np.arange(1, top + 1)  # rows allowed at cols = 1..top
    start = np.concatenate(([0, 0], np.cumsum(per_col)[:-1]))  # start[c]: the row of (c, 1)
    cols = np.repeat(np.arange(1, top + 1), per_col)
    rows = np.arange(cols.size) - start[cols] + 1
    table = np.stack([cols, rows], axis=1).astype(np.int64)

    def index(c: np.ndarray, r: np.ndarray) -> np.ndarray:
        if (c * r > top).any() or (c < 1).any() or (r < 1).any():
            raise RuntimeError(f"smart_resize gave a grid outside the {top}-token table")
        return start[c] + r - 1

    return table, index


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
    ``sqrt(h * max_pixels / w)``), one case per input region and branch; the float rule agrees
    except where a real value lands exactly on an integer the floats miss by an ulp."""
    f, rne = sp.Integer(cfg.factor), round_half_even
    wide = rne(f * w / h)  # the width once a short height is set to f
    regions = (  # (condition, (height, width) after the small-side step)
        (sp.And(h >= f, w >= f), (h, w)),
        (h >= f, (rne(f * h / w), f)),
        (wide >= f, (f, wide)),
        (sp.true, (rne(f * f / wide), f)),
    )

    def side(a, b, pixels):  # the output along side a of an a x b image: (value, condition) cases
        return (
            (sp.Max(1, sp.floor(sp.sqrt(a * cfg.max_pixels / b) / f)), pixels > cfg.max_pixels),
            (sp.ceiling(sp.sqrt(a * cfg.min_pixels / b) / f), pixels < cfg.min_pixels),
            (rne(a / f), sp.true),
        )

    def output(axis):
        cases = []
        for k, (region, (hh, ww)) in enumerate(regions):
            pixels = f * f * rne(hh / f) * rne(ww / f)
            a, b = (ww, hh) if axis == 0 else (hh, ww)
            for value, cond in side(a, b, pixels):
                last = k == len(regions) - 1 and cond is sp.true
                cases.append((value, sp.true if last else sp.And(region, cond)))
        return sp.Piecewise(*cases)

    return output(0), output(1)


def layout(cfg: ResizeConfig, inputs: tuple[Input, Input], outputs: tuple[sp.Symbol, sp.Symbol]):
    """The resize as a :class:`symcost.ComputedLayout` over ``(width, height)`` setting
    ``(cols, rows)``.

    Its outcomes are the grids of :func:`grid_table` (the engine evaluates once per grid and
    gathers); ``maxima``: each side is within that table, ``max_pixels / factor**2`` (3600).
    """
    w, h = (i.symbol for i in inputs)
    bound = cfg.max_pixels // (cfg.factor * cfg.factor)
    table, index = grid_table(cfg)
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
        table=table,
        index=index,
    )
