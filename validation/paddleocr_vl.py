"""PaddleOCR-VL against transformers 5.23's native ``PaddleOCRVLForConditionalGeneration``: analytic
(symcost's trees) vs measured, per component; the engine of ``symcost validate paddleocr-vl``.

The model is built from ``derivations/paddleocr_vl/config.json`` with ``tie_word_embeddings: false``
placed in ``text_config`` (the checkpoint's separate lm_head: 905,601,648 parameters; see the family's
docstring); nothing is re-implemented. torch/transformers are imported lazily.

Counters: ``torch`` (FlopCounterMode on the meta device, with the CPU SDPA formula torch 2.13 lacks:
``validation.measure.torch_formulas``) and ``torch-cpu`` (out of the box: SDPA counts 0). fvcore is not
measured for this family.

Vision (``measure_vision``): ``model.model.get_image_features`` for ``batch`` images of one grid, the
model's own code: one tower call over every image's patches (SDPA image by image), the projector image
by image. On meta, the index tensors its helpers build from ``image_grid_thw``
(``get_vision_interpolation_indices_and_weights``, ``get_vision_position_ids``,
``get_vision_cu_seqlens``) cannot be made (``repeat_interleave`` needs real data), so the wrapper runs
those same helpers on CPU inside the counted call (they count 0 FLOPs) and passes their results as
the precomputed kwargs the model accepts (``interp_indices`` ...); ``cu_seqlens`` stays on CPU, as the
model's ``.tolist()`` needs.
Decoder (``measure_decoder``): the whole forward with ``inputs_embeds``, ``use_cache=True`` and
``logits_to_keep`` 0 ("all") or 1 ("last", as ``generate()`` runs prefill), after ``l_past`` cached
tokens in a ``DynamicCache``.
Layout: ``run_processor`` runs ``PaddleOCRVLProcessor`` (its PIL image processor, built from the
checkpoint's ``preprocessor_config.json``, and a word-level tokenizer made offline) on a blank image;
``processor_resize`` is the processor's own ``smart_resize`` called as its ``resize`` calls it.
Memory (``measure_memory``): the live-tensor peak (``validation.memory.LiveBytes``) of the same code on
real CPU tensors (bf16, random weights) of a reduced-depth model: a vision layer's peak does not depend
on the depth, the decoder's is compared with the analytic tree at the same depth.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from symcost import SymcostError

from .compare import compare
from .measure import _exclusive, _torch_counts, build_native, decoder_wrapper, dynamic_cache

__all__ = [
    "COUNTERS",
    "STAGES",
    "build_model",
    "meta_model",
    "param_counts",
    "measure_vision",
    "measure_decoder",
    "measure_memory",
    "run_processor",
    "processor_resize",
    "processor_grid",
    "grid_mismatches",
    "vision_columns",
    "decoder_columns",
    "param_columns",
    "validate_case",
    "validate_params",
]

COUNTERS = ("torch", "torch-cpu")
STAGES = ("vision", "prefill", "decode")
ATTENTIONS = ("sdpa", "eager")  # decoder attention implementations that run on CPU and meta
PACKAGE = Path(__file__).resolve().parents[1] / "derivations" / "paddleocr_vl"
# the processor runs on a blank image up to this size; above it, its own smart_resize
PROCESSOR_MAX_PX = 4096 * 4096
_TOWER = "model.visual.vision_model."
_LAYERS = "model.language_model.layers."
VISION_COLUMNS = (
    "tower_total",
    "patch_embed",
    "encoder_total",
    "encoder_attn_proj",
    "encoder_attn_core",
    "encoder_mlp",
    "projector_total",
    "projector_linear_1",
    "projector_linear_2",
    "vision_total",
)
DECODER_COLUMNS = (
    "layers_total",
    "layers_attn_proj",
    "layers_attn_core",
    "layers_mlp",
    "layer_min",
    "layer_max",
    "lm_head",
    "other_outside_layers_and_lm_head",
    "total_full_depth",
)
PARAM_COMPONENTS = (
    "vision_tower",
    "vision_embeddings",
    "vision_encoder_layer",
    "vision_post_layernorm",
    "projector",
    "embed_tokens",
    "decoder_layer",
    "decoder_layer_attn",
    "decoder_layer_mlp",
    "final_norm",
    "lm_head",
    "language_model",
    "total",
)


def _check_counter(counter: str):
    if counter not in COUNTERS:
        raise SymcostError(
            f"--counter: {counter!r} is not one that validate paddleocr-vl runs; choose {', '.join(COUNTERS)}"
        )


# --------------------------------------------------------------------------- the model


def hf_config() -> dict:
    """The checkpoint's config as ``PaddleOCRVLConfig`` kwargs: ``text_config`` built from the flat text
    keys with ``tie_word_embeddings: false`` (what loading the checkpoint keeps), the vision config as
    stored, the token ids."""
    raw = json.loads((PACKAGE / "config.json").read_text())
    # the parameter dtype is chosen when the model is built (torch_dtype would pin the tower's)
    drop = ("auto_map", "architectures", "torch_dtype")
    vision = {k: v for k, v in raw["vision_config"].items() if k not in drop}
    text_keys = (
        "head_dim",
        "hidden_act",
        "hidden_size",
        "intermediate_size",
        "max_position_embeddings",
        "num_attention_heads",
        "num_hidden_layers",
        "num_key_value_heads",
        "pad_token_id",
        "rms_norm_eps",
        "use_bias",
        "vocab_size",
    )
    text = {k: raw[k] for k in text_keys} | {
        "tie_word_embeddings": raw["tie_word_embeddings"],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": raw["rope_theta"],
            "mrope_section": raw["rope_scaling"]["mrope_section"],
        },
    }
    ids = ("image_token_id", "video_token_id", "vision_start_token_id")
    return {
        "tie_word_embeddings": raw["tie_word_embeddings"],
        "text_config": text,
        "vision_config": vision,
    } | {k: raw[k] for k in ids}


def build_model(device="meta", dtype=None, *, vision_layers=None, text_layers=None, real=None):
    """``PaddleOCRVLForConditionalGeneration`` from the checkpoint config, eval(), parameters in ``dtype``
    (bf16). ``device="meta"``: no memory; any other device: random weights (normal(0, 0.02), seed 0) for
    the parameters whose names start with one of ``real`` (default: all), every other one moved to meta
    (no memory; computing with it raises). ``vision_layers`` / ``text_layers``: a reduced depth."""
    from transformers import PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration
    from transformers.utils import logging

    raw = hf_config()
    if vision_layers is not None:
        raw["vision_config"] = raw["vision_config"] | {"num_hidden_layers": vision_layers}
    if text_layers is not None:
        raw["text_config"] = raw["text_config"] | {"num_hidden_layers": text_layers}
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 'mrope_section' is an unrecognised rope key to its validator
    try:
        config = PaddleOCRVLConfig(**raw)
    finally:
        logging.set_verbosity(verbosity)
    return build_native(PaddleOCRVLForConditionalGeneration, config, device, dtype, real)


@functools.lru_cache(maxsize=1)
def meta_model():
    """One shared ``build_model("meta")`` (about 1 s); callers must not modify it."""
    return build_model("meta")


def param_counts(model) -> dict[str, int]:
    """Parameters per component of a ``build_model()`` model (one layer of each stack)."""

    def n(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    tower = model.model.visual.vision_model
    text = model.model.language_model
    layer = text.layers[0]
    out = {
        "vision_tower": n(tower),
        "vision_embeddings": n(tower.embeddings),
        "vision_encoder_layer": n(tower.encoder.layers[0]),
        "vision_post_layernorm": n(tower.post_layernorm),
        "projector": n(model.model.projector),
        "embed_tokens": n(text.embed_tokens),
        "decoder_layer": n(layer),
        "decoder_layer_attn": n(layer.self_attn),
        "decoder_layer_mlp": n(layer.mlp),
        "final_norm": n(text.norm),
        "lm_head": n(model.lm_head),
        "language_model": n(text),
        "total": n(model),
    }
    return {k: int(out[k]) for k in PARAM_COMPONENTS}


# --------------------------------------------------------------------------- counting


def _count(module, inputs, counter):
    """(path, op) -> FLOPs counted in that module itself, paths relative to the wrapped model."""
    counts = _exclusive(_torch_counts(module, inputs, counter))
    return {("" if path == "m" else path.removeprefix("m."), op): n for (path, op), n in counts.items()}


def _attribute(counts, columns_of, names) -> dict[str, int]:
    out = dict.fromkeys(names, 0)
    for (path, op), n in counts.items():
        for column in columns_of(path, op):
            out[column] += n
    return out


_LINEAR = ("mm", "addmm")
_SDPA = ("_scaled_dot_product_flash_attention_for_cpu",)


def _vision_columns(path: str, op: str) -> tuple[str, ...]:
    """The columns one vision (module path, op) count belongs to; anything unexpected raises."""
    if path == _TOWER + "embeddings.patch_embedding" and op == "convolution":
        return ("tower_total", "patch_embed", "vision_total")
    layer = re.fullmatch(re.escape(_TOWER) + r"encoder\.layers\.\d+\.(self_attn|mlp)(?:\.(\w+))?", path)
    if layer and layer[1] == "self_attn" and layer[2] is None and op in _SDPA:
        return ("tower_total", "encoder_total", "encoder_attn_core", "vision_total")
    if (
        layer
        and layer[1] == "self_attn"
        and layer[2] in ("q_proj", "k_proj", "v_proj", "out_proj")
        and op in _LINEAR
    ):
        return ("tower_total", "encoder_total", "encoder_attn_proj", "vision_total")
    if layer and layer[1] == "mlp" and layer[2] in ("fc1", "fc2") and op in _LINEAR:
        return ("tower_total", "encoder_total", "encoder_mlp", "vision_total")
    proj = re.fullmatch(r"model\.projector\.(linear_[12])", path)
    if proj and op in _LINEAR:
        return ("projector_total", f"projector_{proj[1]}", "vision_total")
    raise KeyError(f"unattributed count {op!r} in {path!r}")


def _image_features(model, grid, meta: bool):
    """``forward(pixel_values)`` = ``model.model.get_image_features(pixel_values, grid)``, the images'
    features concatenated; ``rows`` keeps the feature rows made per image."""
    import torch
    from torch import nn
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_interpolation_indices_and_weights,
        get_vision_position_ids,
    )

    class ImageFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model
            self.rows: list[int] = []

        def forward(self, pixel_values):
            kwargs = {}
            if meta:  # the model's own helpers on CPU (see the module docstring)
                emb = self.m.model.visual.vision_model.embeddings
                indices, weights = get_vision_interpolation_indices_and_weights(
                    grid,
                    num_grid_per_side=emb.num_grid_per_side,
                    mode=emb.interpolation_mode,
                    align_corners=emb.interpolation_align_corners,
                    spatial_merge_size=1,
                )
                kwargs = {
                    "interp_indices": indices.to("meta"),
                    "interp_weights": weights.to("meta"),
                    "position_ids": get_vision_position_ids(grid, 1).to("meta"),
                    "cu_seqlens": get_vision_cu_seqlens(grid),
                }
            out = self.m.model.get_image_features(pixel_values, grid, **kwargs)
            self.rows = [int(f.shape[0]) for f in out.pooler_output]
            return torch.cat(out.pooler_output)

    return ImageFeatures()


def _grid(rows: int, cols: int, batch: int, merge: int):
    import torch

    return torch.tensor([[1, merge * rows, merge * cols]] * batch)


def _pixels(patches: int, model, device):
    import torch

    emb = model.model.visual.vision_model.embeddings
    shape = (patches, emb.config.num_channels, emb.patch_size, emb.patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.randn(*shape, device=device, dtype=torch.float32)  # as the processor returns them


def measure_vision(
    rows: int, cols: int, counter: str = "torch", batch: int = 1, model=None
) -> dict[str, int]:
    """Vision FLOPs of ``batch`` images resized to ``rows x cols`` merged tokens (2x2 patches each), keyed
    by VISION_COLUMNS, plus ``image_features`` (feature rows per image). Identities: tower_total =
    patch_embed + encoder_total; encoder_total = attn_proj + attn_core + mlp; projector_total = linear_1
    + linear_2; vision_total = tower_total + projector_total."""
    import torch

    _check_counter(counter)
    model = model or meta_model()
    merge = model.config.vision_config.spatial_merge_size
    grid = _grid(rows, cols, batch, merge)
    wrapper = _image_features(model, grid, meta=True)
    counts = _count(wrapper, (_pixels(int(grid.prod(-1).sum()), model, "meta"),), counter)
    out = _attribute(counts, _vision_columns, VISION_COLUMNS)
    if out["vision_total"] != sum(counts.values()):
        raise RuntimeError("vision columns do not add up to the counted total")
    if len(set(wrapper.rows)) != 1 or len(wrapper.rows) != batch:
        raise RuntimeError(f"expected {batch} images of equal feature rows, got {wrapper.rows}")
    out["image_features"] = wrapper.rows[0]
    del torch
    return {k: int(v) for k, v in out.items()}


def _decoder_columns(path: str, op: str) -> tuple[str, ...]:
    """The columns one decoder count belongs to (eager attention: its two ``bmm`` in the attention
    module itself, QK^T and PV, are the attention core)."""
    if op not in _LINEAR + _SDPA + ("bmm",):
        raise KeyError(f"unexpected op {op!r} in {path!r}")
    if path == "lm_head":
        return ("lm_head", "total_full_depth")
    m = re.fullmatch(re.escape(_LAYERS) + r"(\d+)\.(self_attn|mlp)(?:\.(\w+))?", path)
    if not m:
        return ("other_outside_layers_and_lm_head", "total_full_depth")
    part = "mlp" if m[2] == "mlp" else ("attn_core" if m[3] is None else "attn_proj")
    return ("layers_total", f"layers_{part}", f"L{m[1]}", "total_full_depth")


def measure_decoder(
    s_new: int,
    l_past: int,
    counter: str = "torch",
    logits: str = "all",
    batch: int = 1,
    attention: str = "sdpa",
    model=None,
) -> dict[str, int]:
    """Decoder FLOPs: ``batch`` sequences of ``s_new`` new tokens after ``l_past`` cached ones (18 layers,
    final norm, lm_head), keyed by DECODER_COLUMNS (layer_min / layer_max: the per-layer totals)."""
    import torch

    _check_counter(counter)
    if logits not in ("all", "last"):
        raise ValueError(f"logits must be 'all' or 'last', got {logits!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    model = model or meta_model()
    text = model.config.text_config
    param = model.lm_head.weight
    embeds = torch.zeros(batch, s_new, text.hidden_size, device=param.device, dtype=param.dtype)
    wrapper = decoder_wrapper(model, l_past, 0 if logits == "all" else 1)
    layers = [f"L{i}" for i in range(text.num_hidden_layers)]
    before = text._attn_implementation
    model.set_attn_implementation({"text_config": attention})
    try:
        counts = _count(wrapper, (embeds,), counter)
    finally:
        model.set_attn_implementation({"text_config": before})
    cols = _attribute(counts, _decoder_columns, DECODER_COLUMNS + tuple(layers))
    out = {k: cols[k] for k in DECODER_COLUMNS}
    out |= {"layer_min": min(cols[n] for n in layers), "layer_max": max(cols[n] for n in layers)}
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- the processor


def _preprocessor(preset: str) -> dict:
    from derivations.paddleocr_vl import RESIZES

    raw = json.loads((PACKAGE / "preprocessor_config.json").read_text())
    r = RESIZES[preset]
    return raw | {"min_pixels": r.min_pixels, "max_pixels": r.max_pixels, "size": {}}


@functools.lru_cache(maxsize=4)
def image_processor(preset: str = "paddleocr-vl"):
    """``PaddleOCRVLImageProcessorPil`` as the checkpoint configures it (min/max pixels of ``preset``)."""
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import (
        PaddleOCRVLImageProcessorPil,
    )

    keys = (
        "do_convert_rgb",
        "do_normalize",
        "do_rescale",
        "do_resize",
        "image_mean",
        "image_std",
        "resample",
    )
    keys += ("rescale_factor", "patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels")
    raw = _preprocessor(preset)
    return PaddleOCRVLImageProcessorPil(**{k: raw[k] for k in keys})


IMAGE_TOKEN = "<|IMAGE_PLACEHOLDER|>"


@functools.lru_cache(maxsize=4)
def processor(preset: str = "paddleocr-vl"):
    """``PaddleOCRVLProcessor`` with the checkpoint's image processor and a word-level tokenizer that
    knows the image placeholder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PaddleOCRVLProcessor, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, IMAGE_TOKEN: 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", extra_special_tokens={"image_token": IMAGE_TOKEN}
    )
    return PaddleOCRVLProcessor(image_processor=image_processor(preset), tokenizer=tokenizer)


