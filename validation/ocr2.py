"""Measure DeepSeek-OCR-2 (transformers 5.23's native module at its real sizes) per component.

The model is ``DeepseekOcr2ForConditionalGeneration`` built from ``derivations/deepseek_ocr2/hf_config.json``
(3,389,119,360 parameters); nothing is re-implemented here. torch/transformers are imported lazily.

Counters (``counter`` argument):
  ``"torch"``          FlopCounterMode (2 per MAC), on meta or on real CPU tensors, plus two formulas
                       torch 2.13 lacks (``validation.measure.torch_formulas``):
                       ``aten._scaled_dot_product_flash_attention_for_cpu`` (torch's own SDPA formula,
                       2*B*H*Sq*Sk*(Dqk+Dv)) and ``aten._grouped_mm`` (the routed experts, 2*rows*K*N).
  ``"torch-cpu"``      FlopCounterMode out of the box: both of those count 0.
  ``"fvcore"``         fvcore FlopCountAnalysis (1 per MAC; layer_norm counted by fvcore's own rule) on
                       real CPU tensors, plus handles for ``aten::scaled_dot_product_attention``
                       (B*H*Sq*Sk*(Dqk+Dv)) and ``aten::_grouped_mm`` (rows*K*N), which fvcore skips.
  ``"fvcore-default"`` fvcore out of the box: both of those count 0.

Vision (``measure_vision``): ``model.model.get_image_features`` - the model's own code, which runs the
global view(s) through the tower and the projector, then the tiles in one batched call - avoiding the
``.item()`` of ``get_placeholder_mask``. The ``global`` columns are one call with the global views only;
the ``crops`` columns are (one call with the global views and the tiles) minus (that global-only call),
taken per (module, op): the same tensors' counts, so nothing is modelled. ``batch`` images of one size:
``batch`` global views in one call, ``batch * n_crops`` tiles in the other, as the model batches them.
Decoder (``measure_decoder``): the whole ``DeepseekOcr2ForConditionalGeneration.forward`` with
``inputs_embeds`` (no pixel values, so no placeholder mask), ``use_cache=True`` and ``logits_to_keep``
0 ("all": lm_head on every position, a plain forward) or 1 ("last": what ``generate()`` does); the
decoder's attention as transformers runs it, ``"sdpa"`` (its default) or ``"eager"``.

NB: on meta, F.scaled_dot_product_attention would run its math decomposition (two counted bmm, mixed
    up with SAM's rel-pos bmm); ``validation.measure._cpu_sdpa_on_meta`` sends it to the CPU kernel op,
    whose meta kernel only computes shapes, so meta counts equal CPU counts (tested).
NB: the vision encoder's attention mask is never None (hybrid: bidirectional image block, causal queries),
    so transformers' sdpa_attention_forward expands the 2 KV heads to 14 with ``repeat_kv`` (no FLOPs)
    before SDPA; every counter counts SDPA as the full [S, S] square (S = 512 or 288).
NB: fvcore = FlopCounterMode / 2 in every column but two conventions of its own: layer_norm (SAM's 26
    LayerNorms, 5 per element; FlopCounterMode counts 0) and einsum (SAM's rel-pos: numpy's einsum_path
    "Optimized FLOP count", printed to 4 significant digits, halved - so that column is rounded).
    The 26 include the neck's two: transformers' ``DeepseekOcr2SamLayerNorm`` subclasses nn.LayerNorm
    (DeepSeek-OCR's vendor LayerNorm2d is hand-written from elementwise ops, which no counter sees).
NB: out of the box FlopCounterMode (torch 2.13) counts 0 for ``aten._grouped_mm`` and for the CPU SDPA op.
NB: ``tile_grid`` calls the image processor's own ``get_optimal_tiled_canvas`` (unwrapped from its
    ``lru_cache``) behind the same ``max(W, H) > tile_size`` shortcut ``_preprocess`` applies;
    ``image_tokens`` runs ``DeepseekOcr2Processor`` end to end with a word-level tokenizer built offline;
    ``tokens_for_crops`` asks the processor's own ``replace_image_token`` for a tile count (no image).
"""

import functools
import json
import re
from pathlib import Path

# FlopCounterMode runs as for DeepSeek-OCR (its formula table has the CPU SDPA and _grouped_mm)
from validation.measure import (
    COUNTERS,
    LAYER_PARTS,
    _attribute,
    _exclusive,
    _op_kind,
    _torch_counts,
    build_native,
    decoder_wrapper,
)
from validation.reference_model import share_layer_weights

