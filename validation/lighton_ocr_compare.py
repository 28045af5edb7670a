"""LightOnOCR, analytic vs measured per component: the engine of ``symcost validate lighton-ocr``.

The analytic side is read from the family's own cost trees (``symcost.load("lighton-ocr", ...)``), keyed
like the columns ``validation.lighton_ocr`` measures on transformers' ``LightOnOcrForConditionalGeneration``:

    vision   patch conv; encoder layer 0 by part (attention projections, SDPA, SwiGLU) and the smallest /
             largest / summed layer; the tower; the projector's merging layer, linear_1, linear_2; the
             vision total; the patch grid, the image tokens and the feature rows per image
    decoder  layer 0 by part (q/k/v/o projections, q/k norms, SDPA, MLP), the smallest / largest layer,
             lm_head, whatever lies outside layers and lm_head, the total

The measured side takes the resized size and the image tokens from a ``LightOnOcrProcessor`` run on a
blank image of the size (above PROCESSOR_MAX_PX, its image processor's own resize function and its own
``replace_image_token``, without pixels), runs the module on that many pixels and positions, and counts;
the analytic side takes them from the family's layout rule.

Nothing imports torch until a case is measured (``check_only`` never does).
"""

from __future__ import annotations

import functools
import os
import sys

from symcost import SymcostError

from .compare import NAMING, compare, part_name
from .ocr2_compare import _exact_div, _Tree

__all__ = [
    "STAGES",
    "COUNTERS",
    "PROCESSOR_MAX_PX",
    "vision_columns",
    "decoder_columns",
    "param_columns",
    "param_table",
    "component_names",
    "validate_case",
    "validate_params",
    "grid_mismatches",
]

STAGES = ("vision", "prefill", "decode")
COUNTERS = ("torch", "torch-cpu")  # FlopCounterMode on meta; fvcore would need 2 GB of real weights
# the processor runs on a blank image up to this size (4096^2 px: 50 MB, ~1 s); above it, its own
# resize function and replace_image_token without an image
PROCESSOR_MAX_PX = 4096 * 4096


# --------------------------------------------------------------------------- analytic


def _layout_columns(result: dict) -> dict[str, int]:
    return {k: result[k] for k in ("w_patches", "h_patches", "image_tokens", "prefill_tokens") if k in result}


def vision_columns(model, values: dict, counter: str) -> dict[str, int]:
    """Analytic vision columns (as ``validation.lighton_ocr.measure_vision`` keys them) for one point."""
    t = _Tree(model, "vision", counter, values)
    layers = "vision.tower.layers"
    layer0 = {
        "attn_proj": sum(t.per_layer(layers, f"attn.{p}_proj") for p in "qkvo"),
        "attn_core": t.per_layer(layers, "attn.attn_core"),
        "mlp": t.per_layer(layers, "feed_forward"),
        "total": t.per_layer(layers),
    }
    out = _layout_columns(t.result) | {f"layer0_{p}": n for p, n in layer0.items()}
    out |= {"layers_min": layer0["total"], "layers_max": layer0["total"], "layers_total": t.node(layers)}
    out |= {
        "patch_conv": t.node("vision.tower.patch_conv"),
        "tower_total": t.node("vision.tower"),
        "proj_merging_layer": t.node("vision.projector.patch_merger.merging_layer"),
        "proj_linear_1": t.node("vision.projector.linear_1"),
        "proj_linear_2": t.node("vision.projector.linear_2"),
        "proj_total": t.node("vision.projector"),
        "vision_total": t.node("vision"),
        "image_features": t.result["image_tokens"],  # the features must fill the image block exactly
    }
    return out


def decoder_columns(model, stage: str, values: dict, counter: str) -> dict[str, int]:
    """Analytic decoder columns (as ``validation.lighton_ocr.measure_decoder`` keys them) for a prefill or
    a decode step."""
    t = _Tree(model, stage, counter, values)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    layers = f"{root}.layers"
    total = t.per_layer(layers)
    out = _layout_columns(t.result) | {
        "L0_total": total,
        "L0_attn": t.per_layer(layers, "attn"),
        "L0_attn_proj": sum(t.per_layer(layers, f"attn.{p}_proj") for p in "qkvo"),
        "L0_qk_norm": t.per_layer(layers, "attn.q_norm") + t.per_layer(layers, "attn.k_norm"),
        "L0_attn_core": t.per_layer(layers, "attn.attn_core"),
        "L0_mlp": t.per_layer(layers, "mlp"),
        "layers_min": total,
        "layers_max": total,
        "lm_head": t.node(f"{root}.lm_head"),
        "total_full_depth": t.node(root),
    }
    out["other_outside_layers_and_lm_head"] = out["total_full_depth"] - t.node(layers) - out["lm_head"]
    return out


