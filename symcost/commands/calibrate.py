"""symcost calibrate host: measure this machine's share of an engine step, write a host profile."""

from __future__ import annotations

import json

from ..args import int_in
from ..errors import SymcostError

HELP = "measure this machine for the time model (host: the CPU's share of each engine step)"
TARGETS = {
    "host": "time the no-repeat n-gram logits processor per sequence on this CPU and write a host "
    "profile JSON that plan and simulate read with --host FILE",
}


def add_arguments(p, target):
    from ..host import Calibration

    d = Calibration()
    p.add_argument(
        "--out", required=True, metavar="FILE", help="the profile to write, a .json file. Required"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file. Default: refuse")
    p.add_argument(
        "--ngram",
        type=int_in(2, 1000),
        default=d.ngram,
        help=f"the processor's n-gram; integer in [2, 1000]. Default: {d.ngram} (published scripts')",
    )
    p.add_argument(
        "--window",
        type=int_in(2, 100_000),
        default=d.window,
        help="the processor's window of recent tokens; integer in [2, 100000]. "
        f"Default: {d.window} (published scripts')",
    )


def run(args, target) -> int:
    from ..files import atomic_write, check_target
    from ..host import Calibration, calibrate_host

    check_target(args.out, force=args.force, param="--out", extensions=("json",))
    if args.window < args.ngram:
        raise SymcostError(f"--window: {args.window} is shorter than --ngram {args.ngram}")
    profile = calibrate_host(Calibration(ngram=args.ngram, window=args.window))
    text = json.dumps(profile.as_dict(), indent=1) + "\n"

    def write(f) -> None:
        f.write(text)

    atomic_write(args.out, write, force=args.force, param="--out")
    print(f"# {profile.describe()}")
    for k, v in profile.sources:
        print(f"#   {k}: {v}")
    print(f"wrote {args.out}")
    return 0