CONFIG_PATH = Path(__file__).resolve().parents[1] / "derivations" / "deepseek_ocr2" / "hf_config.json"
ATTENTIONS = ("sdpa", "eager")  # decoder attention implementations that run on CPU and meta
PARAM_COMPONENTS = (
    "sam",
    "sam_patch_embed",
    "sam_win_blocks",
    "sam_glob_blocks",
    "sam_neck",
    "sam_net2",
    "sam_net3",
    "encoder",
    "encoder_layers",
    "encoder_final_norm",
    "encoder_query_1024",
    "encoder_query_768",
    "projector",
    "view_separator",
    "embed_tokens",
    "decoder_layer_dense",
    "decoder_layer_dense_attn",
    "decoder_layer_dense_mlp",
    "decoder_layer_dense_norms",
    "decoder_layer_moe",
    "decoder_layer_moe_attn",
    "decoder_layer_moe_router",
    "decoder_layer_moe_routed",
    "decoder_layer_moe_shared",
    "decoder_layer_moe_norms",
    "final_norm",
    "lm_head",
    "total",
)
VIEW_COLUMNS = (
    "sam_total",
    "sam_patch_embed",
    "sam_win_blocks",
    "sam_glob_blocks",
    "sam_neck",
    "sam_net2",
    "sam_net3",
    "sam_norms",
    "sam_linear",
    "sam_relpos",
    "sam_attn_core",
    "encoder_total",
    "encoder_linear",
    "encoder_attn_core",
    "encoder_rope",
    "proj_total",
)
_SAM = "model.vision_tower.sam_encoder."
_ENCODER = "model.vision_tower.vision_encoder."
_PROJECTOR = "model.multi_modal_projector"
_LAYERS = "model.language_model.layers."


def load_config() -> dict:
    """The real DeepSeek-OCR-2 config (Hugging Face config.json layout)."""
    return json.loads(CONFIG_PATH.read_text())


def _check(counter):
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {COUNTERS}, got {counter!r}")


# --------------------------------------------------------------------------- model


def build_model(device="meta", dtype=None, *, real=None, shared_layers=False):
    """``DeepseekOcr2ForConditionalGeneration`` from hf_config.json, eval(), parameters in ``dtype`` (bf16).

    device="meta": no memory (``_grouped_mm``'s meta kernel wants bf16).  Any other device: random weights
    (normal(0, 0.02), seed 0); ``real`` optionally names the parameter prefixes to materialise, e.g.
    ``("model.vision_tower", "model.multi_modal_projector", "model.view_separator")`` - every other
    parameter is moved to meta, so it costs no memory and raises if it is ever computed with.
    ``shared_layers``: the decoder's MoE layers share one set of weights
    (``validation.reference_model.share_layer_weights``).
    """
    from transformers import DeepseekOcr2Config, DeepseekOcr2ForConditionalGeneration

    config = DeepseekOcr2Config(**load_config())

    def share(model):
        share_layer_weights(model.model.language_model.layers)

    return build_native(
        DeepseekOcr2ForConditionalGeneration, config, device, dtype, real, share if shared_layers else None
    )


@functools.lru_cache(maxsize=1)
def meta_model():
    """One shared ``build_model("meta")`` (no memory; ~3 s to build); callers must not modify it."""
    return build_model("meta")


