"""Human-readable output: tidy closed forms (text or LaTeX) and aligned tables."""
from __future__ import annotations

import sympy as sp

from .conventions import get_convention
from .model import Model
from .symbols import B

__all__ = ["tidy", "render", "formulas_text", "table"]


def tidy(expr) -> sp.Expr:
    """Fold branches outward and collect each branch by batch ``B``: ``B*(a + b*n_crops)``."""
    expr = sp.piecewise_fold(sp.sympify(expr))
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(tidy(e), c) for e, c in expr.args])
    return sp.collect(sp.expand(expr), B)


def render(expr, latex: bool = False) -> str:
    expr = tidy(expr)
    return sp.latex(expr) if latex else sp.sstr(expr, order="grlex")


def formulas_text(model: Model, stage: str, metric: str, convention: str, *, latex: bool = False,
                  depth: int = 3, **options) -> str:
    """The closed forms of one metric: named quantities, the total, then every component down
    to ``depth`` levels below the stage root."""
    eq = " = " if not latex else " &= "
    opts = model.options
    lines = [f"# {model.family}, preset {model.preset}, vision_mode {opts['vision_mode']}, "
             f"stage {stage}, metric {metric}, convention {convention}",
             f"# preset: {opts['summary']}; stage: {model.stage(stage).summary}; convention: "
             f"{get_convention(convention).summary}"]
    if model.layout is not None:
        lines.append("# (w_tiles, h_tiles): the vendor's tile rule of (W, H); "
                     "see `symcost formulas --layout`")
    lines.append("where")
    for sym, definition in model.definitions.items():
        lines.append(f"  {render(sym, latex)}{eq}{render(definition, latex)}")
    lines.append("total")
    total = model.formula(stage, metric, convention, named=True, **options)
    lines.append(f"  {metric}{eq}{render(total, latex)}")
    if metric in ("params", "weight_bytes", "kv_bytes"):
        return "\n".join(lines)
    lines.append("per component")
    parts = model.formula(stage, metric, convention, by="component", named=True, **options)
    for path, expr in parts.items():
        if 0 < path.count(".") <= depth:
            lines.append(f"  {path}{eq}{render(expr, latex)}")
    return "\n".join(lines)


def table(rows: list[dict], columns: list[str]) -> str:
    """Right-aligned columns; ints with thousands separators, floats in 4 significant digits."""
    def cell(x):
        if isinstance(x, bool) or x is None:
            return str(x)
        if isinstance(x, int):
            return f"{x:,}"
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)
    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[k]) for b in body)) for k, c in enumerate(columns)]
    out = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(out)


def layout_text(model: Model, latex: bool = False) -> str:
    """The tile rule as ordered cases: the first condition that holds gives (w_tiles, h_tiles)."""
    if model.layout is None:
        return "(w_tiles, h_tiles) = (1, 1): this preset and mode run no tiles"
    rule = model.layout
    lines = [f"# tile rule: tile {rule.tile}px, {rule.min_num} <= w_tiles*h_tiles <= "
             f"{rule.max_num}; first matching case wins"]
    for cond, (i, j) in rule.pieces:
        text = sp.latex(cond) if latex else sp.sstr(cond)
        lines.append(f"  ({i}, {j})  if  {text}")
    return "\n".join(lines)
