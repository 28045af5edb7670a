"""Measure Qwen2.5-VL (transformers 5.23's native ``Qwen2_5_VLForConditionalGeneration`` at the real
sizes) per component, and run its processor. torch/transformers are imported lazily.

The model is built from the preset's ``config.json`` (``derivations/qwen2_5_vl/configs``); nothing is
re-implemented here. Counters: ``torch`` (FlopCounterMode with the CPU SDPA formula of
``validation.measure.torch_formulas``) and ``torch-cpu`` (out of the box: SDPA counts 0).

Vision (``measure_vision``): ``model.model.get_image_features`` - the model's own code - on ``batch``
images of ``w_tokens x h_tokens`` tokens (pixel values of the processor's shape, [patches, 1176]).
NB: the tower computes its position ids, windows and ``cu_seqlens`` from ``grid_thw`` with
    ``.tolist()``, which needs it on the CPU, while the rotary table multiplies them by a meta
    buffer. The wrapper therefore computes them on the CPU with transformers' own helpers
    (``vision_utils.get_vision_position_ids``, ``get_vision_window_index``) and passes them as the
    precomputed kwargs the tower accepts (``position_ids``, ``window_index``, ``cu_window_seqlens``),
    moved to meta where the tower multiplies or indexes meta tensors with them.
Decoder (``measure_decoder``): the whole model's forward with ``inputs_embeds`` (no pixels: no
placeholder mask), ``use_cache=True``, ``logits_to_keep`` 0 (all) or 1 (last); positions default
to ``arange`` (M-RoPE positions change no count).
Processor: ``Qwen2_5_VLProcessor`` with the PIL image processor (``Qwen2VLImageProcessorPil``, the
checkpoint's min/max pixels) and a word-level tokenizer built offline that knows ``<|image_pad|>``.
"""

import functools
import re

from validation.measure import COUNTERS, _attribute, _op_kind, dynamic_cache
from validation.ocr2 import _count, text_forward_columns  # the same counting as DeepSeek-OCR-2

MEASURED_COUNTERS = ("torch", "torch-cpu")  # fvcore: not measured for this family
ATTENTIONS = ("sdpa", "eager")
VISION_COLUMNS = (
    "patch_embed",
    "window_blocks_total",
    "window_blocks_linear",
    "window_blocks_attn_core",
    "full_blocks_total",
    "full_blocks_linear",
    "full_blocks_attn_core",
    "merger",
    "vision_total",
)
DECODER_PARTS = ("total", "attn", "attn_proj", "attn_core", "mlp")
PARAM_COMPONENTS = (
    "vision",
    "patch_embed",
    "vision_block",
    "merger",
    "embed_tokens",
    "decoder_layer",
    "decoder_layer_attn",
    "decoder_layer_mlp",
    "decoder_layer_norms",
    "final_norm",
    "lm_head",
    "total",
)
_VISUAL = "model.visual."
_LAYERS = "model.language_model.layers."
_DROP = ("architectures", "model_type", "transformers_version", "quantization_config")


def _check(counter: str):
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {COUNTERS}, got {counter!r}")
    if counter not in MEASURED_COUNTERS:
        raise ValueError(f"qwen2.5-vl is measured with {' or '.join(MEASURED_COUNTERS)}, not {counter!r}")


# --------------------------------------------------------------------------- model


def load_config(preset: str) -> dict:
    """The preset's checkpoint config (Hugging Face config.json layout)."""
    from derivations.qwen2_5_vl import PRESETS

    return {k: v for k, v in PRESETS[preset].config.items() if k not in _DROP}


def _config(preset: str, vision_depth=None, text_layers=None):
    """``Qwen2_5_VLConfig`` of the preset; ``vision_depth`` / ``text_layers`` cut the depth (the last
    vision block full-attention, the others windowed)."""
    from transformers import Qwen2_5_VLConfig
    from transformers.utils import logging

    raw = load_config(preset)
    if vision_depth is not None:
        raw["vision_config"] = {
            **raw["vision_config"],
            "depth": vision_depth,
            "fullatt_block_indexes": [vision_depth - 1],
        }
    if text_layers is not None:
        raw["num_hidden_layers"] = text_layers
        if "text_config" in raw:
            text = dict(raw["text_config"], num_hidden_layers=text_layers)
            text["layer_types"] = text.get("layer_types", ["full_attention"] * text_layers)[:text_layers]
            raw["text_config"] = text
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the flat configs' rope_scaling keys draw standardisation notes
    try:
        return Qwen2_5_VLConfig(**raw)
    finally:
        logging.set_verbosity(verbosity)


