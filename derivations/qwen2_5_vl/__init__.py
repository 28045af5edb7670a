"""Qwen2.5-VL (and olmOCR-2, its fine-tune): a windowed ViT at native resolution, a 2x2 patch
merger, and a Qwen2 decoder with M-RoPE. The ground truth is transformers 5.23's native
``Qwen2_5_VLForConditionalGeneration``.

    vision  = every image of the batch in one tower call (see ``vision.py``): W' x H' px ->
              (W'/14)(H'/14) patches -> 32 blocks -> (W'/28)(H'/28) image tokens
    prefill, decode, request: see ``derivations.common.vlm``

Sizes come from each preset's ``config.json`` (copied into ``configs/``; transformers' class
defaults are a 72B model). The layout is the processor's ``smart_resize`` (``resize.py``); with
``render=olmocr`` the image given is a page in points, rendered first as olmOCR's pipeline does.
Image tokens: ``prod(image_grid_thw) // 4`` (``Qwen2_5_VLProcessor.replace_image_token``); the
``<|vision_start|>`` and ``<|vision_end|>`` around them are text tokens, counted in P.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import sympy as sp

from symcost import Family, Model, Option, get_runtime, seq

from ..common.decoder import DecoderConfig, decoder
from ..common.vlm import (
    IMAGE_STAGES,
    INPUTS,
    SERVING,
    STAGE_NAMES,
    HfCode,
    execution,
    image_tokens,
    prefill_tokens,
    serving_options,
    stages,
)
from .resize import PageRender, ResizeConfig, layout
from .vision import VisionConfig, tower

__all__ = [
    "FAMILY",
    "load",
    "PRESETS",
    "RENDERS",
    "RENDERERS",
    "Preset",
    "w_tokens",
    "h_tokens",
    "w_rest",
    "h_rest",
]

_CONFIGS = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class Preset:
    """One checkpoint: its architecture and its processor's resize settings."""

    summary: str
    config: dict  # the checkpoint's config.json
    preprocessor: dict  # the processor's preprocessor_config.json

    @property
    def decoder(self) -> DecoderConfig:
        # Qwen2 attention always has q/k/v biases; its configs carry no attention_bias key. The
        # text model builds cos/sin once per forward, one table per M-RoPE axis (t, h, w).
        text = self.config.get("text_config") or self.config
        text = {**text, "tie_word_embeddings": self.config.get("tie_word_embeddings", False)}
        return replace(
            DecoderConfig.from_hf(text, rope_matmul_per_layer=False),
            attention_bias=True,
            rope_axes=3,
        )

    @property
    def vision(self) -> VisionConfig:
        return VisionConfig.from_hf(self.config["vision_config"])

    @property
    def resize(self) -> ResizeConfig:
        return ResizeConfig.from_hf(self.preprocessor)


def _json(name: str) -> dict:
    return json.loads((_CONFIGS / name).read_text())


PRESETS = {
    # olmOCR-2 loads its processor from Qwen/Qwen2.5-VL-7B-Instruct (model card, olmocr pipeline)
    "olmocr-2-7b": Preset(
        "allenai/olmOCR-2-7B-1025: Qwen2.5-VL-7B fine-tuned for OCR",
        _json("olmocr-2-7b.json"),
        _json("qwen2.5-vl-7b.preprocessor.json"),
    ),
    "qwen2.5-vl-7b": Preset(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        _json("qwen2.5-vl-7b.json"),
        _json("qwen2.5-vl-7b.preprocessor.json"),
    ),
    "qwen2.5-vl-3b": Preset(
        "Qwen/Qwen2.5-VL-3B-Instruct (the base of Nanonets-OCR2-3B; tied embeddings)",
        _json("qwen2.5-vl-3b.json"),
        _json("qwen2.5-vl-3b.preprocessor.json"),
    ),
}

RENDERS = {
    "none": "the image given is what the processor receives (W x H px)",
    "olmocr": "the image given is a page of W x H points, rendered as olmOCR's pipeline does "
    "(pdftoppm -r 1288*72/max(W, H): longest side 1288 px), then resized",
}
RENDERERS = {"none": None, "olmocr": PageRender("olmocr", 1288)}

# transformers 5.23: SDPA attention (vision and decoder), generate() keeps the last position's
# logits, no upcast in the forward
HF = HfCode(attention="sdpa", logits="last", logits_upcast=False, clone_logits=False, moe_loop=False)

# Layout outputs and named quantities
w_tokens = sp.Symbol("w_tokens", integer=True, positive=True)  # image tokens across (W'/28)
h_tokens = sp.Symbol("h_tokens", integer=True, positive=True)  # image tokens down (H'/28)
w_rest = sp.Symbol("w_rest", integer=True, nonnegative=True)  # tokens of the partial window column
h_rest = sp.Symbol("h_rest", integer=True, nonnegative=True)  # tokens of the partial window row


def load(
    preset: str = "olmocr-2-7b",
    render: str = "none",
    runtime: str = "hf",
    attention: str | None = None,
    logits: str | None = None,
) -> Model:
    """The Qwen2.5-VL cost model for a preset, page render and runtime."""
    p = PRESETS[preset]
    dec, vis = p.decoder, p.vision
    ex, serving = execution(runtime, attention, logits, "expected", HF)
    serving.pop("experts")  # a dense decoder: no experts option
    fused = runtime == "vllm"

    def vision(v):
        # transformers' get_image_features and vLLM's _process_image_input (vllm-project/vllm
        # 002d181, models/qwen2_5_vl.py) both run every image of the batch through one tower call
        return tower(vis, v.batch, (v.w_tokens, v.h_tokens, v.w_rest, v.h_rest), fused)

    def weights():
        return seq(
            "model",
            tower(vis, 1, (1, 1, 1, 1), fused),
            decoder(dec, ex, 1, 1, 0),
        )

    settings = [("family", "qwen2.5-vl"), ("preset", f"{preset} ({p.summary})"), ("render", render)]
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = "smart_resize to 28-px tokens, all images in one tower call"
    if render != "none":
        summary = f"page rendered by {render}, then " + summary
    return Model(
        family=FAMILY,
        options={"preset": preset, "render": render, **serving},
        layout=layout(
            p.resize, RENDERERS[render], vis.window, INPUTS[:2], (w_tokens, h_tokens, w_rest, h_rest)
        ),
        named={
            image_tokens: lambda v: v.w_tokens * v.h_tokens,
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(dec, ex, vision, summary),
        weights=weights,
        kv_elems_per_token=dec.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="qwen2.5-vl",
    summary="Qwen2.5-VL / olmOCR-2: windowed ViT at native resolution (smart_resize, 28-px tokens), "
    "2x2 merger, Qwen2 decoder with M-RoPE",
    inputs=INPUTS,
    options=(
        Option("preset", {k: v.summary for k, v in PRESETS.items()}, "olmocr-2-7b", "the checkpoint"),
        Option("render", RENDERS, "none", "what --image W x H is", IMAGE_STAGES),
    )
    + serving_options(HF.attention, HF.logits, moe=False),
    stage_names=STAGE_NAMES,
    load=load,
    image=("width", "height"),
    serving=SERVING,
    default_stage="vision",
    compare_option="preset",
    validation="validation.qwen2_5_vl_compare:validate_case",
    measurement="FlopCounterMode on transformers 5.23's native Qwen2_5_VLForConditionalGeneration "
    "at the real sizes (meta device)",
)
