"""Measure LightOnOCR (transformers 5.23's native module at its real sizes) per component, and run its
processors.

The model is ``LightOnOcrForConditionalGeneration`` built from ``derivations/lighton_ocr/hf_config.json``
(the Hub config, ``model_type: mistral3``: the keys naming another class are dropped; its text
``max_position_embeddings`` 8192 replaces the class default 40960), tied as ``from_pretrained`` ties it
(1,005,647,872 parameters); nothing is re-implemented here. torch/transformers are imported lazily.

Counters: ``torch`` (FlopCounterMode with the CPU SDPA formula of ``validation.measure.torch_formulas``)
and ``torch-cpu`` (out of the box: SDPA counts 0), on the meta device.

Vision (``measure_vision``): ``model.model.get_image_features(pixel_values, image_sizes)`` - the model's
own code: every image through the Pixtral encoder in one call (one packed sequence, block-diagonal mask),
then the projector - for ``batch`` images of one resized size, as the processor pads a batch.
Decoder (``measure_decoder``): the whole forward with ``inputs_embeds``, ``use_cache=True`` and
``logits_to_keep`` 0 ("all") or 1 ("last", what ``generate()`` does), attention ``sdpa`` (the default) or
``eager``.

Processors: ``run_processor`` runs transformers' ``LightOnOcrProcessor`` (runtime ``hf``) or
``PixtralProcessor`` with the checkpoint's patch 14 and merge 2 (what vLLM's ``Mistral3ProcessingInfo``
builds, runtime ``vllm``) on a blank image with a word-level tokenizer built offline (the Qwen special
tokens the checkpoint maps image, break and end to), and counts what each writes. ``resize_grid`` calls
the image processor's own ``get_resize_output_image_size`` on every (W, H) of a grid.

NB: the decoder's SDPA gets ``enable_gqa=True`` (16 query heads, 8 KV heads, no mask); on meta,
    ``validation.measure._cpu_sdpa_on_meta`` sends it to the CPU flash kernel op, which takes grouped heads
    as they are (its FlopCounterMode formula counts every query head), as the CPU run does.
"""

import functools
import json
import re
from pathlib import Path

from validation import ValidationError
from validation.measure import (  # the model-agnostic forward with a cache
    _attribute,
    _op_kind,
    dynamic_cache,
)
from validation.ocr2 import _count, text_forward_columns  # the same counting as DeepSeek-OCR-2

CONFIG_PATH = Path(__file__).resolve().parents[1] / "derivations" / "lighton_ocr" / "hf_config.json"
PREPROCESSOR_PATH = CONFIG_PATH.with_name("preprocessor_config.json")
COUNTERS = ("torch", "torch-cpu")
ATTENTIONS = ("sdpa", "eager")
RUNTIMES = ("hf", "vllm")
_DROP = ("model_type", "architectures", "transformers_version")  # the Hub file's mistral3 identity
_TOWER = "model.vision_encoder."
_PROJECTOR = "model.vision_projection"
_LAYERS = "model.language_model.layers."
# the Qwen special tokens the checkpoint's tokenizer maps image / break / end to
IMAGE_TOKENS = {
    "image_token": "<|image_pad|>",
    "image_break_token": "<|vision_pad|>",
    "image_end_token": "<|vision_end|>",
}
VISION_PARTS = ("attn_proj", "attn_core", "mlp", "total")
DECODER_PARTS = ("total", "attn", "attn_proj", "qk_norm", "attn_core", "mlp")
PARAM_COMPONENTS = (
    "vision_tower",
    "patch_conv",
    "ln_pre",
    "vision_layer",
    "vision_layer_attn",
    "vision_layer_mlp",
    "vision_layer_norms",
    "projector",
    "projector_norm",
    "merging_layer",
    "linear_1",
    "linear_2",
    "embed_tokens",
    "decoder_layer",
    "decoder_layer_attn",
    "decoder_layer_qk_norm",
    "decoder_layer_mlp",
    "decoder_layer_norms",
    "final_norm",
    "lm_head",
    "total",
)


def load_config() -> dict:
    """The checkpoint's config, as ``LightOnOcrConfig`` keywords."""
    raw = json.loads(CONFIG_PATH.read_text())
    return {k: v for k, v in raw.items() if k not in _DROP}


