"""symcost eval FAMILY: every metric of a stage for images and inputs, as a table or JSON.

Options and hardware are repeatable: every combination is a row, and the header shows only
what all rows share. Up to ``NUMERIC_POINTS`` images per configuration go through the numeric
model (which also says what bounds each stage's time); more go through the compiled closed
forms, exact as well.
"""
from __future__ import annotations

import itertools
import json
import sys

from ..args import (add_convention, add_hardware, add_inputs, add_model_options, add_precision,
                    add_stage, given_inputs, hardware_settings, load_model, parse_image)
from ..errors import SymcostError
from ..metrics import INT_METRICS

HELP = "evaluate every metric for images and inputs"
NUMERIC_POINTS = 32


def add_arguments(p, family):
    add_model_options(p, family, repeatable=True)
    add_stage(p, family)
    add_inputs(p, family)
    add_convention(p)
    add_precision(p)
    add_hardware(p, repeatable=True)
    p.add_argument("--json", action="store_true",
                   help="a JSON list of records with exact integers and per-component FLOPs")


def _combinations(args, family) -> list[dict]:
    lists = {o.name: getattr(args, o.name) for o in family.options if getattr(args, o.name)}
    names = list(lists)
    return [dict(zip(names, values)) for values in itertools.product(*lists.values())] or [{}]


def records(args, family) -> tuple[list[dict], list]:
    """One record per (options, hardware, image); every input checked before any work."""
    stage = args.stage or family.default_stage
    inputs = given_inputs(args, family)
    combos = _combinations(args, family)
    models = [load_model(family, c) for c in combos]  # options checked up front
    model0 = models[0]
    model0.check_inputs(stage, {**inputs, **_image_placeholder(model0, stage)})
    reads_image = model0.uses_layout(stage) and family.image
    if args.image and not reads_image:
        raise SymcostError(f"--image: stage {stage} does not read the image")
    if reads_image and not args.image:
        raise SymcostError(f"--image: required by stage {stage} (WxH, repeatable)")
    images = [parse_image(t, *(family.input(n) for n in family.image)) for t in args.image] \
        if reads_image else [None]
    hw = hardware_settings(args)
    hardware = args.hardware or [None]
    out = []
    for combo, model in zip(combos, models):
        for hwname in hardware:
            kw = dict(stage=stage, convention=args.convention, dtype=args.dtype,
                      kv_dtype=args.kv_dtype, hardware=hwname, **(hw if hwname else {}))
            for rec in _evaluate(model, images, inputs, kw, args.json):
                head = {"family": family.name, **model.options, "stage": stage,
                        "convention": args.convention, "dtype": args.dtype,
                        "kv_dtype": args.kv_dtype or args.dtype}
                if hwname is not None:
                    head["hardware"] = hwname
                out.append({**head, **rec})
    return out, models


def _image_placeholder(model, stage) -> dict:
    """Valid image values so that checking the other inputs does not trip on a missing image."""
    if not model.uses_layout(stage):
        return {}
    return {i.name: i.lo for i in model.layout.inputs}


def _evaluate(model, images, inputs, kw, with_components: bool) -> list[dict]:
    names = model.family.image or ()
    if len(images) <= NUMERIC_POINTS:
        recs = []
        for img in images:
            point = dict(zip(names, img)) if img else {}
            r = model.evaluate(**point, **inputs, **kw)
            recs.append({**point, **{k: inputs.get(k, i.default) for k, i in
                                     ((i.name, i) for i in model.stage_inputs(kw["stage"]))
                                     if k not in point}, **r})
        return recs
    import numpy as np
    metrics = list(INT_METRICS) + ["arithmetic_intensity"] + (["time_s"] if kw["hardware"] else [])
    ev = model.compile(kw["stage"], metrics, kw["convention"], kw["dtype"], kw["kv_dtype"],
                       components=with_components, hardware=kw["hardware"],
                       **{k: kw[k] for k in ("compute_efficiency", "bandwidth_efficiency") if k in kw})
    cols = np.array(images, dtype=np.int64)
    out = ev(cols[:, 0], cols[:, 1], **inputs)
    recs = []
    for k, (w, h) in enumerate(images):
        rec = {names[0]: w, names[1]: h,
               **{i.name: inputs.get(i.name, i.default) for i in model.stage_inputs(kw["stage"])
                  if i.name not in names}}
        comps = {}
        for name, col in out.items():
            value = col[k].item() if hasattr(col[k], "item") else col[k]
            if name.startswith("components."):
                comps[name[len("components."):]] = int(value)
            else:
                rec[name] = value
        if with_components:
            rec["components"] = comps
        recs.append(rec)
    return recs


def run(args, family) -> int:
    from ..dtypes import precision
    from ..hardware import get_hardware
    from ..report import settings_lines, table, time_line
    recs, models = records(args, family)
    if args.json:
        sys.stdout.write(json.dumps(recs, indent=1) + "\n")
        return 0
    stage = recs[0]["stage"]
    varying = [k for k in recs[0] if k not in ("components",)
               and len({json.dumps(r.get(k), sort_keys=True) for r in recs}) > 1]
    option_cols = [o.name for o in family.options if o.name in varying]
    hw_cols = ["hardware"] if "hardware" in varying else []
    image_cols = ["image"] if family.image and family.image[0] in recs[0] else []
    for r in recs:
        if image_cols:
            r["image"] = f"{r[family.image[0]]}x{r[family.image[1]]}"
    model = models[0]
    quantities = [str(s) for s in model.layout.outputs if str(s) in recs[0]] + \
        [q for q in model.stage_quantities(stage) if q in recs[0]]
    metrics = ["flops", "io_bytes", "activation_bytes", "memory_bytes", "kv_bytes",
               "arithmetic_intensity"]
    times = [t for t in ("time_s", "ttft_s", "tpot_s", "bound") if t in recs[0]]
    inputs = {i.name: recs[0][i.name] for i in model.stage_inputs(stage)
              if i.name in recs[0] and (not family.image or i.name not in family.image)}
    prec = precision(args.dtype, args.kv_dtype)
    skip = tuple(option_cols)
    print("\n".join(settings_lines(model, stage, args.convention, prec, inputs, skip=skip)))
    if args.hardware:
        hw = hardware_settings(args)
        for name in dict.fromkeys(args.hardware):
            print(time_line(model, get_hardware(name), prec, hw.get("compute_efficiency", 1.0),
                            hw.get("bandwidth_efficiency", 1.0)))
        if "bound" in times:
            print("# bound: the resource that sets most of the stage's time "
                  "(compute, memory or kernel launches)")
    print(table(recs, option_cols + hw_cols + image_cols + quantities + metrics + times))
    return 0
