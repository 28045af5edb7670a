"""GOT-OCR2 measured on transformers 5.23's native module and compared per component with symcost's
``got-ocr2`` family: the engine of ``symcost validate got-ocr2``.

The module is ``GotOcr2ForConditionalGeneration`` built from ``derivations/got_ocr2/config.json`` (the
checkpoint's flat config; transformers builds its text and vision parts from the class defaults, which
are that checkpoint: 560,528,640 parameters). Nothing is re-implemented. torch/transformers are imported
only when a case is measured.

Vision (``measure_vision``): ``model.model.get_image_features`` on every view of the batch in one call,
as the model's forward runs it (the processor stacks tiles and thumbnail into one ``pixel_values``).
Decoder (``measure_decoder``): the model's own ``forward`` with ``inputs_embeds``, ``use_cache=True`` and
``logits_to_keep`` 0 ("all") or 1 ("last", what ``generate()`` does in prefill), the text attention
``sdpa`` (transformers' default) or ``eager``. Counters as for DeepSeek-OCR-2 (``validation.ocr2``):
FlopCounterMode on the meta device (``torch`` adds the CPU SDPA formula; ``torch-cpu`` does not), fvcore
on real CPU tensors (``fvcore`` adds an SDPA handle).

NB: GOT's SAM attention is eager: ``(q * scale) @ k^T`` and ``probs @ v`` are bmm (matmul for fvcore) in
    the attention module itself, and the decomposed rel-pos einsums run inside its
    ``get_decomposed_rel_pos``, which FlopCounterMode also sees as bmm in that module. So that each count
    lands in its column, the measured model runs that method as a child module, ``rel_pos``
    (``_label_rel_pos``): the same call, only attributed to a module of its own.
NB: ``tile_grid`` asks the image processor's own ``get_optimal_tiled_canvas`` (unwrapped from its
    ``lru_cache``) behind ``_preprocess``'s ``crop_to_patches and max_patches > 1``; ``run_processor`` runs
    ``GotOcr2Processor`` end to end on a blank image, with a word-level tokenizer built offline that knows
    its special tokens; ``grid_columns`` runs ``get_optimal_tiled_canvas`` on every pair of a block through
    ``validation.lifted`` (the function's own code on arrays), for ``ocr2_grid.grid_mismatches``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from symcost import SymcostError

from .compare import compare
from .measure import COUNTERS, LAYER_PARTS, _attribute
from .ocr2 import ATTENTIONS, _count, decoder_counts
from .ocr2_compare import _exact_div, _Tree, check_fvcore_memory, check_transformers_case
from .ocr2_grid import grid_mismatches

__all__ = [
    "COUNTERS",
    "ATTENTIONS",
    "build_model",
    "meta_model",
    "param_counts",
    "measure_vision",
    "measure_decoder",
    "vision_columns",
    "decoder_columns",
    "param_columns",
    "validate_case",
    "validate_params",
    "tile_grid",
    "run_processor",
    "grid_columns",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "derivations" / "got_ocr2"
_TOWER = "model.vision_tower."
_PROJECTOR = "model.multi_modal_projector."
_SAM_PARTS = ("patch_embed", "win_blocks", "glob_blocks", "neck")
_SAM_KINDS = {"linear": "linear", "relpos": "einsum", "attn_core": "bmm", "norms": "layer_norm"}
_PROJ_PARTS = ("conv_upsampler1", "conv_upsampler2", "multimodal_projector")
VISION_COLUMNS = (
    ("sam_total",)
    + tuple(f"sam_{p}" for p in _SAM_PARTS)
    + tuple(f"sam_{k}" for k in _SAM_KINDS)
    + ("proj_total",)
    + tuple(f"proj_{p}" for p in _PROJ_PARTS)
)
PARAM_COMPONENTS = (
    "sam",
    "sam_patch_embed",
    "sam_win_blocks",
    "sam_glob_blocks",
    "sam_neck",
    "projector",
    *(f"projector_{p}" for p in _PROJ_PARTS),
    "embed_tokens",
    "decoder_layer",
    "decoder_layer_attn",
    "decoder_layer_mlp",
    "decoder_layer_norms",
    "final_norm",
    "lm_head_untied",
    "total",
)


def load_config() -> dict:
    """The checkpoint's config.json (flat: text keys at the root, an empty vision_config)."""
    return json.loads((CONFIG_DIR / "config.json").read_text())