def build_model(preset: str, device="meta", dtype=None, *, vision_depth=None, text_layers=None):
    """``Qwen2_5_VLForConditionalGeneration`` from the preset's config (depths cut as ``_config``),
    eval(), parameters in ``dtype`` (bf16); off meta, weights are random (normal(0, 0.02), seed 0)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.initialization import no_init_weights

    config = _config(preset, vision_depth, text_layers)
    dtype = dtype or torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            model = Qwen2_5_VLForConditionalGeneration(config)
        model.tie_weights()  # no_init_weights skips the tying post_init does (tie_word_embeddings)
    finally:
        torch.set_default_dtype(previous)
    if device != "meta":
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for p in model.parameters():
                p.normal_(0.0, 0.02)
    return model.eval()


@functools.lru_cache(maxsize=3)
def meta_model(preset: str):
    """One shared ``build_model(preset)`` on meta per preset; callers must not modify it."""
    return build_model(preset)


def param_counts(model) -> dict[str, int]:
    """Parameters per component (one vision block, one decoder layer), keyed by PARAM_COMPONENTS."""

    def n(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    visual, text = model.model.visual, model.model.language_model
    layer = text.layers[0]
    out = {
        "vision": n(visual),
        "patch_embed": n(visual.patch_embed),
        "vision_block": n(visual.blocks[0]),
        "merger": n(visual.merger),
        "embed_tokens": n(text.embed_tokens),
        "decoder_layer": n(layer),
        "decoder_layer_attn": n(layer.self_attn),
        "decoder_layer_mlp": n(layer.mlp),
        "decoder_layer_norms": n(layer.input_layernorm, layer.post_attention_layernorm),
        "final_norm": n(text.norm),
        "lm_head": 0 if model.lm_head.weight is text.embed_tokens.weight else n(model.lm_head),
        "total": n(model),
    }
    return {k: int(out[k]) for k in PARAM_COMPONENTS}


# --------------------------------------------------------------------------- counting


def _image_features_wrapper(model):
    from torch import nn

    class ImageFeatures(nn.Module):
        """``forward(pixels, grid_thw)`` = ``model.model.get_image_features`` with the tower's index
        tensors precomputed on the CPU (see the module docstring); ``rows`` keeps the feature rows
        per image."""

        def __init__(self):
            super().__init__()
            self.m = model
            self.rows = []

        def forward(self, pixel_values, grid_thw):
            import torch
            from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

            v = self.m.config.vision_config
            device = pixel_values.device
            window_index, cu_window_seqlens = get_vision_window_index(
                grid_thw,
                spatial_merge_size=v.spatial_merge_size,
                window_size=v.window_size,
                patch_size=v.patch_size,
            )
            out = self.m.model.get_image_features(
                pixel_values,
                grid_thw,
                position_ids=get_vision_position_ids(grid_thw, v.spatial_merge_size).to(device),
                window_index=window_index.to(device),
                cu_window_seqlens=cu_window_seqlens,
            )
            self.rows = [int(f.shape[0]) for f in out.pooler_output]
            return torch.cat(out.pooler_output)

    return ImageFeatures()


def _vision_columns(path, op, full_blocks):
    kind = _op_kind(op)
    if not path.startswith(_VISUAL):
        raise KeyError(f"unattributed count {op!r} in {path!r}")
    rest = path.removeprefix(_VISUAL)
    if rest.startswith("patch_embed") and kind == "conv":
        return ("patch_embed", "vision_total")
    if rest.startswith("merger") and kind == "linear":
        return ("merger", "vision_total")
    block = re.match(r"blocks\.(\d+)(\.|$)", rest)
    if block and kind in ("linear", "attn_core"):
        where = "full_blocks" if int(block[1]) in full_blocks else "window_blocks"
        return (f"{where}_total", f"{where}_{kind}", "vision_total")
    raise KeyError(f"unattributed count {op!r} in {path!r}")


def measure_vision(
    model, w_tokens: int, h_tokens: int, counter: str = "torch", batch: int = 1
) -> dict[str, int]:
    """Vision FLOPs of ``batch`` images of ``w_tokens x h_tokens`` tokens in one tower call, keyed by
    VISION_COLUMNS, plus ``image_features`` (feature rows per image)."""
    import torch

    _check(counter)
    v = model.config.vision_config
    m = v.spatial_merge_size
    grid_thw = torch.tensor([[1, m * h_tokens, m * w_tokens]] * batch)
    per_patch = v.in_channels * v.temporal_patch_size * v.patch_size**2
    param = model.model.visual.patch_embed.proj.weight
    pixels = torch.zeros(
        batch * m * m * w_tokens * h_tokens, per_patch, device=param.device, dtype=param.dtype
    )
    wrapper = _image_features_wrapper(model)
    counts = _count(wrapper, (pixels, grid_thw), counter)
    full = set(v.fullatt_block_indexes)
    cols = _attribute(counts, lambda p, o: _vision_columns(p, o, full), VISION_COLUMNS)
    if len(set(wrapper.rows)) != 1 or len(wrapper.rows) != batch:
        raise RuntimeError(f"expected {batch} images of equal feature rows, got {wrapper.rows}")
    return {**{k: int(x) for k, x in cols.items()}, "image_features": wrapper.rows[0]}


def _decoder_columns(path, op):
    """Column names (parts of layer i as ``L<i>_<part>``) one decoder (module path, op) count belongs to."""
    kind = _op_kind(op)
    if kind not in ("linear", "attn_core"):
        raise KeyError(f"unexpected op {op!r} in {path!r}")
    if path == "lm_head":
        return ("lm_head", "total_full_depth")
    m = re.match(re.escape(_LAYERS) + r"(\d+)\.(self_attn|mlp)(?:\.([a-z_]+))?", path)
    if not m:
        return ("other_outside_layers_and_lm_head", "total_full_depth")
    layer = f"L{m[1]}_"
    if m[2] == "mlp":
        return (layer + "total", layer + "mlp", "total_full_depth")
    part = "attn_core" if m[3] is None else "attn_proj"
    return (layer + "total", layer + "attn", layer + part, "total_full_depth")


def measure_decoder(
    model,
    s_new: int,
    l_past: int,
    counter: str = "torch",
    logits: str = "all",
    batch: int = 1,
    attention: str = "sdpa",
) -> dict[str, int]:
    """Decoder FLOPs: ``batch`` sequences of ``s_new`` new tokens after ``l_past`` cached ones: one layer's
    parts (``layer_<part>``: every layer counted alike, checked), ``layers_min``/``layers_max``,
    ``lm_head``, whatever lies outside layers and lm_head, the total."""

    _check(counter)
    if logits not in ("all", "last") or attention not in ATTENTIONS:
        raise ValueError(f"logits must be all or last and attention one of {ATTENTIONS}")
    n_layers = model.config.text_config.num_hidden_layers
    cols = text_forward_columns(
        model, s_new, l_past, counter, logits, batch, attention, DECODER_PARTS, _decoder_columns
    )
    per_layer = {p: {cols[f"L{i}_{p}"] for i in range(n_layers)} for p in DECODER_PARTS}
    if any(len(values) != 1 for values in per_layer.values()):
        raise RuntimeError(f"decoder layers counted differently: {per_layer}")
    out = {f"layer_{p}": values.pop() for p, values in per_layer.items()}
    totals = [cols[f"L{i}_total"] for i in range(n_layers)]
    out |= {"layers_min": min(totals), "layers_max": max(totals)}
    out |= {k: cols[k] for k in ("lm_head", "other_outside_layers_and_lm_head", "total_full_depth")}
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- processor


@functools.lru_cache(maxsize=3)
def image_processor(preset: str):
    """``Qwen2VLImageProcessorPil`` with the preset's preprocessor settings (min/max pixels ...)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from derivations.qwen2_5_vl import PRESETS

    pre = PRESETS[preset].preprocessor
    keys = ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size")
    return Qwen2VLImageProcessorPil(**{k: pre[k] for k in keys})


