"""symcost formulas FAMILY: the closed forms of one metric, per component, or the layout rule."""

from __future__ import annotations

from ..args import (
    add_convention,
    add_hardware,
    add_model_options,
    add_precision,
    add_stage,
    choice,
    hardware_settings,
    int_in,
    load_model,
    single,
)
from ..errors import SymcostError
from ..metrics import METRICS

HELP = "print the closed forms of a metric (or the layout rule)"
_METRICS = tuple(m for m in METRICS if m != "arithmetic_intensity")


def add_arguments(p, family):
    add_model_options(p, family)
    add_stage(p, family)
    p.add_argument(
        "--metric",
        type=choice(_METRICS),
        default="flops",
        help="the metric whose closed forms are printed. Choices: "
        + "; ".join(f"{m} [{METRICS[m][0]}]: {METRICS[m][1]}" for m in _METRICS)
        + ". Default: flops",
    )
    add_convention(p)
    add_precision(p)
    add_hardware(p, note="with --metric time_s only")
    p.add_argument(
        "--depth",
        type=int_in(0, 12),
        default=3,
        help="component levels below the stage root, in [0, 12]. Default: 3",
    )
    p.add_argument(
        "--latex",
        action="store_true",
        help="one LaTeX align* block (needs amsmath) with %% comments. Default: text",
    )
    p.add_argument(
        "--layout",
        action="store_true",
        help="print the layout rule (e.g. the tile grid) as ordered cases instead; "
        "no --stage or --metric. Default: the closed forms",
    )


def run(args, family) -> int:
    from ..report import formulas_text, layout_text

    model = load_model(family, single(args, family))
    if args.layout:
        if args.stage is not None or args.metric != "flops":
            raise SymcostError("--layout: prints the layout rule; --stage/--metric do not apply")
        print(layout_text(model, args.latex))
        return 0
    hw = hardware_settings(args)
    if args.metric == "time_s" and not args.hardware:
        raise SymcostError("--metric: time_s needs --hardware")
    if args.hardware and args.metric != "time_s":
        raise SymcostError("--hardware: applies only to --metric time_s here")
    print(
        formulas_text(
            model,
            args.stage or family.default_stage,
            args.metric,
            args.convention,
            latex=args.latex,
            depth=args.depth,
            dtype=args.dtype,
            kv_dtype=args.kv_dtype,
            hardware=args.hardware,
            **hw,
        )
    )
    return 0