def load_preprocessor_config() -> dict:
    return json.loads((CONFIG_DIR / "preprocessor_config.json").read_text())


def _check_counter(counter: str):
    if counter not in COUNTERS:
        raise SymcostError(f"--counter: {counter!r} is not one of {', '.join(COUNTERS)}")


# --------------------------------------------------------------------------- the module


def hf_config(**vision):
    """``GotOcr2Config`` from config.json, as transformers loads the checkpoint (the root text keys and
    the empty vision_config leave the class defaults, which are the checkpoint); ``vision`` overrides
    vision keys (a reduced model for memory runs)."""
    from transformers import GotOcr2Config

    raw = load_config()
    drop = {"architectures", "model_type", "transformers_version", "torch_dtype", "vision_config"}
    config = GotOcr2Config(**{k: v for k, v in raw.items() if k not in drop})
    for key, value in vision.items():
        setattr(config.vision_config, key, value)
    return config


def _label_rel_pos(model):
    """Run each SAM attention's ``get_decomposed_rel_pos`` as a child module ``rel_pos`` (see NB)."""
    from torch import nn

    class RelPos(nn.Module):
        def __init__(self, method):
            super().__init__()
            self.method = method

        def forward(self, *args):
            return self.method(*args)

    for layer in model.model.vision_tower.layers:
        attn = layer.attn
        attn.rel_pos = RelPos(attn.get_decomposed_rel_pos)
        object.__setattr__(attn, "get_decomposed_rel_pos", attn.rel_pos)  # the instance's, over the class's
    return model


def build_model(device="meta", dtype=None, *, config=None, real=("",)):
    """``GotOcr2ForConditionalGeneration`` in eval mode, parameters in ``dtype`` (bf16), rel-pos labelled.

    device="meta": shapes only. Otherwise random weights (normal(0, 0.02), seed 0) for the parameters
    under the prefixes ``real`` (default all); the others are moved to meta (no memory; they raise if
    computed with).
    """
    import torch
    from transformers import GotOcr2ForConditionalGeneration
    from transformers.initialization import no_init_weights

    dtype = dtype or torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            model = GotOcr2ForConditionalGeneration(config or hf_config())
    finally:
        torch.set_default_dtype(previous)
    if device != "meta":
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for name, p in list(model.named_parameters()):
                module_name, _, attr = name.rpartition(".")
                module = model.get_submodule(module_name)
                if name.startswith(tuple(real)):
                    p.normal_(0.0, 0.02)
                else:
                    module._parameters[attr] = torch.nn.Parameter(p.to("meta"), requires_grad=False)
    model.tie_weights()  # no_init_weights skips it: lm_head is the embedding, as loading makes it
    return _label_rel_pos(model.eval())


def _fvcore_model(real):
    """Real CPU tensors for fvcore, fp32: its counts do not depend on the dtype, and CPUs without
    AVX512-BF16 run bf16 matmuls about 100x slower."""
    import torch

    return build_model("cpu", torch.float32, real=real)


@functools.lru_cache(maxsize=1)
def meta_model():
    """One shared ``build_model("meta")`` (about 1 s); callers must not modify it."""
    return build_model("meta")


