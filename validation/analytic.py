"""The analytic side of every DeepSeek-OCR comparison: symcost's numbers keyed like the
reference CSV columns.

The measuring side (``measure.py``) returns the same keys, so analytic vs measured is a dict
comparison. Counters map to conventions: FlopCounterMode -> ``torch`` (totals out of the box:
``torch-cpu``), fvcore -> ``fvcore`` (``fvcore-default``).

Every column is computed from its own node of the cost tree, except the ``ALIASES``: columns
that are the same quantity as another by definition (the reference repeats them). They are
still compared, but not counted as independently reproduced values.
"""

from __future__ import annotations

import sympy as sp

import symcost
from derivations.common.decoder import decoder
from derivations.deepseek_ocr import DECODER, VENDOR
from symcost.conventions import flops
from validation import ValidationError

__all__ = ["COUNTER_CONVENTIONS", "ALIASES", "vision_columns", "decoder_columns"]

# counter -> (convention with SDPA counted, convention out of the box)
COUNTER_CONVENTIONS = {
    "FlopCounterMode": ("torch", "torch-cpu"),
    "torch": ("torch", "torch-cpu"),
    "torch-cpu": ("torch-cpu", "torch-cpu"),
    "fvcore": ("fvcore", "fvcore-default"),
    "fvcore-default": ("fvcore-default", "fvcore-default"),
}

# column -> the column it equals by definition
ALIASES = {
    "vision_total_excl_attn_core": "vision_total_out_of_the_box",  # both: total minus SDPA
    "layers_full_depth": "layers_sum_built",  # the reference built all 12 layers
    "total_built": "total_full_depth",
    "moe_layers_min": "moe_L1_total",
    "moe_layers_max": "moe_L1_total",  # all MoE layers alike
}

_NODES = {
    "sam_total": "sam",
    "sam_patch_embed": "sam.patch_embed",
    "sam_win_blocks": "sam.win_blocks",
    "sam_glob_blocks": "sam.glob_blocks",
    "sam_neck": "sam.neck",
    "sam_net2": "sam.net2",
    "sam_net3": "sam.net3",
    "clip_total": "clip",
    "proj_total": "projector",
}
_KINDS = {"linear": ("linear",), "relpos": ("einsum",), "attn_core": ("sdpa",), "norms": ("layer_norm",)}


def _int(expr, subs=None) -> int:
    return int(sp.sympify(expr).subs(subs or {}))


def vision_columns(
    preset: str, width: int, height: int, counter: str, vision_mode: str = "crops"
) -> dict[str, int]:
    """Analytic vision FLOPs for one image, keyed like ``vision_flops.csv`` (batch 1)."""
    conv, ootb = COUNTER_CONVENTIONS[counter]
    model = symcost.load("deepseek-ocr", preset=preset, vision_mode=vision_mode)
    i, j = (int(a) for a in model.tile_grid(width, height))
    v = model.symbols()
    subs = {v.w_tiles: i, v.h_tiles: j, v.batch: 1}
    tree = model.tree("vision")
    comps = tree.components()
    out = {
        "w_tiles": i,
        "h_tiles": j,
        "n_crops": _int(model.expand(v.n_crops), subs),
        "n_image_tokens": _int(model.expand(v.image_tokens), subs),
        "vision_total": _int(model.expand(flops(tree.cost, conv)), subs),
        "vision_total_out_of_the_box": _int(model.expand(flops(tree.cost, ootb)), subs),
    }
    no_sdpa = {k: c for k, c in tree.by_kind().items() if k != "sdpa"}
    out["vision_total_excl_attn_core"] = sum(
        _int(model.expand(flops(c, conv)), subs) for c in no_sdpa.values()
    )
    views = ["global"] + (["crops"] if out["n_crops"] else [])
    for view in views:
        for col, path in _NODES.items():
            out[f"{view}_{col}"] = _int(model.expand(flops(comps[f"vision.{view}.{path}"], conv)), subs)
        for enc in ("sam", "clip"):
            kinds = tree.by_kind(under=f"vision.{view}.{enc}")
            for col, names in _KINDS.items():
                if enc == "clip" and col == "relpos":
                    continue
                out[f"{view}_{enc}_{col}"] = sum(
                    _int(model.expand(flops(kinds[k], conv)), subs) for k in names if k in kinds
                )
    return out


def decoder_columns(s_new: int, l_past: int, counter: str) -> dict[str, int]:
    """Analytic decoder FLOPs for one forward, keyed like ``decoder_flops.csv`` (batch 1)."""
    conv, _ = COUNTER_CONVENTIONS[counter]
    tree = decoder(DECODER, VENDOR, 1, s_new, l_past)
    comps = tree.components()

    def node(path: str) -> int:
        return int(flops(comps[f"decoder.{path}"], conv))

    layers = {"layer0": 1, "moe_layers": DECODER.layers - DECODER.dense_layers}
    out = {
        "lm_head": node("lm_head"),
        "total_full_depth": int(flops(tree.cost, conv)),
        "layers_sum_built": sum(node(p) for p in layers),
        "other_outside_layers_and_lm_head": sum(
            node(c.name) for c in tree.children if c.name not in (*layers, "lm_head")
        ),
    }
    prefixes = {"layer0": "dense_L0", "moe_layers": "moe_L1"}
    for layer, count in layers.items():
        parts = {
            "total": layer,
            "attn": f"{layer}.attn",
            "rope": f"{layer}.attn.rope",
            "attn_core": f"{layer}.attn.attn_core",
            "mlp": f"{layer}.mlp",
        }
        if layer == "moe_layers":
            parts |= {
                "moe_gate": f"{layer}.mlp.gate",
                "moe_shared": f"{layer}.mlp.shared",
                "moe_routed": f"{layer}.mlp.routed",
                "moe_other": f"{layer}.mlp.add_shared",
            }
        values = {col: node(path) for col, path in parts.items()}
        values["attn_proj"] = sum(node(f"{layer}.attn.{p}_proj") for p in "qkvo")
        for col, value in values.items():
            if value % count:
                raise ValidationError(f"{layer}.{col}: {value} is not {count} equal layers")
            out[f"{prefixes[layer]}_{col}"] = value // count
    for alias, source in ALIASES.items():
        if source in out:
            out[alias] = out[source]
    return out
