"""Qwen2.5-VL's image layout: the processor's ``smart_resize`` (every image size its own grid of
28-px tokens), optionally after olmOCR's page render.

    image W x H px --smart_resize--> W' x H' (multiples of 28) --> (W'/28) x (H'/28) image tokens

``smart_resize`` (transformers 5.23, ``models/qwen2_vl/image_processing_qwen2_vl.py``):
refuse ``max(H, W) / min(H, W) > 200``; ``H' = round(H / 28) * 28`` (Python's round: half to
even), the same for W; if ``H' W' > max_pixels``: ``beta = sqrt(H W / max_pixels)``,
``H' = max(28, floor(H / beta / 28) * 28)``; elif ``H' W' < min_pixels``: ``beta =
sqrt(min_pixels / (H W))``, ``H' = ceil(H * beta / 28) * 28``. Here the same IEEE double
operations run in NumPy, in the same order (exact: every integer involved is below 2**53).

olmOCR's render (allenai/olmocr ``olmocr/data/renderpdf.py::render_pdf_to_base64png``): the page
of W x H points (its MediaBox, as ``pdfinfo`` prints it) goes through ``pdftoppm -r
str(1288 * 72 / max(W, H))``; pdftoppm (poppler 22.12) makes ``ceil(W * r / 72.0)`` x
``ceil(H * r / 72.0)`` px (checked against pdftoppm on 372 page sizes: all equal). The long side
is 1288 px, or 1289 where the float product lands just above 1288 (e.g. 2880 x 2763 pt).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import isqrt

import numpy as np
import sympy as sp

from symcost import ComputedLayout, Input, SymcostError

__all__ = ["ResizeConfig", "PageRender", "smart_resize", "token_grid", "layout"]


@dataclass(frozen=True)
class ResizeConfig:
    """The processor's resize settings (``preprocessor_config.json``)."""

    factor: int  # patch_size * merge_size: both sides become multiples of it
    min_pixels: int
    max_pixels: int
    max_ratio: int = 200  # smart_resize refuses a longer-to-shorter side ratio above this

    @classmethod
    def from_hf(cls, c: dict) -> ResizeConfig:
        return cls(c["patch_size"] * c["merge_size"], c["min_pixels"], c["max_pixels"])

    def max_side_tokens(self) -> int:
        """An upper bound of either side's tokens over every image, from the three branches: kept
        (round(side/f); its product with the other side's <= max_pixels/f^2, and side <= max_ratio
        x the other side), scaled down (<= sqrt(max_ratio * max_pixels) / f), scaled up
        (<= ceil(sqrt(max_ratio * min_pixels) / f))."""
        f, cap = self.factor, self.max_pixels // (self.factor * self.factor)
        other = np.arange(1, cap + 1)  # the other side's tokens, kept branch
        kept = int(np.minimum(cap // other, self.max_ratio * other + self.max_ratio // 2 + 1).max())
        down = isqrt(self.max_ratio * self.max_pixels) // f + 1
        up = -(-(isqrt(self.max_ratio * self.min_pixels) + 1) // f)
        return max(kept, down, up)


@dataclass(frozen=True)
class PageRender:
    """A page rendered by ``pdftoppm -r longest_px*72/longest_side`` (olmOCR's pipeline)."""

    name: str
    longest_px: int

    def pixels(self, width_pt: np.ndarray, height_pt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rendered image's (width, height) in px for pages of the given size in points."""
        longest = np.maximum(width_pt, height_pt).astype(np.float64)  # pdfinfo's floats
        dpi = (self.longest_px * 72) / longest  # the -r argument (repr round-trips the double)
        return (
            np.ceil(width_pt * dpi / 72.0).astype(np.int64),
            np.ceil(height_pt * dpi / 72.0).astype(np.int64),
        )


def smart_resize(cfg: ResizeConfig, height, width):
    """``(H' / f, W' / f, refused)`` per point: the resized sides in tokens of ``f`` px (float64
    integers), exactly as the processor's ``smart_resize`` computes ``(H', W')``, and a bool mask
    where it raises.

    Every step is the processor's double operation on the same values (the token counts are
    those doubles before ``* factor``), except the refusal: ``max/min > R`` in doubles is
    ``max > R * min`` in integers (a ratio above R exceeds it by >= 1/65535, far above an ulp
    at R; at or below R, rounding cannot pass the representable R). The scaled branches run on
    the points that take them only.
    """
    h, w = np.broadcast_arrays(np.asarray(height, dtype=np.int64), np.asarray(width, dtype=np.int64))
    shape, h, w = h.shape, h.reshape(-1), w.reshape(-1)  # 1-d: branches are written by index
    f = cfg.factor
    refused = np.maximum(h, w) > cfg.max_ratio * np.minimum(h, w)
    hf, wf = h.astype(np.float64), w.astype(np.float64)
    h_tok, w_tok = np.rint(hf / f), np.rint(wf / f)  # round(): half to even, as np.rint
    kept = h_tok * w_tok
    kept *= f * f  # H' W', exact in doubles
    for at, down in (
        (np.flatnonzero(kept > cfg.max_pixels), True),
        (np.flatnonzero(kept < cfg.min_pixels), False),
    ):
        if at.size:
            h_tok[at], w_tok[at] = _scaled(cfg, hf[at], wf[at], down)
    return h_tok.reshape(shape), w_tok.reshape(shape), refused.reshape(shape)


def _scaled(cfg: ResizeConfig, h: np.ndarray, w: np.ndarray, down: bool):
    """Tokens of the sides (doubles) of images out of [min_pixels, max_pixels] once rounded."""
    f = cfg.factor
    if down:
        beta = np.sqrt(h * w / cfg.max_pixels)
        return np.maximum(1.0, np.floor(h / beta / f)), np.maximum(1.0, np.floor(w / beta / f))
    beta = np.sqrt(cfg.min_pixels / (h * w))
    return np.ceil(h * beta / f), np.ceil(w * beta / f)


def token_grid(cfg: ResizeConfig, render: PageRender | None, width, height):
    """``(w_tokens, h_tokens, refused, (W px, H px))``: the image the processor receives (the
    page rendered first where ``render``), its tokens across and down (float64 integers), and
    the refusal mask."""
    w, h = np.asarray(width, dtype=np.int64), np.asarray(height, dtype=np.int64)
    if render is not None:
        w, h = render.pixels(w, h)
    h_tok, w_tok, refused = smart_resize(cfg, h, w)
    return w_tok, h_tok, refused, (w, h)


def _round_half_even(x: sp.Expr, f: int) -> sp.Expr:
    """``round(x / f)`` for an integer x and an even f, exactly: floor((x + f/2) / f), less one on
    the ties x = f/2 (mod 2f), which go to the even neighbour (that indicator as two floors)."""
    h = f // 2
    tie = sp.floor((x - h) / (2 * f)) - sp.floor((x - h - 1) / (2 * f))
    return sp.floor((x + h) / f) - tie


def _expressions(cfg: ResizeConfig, w: sp.Expr, h: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(w_tokens, h_tokens) as closed forms in the image size; the scaled branches use the real
    square root where the processor takes it in doubles."""
    f = cfg.factor
    kept_w, kept_h = _round_half_even(w, f), _round_half_even(h, f)
    kept = kept_w * kept_h * f * f
    down = sp.sqrt(sp.Rational(cfg.max_pixels) / (w * h))
    up = sp.sqrt(sp.Rational(cfg.min_pixels) / (w * h))
    # unevaluated: SymPy's own simplification of these conditions takes seconds
    return tuple(
        sp.Piecewise(
            (
                sp.Max(1, sp.floor(side * down / f)),
                sp.StrictGreaterThan(kept, cfg.max_pixels, evaluate=False),
            ),
            (sp.ceiling(side * up / f), sp.StrictLessThan(kept, cfg.min_pixels, evaluate=False)),
            (kept_side, True),
            evaluate=False,
        )
        for side, kept_side in ((w, kept_w), (h, kept_h))
    )


@functools.lru_cache(maxsize=16)  # built once per setting: its closed forms take SymPy a while
def layout(
    cfg: ResizeConfig,
    render: PageRender | None,
    window: int,
    inputs: tuple[Input, Input],
    outputs: tuple[sp.Symbol, sp.Symbol, sp.Symbol, sp.Symbol],
) -> ComputedLayout:
    """The family's layout: (width, height) -> (w_tokens, h_tokens, w_rest, h_rest), the token grid
    and the tokens of its last, partial ``window``-token window column and row (``tokens mod
    window``), refusing as the processor does. The rests are outputs, not floor divisions in the
    closed forms, so compiled programs stay polynomial (and their int64 bound tight)."""

    def tokens(width, height):
        w_tok, h_tok, refused, pixels = token_grid(cfg, render, width, height)
        if refused.any():
            _refuse(cfg, render, width, height, refused, pixels)
        return w_tok, h_tok

    def rule(width, height):
        w_tok, h_tok = (t.astype(np.int64) for t in tokens(width, height))
        return w_tok, h_tok, w_tok % window, h_tok % window

    w, h = (i.symbol for i in inputs)
    f = cfg.factor
    text = (
        f"smart_resize to multiples of {f} px inside [{cfg.min_pixels}, {cfg.max_pixels}] px "
        f"(round half to even; scaled by sqrt in doubles where out of range; side ratio "
        f"<= {cfg.max_ratio}), {outputs[0]} x {outputs[1]} tokens of {f} px; "
        f"{outputs[2]}, {outputs[3]} = tokens mod {window} (the partial attention window's side)"
    )
    if render is not None:
        text = (
            f"the page (W x H in points) rendered as pdftoppm -r {render.longest_px}*72/max(W, H) "
            f"does it (ceil(side * r / 72) px), then " + text
        )
        # the rendered sides with the real product in place of the doubles
        w, h = (sp.ceiling(side * render.longest_px / sp.Max(w, h)) for side in (w, h))
    bound = cfg.max_side_tokens()
    exprs = _expressions(cfg, w, h)
    exprs += tuple(sp.Mod(e, window) for e in exprs)
    table, row = _enumerate(cfg, bound, window)
    return ComputedLayout(
        inputs,
        outputs,
        rule,
        exprs,
        (bound, bound, window - 1, window - 1),
        text,
        table,
        lambda w_tok, h_tok, w_rest, h_rest: row(w_tok, h_tok),
    )


def _refuse(cfg: ResizeConfig, render: PageRender | None, width, height, refused, pixels):
    """The processor's refusal, as one line naming --image, the first such point and the count."""
    k = int(np.flatnonzero(refused.reshape(-1))[0])
    w0, h0 = (int(np.reshape(x, -1)[k]) for x in (width, height))
    size = f"{w0}x{h0}"
    if render is not None:
        w_px, h_px = (int(np.reshape(x, -1)[k]) for x in pixels)
        size += f" ({render.name} renders {w_px}x{h_px} px)"
    more = int(refused.sum()) - 1
    raise SymcostError(
        f"--image: {size} has a side ratio above {cfg.max_ratio}, which the processor's "
        f"smart_resize refuses" + (f" ({more} more such points)" if more else "")
    )


def _enumerate(cfg: ResizeConfig, bound: int, window: int):
    """Every (w, h, w mod window, h mod window) the rule can give, and ``row(w_tok, h_tok)``
    giving each point's row (token counts as doubles).

    Rows: sides in [1, bound] with ``(w - 1)(h - 1) <= cap + 1``, ``cap = max_pixels / f^2``: the
    kept branch has ``w h <= cap``; the scaled-down one floors two reals whose product is ``cap``
    (a double may land one above each floor); the scaled-up one gives products near
    ``min_pixels / f^2``. ``row`` checks each point is in the table all the same."""
    cap = cfg.max_pixels // (cfg.factor * cfg.factor)
    side = np.arange(1, bound + 1, dtype=np.int64)
    widths = np.minimum(bound, 1 + (cap + 1) // np.maximum(side - 1, 1))
    widths[0] = bound  # w = 1: any h
    start = np.zeros(bound + 1, dtype=np.int64)  # the row of (w, h) is start[w] + h
    start[1:] = np.cumsum(widths) - widths - 1
    w_col = np.repeat(side, widths)
    h_col = np.arange(len(w_col), dtype=np.int64) - np.repeat(start[1:], widths)
    table = np.stack([w_col, h_col, w_col % window, h_col % window], axis=1)
    start_f = start.astype(np.float64)
    limit = np.concatenate([[0.0], widths.astype(np.float64)])  # the largest h in the table per w

    def row(w_tok, h_tok):
        w_i = w_tok.astype(np.intp)
        try:
            inside = (h_tok <= np.take(limit, w_i)).all()
            code = np.take(start_f, w_i) + h_tok
        except IndexError:
            inside = False
        if not inside:
            raise SymcostError("layout: a token grid outside the enumerated outcomes (a bug)")
        return code.astype(np.intp)

    return table, row
