"""Qwen2.5-VL, analytic vs measured per component: the engine of ``symcost validate qwen2.5-vl``.

The analytic side is read from the family's cost trees (``symcost.load("qwen2.5-vl", ...)``), keyed
like the columns ``validation.qwen2_5_vl`` measures on transformers' ``Qwen2_5_VLForConditionalGeneration``:

    vision   patch embed; windowed and full-attention blocks (total, linear, SDPA); merger; the total;
             the feature rows per image
    decoder  one layer by part (attention projections, SDPA, MLP), lm_head, whatever lies outside
             layers and lm_head, the total

The measured side takes the token grid and the image tokens from a ``Qwen2_5_VLProcessor`` run on a
blank image of the size (its own ``smart_resize`` without an image above PROCESSOR_MAX_PX), runs the
module with that grid and that many positions, and counts; the analytic side takes them from the
family's layout rule. With ``render=olmocr`` the processor gets the page as the family's render rule
renders it (pdftoppm itself is checked in ``tests/test_qwen2_5_vl.py`` where it is installed).

Nothing imports torch until a case is measured (``check_only`` never does).
"""

from __future__ import annotations

import functools
import os
import sys
import time

from symcost import SymcostError

from .compare import STAGES, compare
from .ocr2_compare import _exact_div, _Tree

__all__ = [
    "PROCESSOR_MAX_PX",
    "vision_columns",
    "decoder_columns",
    "param_columns",
    "validate_case",
    "validate_params",
    "grid_mismatches",
]

# the processor runs on a blank image up to this size; above it, its own smart_resize without an image
PROCESSOR_MAX_PX = 4096 * 4096
_LINEAR = ("linear", "conv2d")


def vision_columns(model, values: dict, counter: str) -> dict[str, int]:
    """Analytic vision columns (as ``validation.qwen2_5_vl.measure_vision`` keys them) for one point."""
    t = _Tree(model, "vision", counter, values)
    out = {"patch_embed": t.node("vision.patch_embed")}
    for blocks in ("window_blocks", "full_blocks"):
        node = f"vision.{blocks}"
        out |= {
            f"{blocks}_total": t.node(node),
            f"{blocks}_linear": t.kind(node, "linear"),
            f"{blocks}_attn_core": t.kind(node, "sdpa"),
        }
    out |= {
        "merger": t.node("vision.merger"),
        "vision_total": t.node("vision"),
        "image_features": t.result["image_tokens"],  # the features must fill the image block exactly
    }
    return out


def decoder_columns(model, stage: str, values: dict, counter: str) -> dict[str, int]:
    """Analytic decoder columns (as ``validation.qwen2_5_vl.measure_decoder`` keys them)."""
    t = _Tree(model, stage, counter, values)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    layers = f"{root}.layers"
    out = {
        "layer_total": t.per_layer(layers),
        "layer_attn": t.per_layer(layers, "attn"),
        "layer_attn_proj": sum(t.per_layer(layers, f"attn.{p}_proj") for p in "qkvo"),
        "layer_attn_core": t.per_layer(layers, "attn.attn_core"),
        "layer_mlp": t.per_layer(layers, "mlp"),
    }
    out["layers_min"] = out["layers_max"] = out["layer_total"]  # one repeated node: all alike
    out["lm_head"] = t.node(f"{root}.lm_head")
    out["total_full_depth"] = t.node(root)
    out["other_outside_layers_and_lm_head"] = out["total_full_depth"] - t.node(layers) - out["lm_head"]
    if stage == "prefill":
        out["prefill_tokens"] = t.result["prefill_tokens"]
    return out


def param_columns(model) -> dict[str, int]:
    """Analytic parameters keyed like ``validation.qwen2_5_vl.param_counts``."""
    params = model.parameters()
    root = model.weights_tree()

    def at(path):
        return params[f"{root.name}.{path}" if path else root.name]

    window = root.find("vision.window_blocks")
    layer = root.find("decoder.layers")
    return {
        "vision": at("vision"),
        "patch_embed": at("vision.patch_embed"),
        "vision_block": _exact_div(at("vision.window_blocks"), window.count, "vision.window_blocks"),
        "merger": at("vision.merger"),
        "embed_tokens": at("decoder.embed_tokens"),
        "decoder_layer": _exact_div(at("decoder.layers"), layer.count, "decoder.layers"),
        "decoder_layer_attn": _exact_div(at("decoder.layers.attn"), layer.count, "attn"),
        "decoder_layer_mlp": _exact_div(at("decoder.layers.mlp"), layer.count, "mlp"),
        "decoder_layer_norms": _exact_div(
            at("decoder.layers.input_norm") + at("decoder.layers.post_norm"), layer.count, "norms"
        ),
        "final_norm": at("decoder.final_norm"),
        "lm_head": at("decoder.lm_head"),
        "total": at(""),
    }


# --------------------------------------------------------------------------- cases


