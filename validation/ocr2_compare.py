"""DeepSeek-OCR-2, analytic vs measured per component: the engine of ``symcost validate deepseek-ocr2``.

The analytic side is read from the family's own cost trees (``symcost.load("deepseek-ocr2", ...)``), keyed
like the columns ``validation.ocr2`` measures on transformers' ``DeepseekOcr2ForConditionalGeneration``:

    vision   per view (global, crops): SAM total, its parts (patch_embed, windowed / global blocks, neck,
             net2, net3) and op kinds (linear, rel-pos einsum, SDPA, LayerNorm); encoder total, linear,
             SDPA, RoPE table; projector; the vision total; tiles, image tokens, feature rows per image
    decoder  dense layer 0 and one MoE layer by part (attention projections, RoPE, SDPA, MLP, router,
             routed and shared experts), lm_head, whatever lies outside layers and lm_head, the total

Counters and conventions share names (``torch``, ``torch-cpu``, ``fvcore``, ``fvcore-default``): the
counter's number is the analytic cost under the convention of the same name.

The measured side takes the tile count and the image tokens from a ``DeepseekOcr2Processor`` run on a
blank image of the size (its own functions without an image above PROCESSOR_MAX_PX), runs the module with
that many tiles and that many positions, and counts; the analytic side takes them from the family's
layout rule. So a prefill row compares the model's S against the processor's S too.

Nothing imports torch until a case is measured (``check_only`` never does).
"""

from __future__ import annotations

import functools
import os
import sys

from symcost import SymcostError

from .compare import NAMING, STAGES, compare, namer, part_name
from .measure import COUNTERS

__all__ = [
    "COUNTERS",
    "STAGES",
    "FVCORE_MAX_BYTES",
    "PROCESSOR_MAX_PX",
    "vision_columns",
    "decoder_columns",
    "param_columns",
    "param_table",
    "validate_case",
    "validate_params",
]

# fvcore traces real CPU tensors: refuse cases whose analytic memory (weights + activation peak)
# is over this. A 1024x1024 image (4 tiles) is 1.5 GB by that estimate and peaked at 4.5 GB RSS
# with 6 tiles (interpreter, libraries and tracing included); the decoder alone is 5.9 GB.
FVCORE_MAX_BYTES = 3 * 10**9
# the processor runs on a blank image up to this size (4096^2 px: 50 MB, ~1 s); above it, its own
# functions without an image (get_optimal_tiled_canvas behind the shortcut, replace_image_token)
PROCESSOR_MAX_PX = 4096 * 4096
_OUT_OF_THE_BOX = ("torch-cpu", "fvcore-default")
_SAM_PARTS = ("patch_embed", "win_blocks", "glob_blocks", "neck", "net2", "net3")
_SAM_KINDS = {"linear": "linear", "relpos": "einsum", "attn_core": "sdpa", "norms": "layer_norm"}


# --------------------------------------------------------------------------- analytic


class _Tree:
    """One evaluated stage: FLOPs per tree node under a convention, and the tree's op kinds and
    repeat counts (read from the model's own tree, whose paths the evaluation shares)."""

    def __init__(self, model, stage: str, convention: str, values: dict):
        self.result = model.evaluate(stage=stage, convention=convention, **values)
        self.flops = self.result["components"]
        self.kinds: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._walk(model.tree(stage), "")

    def _walk(self, node, prefix):
        path = f"{prefix}.{node.name}" if prefix else node.name
        self.counts[path] = node.count
        if node.kind is not None:
            self.kinds[path] = node.kind
        for child in node.children:
            self._walk(child, path)

    def node(self, path: str) -> int:
        return self.flops[path]

    def kind(self, under: str, kind: str) -> int:
        """FLOPs of the ops of one kind under a node."""
        return sum(
            n for p, n in self.flops.items() if self.kinds.get(p) == kind and p.startswith(under + ".")
        )

    def per_layer(self, layer: str, part: str = "") -> int:
        """FLOPs of one repetition of a repeated layer node (or of one of its parts)."""
        path = f"{layer}.{part}" if part else layer
        return _exact_div(self.node(path), self.counts[layer], path)


def _exact_div(value: int, count, path: str) -> int:
    count = int(count)
    if value % count:
        raise AssertionError(f"{path}: {value} is not {count} equal repetitions")
    return value // count


def _check_counter(counter: str):
    if counter not in COUNTERS:
        raise SymcostError(f"--counter: {counter!r} is not one of {', '.join(COUNTERS)}")


