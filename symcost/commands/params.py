"""symcost params FAMILY: parameter counts per module."""

from __future__ import annotations

from ..args import add_model_options, int_in, load_model, single

HELP = "parameter counts per module"


def add_arguments(p, family):
    add_model_options(p, family)
    p.add_argument(
        "--depth", type=int_in(0, 12), default=3, help="module levels below the root, in [0, 12]. Default: 3"
    )


def run(args, family) -> int:
    from ..report import settings_lines

    model = load_model(family, single(args, family))
    rows = [
        {"component": k, "params": v} for k, v in model.parameters().items() if k.count(".") <= args.depth
    ]
    print("\n".join(settings_lines(model)))
    print("# parameters: every module once (all experts), exact counts")
    print(_params_table(rows))
    return 0


def _params_table(rows) -> str:
    width = max(len(r["component"]) for r in rows)
    lines = [f"{'component'.ljust(width)}  {'params':>15}"]
    lines += [f"{r['component'].ljust(width)}  {r['params']:>15,}" for r in rows]
    return "\n".join(lines)
