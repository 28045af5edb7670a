"""DeepSeek-OCR (v1): the whole request as cost trees, read top-down like the architecture.

    vision (per image) = [tiles: one batched call] + global view -> SAM-B -> CLIP-L -> projector
                         -> image block (rows + newlines, separator)
    prefill, decode, request: see ``derivations.common.vlm``

Sizes come from the vendor's ``config.json`` (copied next to this file); the tile rule is the
vendor's ``dynamic_preprocess``: candidates in CPython's set order, no tiles when both sides
are <= 640, ties broken by area.
"""

from __future__ import annotations

import json
from pathlib import Path

from symcost import (
    AspectTiler,
    Family,
    FixedLayout,
    Model,
    Option,
    SymcostError,
    by_tile_count,
    get_runtime,
    op,
    repeat,
    seq,
    when,
    where,
)

from ..common.decoder import DecoderConfig, decoder
from ..common.vlm import (
    FAMILY_STAGES,
    IMAGE_STAGES,
    INPUTS,
    HfCode,
    execution,
    h_tiles,
    image_tokens,
    n_crops,
    prefill_tokens,
    serving_for,
    serving_options,
    stages,
    w_tiles,
)
from .presets import PRESETS, VISION_MODES, Preset
from .vision import VisionConfig, view

__all__ = [
    "FAMILY",
    "load",
    "PRESETS",
    "VISION_MODES",
    "CONFIG",
    "DECODER",
    "VISION",
    "VENDOR",
    "vendor_candidates",
    "tokens_side",
]

CONFIG = json.loads((Path(__file__).with_name("config.json")).read_text())
# NB: the vendor's LlamaAttention recomputes RoPE cos/sin in every layer (a counted matmul)
DECODER = DecoderConfig.from_hf(CONFIG, rope_matmul_per_layer=True)
VISION = VisionConfig.from_hf(CONFIG)
SHORTCUT_PX = 640  # hard-coded in the vendor's dynamic_preprocess, whatever the tile size
# The vendor's HF code: LlamaAttention (eager), lm_head on every position of a forward and
# logits.float(), moe_infer looping over experts
HF = HfCode(attention="eager", logits="all", logits_upcast=True, clone_logits=True, moe_loop=True)
VENDOR = execution("hf", None, None, "expected", HF)[0]  # the vendor's code path, for validation


def vendor_candidates(max_num: int, min_num: int = 2) -> tuple[tuple[int, int], ...]:
    """Grids with ``min_num <= i*j <= max_num``, sorted by ``i*j`` stably over CPython's set order.

    NB: the vendor sorts a ``set`` of small-int tuples; CPython's iteration order for them is
    deterministic (tuple hashes of ints do not depend on the hash seed), so we reproduce it by
    building the same set here.
    """
    cands = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    return by_tile_count(cands)