def run_processor(width: int, height: int, preset: str = "paddleocr-vl") -> dict:
    """The processor on a blank W x H RGB image with the prompt "<image placeholder>": image tokens
    written, ``image_grid_thw``, pixel rows."""
    from PIL import Image
    from transformers.utils import logging

    proc = processor(preset)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 1-3 px sides make it warn that the channel axis is ambiguous
    try:
        out = proc(images=Image.new("RGB", (width, height)), text=IMAGE_TOKEN)
    finally:
        logging.set_verbosity(verbosity)
    t, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    return {
        "image_tokens": sum(int(i == proc.image_token_id) for i in out["input_ids"][0]),
        "grid_thw": (t, gh, gw),
        "pixel_rows": len(out["pixel_values"]),
    }


def processor_resize(preset: str = "paddleocr-vl"):
    """``resize(height, width) -> (height', width')``: the processor's own ``smart_resize`` bound to the
    arguments its ``resize`` passes (factor patch_size * merge_size, its size bounds)."""
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import smart_resize

    ip = image_processor(preset)
    return functools.partial(
        smart_resize,
        factor=ip.patch_size * ip.merge_size,
        min_pixels=ip.size.shortest_edge,
        max_pixels=ip.size.longest_edge,
    )


@functools.lru_cache(maxsize=256)
def processor_layout(width: int, height: int, preset: str = "paddleocr-vl") -> tuple:
    """(cols, rows, image_tokens) as the processor gives them: a real run on a blank image up to
    PROCESSOR_MAX_PX pixels, above that its smart_resize and its token rule. A refusal is one line."""
    merge = image_processor(preset).merge_size
    try:
        if width * height <= PROCESSOR_MAX_PX:
            run = run_processor(width, height, preset)
            _, gh, gw = run["grid_thw"]
            tokens = run["image_tokens"]
        else:
            h, w = processor_resize(preset)(height, width)
            gh, gw = h // image_processor(preset).patch_size, w // image_processor(preset).patch_size
            tokens = gh * gw // (merge * merge)
    except ValueError as e:
        raise SymcostError(
            f"--image: transformers' processor refuses {width}x{height}: {str(e).splitlines()[0][:120]}"
        ) from None
    return (("cols", gw // merge), ("rows", gh // merge), ("image_tokens", tokens))


# --------------------------------------------------------------------------- the exhaustive grid


def _grid_block(args):
    """(cols, rows) int16 arrays (-1 where the processor refuses) for a block of widths; in a worker.
    One Python call of smart_resize per pair, mapped over heights in runs; a run that meets a refusal
    (a ValueError) is redone pair by pair."""
    from itertools import chain, repeat

    import numpy as np

    preset, widths, heights = args
    resize = processor_resize(preset)
    factor = image_processor(preset).patch_size * image_processor(preset).merge_size

    def one(h, w):
        try:
            return resize(h, w)
        except ValueError:
            return (-factor, -factor)

    grids: list = []
    for w in widths:
        for s in range(0, len(heights), 256):
            run = heights[s : s + 256]
            try:
                grids.extend(list(map(resize, run, repeat(w))))
            except ValueError:
                grids.extend([one(h, w) for h in run])
    flat = np.fromiter(chain.from_iterable(grids), dtype=np.int32, count=2 * len(grids))
    out = flat.reshape(len(widths), len(heights), 2) // factor
    return out[..., 1].astype(np.int16), out[..., 0].astype(np.int16)


def processor_grid(widths, heights, preset: str = "paddleocr-vl", processes=None):
    """``(cols, rows)``: int16 arrays of shape (len(widths), len(heights)) from the processor's own
    smart_resize (-1 where it refuses), split over worker processes by width."""
    from .ocr2_grid import by_width

    processor_resize(preset)  # import transformers once: forked workers inherit it
    return by_width(_grid_block, widths, heights, processes, extra=(preset,))


def grid_mismatches(model, widths, heights, processes=None, show: int = 10) -> dict:
    """The family's resize rule (vectorised, refusals as -1) against ``processor_grid`` on every pair of
    widths x heights, refusals included (``validation.ocr2_grid.compare_grids``; ``refused``: the
    pairs the processor refuses)."""
    import numpy as np

    from derivations.paddleocr_vl import RESIZES
    from derivations.paddleocr_vl.resize import resize

    from .ocr2_grid import compare_grids

    preset = model.options["preset"]
    refused: list = []

    def reference(w, h):
        cols, rows = processor_grid(w, h, preset, processes)
        refused.append(int((cols < 0).sum()))
        return cols, rows

    def analytic(w, h):  # in slabs of widths: the rule's temporaries stay small
        slabs = [
            resize(RESIZES[preset], w[k : k + 512, None], h[None, :], refuse=False)
            for k in range(0, len(w), 512)
        ]
        return tuple(np.concatenate(parts) for parts in zip(*slabs))

    return compare_grids(analytic, reference, widths, heights, show) | {"refused": refused[0]}


# --------------------------------------------------------------------------- analytic columns


class _Tree:
    """One evaluated stage: FLOPs per tree path and the op kinds / repeat counts of the stage's tree."""

    def __init__(self, model, stage: str, convention: str, values: dict):
        self.result = model.evaluate(stage=stage, convention=convention, **values)
        self.flops = self.result["components"]
        self.counts: dict[str, int] = {}
        self._walk(model.tree(stage), "")

    def _walk(self, node, prefix):
        path = f"{prefix}.{node.name}" if prefix else node.name
        self.counts[path] = node.count
        for child in node.children:
            self._walk(child, path)

    def __getitem__(self, path: str) -> int:
        return self.flops[path]


def vision_columns(model, values: dict, counter: str) -> dict[str, int]:
    """Analytic vision columns (as ``measure_vision`` keys them) and the layout, for one point."""
    _check_counter(counter)
    t = _Tree(model, "vision", counter, values)
    enc, attn = "vision.tower.encoder", "vision.tower.encoder.layers.attn"
    out = {k: t.result[k] for k in ("cols", "rows", "image_tokens")}
    out |= {
        "tower_total": t["vision.tower"],
        "patch_embed": t["vision.tower.embeddings.patch_embed"],
        "encoder_total": t[enc],
        "encoder_attn_proj": sum(t[f"{attn}.{p}_proj"] for p in ("q", "k", "v", "out")),
        "encoder_attn_core": t[f"{attn}.attn_core"],
        "encoder_mlp": t[f"{enc}.layers.mlp"],
        "projector_total": t["vision.projector"],
        "projector_linear_1": t["vision.projector.linear_1"],
        "projector_linear_2": t["vision.projector.linear_2"],
        "vision_total": t["vision"],
        "image_features": t.result["image_tokens"],  # the features must fill the image block exactly
    }
    return out


def decoder_columns(model, stage: str, values: dict, counter: str) -> dict[str, int]:
    """Analytic decoder columns (as ``measure_decoder`` keys them) for a prefill or a decode step."""
    _check_counter(counter)
    t = _Tree(model, stage, counter, values)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    layers = f"{root}.layers"
    count = int(t.counts[layers])
    out = {k: t.result[k] for k in ("cols", "rows", "image_tokens", "prefill_tokens") if k in t.result}
    out |= {
        "layers_total": t[layers],
        "layers_attn_proj": sum(t[f"{layers}.attn.{p}_proj"] for p in "qkvo"),
        "layers_attn_core": t[f"{layers}.attn.attn_core"],
        "layers_mlp": t[f"{layers}.mlp"],
        "lm_head": t[f"{root}.lm_head"],
        "total_full_depth": t[root],
    }
    if out["layers_total"] % count:
        raise AssertionError(f"{layers}: {out['layers_total']} is not {count} equal layers")
    out["layer_min"] = out["layer_max"] = out["layers_total"] // count  # one repeated node: all alike
    out["other_outside_layers_and_lm_head"] = out["total_full_depth"] - out["layers_total"] - out["lm_head"]
    return out


def param_columns(model) -> dict[str, int]:
    """Analytic parameters keyed like ``param_counts``, from the weights tree."""
    params = model.parameters()
    root = model.weights_tree()

    def per(path):  # one repetition of a repeated node
        return params[f"model.{path}"] // int(root.find(path).count)

    out = {
        "vision_tower": params["model.vision.tower"],
        "vision_embeddings": params["model.vision.tower.embeddings"],
        "vision_encoder_layer": per("vision.tower.encoder.layers"),
        "vision_post_layernorm": params["model.vision.tower.post_layernorm"],
        "projector": params["model.vision.projector"],
        "embed_tokens": params["model.decoder.embed_tokens"],
        "decoder_layer": per("decoder.layers"),
        "decoder_layer_attn": params["model.decoder.layers.attn"] // int(root.find("decoder.layers").count),
        "decoder_layer_mlp": params["model.decoder.layers.mlp"] // int(root.find("decoder.layers").count),
        "final_norm": params["model.decoder.final_norm"],
        "lm_head": params["model.decoder.lm_head"],
        "total": params["model"],
    }
    out["language_model"] = params["model.decoder"] - out["lm_head"]
    return out


# --------------------------------------------------------------------------- cases


def _check_case(model, stage: str, counter: str):
    """Refuse, in one line naming the parameter, what validate cannot measure."""
    if model.family.name != "paddleocr-vl":
        raise SymcostError(f"validate: {__name__} measures paddleocr-vl, not {model.family.name}")
    if stage not in STAGES:
        raise SymcostError(f"--stage: validate measures {', '.join(STAGES)}, not {stage!r}")
    _check_counter(counter)
    opts = model.options
    if opts["runtime"] != "hf":
        raise SymcostError(
            f"--runtime: validate measures transformers' module, i.e. runtime hf, not {opts['runtime']!r}"
        )
    if stage != "vision" and opts["attention"] not in ATTENTIONS:
        raise SymcostError(
            f"--attention: {opts['attention']!r} does not run on CPU or meta; "
            f"validate measures {' or '.join(ATTENTIONS)}"
        )


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one point of ``stage`` with ``counter`` on transformers' module and compare it with the
    analytic columns. ``check_only``: only refuse what cannot run (SymcostError) and return {}; for an
    image that includes the processor run, so a size it refuses is refused first."""
    values = model.check_inputs(stage, point)
    _check_case(model, stage, counter)
    opts = model.options
    layout = (
        dict(processor_layout(values["width"], values["height"], opts["preset"])) if stage != "decode" else {}
    )
    if check_only:
        return {}
    batch = values.get("batch", 1)
    case = {"family": "paddleocr-vl", "preset": opts["preset"], "stage": stage, "counter": counter}
    case |= {"convention": counter, **values}
    if stage == "vision":
        analytic = vision_columns(model, values, counter)
        measured = layout | measure_vision(layout["rows"], layout["cols"], counter, batch)
        case["title"] = (
            f"paddleocr-vl {opts['preset']} {values['width']}x{values['height']} vision, batch {batch}, "
            f"counter {counter}: {layout['cols']}x{layout['rows']} image tokens ({layout['image_tokens']})"
        )
    else:
        analytic = decoder_columns(model, stage, values, counter)
        attention = opts["attention"]
        if stage == "decode":
            kv_len = values["kv_len"]
            measured = measure_decoder(1, kv_len, counter, "last", batch, attention)
            case |= {"s_new": 1, "l_past": kv_len, "attention": attention}
            case["title"] = (
                f"paddleocr-vl decode L={kv_len}, batch {batch}, attention {attention}, counter {counter}"
            )
        else:
            s_new = values["prompt_tokens"] + layout["image_tokens"]
            measured = layout | {"prefill_tokens": s_new}
            measured |= measure_decoder(s_new, 0, counter, opts["logits"], batch, attention)
            case |= {"s_new": s_new, "l_past": 0, "logits": opts["logits"], "attention": attention}
            case["title"] = (
                f"paddleocr-vl {opts['preset']} {values['width']}x{values['height']} prefill S={s_new} "
                f"(P={values['prompt_tokens']} + {layout['image_tokens']} image tokens), batch {batch}, "
                f"logits {opts['logits']}, attention {attention}, counter {counter}"
            )
    case["rows"] = compare(analytic, measured)
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case


def validate_params(model, measured: dict[str, int] | None = None) -> dict:
    """The analytic parameters against ``param_counts`` of transformers' module built on meta."""
    measured = measured or param_counts(meta_model())
    rows = compare(param_columns(model), measured)
    return {
        "title": "paddleocr-vl parameters (one layer of each stack)",
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
        "measured": measured,
    }


# --------------------------------------------------------------------------- peak memory


def _vision_memory_case(model, rows: int, cols: int, batch: int):
    import torch

    grid = _grid(rows, cols, batch, model.config.vision_config.spatial_merge_size)
    pixels = _pixels(int(grid.prod(-1).sum()), model, "cpu")

    def run():
        with torch.no_grad():
            return model.model.get_image_features(pixels, grid).pooler_output

    return run, [pixels]


def _decoder_memory_case(model, batch: int, s_new: int, l_past: int, logits_to_keep: int):
    """One forward from token ids (the embedding lookup runs inside, as the stage's tree has it)."""
    import torch

    text = model.config.text_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ids = torch.randint(0, text.vocab_size, (batch, s_new))
    like = model.lm_head.weight.new_empty((batch, 0))  # the cache's batch, device and dtype
    cache = dynamic_cache(text, l_past, like) if l_past else None
    pre = [ids] + ([t for layer in cache.layers for t in (layer.keys, layer.values)] if cache else [])

    def run():
        with torch.no_grad():
            return model(
                input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=logits_to_keep
            ).logits

    return run, pre


def measure_memory(
    stage: str, *, rows=0, cols=0, batch=1, s_new=0, l_past=0, logits="last", model=None
) -> int:
    """The live-tensor peak (bytes above what was live before) of transformers' code on real CPU bf16
    tensors: ``vision`` for ``batch`` images of rows x cols tokens, or one decoder forward (prefill:
    ``s_new`` tokens, empty cache; decode: 1 token after ``l_past``). ``model``: a reduced-depth
    ``build_model("cpu", ...)``."""
    import gc

    from .memory import LiveBytes

    if stage == "vision":
        run, pre = _vision_memory_case(model, rows, cols, batch)
    else:
        s = s_new if stage == "prefill" else 1
        run, pre = _decoder_memory_case(model, batch, s, l_past, 0 if logits == "all" else 1)
    tracker = LiveBytes(preexisting=pre, keep_events=False)
    del pre
    gc.collect()
    with tracker:
        out = run()
    del out
    return int(tracker.peak_bytes)


def analytic_memory(
    stage: str,
    *,
    width=0,
    height=0,
    batch=1,
    s_new=0,
    l_past=0,
    logits="last",
    layers=None,
    dtype="bf16",
) -> int:
    """The model's activation peak (runtime hf) for the same case: the vision stage of ``batch``
    W x H images, or the decoder alone (prefill, or one decode step without the sampling) at
    ``layers`` layers."""
    import symcost
    from derivations.common.decoder import decoder
    from derivations.common.vlm import execution
    from derivations.paddleocr_vl import DECODER, HF
    from symcost.dtypes import building, precision

    if stage == "vision":
        model = symcost.load("paddleocr-vl")
        return int(model.evaluate(width, height, "vision", batch=batch, dtype=dtype)["activation_bytes"])
    ex, _ = execution("hf", None, logits, "expected", HF)
    depth = layers or DECODER.layers
    cfg = replace(DECODER, layers=depth, dense_layers=depth)
    with building(precision(dtype)):
        return int(decoder(cfg, ex, batch, s_new if stage == "prefill" else 1, l_past).cost.peak_bytes)


def main(argv=None) -> int:
    """``python -m validation.paddleocr_vl params|grid [N]``: the parameter table, or the resize rule
    against the processor's smart_resize on every (W, H) in [1, N]^2 (default 4096)."""
    import symcost
    from symcost.report import table

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["params"]:
        case = validate_params(symcost.load("paddleocr-vl"))
        print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
        print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "ok"]))
        return 0 if case["ok"] else 1
    if argv[:1] == ["grid"]:
        n = int(argv[1]) if len(argv) > 1 else 4096
        sides = range(1, n + 1)
        bad = 0
        for preset in symcost.get_family("paddleocr-vl").option("preset").choices:
            got = grid_mismatches(symcost.load("paddleocr-vl", preset=preset), sides, sides)
            bad += got["mismatches"]
            print(
                f"{preset}: resize on [1, {n}]^2: {got['pairs']} pairs ({got['refused']} refused), "
                f"{got['mismatches']} mismatches {got['first']}; symcost {got['analytic_s']:.1f} s, "
                f"processor {got['processor_s']:.1f} s on {os.cpu_count()} processes"
            )
        return 0 if bad == 0 else 1
    print("usage: python -m validation.paddleocr_vl params | grid [N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
