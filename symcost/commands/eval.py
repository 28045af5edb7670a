"""symcost eval FAMILY: every metric of a stage for images and inputs, as a table or JSON.

Family options and ``--hardware`` are repeatable: every combination gets its rows, and the
header shows only what all rows share. Images with the same layout outcome (e.g. tile grid)
cost the same, so the numeric model runs once per outcome and configuration and the other
images copy its numbers: exact, and fast for thousands of images.
"""

from __future__ import annotations

import itertools
import json

from ..args import (
    add_convention,
    add_hardware,
    add_inputs,
    add_model_options,
    add_precision,
    add_stage,
    check_stage_reads,
    given_inputs,
    hardware_settings,
    load_model,
    parse_image,
)
from ..errors import SymcostError

HELP = "evaluate every metric for images and inputs"


def add_arguments(p, family):
    add_model_options(p, family, repeatable=True)
    add_stage(p, family)
    add_inputs(p, family)
    add_convention(p)
    add_precision(p)
    add_hardware(p, repeatable=True)
    p.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of records, one per row: exact integers, per-component "
        "FLOPs, every input, layout output and named quantity (null where the "
        "stage does not use it). Default: a table",
    )


def _combinations(args, family) -> list[dict]:
    lists = {
        o.name: list(dict.fromkeys(getattr(args, o.name))) for o in family.options if getattr(args, o.name)
    }
    return [dict(zip(lists, values)) for values in itertools.product(*lists.values())] or [{}]


def records(args, family) -> tuple[list[dict], list]:
    """One record per (options, hardware, image); every input checked before any work."""
    from ..hardware import get_hardware

    stage = args.stage or family.default_stage
    inputs = given_inputs(args, family)
    models = [load_model(family, c) for c in _combinations(args, family)]  # options checked here
    model0 = models[0]
    check_stage_reads(model0, stage, inputs, image=bool(args.image))
    model0.check_inputs(stage, {**inputs, **{i.name: i.lo for i in _image_inputs(model0, stage)}})
    if _image_inputs(model0, stage) and not args.image:
        raise SymcostError(f"--image: required by stage {stage} (WxH, repeatable)")
    images = [parse_image(t, *(family.input(n) for n in family.image)) for t in args.image or []]
    efficiency = hardware_settings(args)
    hardware = list(dict.fromkeys(args.hardware or [None]))
    for name in hardware:  # a bad preset or file is refused before any work
        if name is not None:
            get_hardware(name)
    out = []
    for model in models:
        for hw in hardware:
            kw = dict(
                stage=stage,
                convention=args.convention,
                dtype=args.dtype,
                kv_dtype=args.kv_dtype,
                hardware=hw,
                **(efficiency if hw else {}),
            )
            head = {
                "family": family.name,
                **model.options,
                "stage": stage,
                "convention": args.convention,
                "dtype": args.dtype,
                "kv_dtype": args.kv_dtype or args.dtype,
                "hardware": hw,
                **(
                    {k: efficiency.get(k, 1.0) for k in ("compute_efficiency", "bandwidth_efficiency")}
                    if hw
                    else {}
                ),
            }
            out += [{**head, **r} for r in _evaluate(model, images, inputs, kw, args.json)]
    return out, models


def _image_inputs(model, stage) -> tuple:
    return model.layout.inputs if model.family.image and model.uses_layout(stage) else ()


