"""symcost sweep FAMILY: a grid of image sizes through the compiled closed forms, to a file."""
from __future__ import annotations

import sys
import time

from ..args import (add_convention, add_inputs, add_model_options, add_precision, add_stage,
                    choice, given_inputs, load_model, single)
from ..errors import SymcostError
from ..metrics import METRICS

HELP = "evaluate a grid of image sizes to a file (and plot it)"


def add_arguments(p, family):
    add_model_options(p, family)
    add_stage(p, family)
    add_inputs(p, family, image=False)
    w, h = (family.input(n) for n in family.image) if family.image else (None, None)
    if w is not None:
        p.add_argument("--width", required=True,
                       help=f"A:B:STEP, inclusive, in [{w.lo}, {w.hi}] px")
        p.add_argument("--height", required=True,
                       help=f"A:B:STEP, inclusive, in [{h.lo}, {h.hi}] px")
    names = tuple(m for m in METRICS if m != "time_s")
    p.add_argument("--metric", action="append", type=choice(names),
                   help=f"repeatable. Choices: {', '.join(names)}. Default: flops")
    add_convention(p)
    add_precision(p)
    p.add_argument("--out", required=True, help="FILE.csv, .json or .parquet")
    p.add_argument("--plot", default=None, help="FILE.png or .svg")
    p.add_argument("--measured", default=None,
                   help="measured points to overlay: the reference CSV or a validate --json file")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args, family) -> int:
    from ..files import check_target
    from ..plot import PLOT_FORMATS
    from ..sweep import FORMATS, parse_range, sweep, write_table
    if not family.image:
        raise SymcostError(f"sweep: {family.name} has no image inputs to sweep")
    widths = parse_range(args.width, family.input(family.image[0]))
    heights = parse_range(args.height, family.input(family.image[1]))
    check_target(args.out, force=args.force, extensions=FORMATS)  # refused before any work
    if args.plot:
        check_target(args.plot, force=args.force, param="--plot", extensions=PLOT_FORMATS)
    metrics = tuple(dict.fromkeys(args.metric or ["flops"]))
    model = load_model(family, single(args, family))
    stage = args.stage or family.default_stage
    if not model.uses_layout(stage):
        raise SymcostError(f"--stage: {stage} does not read the image; sweep needs a stage that does")
    inputs = given_inputs(args, family)
    model.check_inputs(stage, {**inputs, **{n: 1 for n in family.image}})
    start = time.perf_counter()
    table = sweep(model, widths, heights, stage, metrics, args.convention, dtype=args.dtype,
                  kv_dtype=args.kv_dtype, **inputs)
    write_table(args.out, table, force=args.force)
    print(f"wrote {len(widths) * len(heights):,} points x {len(table)} columns to {args.out} in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.plot:
        from ..plot import sweep_plot
        sweep_plot(args, family, model, stage, widths, heights, metrics[0], inputs)
    return 0