def vision_columns(model, values: dict, counter: str) -> dict[str, int]:
    """Analytic vision columns (as ``validation.ocr2.measure_vision`` keys them) for one point."""
    _check_counter(counter)
    t = _Tree(model, "vision", counter, values)
    r = t.result
    out = {k: r[k] for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens") if k in r}
    views = ["global"] + (["crops"] if r["n_crops"] else [])
    for view in views:
        base = f"vision.{view}"
        sam, enc = f"{base}.sam", f"{base}.encoder"
        cols = {"sam_total": t.node(sam)}
        cols |= {f"sam_{p}": t.node(f"{sam}.{p}") for p in _SAM_PARTS}
        cols |= {f"sam_{c}": t.kind(sam, k) for c, k in _SAM_KINDS.items()}
        cols |= {
            "encoder_total": t.node(enc),
            "encoder_linear": t.kind(enc, "linear"),
            "encoder_attn_core": t.kind(enc, "sdpa"),
            "encoder_rope": t.node(f"{enc}.mask_rope"),  # the mask and cos/sin, once per call
            "proj_total": t.node(f"{base}.projector"),
        }
        out |= {f"{view}_{c}": n for c, n in cols.items()}
    out["vision_total"] = t.node("vision")
    out["image_features"] = r["image_tokens"]  # the features must fill the image block exactly
    return out


def decoder_columns(model, stage: str, values: dict, counter: str) -> dict[str, int]:
    """Analytic decoder columns (as ``validation.ocr2.measure_decoder`` keys them) for a prefill or a
    decode step: per layer kind, lm_head, the rest, the total."""
    _check_counter(counter)
    t = _Tree(model, stage, counter, values)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    out = {
        k: t.result[k]
        for k in ("w_tiles", "h_tiles", "n_crops", "image_tokens", "prefill_tokens")
        if k in t.result
    }
    layers = 0
    for prefix, layer in (("dense_L0", "layer0"), ("moe_L1", "moe_layers")):
        node = f"{root}.{layer}"
        layers += t.node(node)
        out |= {
            f"{prefix}_total": t.per_layer(node),
            f"{prefix}_attn": t.per_layer(node, "attn"),
            f"{prefix}_attn_proj": sum(t.per_layer(node, f"attn.{p}_proj") for p in "qkvo"),
            f"{prefix}_rope": t.per_layer(node, "attn.rope"),
            f"{prefix}_attn_core": t.per_layer(node, "attn.attn_core"),
            f"{prefix}_mlp": t.per_layer(node, "mlp"),
        }
    for col, part in (("moe_gate", "gate"), ("moe_shared", "shared"), ("moe_routed", "routed")):
        out[f"moe_L1_{col}"] = t.per_layer(f"{root}.moe_layers", f"mlp.{part}")
    out["moe_L1_moe_other"] = out["moe_L1_mlp"] - sum(
        out[f"moe_L1_{c}"] for c in ("moe_gate", "moe_shared", "moe_routed")
    )
    out["moe_layers_min"] = out["moe_layers_max"] = out["moe_L1_total"]  # one repeated node: all alike
    out["lm_head"] = t.node(f"{root}.lm_head")
    out["total_full_depth"] = t.node(root)
    out["other_outside_layers_and_lm_head"] = out["total_full_depth"] - layers - out["lm_head"]
    return out


_PARAM_NODES = {
    "sam": "vision.sam",
    "encoder": "vision.encoder",
    "encoder_layers": "vision.encoder.layers",
    "encoder_final_norm": "vision.encoder.final_norm",
    "encoder_query_1024": "vision.encoder.query_1024_resolution",
    "encoder_query_768": "vision.encoder.query_768_resolution",
    "projector": "vision.projector",
    "view_separator": "vision.view_separator",
    "embed_tokens": "decoder.embed_tokens",
    "final_norm": "decoder.final_norm",
    "lm_head": "decoder.lm_head",
    "total": "",
} | {f"sam_{p}": f"vision.sam.{p}" for p in _SAM_PARTS}


def param_columns(model) -> dict[str, int]:
    """Analytic parameters keyed like ``validation.ocr2.param_counts`` (one decoder layer of each kind),
    from ``model.parameters()`` and the weights tree's repeat counts."""
    return {column: value for column, (_, value) in param_table(model).items()}


def param_table(model) -> dict[str, tuple[str, int]]:
    """column -> (its component as ``symcost params`` names it, analytic parameters)."""
    params = model.parameters()
    root = model.weights_tree()

    def at(path):
        return f"{root.name}.{path}" if path else root.name

    out = {key: (at(path), params[at(path)]) for key, path in _PARAM_NODES.items()}
    layers = {"dense": "decoder.layer0", "moe": "decoder.moe_layers"}
    parts = {
        "dense": {"_mlp": ("mlp",)},
        "moe": {"_router": ("mlp.gate",), "_routed": ("mlp.routed",), "_shared": ("mlp.shared",)},
    }
    for kind, layer in layers.items():
        count = root.find(layer).count
        spec = {"": ("",), "_attn": ("attn",), "_norms": ("input_norm", "post_norm")} | parts[kind]
        for suffix, paths in spec.items():
            total = sum(params[at(f"{layer}.{p}" if p else layer)] for p in paths)
            out[f"decoder_layer_{kind}{suffix}"] = (
                part_name(at(layer), paths, count),
                _exact_div(total, count, layer),
            )
    return out


# --------------------------------------------------------------------------- cases


def check_transformers_case(model, family: str, stage: str, counter: str, attentions) -> None:
    """Refuse, in one line naming the parameter, what a validate measuring a transformers module
    cannot: another family, a stage it does not measure, an unknown counter, runtime vllm, an attention
    that does not run on CPU or meta (decoder stages), fvcore on a decode step."""
    if model.family.name != family:
        raise SymcostError(f"validate: this measures {family}, not {model.family.name}")
    if stage not in STAGES:
        raise SymcostError(f"--stage: validate measures {', '.join(STAGES)}, not {stage!r}")
    _check_counter(counter)
    opts = model.options
    if opts["runtime"] != "hf":
        raise SymcostError(
            f"--runtime: validate measures transformers' module, i.e. runtime hf, not {opts['runtime']!r}"
        )
    if stage != "vision" and opts["attention"] not in attentions:
        raise SymcostError(
            f"--attention: {opts['attention']!r} does not run on CPU or meta; "
            f"validate measures {' or '.join(attentions)}"
        )
    if stage == "decode" and counter.startswith("fvcore"):
        raise SymcostError(
            "--counter: fvcore cannot trace a decode step (it needs a KV cache of real tensors); use torch"
        )


def check_fvcore_memory(model, stage: str, counter: str, values: dict, dtype: str = "bf16") -> None:
    """Refuse an fvcore case (real CPU tensors in ``dtype``) whose analytic memory passes FVCORE_MAX_BYTES."""
    if counter.startswith("torch"):
        return  # meta tensors: shapes only
    need = model.evaluate(stage=stage, dtype=dtype, **values)["memory_bytes"]
    if need > FVCORE_MAX_BYTES:
        raise SymcostError(
            f"--counter: {counter} runs on real CPU tensors and this {stage} case needs "
            f"{need / 1e9:.1f} GB by the model's estimate (limit "
            f"{FVCORE_MAX_BYTES / 1e9:g} GB); use torch (meta device)"
        )


def _check_case(model, stage: str, counter: str, values: dict):
    """Refuse, in one line naming the parameter, what validate cannot measure."""
    from .ocr2 import ATTENTIONS

    check_transformers_case(model, "deepseek-ocr2", stage, counter, ATTENTIONS)
    if stage != "vision" and counter in _OUT_OF_THE_BOX:
        raise SymcostError(
            f"--counter: {counter} counts the routed experts' aten._grouped_mm as 0, "
            "which its convention does not model; validate prefill and decode with "
            "torch or fvcore"
        )
    check_fvcore_memory(model, stage, counter, values)


def _measured_layout(model, values: dict) -> dict[str, int]:
    """Tiles and image tokens as transformers' processor gives them for the point: a real processor run
    on a blank image up to PROCESSOR_MAX_PX pixels, above that its own tile rule and token writer."""
    from . import ocr2

    if model.options["vision_mode"] != "crops":  # nocrop: the global view alone, as the shortcut runs
        return {"n_crops": 0, "image_tokens": ocr2.tokens_for_crops(0)}
    return dict(_processor_layout(values["width"], values["height"]))


@functools.lru_cache(maxsize=256)  # checked before any measurement, then used: one run per size
def _processor_layout(w: int, h: int) -> tuple:
    from . import ocr2

    cols, rows = ocr2.tile_grid(w, h)
    if w * h > PROCESSOR_MAX_PX:
        n_crops = 0 if (cols, rows) == (1, 1) else cols * rows
        tokens = ocr2.tokens_for_crops(n_crops)
    else:
        try:
            run = ocr2.run_processor(w, h)
        except ValueError as e:  # e.g. a global view resized to 0 px (long side >= 2048 x short side)
            raise SymcostError(
                f"--image: transformers' processor refuses {w}x{h}: {str(e).splitlines()[0][:120]}"
            ) from None
        n_crops, tokens = run["num_local_patches"], run["image_tokens"]
    return (("w_tiles", cols), ("h_tiles", rows), ("n_crops", n_crops), ("image_tokens", tokens))


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one point of ``stage`` with ``counter`` on transformers' module and compare it with the
    analytic columns. ``check_only``: only refuse what cannot run (SymcostError) and return {}; for an
    image that includes the processor run (well under a second), so a size it refuses is refused first."""
    values = model.check_inputs(stage, point)
    _check_case(model, stage, counter, values)
    layout = _measured_layout(model, values) if stage != "decode" else {}
    if check_only:
        return {}
    from . import ocr2

    opts = model.options
    batch = values.get("batch", 1)
    case = {
        "family": "deepseek-ocr2",
        "stage": stage,
        "counter": counter,
        "convention": counter,
        "vision_mode": opts["vision_mode"],
        **values,
    }
    if stage == "decode":
        analytic = decoder_columns(model, stage, values, counter)
        kv_len = values["kv_len"]
        measured = ocr2.measure_decoder(
            1, kv_len, counter, logits="last", batch=batch, attention=opts["attention"]
        )
        case |= {"s_new": 1, "l_past": kv_len, "attention": opts["attention"]}
        case["title"] = (
            f"deepseek-ocr2 decode L={kv_len}, batch {batch}, attention {opts['attention']}, "
            f"counter {counter}"
        )
    else:
        w, h = values["width"], values["height"]
        tiles = f"tiles {layout.get('w_tiles', 1)}x{layout.get('h_tiles', 1)} ({layout['n_crops']} crops)"
        if stage == "vision":
            analytic = vision_columns(model, values, counter)
            measured = layout | ocr2.measure_vision(layout["n_crops"], counter, batch=batch)
            case["title"] = (
                f"deepseek-ocr2 {opts['vision_mode']} {w}x{h} vision, batch {batch}, "
                f"counter {counter}: {tiles}, {layout['image_tokens']} image tokens"
            )
        else:
            analytic = decoder_columns(model, stage, values, counter)
            s_new = values["prompt_tokens"] + layout["image_tokens"]
            measured = (
                layout
                | {"prefill_tokens": s_new}
                | ocr2.measure_decoder(
                    s_new, 0, counter, logits=opts["logits"], batch=batch, attention=opts["attention"]
                )
            )
            case |= {"s_new": s_new, "l_past": 0, "logits": opts["logits"], "attention": opts["attention"]}
            case["title"] = (
                f"deepseek-ocr2 {opts['vision_mode']} {w}x{h} prefill S={s_new} "
                f"(P={values['prompt_tokens']} + {layout['image_tokens']} image tokens, "
                f"{tiles}), batch {batch}, logits {opts['logits']}, attention "
                f"{opts['attention']}, counter {counter}"
            )
        case |= {k: layout[k] for k in ("w_tiles", "h_tiles", "n_crops") if k in layout}
    case["rows"] = compare(analytic, measured, namer(model, stage, counter))
    case["naming"] = NAMING
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case


def validate_params(model, measured: dict[str, int] | None = None) -> dict:
    """The analytic parameters against ``param_counts`` of transformers' module built on meta."""
    if measured is None:
        from . import ocr2

        measured = ocr2.param_counts(ocr2.meta_model())
    table = param_table(model)
    rows = compare(param_columns(model), measured, lambda column: table[column][0])
    return {
        "title": "deepseek-ocr2 parameters (decoder layers: one of each kind)",
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
        "measured": measured,
    }


def main(argv=None) -> int:
    """``python -m validation.ocr2_compare params|grid [N]``: the parameter table, or the tile grid
    against the processor on every (W, H) in [1, N]^2 (default 4096)."""
    import symcost
    from symcost.report import table

    argv = sys.argv[1:] if argv is None else argv
    model = symcost.load("deepseek-ocr2")
    if argv[:1] == ["params"]:
        case = validate_params(model)
        print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
        print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "ok"]))
        return 0 if case["ok"] else 1
    if argv[:1] == ["grid"]:
        from .ocr2_grid import grid_mismatches

        n = int(argv[1]) if len(argv) > 1 else 4096
        sides = range(1, n + 1)
        got = grid_mismatches(model, sides, sides, processes=os.cpu_count())
        print(
            f"tile grid on [1, {n}]^2: {got['pairs']} pairs, {got['mismatches']} mismatches "
            f"{got['first']}; symcost {got['analytic_s']:.1f} s, processor {got['processor_s']:.1f} s "
            f"on {os.cpu_count()} processes"
        )
        return 0 if got["mismatches"] == 0 else 1
    print("usage: python -m validation.ocr2_compare params | grid [N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
