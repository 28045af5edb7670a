"""PaddleOCR-VL (0.9B): a NaViT-style SigLIP encoder at each image's own resolution, a 2x2-merge
projector and the ERNIE-4.5-0.3B decoder. The ground truth is transformers 5.23's native
``PaddleOCRVLForConditionalGeneration``.

    layout  = smart_resize: the image to multiples of 28 px within the checkpoint's pixel bounds;
              rows x cols = resized px / 28^2 image tokens (see ``resize``)
    vision  = tower over 4 * rows * cols patches per image -> projector per image (see ``vision``)
    prefill, decode, request: see ``derivations.common.vlm`` (a dense GQA decoder: 18 layers, 16
              heads over 2 KV heads of 128, SwiGLU 3072, vocab 103,424, its own lm_head)

The image is whatever the VLM is given. In the PaddleOCR-VL pipeline that is one crop of a page
cut out by the PP-DocLayoutV2 layout detector (a paragraph, a table, a formula), not the page: a
page costs one request per detected region, each at its crop's size, plus the detector.

Sizes come from the checkpoint's ``config.json`` and ``preprocessor_config.json`` (copied here; the
class defaults are not the checkpoint: the image processor's default pixel bounds are 384^2 and
1536^2). NB: transformers 5.23 builds the flat config's ``text_config`` without its
``tie_word_embeddings: false``, so a model built from the file alone ties lm_head to the embedding;
the checkpoint stores a separate lm_head, which loading keeps: 905,601,648 parameters, modelled
here (``tie_word_embeddings: false``, as the file says).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import sympy as sp

from symcost import Family, Model, Option, get_runtime, op, repeat, seq

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
from .resize import ResizeConfig, layout
from .vision import VisionConfig, projector, tower

__all__ = ["FAMILY", "load", "CONFIG", "PREPROCESSOR", "DECODER", "VISION", "PRESETS", "cols", "rows"]

_HERE = Path(__file__).parent
CONFIG = json.loads((_HERE / "config.json").read_text())
PREPROCESSOR = json.loads((_HERE / "preprocessor_config.json").read_text())
# NB: transformers computes the M-RoPE cos/sin once per forward by broadcasting (uncounted); its
# PaddleOCRMLP is down(act(gate(x)) * up(x)): the gate output is freed by the activation
DECODER = DecoderConfig.from_hf(CONFIG, rope_matmul_per_layer=False)
VISION = VisionConfig.from_hf(CONFIG)
# checkpoint -> its image processor's resize bounds. PaddleOCR-VL-1.5: the same architecture name;
# its preprocessor_config.json (huggingface.co/PaddlePaddle/PaddleOCR-VL-1.5) sets min_pixels
# 112,896 and max_pixels 1,003,520; its config.json was not seen, so its sizes are assumed equal.
RESIZES = {
    "paddleocr-vl": ResizeConfig.from_hf(PREPROCESSOR),
    "paddleocr-vl-1.5": replace(ResizeConfig.from_hf(PREPROCESSOR), min_pixels=112_896, max_pixels=1_003_520),
}
PRESETS = {
    name: f"{'PaddleOCR-VL-1.5' if name.endswith('1.5') else 'PaddleOCR-VL (0.9B)'}: images resized into "
    f"[{r.min_pixels:,}, {r.max_pixels:,}] px, at most {r.max_pixels // r.factor**2:,} image tokens"
    for name, r in RESIZES.items()
}
# transformers 5.23: SDPA attention, generate() keeps the last position's logits, no logits upcast
HF = HfCode(attention="sdpa", logits="last", logits_upcast=False, clone_logits=False, moe_loop=False)

cols = sp.Symbol("cols", integer=True, positive=True)  # resized width / 28: image tokens per row
rows = sp.Symbol("rows", integer=True, positive=True)  # resized height / 28


def load(
    preset: str = "paddleocr-vl",
    runtime: str = "hf",
    attention: str | None = None,
    logits: str | None = None,
) -> Model:
    """The PaddleOCR-VL cost model for a checkpoint's resize bounds and a runtime."""
    ex, serving = execution(runtime, attention, logits, "expected", HF)
    del serving["experts"]  # a dense decoder reads every weight
    resize = RESIZES[preset]
    fused = runtime == "vllm"
    per_token = VISION.merge * VISION.merge  # patches per image token

    def vision(v):
        patches, tokens = per_token * v.image_tokens, v.image_tokens
        merged = projector(VISION, tokens).children
        if fused:  # vLLM's _process_image_input: the tower image by image, then the projector
            return seq(
                "vision",
                repeat("tower", v.batch, *tower(VISION, 1, patches, True).children, collect=True),
                repeat("projector", v.batch, *merged, collect=True),
            )
        # transformers' get_image_features: every image's patches in one tower call, the projector
        # image by image, its outputs concatenated
        return seq(
            "vision",
            tower(VISION, v.batch, patches, False),
            repeat("projector", v.batch, *merged, collect=True),
            op("cat", "elementwise", elems=v.batch * tokens * VISION.llm_hidden, fn="copy"),
        )

    def weights():
        return seq(
            "model",
            seq("vision", tower(VISION, 1, per_token, False), projector(VISION, 1)),
            decoder(DECODER, ex, 1, 1, 0),
        )

    settings = [("family", "paddleocr-vl"), ("preset", f"{preset} ({PRESETS[preset]})")]
    settings += [(k, str(x)) for k, x in serving.items()]
    summary = "smart_resize to 28-px units, 2x2 patches per image token"
    summary += ", the tower image by image" if fused else ", every image's patches in one tower call"
    return Model(
        family=FAMILY,
        options={"preset": preset, **serving},
        layout=layout(resize, INPUTS[:2], (cols, rows)),
        named={
            image_tokens: lambda v: v.rows * v.cols,
            prefill_tokens: lambda v: v.prompt_tokens + v.image_tokens,
        },
        stages=stages(DECODER, ex, vision, summary),
        weights=weights,
        kv_elems_per_token=DECODER.kv_elems_per_token,
        runtime=get_runtime(runtime),
        settings=tuple(settings),
    )


FAMILY = Family(
    name="paddleocr-vl",
    summary="PaddleOCR-VL 0.9B: NaViT SigLIP encoder at native resolution (smart_resize), 2x2-merge "
    "projector, ERNIE-4.5-0.3B decoder; the image is one layout-detector crop, not a page",
    inputs=INPUTS,
    options=(
        Option(
            "preset", PRESETS, "paddleocr-vl", "checkpoint (its image processor's pixel bounds)", IMAGE_STAGES
        ),
    )
    + serving_options(HF.attention, HF.logits, moe=False),
    stage_names=STAGE_NAMES,
    load=load,
    image=("width", "height"),
    serving=SERVING,
    default_stage="vision",
    compare_option="preset",
    validation="validation.paddleocr_vl:validate_case",
    measurement="FlopCounterMode on transformers 5.23's native PaddleOCRVLForConditionalGeneration at "
    "the checkpoint's sizes (meta device)",
)