def _check(counter):
    if counter not in COUNTERS:
        raise ValidationError(f"counter must be one of {COUNTERS}, got {counter!r}")


# --------------------------------------------------------------------------- model


def build_model(device="meta", dtype=None, *, vision_layers=None, text_layers=None, random=True):
    """``LightOnOcrForConditionalGeneration`` from hf_config.json, tied, eval(), parameters in ``dtype``
    (bf16). Off meta: random weights (normal(0, 0.02), seed 0), or left uninitialised with
    ``random=False`` (a memory peak does not read values). ``vision_layers`` / ``text_layers`` cut the
    depth (memory cases on real tensors); every other size is the checkpoint's."""
    import torch
    from transformers import LightOnOcrConfig, LightOnOcrForConditionalGeneration
    from transformers.initialization import no_init_weights

    raw = load_config()
    if vision_layers is not None:
        raw["vision_config"] = raw["vision_config"] | {"num_hidden_layers": vision_layers}
    if text_layers is not None:
        text = raw["text_config"] | {"num_hidden_layers": text_layers}
        raw["text_config"] = text | {"layer_types": text["layer_types"][:text_layers]}
    dtype = dtype or torch.bfloat16
    config = LightOnOcrConfig(**raw)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():  # parameters straight in dtype, uninitialised
            model = LightOnOcrForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.tie_weights()  # no_init_weights skips it; from_pretrained ties lm_head to the embedding
    if device != "meta" and random:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for p in model.parameters():
                p.normal_(0.0, 0.02)
    return model.eval()


@functools.lru_cache(maxsize=1)
def meta_model():
    """One shared ``build_model("meta")`` (no memory, under a second); callers must not modify it."""
    return build_model("meta")


def param_counts(model) -> dict[str, int]:
    """Parameters per component (one vision layer, one decoder layer), each tensor once, keyed by
    PARAM_COMPONENTS; ``lm_head`` counts only what it does not share with the embedding."""
    seen: set[int] = set()

    def n(*modules, skip_shared=False):
        ps = [p for m in modules for p in m.parameters()]
        return sum(p.numel() for p in ps if not (skip_shared and id(p) in seen))

    tower, proj = model.model.vision_encoder, model.model.vision_projection
    text = model.model.language_model
    vl, dl = tower.transformer.layers[0], text.layers[0]
    seen.update(id(p) for p in text.embed_tokens.parameters())
    out = {
        "vision_tower": n(tower),
        "patch_conv": n(tower.patch_conv),
        "ln_pre": n(tower.ln_pre),
        "vision_layer": n(vl),
        "vision_layer_attn": n(vl.attention),
        "vision_layer_mlp": n(vl.feed_forward),
        "vision_layer_norms": n(vl.attention_norm, vl.ffn_norm),
        "projector": n(proj),
        "projector_norm": n(proj.norm),
        "merging_layer": n(proj.patch_merger),
        "linear_1": n(proj.linear_1),
        "linear_2": n(proj.linear_2),
        "embed_tokens": n(text.embed_tokens),
        "decoder_layer": n(dl),
        "decoder_layer_attn": n(dl.self_attn),
        "decoder_layer_qk_norm": n(dl.self_attn.q_norm, dl.self_attn.k_norm),
        "decoder_layer_mlp": n(dl.mlp),
        "decoder_layer_norms": n(dl.input_layernorm, dl.post_attention_layernorm),
        "final_norm": n(text.norm),
        "lm_head": n(model.lm_head, skip_shared=True),
        "total": n(model),
    }
    return {k: int(out[k]) for k in PARAM_COMPONENTS}


# --------------------------------------------------------------------------- vision


def _vision_columns(path, op):
    """Column names one vision (module path, op) count belongs to; unknown ones raise."""
    kind = _op_kind(op)
    if path == _TOWER + "patch_conv" and kind == "conv":
        return ("patch_conv", "tower_total")
    layer = re.match(re.escape(_TOWER) + r"transformer\.layers\.(\d+)\.(attention|feed_forward)", path)
    if layer and kind in ("linear", "attn_core"):
        part = "mlp" if layer[2] == "feed_forward" else ("attn_core" if kind == "attn_core" else "attn_proj")
        return (f"V{layer[1]}_{part}", f"V{layer[1]}_total", "tower_total")
    if path.startswith(_PROJECTOR) and kind == "linear":
        part = path.removeprefix(_PROJECTOR + ".").replace("patch_merger.", "")
        if part in ("merging_layer", "linear_1", "linear_2"):
            return (f"proj_{part}", "proj_total")
    raise ValidationError(f"unattributed count {op!r} in {path!r}")


