"""Sweep plots: curves along a family of images, one per value of the family's compare option,
with measured points; or heat maps over two swept inputs (and the tile grid).

Curves are evaluated at every integer of the varied side (whatever the sweep's step), so each
step of a curve sits exactly at the first pixel of its new layout. Measured points come from a
file (``--measured``, only records of the plot's family, options and convention) or from the
family's validation hook run live (``--measure``). matplotlib is imported lazily; no pyplot.
"""

from __future__ import annotations

import csv
import json
import math
import re
import textwrap
from dataclasses import dataclass, field, replace
from importlib import import_module

import numpy as np

from .errors import SymcostError
from .family import families, get_family
from .files import atomic_write, check_target, read_small_file
from .metrics import UNITS
from .sweep import Images, Range, Ray, Sweep, model_of

__all__ = [
    "Measured",
    "Curve",
    "Lines",
    "Heat",
    "load_measured",
    "validation_hook",
    "measure_points",
    "measure_live",
    "line_data",
    "heat_data",
    "title_lines",
    "plotted",
    "draw_lines",
    "draw_heat",
    "draw_simulation",
    "PLOT_FORMATS",
    "MAX_MEASURED_BYTES",
    "MAX_HEAT_SIDE",
]

PLOT_FORMATS = ("png", "svg")
MAX_MEASURED_BYTES = 16 << 20  # a measured-points file is small: refused beyond
MAX_HEAT_SIDE = 1024  # heat-map cells per side: the sweep's points, evenly thinned
MEASURED_KEY = "vision_total"  # batch-1 vision FLOPs in reference files and validation cases
# counter names in reference files and validate cases -> the convention they count in
COUNTERS = {
    "FlopCounterMode": "torch",
    "torch": "torch",
    "torch-cpu": "torch-cpu",
    "fvcore": "fvcore",
    "fvcore-default": "fvcore-default",
}
MARKERS = {"live": "o", "file": "s"}  # measured points by source: circles, squares
_DIGITS = re.compile(r"[0-9]{1,40}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- measured points ------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    width: int
    height: int
    mode: str | None  # value of the family's compare option (None: the family has none)
    value: int  # batch-1 vision FLOPs
    source: str  # "file" or "live"


def _int(value, what: str, where: str, lo: int, hi: int, text: bool) -> int:
    """An integer field: a JSON int (not bool, not float), or with ``text`` a CSV cell of digits."""
    v = None
    if text and isinstance(value, str) and _DIGITS.fullmatch(value):
        v = int(value)
    elif type(value) is int:
        v = value
    if v is None or not lo <= v <= hi:
        raise SymcostError(f"--measured: {where}: {what} {_short(value)} is not an integer in [{lo}, {hi}]")
    return v


def _parse_json(text: str) -> list:
    def finite(s):
        if not math.isfinite(float(s)):
            raise SymcostError(f"--measured: {s[:40]} is not a finite number")
        return float(s)

    def constant(s):
        raise SymcostError(f"--measured: {s} is not a number JSON allows")

    def integer(s):
        if len(s) > 40:
            raise SymcostError(f"--measured: an integer of {len(s)} digits is out of range")
        return int(s)

    try:
        data = json.loads(text, parse_float=finite, parse_int=integer, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise SymcostError(f"--measured: not JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise SymcostError("--measured: JSON nested too deeply") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise SymcostError("--measured: JSON must be a list of records (as validate --json prints)")
    for r in data:  # the measured value sits under "measured" in validate cases
        if isinstance(r.get("measured"), dict):
            r[MEASURED_KEY] = r["measured"].get(MEASURED_KEY)
    return data


def _parse_csv(text: str) -> list:
    try:
        rows = list(csv.DictReader(text.splitlines()))
    except csv.Error as e:
        raise SymcostError(f"--measured: not CSV ({e})") from None
    # the reference CSVs name the sides W and H
    return [{("width" if k == "W" else "height" if k == "H" else k): v for k, v in r.items()} for r in rows]


def _family_of(record: dict, where: str, target: str) -> str:
    """The record's family: its ``family`` field, else ``target`` (the plot's family) when its
    options include every option the record names, else the one family whose options do."""
    if "family" in record:
        if not isinstance(record["family"], str):
            raise SymcostError(f"--measured: {where}: family {_short(record['family'])} is not a name")
        return record["family"]
    named = {k for f in families() for k in (o.name for o in get_family(f).options)} & set(record)
    fits = [f for f in families() if named <= {o.name for o in get_family(f).options}]
    if target in fits:
        return target
    if len(fits) != 1:
        raise SymcostError(
            f"--measured: {where} does not say its family (add a family field; "
            f"its options {sorted(named)} fit {', '.join(fits) or 'none'})"
        )
    return fits[0]


def load_measured(path: str, target, modes) -> tuple[list[Measured], int]:
    """Points of ``path`` (a ``.csv`` like ``validation/data/vision_flops.csv`` or a ``.json``
    list of ``validate --json`` cases) measured on the target's family, with the target's
    options and convention, for stage vision; a record's compare option (its default when the
    record has none) picks its curve among ``modes``. Every record is checked first; errors
    name ``--measured``. Returns (points, records read)."""
    model = model_of(target)
    family = model.family
    ext = path.rsplit(".", 1)[-1].lower() if isinstance(path, str) and "." in path else ""
    if ext not in ("csv", "json"):
        raise SymcostError(f"--measured: {str(path)[:200]!r} must end in .csv or .json")
    text = read_small_file(path, "--measured", MAX_MEASURED_BYTES)
    records = _parse_json(text) if ext == "json" else _parse_csv(text)
    compare = family.compare_option
    w_in, h_in = (family.input(n) for n in family.image or ())
    out = []
    for k, r in enumerate(records, 1):
        where = f"record {k}"
        fam = _family_of(r, where, family.name)
        counter = r.get("counter")
        conv = r.get("convention") or (COUNTERS.get(counter) if isinstance(counter, str) else None)
        if not isinstance(conv, str):
            raise SymcostError(
                f"--measured: {where}: no convention, and counter "
                f"{_short(r.get('counter'))} is not one of {', '.join(COUNTERS)}"
            )
        if r.get("stage", "vision") != "vision":
            continue  # validate --json may hold prefill and decode cases
        w = _int(r.get("width"), "width", where, w_in.lo, w_in.hi, ext == "csv")
        h = _int(r.get("height"), "height", where, h_in.lo, h_in.hi, ext == "csv")
        value = _int(r.get(MEASURED_KEY), MEASURED_KEY, where, 0, 10**38 - 1, ext == "csv")
        if fam != family.name or conv != target.convention:
            continue
        options = {o.name: r[o.name] for o in family.options if o.name in r}
        mode = options.pop(compare, None) if compare else None
        if compare and mode is None:
            mode = family.option(compare).default
        if mode not in modes or any(str(v) != str(model.options.get(n)) for n, v in options.items()):
            continue
        out.append(Measured(w, h, mode, value, "file"))
    return out, len(records)


def validation_hook(family, param: str = "--measure"):
    """The family's ``validate_case(model, stage, counter, point, check_only)``; needs torch."""
    if family.validation is None:
        raise SymcostError(f"{param}: {family.name} declares no reference modules to measure")
    module, _, name = family.validation.partition(":")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        return getattr(import_module(module), name)
    except ImportError as e:
        raise SymcostError(
            f"{param}: needs torch, transformers and {module} ({e.name} missing); "
            "pip install 'symcost[validation]'"
        ) from None
    except AttributeError:
        raise SymcostError(f"{param}: {family.validation} does not exist") from None


def measure_points(sweep: Sweep, k: int) -> list[dict]:
    """``k`` points evenly spread along the sweep's varied axis (its ends included)."""
    axis = sweep.varied[0].dense()
    ks = np.unique(np.round(np.linspace(0, axis.size - 1, k)).astype(np.int64))
    return [dict(zip(axis.names, map(int, point))) for point in zip(*axis.values(ks))]


def measure_live(sweep: Sweep, points: list[dict], modes, hook, progress=None) -> list[Measured]:
    """Each point measured by ``hook`` (counter torch, stage vision) in every mode; every case
    is checked before the first measurement."""
    compare = model_of(sweep.target).family.compare_option
    models = {m: model_of(sweep.target.replace_option(compare, m)) for m in modes}
    for model in models.values():
        for p in points:
            hook(model, "vision", "torch", p, check_only=True)
    out, done = [], 0
    for mode, model in models.items():
        for p in points:
            case = hook(model, "vision", "torch", p)
            out.append(Measured(p["width"], p["height"], mode, int(case["measured"][MEASURED_KEY]), "live"))
            done += 1
            if progress:
                progress.update(done)
    if progress:
        progress.close()
    return out


# -- curves ---------------------------------------------------------------------------------
@dataclass
class Curve:
    mode: str | None
    x: np.ndarray  # every integer of the varied side
    values: dict[str, np.ndarray]  # metric -> exact values at x
    layout: dict[str, np.ndarray]  # layout output -> values at x (when the layout varies)
    measured: list[tuple[int, int, int, str]] = field(default_factory=list)  # x, meas., analytic, src


@dataclass
class Lines:
    title: str
    xlabel: str
    ylabels: dict[str, str]
    curves: list[Curve]
    steps: list[int]  # x of every layout change (first pixel of the new grid)
    skipped: dict[str, str]  # mode -> why it has no curve


def _scale(top: float, unit: str) -> tuple[float, str]:
    """A power of 1000 and the unit with its SI prefix, so that axis numbers stay short."""
    if unit in ("FLOP", "MAC", "B"):
        for f, p in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if top >= f:
                return f, p + unit
    if unit == "s" and 0 < top < 1:
        return (1e-3, "ms") if top >= 1e-3 else (1e-6, "us")
    if unit == "parameters" and top >= 1e6:
        return (1e9, "billion parameters") if top >= 1e9 else (1e6, "million parameters")
    return 1.0, unit


def _axis_label(axis, unit: str) -> str:
    if isinstance(axis, Ray):
        a, b = axis.aspect
        return f"long side ({unit}); aspect {a}:{b}, short side = round(long x {min(a, b)}/{max(a, b)})"
    return f"{axis.name} ({unit})"


def _metric_label(metric: str, stage: str, convention: str) -> str:
    return f"{stage} {metric}" + (f", {convention} convention" if metric == "flops" else "")


def title_lines(sweep: Sweep, compare: str | None, modes, varied: str) -> str:
    """Every fixed setting of the plot: family, options, stage, convention, precision,
    hardware and fixed inputs; the compare option's values when it draws several curves.
    ``varied`` says what the plot runs over, e.g. "along width 1..4096"."""
    t = sweep.target
    model = model_of(t)
    opts = [
        f"{o.name} {model.options.get(o.name)}"
        for o in model.family.options
        if not (o.name == compare and len(modes) > 1)
    ]
    fixed = [f"{model.family.input(n).symbol} = {v}" for n, v in sweep.fixed.items()]
    setup = [f"stage {sweep.stage}", f"convention {t.convention}", f"dtype {t.dtype}"]
    setup += [f"kv_dtype {t.kv_dtype}"] if t.kv_dtype else []
    if t.hardware is not None:
        name = getattr(t.hardware, "name", t.hardware)
        setup.append(
            f"hardware {name} (efficiency {t.compute_efficiency:g} compute, "
            f"{t.bandwidth_efficiency:g} bandwidth)"
        )
    lines = [
        f"{model.family.name}: {sweep.stage} {', '.join(t.metrics)} {varied}",
        ", ".join(opts),
        ", ".join(setup + fixed),
    ]
    if compare and len(modes) > 1:
        lines.append(f"one curve per {compare}: {', '.join(modes)}")
    return "\n".join(lines)


def plotted(sweep: Sweep) -> tuple[Range | Ray, ...]:
    """The sweep's varied axes, each numeric (listed images have no axis to plot along)."""
    for a in sweep.varied:
        if isinstance(a, Images):
            raise SymcostError(
                "--plot: draws along numeric inputs; --image lists images (give one, or vary "
                "--width/--height or --aspect/--long-side)"
            )
    return tuple(a for a in sweep.varied if not isinstance(a, Images))


def line_data(sweep: Sweep, modes, measured: list[Measured]) -> Lines:
    """Every mode's curve along the sweep's one varied axis, and the measured points on it
    (points off the family are left out) with the analytic value at each."""
    (axis,) = plotted(sweep)
    dense = axis.dense()
    fixed = sweep.fixed
    model = model_of(sweep.target)
    compare = model.family.compare_option
    stage = sweep.stage
    curves, skipped, steps = [], {}, set[int]()
    for mode in modes:
        target = sweep.target.replace_option(compare, mode)
        try:
            cols = Sweep(target, tuple(dense if a is axis else a for a in sweep.axes)).evaluate()
        except SymcostError as e:  # an option that does not apply to this mode
            skipped[mode] = str(e)
            continue
        x = dense.x(np.arange(dense.size))
        layout = {}
        if model_of(target).uses_layout(stage):
            names = [str(s) for s in model_of(target).layout.outputs]
            change = np.zeros(len(x) - 1, dtype=bool)
            for n in names:
                change |= cols[n][1:] != cols[n][:-1]
            if change.any():  # a layout that never changes along the line is not drawn
                layout = {n: cols[n] for n in names}
                steps.update(int(s) for s in x[1:][change])
        curve = Curve(mode, x, {m: cols[m] for m in sweep.target.metrics}, layout)
        for p in measured if "flops" in curve.values else ():
            point = dict(zip(model.family.image or (), (p.width, p.height)))
            xp = dense.locate(point)
            if p.mode == mode and xp is not None and all(point.get(n, v) == v for n, v in fixed.items()):
                curve.measured.append((xp, p.value, int(cols["flops"][xp - dense.start]), p.source))
        curves.append(curve)
    xlabel = _axis_label(axis, model.family.input(axis.names[0]).unit)
    ylabels = {m: _metric_label(m, stage, sweep.target.convention) for m in sweep.target.metrics}
    title = title_lines(sweep, compare, [m for m in modes if m not in skipped], f"along {axis.describe()}")
    return Lines(title, xlabel, ylabels, curves, sorted(steps), skipped)


# -- heat maps ------------------------------------------------------------------------------
@dataclass
class Heat:
    title: str
    x: np.ndarray
    y: np.ndarray
    xlabel: str
    ylabel: str
    panels: dict[str, np.ndarray]  # name -> values [y, x] (metrics, exact)
    labels: dict[str, str]
    grid: np.ndarray | None  # layout outputs [y, x, k] when the layout varies
    grid_names: tuple[str, ...]


def heat_data(sweep: Sweep) -> Heat:
    """Metrics (and the layout) over the sweep's two varied axes, thinned to at most
    ``MAX_HEAT_SIDE`` of the sweep's own points per side."""
    xa, ya = plotted(sweep)
    thin = {id(a): replace(a, step=a.step * -(-a.size // MAX_HEAT_SIDE)) for a in (xa, ya)}
    small = sweep.with_axes(thin.get(id(a), a) for a in sweep.axes)
    tx, ty = thin[id(xa)], thin[id(ya)]
    cols = small.evaluate()
    shape = (ty.size, tx.size)
    t = sweep.target
    model = model_of(t)
    panels = {m: cols[m].reshape(shape) for m in t.metrics}
    labels = {m: _metric_label(m, sweep.stage, t.convention) for m in t.metrics}
    grid, names = None, tuple[str, ...]()
    if (
        model.uses_layout(sweep.stage)
        and (model.layout.outcomes is None or len(model.layout.outcomes) > 1)
        and all(set(a.names) <= set(model.family.image or ()) for a in (xa, ya))
    ):
        names = tuple(str(s) for s in model.layout.outputs)
        grid = np.stack([cols[n].reshape(shape) for n in names], axis=-1)

    title = title_lines(sweep, None, (), f"over {xa.describe()} x {ya.describe()}")
    xlabel, ylabel = (_axis_label(a, model.family.input(a.names[0]).unit) for a in (xa, ya))
    return Heat(
        title, tx.x(np.arange(tx.size)), ty.x(np.arange(ty.size)), xlabel, ylabel, panels, labels, grid, names
    )


# -- drawing --------------------------------------------------------------------------------
def _figure(**kw):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SymcostError("--plot: needs matplotlib (pip install 'symcost[plot]')") from None
    return Figure(layout="constrained", **kw)


def _save(fig, path: str, force: bool) -> None:
    """PNG or SVG; SVG bytes are the same on every run (fixed ids, no date)."""
    import matplotlib

    ext = check_target(path, force=force, param="--plot", extensions=PLOT_FORMATS)
    meta = {"Date": None} if ext == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "symcost"}):
        atomic_write(
            path,
            lambda f: fig.savefig(f, format=ext, metadata=meta, dpi=130),
            binary=True,
            force=force,
            param="--plot",
        )


def _floats(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)  # exact ints past 2**53 round only for drawing


def draw_lines(lines: Lines, path: str, force: bool = False, note: str = "") -> None:
    """One panel per metric (a step curve per mode, measured points as circles with the
    analytic value at each as a cross), a panel of the layout outputs, dotted lines at every
    layout change; legend outside the panels."""
    from matplotlib.ticker import MaxNLocator

    metrics = list(lines.ylabels)
    tiled = [c for c in lines.curves if c.layout]
    n = len(metrics) + bool(tiled)
    fig = _figure(figsize=(11, 1.6 + 2.8 * len(metrics) + (1.8 if tiled else 0)))
    axes = fig.subplots(
        n, 1, sharex=True, squeeze=False, height_ratios=[3] * len(metrics) + [1.6] * bool(tiled)
    )[:, 0]
    colors = {c.mode: f"C{k}" for k, c in enumerate(lines.curves)}
    for ax, metric in zip(axes, metrics):
        top = max(float(np.max(_floats(c.values[metric]))) for c in lines.curves)
        scale, unit = _scale(top, UNITS[metric])
        for k, c in enumerate(lines.curves):  # dashes keep a curve visible under another
            ax.plot(
                c.x,
                _floats(c.values[metric]) / scale,
                drawstyle="steps-post",
                lw=1.7,
                color=colors[c.mode],
                ls=("-", "--", "-.", ":")[k % 4],
                label=f"{c.mode or 'analytic'} (analytic)",
            )
            for source, marker in MARKERS.items() if metric == "flops" else ():
                points = [m for m in c.measured if m[3] == source]
                if not points:
                    continue
                xs, meas, ana, _ = zip(*points)
                ax.scatter(
                    xs,
                    np.array(meas, dtype=float) / scale,
                    s=75,
                    marker=marker,
                    facecolors="none",
                    edgecolors=colors[c.mode],
                    linewidths=1.6,
                    zorder=5,
                    label=f"{c.mode or ''} measured ({source})".strip(),
                )
                ax.scatter(
                    xs,
                    np.array(ana, dtype=float) / scale,
                    s=26,
                    marker="x",
                    color="black",
                    linewidths=1.1,
                    zorder=6,
                    label="analytic at measured shapes",
                )
        ax.set_ylabel(f"{lines.ylabels[metric]} ({unit})", fontsize=9)
        ax.set_ylim(bottom=0)
    if tiled:
        ax = axes[-1]
        for c in tiled:
            for k, (name, v) in enumerate(c.layout.items()):
                ax.plot(
                    c.x,
                    v,
                    drawstyle="steps-post",
                    lw=1.3,
                    color=colors[c.mode],
                    ls=("-", "--", ":")[k % 3],
                    label=f"{c.mode}: {name}",
                )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("tile grid", fontsize=9)
        ax.set_ylim(bottom=0)
    for ax in axes:
        for s in lines.steps:
            ax.axvline(s, color="0.55", lw=0.6, ls=":", zorder=0)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel(lines.xlabel, fontsize=9)
    axes[-1].margins(x=0.012)  # markers at the ends stay whole
    handles: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if lines.steps:
        handles["layout change"] = axes[0].axvline(lines.steps[0], color="0.55", lw=0.6, ls=":", zorder=0)
    shared = ("analytic at measured shapes", "layout change")  # after the per-mode entries
    labels = sorted(handles, key=lambda k: k in shared)
    fig.legend([handles[k] for k in labels], labels, loc="outside right upper", fontsize=8)
    axes[0].set_title(lines.title, fontsize=9)
    if note:
        fig.supxlabel(
            "\n".join(textwrap.fill(n, 150) for n in note.split("\n")), fontsize=8, ha="left", x=0.01
        )
    _save(fig, path, force)


def draw_heat(heat: Heat, path: str, force: bool = False) -> None:
    """A heat map per metric and one of the tile grid (each distinct grid one colour)."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(heat.panels) + (heat.grid is not None)
    fig = _figure(figsize=(5.4 * n + 0.6, 6.2))
    axes = fig.subplots(1, n, squeeze=False)[0]
    dx = (heat.x[1] - heat.x[0]) / 2 if len(heat.x) > 1 else 0.5
    dy = (heat.y[1] - heat.y[0]) / 2 if len(heat.y) > 1 else 0.5
    extent = (heat.x[0] - dx, heat.x[-1] + dx, heat.y[0] - dy, heat.y[-1] + dy)
    for ax, (name, values) in zip(axes, heat.panels.items()):
        v = _floats(values)
        scale, unit = _scale(float(v.max()), UNITS[name])
        im = ax.imshow(
            v / scale, origin="lower", extent=extent, aspect="auto", interpolation="nearest", cmap="viridis"
        )
        fig.colorbar(im, ax=ax, shrink=0.9).set_label(f"{heat.labels[name]} ({unit})", fontsize=9)
    if heat.grid is not None:
        ax = axes[-1]
        grids, code = np.unique(heat.grid.reshape(-1, heat.grid.shape[-1]), axis=0, return_inverse=True)
        code = code.reshape(heat.grid.shape[:2])
        palette = [colormaps["tab20"](k % 20) for k in range(len(grids))]
        im = ax.imshow(
            code,
            origin="lower",
            extent=extent,
            aspect="auto",
            interpolation="nearest",
            cmap=ListedColormap(palette),
            norm=BoundaryNorm(np.arange(len(grids) + 1) - 0.5, len(grids)),
        )
        bar = fig.colorbar(im, ax=ax, shrink=0.9, ticks=np.arange(len(grids)))
        bar.ax.set_yticklabels(["x".join(str(int(g)) for g in row) for row in grids], fontsize=7)
        bar.set_label(f"tile grid ({' x '.join(heat.grid_names)})", fontsize=9)
    for ax in axes:
        ax.set_xlabel(heat.xlabel, fontsize=9)
        ax.set_ylabel(heat.ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(heat.title, fontsize=9)
    _save(fig, path, force)


def draw_simulation(result: dict, path: str, force: bool = False) -> None:
    """``symcost simulate --plot``: the first device's timeline (running sequences, KV cache in
    use, output tokens/s per event) and the CDFs of time to first token and end-to-end latency."""
    t = result["timeline"]
    fig = _figure(figsize=(11, 6.5))
    grid = fig.add_gridspec(3, 2, width_ratios=(2, 1))
    times = _floats(t["t_s"])
    panels = [
        ("running sequences", t["seqs"], ""),
        ("KV cache in use", t["kv_tokens"], "tokens"),
        ("output tokens/s", t["tokens_per_s"], "tokens/s"),
    ]
    axes: list = []
    for row, (label, values, unit) in enumerate(panels):
        ax = fig.add_subplot(grid[row, 0], sharex=axes[0] if axes else None)
        ax.step(times, _floats(values), where="pre", linewidth=0.8)
        ax.set_ylabel(f"{label} ({unit})" if unit else label)
        ax.grid(alpha=0.3)
        axes.append(ax)
    if result.get("kv_capacity_tokens"):
        axes[1].axhline(result["kv_capacity_tokens"], color="0.3", linestyle="--", linewidth=0.8)
    axes[-1].set_xlabel("time (s)")
    cdf = fig.add_subplot(grid[:, 1])
    for key, label in (("ttft_s", "time to first token"), ("e2e_s", "end-to-end")):
        x = np.sort(_floats(t[key]))
        cdf.plot(x, np.arange(1, len(x) + 1) / len(x), label=label)
    cdf.set_xlabel("latency (s)")
    cdf.set_ylabel("share of pages")
    cdf.grid(alpha=0.3)
    cdf.legend(loc="lower right")
    fig.suptitle(
        textwrap.fill(
            f"{result['family']} on {result['hardware']}, runtime {result['runtime']}: "
            f"{result['pages']:,} pages, {result['arrivals_text']}; "
            f"{result['output_tokens_per_s']:,.0f} output tokens/s"
            + (" (first device)" if result["devices"] > 1 else ""),
            110,
        ),
        fontsize=10,
    )
    _save(fig, path, force)