def param_counts(model) -> dict[str, int]:
    """Parameters per component of a ``build_model()`` model, keyed by PARAM_COMPONENTS.

    Decoder layers are one layer of each kind (the first dense one, the first MoE one).
    """

    def n(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    tower, text = model.model.vision_tower, model.model.language_model
    sam, enc = tower.sam_encoder, tower.vision_encoder
    glob = set(model.config.vision_config.sam_config.global_attn_indexes)
    types = model.config.text_config.mlp_layer_types
    dense, moe = text.layers[types.index("dense")], text.layers[types.index("sparse")]
    out = {
        "sam": n(sam),
        "sam_patch_embed": n(sam.patch_embed) + sam.pos_embed.numel(),
        "sam_win_blocks": n(*(b for i, b in enumerate(sam.layers) if i not in glob)),
        "sam_glob_blocks": n(*(b for i, b in enumerate(sam.layers) if i in glob)),
        "sam_neck": n(sam.neck),
        "sam_net2": n(sam.proj.conv1),
        "sam_net3": n(sam.proj.conv2),
        "encoder": n(tower) - n(sam),  # 24 layers + final norm + the two query tables
        "encoder_layers": n(enc.layers),
        "encoder_final_norm": n(enc.norm),
        "encoder_query_1024": n(tower.query_1024_resolution),
        "encoder_query_768": n(tower.query_768_resolution),
        "projector": n(model.model.multi_modal_projector),
        "view_separator": model.model.view_separator.numel(),
        "embed_tokens": n(text.embed_tokens),
        "final_norm": n(text.norm),
        "lm_head": n(model.lm_head),
        "total": n(model),
    }
    for kind, layer in (("dense", dense), ("moe", moe)):
        key = f"decoder_layer_{kind}"
        out[key] = n(layer)
        out[f"{key}_attn"] = n(layer.self_attn)
        out[f"{key}_norms"] = n(layer.input_layernorm, layer.post_attention_layernorm)
    out["decoder_layer_dense_mlp"] = n(dense.mlp)
    out["decoder_layer_moe_router"] = n(moe.mlp.gate)
    out["decoder_layer_moe_routed"] = n(moe.mlp.experts)
    out["decoder_layer_moe_shared"] = n(moe.mlp.shared_experts)
    return {k: int(out[k]) for k in PARAM_COMPONENTS}


# --------------------------------------------------------------------------- counting


def _fvcore_counts(module, inputs, counter):
    """Inclusive {module path: {op: flops}} from fvcore's traced graph."""
    import math

    import torch
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

    def sdpa(inputs, outputs):
        q, k, v = (get_shape(x) for x in inputs[:3])
        return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])

    def grouped_mm(inputs, outputs):
        a, b = get_shape(inputs[0]), get_shape(inputs[1])
        if len(a) != 2 or len(b) != 3 or a[1] != b[1]:
            raise ValueError(f"unexpected _grouped_mm shapes {a} x {b}")
        return a[0] * a[1] * b[2]

    analysis = FlopCountAnalysis(module, tuple(inputs))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    if counter == "fvcore":
        analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa, "aten::_grouped_mm", grouped_mm)
    with torch.no_grad():
        return {name: dict(ops) for name, ops in analysis.by_module_and_operator().items()}


def _count(module, inputs, counter):
    """(path, op) -> flops counted in that module itself, paths relative to the wrapped model."""
    run = _torch_counts if counter.startswith("torch") else _fvcore_counts
    counts = _exclusive(run(module, inputs, counter))
    # the wrappers below hold the model as ``.m``: drop that first path component
    return {("" if path == "m" else path.removeprefix("m."), op): n for (path, op), n in counts.items()}


def text_forward_columns(model, s_new, l_past, counter, logits, batch, attention, parts, columns) -> dict:
    """``L<i>_<part>`` for ``parts``, lm_head, the rest and the total of one forward of a text
    model (``model.config.text_config``) counted by ``counter``: ``batch`` sequences of ``s_new``
    zero embeddings after ``l_past`` cached tokens, lm_head on every position (``logits="all"``)
    or the last, the text model's attention set to ``attention`` for the call (restored after);
    ``columns(path, op)`` names each count's columns."""
    import torch

    text = model.config.text_config
    param = model.lm_head.weight
    embeds = torch.zeros(batch, s_new, text.hidden_size, device=param.device, dtype=param.dtype)
    wrapper = decoder_wrapper(model, l_past, 0 if logits == "all" else 1)
    names = [f"L{i}_{p}" for i in range(text.num_hidden_layers) for p in parts]
    names += ["lm_head", "other_outside_layers_and_lm_head", "total_full_depth"]
    before = text._attn_implementation
    model.set_attn_implementation({"text_config": attention})
    try:
        counts = _count(wrapper, (embeds,), counter)
    finally:
        model.set_attn_implementation({"text_config": before})
    return _attribute(counts, columns, names)


def _kind(op):
    """linear | attn_core | norms | conv (validation.measure's kinds, plus the routed experts'
    _grouped_mm)."""
    return "linear" if op == "_grouped_mm" else _op_kind(op)


# --------------------------------------------------------------------------- vision


def _image_features_wrapper(model, num_local_patches):
    from torch import nn

    class ImageFeatures(nn.Module):
        """``forward(global[, tiles])`` = ``model.model.get_image_features``, features concatenated;
        ``rows`` keeps the feature rows made per image (what the image tokens must match)."""

        def __init__(self):
            super().__init__()
            self.m = model
            self.rows = []

        def forward(self, pixel_values, pixel_values_local=None):
            import torch

            out = self.m.model.get_image_features(pixel_values, pixel_values_local, num_local_patches)
            self.rows = [int(f.shape[0]) for f in out.pooler_output]
            return torch.cat(out.pooler_output)

    return ImageFeatures()