def component_names(model, stage: str) -> dict[str, str]:
    """Each column's component as ``symcost eval`` names it (``validation.compare.NAMING``); the
    layout columns keep their names."""
    root = {"vision": "vision.tower", "prefill": "prefill", "decode": "decode.decoder"}[stage]
    layers = f"{root}.layers"
    count = int(model.tree(stage).find(layers.partition(".")[2]).count)

    def per(part: str) -> str:
        return part_name(layers, (part,), count)

    if stage == "vision":
        prefix, mlp, names = (
            "layer0_",
            "feed_forward",
            {
                "layers_total": layers,
                "patch_conv": "vision.tower.patch_conv",
                "tower_total": "vision.tower",
                "proj_merging_layer": "vision.projector.patch_merger.merging_layer",
                "proj_linear_1": "vision.projector.linear_1",
                "proj_linear_2": "vision.projector.linear_2",
                "proj_total": "vision.projector",
                "vision_total": "vision",
                "image_features": "image_tokens (feature rows)",
            },
        )
    else:
        prefix, mlp, names = (
            "L0_",
            "mlp",
            {
                "L0_attn": per("attn"),
                "L0_qk_norm": per("attn.{q_norm,k_norm}"),
                "lm_head": f"{root}.lm_head",
                "total_full_depth": root,
                "other_outside_layers_and_lm_head": f"{root} - layers - lm_head",
            },
        )
    return names | {
        f"{prefix}total": per(""),
        f"{prefix}attn_proj": per("attn.{q,k,v,o}_proj"),
        f"{prefix}attn_core": per("attn.attn_core"),
        f"{prefix}mlp": per(mlp),
        "layers_min": per("") + " (least layer)",
        "layers_max": per("") + " (greatest layer)",
    }


_PARAM_NODES = {
    "vision_tower": "vision.tower",
    "patch_conv": "vision.tower.patch_conv",
    "ln_pre": "vision.tower.ln_pre",
    "projector": "vision.projector",
    "projector_norm": "vision.projector.norm",
    "merging_layer": "vision.projector.patch_merger",
    "linear_1": "vision.projector.linear_1",
    "linear_2": "vision.projector.linear_2",
    "embed_tokens": "decoder.embed_tokens",
    "final_norm": "decoder.final_norm",
    "lm_head": "decoder.lm_head",
    "total": "",
}
_LAYER_PARTS = {
    "vision_layer": ("vision.tower.layers", {"": ("",), "_attn": ("attn",), "_mlp": ("feed_forward",)}),
    "decoder_layer": (
        "decoder.layers",
        {"": ("",), "_attn": ("attn",), "_qk_norm": ("attn.q_norm", "attn.k_norm"), "_mlp": ("mlp",)},
    ),
}
_LAYER_NORMS = {"vision_layer": ("attention_norm", "ffn_norm"), "decoder_layer": ("input_norm", "post_norm")}


def param_columns(model) -> dict[str, int]:
    """Analytic parameters keyed like ``validation.lighton_ocr.param_counts`` (one layer of each
    stack), from ``model.parameters()`` and the weights tree's repeat counts."""
    return {column: value for column, (_, value) in param_table(model).items()}


def param_table(model) -> dict[str, tuple[str, int]]:
    """column -> (its component as ``symcost params`` names it, analytic parameters)."""
    params = model.parameters()
    root = model.weights_tree()

    def at(path):
        return f"{root.name}.{path}" if path else root.name

    out = {key: (at(path), params[at(path)]) for key, path in _PARAM_NODES.items()}
    for key, (layer, parts) in _LAYER_PARTS.items():
        count = root.find(layer).count
        for suffix, paths in (parts | {"_norms": _LAYER_NORMS[key]}).items():
            total = sum(params[at(f"{layer}.{p}" if p else layer)] for p in paths)
            out[key + suffix] = (part_name(at(layer), paths, count), _exact_div(total, count, layer))
    return out


# --------------------------------------------------------------------------- cases


