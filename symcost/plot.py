"""The sweep plot: analytic crops and nocrop curves against image size, tile-count steps, and
measured points overlaid. matplotlib is imported lazily (the ``plot`` extra)."""
from __future__ import annotations

import csv
import json

import numpy as np

from .errors import SymcostError
from .files import atomic_write, check_target

__all__ = ["load_measured", "plot_curves", "sweep_plot", "PLOT_FORMATS"]

_COUNTER = {"FlopCounterMode": "torch", "fvcore": "fvcore"}
PLOT_FORMATS = ("png", "svg")


def sweep_plot(args, family, model, stage, widths, heights, metric, inputs) -> None:
    """Square images where the grid has them (W = H), else the first height's row."""
    import symcost

    common = np.intersect1d(widths, heights)
    w, h = (common, common) if len(common) > 1 else (widths, np.full_like(widths, heights[0]))
    measured = load_measured(args.measured, model.options.get("preset"), args.convention) \
        if args.measured and stage == "vision" and metric == "flops" else []
    curves, tiles, at_measured = {}, None, []
    opts = {k: v for k, v in vars(args).items() if k in {o.name for o in family.options} and v}
    for mode in ("crops", "nocrop"):
        m = symcost.load(family.name, **{**opts, "vision_mode": mode})
        ev = m.compile(stage, (metric,), args.convention, dtype=args.dtype, kv_dtype=args.kv_dtype)
        out = ev(w, h, **inputs)
        curves[mode] = out[metric]
        if mode == "crops":
            tiles = out["w_tiles"] * out["h_tiles"] * (out["n_crops"] > 0)
            at_measured = [int(ev(mw, mh, **inputs)[metric]) for mw, mh, _ in measured]
    title = (f"{family.name} {model.options.get('preset')}: {stage} {metric} ({args.convention})"
             + ("" if len(common) > 1 else f", height {heights[0]}"))
    plot_curves(args.plot, np.sqrt(w * h), curves, tiles, measured, at_measured, title, metric,
                force=args.force)


def load_measured(path: str, preset: str, convention: str) -> list[tuple[int, int, int]]:
    """``(width, height, vision FLOPs)`` points from the reference CSV or a ``validate --json`` file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            if path.endswith(".json"):
                rows = json.load(f)
                return [(int(r["width"]), int(r["height"]), int(r["measured"]["vision_total"]))
                        for r in rows if r.get("preset") == preset
                        and r.get("convention") == convention and "measured" in r]
            rows = list(csv.DictReader(f))
            key = preset.replace("-", "_")
            return [(int(r["W"]), int(r["H"]), int(r["vision_total"])) for r in rows
                    if r["preset"].startswith(key) and _COUNTER.get(r["counter"]) == convention]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise SymcostError(f"--measured: cannot read {path!r} ({e.__class__.__name__})")


def plot_curves(path: str, sides: np.ndarray, curves: dict[str, np.ndarray], tiles: np.ndarray,
                measured: list[tuple[int, int, int]], analytic_at_measured: list[int],
                title: str, ylabel: str, force: bool = False) -> None:
    """Curves over ``sides`` (px, sqrt(W*H)), the tile count on a second axis, measured dots
    with the analytic value at each measured shape on top."""
    ext = check_target(path, force=force, param="--plot", extensions=PLOT_FORMATS)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymcostError("--plot: needs matplotlib (pip install 'symcost[plot]')") from None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, values in curves.items():
        ax.plot(sides, values.astype(float), label=f"analytic {label}", lw=1.6)
    if measured:
        x = [np.sqrt(w * h) for w, h, _ in measured]
        ax.scatter(x, [v for _, _, v in measured], color="k", zorder=5, s=28,
                   label="measured (vendor code)")
        ax.scatter(x, analytic_at_measured, color="tab:red", marker="x", zorder=6, s=28,
                   label="analytic at measured shapes")
    ax.set_xlabel("image size sqrt(W*H), px")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.step(sides, tiles, where="post", color="grey", alpha=0.5, lw=1, label="tiles (crops)")
    twin.set_ylabel("tiles")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format=ext), binary=True, force=force,
                 param="--plot")
    plt.close(fig)