def _image_features_wrapper(model, image_sizes):
    from torch import nn

    class ImageFeatures(nn.Module):
        """``forward(pixel_values)`` = ``model.model.get_image_features``, features concatenated as the
        model's forward does; ``rows`` keeps the feature rows made per image."""

        def __init__(self):
            super().__init__()
            self.m = model
            self.rows = []

        def forward(self, pixel_values):
            import torch

            out = self.m.model.get_image_features(pixel_values, image_sizes)
            self.rows = [int(f.shape[0]) for f in out.pooler_output]
            return torch.cat(out.pooler_output)

    return ImageFeatures()


def measure_vision(
    height: int, width: int, counter: str = "torch", batch: int = 1, model=None
) -> dict[str, int]:
    """Vision FLOPs for ``batch`` images resized to ``height`` x ``width`` px (multiples of 14, as the
    processor hands them over): patch conv, each encoder layer's attention projections / SDPA / MLP
    (reported as layer 0 and the min / max layer total), the tower, the projector's linear layers, the
    vision total, and the feature rows per image."""
    import torch

    _check(counter)
    if batch < 1 or height % 14 or width % 14 or min(height, width) < 14:
        raise ValidationError(
            f"need batch >= 1 and sides that are multiples of 14, got {batch}, {height}x{width}"
        )
    model = model or meta_model()
    param = model.model.vision_projection.linear_1.weight
    n_layers = len(model.model.vision_encoder.transformer.layers)
    pixels = torch.zeros(batch, 3, height, width, device=param.device, dtype=param.dtype)
    wrapper = _image_features_wrapper(model, [(height, width)] * batch)
    names = [f"V{i}_{p}" for i in range(n_layers) for p in VISION_PARTS]
    names += [
        "patch_conv",
        "tower_total",
        "proj_merging_layer",
        "proj_linear_1",
        "proj_linear_2",
        "proj_total",
    ]
    cols = _attribute(_count(wrapper, (pixels,), counter), _vision_columns, names)
    totals = [cols[f"V{i}_total"] for i in range(n_layers)]
    out = {f"layer0_{p}": cols[f"V0_{p}"] for p in VISION_PARTS}
    out |= {"layers_min": min(totals), "layers_max": max(totals), "layers_total": sum(totals)}
    out |= {k: cols[k] for k in names[-6:]}
    out["vision_total"] = out["tower_total"] + out["proj_total"]
    if len(wrapper.rows) != batch or len(set(wrapper.rows)) != 1:
        raise ValidationError(f"expected {batch} images of equal feature rows, got {wrapper.rows}")
    out["image_features"] = wrapper.rows[0]
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- decoder


def _decoder_columns(path, op):
    """Column names (layer parts as ``L<i>_<part>``) one decoder (module path, op) count belongs to."""
    kind = _op_kind(op)
    if kind not in ("linear", "attn_core"):
        raise ValidationError(f"unexpected op {op!r} in {path!r}")
    if path == "lm_head":
        return ("lm_head", "total_full_depth")
    m = re.match(re.escape(_LAYERS) + r"(\d+)\.(self_attn|mlp)(?:\.([a-z_]+))?", path)
    if not m:
        return ("other_outside_layers_and_lm_head", "total_full_depth")
    layer, block, child = f"L{m[1]}_", m[2], m[3]
    if block == "mlp":
        return (layer + "total", layer + "mlp", "total_full_depth")
    part = {None: "attn_core", "q_norm": "qk_norm", "k_norm": "qk_norm"}.get(child, "attn_proj")
    return (layer + "total", layer + "attn", layer + part, "total_full_depth")