def _vision_columns(path, op, global_blocks):
    """View-less column names one (module path, op) count belongs to; unknown ones raise.

    A count lands in its module's column (block kind, neck, ...) and, as a cross-cut, in its op kind's
    column: sam_norms holds every SAM LayerNorm (blocks and neck; fvcore only), also counted in its block
    or the neck, as validation.measure attributes DeepSeek-OCR's SAM.
    """
    kind = _kind(op)
    if path == _PROJECTOR and kind == "linear":
        return ("proj_total",)
    if path.startswith(_ENCODER + "rotary_emb"):  # cos/sin once per forward: elementwise, 0 so far
        return ("encoder_total", "encoder_rope")
    if path.startswith(_ENCODER) and kind in ("linear", "attn_core"):
        return ("encoder_total", f"encoder_{kind}")
    if not path.startswith(_SAM):
        raise KeyError(f"unattributed count {op!r} in {path!r}")
    rest = path.removeprefix(_SAM)
    block = re.match(r"layers\.(\d+)(\.|$)", rest)
    if block:
        where = "sam_glob_blocks" if int(block[1]) in global_blocks else "sam_win_blocks"
        # the decomposed rel-pos einsums run in the attention module itself (bmm under FlopCounterMode)
        if op == "einsum" or (op == "bmm" and rest.endswith(".attn")):
            return ("sam_total", where, "sam_relpos")
        if kind in ("linear", "attn_core", "norms"):
            return ("sam_total", where, f"sam_{kind}")
    if rest.startswith("neck") and kind == "norms":
        return ("sam_total", "sam_neck", "sam_norms")
    if kind == "conv":
        for prefix, column in (
            ("patch_embed", "sam_patch_embed"),
            ("neck", "sam_neck"),
            ("proj.conv1", "sam_net2"),
            ("proj.conv2", "sam_net3"),
        ):
            if rest.startswith(prefix):
                return ("sam_total", column)
    raise KeyError(f"unattributed count {op!r} in {path!r}")


def _pixel_sizes():
    """(global view px, tile px) as the image processor makes them."""
    ip = _image_processor()
    return ip.size["height"], ip.tile_size


def measure_vision(n_crops: int, counter: str = "torch", model=None, batch: int = 1) -> dict[str, int]:
    """Vision FLOPs per view for ``batch`` images of ``n_crops`` tiles each: ``global`` (the 1024 views)
    and, if n_crops, ``crops`` (the 768 tiles).

    Keys ``{view}_{c}`` for c in VIEW_COLUMNS, ``vision_total``, and ``image_features`` (feature rows
    ``get_image_features`` makes per image). Identities:
    sam_total = patch_embed + win_blocks + glob_blocks + neck + net2 + net3;
    win_blocks + glob_blocks = linear + relpos + attn_core + (the blocks' share of norms);
    encoder_total = encoder_linear + encoder_attn_core + encoder_rope.
    """
    import torch

    _check(counter)
    if n_crops < 0 or batch < 1:
        raise ValueError(f"need n_crops >= 0 and batch >= 1, got {n_crops}, {batch}")
    if model is None:
        model = (
            meta_model()
            if counter.startswith("torch")
            else build_model(
                "cpu", real=("model.vision_tower", "model.multi_modal_projector", "model.view_separator")
            )
        )
    param = model.model.multi_modal_projector.weight
    global_px, tile_px = _pixel_sizes()
    global_blocks = set(model.config.vision_config.sam_config.global_attn_indexes)

    def pixels(n, px):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return torch.randn(n, 3, px, px, device=param.device, dtype=param.dtype)

    only_global = _image_features_wrapper(model, None)
    glob = _count(only_global, (pixels(batch, global_px),), counter)
    views, both, rows = {"global": glob}, None, only_global.rows
    if n_crops:
        with_tiles = _image_features_wrapper(model, [n_crops] * batch)
        both = _count(with_tiles, (pixels(batch, global_px), pixels(batch * n_crops, tile_px)), counter)
        rows = with_tiles.rows
        crops = {key: n - glob.get(key, 0) for key, n in both.items()}
        if any(n < 0 for n in crops.values()) or not glob.keys() <= both.keys():
            raise RuntimeError("the global view counted differently with and without tiles")
        views["crops"] = {key: n for key, n in crops.items() if n}
    out, total = {}, 0
    for view, counts in views.items():
        cols = _attribute(counts, lambda p, o: _vision_columns(p, o, global_blocks), VIEW_COLUMNS)
        out |= {f"{view}_{k}": int(v) for k, v in cols.items()}
        total += cols["sam_total"] + cols["encoder_total"] + cols["proj_total"]
    if total != sum((both if n_crops else glob).values()):  # every count landed in exactly one view total
        raise RuntimeError("vision columns do not add up to the counted total")
    out["vision_total"] = int(total)
    if len(rows) != batch or len(set(rows)) != 1:
        raise RuntimeError(f"expected {batch} images of equal feature rows, got {rows}")
    out["image_features"] = rows[0]
    return out


