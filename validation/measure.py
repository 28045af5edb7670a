"""Measure the FLOPs of the v1 reference model per component, keyed like the reference CSVs.

Counters (``counter`` argument):
  ``"torch"``          FlopCounterMode (2 per MAC) on the meta device, plus a formula for CPU SDPA.
  ``"torch-cpu"``      FlopCounterMode out of the box, as a plain CPU run prints it.
  ``"fvcore"``         fvcore FlopCountAnalysis (1 per MAC, + layer_norm 5/elt) on real CPU tensors,
                       plus a handle for ``aten::scaled_dot_product_attention``.
  ``"fvcore-default"`` fvcore out of the box.

NB: FlopCounterMode in torch 2.13 has no formula for ``aten._scaled_dot_product_flash_attention_for_cpu``
    (the kernel F.scaled_dot_product_attention picks on CPU), so out of the box attention counts 0;
    "torch" adds torch's own SDPA formula 2*B*H*Sq*Sk*(Dqk+Dv).
NB: on the meta device F.scaled_dot_product_attention falls back to its math decomposition (two bmm,
    counted, and mixed up with the rel-pos bmm). ``_CpuSdpaOnMeta`` sends it to the CPU kernel op
    instead, whose meta kernel only computes shapes, so meta runs count exactly what CPU runs count.
NB: fvcore skips ``aten::scaled_dot_product_attention`` (unsupported op); "fvcore" adds
    B*H*Sq*Sk*(Dqk+Dv). Its einsum handle floors half the 4-significant-digit "Optimized FLOP count"
    printed by numpy.einsum_path, so SAM's rel-pos column is rounded: that is fvcore's answer.
NB: fvcore can't trace meta tensors: its counters run on CPU weights (random), so keep shapes small.
"""

import math
import re

from validation import ValidationError

COUNTERS = ("torch", "torch-cpu", "fvcore", "fvcore-default")
GLOBAL_BLOCKS = (2, 5, 8, 11)
_ATTN_OPS = {"_scaled_dot_product_flash_attention_for_cpu", "scaled_dot_product_attention"}
_LINEAR_OPS = {"mm", "addmm", "linear", "matmul", "bmm"}
_CONV_OPS = {"convolution", "conv"}
_VIEW_COLUMNS = (
    "sam_total",
    "sam_patch_embed",
    "sam_win_blocks",
    "sam_glob_blocks",
    "sam_linear",
    "sam_relpos",
    "sam_attn_core",
    "sam_neck",
    "sam_net2",
    "sam_net3",
    "sam_norms",
    "clip_total",
    "clip_linear",
    "clip_attn_core",
    "clip_norms",
    "proj_total",
)
LAYER_PARTS = (
    "total",
    "attn",
    "attn_proj",
    "rope",
    "attn_core",
    "mlp",
    "moe_gate",
    "moe_shared",
    "moe_routed",
    "moe_other",
)


def _cpu_sdpa_on_meta():
    """TorchFunctionMode that runs meta SDPA as the CPU flash kernel op (see NB above)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class _CpuSdpaOnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is not F.scaled_dot_product_attention or not args[0].is_meta:
                return func(*args, **kwargs)
            q, k, v = args[:3]
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q,
                k,
                v,
                kwargs.get("dropout_p", 0.0),
                kwargs.get("is_causal", False),
                attn_mask=kwargs.get("attn_mask"),
                scale=kwargs.get("scale"),
            )[0]

    return _CpuSdpaOnMeta()


def torch_formulas():
    """FlopCounterMode formulas torch 2.13 lacks: the CPU flash-attention kernel (torch's own SDPA
    formula, 2*B*H*Sq*Sk*(Dqk+Dv)) and ``_grouped_mm`` (2*rows*K*N), for ``custom_mapping``."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_sdpa(q, k, v, *args, **kwargs):
        return sdpa_flop_count(q, k, v)

    def grouped_mm(a, b, *args, **kwargs):  # a [rows, K], b [groups, K, N]: each row in one group
        if len(a) != 2 or len(b) != 3 or a[1] != b[1]:
            raise ValidationError(f"unexpected _grouped_mm shapes {a} x {b}")
        return 2 * a[0] * a[1] * b[2]

    return {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa,
        torch.ops.aten._grouped_mm: grouped_mm,
    }