def measure_decoder(
    s_new: int,
    l_past: int,
    counter: str = "torch",
    logits: str = "all",
    batch: int = 1,
    attention: str = "sdpa",
    model=None,
) -> dict[str, int]:
    """Decoder FLOPs: ``batch`` sequences of ``s_new`` new tokens after ``l_past`` cached ones (28 layers,
    final norm, lm_head). ``logits``: "all" (a plain forward) or "last" (``logits_to_keep=1``, as
    ``generate()`` runs prefill); ``attention``: the text model's implementation for this call."""

    _check(counter)
    if logits not in ("all", "last") or attention not in ATTENTIONS:
        raise ValidationError(f"logits must be all or last and attention one of {ATTENTIONS}")
    if s_new < 1 or l_past < 0 or batch < 1:
        raise ValidationError(f"need s_new >= 1, l_past >= 0, batch >= 1, got {s_new}, {l_past}, {batch}")
    model = model or meta_model()
    n_layers = model.config.text_config.num_hidden_layers
    cols = text_forward_columns(
        model, s_new, l_past, counter, logits, batch, attention, DECODER_PARTS, _decoder_columns
    )
    totals = [cols[f"L{i}_total"] for i in range(n_layers)]
    out = {f"L0_{p}": cols[f"L0_{p}"] for p in DECODER_PARTS}
    out |= {"layers_min": min(totals), "layers_max": max(totals)}
    out |= {k: cols[k] for k in ("lm_head", "other_outside_layers_and_lm_head", "total_full_depth")}
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- processors


@functools.lru_cache(maxsize=1)
def image_processor():
    """``PixtralImageProcessorPil`` with the checkpoint's preprocessor_config.json settings."""
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    pp = json.loads(PREPROCESSOR_PATH.read_text())
    keys = ("size", "patch_size", "resample", "image_mean", "image_std", "rescale_factor")
    return PixtralImageProcessorPil(**{k: pp[k] for k in keys})


def patch_px() -> int:
    """The image processor's patch side, px (what its ``_preprocess`` rounds to)."""
    from transformers.image_processing_utils import get_size_dict

    return get_size_dict(image_processor().patch_size, default_to_square=True)["height"]


@functools.lru_cache(maxsize=2)
def processor(runtime: str = "hf"):
    """The processor a runtime runs: transformers' ``LightOnOcrProcessor`` (``hf``) or ``PixtralProcessor``
    with patch 14 and merge 2 (``vllm``), with a word-level tokenizer that knows the image tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LightOnOcrProcessor, PreTrainedTokenizerFast

    if runtime not in RUNTIMES:
        raise ValidationError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    vocab = {t: i for i, t in enumerate(["<unk>", *IMAGE_TOKENS.values()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", extra_special_tokens=IMAGE_TOKENS
    )
    config = load_config()
    sizes = dict(
        patch_size=config["vision_config"]["patch_size"], spatial_merge_size=config["spatial_merge_size"]
    )
    if runtime == "hf":
        return LightOnOcrProcessor(image_processor=image_processor(), tokenizer=tokenizer, **sizes)
    return _pixtral_processor_class()(
        image_processor=image_processor(), tokenizer=tokenizer, **sizes, **IMAGE_TOKENS
    )


def _pixtral_processor_class():
    """transformers' ``PixtralProcessor``. Its module imports the torchvision image processor only for
    ``get_resize_output_image_size`` (used by ``_get_num_multimodal_tokens``, not called here); without
    torchvision that import is served the PIL module's copy, the same code."""
    import importlib
    import sys
    import types

    name = "transformers.models.pixtral.image_processing_pixtral"
    try:
        importlib.import_module(name)
    except ImportError:
        from transformers.models.pixtral import image_processing_pil_pixtral as pil

        sys.modules[name] = types.SimpleNamespace(
            get_resize_output_image_size=pil.get_resize_output_image_size
        )  # type: ignore[assignment]
        try:
            return importlib.import_module("transformers.models.pixtral.processing_pixtral").PixtralProcessor
        finally:
            del sys.modules[name]
    return importlib.import_module("transformers.models.pixtral.processing_pixtral").PixtralProcessor


def run_processor(width: int, height: int, runtime: str = "hf") -> dict:
    """Run a runtime's processor on a blank W x H RGB image with the prompt "<image token>" and count
    what it wrote: image_tokens, break_tokens, end_tokens, and the resized (height, width)."""
    from PIL import Image
    from transformers.utils import logging

    proc = processor(runtime)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 1-3 px sides make it warn that the channel axis is ambiguous
    try:
        out = proc(images=[Image.new("RGB", (width, height))], text=proc.image_token)
    finally:
        logging.set_verbosity(verbosity)
    ids = [int(t) for t in out["input_ids"][0]]
    h, w = (int(x) for x in out["image_sizes"][0])
    return {
        "image_tokens": ids.count(proc.image_token_id),
        "break_tokens": ids.count(proc.image_break_token_id),
        "end_tokens": ids.count(proc.image_end_token_id),
        "resized": (h, w),
        "pixels": tuple(out["pixel_values"].shape),
    }


