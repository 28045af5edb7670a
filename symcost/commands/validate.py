"""symcost validate FAMILY: measure the family's reference modules and compare per component."""

from __future__ import annotations

import json
import sys
from importlib import import_module
from importlib.util import find_spec

from ..args import add_inputs, add_model_options, add_stage, choice, given_inputs, load_model, single
from ..errors import SymcostError

HELP = "measure the real modules with a FLOP counter and compare, per component"
COUNTERS = ("torch", "torch-cpu", "fvcore", "fvcore-default")


def add_arguments(p, family):
    add_model_options(p, family)
    add_stage(p, family, stages=tuple(s for s in family.stage_names if s != "request"))
    add_inputs(p, family)
    p.add_argument(
        "--counter",
        type=choice(COUNTERS),
        default="torch",
        help="the FLOP counter that measures the real modules. Choices: torch: "
        "FlopCounterMode with SDPA counted (meta device); torch-cpu: "
        "FlopCounterMode out of the box on CPU; fvcore: FlopCountAnalysis with an "
        "SDPA handle (real CPU tensors, small cases); fvcore-default: fvcore out "
        "of the box. Default: torch",
    )
    p.add_argument("--json", action="store_true", help="print the cases as JSON. Default: a table per case")


def run(args, family) -> int:
    from ..report import table

    if family.validation is None:
        raise SymcostError(f"validate: {family.name} has no reference modules")
    needed = ("torch", "transformers") + (("fvcore",) if args.counter.startswith("fvcore") else ())
    missing = [name for name in needed if find_spec(name) is None]
    if missing:  # said before any work; torch itself is imported only when measuring
        raise SymcostError(
            f"validate: needs {', '.join(needed)} ({missing[0]} missing); pip install 'symcost[validation]'"
        )
    module, _, fn = family.validation.partition(":")
    validate_case = getattr(import_module(module), fn)
    model = load_model(family, single(args, family))
    stage = args.stage or family.default_stage
    inputs = given_inputs(args, family)
    images: list[tuple[int, int] | None]
    if model.uses_layout(stage):
        from ..args import parse_image

        images = [
            parse_image(t, *(family.input(n) for n in family.image)) for t in (args.image or ["1280x720"])
        ]
    elif args.image:
        raise SymcostError(f"--image: stage {stage} does not read the image")
    else:
        images = [None]
    points = [{**(dict(zip(family.image, img)) if img else {}), **inputs} for img in images]
    for point in points:  # every case checked (and refused if it cannot run) before any work
        model.check_inputs(stage, point)
        validate_case(model, stage, args.counter, point, check_only=True)
    cases = []
    for k, point in enumerate(points, 1):
        if len(points) > 1:
            print(f"[{k}/{len(points)}] {point} {stage} ({args.counter})", file=sys.stderr)
        cases.append(validate_case(model, stage, args.counter, point))
    if args.json:
        print(json.dumps(cases, indent=1))
    else:
        for case in cases:
            print(f"# {case['title']}: {'all match' if case['ok'] else 'MISMATCH'}")
            if case.get("naming"):  # how the family's rows name components
                print(f"# {case['naming']}")
            print(table(case["rows"], ["component", "analytic", "measured", "abs_diff", "rel_diff", "ok"]))
    return 0 if all(c["ok"] for c in cases) else 1
