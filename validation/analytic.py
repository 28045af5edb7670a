"""The analytic side of every comparison: symcost's numbers keyed like the reference CSV columns.

The measuring side (``measure.py``) returns the same keys, so analytic vs measured is a dict
comparison. Counters map to conventions: FlopCounterMode -> ``torch`` (totals out of the box:
``torch-cpu``), fvcore -> ``fvcore`` (``fvcore-default``).
"""
from __future__ import annotations

import sympy as sp

import symcost
from symcost.conventions import flops

from derivations.common.decoder import decoder
from derivations.deepseek_ocr import DECODER, VENDOR

__all__ = ["COUNTER_CONVENTIONS", "vision_columns", "decoder_columns"]

# counter -> (convention with SDPA counted, convention out of the box)
COUNTER_CONVENTIONS = {
    "FlopCounterMode": ("torch", "torch-cpu"), "torch": ("torch", "torch-cpu"),
    "torch-cpu": ("torch-cpu", "torch-cpu"), "fvcore": ("fvcore", "fvcore-default"),
    "fvcore-default": ("fvcore-default", "fvcore-default")}

_NODES = {"sam_total": "sam", "sam_patch_embed": "sam.patch_embed",
          "sam_win_blocks": "sam.win_blocks", "sam_glob_blocks": "sam.glob_blocks",
          "sam_neck": "sam.neck", "sam_net2": "sam.net2", "sam_net3": "sam.net3",
          "clip_total": "clip", "proj_total": "projector"}
_KINDS = {"linear": "linear", "relpos": "einsum", "attn_core": "sdpa", "norms": "layer_norm"}


def _value(expr, subs, model=None) -> int:
    expr = sp.sympify(expr)
    return int((model.expand(expr) if model else expr).subs(subs))


def vision_columns(preset: str, width: int, height: int, counter: str,
                   vision_mode: str = "crops") -> dict[str, int]:
    """Analytic vision FLOPs for one image, keyed like ``vision_flops.csv`` (batch 1)."""
    conv, ootb = COUNTER_CONVENTIONS[counter]
    model = symcost.load("deepseek-ocr", preset=preset, vision_mode=vision_mode)
    i, j = (int(a) for a in model.tile_grid(width, height))
    v = model.symbols()
    subs = {v.w_tiles: i, v.h_tiles: j, v.batch: 1}
    tree = model.tree("vision")
    comps = tree.components()
    out = {"w_tiles": i, "h_tiles": j,
           "n_crops": _value(v.n_crops, subs, model),
           "n_image_tokens": _value(v.image_tokens, subs, model),
           "vision_total": _value(flops(tree.cost, conv), subs, model),
           "vision_total_out_of_the_box": _value(flops(tree.cost, ootb), subs, model)}
    out["vision_total_excl_attn_core"] = out["vision_total_out_of_the_box"]  # same by definition
    views = ["global"] + (["crops"] if out["n_crops"] else [])
    for v in views:
        for col, path in _NODES.items():
            out[f"{v}_{col}"] = _value(flops(comps[f"vision.{v}.{path}"], conv), subs, model)
        for enc in ("sam", "clip"):
            kinds = tree.by_kind(under=f"vision.{v}.{enc}")
            for col, kind in _KINDS.items():
                if enc == "clip" and col == "relpos":
                    continue
                cost = kinds.get(kind)
                out[f"{v}_{enc}_{col}"] = _value(flops(cost, conv), subs, model) if cost else 0
    return out


def decoder_columns(s_new: int, l_past: int, counter: str) -> dict[str, int]:
    """Analytic decoder FLOPs for one forward, keyed like ``decoder_flops.csv`` (batch 1)."""
    conv, _ = COUNTER_CONVENTIONS[counter]
    tree = decoder(DECODER, VENDOR, 1, s_new, l_past)
    subs: dict = {}
    comps = tree.components()

    def node(path):
        return _value(flops(comps[f"decoder.{path}"], conv), subs)

    out = {"lm_head": node("lm_head"), "total_full_depth": _value(flops(tree.cost, conv), subs)}
    per_layer = {"dense_L0": ("layer0", 1), "moe_L1": ("moe_layers", 11)}
    for prefix, (layer, count) in per_layer.items():
        parts = {"total": layer, "attn": f"{layer}.attn",
                 "rope": f"{layer}.attn.rope", "attn_core": f"{layer}.attn.attn_core",
                 "mlp": f"{layer}.mlp"}
        if layer == "moe_layers":
            parts.update(moe_gate=f"{layer}.mlp.gate", moe_shared=f"{layer}.mlp.shared",
                         moe_routed=f"{layer}.mlp.routed")
        for col, path in parts.items():
            value = node(path)
            if value % count:
                raise AssertionError(f"{path}: {value} is not {count} equal layers")
            out[f"{prefix}_{col}"] = value // count
        proj = sum(node(f"{layer}.attn.{p}_proj") for p in "qkvo")
        out[f"{prefix}_attn_proj"] = proj // count
    out["moe_L1_moe_other"] = (out["moe_L1_mlp"] - out["moe_L1_moe_gate"]
                               - out["moe_L1_moe_shared"] - out["moe_L1_moe_routed"])
    out["moe_layers_min"] = out["moe_layers_max"] = out["moe_L1_total"]  # all MoE layers alike
    out["other_outside_layers_and_lm_head"] = 0
    return out