def resize_function():
    """``size(height, width) -> (H', W')``: the image processor's own ``get_resize_output_image_size``
    with the checkpoint's longest edge and patch, as its ``resize`` calls it; the image is a stand-in
    exposing only ``.shape`` (all the function reads), channels last."""
    from transformers.image_utils import ChannelDimension
    from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size

    ip = image_processor()
    longest, patch = (ip.size["longest_edge"],) * 2, (patch_px(),) * 2
    last = ChannelDimension.LAST

    class Shape:
        __slots__ = ("shape",)

    stand_in = Shape()

    def size(height, width):
        stand_in.shape = (height, width, 3)
        return get_resize_output_image_size(stand_in, longest, patch, last)

    return size


def _grid_block(args):
    """(H', W') of a block of widths x all heights; runs in a worker process."""
    import numpy as np

    widths, heights = args
    size = resize_function()
    out = np.empty((len(widths), len(heights), 2), dtype=np.int16)
    for i, w in enumerate(widths):
        out[i] = [size(h, w) for h in heights]
    return out


def resize_grid(widths, heights, processes=None):
    """``(H', W')`` of every ``widths[i]`` x ``heights[j]`` image by the processor's own function, as int16
    arrays of shape (len(widths), len(heights)), split over worker processes by width."""
    import multiprocessing
    import os

    import numpy as np

    resize_function()  # import transformers once, before the workers fork
    widths, heights = [int(w) for w in widths], [int(h) for h in heights]
    processes = processes or os.cpu_count() or 1
    blocks = max(1, min(len(widths), 8 * processes))
    chunks = [(widths[k::blocks], heights) for k in range(blocks)]  # interleaved: equal work per block
    if processes == 1:
        parts = [_grid_block(c) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_grid_block, chunks)
    out = np.empty((len(widths), len(heights), 2), dtype=np.int16)
    for k, part in enumerate(parts):
        out[k::blocks] = part
    return out[..., 0], out[..., 1]


# --------------------------------------------------------------------------- peak memory


def measure_memory(model, stage: str, *, height=0, width=0, batch=1, seq=0, kv_len=0) -> int:
    """Peak live tensor bytes above the start (``validation.memory.LiveBytes``) of one stage of ``model``
    (a ``build_model("cpu", ...)`` model: real bf16 tensors, no_grad), as transformers runs it:

    vision   ``get_image_features`` on ``batch`` images resized to ``height`` x ``width``, then the
             ``torch.cat`` of the features that the forward does (pixels pre-existing)
    prefill  the forward on ``batch`` x ``seq`` token ids, a fresh DynamicCache, ``logits_to_keep=1``
             (``generate()``), then the next token's fp32 logits
    decode   the forward on ``batch`` x 1 ids after ``kv_len`` cached tokens (pre-existing, so the
             frees of the old cache by concatenation count), then the next token's fp32 logits
    """
    import torch
    from transformers import DynamicCache

    from validation.memory import LiveBytes

    with torch.no_grad():
        if stage == "vision":
            pixels = torch.zeros(batch, 3, height, width, dtype=torch.bfloat16)
            with LiveBytes(preexisting=[pixels]) as live:
                out = model.model.get_image_features(pixels, [(height, width)] * batch)
                torch.cat(out.pooler_output)
            return live.peak_bytes
        text = model.config.text_config
        ids = torch.ones(batch, 1 if stage == "decode" else seq, dtype=torch.long)
        cache = DynamicCache(config=text)
        pre = [ids]
        if stage == "decode":
            cache = dynamic_cache(text, kv_len, torch.zeros(batch, 1, dtype=torch.bfloat16))
            pre += [t for layer in cache.layers for t in (layer.keys, layer.values)]
        with LiveBytes(preexisting=pre) as live:
            del pre
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
            logits[:, -1, :].to(copy=True, dtype=torch.float32)  # generate()'s next-token logits
        return live.peak_bytes