def _evaluate(model, images, inputs, kw, with_components: bool) -> list[dict]:
    """Records of a stage for each image (or one record when the stage reads no image), with
    every input, layout output and named quantity of the family as a key (None where unused)."""
    names = model.family.image or ()
    stage = kw["stage"]
    read = {i.name: inputs.get(i.name, i.default) for i in model.stage_inputs(stage)}
    blank = {i.name: None for i in model.family.inputs} | {
        str(s): None for s in (*model.layout.outputs, *model.named)
    }
    if not images:
        return [_record(model.evaluate(**inputs, **kw), blank | read, with_components)]
    import numpy as np

    grids = np.stack(model.tile_grid(*(np.array(c, dtype=np.int64) for c in zip(*images))), axis=1)
    first: dict = {}  # layout outcome -> the numbers of its first image
    recs = []
    for (w, h), grid in zip(images, map(tuple, grids.tolist())):
        if grid not in first:
            first[grid] = model.evaluate(**dict(zip(names, (w, h))), **inputs, **kw)
        recs.append(_record(first[grid], blank | read | dict(zip(names, (w, h))), with_components))
    return recs


def _record(numbers: dict, keys: dict, with_components: bool) -> dict:
    rec = keys | numbers
    if not with_components:
        del rec["components"]
    return rec


def _image(rec, family) -> str:
    w, h = (rec[n] for n in family.image)
    return "-" if w is None else f"{w}x{h}"


def run(args, family) -> int:
    from ..dtypes import precision
    from ..hardware import get_hardware
    from ..report import applies, holds_kv, reads_kv, settings_lines, table, time_line

    recs, models = records(args, family)
    if args.json:  # strict JSON: a non-finite number is a bug, never printed as NaN/Infinity
        print(json.dumps(recs, indent=1, allow_nan=False))
        return 0
    stage, model = recs[0]["stage"], models[0]
    # a setting that differs between the compared configurations (or that only some have, as
    # a vision mode only crop presets have) is a column; what all share is in the header
    settings = [dict(m.settings) for m in models]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    varying = [k for k in keys if len({s.get(k) for s in settings}) > 1 and applies(model, k, stage)]
    per_model = len(recs) // len(models)  # records come model by model, as many for each
    for k, m in enumerate(models):
        for r in recs[k * per_model : (k + 1) * per_model]:
            r.update({c: m.options.get(c) if c in dict(m.settings) else None for c in varying})
            if family.image:
                r["image"] = _image(r, family)
    hardware = list(dict.fromkeys(args.hardware or []))
    columns = varying + (["hardware"] if len(hardware) > 1 else [])
    if family.image and recs[0][family.image[0]] is not None:
        columns.append("image")
    columns += [str(s) for s in model.layout.outputs if recs[0].get(str(s)) is not None]
    columns += [q for q in model.stage_quantities(stage) if recs[0].get(q) is not None]
    kv, kv_in = holds_kv(model, stage), reads_kv(model, stage)
    columns += [
        "flops",
        "io_bytes",
        "weight_bytes",
        *(["kv_in_bytes"] if kv_in else []),
        "activation_bytes",
        "memory_bytes",
        *(["kv_bytes"] if kv else []),
        "arithmetic_intensity",
    ]
    columns += [t for t in ("time_s", *(t.name for t in model.stage(stage).timings), "bound") if t in recs[0]]
    image = set(family.image or ())
    inputs = {i.name: recs[0][i.name] for i in model.stage_inputs(stage) if i.name not in image}
    prec = precision(args.dtype, args.kv_dtype)
    lines = settings_lines(model, stage, args.convention, prec, inputs, skip=tuple(varying))
    lines.append(
        "# memory = weights + "
        + ("kv in (the cache the stage starts with) + " if kv_in else "")
        + "activations (the peak live bytes above the stage's start"
        + (", the cache it writes included); kv after: the cache it leaves" if kv else ")")
    )
    if hardware:
        efficiency = hardware_settings(args)
        lines += dict.fromkeys(  # one line per hardware and runtime: launch floors differ
            time_line(
                m,
                get_hardware(h),
                prec,
                efficiency.get("compute_efficiency", 1.0),
                efficiency.get("bandwidth_efficiency", 1.0),
            )
            for h in hardware
            for m in models
        )
        lines.append(
            "# bound: the resource that sets most of the stage's time (compute, memory or kernel launches)"
        )
    print("\n".join(lines))
    print(table(recs, columns))
    return 0