def _check_case(model, stage: str, counter: str):
    """Refuse, in one line naming the parameter, what validate cannot measure."""
    if model.family.name != "lighton-ocr":
        raise SymcostError(f"validate: {__name__} measures lighton-ocr, not {model.family.name}")
    if stage not in STAGES:
        raise SymcostError(f"--stage: validate measures {', '.join(STAGES)}, not {stage!r}")
    if counter not in COUNTERS:
        raise SymcostError(
            f"--counter: validate lighton-ocr measures {', '.join(COUNTERS)} (FlopCounterMode on the "
            f"meta device), not {counter!r}"
        )
    opts = model.options
    if opts["runtime"] != "hf":
        raise SymcostError(
            f"--runtime: validate measures transformers' module, i.e. runtime hf, not {opts['runtime']!r}"
        )
    from .lighton_ocr import ATTENTIONS

    if stage != "vision" and opts["attention"] not in ATTENTIONS:
        raise SymcostError(
            f"--attention: {opts['attention']!r} does not run on CPU or meta; "
            f"validate measures {' or '.join(ATTENTIONS)}"
        )


@functools.lru_cache(maxsize=256)  # checked before any measurement, then used: one run per size
def processor_layout(w: int, h: int) -> tuple:
    """Patches, image tokens and the resized size as transformers' LightOnOcrProcessor makes them: a real
    run on a blank image up to PROCESSOR_MAX_PX pixels, above that its image processor's resize function
    and its own replace_image_token."""
    from . import lighton_ocr as lo

    height, width = lo.resize_function()(h, w)
    if min(height, width) == 0:  # what the processor run raises on
        raise SymcostError(
            f"--image: transformers' processor refuses {w}x{h}: it resizes it to {width}x{height} px"
        )
    merge = lo.load_config()["spatial_merge_size"]
    if min(height, width) < merge * lo.patch_px():  # what the patch merger's unfold raises on
        raise SymcostError(
            f"--image: transformers' model refuses {w}x{h}: resized to {width}x{height} px, a side has fewer "
            f"than {merge} patches to merge"
        )
    if w * h <= PROCESSOR_MAX_PX:
        run = lo.run_processor(w, h, "hf")
        tokens, (height, width) = run["image_tokens"], run["resized"]
    else:
        proc = lo.processor("hf")
        tokens = proc.replace_image_token({"image_sizes": [(height, width)]}, 0).count(proc.image_token)
    patch = lo.patch_px()
    return (("w_patches", width // patch), ("h_patches", height // patch), ("image_tokens", tokens))


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one point of ``stage`` with ``counter`` on transformers' module and compare it with the
    analytic columns. ``check_only``: only refuse what cannot run (SymcostError) and return {}; for an
    image that includes the processor run (under a second), so a size it refuses is refused first."""
    values = model.check_inputs(stage, point)
    _check_case(model, stage, counter)
    layout = dict(processor_layout(values["width"], values["height"])) if stage != "decode" else {}
    if check_only:
        return {}
    from . import lighton_ocr as lo

    opts = model.options
    batch = values.get("batch", 1)
    case = {"family": "lighton-ocr", "stage": stage, "counter": counter, "convention": counter, **values}
    if stage == "decode":
        analytic = decoder_columns(model, stage, values, counter)
        kv_len = values["kv_len"]
        measured = lo.measure_decoder(1, kv_len, counter, "last", batch, opts["attention"])
        case |= {"s_new": 1, "l_past": kv_len, "attention": opts["attention"]}
        case["title"] = (
            f"lighton-ocr decode L={kv_len}, batch {batch}, attention {opts['attention']}, counter {counter}"
        )
    else:
        w, h = values["width"], values["height"]
        grid = f"{layout['w_patches']}x{layout['h_patches']} patches, {layout['image_tokens']} image tokens"
        if stage == "vision":
            analytic = vision_columns(model, values, counter)
            patch = lo.patch_px()
            measured = layout | lo.measure_vision(
                layout["h_patches"] * patch, layout["w_patches"] * patch, counter, batch
            )
            case["title"] = f"lighton-ocr {w}x{h} vision, batch {batch}, counter {counter}: {grid}"
        else:
            analytic = decoder_columns(model, stage, values, counter)
            s_new = values["prompt_tokens"] + layout["image_tokens"]
            measured = (
                layout
                | {"prefill_tokens": s_new}
                | lo.measure_decoder(s_new, 0, counter, opts["logits"], batch, opts["attention"])
            )
            case |= {"s_new": s_new, "l_past": 0, "logits": opts["logits"], "attention": opts["attention"]}
            case["title"] = (
                f"lighton-ocr {w}x{h} prefill S={s_new} (P={values['prompt_tokens']} + {grid}), batch "
                f"{batch}, logits {opts['logits']}, attention {opts['attention']}, counter {counter}"
            )
    names = component_names(model, stage)
    case["rows"] = compare(analytic, measured, lambda column: names.get(column, column))
    case["naming"] = NAMING
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case


def validate_params(model, measured: dict[str, int] | None = None) -> dict:
    """The analytic parameters against ``param_counts`` of transformers' module built on meta."""
    if measured is None:
        from . import lighton_ocr as lo

        measured = lo.param_counts(lo.meta_model())
    table = param_table(model)
    rows = compare(param_columns(model), measured, lambda column: table[column][0])
    return {
        "title": "lighton-ocr parameters (one layer of each stack)",
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
        "measured": measured,
    }


# --------------------------------------------------------------------------- the layout, exhaustively


def grid_mismatches(widths, heights, processes=None, show: int = 10) -> dict:
    """The family's resize rule for both runtimes against the image processor's own function on every
    pair of ``widths`` x ``heights``.

    ``hf``: the processor's ``get_resize_output_image_size`` (patch 14, as LightOnOcrProcessor calls it),
    once per pair. ``vllm``: PixtralProcessor calls the same function with patch 28; the function's
    scale-down does not read the patch, so its output there is its own rounding (``_num_image_tokens``)
    applied to the 14-rounded sides, taken per distinct side. Vanished sides (0 px) compare as 0 on both
    sides; that the processor refuses them is checked on examples. Returns pairs, mismatches per
    runtime, the first ``show`` of them as ``(runtime, W, H, analytic (W', H'), processor (W', H'))``,
    and the seconds each side took."""
    import time

    import numpy as np
    from transformers.models.pixtral.image_processing_pil_pixtral import _num_image_tokens

    from derivations.lighton_ocr import resize_config
    from derivations.lighton_ocr.layout import patch_sides

    from .lighton_ocr import resize_grid

    widths, heights = np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64)
    start = time.perf_counter()
    ref_h, ref_w = resize_grid(widths, heights, processes)
    unit = resize_config("vllm").unit
    sides = np.unique(np.concatenate([ref_h.ravel(), ref_w.ravel()]))
    table = np.zeros(int(sides.max()) + 1, dtype=np.int64)
    table[sides] = [_num_image_tokens((int(s), int(s)), (unit, unit))[0] * unit for s in sides]
    ref = {"hf": (ref_w, ref_h), "vllm": (table[ref_w], table[ref_h])}
    processor_s = time.perf_counter() - start
    out: dict = {"pairs": int(ref_w.size), "first": [], "processor_s": processor_s}
    start = time.perf_counter()
    for runtime in ("hf", "vllm"):
        cfg = resize_config(runtime)
        n_bad, bad = 0, []
        for i in range(0, len(widths), 256):  # blocks of widths: bounded temporaries
            w_p, h_p = patch_sides(cfg, widths[i : i + 256, None], heights[None, :])
            pw, ph = (r[i : i + 256] for r in ref[runtime])
            wrong = (w_p * cfg.patch != pw) | (h_p * cfg.patch != ph)
            n_bad += int(np.count_nonzero(wrong))
            bad += [(i + a, b) for a, b in np.argwhere(wrong)[: show - len(bad)]]
        out[f"mismatches_{runtime}"] = n_bad
        for i, j in bad:
            w_p, h_p = (int(x[0]) for x in patch_sides(cfg, widths[i : i + 1], heights[j : j + 1]))
            analytic = (w_p * cfg.patch, h_p * cfg.patch)
            processor = (int(ref[runtime][0][i, j]), int(ref[runtime][1][i, j]))
            out["first"].append((runtime, int(widths[i]), int(heights[j]), analytic, processor))
    out["analytic_s"] = time.perf_counter() - start
    out["refused"] = int(np.count_nonzero((ref_w == 0) | (ref_h == 0)))
    return out


def main(argv=None) -> int:
    """``python -m validation.lighton_ocr_compare params | grid [N]``: the parameter table, or the resize
    rule against the processor on every (W, H) in [1, N]^2 (default 4096)."""
    import symcost
    from symcost.report import table

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["params"]:
        case = validate_params(symcost.load("lighton-ocr"))
        print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
        print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "ok"]))
        return 0 if case["ok"] else 1
    if argv[:1] == ["grid"]:
        n = int(argv[1]) if len(argv) > 1 else 4096
        sides = range(1, n + 1)
        got = grid_mismatches(sides, sides, processes=os.cpu_count())
        print(
            f"resize rule on [1, {n}]^2: {got['pairs']} pairs, mismatches hf {got['mismatches_hf']}, vllm "
            f"{got['mismatches_vllm']} {got['first']}; {got['refused']} refused (a 0-px side); symcost "
            f"{got['analytic_s']:.1f} s, processor {got['processor_s']:.1f} s on {os.cpu_count()} processes"
        )
        return 0 if got["mismatches_hf"] == got["mismatches_vllm"] == 0 else 1
    print("usage: python -m validation.lighton_ocr_compare params | grid [N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