# --------------------------------------------------------------------------- decoder


def _decoder_columns(path, op, dense):
    """Column names (layer parts as ``L<i>_<part>``) one decoder (module path, op) count belongs to."""
    if _kind(op) not in ("linear", "attn_core"):
        raise KeyError(f"unexpected op {op!r} in {path!r}")
    if path == "lm_head":
        return ("lm_head", "total_full_depth")
    m = re.match(re.escape(_LAYERS) + r"(\d+)\.(self_attn|mlp)(?:\.([a-z_]+))?", path)
    if not m:
        return ("other_outside_layers_and_lm_head", "total_full_depth")
    layer, block, child = f"L{m[1]}_", m[2], m[3]
    if block == "self_attn":
        part = {"rotary_emb": "rope", None: "attn_core"}.get(child, "attn_proj")
        return (layer + "total", layer + "attn", layer + part, "total_full_depth")
    moe = {"gate": "moe_gate", "shared_experts": "moe_shared", "experts": "moe_routed"}
    parts = ("mlp",) if int(m[1]) in dense else ("mlp", moe.get(child, "moe_other"))
    return (layer + "total", *(layer + p for p in parts), "total_full_depth")


def decoder_counts(
    model, s_new: int, l_past: int, counter: str, logits: str, batch: int, attention: str
) -> dict:
    """Columns ``L<i>_<part>`` (validation.measure.LAYER_PARTS), lm_head, the rest and the total of one
    forward of the model's own code: ``batch`` sequences of ``s_new`` new tokens after ``l_past`` cached
    ones, with ``inputs_embeds`` (no placeholder mask). ``logits="all"``: lm_head on every new position
    (a plain forward); ``"last"``: on the last one only (``logits_to_keep=1``, as ``generate()`` runs
    prefill). ``attention``: the text model's attention implementation for this call (restored after).
    Layers without ``mlp_layer_types`` are dense."""
    import torch

    _check(counter)
    if logits not in ("all", "last"):
        raise ValueError(f"logits must be 'all' or 'last', got {logits!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if s_new < 1 or l_past < 0 or batch < 1:
        raise ValueError(f"need s_new >= 1, l_past >= 0, batch >= 1, got {s_new}, {l_past}, {batch}")
    if l_past and not counter.startswith("torch"):
        raise ValueError("fvcore traces tensors only: measure decode (l_past > 0) with a torch counter")
    text = model.config.text_config
    n_layers = text.num_hidden_layers
    types = getattr(text, "mlp_layer_types", None) or ["dense"] * n_layers
    dense = {i for i, t in enumerate(types) if t == "dense"}
    param = model.lm_head.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        embeds = torch.randn(batch, s_new, text.hidden_size, device=param.device, dtype=param.dtype)
    wrapper = decoder_wrapper(model, l_past, 0 if logits == "all" else 1)
    names = [f"L{i}_{p}" for i in range(n_layers) for p in LAYER_PARTS]
    names += ["lm_head", "other_outside_layers_and_lm_head", "total_full_depth"]
    language_model, before = model.model.language_model, text._attn_implementation
    language_model.set_attn_implementation(attention)  # the text model's only
    try:
        counts = _count(wrapper, (embeds,), counter)
    finally:
        language_model.set_attn_implementation(before)
    return _attribute(counts, lambda p, o: _decoder_columns(p, o, dense), names)


def measure_decoder(
    s_new: int,
    l_past: int,
    counter: str = "torch",
    logits: str = "all",
    model=None,
    batch: int = 1,
    attention: str = "sdpa",
) -> dict[str, int]:
    """Decoder FLOPs (``decoder_counts``) of the 12 layers, final norm and lm_head, keyed as
    validation.measure.measure_decoder: dense layer 0 and MoE layer 1 by part, the MoE layer totals'
    range, lm_head, the rest, the total."""
    if model is None:
        model = (
            meta_model()
            if counter.startswith("torch")
            else build_model("cpu", real=("model.language_model", "lm_head"))
        )
    text = model.config.text_config
    dense = {i for i, t in enumerate(text.mlp_layer_types) if t == "dense"}
    if dense != {0} or text.mlp_layer_types[1] != "sparse":
        raise ValueError("expected layer 0 dense and layer 1 MoE")
    cols = decoder_counts(model, s_new, l_past, counter, logits, batch, attention)
    out = {f"dense_L0_{p}": cols[f"L0_{p}"] for p in LAYER_PARTS if not p.startswith("moe_")}
    out |= {f"moe_L1_{p}": cols[f"L1_{p}"] for p in LAYER_PARTS}
    moe_totals = [cols[f"L{i}_total"] for i in range(text.num_hidden_layers) if i not in dense]
    out |= {"moe_layers_min": min(moe_totals), "moe_layers_max": max(moe_totals)}
    out |= {k: cols[k] for k in ("lm_head", "other_outside_layers_and_lm_head", "total_full_depth")}
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- tiles and image tokens


@functools.lru_cache(maxsize=1)
def _image_processor():
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessorPil,
    )

    return DeepseekOcr2ImageProcessorPil()


