"""DeepSeek-OCR (v1): the whole request as cost trees, read top-down like the architecture.

    request = vision + prefill + decode steps
    vision  = per request: global view [+ tiles, one batched call] -> SAM -> CLIP -> projector
    prefill = decoder over P prompt tokens + the image-token block, empty cache
    decode  = decoder over 1 token with L cached tokens

Stage semantics (stated once):
- ``prefill`` runs S0 = P + image_tokens positions (P counts every non-image token, BOS
  included; the tokenizer is not available offline, so the user supplies P).
- ``request`` generating N tokens = vision + prefill (which yields token 1) + N-1 decode steps;
  step t = 1..N-1 sees L = S0 + t - 1 cached tokens. The KV cache then holds S0 + N - 1 tokens.
- ``B`` requests: the vendor loops over batch elements in vision (weights re-read per
  element) and runs the decoder on the whole batch (weights read once per forward).
"""
from __future__ import annotations

import sympy as sp

from symcost import (Model, Stage, SymcostError, TileRule, choose, image_tokens, n_crops, op,
                     prefill_tokens, repeat, seq, sum_over, where)

from .decoder import KV_ELEMS_PER_TOKEN, decoder
from .presets import PRESETS, Preset
from .vision import view

__all__ = ["load", "PRESETS", "VISION_MODES"]

VISION_MODES = {
    "crops": "global view + dynamic tiles (the vendor's crop mode)",
    "nocrop": "global view only (what the small-image shortcut and crop_mode=False give)",
}
_t = sp.Symbol("t", integer=True, positive=True)  # decode step index


def _tokens_side(px: int) -> int:
    """Feature-map side per view in the LLM layout: ceil((px // 16) / 4)."""
    return -(-(px // 16) // 4)


def load(preset: str = "gundam", vision_mode: str = "crops", max_crops: int = 9) -> Model:
    """The DeepSeek-OCR cost model for a preset and vision mode.

    ``max_crops``: the tiler's largest grid (``i*j``); 9 in the vendor's HF code, 6 in its vLLM
    config.
    """
    p: Preset = choose("preset", PRESETS, preset)
    choose("vision_mode", VISION_MODES, vision_mode)
    if isinstance(max_crops, bool) or not isinstance(max_crops, int) or not 2 <= max_crops <= 9:
        raise SymcostError(f"max_crops: {max_crops!r} is not an integer in [2, 9]")
    tiling = p.crop_mode and vision_mode == "crops"
    qg, qt = _tokens_side(p.global_px), _tokens_side(p.image_size)

    # Named quantities, in order; each may use the ones before it.
    def crops(v):  # the small-image shortcut records grid (1,1) and runs no tiles
        return where(v.w_tiles * v.h_tiles >= 2, v.w_tiles * v.h_tiles, 0) if tiling else 0

    def image_block(v):  # global rows + newlines, separator, stitched tile rows + newlines
        tiles = (v.h_tiles * qt) * (v.w_tiles * qt + 1)
        return qg * (qg + 1) + 1 + (where(v.n_crops > 0, tiles, 0) if tiling else 0)

    def vision(v, _attention):
        views = [view("global", 1, p.global_px)]
        if tiling:  # one batched call on all tiles; costs 0 when n_crops = 0
            views.append(view("crops", v.n_crops, p.image_size))
        return repeat("vision", v.B, *views)

    def prefill(v, attention, name="decoder"):
        s0 = v.prefill_tokens
        return decoder(v.B, s0, s0, flash=attention == "flash", name=name)

    def decode(v, attention):
        return decoder(v.B, 1, v.L + 1, flash=attention == "flash")

    def request(v, attention):
        def step(t):  # step t sees S0 + t - 1 cached tokens plus itself
            return decoder(v.B, 1, v.prefill_tokens + t, flash=attention == "flash")
        # N = 1 sums over no steps: every count is 0, and the peak of a decode step never
        # exceeds the prefill's, so the closed form needs no branch on N
        return seq("request", vision(v, attention), prefill(v, attention, name="prefill"),
                   sum_over("decode", _t, 1, v.N - 1, step))

    def weights():
        return seq("model",
                   seq("vision", *view("vision", 1, p.global_px).children,
                       op("image_newline", "parameter", elems=1280),
                       op("view_seperator", "parameter", elems=1280)),
                   decoder(1, 1, 1))

    stages = {
        "vision": Stage(vision, ("vision",), lambda v: 0, "SAM + CLIP + projector on all views"),
        "prefill": Stage(prefill, ("decoder",), lambda v: v.prefill_tokens,
                         "decoder over prompt + image tokens"),
        "decode": Stage(decode, ("decoder",), lambda v: v.L + 1,
                        "one decoder step with L cached tokens"),
        "request": Stage(request, ("vision", "decoder"), lambda v: v.prefill_tokens + v.N - 1,
                         "vision + prefill + N-1 decode steps"),
    }
    return Model(
        family="deepseek-ocr", preset=p.name,
        options={"summary": p.summary, "vision_mode": vision_mode, "crop_mode": p.crop_mode,
                 "max_crops": max_crops,
                 "base_size": p.base_size, "image_size": p.image_size,
                 "global_px": p.global_px, "crop_px": p.image_size if tiling else 0},
        layout=TileRule(tile=p.image_size, max_num=max_crops) if tiling else None,
        named={n_crops: crops, image_tokens: image_block,
               prefill_tokens: lambda v: v.P + v.image_tokens},
        stages=stages, weights=weights, kv_elems_per_token=KV_ELEMS_PER_TOKEN)
