"""DeepSeek-OCR-2: SAM-B + a Qwen2-style encoder with learned queries, 768-px tiles, and the
same decoder as DeepSeek-OCR. The ground truth is transformers 5.23's native module.

    vision = all global views of a batch in one call (1024 px) + all tiles in another (768 px):
             SAM (-> 896 channels) -> encoder over [image tokens ; queries] -> projector
             -> per image: tiles, global view, separator
    prefill, decode, request: see ``derivations.common.vlm``

Sizes come from ``hf_config.json`` (a ``DeepseekOcr2Config`` dict; the class defaults are not
the model). Tiles: the processor's ``get_optimal_tiled_canvas`` (2..6 tiles of 768) unless
``max(W, H) <= 768``. Image tokens: 256 + 144 per tile + 1 separator (no newline tokens).
NB: transformers' ``crop_to_patches=False`` builds a 768 global view (144 queries) but still
writes 257 image tokens, so the forward fails; ``nocrop`` is therefore only the small-image
shortcut's computation (the 1024 global view), the one no-crop path that runs.
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
from .vision import VisionConfig, query_params, view

__all__ = ["FAMILY", "load", "CONFIG", "DECODER", "VISION", "VISION_MODES", "CANDIDATES"]

CONFIG = json.loads(Path(__file__).with_name("hf_config.json").read_text())
# NB: transformers' text model computes RoPE cos/sin once per forward by broadcasting (uncounted)
DECODER = DecoderConfig.from_hf(CONFIG["text_config"], rope_matmul_per_layer=False)
VISION = VisionConfig.from_hf(CONFIG)
GLOBAL_PX, TILE_PX = 1024, 768
# The processor's candidates: (cols, rows) in nested-loop order, stably sorted by tile count
CANDIDATES = by_tile_count([(c, r) for c in range(1, 7) for r in range(1, 7) if 2 <= c * r <= 6])
# transformers 5.23: SDPA attention, generate() keeps the last position's logits, no upcast in
# the forward, routed experts as grouped matmuls
HF = HfCode(attention="sdpa", logits="last", logits_upcast=False, clone_logits=False, moe_loop=False)

VISION_MODES = {
    "crops": "1024 global view + 768 tiles by the processor's rule (crop_to_patches=True)",
    "nocrop": "the 1024 global view only: what the small-image shortcut (max side <= 768) "
    "gives; transformers' crop_to_patches=False does not run (257 tokens written, "
    "145 features made)",
}


def load(
    vision_mode: str = "crops",
    runtime: str = "hf",
    attention: str | None = None,
    logits: str | None = None,
    experts: str = "expected",
) -> Model:
    """The DeepSeek-OCR-2 cost model for a vision mode and runtime."""
    tiling = vision_mode == "crops"
    ex, serving = execution(runtime, attention, logits, experts, HF)
    fused = runtime == "vllm"
    q_global, q_tile = (VISION.sam.grid(px) ** 2 for px in (GLOBAL_PX, TILE_PX))
    hidden = VISION.llm_hidden

    def crops(v):
        return where(v.w_tiles * v.h_tiles >= 2, v.w_tiles * v.h_tiles, 0) if tiling else 0

    def image_block(v):  # tiles, global view, separator
        return q_tile * v.n_crops + q_global + 1

    def tiles(v, batch):
        return when(v.n_crops > 0, view(VISION, "crops", batch * v.n_crops, TILE_PX, fused, keep=True))

    def layout(v, batch):  # per image: cat(tiles, global view, separator)
        return op("layout", "elementwise", elems=batch * v.image_tokens * hidden, fn="copy")

    def vision(v):
        if runtime == "vllm":  # vLLM's _pixel_values_to_embedding: image by image, global first
            parts = [view(VISION, "global", 1, GLOBAL_PX, fused, keep=True)]
            parts += [tiles(v, 1)] if tiling else []
            return repeat("vision", v.batch, *parts, layout(v, 1), collect=True)
        # transformers' get_image_features: all global views in one call, all tiles in another
        parts = [view(VISION, "global", v.batch, GLOBAL_PX, fused, keep=True)]
        parts += [tiles(v, v.batch)] if tiling else []
        return seq("vision", *parts, layout(v, v.batch))

    def weights():
        tower = view(VISION, "vision", 1, GLOBAL_PX, fused)
        sam_node, enc, projector = tower.children
        return seq(
            "model",
            seq(
                "vision",
                sam_node,
                seq("encoder", *enc.children, *query_params(VISION)),
                projector,
                op("view_separator", "parameter", elems=hidden),
            ),
            decoder(DECODER, ex, 1, 1, 0),
        )

    if tiling:
        layout_rule = AspectTiler(
            inputs=INPUTS[:2],
            outputs=(w_tiles, h_tiles),
            candidates=CANDIDATES,
            tile=TILE_PX,
            shortcut=lambda w, h: (w <= TILE_PX) & (h <= TILE_PX),
            shortcut_text=f"max(W, H) <= {TILE_PX}",
        )
    else:
        layout_rule = FixedLayout(INPUTS[:2], (w_tiles, h_tiles), (1, 1), "no tiles in vision mode nocrop")
    settings = [("family", "deepseek-ocr2"), ("vision_mode", f"{vision_mode} ({VISION_MODES[vision_mode]})")]
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = f"{GLOBAL_PX}px global view" + (f" + {TILE_PX}px tiles" if tiling else "")
    summary += ", image by image" if runtime == "vllm" else ", all images' views batched"
    return Model(
        family=FAMILY,
        options={
            "vision_mode": vision_mode,
            "global_px": GLOBAL_PX,
            "crop_px": TILE_PX if tiling else 0,
            **serving,
        },
        layout=layout_rule,
        named={
            n_crops: crops,
            image_tokens: image_block,
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(DECODER, ex, vision, summary),
        weights=weights,
        kv_elems_per_token=DECODER.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="deepseek-ocr2",
    summary="DeepSeek-OCR-2: SAM-B + Qwen2-style query encoder, 768-px tiles (2..6), DeepSeek-V2 MoE decoder",
    inputs=INPUTS,
    options=(Option("vision_mode", VISION_MODES, "crops", "which views are encoded", IMAGE_STAGES),)
    + serving_options(HF.attention, HF.logits),
    stage_names=FAMILY_STAGES,
    load=load,
    image=("width", "height"),
    serving=serving_for(CONFIG["text_config"]["max_position_embeddings"]),
    default_stage="vision",
    compare_option="vision_mode",
    validation="validation.ocr2_compare:validate_case",
    measurement="FlopCounterMode on transformers 5.23's native DeepseekOcr2ForConditionalGeneration "
    "at the real sizes (meta device)",
)
