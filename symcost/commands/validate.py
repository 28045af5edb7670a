"""symcost validate FAMILY: measure the family's reference modules and compare per component."""
from __future__ import annotations

import json
import sys
from importlib import import_module

from ..args import add_inputs, add_model_options, add_stage, choice, given_inputs, load_model, single
from ..errors import SymcostError

HELP = "measure the real modules with a FLOP counter and compare, per component"
COUNTERS = ("torch", "torch-cpu", "fvcore", "fvcore-default")


def add_arguments(p, family):
    add_model_options(p, family)
    add_stage(p, family, stages=tuple(s for s in family.stage_names if s != "request"))
    add_inputs(p, family)
    p.add_argument("--counter", type=choice(COUNTERS), default="torch",
                   help="torch: FlopCounterMode with SDPA counted; torch-cpu: out of the box on "
                        "CPU; fvcore: FlopCountAnalysis with an SDPA handle; fvcore-default: out "
                        "of the box. Default: torch")
    p.add_argument("--json", action="store_true", help="cases as JSON")


def run(args, family) -> int:
    from ..report import table
    if family.validation is None:
        raise SymcostError(f"validate: {family.name} has no reference modules")
    try:
        module, _, fn = family.validation.partition(":")
        validate_case = getattr(import_module(module), fn)
        import torch, transformers  # noqa: F401  (fail here, not mid-run)
        if args.counter.startswith("fvcore"):
            import fvcore  # noqa: F401
    except ImportError as e:
        raise SymcostError(f"validate: needs torch, transformers and fvcore ({e.name} missing); "
                           "pip install 'symcost[validation]'") from None
    model = load_model(family, single(args, family))
    stage = args.stage or family.default_stage
    inputs = given_inputs(args, family)
    images: list[tuple[int, int] | None]
    if model.uses_layout(stage):
        from ..args import parse_image
        images = [parse_image(t, *(family.input(n) for n in family.image))
                  for t in (args.image or ["1280x720"])]
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
            print(table(case["rows"], ["component", "analytic", "measured", "abs_diff",
                                       "rel_diff", "ok"]))
    return 0 if all(c["ok"] for c in cases) else 1
