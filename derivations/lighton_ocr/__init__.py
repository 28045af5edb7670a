"""LightOnOCR-1B-1025 (LightOnOCR-2-1B has the same architecture): a Pixtral encoder, a Mistral3-style
projector with a 2 x 2 patch merger, and a Qwen3 decoder. The ground truth is transformers 5.23's
native ``LightOnOcrForConditionalGeneration``.

    vision = all images of a batch in one call: Pixtral encoder (one packed sequence)
             -> projector (RMSNorm, patch merger, MLP) -> one image token per 2 x 2 patches
    prefill, decode, request: see ``derivations.common.vlm`` (Qwen3: per-head q/k RMSNorm)

Sizes come from ``hf_config.json`` (the Hub config of LightOnOCR-1B-1025, still ``model_type:
mistral3``; the class defaults differ in the text ``max_position_embeddings``), the resize from
``preprocessor_config.json`` (longest edge 1540, patch 14). Layout: ``layout.py`` (the image is
scaled down, never up, and each side rounded up: to 14 px under ``hf``, 28 px under ``vllm``).
Image tokens: (H'/14 // 2) x (W'/14 // 2), the image tokens only: transformers'
``LightOnOcrProcessor.replace_image_token`` writes no ``[IMG_BREAK]``/``[IMG_END]``, and vLLM drops
the ones ``PixtralProcessor`` writes (``LightOnOCRMultiModalProcessor._postprocess_hf_mm_data``).
"""

from __future__ import annotations

import json
from pathlib import Path

import sympy as sp

from symcost import Family, Model, get_runtime, seq

from ..common.decoder import DecoderConfig, decoder
from ..common.vlm import (
    FAMILY_STAGES,
    INPUTS,
    HfCode,
    execution,
    image_tokens,
    prefill_tokens,
    serving_for,
    serving_options,
    stages,
)
from .layout import ResizeConfig, resize_layout
from .vision import VisionConfig, vision, vision_weights

__all__ = ["FAMILY", "load", "CONFIG", "PREPROCESSOR", "DECODER", "VISION", "resize_config"]

CONFIG = json.loads(Path(__file__).with_name("hf_config.json").read_text())
PREPROCESSOR = json.loads(Path(__file__).with_name("preprocessor_config.json").read_text())
# Qwen3: q_norm / k_norm per head; RoPE cos/sin once per forward by broadcasting (uncounted)
DECODER = DecoderConfig.from_hf(CONFIG["text_config"], rope_matmul_per_layer=False, qk_norm=True)
VISION = VisionConfig.from_hf(CONFIG)
# transformers 5.23: SDPA attention (decoder and encoder), generate() keeps the last position's
# logits, no upcast in the forward
HF = HfCode(attention="sdpa", logits="last", logits_upcast=False, clone_logits=False, moe_loop=False)

# Layout outputs and named quantities
w_patches = sp.Symbol("w_patches", integer=True, positive=True)  # 14-px patches across
h_patches = sp.Symbol("h_patches", integer=True, positive=True)  # 14-px patches down
patches = sp.Symbol("patches", integer=True, positive=True)  # patches per image


def resize_config(runtime: str) -> ResizeConfig:
    """The resize each runtime's processor runs: sides to multiples of one patch (transformers'
    LightOnOcrProcessor) or of merge x merge patches (PixtralProcessor, which vLLM runs)."""
    return ResizeConfig.from_hf(PREPROCESSOR, VISION.merge, VISION.merge if runtime == "vllm" else 1)


def load(runtime: str = "hf", attention: str | None = None, logits: str | None = None) -> Model:
    """The LightOnOCR cost model for a runtime."""
    ex, serving = execution(runtime, attention, logits, "expected", HF)
    del serving["experts"]  # a dense decoder reads every weight
    packed = runtime == "vllm"
    resize = resize_config(runtime)

    def vision_stage(v):
        # transformers: get_image_features runs every image of the batch in one tower call;
        # vLLM: every image the scheduler batches, in one packed call (PixtralHFVisionModel)
        return vision(VISION, v.batch, v.patches, v.image_tokens, packed)

    def weights():
        return seq("model", vision_weights(VISION), decoder(DECODER, ex, 1, 1, 0))

    settings = [
        ("family", "lighton-ocr"),
        ("resize", f"longest edge {resize.longest_edge} px, sides to {resize.unit} px"),
    ]
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = "all images in one Pixtral call, " + (
        "attention per image (packed)" if packed else "SDPA over the whole sequence (block-diagonal mask)"
    )
    merge = VISION.merge
    return Model(
        family=FAMILY,
        options={"longest_edge": resize.longest_edge, "round_px": resize.unit, **serving},
        layout=resize_layout(resize, INPUTS[:2], (w_patches, h_patches)),
        named={
            patches: lambda v: v.w_patches * v.h_patches,
            image_tokens: lambda v: sp.floor(v.w_patches / merge) * sp.floor(v.h_patches / merge),
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(DECODER, ex, vision_stage, summary),
        weights=weights,
        kv_elems_per_token=DECODER.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="lighton-ocr",
    summary="LightOnOCR-1B: Pixtral encoder (longest edge 1540, never upscaled), 2x2 patch merger, "
    "Qwen3 decoder",
    inputs=INPUTS,
    options=serving_options(HF.attention, HF.logits, moe=False),
    stage_names=FAMILY_STAGES,
    load=load,
    image=("width", "height"),
    serving=serving_for(CONFIG["text_config"]["max_position_embeddings"]),
    default_stage="vision",
    compare_option="runtime",  # the runtimes round sides differently (14 / 28 px)
    validation="validation.lighton_ocr_compare:validate_case",
    measurement="FlopCounterMode on transformers 5.23's native LightOnOcrForConditionalGeneration "
    "at the real sizes (meta device)",
)
