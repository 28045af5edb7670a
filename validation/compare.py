"""Analytic vs measured, per component: the engine of ``symcost validate``.

Both families measure columns keyed like the reference data (``validation/data/*.csv``, e.g.
``global_sam_total``); every row names its component as ``symcost eval`` does
(:func:`component_name`, e.g. ``vision.global.sam``), the column kept beside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from validation import ValidationError

from .analytic import COUNTER_CONVENTIONS, decoder_columns, vision_columns

__all__ = [
    "compare",
    "component_name",
    "part_name",
    "namer",
    "validate_case",
    "vendor_global_view",
    "STAGES",
    "NAMING",
]

STAGES = ("vision", "prefill", "decode")
NAMING = (
    "components named as `symcost eval --json` names them; P[kind]: the ops of one kind under "
    "P; P / n: one of P's n equal layers"
)
# reference-column pieces -> the cost tree's names (node, op kind, layer part)
_ENCODERS = {"sam": "sam", "clip": "clip", "encoder": "encoder", "proj": "projector"}
_KINDS = {"linear": "linear", "relpos": "einsum", "attn_core": "sdpa", "norms": "layer_norm"}
_LAYER_PARTS = {
    "total": "",
    "attn": ".attn",
    "attn_proj": ".attn.{q,k,v,o}_proj",
    "rope": ".attn.rope",
    "attn_core": ".attn.attn_core",
    "mlp": ".mlp",
    "moe_gate": ".mlp.gate",
    "moe_shared": ".mlp.shared",
    "moe_routed": ".mlp.routed",
    "moe_other": ".mlp.add_shared",
}


def component_name(column: str, root: str, moe_layers: int, out_of_the_box: str) -> str:
    """The name ``symcost eval`` gives the quantity a reference column holds, one to one:
    ``root`` is the decoder's path in the stage (``prefill``, ``decode.decoder``), ``moe_layers``
    how many MoE layers the per-layer columns divide, ``out_of_the_box`` the counter's own
    convention. Layout outputs and named quantities keep their names (``w_tiles``, ...)."""
    m = re.fullmatch(r"(global|crops)_(sam|clip|encoder|proj)_([a-z_0-9]+)", column)
    if m:
        view, encoder, part = m.groups()
        node = f"vision.{view}.{_ENCODERS[encoder]}"
        if part == "total":
            return node
        if part in _KINDS:
            return f"{node}[{_KINDS[part]}]"
        return f"{node}.{'mask_rope' if part == 'rope' else part}"
    m = re.fullmatch(r"(dense_L0|moe_L1)_([a-z_]+)", column)
    if m:
        layer = "layer0" if m[1] == "dense_L0" else "moe_layers"
        name = f"{root}.{layer}{_LAYER_PARTS[m[2]]}"
        return name if layer == "layer0" else f"{name} / {moe_layers}"
    return {
        "vision_total": "vision",
        "vision_total_out_of_the_box": f"vision ({out_of_the_box})",
        "n_image_tokens": "image_tokens",
        "image_features": "image_tokens (feature rows)",
        "moe_layers_min": f"{root}.moe_layers / {moe_layers} (least layer)",
        "moe_layers_max": f"{root}.moe_layers / {moe_layers} (greatest layer)",
        "lm_head": f"{root}.lm_head",
        "total_full_depth": root,
        "other_outside_layers_and_lm_head": f"{root} - layer0 - moe_layers - lm_head",
    }.get(column, column)


def part_name(node: str, paths: tuple[str, ...], count: int = 1) -> str:
    """The name of the sum of ``paths`` below ``node`` (``node.a``, or ``node.{a,b}`` for several;
    ``("",)``: the node itself), per repetition (`` / count``) when the node repeats."""
    joined = paths[0] if len(paths) == 1 else "{" + ",".join(paths) + "}"
    name = node if paths == ("",) else f"{node}.{joined}"
    return name + (f" / {count}" if count > 1 else "")


def namer(model, stage: str, counter: str) -> Callable[[str], str]:
    """:func:`component_name` for the columns of one stage of ``model`` measured by ``counter``."""
    root = "decode.decoder" if stage == "decode" else stage
    below = f"{root}.moe_layers".partition(".")[2]  # find() paths start below the stage's root
    moe = 0 if stage == "vision" else int(model.tree(stage).find(below).count)
    ootb = COUNTER_CONVENTIONS[counter][1]
    return lambda column: component_name(column, root, moe, ootb)


def compare(
    analytic: dict[str, int], measured: dict[str, int], name: Callable[[str], str] = str
) -> list[dict]:
    """One row per measured column: its component's ``name``, the column, analytic, measured,
    absolute and relative difference."""
    rows = []
    for column, got in measured.items():
        want = analytic.get(column)
        diff = None if want is None else want - got
        rows.append(
            {
                "component": name(column),
                "column": column,
                "analytic": want,
                "measured": got,
                "abs_diff": diff,
                "rel_diff": (abs(diff) / got if got else float(diff != 0)) if diff is not None else None,
                "ok": diff == 0,
            }
        )
    return rows


def vendor_global_view(preset: str, vision_mode: str, width: int, height: int) -> tuple[int, int]:
    """Size of the global view the vendor builds from a W x H image (PIL, as docs/models.md says):
    HF crop_mode=False pads (or, at image_size <= 640, resizes) to image_size; crop mode, the
    small-image shortcut and vLLM's no-crop pad to base_size."""
    from PIL import Image, ImageOps

    from derivations.deepseek_ocr import PRESETS

    p = PRESETS[preset]
    side = p.image_size if (vision_mode == "nocrop-hf" or not p.crop_mode) else p.base_size
    image = Image.new("RGB", (width, height))
    if vision_mode == "nocrop-hf" or not p.crop_mode:
        if side <= 640:
            image = image.resize((side, side))  # aspect ratio not kept
    return ImageOps.pad(image, (side, side), color=(127, 127, 127)).size


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one shape with ``counter`` and compare it with the analytic columns."""
    from symcost import SymcostError

    if stage == "decode" and counter.startswith("fvcore"):
        raise SymcostError(
            "--counter: fvcore cannot trace a decode step (it needs a KV cache "
            "of real tensors); use torch or torch-cpu"
        )
    if point.get("batch", 1) != 1:
        raise SymcostError("--batch: validate deepseek-ocr measures batch 1 (the reference data's)")
    if check_only:
        return {}
    from .measure import measure_decoder, measure_vision  # imports torch: only when measuring

    opts = model.options
    width, height = point.get("width", 1), point.get("height", 1)
    prompt_tokens, kv_len = point.get("prompt_tokens", 0), point.get("kv_len", 0)
    if stage == "decode":
        r = model.evaluate(stage="decode", kv_len=kv_len)
        r.update(w_tiles=1, h_tiles=1, n_crops=0)
    else:
        r = model.evaluate(
            width, height, stage, **({"prompt_tokens": prompt_tokens} if stage == "prefill" else {})
        )
    case = {
        "family": "deepseek-ocr",
        "preset": opts["preset"],
        "vision_mode": opts["vision_mode"],
        "stage": stage,
        "width": width,
        "height": height,
        "counter": counter,
        "convention": COUNTER_CONVENTIONS[counter][0],
        "w_tiles": r["w_tiles"],
        "h_tiles": r["h_tiles"],
        "n_crops": r["n_crops"],
    }
    if stage == "vision":
        gw, gh = vendor_global_view(opts["preset"], opts["vision_mode"], width, height)
        if (gw, gh) != (opts["global_px"], opts["global_px"]):
            raise ValidationError(f"the vendor builds a {gw}x{gh} global view, the model {opts['global_px']}")
        measured = measure_vision(gw, opts["crop_px"] or None, r["n_crops"], counter)
        analytic = vision_columns(opts["preset"], width, height, counter, opts["vision_mode"])
        case["title"] = (
            f"{opts['preset']} {opts['vision_mode']} {width}x{height} vision, "
            f"counter {counter}: tiles {r['w_tiles']}x{r['h_tiles']} "
            f"({r['n_crops']} crops)"
        )
    else:
        s_new, l_past = (r["prefill_tokens"], 0) if stage == "prefill" else (1, kv_len)
        case.update(s_new=s_new, l_past=l_past)
        measured = measure_decoder(s_new, l_past, counter)
        analytic = decoder_columns(s_new, l_past, counter)
        case["title"] = f"decoder {stage} S={s_new} L={l_past}, counter {counter}"
    case["rows"] = compare(analytic, measured, namer(model, stage, counter))
    case["naming"] = NAMING
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case