def resize(preset: str):
    """``resize(height, width) -> (H', W')``: the processor module's own ``smart_resize`` with the
    arguments ``Qwen2VLImageProcessorPil.resize`` passes (factor patch*merge, the size dict)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    ip = image_processor(preset)
    factor = ip.patch_size * ip.merge_size
    lo, hi = ip.size["shortest_edge"], ip.size["longest_edge"]
    return lambda height, width: smart_resize(height, width, factor, min_pixels=lo, max_pixels=hi)


@functools.lru_cache(maxsize=3)
def processor(preset: str):
    """``Qwen2_5_VLProcessor`` (PIL image processor) with a word-level tokenizer that knows the image pad."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor

    pad = "<|image_pad|>"
    tok = Tokenizer(models.WordLevel({"<unk>": 0, pad: 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": [pad]})

    class ImageOnly(Qwen2_5_VLProcessor):
        """The processor without its video processor, whose class check needs torchvision; the image
        path (``__call__`` with images, ``replace_image_token``) is Qwen2_5_VLProcessor's own."""

        def __init__(self, image_processor=None, tokenizer=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, **kwargs)

    return ImageOnly(image_processor=image_processor(preset), tokenizer=tokenizer)


def run_processor(preset: str, width: int, height: int) -> dict:
    """The processor on a blank W x H RGB image with the prompt of one image pad: the image tokens it
    writes, its ``image_grid_thw`` and the pixel rows."""
    from PIL import Image
    from transformers.utils import logging

    proc = processor(preset)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 1-3 px sides make it warn that the channel axis is ambiguous
    try:
        out = proc(images=Image.new("RGB", (width, height)), text=proc.image_token)
    finally:
        logging.set_verbosity(verbosity)
    t, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    return {
        "image_tokens": sum(int(x) == proc.image_token_id for x in out["input_ids"][0]),
        "grid_thw": (t, gh, gw),
        "pixel_rows": len(out["pixel_values"]),
    }


# --------------------------------------------------------------------------- peak memory


def measure_memory(preset: str, stage: str, *, depth: int = 2, batch: int = 1, **shape) -> dict:
    """Peak live tensor bytes (``validation.memory.LiveBytes``, inputs excluded) of one stage on real
    CPU bf16 tensors of a reduced-depth model: ``vision`` (``w_tokens``, ``h_tokens``: the tower's own
    ``get_image_features`` path, ``depth`` blocks, the last one full attention), ``prefill``
    (``seq``: the model's forward, ``logits_to_keep`` 1) or ``decode`` (``past``: one token after a
    DynamicCache of ``past``), ``depth`` decoder layers; sdpa as transformers defaults to."""
    import gc

    import torch

    from validation.memory import LiveBytes

    if stage == "vision":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
            Qwen2_5_VisionTransformerPretrainedModel,
        )

        config = _config(preset, vision_depth=depth).vision_config
        torch.manual_seed(0)
        model = Qwen2_5_VisionTransformerPretrainedModel._from_config(config, dtype=torch.bfloat16).eval()
        m = config.spatial_merge_size
        grid = torch.tensor([[1, m * shape["h_tokens"], m * shape["w_tokens"]]] * batch)
        per_patch = config.in_channels * config.temporal_patch_size * config.patch_size**2
        inputs = [torch.randn(int(grid.prod(-1).sum()), per_patch)]  # the processor's fp32 pixels

        def run():
            return model(inputs[0].type(model.dtype), grid_thw=grid).pooler_output  # get_image_features

    else:
        model = build_model(preset, "cpu", vision_depth=1, text_layers=depth)
        hidden = model.config.text_config.hidden_size
        seq, past = (shape["seq"], 0) if stage == "prefill" else (1, shape["past"])
        inputs = [torch.randn(batch, seq, hidden, dtype=torch.bfloat16)]
        if past:
            inputs.append(dynamic_cache(model.config.text_config, past, inputs[0]))

        def run():
            cache = inputs[1] if past else None
            return model(
                inputs_embeds=inputs[0], past_key_values=cache, use_cache=True, logits_to_keep=1
            ).logits

    pre = [t for t in inputs if isinstance(t, torch.Tensor)]
    if len(inputs) > 1:
        cache = inputs[1]
        pre += [t for layer in cache.layers for t in (layer.keys, layer.values)]
    gc.collect()
    with torch.no_grad():
        run()  # warm-up: lazy inits
        tracker = LiveBytes(preexisting=pre, keep_events=False)
        del pre
        with tracker:
            out = run()
    del out
    return {"peak_bytes": tracker.peak_bytes, "stage": stage, "preset": preset, "depth": depth, **shape}