def _tiled_canvas():
    """``canvas(height, width) -> (num_columns, num_rows)`` exactly as ``crop_image_to_patches`` asks it:
    ``get_optimal_tiled_canvas((H, W), (tile, tile), min_patches, max_patches)``, unwrapped from its
    ``lru_cache`` (maxsize 100), with the image processor's defaults (tile 768, 2..6 tiles)."""
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        get_optimal_tiled_canvas,
    )

    ip = _image_processor()
    canvas = get_optimal_tiled_canvas.__wrapped__
    tile, lo, hi = (ip.tile_size, ip.tile_size), ip.min_patches, ip.max_patches

    def grid(height, width):
        return canvas((height, width), tile, lo, hi)

    return grid


def tile_grid(width: int, height: int, *, crop_to_patches: bool = True) -> tuple[int, int]:
    """(cols, rows) of 768 tiles the image processor cuts a W x H image into; (1, 1) = no tiles.

    ``_preprocess`` tiles only if ``crop_to_patches and max(W, H) > tile_size`` (else it appends 0 local
    patches); then ``crop_image_to_patches`` takes (num_columns, num_rows) from ``get_optimal_tiled_canvas``.
    """
    if not (crop_to_patches and max(width, height) > _image_processor().tile_size):
        return (1, 1)
    cols, rows = _tiled_canvas()(height, width)
    return (cols, rows)


@functools.lru_cache(maxsize=1)
def processor():
    """``DeepseekOcr2Processor`` (PIL image processor) with a word-level tokenizer that knows ``<image>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DeepseekOcr2Processor, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return DeepseekOcr2Processor(image_processor=_image_processor(), tokenizer=tokenizer)


def run_processor(width: int, height: int, **images_kwargs) -> dict:
    """Run the processor on a blank W x H RGB image with the prompt "<image>" and summarise what it wrote:
    image_tokens (placeholders in input_ids), num_local_patches, global_shape, local_shape (or None)."""
    from PIL import Image
    from transformers.utils import logging

    proc = processor()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # 1-3 px sides make it warn that the channel axis is ambiguous (it is not)
    try:
        out = proc(images=Image.new("RGB", (width, height)), text=proc.image_token, **images_kwargs)
    finally:
        logging.set_verbosity(verbosity)
    local = out.get("pixel_values_local")
    return {
        "image_tokens": sum(t == proc.image_token_id for t in out["input_ids"][0]),
        "num_local_patches": out["num_local_patches"][0],
        "global_shape": tuple(out["pixel_values"][0].shape),
        "local_shape": (len(local), *local[0].shape) if local is not None else None,
    }


def image_tokens(width: int, height: int, **images_kwargs) -> int:
    """Image placeholder tokens DeepseekOcr2Processor writes for one W x H image (the processor run)."""
    return run_processor(width, height, **images_kwargs)["image_tokens"]


def tokens_for_crops(n_crops: int) -> int:
    """Image tokens the processor's own ``replace_image_token`` writes for an image of ``n_crops`` tiles
    (the token count without an image: any size, no pixels allocated)."""
    proc = processor()
    text = proc.replace_image_token({"num_local_patches": [n_crops]}, 0)
    return text.count(proc.image_token)