def build_native(model_cls, config, device="meta", dtype=None, real=None, share=None):
    """``model_cls(config)`` with parameters in ``dtype`` (bf16), eval(). ``device="meta"``: no memory;
    any other device: random weights (normal(0, 0.02), seed 0) for the parameters whose names start
    with one of ``real`` (default: all); every other parameter is moved to meta, so it costs no memory
    and raises if it is ever computed with. ``share(model)``, when given, ties parameters together
    before they are filled (a shared one is filled once; the others' storage is freed untouched)."""
    import torch
    from transformers.initialization import no_init_weights

    dtype = dtype or torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():  # parameters straight in dtype, uninitialised
            model = model_cls(config)
    finally:
        torch.set_default_dtype(previous)
    if share is not None:
        share(model)
    if device != "meta":
        keep = tuple(real) if real is not None else ("",)
        done: dict[int, object] = {}  # id -> what replaces it: a shared parameter is done once
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for module_name, module in model.named_modules():
                for name, p in list(module._parameters.items()):
                    full = f"{module_name}.{name}" if module_name else name
                    if p is None:
                        continue
                    if id(p) not in done:
                        if full.startswith(keep):
                            p.normal_(0.0, 0.02)
                            done[id(p)] = p
                        else:  # drop the (never touched) storage
                            done[id(p)] = torch.nn.Parameter(p.to("meta"), requires_grad=False)
                    module._parameters[name] = done[id(p)]
    return model.eval()


def dynamic_cache(text, l_past, like):
    """A DynamicCache holding ``l_past`` cached tokens of each sequence in every layer (zeros)."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    for i in range(text.num_hidden_layers):
        kv = torch.zeros(
            like.shape[0],
            text.num_key_value_heads,
            l_past,
            getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
            device=like.device,
            dtype=like.dtype,
        )
        cache.update(kv, kv.clone(), i)
    return cache


def decoder_wrapper(model, l_past, logits_to_keep):
    from torch import nn

    class Decoder(nn.Module):
        """``forward(inputs_embeds)`` = the model's own forward after ``l_past`` cached tokens -> logits."""

        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, inputs_embeds):
            cache = dynamic_cache(self.m.config.text_config, l_past, inputs_embeds) if l_past else None
            out = self.m(
                inputs_embeds=inputs_embeds,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=logits_to_keep,
            )
            return out.logits

    return Decoder()


def _torch_counts(module, inputs, counter):
    """Inclusive {module path: {op: flops}} from FlopCounterMode, paths relative to ``module``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flop_counter = FlopCounterMode(
        display=False, custom_mapping=torch_formulas() if counter == "torch" else None
    )
    with torch.no_grad(), flop_counter, _cpu_sdpa_on_meta():
        module(*inputs)
    root = type(module).__name__  # FlopCounterMode names modules "<RootClass>.<path>"
    return {
        name.removeprefix(root).removeprefix("."): {str(op).removeprefix("aten."): n for op, n in ops.items()}
        for name, ops in flop_counter.get_flop_counts().items()
        if name != "Global"
    }


def _fvcore_counts(module, inputs, counter):
    """Inclusive {module path: {op: flops}} from fvcore's traced graph."""
    import torch
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

    def sdpa(inputs, outputs):
        q, k, v = (get_shape(x) for x in inputs[:3])
        return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])

    analysis = FlopCountAnalysis(module, tuple(inputs))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    if counter == "fvcore":
        analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa)
    with torch.no_grad():
        return {name: dict(ops) for name, ops in analysis.by_module_and_operator().items()}


def _exclusive(inclusive):
    """{(path, op): flops} counted in each module itself, not in a submodule it called."""
    own = {path: dict(ops) for path, ops in inclusive.items()}
    for path, ops in inclusive.items():
        parent = _parent(path, inclusive)
        for op, n in ops.items() if parent is not None else ():
            own[parent][op] -= n
    return {(path, op): n for path, ops in own.items() for op, n in ops.items() if n}


