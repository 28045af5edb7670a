"""GOT-OCR2 (stepfun-ai/GOT-OCR-2.0-hf): SAM ViT-B + two stride-2 convs + a Linear, 256 tokens
per 1024-px view, and a Qwen2-class decoder (Qwen-0.5B sizes). The ground truth is transformers
5.23's native ``GotOcr2ForConditionalGeneration``.

    vision = all views of the batch in one tower call: sam -> projector (256 tokens a view)
    prefill, decode, request: see ``derivations.common.vlm``

Sizes: ``config.json`` (the checkpoint's flat config: its root keys are the text config, its
``vision_config`` is empty, i.e. the class defaults) and ``preprocessor_config.json`` (views of
1024 x 1024). Views (``GotOcr2ImageProcessor``): by default one, the whole page resized to 1024 x
1024 whatever its aspect ratio; with ``crop_to_patches=True`` the processor's
``get_optimal_tiled_canvas`` picks cols x rows tiles of 1024 (1..12 tiles, every size tiled) and a
thumbnail (the page resized to 1024) follows when there is more than one tile. Image tokens
(``GotOcr2Processor.replace_image_token``): ``<imgpad>`` x 256 per view. The ``<img>`` and ``</img>``
around them are written by the processor's prompt template: they are prompt tokens (P).
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
    seq,
    where,
)

from ..common.decoder import DecoderConfig, decoder
from ..common.vlm import (
    IMAGE_STAGES,
    INPUTS,
    SERVING,
    STAGE_NAMES,
    HfCode,
    execution,
    h_tiles,
    image_tokens,
    n_crops,
    prefill_tokens,
    serving_options,
    stages,
    w_tiles,
)
from .vision import VisionConfig, tower

__all__ = [
    "FAMILY",
    "load",
    "CONFIG",
    "PREPROCESSOR",
    "PROCESSOR",
    "DECODER",
    "VISION",
    "VISION_MODES",
    "CANDIDATES",
]

_HERE = Path(__file__).parent
CONFIG = json.loads((_HERE / "config.json").read_text())
PREPROCESSOR = json.loads((_HERE / "preprocessor_config.json").read_text())
# transformers 5.23 class defaults the checkpoint files do not override: GotOcr2ImageProcessor's
# patch bounds and GotOcr2Processor's placeholders per view (tests check them against the classes)
PROCESSOR = {"min_patches": 1, "max_patches": 12, "num_image_tokens": 256}
# Qwen2Attention gives q/k/v a bias whatever the config says (Qwen2 configs carry no attention_bias);
# RoPE cos/sin once per forward by broadcasting (Qwen2RotaryEmbedding: no matmul)
DECODER = DecoderConfig.from_hf(CONFIG | {"attention_bias": True}, rope_matmul_per_layer=False)
VISION = VisionConfig.from_hf(CONFIG["vision_config"], CONFIG["hidden_size"])
VIEW_PX = PREPROCESSOR["size"]["height"]
# The processor's candidates: (cols, rows) in nested-loop order, stably sorted by tile count
CANDIDATES = by_tile_count(
    [
        (c, r)
        for c in range(1, PROCESSOR["max_patches"] + 1)
        for r in range(1, PROCESSOR["max_patches"] + 1)
        if PROCESSOR["min_patches"] <= c * r <= PROCESSOR["max_patches"]
    ]
)
# transformers 5.23: the text model's default SDPA, generate() keeps the last position's logits,
# no upcast in the forward, no MoE
HF = HfCode(attention="sdpa", logits="last", logits_upcast=False, clone_logits=False, moe_loop=False)

VISION_MODES = {
    "global": "one view: the page resized to 1024 x 1024, aspect not kept (the checkpoint's "
    "crop_to_patches=false; 256 image tokens)",
    "crops": "crop_to_patches=true: 1..12 tiles of 1024 by the processor's nearest-aspect rule, "
    "plus a 1024 thumbnail when there is more than one tile (256 image tokens per view)",
}


def _check_sizes():
    """The views must be the SAM's input size, and the processor's placeholders per view the
    tower's feature rows (else transformers' forward refuses the prompt)."""
    if VIEW_PX != PREPROCESSOR["size"]["width"] or VIEW_PX != VISION.px:
        raise SymcostError(
            f"preprocessor size: {PREPROCESSOR['size']} is not the SAM's {VISION.px} px square"
        )
    if VISION.tokens_per_view != PROCESSOR["num_image_tokens"]:
        raise SymcostError(
            f"num_image_tokens: the processor writes {PROCESSOR['num_image_tokens']} per view, "
            f"the tower makes {VISION.tokens_per_view}"
        )


def load(
    vision_mode: str = "global",
    runtime: str = "hf",
    attention: str | None = None,
    logits: str | None = None,
) -> Model:
    """The GOT-OCR2 cost model for a vision mode and runtime."""
    _check_sizes()
    tiling = vision_mode == "crops"
    ex, serving = execution(runtime, attention, logits, "expected", HF)
    serving.pop("experts")  # a dense decoder: every weight is read
    per_view = VISION.tokens_per_view

    def crops(v):  # tiles besides the thumbnail; one tile is the page resized, i.e. the thumbnail
        return where(v.w_tiles * v.h_tiles >= 2, v.w_tiles * v.h_tiles, 0) if tiling else 0

    def vision(v):
        # transformers stacks every view of the batch (tiles, then the thumbnail, per image) into one
        # pixel_values tensor and runs get_image_features once; vLLM serves this checkpoint through
        # its Transformers backend, whose _process_vision_input makes the same single call on the
        # step's stacked pixel values (vllm/model_executor/models/transformers/multimodal.py)
        return tower(VISION, v.batch * (v.n_crops + 1))

    def weights():
        return seq("model", tower(VISION, 1), decoder(DECODER, ex, 1, 1, 0))

    if tiling:
        layout_rule = AspectTiler(
            inputs=INPUTS[:2],
            outputs=(w_tiles, h_tiles),
            candidates=CANDIDATES,
            tile=VIEW_PX,
            shortcut=lambda w, h: w < 1,  # none: the processor tiles every size (W >= 1)
            shortcut_text="no size (every image is tiled)",
        )
    else:
        layout_rule = FixedLayout(INPUTS[:2], (w_tiles, h_tiles), (1, 1), "one view in vision mode global")
    settings = [("family", "got-ocr2"), ("vision_mode", f"{vision_mode} ({VISION_MODES[vision_mode]})")]
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = f"{VIEW_PX}px views" + (" (tiles + thumbnail)" if tiling else " (the page resized)")
    summary += ", all views of the batch in one tower call"
    return Model(
        family=FAMILY,
        options={"vision_mode": vision_mode, "view_px": VIEW_PX, **serving},
        layout=layout_rule,
        named={
            n_crops: crops,
            image_tokens: lambda v: per_view * (v.n_crops + 1),
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(DECODER, ex, vision, summary),
        weights=weights,
        kv_elems_per_token=DECODER.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="got-ocr2",
    summary="GOT-OCR2: SAM-B + 2 stride-2 convs + Linear (256 tokens per 1024-px view), Qwen2-0.5B decoder",
    inputs=INPUTS,
    options=(Option("vision_mode", VISION_MODES, "global", "which views are encoded", IMAGE_STAGES),)
    + serving_options(HF.attention, HF.logits, moe=False),
    stage_names=STAGE_NAMES,
    load=load,
    image=("width", "height"),
    serving=SERVING,
    default_stage="vision",
    compare_option="vision_mode",
    validation="validation.got_ocr2:validate_case",
    measurement="FlopCounterMode on transformers 5.23's native GotOcr2ForConditionalGeneration "
    "at the real sizes (meta device)",
)
