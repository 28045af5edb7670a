"""symcost sweep FAMILY: the compiled closed forms over a product of inputs, streamed to a file
and plotted.

Everything is checked before any work: ranges, the stage's inputs, output paths, optional
packages, the measured-points file; then the model is compiled, live measurements run, the
file is written (chunk by chunk, on every core or a dask cluster) and the plot drawn.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import replace

from ..args import (
    _choices_help,
    _stage_inputs,
    add_convention,
    add_hardware,
    add_model_options,
    add_precision,
    add_stage,
    choice,
    hardware_settings,
    int_in,
    parse_image,
    single,
)
from ..checks import printable
from ..errors import SymcostError
from ..metrics import METRICS

HELP = (
    "evaluate a sweep (images of one aspect ratio, one side fixed, a W x H grid, listed images; "
    "token and batch ranges) to a streamed file and a plot"
)
ENGINES = {
    "local": "this machine, --jobs worker processes, one file",
    "dask": "a dask cluster (--scheduler, or a local one), a folder of Parquet part files",
}
_SCHEDULER = re.compile(r"(tcp|tls|ws|wss|ucx|inproc)://[^\s]{1,200}")


def add_arguments(p, family):
    from ..sweep import ASPECTS, LIMITS, default_jobs

    add_model_options(p, _without_compare(family))
    add_stage(p, family)
    g = p.add_argument_group(
        "what to sweep (N, A:B or A:B:STEP, inclusive; an input the stage "
        "does not read is an error naming the stage)"
    )
    spec = "N, A:B or A:B:STEP"
    if family.compare_option:
        o = family.option(family.compare_option)
        g.add_argument(
            o.flag,
            dest=o.name,
            type=choice(tuple(map(str, o.choices))),
            action="append",
            default=None,
            help=f"{o.help}; repeatable: each value is a block of rows in --out (led by a "
            f"{o.name} column when there are several) and a curve of a line plot. Choices: "
            f"{_choices_help(o)}. Default: every value that applies for a line plot, else {o.default}",
        )
    if family.image:
        w, h = (family.input(n) for n in family.image)
        g.add_argument(
            "--image",
            action="append",
            default=None,
            metavar="WxH",
            help=f"an image, W in [{w.lo}, {w.hi}], H in [{h.lo}, {h.hi}] px; repeatable: the "
            "listed images, in the order given (one: a fixed image for the other ranges). Not "
            "with --width/--height or --aspect/--long-side. Default: none",
        )
        g.add_argument(
            "--width",
            metavar="SPEC",
            help=f"image width, {spec} in [{w.lo}, {w.hi}] px. With --height: two "
            "ranges are the W x H grid (a heat map), one fixed side a line. "
            "Default: none (give --width/--height or --aspect/--long-side)",
        )
        g.add_argument(
            "--height", metavar="SPEC", help=f"image height, {spec} in [{h.lo}, {h.hi}] px. Default: none"
        )
        g.add_argument(
            "--aspect",
            metavar="W:H",
            help="images of one aspect ratio, with --long-side: W:H (e.g. 16:9) or "
            + ", ".join(f"{k} ({a}:{b})" for k, (a, b) in ASPECTS.items())
            + ". Default: none",
        )
        g.add_argument(
            "--long-side",
            metavar="SPEC",
            help=f"the long side of --aspect images, {spec} in [1, "
            f"{min(w.hi, h.hi)}] px; the short side is round(long x short/long), "
            "halves up. Default: none",
        )
    for i in family.inputs:
        if family.image and i.name in family.image:
            continue
        readers = ", ".join(s for s in family.stage_names if i.name in _stage_inputs(family, s))
        g.add_argument(
            i.flag,
            dest=i.name,
            metavar="SPEC",
            help=f"{i.help} ({i.unit}), {spec} in [{i.lo}, {i.hi}]; read by: "
            f"{readers}. Default: {i.default if i.default is not None else 'required'}",
        )
    g = p.add_argument_group("what to compute")
    g.add_argument(
        "--metric",
        action="append",
        type=choice(tuple(METRICS)),
        help="a column (and a plot panel); repeatable. Choices: "
        + "; ".join(f"{k}: {u} ({m})" for k, (u, m) in METRICS.items())
        + ". Default: flops",
    )
    add_convention(g)
    add_precision(g)
    add_hardware(g)
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help=".csv or .json (one list of records, written chunk by chunk) or .parquet "
        "(needs pyarrow; with --engine dask a folder of part files). Default: "
        "none (plot only)",
    )
    g.add_argument(
        "--engine",
        type=choice(tuple(ENGINES)),
        default="local",
        help="where chunks run. Choices: "
        + "; ".join(f"{k}: {v}" for k, v in ENGINES.items())
        + ". Default: local",
    )
    g.add_argument(
        "--jobs",
        type=int_in(1, 1024),
        default=None,
        help=f"worker processes formatting CSV/JSON chunks (local engine; Parquet is "
        f"encoded by Arrow's threads) or local dask workers, in [1, 1024]. "
        f"Default: the CPUs this process may use ({default_jobs()} here)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a dask scheduler, e.g. tcp://10.0.0.5:8786 (--engine dask; the workers "
        "must see --out's folder). Default: a local cluster of --jobs workers",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="replace existing --out / --plot (a dataset folder only if it holds "
        "nothing but part files). Default: refuse",
    )
    g.add_argument(
        "--allow-huge",
        action="store_true",
        help=f"write --out even when the sweep is estimated (from {LIMITS.sample_points:,} of "
        f"its points, evaluated first when it has over {LIMITS.min_points:,}) to take over "
        f"{LIMITS.max_hours:g} hours or to need more than the free space of --out's folder. "
        "Default: refuse it, saying the estimated size and time",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no summary on stderr. Default: both, the bar only "
        "when stderr is a terminal and the work takes over a second",
    )
    g = p.add_argument_group("plot")
    g.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help=".png or .svg: one varied input draws a curve per value of "
        f"--{(family.compare_option or 'option').replace('_', '-')} (one panel "
        "per --metric, the tile grid below); two varied inputs draw heat maps. "
        "Default: none",
    )
    g.add_argument(
        "--measured",
        default=None,
        metavar="FILE",
        help="measured vision FLOPs to draw on the curves: a .csv like "
        "validation/data/vision_flops.csv or a validate --json file; only "
        "records of this family, its options and --convention on the plotted "
        "line are drawn. Default: none",
    )
    g.add_argument(
        "--measure",
        type=int_in(1, 64),
        default=None,
        metavar="K",
        help="measure the reference modules live (the family's validation hook, "
        "FlopCounterMode, stage vision, batch 1; seconds per shape) at K points "
        "of the line in every mode, in [1, 64]. Default: none",
    )


def _axes(args, family) -> list:
    """The swept axes from the flags (pure parsing: nothing loaded yet)."""
    from ..sweep import Images, Ray, parse_aspect, parse_range

    axes: list = []
    if family.image:
        w, h = (family.input(n) for n in family.image)
        ray = args.aspect is not None or args.long_side is not None
        if args.image:
            for flag, value in (("--width", args.width), ("--height", args.height)):
                if value is not None:
                    raise SymcostError(f"{flag}: not with --image (the images set both sides)")
            if ray:
                raise SymcostError("--aspect: not with --image (the images set both sides)")
            sizes = tuple(dict.fromkeys(parse_image(t, w, h) for t in args.image))
            axes.append(Images(family.image, sizes))
        elif ray:
            for flag, value in (("--width", args.width), ("--height", args.height)):
                if value is not None:
                    raise SymcostError(
                        f"{flag}: not with --aspect/--long-side (the long side sets both sides)"
                    )
            if args.aspect is None or args.long_side is None:
                missing = "--aspect" if args.aspect is None else "--long-side"
                raise SymcostError(f"{missing}: --aspect and --long-side go together")
            aspect = parse_aspect(args.aspect)
            side = parse_range(args.long_side, w if w.hi <= h.hi else h, "--long-side")
            axes.append(Ray(family.image, aspect, side.start, side.stop, side.step))
        elif (args.width is None) != (args.height is None):
            missing = "--width" if args.width is None else "--height"
            raise SymcostError(
                f"{missing}: give both --width and --height (N fixes a side), or --aspect and --long-side"
            )
        elif args.width is not None:
            axes += [parse_range(args.width, w), parse_range(args.height, h)]
    for i in family.inputs:
        value = getattr(args, i.name, None)
        if value is not None and not (family.image and i.name in family.image):
            axes.append(parse_range(value, i))
    return axes


def _check_outputs(args) -> None:
    """Output paths and the packages they need, before any work."""
    from ..files import check_target
    from ..plot import PLOT_FORMATS
    from ..sweep import FORMATS, check_dataset_target, require_pyarrow

    if not args.out and not args.plot:
        raise SymcostError("--out: give --out FILE and/or --plot FILE")
    if args.scheduler is not None:
        if args.engine != "dask":
            raise SymcostError("--scheduler: applies only with --engine dask")
        if not _SCHEDULER.fullmatch(args.scheduler):
            raise SymcostError(
                f"--scheduler: {args.scheduler[:60]!r} is not an address like "
                "tcp://HOST:PORT (schemes tcp, tls, ws, wss, ucx, inproc)"
            )
    if args.engine == "dask":
        if not args.out:
            raise SymcostError("--engine: dask writes --out FOLDER.parquet; give --out")
        check_dataset_target(args.out, force=args.force)
        require_pyarrow("--out")
        try:
            import dask  # noqa: F401
            import distributed  # noqa: F401
        except ImportError:
            raise SymcostError(
                "--engine: dask needs dask and distributed (pip install 'symcost[dask]')"
            ) from None
    elif args.out and check_target(args.out, force=args.force, extensions=FORMATS) == "parquet":
        require_pyarrow("--out")
    if args.plot:
        check_target(args.plot, force=args.force, param="--plot", extensions=PLOT_FORMATS)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SymcostError("--plot: needs matplotlib (pip install 'symcost[plot]')") from None
        if args.out and os.path.abspath(args.out) == os.path.abspath(args.plot):
            raise SymcostError("--plot: the same file as --out")


def _target(args, family, metrics):
    from ..hardware import get_hardware
    from ..sweep import Target

    if "time_s" in metrics and not args.hardware:
        raise SymcostError("--hardware: --metric time_s needs it (a preset or a .json file)")
    if args.hardware and "time_s" not in metrics:
        raise SymcostError("--hardware: applies only with --metric time_s")
    eff = hardware_settings(args)
    hw = get_hardware(args.hardware) if args.hardware else None  # files read once, here
    return Target(
        family.name,
        tuple(single(args, _without_compare(family)).items()),
        args.stage or family.default_stage,
        metrics,
        args.convention,
        args.dtype,
        args.kv_dtype,
        hw,
        eff.get("compute_efficiency", 1.0),
        eff.get("bandwidth_efficiency", 1.0),
    )


def _without_compare(family):
    """The family as seen by the single-valued options: its compare option is swept instead."""
    return replace(family, options=tuple(o for o in family.options if o.name != family.compare_option))


def _modes(args, family, target, kind: str | None) -> list:
    """The compare option's values swept, each a block of rows and a curve: those given, else
    every one that applies to this configuration for a line plot, else the default."""
    from ..sweep import model_of

    opt = family.compare_option
    if opt is None:
        return [None]
    given = list(dict.fromkeys(getattr(args, opt) or []))
    for value in given:  # a value that does not apply is an error naming the flag
        model_of(target.replace_option(opt, value))
    if given:
        return given
    if kind != "line":
        return [model_of(target).options[opt]]
    modes = []
    for value in family.option(opt).choices:
        try:
            model_of(target.replace_option(opt, value))
            modes.append(value)
        except SymcostError as e:  # e.g. a vision mode only the other runtime has
            _say(args, f"{value}: no curve ({e})")
    return modes


def _check_measuring(args, sweep, kind: str | None, image) -> None:
    flag = "--measure" if args.measure else "--measured"
    if not (args.measure or args.measured):
        return
    if kind != "line" or not set(sweep.varied[0].names) <= set(image or ()):
        raise SymcostError(
            f"{flag}: measured points go on a line plot of images (--plot, with "
            "--aspect/--long-side or one side of --width/--height varied)"
        )
    if sweep.stage != "vision" or "flops" not in sweep.target.metrics:
        raise SymcostError(f"{flag}: measured points are vision FLOPs: use --stage vision and --metric flops")
    if sweep.fixed.get("batch", 1) != 1 or "batch" in {n for a in sweep.varied for n in a.names}:
        raise SymcostError(f"{flag}: measured points are at batch 1; drop --batch")
    if args.measure and sweep.target.convention != "torch":
        raise SymcostError("--measure: measures with FlopCounterMode: use --convention torch")


def run(args, family) -> int:
    from ..plot import plotted
    from ..sweep import Progress, Rows, compiled, default_jobs, make_sweep

    metrics = tuple(dict.fromkeys(args.metric or ["flops"]))
    axes = _axes(args, family)
    jobs = args.jobs or default_jobs()
    _check_outputs(args)
    target = _target(args, family, metrics)
    sweep = make_sweep(target, axes)  # the stage's inputs checked; nothing compiled yet
    kind = None
    if args.plot:
        kind = {1: "line", 2: "heat"}.get(len(plotted(sweep)))
        if kind is None:
            raise SymcostError(
                f"--plot: draws one varied input (curves) or two (heat maps); "
                f"this sweep varies {len(sweep.varied)}: "
                + (", ".join(n for a in sweep.varied for n in a.names) or "none")
            )
    _check_measuring(args, sweep, kind, family.image)
    modes = _modes(args, family, sweep.target, kind)
    if kind == "heat" and len(modes) > 1:
        opt = family.option(family.compare_option)
        raise SymcostError(f"{opt.flag}: a heat map draws one value; give one")
    sweeps = [make_sweep(target.replace_option(family.compare_option, m), axes) for m in modes]
    sweep = sweeps[0]
    measured: list = []
    if args.measured:
        from ..plot import load_measured

        measured, _ = load_measured(args.measured, sweep.target, modes)
    hook = None
    if args.measure:
        from ..plot import validation_hook

        hook = validation_hook(family)
    for s in sweeps:  # every check passed: compile
        compiled(s.target)
    if hook is not None:
        from ..plot import measure_live, measure_points

        points = measure_points(sweep, args.measure)
        measured += measure_live(
            sweep, points, modes, hook, Progress(len(points) * len(modes), "measure", quiet=args.quiet)
        )
    if args.out:
        if not args.allow_huge:
            _check_size(args, sweeps, jobs)
        start = time.perf_counter()
        _write_out(args, sweeps, jobs)
        rows = Rows.of(sweeps)
        _say(
            args,
            f"wrote {rows.size:,} points x {len(rows.columns)} columns "
            f"to {args.out} in {time.perf_counter() - start:.1f} s",
        )
    if kind == "line":
        return _line_plot(args, family, sweep, modes, measured)
    if kind == "heat":
        from ..plot import draw_heat, heat_data

        draw_heat(heat_data(sweep), args.plot, force=args.force)
        _say(args, f"plotted {args.plot}")
    return 0


def _check_size(args, sweeps, jobs: int) -> None:
    from ..sweep import LIMITS, check_estimate, default_jobs

    fmt = "parquet" if args.engine == "dask" else args.out.rsplit(".", 1)[-1].lower()
    # CSV/JSON run on --jobs processes (no faster than the CPUs), Parquet in one (Arrow's threads)
    processes = 1 if fmt == "parquet" and args.engine == "local" else min(jobs, default_jobs())
    check_estimate(sweeps, args.out, fmt, processes, LIMITS)


def _write_out(args, sweeps, jobs: int) -> None:
    from ..sweep import Progress, Rows, write, write_dataset

    progress = Progress(Rows.of(sweeps).size, quiet=args.quiet)
    if args.engine == "local":
        write(sweeps, args.out, jobs=jobs, force=args.force, progress=progress)
        return
    import logging

    import distributed

    cluster = None
    quiet = logging.getLogger("distributed")  # dask logs its start failures with tracebacks
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        if args.scheduler:
            client = distributed.Client(args.scheduler, timeout="10s")
        else:
            cluster = distributed.LocalCluster(
                n_workers=jobs,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.CRITICAL,
            )
            client = distributed.Client(cluster)
    except Exception as e:  # whatever dask raised: the user can act on the reason only
        what = (
            f"--scheduler: cannot reach {args.scheduler!r}"
            if args.scheduler
            else "--engine: cannot start a local dask cluster"
        )
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SymcostError(f"{what} ({reason})") from None
    finally:
        quiet.setLevel(level)
    try:
        write_dataset(sweeps, args.out, client, force=args.force, progress=progress)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _line_plot(args, family, sweep, modes, measured) -> int:
    from ..plot import draw_lines, line_data

    lines = line_data(sweep, modes, measured)
    for value, why in lines.skipped.items():
        _say(args, f"{value}: no curve ({why})")
    drawn = [m[3] for c in lines.curves for m in c.measured]
    note = []
    if "file" in drawn:
        note.append(
            f"measured (file, squares): the records of {os.path.basename(args.measured)} "
            f"on this line ({drawn.count('file')}), values as recorded there"
        )
    if "live" in drawn:
        note.append(
            f"measured (live, circles): {family.measurement or family.validation}; counter torch, batch 1"
        )
    draw_lines(lines, args.plot, force=args.force, note="\n".join(note))
    _say(args, f"plotted {args.plot}")
    points = [(c.mode, m) for c in lines.curves for m in c.measured]
    wrong = [(mode, x, meas, ana) for mode, (x, meas, ana, _) in points if meas != ana]
    if points:
        _say(
            args,
            f"measured points on the plotted line: {len(points)}, "
            + (
                "every one equal to the analytic value"
                if not wrong
                else f"{len(wrong)} differ from the analytic value"
            ),
        )
    for mode, x, meas, ana in wrong:  # always said: a difference is a finding, not noise
        print(f"symcost: {mode} at x={x}: measured {meas:,} != analytic {ana:,}", file=sys.stderr)
    return 1 if wrong else 0


def _say(args, text: str) -> None:
    if not args.quiet:  # a file name may hold a newline: escaped, one line
        print(printable(text), file=sys.stderr)