def _parent(path, paths):
    """Longest other path that is a dotted prefix of ``path`` ("" is the root)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in paths:
            return ".".join(parts[:i])
    return "" if path else None


def _check(counter):
    if counter not in COUNTERS:
        raise ValidationError(f"counter must be one of {COUNTERS}, got {counter!r}")


def _count(module, inputs, counter):
    """(path, op) -> flops for one forward call of ``module`` under ``counter``."""
    run = _torch_counts if counter.startswith("torch") else _fvcore_counts
    return _exclusive(run(module, inputs, counter))


def _op_kind(op):
    """linear | attn_core | norms | conv."""
    if op in _ATTN_OPS:
        return "attn_core"
    if op == "layer_norm":
        return "norms"
    if op in _CONV_OPS:
        return "conv"
    if op in _LINEAR_OPS or op == "einsum":
        return "linear"
    raise ValidationError(f"unexpected op {op!r}")


def _vision_columns(path, op):
    """View-less column names that one (module path, op) count belongs to."""
    part, _, rest = path.partition(".")
    kind = _op_kind(op)
    if part == "projector":
        return ("proj_total",)
    if part == "clip" and kind != "conv":
        return ("clip_total", f"clip_{kind}")
    if part != "sam":
        raise ValidationError(f"unattributed count {op!r} in {path!r}")
    block = re.match(r"layers\.(\d+)(\.|$)", rest)
    if block:
        blocks = "sam_glob_blocks" if int(block[1]) in GLOBAL_BLOCKS else "sam_win_blocks"
        relpos = op == "einsum" or (op == "bmm" and rest.endswith(".attn"))
        return ("sam_total", blocks, "sam_relpos" if relpos else f"sam_{kind}")
    if kind == "norms":
        return ("sam_total", "sam_norms")
    where = {
        "patch_embed": "sam_patch_embed",
        "neck": "sam_neck",
        "proj.conv1": "sam_net2",
        "proj.conv2": "sam_net3",
    }
    for prefix, column in where.items():
        if rest.startswith(prefix):
            return ("sam_total", column)
    raise ValidationError(f"unattributed count {op!r} in {path!r}")


def _attribute(counts, columns_of, names):
    """Sum (path, op) counts into the given column names; unknown paths or ops raise."""
    out = dict.fromkeys(names, 0)
    for (path, op), n in counts.items():
        for column in columns_of(path, op):
            out[column] += n
    return out


def measure_vision(
    global_px: int, crop_px: int | None, n_crops: int, counter: str, *, model=None
) -> dict[str, int]:
    """Vision FLOPs: one global view [1,3,G,G] and, if n_crops, one batched call on the tiles."""
    import torch

    from validation.reference_model import build_vision

    _check(counter)
    if model is None:
        model = build_vision("meta" if counter.startswith("torch") else "cpu")
    param = next(model.parameters())
    views = {"global": (1, global_px)} | ({"crops": (n_crops, crop_px)} if n_crops else {})
    out, total, attn = {}, 0, 0
    for view, (batch, px) in views.items():
        pixels = torch.randn(batch, 3, px, px, device=param.device, dtype=param.dtype)
        counts = _count(model, (pixels,), counter)
        cols = _attribute(counts, _vision_columns, _VIEW_COLUMNS)
        out |= {f"{view}_{k}": int(v) for k, v in cols.items()}
        total += cols["sam_total"] + cols["clip_total"] + cols["proj_total"]
        attn += cols["sam_attn_core"] + cols["clip_attn_core"]
    out["vision_total"] = int(total)
    out["vision_total_out_of_the_box"] = int(total - attn)
    return out


def _decoder_columns(path, op):
    """Column names (layer parts as ``L<i>_<part>``) one decoder (module path, op) count belongs to."""
    if _op_kind(op) not in ("linear", "attn_core"):
        raise ValidationError(f"unexpected op {op!r} in {path!r}")
    m = re.match(r"model\.layers\.(\d+)\.(self_attn|mlp)(?:\.([a-z_]+))?", path)
    if path == "lm_head" or not m:
        return (path if path == "lm_head" else "other_outside_layers_and_lm_head", "total_full_depth")
    layer, block, child = f"L{m[1]}_", m[2], m[3]
    if block == "self_attn":
        part = {"rotary_emb": "rope", None: "attn_core"}.get(child, "attn_proj")
        return (layer + "total", layer + "attn", layer + part, "total_full_depth")
    moe = {"gate": "moe_gate", "shared_experts": "moe_shared", "experts": "moe_routed"}
    parts = ("mlp",) if m[1] == "0" else ("mlp", moe.get(child, "moe_other"))
    return (layer + "total", *(layer + p for p in parts), "total_full_depth")


def _past(config, l_past, device, dtype):
    """A DynamicCache holding ``l_past`` cached tokens per layer."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    for i in range(config.num_hidden_layers):
        kv = torch.zeros(1, config.num_key_value_heads, l_past, config.head_dim, device=device, dtype=dtype)
        cache.update(kv, kv.clone(), i)
    return cache


def measure_decoder(s_new: int, l_past: int, counter: str, *, model=None) -> dict[str, int]:
    """Decoder FLOPs per layer kind: S_new new tokens after L_past cached ones (12 layers + lm_head)."""
    import torch

    from validation.reference_model import build_language_model

    _check(counter)
    torch_counter = counter.startswith("torch")
    if l_past and not torch_counter:
        raise ValidationError("fvcore traces tensors only: measure decode (l_past > 0) with a torch counter")
    if model is None:
        model = build_language_model("meta" if torch_counter else "cpu", torch.bfloat16)
    param = next(model.parameters())
    n_layers = len(model.model.layers)
    embeds = torch.randn(1, s_new, param.shape[-1], device=param.device, dtype=param.dtype)
    inputs = (embeds, _past(model.model.config, l_past, param.device, param.dtype)) if l_past else (embeds,)
    names = [f"L{i}_{p}" for i in range(n_layers) for p in LAYER_PARTS]
    names += ["lm_head", "other_outside_layers_and_lm_head", "total_full_depth"]
    cols = _attribute(_count(model, inputs, counter), _decoder_columns, names)
    out = {f"dense_L0_{p}": cols[f"L0_{p}"] for p in LAYER_PARTS if not p.startswith("moe_")}
    out |= {f"moe_L1_{p}": cols[f"L1_{p}"] for p in LAYER_PARTS}
    moe_totals = [cols[f"L{i}_total"] for i in range(1, n_layers)]
    out |= {"moe_layers_min": min(moe_totals), "moe_layers_max": max(moe_totals)}
    out |= {k: cols[k] for k in names[-3:]}
    return {k: int(v) for k, v in out.items()}