def _check_case(model, stage: str, counter: str):
    """Refuse, in one line naming the parameter, what validate cannot measure."""
    from .qwen2_5_vl import ATTENTIONS, MEASURED_COUNTERS

    if model.family.name != "qwen2.5-vl":
        raise SymcostError(f"validate: {__name__} measures qwen2.5-vl, not {model.family.name}")
    if stage not in STAGES:
        raise SymcostError(f"--stage: validate measures {', '.join(STAGES)}, not {stage!r}")
    if counter not in MEASURED_COUNTERS:
        raise SymcostError(f"--counter: validate qwen2.5-vl measures with {', '.join(MEASURED_COUNTERS)}")
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


def _rendered(model, w: int, h: int) -> tuple[int, int]:
    """The image the processor receives for the point: the page rendered by the family's rule."""
    from derivations.qwen2_5_vl import PRESETS, RENDERERS
    from derivations.qwen2_5_vl.resize import token_grid

    render = RENDERERS[model.options["render"]]
    if render is None:
        return w, h
    *_, (w_px, h_px) = token_grid(PRESETS[model.options["preset"]].resize, render, w, h)
    return int(w_px), int(h_px)


@functools.lru_cache(maxsize=256)  # checked before any measurement, then used: one run per size
def _processor_layout(preset: str, w: int, h: int) -> tuple:
    """(w_tokens, h_tokens, image_tokens) as the processor gives them for a W x H px image."""
    from . import qwen2_5_vl as q

    try:
        if w * h > PROCESSOR_MAX_PX:
            h_px, w_px = q.resize(preset)(h, w)
            factor = q.image_processor(preset).patch_size * q.image_processor(preset).merge_size
            w_tok, h_tok = w_px // factor, h_px // factor
            return (("w_tokens", w_tok), ("h_tokens", h_tok), ("image_tokens", w_tok * h_tok))
        run = q.run_processor(preset, w, h)
    except ValueError as e:  # smart_resize's refusal
        raise SymcostError(
            f"--image: transformers' processor refuses {w}x{h}: {str(e).splitlines()[0][:120]}"
        ) from None
    merge = q.image_processor(preset).merge_size
    _, gh, gw = run["grid_thw"]
    return (("w_tokens", gw // merge), ("h_tokens", gh // merge), ("image_tokens", run["image_tokens"]))


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one point of ``stage`` with ``counter`` on transformers' module and compare it with the
    analytic columns. ``check_only``: only refuse what cannot run (SymcostError) and return {}; for an
    image that includes the processor run, so a size it refuses is refused first."""
    values = model.check_inputs(stage, point)
    _check_case(model, stage, counter)
    opts = model.options
    layout = {}
    if stage != "decode":
        layout = dict(_processor_layout(opts["preset"], *_rendered(model, values["width"], values["height"])))
    if check_only:
        return {}
    from . import qwen2_5_vl as q

    batch = values.get("batch", 1)
    meta = q.meta_model(opts["preset"])
    case = {"family": "qwen2.5-vl", "preset": opts["preset"], "stage": stage, "counter": counter}
    case |= {"convention": counter, "render": opts["render"], **values}
    if stage == "decode":
        analytic = decoder_columns(model, stage, values, counter)
        kv_len = values["kv_len"]
        measured = q.measure_decoder(meta, 1, kv_len, counter, "last", batch, opts["attention"])
        case |= {"s_new": 1, "l_past": kv_len, "attention": opts["attention"]}
        case["title"] = (
            f"qwen2.5-vl {opts['preset']} decode L={kv_len}, batch {batch}, attention "
            f"{opts['attention']}, counter {counter}"
        )
    else:
        w, h = values["width"], values["height"]
        grid = f"{layout['w_tokens']}x{layout['h_tokens']} tokens ({layout['image_tokens']} image tokens)"
        if stage == "vision":
            analytic = vision_columns(model, values, counter)
            measured = q.measure_vision(meta, layout["w_tokens"], layout["h_tokens"], counter, batch)
            case["title"] = (
                f"qwen2.5-vl {opts['preset']} {w}x{h} vision, batch {batch}, counter {counter}: {grid}"
            )
        else:
            analytic = decoder_columns(model, stage, values, counter)
            s_new = values["prompt_tokens"] + layout["image_tokens"]
            measured = {"prefill_tokens": s_new} | q.measure_decoder(
                meta, s_new, 0, counter, opts["logits"], batch, opts["attention"]
            )
            case |= {"s_new": s_new, "l_past": 0, "logits": opts["logits"], "attention": opts["attention"]}
            case["title"] = (
                f"qwen2.5-vl {opts['preset']} {w}x{h} prefill S={s_new} (P={values['prompt_tokens']} + "
                f"{grid}), batch {batch}, logits {opts['logits']}, attention {opts['attention']}, "
                f"counter {counter}"
            )
        measured = {k: layout[k] for k in ("w_tokens", "h_tokens")} | measured
        r = model.evaluate(w, h, stage="vision")
        analytic |= {k: r[k] for k in ("w_tokens", "h_tokens")}
    case["rows"] = compare(analytic, measured)
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case


def validate_params(model, measured: dict[str, int] | None = None) -> dict:
    """The analytic parameters against ``param_counts`` of transformers' module built on meta."""
    if measured is None:
        from . import qwen2_5_vl as q

        measured = q.param_counts(q.meta_model(model.options["preset"]))
    rows = compare(param_columns(model), measured)
    return {
        "title": f"qwen2.5-vl {model.options['preset']} parameters (one vision block, one decoder layer)",
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
        "measured": measured,
    }


# --------------------------------------------------------------------------- the exhaustive grid


def _processor_rows(args):
    """(w_tokens, h_tokens) int16 rows for a block of widths by the processor's smart_resize (-1 where
    it refuses); runs in a worker process."""
    import numpy as np

    from .qwen2_5_vl import image_processor, resize

    preset, widths, heights = args
    fn = resize(preset)
    f = image_processor(preset).patch_size * image_processor(preset).merge_size
    w_out = np.empty((len(widths), len(heights)), dtype=np.int16)
    h_out = np.empty_like(w_out)
    for i, w in enumerate(widths):
        row = []
        for h in heights:
            try:
                hh, ww = fn(h, w)
                row.append((ww // f, hh // f))
            except ValueError:
                row.append((-1, -1))
        w_out[i], h_out[i] = np.array(row, dtype=np.int16).T
    return w_out, h_out


def processor_grid(preset: str, widths, heights, processes=None):
    """``(w_tokens, h_tokens)`` int16 arrays [len(widths), len(heights)] from the processor's own
    ``smart_resize`` (-1 where it refuses), split over worker processes by width."""
    import multiprocessing

    import numpy as np

    from .qwen2_5_vl import resize

    resize(preset)  # import transformers here, once: forked workers inherit it
    widths, heights = [int(w) for w in widths], [int(h) for h in heights]
    processes = processes or os.cpu_count() or 1
    blocks = max(1, min(len(widths), 8 * processes))
    chunks = [(preset, widths[k::blocks], heights) for k in range(blocks)]
    if processes == 1:
        parts = [_processor_rows(c) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_processor_rows, chunks)
    w_tok = np.empty((len(widths), len(heights)), dtype=np.int16)
    h_tok = np.empty_like(w_tok)
    for k, (a, b) in enumerate(parts):
        w_tok[k::blocks], h_tok[k::blocks] = a, b
    return w_tok, h_tok


def grid_mismatches(preset: str, widths, heights, processes=None, show: int = 10) -> dict:
    """The family's layout rule (``derivations.qwen2_5_vl.resize.token_grid``: the same function the
    layout runs, with its refusal mask) against ``processor_grid`` on every pair of ``widths`` x
    ``heights``: pair count, refusals, mismatches (first ``show``), seconds each side took."""
    import numpy as np

    from derivations.qwen2_5_vl import PRESETS
    from derivations.qwen2_5_vl.resize import token_grid

    widths, heights = np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64)
    start = time.perf_counter()
    w_tok, h_tok, refused, _ = token_grid(PRESETS[preset].resize, None, widths[:, None], heights[None, :])
    w_tok = np.where(refused, -1, w_tok).astype(np.int16)
    h_tok = np.where(refused, -1, h_tok).astype(np.int16)
    analytic_s = time.perf_counter() - start
    start = time.perf_counter()
    ref_w, ref_h = processor_grid(preset, widths, heights, processes)
    processor_s = time.perf_counter() - start
    bad = np.argwhere((w_tok != ref_w) | (h_tok != ref_h))
    return {
        "pairs": int(w_tok.size),
        "refused": int((ref_w < 0).sum()),
        "mismatches": len(bad),
        "first": [
            (
                int(widths[i]),
                int(heights[j]),
                (int(w_tok[i, j]), int(h_tok[i, j])),
                (int(ref_w[i, j]), int(ref_h[i, j])),
            )
            for i, j in bad[:show]
        ],
        "analytic_s": analytic_s,
        "processor_s": processor_s,
    }


def main(argv=None) -> int:
    """``python -m validation.qwen2_5_vl_compare params [PRESET] | grid [N]``: the parameter table, or the
    layout against the processor's smart_resize on every (W, H) in [1, N]^2 (default 4096)."""
    import symcost
    from symcost.report import table

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["params"]:
        model = symcost.load("qwen2.5-vl", preset=argv[1] if len(argv) > 1 else "olmocr-2-7b")
        case = validate_params(model)
        print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
        print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "ok"]))
        return 0 if case["ok"] else 1
    if argv[:1] == ["grid"]:
        n = int(argv[1]) if len(argv) > 1 else 4096
        sides = range(1, n + 1)
        got = grid_mismatches("olmocr-2-7b", sides, sides, processes=os.cpu_count())
        print(
            f"smart_resize on [1, {n}]^2: {got['pairs']} pairs ({got['refused']} refused), "
            f"{got['mismatches']} mismatches {got['first']}; symcost {got['analytic_s']:.1f} s, "
            f"processor {got['processor_s']:.1f} s on {os.cpu_count()} processes"
        )
        return 0 if got["mismatches"] == 0 else 1
    print("usage: python -m validation.qwen2_5_vl_compare params [PRESET] | grid [N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