def tokens_side(px: int) -> int:
    """Feature-map side per view in the LLM layout: ceil((px // 16) / 4)."""
    return -(-(px // 16) // 4)


def load(
    preset: str = "gundam",
    vision_mode: str = "crops",
    max_crops: int | None = None,
    runtime: str = "hf",
    attention: str | None = None,
    logits: str | None = None,
    experts: str = "expected",
) -> Model:
    """The DeepSeek-OCR cost model for a preset, vision mode and runtime."""
    p: Preset = PRESETS[preset]
    tiling = p.crop_mode and vision_mode == "crops"
    if max_crops is not None and not tiling:
        raise SymcostError(
            "max_crops: applies only to the crop presets (gundam, gundam-m) in vision mode crops"
        )
    if vision_mode == "nocrop-hf" and runtime != "hf":  # HF's infer(crop_mode=False) alone
        raise SymcostError(
            f"vision_mode: nocrop-hf is the HF code's path (infer(crop_mode=False)); runtime "
            f"{runtime} builds crops or nocrop"
        )
    max_crops = max_crops or 9
    ex, serving = execution(runtime, attention, logits, experts, HF)
    global_px = p.global_px(vision_mode)
    qg, qt = tokens_side(global_px), tokens_side(p.image_size)
    hidden = VISION.llm_hidden

    # Named quantities, in order; each may use the ones before it.
    def crops(v):  # the small-image shortcut records grid (1,1) and runs no tiles
        return where(v.w_tiles * v.h_tiles >= 2, v.w_tiles * v.h_tiles, 0) if tiling else 0

    def image_block(v):  # global rows + newlines, separator, stitched tile rows + newlines
        tiles = (v.h_tiles * qt) * (v.w_tiles * qt + 1)
        return qg * (qg + 1) + 1 + (where(v.n_crops > 0, tiles, 0) if tiling else 0)

    def vision(v):  # the vendor loops over the images of a batch (so does vLLM)
        return repeat("vision", v.batch, *views(v), collect=True)

    def views(v):
        parts = []
        if tiling:  # one batched call on all tiles, only when there are tiles
            parts.append(when(v.n_crops > 0, view(VISION, "crops", v.n_crops, p.image_size, keep=True)))
        parts.append(view(VISION, "global", 1, global_px, keep=True))
        # features with newline rows and the separator, concatenated into one block
        parts.append(op("layout", "elementwise", elems=v.image_tokens * hidden, fn="copy"))
        return parts

    def weights():
        return seq(
            "model",
            seq(
                "vision",
                *view(VISION, "vision", 1, 1024).children,
                op("image_newline", "parameter", elems=hidden),
                op("view_seperator", "parameter", elems=hidden),
            ),
            decoder(DECODER, ex, 1, 1, 0),
        )

    if tiling:
        layout = AspectTiler(
            inputs=INPUTS[:2],
            outputs=(w_tiles, h_tiles),
            candidates=vendor_candidates(max_crops),
            tile=p.image_size,
            shortcut=lambda w, h: (w <= SHORTCUT_PX) & (h <= SHORTCUT_PX),
            shortcut_text=f"both sides <= {SHORTCUT_PX}",
        )
    else:
        layout = FixedLayout(
            INPUTS[:2], (w_tiles, h_tiles), (1, 1), "no tiles in this preset and vision mode"
        )
    settings = [("family", "deepseek-ocr"), ("preset", f"{p.name} ({p.summary})")]
    if p.crop_mode:
        settings.append(("vision_mode", f"{vision_mode} ({VISION_MODES[vision_mode]})"))
    if tiling:
        settings.append(("max_crops", f"{max_crops}"))
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = f"{global_px}px global view" + (f" + {p.image_size}px tiles" if tiling else "")
    return Model(
        family=FAMILY,
        options={
            "preset": p.name,
            "vision_mode": vision_mode,
            "max_crops": max_crops,
            "crop_mode": p.crop_mode,
            "global_px": global_px,
            "crop_px": p.image_size if tiling else 0,
            **serving,
        },
        layout=layout,
        named={
            n_crops: crops,
            image_tokens: image_block,
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(DECODER, ex, vision, summary + ", image by image"),
        weights=weights,
        kv_elems_per_token=DECODER.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="deepseek-ocr",
    summary="DeepSeek-OCR (v1): SAM-B + CLIP-L vision, 640/1024-px tiles, DeepSeek-V2 MoE decoder",
    inputs=INPUTS,
    options=(
        Option(
            "preset",
            {k: p.summary for k, p in PRESETS.items()},
            "gundam",
            "resolution preset (the vendor's base_size / image_size / crop_mode)",
            IMAGE_STAGES,
        ),
        Option(
            "vision_mode",
            VISION_MODES,
            "crops",
            "which vendor call builds the views (matters for gundam, gundam-m)",
            IMAGE_STAGES,
        ),
        Option(
            "max_crops",
            range(2, 10),
            None,
            "largest tile grid i*j (crop presets, vision mode crops); default 9 as in "
            "the HF code, 6 in the vendor's vLLM config",
            IMAGE_STAGES,
        ),
    )
    + serving_options(HF.attention, HF.logits),
    stage_names=FAMILY_STAGES,
    load=load,
    image=("width", "height"),
    # vLLM's DeepseekOCRProcessingInfo.get_image_size_with_most_features: 640 x 2 square
    # (vllm/model_executor/models/deepseek_ocr.py), the dummy image of its profiling run
    serving=serving_for(CONFIG["max_position_embeddings"], profile_image=(1280, 1280)),
    default_stage="vision",
    compare_option="vision_mode",
    validation="validation.compare:validate_case",
    measurement="FlopCounterMode on the reference model rebuilt from transformers 5.23 parts, shown "
    "equal to the vendor's code on every recorded reference case",
)