def param_counts(model) -> dict[str, int]:
    """Parameters per component (one decoder layer; lm_head's own, i.e. 0 when tied), PARAM_COMPONENTS."""

    def n(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    tower, proj = model.model.vision_tower, model.model.multi_modal_projector
    text, layer = model.model.language_model, model.model.language_model.layers[0]
    glob = set(model.config.vision_config.global_attn_indexes)
    embed = {id(p) for p in text.embed_tokens.parameters()}
    out = {
        "sam": n(tower),
        "sam_patch_embed": n(tower.patch_embed) + tower.pos_embed.numel(),
        "sam_win_blocks": n(*(b for i, b in enumerate(tower.layers) if i not in glob)),
        "sam_glob_blocks": n(*(b for i, b in enumerate(tower.layers) if i in glob)),
        "sam_neck": n(tower.neck),
        "projector": n(proj),
        **{f"projector_{p}": n(getattr(proj, p)) for p in _PROJ_PARTS},
        "embed_tokens": n(text.embed_tokens),
        "decoder_layer": n(layer),
        "decoder_layer_attn": n(layer.self_attn),
        "decoder_layer_mlp": n(layer.mlp),
        "decoder_layer_norms": n(layer.input_layernorm, layer.post_attention_layernorm),
        "final_norm": n(text.norm),
        "lm_head_untied": sum(p.numel() for p in model.lm_head.parameters() if id(p) not in embed),
        "total": n(model),
    }
    return {k: int(out[k]) for k in PARAM_COMPONENTS}


# --------------------------------------------------------------------------- vision


def _image_features_wrapper(model):
    from torch import nn

    class ImageFeatures(nn.Module):
        """``forward(pixel_values)`` = ``model.model.get_image_features(...).pooler_output``; ``rows``
        keeps the feature rows it made per view."""

        def __init__(self):
            super().__init__()
            self.m = model
            self.rows = 0

        def forward(self, pixel_values):
            out = self.m.model.get_image_features(pixel_values).pooler_output
            self.rows = int(out.shape[1])
            return out

    return ImageFeatures()


def _vision_columns(path, op, global_blocks):
    """Column names one (module path, op) count belongs to; unknown ones raise. A count lands in its
    part (patch_embed, windowed or global blocks, neck; a projector layer) and in its op kind."""
    if path.startswith(_PROJECTOR):
        part = path.removeprefix(_PROJECTOR)
        if part in _PROJ_PARTS:
            return ("proj_total", f"proj_{part}")
    if not path.startswith(_TOWER):
        raise KeyError(f"unattributed count {op!r} in {path!r}")
    rest = path.removeprefix(_TOWER)
    if rest.startswith("patch_embed") and op in ("convolution", "conv"):
        return ("sam_total", "sam_patch_embed")
    if rest.startswith("neck"):
        return ("sam_total", "sam_neck") + (("sam_norms",) if op == "layer_norm" else ())
    block = re.match(r"layers\.(\d+)\.(.*)$", rest)
    if block:
        where = "sam_glob_blocks" if int(block[1]) in global_blocks else "sam_win_blocks"
        inner = block[2]
        if inner == "attn.rel_pos" and op in ("bmm", "einsum"):
            kind = "relpos"
        elif inner == "attn" and op in ("bmm", "matmul"):
            kind = "attn_core"
        elif op in ("addmm", "mm", "linear"):
            kind = "linear"
        elif op == "layer_norm":
            kind = "norms"
        else:
            raise KeyError(f"unattributed count {op!r} in {path!r}")
        return ("sam_total", where, f"sam_{kind}")
    raise KeyError(f"unattributed count {op!r} in {path!r}")


def measure_vision(views: int, counter: str = "torch", model=None) -> dict[str, int]:
    """Vision FLOPs of one ``get_image_features`` call on ``views`` views: VISION_COLUMNS,
    ``vision_total`` and ``image_features`` (feature rows per view)."""
    import torch

    _check_counter(counter)
    if views < 1:
        raise ValueError(f"need views >= 1, got {views}")
    if model is None:
        real = ("model.vision_tower", "model.multi_modal_projector")
        model = meta_model() if counter.startswith("torch") else _fvcore_model(real)
    param = model.model.multi_modal_projector.multimodal_projector.weight
    px = model.config.vision_config.image_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pixels = torch.randn(views, 3, px, px, device=param.device, dtype=param.dtype)
    wrapper = _image_features_wrapper(model)
    counts = _count(wrapper, (pixels,), counter)
    glob = set(model.config.vision_config.global_attn_indexes)
    cols = _attribute(counts, lambda p, o: _vision_columns(p, o, glob), VISION_COLUMNS)
    total = cols["sam_total"] + cols["proj_total"]
    if total != sum(counts.values()):
        raise RuntimeError("vision columns do not add up to the counted total")
    return {
        **{k: int(v) for k, v in cols.items()},
        "vision_total": int(total),
        "image_features": wrapper.rows,
    }


# --------------------------------------------------------------------------- decoder


def measure_decoder(
    s_new: int,
    l_past: int,
    counter: str = "torch",
    logits: str = "all",
    model=None,
    batch: int = 1,
    attention: str = "sdpa",
) -> dict[str, int]:
    """Decoder FLOPs (``validation.ocr2.decoder_counts``) of the 24 layers, final norm and lm_head: layer
    0 by part (``L0_*``, LAYER_PARTS without the MoE ones), the smallest and largest layer total,
    lm_head, the rest, the total."""
    if model is None:
        model = meta_model() if counter.startswith("torch") else _fvcore_model(("model.language_model",))
    cols = decoder_counts(model, s_new, l_past, counter, logits, batch, attention)
    totals = [cols[f"L{i}_total"] for i in range(model.config.text_config.num_hidden_layers)]
    out = {f"L0_{p}": cols[f"L0_{p}"] for p in LAYER_PARTS if not p.startswith("moe_")}
    out |= {"layers_min": min(totals), "layers_max": max(totals)}
    out |= {k: cols[k] for k in ("lm_head", "other_outside_layers_and_lm_head", "total_full_depth")}
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- analytic


class _NodeTree:
    """FLOPs per path and op kinds of a numeric cost tree, read as ``ocr2_compare._Tree`` reads a stage's."""

    def __init__(self, node, counter: str):
        from symcost import CONVENTIONS

        walk = list(node.walk())
        self.flops = {path: int(CONVENTIONS[counter].flops(cost)) for path, _, cost in walk}
        self.kinds = {path: n.kind for path, n, _ in walk if n.kind is not None}

    node = _Tree.node
    kind = _Tree.kind


def _tower_columns(t) -> dict[str, int]:
    """VISION_COLUMNS and the total from a tree rooted at ``vision`` (a stage's or a bare tower)."""
    sam = "vision.sam"
    out = {"sam_total": t.node(sam)}
    out |= {f"sam_{p}": t.node(f"{sam}.{p}") for p in _SAM_PARTS}
    out |= {f"sam_{c}": t.kind(sam, k) for c, k in _SAM_KINDS.items()}
    out |= {"proj_total": t.node("vision.projector")}
    out |= {f"proj_{p}": t.node(f"vision.projector.{p}") for p in _PROJ_PARTS}
    return out | {"vision_total": t.node("vision")}


def tower_columns(node, counter: str) -> dict[str, int]:
    """Analytic vision columns of a bare tower node (e.g. at a reduced config), as ``measure_vision``
    keys them (without the layout rows)."""
    return _tower_columns(_NodeTree(node, counter))


def vision_columns(model, values: dict, counter: str) -> dict[str, int]:
    """Analytic vision columns (as ``measure_vision`` keys them) for one point."""
    _check_counter(counter)
    t = _Tree(model, "vision", counter, values)
    r = t.result
    out = {k: r[k] for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens")} | _tower_columns(t)
    views = r["n_crops"] + 1
    out["image_features"] = _exact_div(r["image_tokens"], views, "image_tokens")  # rows per view
    return out


def decoder_columns(model, stage: str, values: dict, counter: str) -> dict[str, int]:
    """Analytic decoder columns (as ``measure_decoder`` keys them) for a prefill or a decode step."""
    _check_counter(counter)
    t = _Tree(model, stage, counter, values)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    layers = f"{root}.layers"
    out = {
        k: t.result[k]
        for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens", "prefill_tokens")
        if k in t.result
    }
    out |= {
        "L0_total": t.per_layer(layers),
        "L0_attn": t.per_layer(layers, "attn"),
        "L0_attn_proj": sum(t.per_layer(layers, f"attn.{p}_proj") for p in "qkvo"),
        "L0_rope": t.per_layer(layers, "attn.rope"),
        "L0_attn_core": t.per_layer(layers, "attn.attn_core"),
        "L0_mlp": t.per_layer(layers, "mlp"),
    }
    out["layers_min"] = out["layers_max"] = out["L0_total"]  # one repeated node: all alike
    out["lm_head"] = t.node(f"{root}.lm_head")
    out["total_full_depth"] = t.node(root)
    out["other_outside_layers_and_lm_head"] = out["total_full_depth"] - t.node(layers) - out["lm_head"]
    return out


_PARAM_NODES = {
    "sam": "vision.sam",
    "projector": "vision.projector",
    "embed_tokens": "decoder.embed_tokens",
    "final_norm": "decoder.final_norm",
    "lm_head_untied": "decoder.lm_head",
    "total": "",
} | {f"sam_{p}": f"vision.sam.{p}" for p in _SAM_PARTS}
_PARAM_NODES |= {f"projector_{p}": f"vision.projector.{p}" for p in _PROJ_PARTS}


def param_columns(model) -> dict[str, int]:
    """Analytic parameters keyed like ``param_counts``, from ``model.parameters()``."""
    params = model.parameters()
    root = model.weights_tree()

    def at(path):
        return params[f"{root.name}.{path}" if path else root.name]

    out = {key: at(path) for key, path in _PARAM_NODES.items()}
    layer = "decoder.layers"
    count = root.find(layer).count
    for suffix, paths in {
        "": ("",),
        "_attn": ("attn",),
        "_mlp": ("mlp",),
        "_norms": ("input_norm", "post_norm"),
    }.items():
        total = sum(at(f"{layer}.{p}" if p else layer) for p in paths)
        out[f"decoder_layer{suffix}"] = _exact_div(total, count, layer)
    return out


# --------------------------------------------------------------------------- processor


@functools.lru_cache(maxsize=1)
def _image_processor():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    return GotOcr2ImageProcessorPil.from_dict(load_preprocessor_config())


def _canvas():
    """``get_optimal_tiled_canvas`` unwrapped from its ``lru_cache`` (maxsize 100), and the arguments
    ``crop_image_to_patches`` gives it besides the image size: (tile, tile), min and max patches."""
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    ip = _image_processor()
    return get_optimal_tiled_canvas.__wrapped__, (
        (ip.size.height, ip.size.width),
        ip.min_patches,
        ip.max_patches,
    )


def tile_grid(width: int, height: int, *, crop_to_patches: bool = True) -> tuple[int, int]:
    """(cols, rows) of tiles the image processor cuts a W x H image into; (1, 1) = one view."""
    fn, (tile, lo, hi) = _canvas()
    if not (crop_to_patches and hi > 1):  # _preprocess's condition
        return (1, 1)
    return fn((height, width), tile, lo, hi)


@functools.lru_cache(maxsize=1)
def processor():
    """``GotOcr2Processor`` (PIL image processor), a word-level tokenizer that knows its special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GotOcr2Processor, PreTrainedTokenizerFast

    specials = ["<imgpad>", "<img>", "</img>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(
        models.WordLevel({"<unk>": 0} | {s: i for i, s in enumerate(specials, 1)}, unk_token="<unk>")
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return GotOcr2Processor(image_processor=_image_processor(), tokenizer=tokenizer)


def run_processor(width: int, height: int, **kwargs) -> dict:
    """Run the processor on a blank W x H image (its own prompt) and summarise what it wrote:
    image_tokens (``<imgpad>`` in input_ids), views (pixel_values), wrapped (the image block sits
    between ``<img>`` and ``</img>``), view_shape."""
    from PIL import Image
    from transformers.utils import logging

    proc = processor()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 1-3 px sides make it warn that the channel axis is ambiguous (it is not)
    try:
        out = proc(images=Image.new("RGB", (width, height)), **kwargs)
    finally:
        logging.set_verbosity(verbosity)
    ids = list(out["input_ids"][0])
    tok = proc.tokenizer
    start, end, pad = (tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>", proc.image_token))
    tokens = ids.count(pad)
    return {
        "image_tokens": tokens,
        "views": len(out["pixel_values"]),
        "wrapped": ids.count(start) == ids.count(end) == 1
        and ids.index(end) - ids.index(start) == tokens + 1,
        "view_shape": tuple(out["pixel_values"][0].shape),
    }


def tokens_for_views(views: int) -> int:
    """Image tokens ``replace_image_token`` writes for an image of ``views`` views (no pixels)."""
    proc = processor()
    text = proc.replace_image_token(
        {"num_patches": [views]},
        0,
        num_pages_per_batch=[1],
        patch_indices=[1],
        num_image_tokens=proc.num_image_tokens,
    )
    return text.count(proc.image_token)


def _layout(width: int, height: int, crops: bool) -> dict[str, int]:
    """Tiles, views and image tokens as transformers' processor gives them: its own tile rule and
    ``get_number_of_image_patches`` and ``replace_image_token`` (no pixels: any size)."""
    cols, rows = tile_grid(width, height, crop_to_patches=crops)
    views = _image_processor().get_number_of_image_patches(height, width, {"crop_to_patches": crops})
    return {
        "w_tiles": cols,
        "h_tiles": rows,
        "n_crops": views - 1,
        "image_tokens": tokens_for_views(views),
    }


# --------------------------------------------------------------------------- cases


def _check_case(model, stage: str, counter: str, values: dict):
    """Refuse, in one line naming the parameter, what validate cannot measure (fvcore's modules run in
    fp32: see _fvcore_model)."""
    check_transformers_case(model, "got-ocr2", stage, counter, ATTENTIONS)
    check_fvcore_memory(model, stage, counter, values, dtype="fp32")


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one point of ``stage`` with ``counter`` on transformers' module and compare it with the
    analytic columns. ``check_only``: only refuse what cannot run (SymcostError) and return {}."""
    values = model.check_inputs(stage, point)
    _check_case(model, stage, counter, values)
    if check_only:
        return {}
    opts = model.options
    batch = values.get("batch", 1)
    case = {"family": "got-ocr2", "stage": stage, "counter": counter, "convention": counter}
    case |= {"vision_mode": opts["vision_mode"], **values}
    if stage == "decode":
        kv_len = values["kv_len"]
        analytic = decoder_columns(model, stage, values, counter)
        measured = measure_decoder(1, kv_len, counter, "last", batch=batch, attention=opts["attention"])
        case |= {"s_new": 1, "l_past": kv_len, "attention": opts["attention"]}
        case["title"] = (
            f"got-ocr2 decode L={kv_len}, batch {batch}, attention {opts['attention']}, counter {counter}"
        )
    else:
        w, h = values["width"], values["height"]
        layout = _layout(w, h, opts["vision_mode"] == "crops")
        views = layout["n_crops"] + 1
        grid = f"tiles {layout['w_tiles']}x{layout['h_tiles']}, {views} view{'s' if views > 1 else ''}"
        if stage == "vision":
            analytic = vision_columns(model, values, counter)
            measured = layout | measure_vision(batch * views, counter)
            case["title"] = (
                f"got-ocr2 {opts['vision_mode']} {w}x{h} vision, batch {batch}, counter {counter}: "
                f"{grid}, {layout['image_tokens']} image tokens"
            )
        else:
            analytic = decoder_columns(model, stage, values, counter)
            s_new = values["prompt_tokens"] + layout["image_tokens"]
            measured = layout | {"prefill_tokens": s_new}
            measured |= measure_decoder(
                s_new, 0, counter, opts["logits"], batch=batch, attention=opts["attention"]
            )
            case |= {"s_new": s_new, "l_past": 0, "logits": opts["logits"], "attention": opts["attention"]}
            case["title"] = (
                f"got-ocr2 {opts['vision_mode']} {w}x{h} prefill S={s_new} (P={values['prompt_tokens']} + "
                f"{layout['image_tokens']} image tokens, {grid}), batch {batch}, logits {opts['logits']}, "
                f"attention {opts['attention']}, counter {counter}"
            )
    case["rows"] = compare(analytic, measured)
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case


def validate_params(model, measured: dict[str, int] | None = None) -> dict:
    """The analytic parameters against ``param_counts`` of transformers' module built on meta."""
    measured = param_counts(meta_model()) if measured is None else measured
    rows = compare(param_columns(model), measured)
    return {
        "title": "got-ocr2 parameters (decoder layers: one)",
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
        "measured": measured,
    }


# --------------------------------------------------------------------------- the tile grid, exhaustively


def grid_columns(args):
    """(cols, rows) int8 arrays for a block of widths x heights in crop mode: the processor's
    ``get_optimal_tiled_canvas`` on every pair, through ``validation.lifted`` (``ocr2_grid``'s
    ``columns``: it runs in a worker process)."""
    import numpy as np

    from .lifted import lifted

    widths, heights = args
    fn, (tile, lo, hi) = _canvas()
    w, h = np.meshgrid(np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64), indexing="ij")
    grid = lifted(fn, (h.ravel(), w.ravel()), tile, lo, hi).reshape(*w.shape, 2).astype(np.int8)
    return grid[..., 0], grid[..., 1]


def main(argv=None) -> int:
    """``python -m validation.got_ocr2 params | grid [N] | memory``: the parameter table, the tile grid
    against the processor on every (W, H) in [1, N]^2 (default 4096), or the peak-memory cases."""
    import sys

    import symcost
    from symcost.report import table

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["params"]:
        case = validate_params(symcost.load("got-ocr2"))
        print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
        print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "ok"]))
        return 0 if case["ok"] else 1
    if argv[:1] == ["grid"]:
        n = int(argv[1]) if len(argv) > 1 else 4096
        sides = range(1, n + 1)
        model = symcost.load("got-ocr2", vision_mode="crops")
        got = grid_mismatches(model, sides, sides, os.cpu_count(), columns=grid_columns)
        print(
            f"tile grid on [1, {n}]^2: {got['pairs']} pairs, {got['mismatches']} mismatches {got['first']}; "
            f"symcost {got['analytic_s']:.1f} s, processor {got['processor_s']:.1f} s on {os.cpu_count()} "
            "processes"
        )
        return 0 if got["mismatches"] == 0 else 1
    if argv[:1] == ["memory"]:
        from . import got_ocr2_memory as mem

        rows = []
        for name, (_, device, dtype, reduced, _) in mem.CASES.items():
            want, measured = mem.analytic(name), mem.measured(name)
            rows.append(
                {
                    "case": name,
                    "device, dtype": f"{device}, {dtype}",
                    "reduced": json.dumps(reduced) if reduced else "-",
                    "analytic (B)": f"{want:,}",
                    "measured (B)": f"{measured:,}",
                    "ratio": f"{want / measured:.4f}",
                }
            )
        print(table(rows, list(rows[0])))
        return 0
    print("usage: python -m validation.got_ocr2 params | grid [N] | memory", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
