"""Human-readable output: self-describing headers, tidy closed forms (text or LaTeX), and tables
with units in every column title."""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .conventions import get_convention
from .dtypes import Precision
from .hardware import Hardware
from .metrics import METRICS
from .model import Model
from .render import render

__all__ = ["settings_lines", "time_line", "formulas_text", "layout_text", "table", "COLUMNS",
           "human"]

# column -> (title with unit, divisor)
COLUMNS = {
    "flops": ("flops [GFLOP]", 1e9), "macs": ("macs [GMAC]", 1e9),
    "params": ("params [M]", 1e6), "weight_bytes": ("weights [GB]", 1e9),
    "kv_bytes": ("kv [GB]", 1e9), "activation_bytes": ("activations [GB]", 1e9),
    "memory_bytes": ("memory [GB]", 1e9), "io_bytes": ("io [GB]", 1e9),
    "arithmetic_intensity": ("intensity [FLOP/B]", 1), "time_s": ("time [ms]", 1e-3),
    "ttft_s": ("ttft [ms]", 1e-3), "tpot_s": ("tpot [ms]", 1e-3),
}


class _Latex(LatexPrinter):
    """LaTeX that compiles with amsmath alone: our functions as upright operator names."""

    def _print_fvcore_einsum(self, expr, exp=None):
        return rf"\operatorname{{fvcore\_einsum}}\left({self._print(expr.args[0])}\right)"

    def _print_expected_distinct(self, expr, exp=None):
        args = ", ".join(self._print(a) for a in expr.args)
        return rf"\operatorname{{expected\_distinct}}\left({args}\right)"


def _render(expr, latex: bool) -> str:
    return _Latex().doprint(expr) if latex else render(expr)


def settings_lines(model: Model, stage: str | None = None, convention: str | None = None,
                   prec: Precision | None = None, inputs: dict | None = None,
                   skip: tuple[str, ...] = ()) -> list[str]:
    """What every number below assumes: the model's settings, the stage, the counting
    convention, dtypes and the inputs (``skip``: settings shown as table columns instead)."""
    lines = ["# " + ", ".join(f"{k} {v}" for k, v in model.settings if k not in skip)]
    if stage is not None:
        lines.append(f"# stage {stage}: {model.stage(stage).summary}")
    if convention is not None:
        lines.append(f"# convention {convention}: {get_convention(convention).summary}")
    if prec is not None:
        lines.append(f"# dtype {prec.dtype} (activations {_act_name(prec)}), kv_dtype {prec.kv_dtype}")
    if inputs:
        lines.append("# " + ", ".join(f"{k} {v}" for k, v in inputs.items()))
    return lines


def _act_name(prec: Precision) -> str:
    return {4: "fp32", 2: "bf16" if prec.dtype in ("bf16", "fp8") else "fp16"}[prec.act]


def time_line(model: Model, hw: Hardware, prec: Precision, ce: float, be: float) -> str:
    r = model.runtime
    graph = f", {r.graph_floor_s * 1e6:g} us inside CUDA graphs" if r.graph_floor_s != r.kernel_floor_s \
        else ""
    return (f"# time on {hw.name}: per op max(compute at {ce:.0%} of {hw.matmul_flops_per_s(prec.dtype) / 1e12:g} "
            f"TFLOP/s {prec.dtype} matmul and {hw.vector_tflops:g} TFLOP/s vector, memory at {be:.0%} of "
            f"{hw.memory_gbps:g} GB/s, kernels x {r.kernel_floor_s * 1e6:g} us launch floor{graph} "
            f"({r.name})), summed over ops")


def human(x) -> str:
    """4 significant digits with thousands separators; ints exact below 10^6."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int) and abs(x) < 10 ** 6:
        return f"{x:,}"
    if isinstance(x, (int, float)):
        x = float(x)
        if x == 0:
            return "0"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.4g}"
    return str(x)


def table(rows: list[dict], columns: list[str]) -> str:
    """Right-aligned columns; known metrics scaled to the unit in their title."""
    titles, cells = [], []
    for c in columns:
        title, scale = COLUMNS.get(c, (c, None))
        titles.append(title)
        cells.append([human(r.get(c, "")) if scale is None or not isinstance(r.get(c), (int, float))
                      else human(r[c] / scale) for r in rows])
    widths = [max(len(t), *(len(v) for v in col)) for t, col in zip(titles, cells)]
    out = ["  ".join(t.rjust(w) for t, w in zip(titles, widths))]
    for k in range(len(rows)):
        out.append("  ".join(col[k].rjust(w) for col, w in zip(cells, widths)))
    return "\n".join(out)


def formulas_text(model: Model, stage: str, metric: str, convention: str, *, latex: bool = False,
                  depth: int = 3, dtype: str = "bf16", kv_dtype: str | None = None,
                  hardware=None, compute_efficiency: float = 1.0,
                  bandwidth_efficiency: float = 1.0) -> str:
    """The closed forms of one metric: named quantities, the total, then every component down
    to ``depth`` levels below the stage root. LaTeX: one ``align*`` block, ``%`` comments."""
    from .dtypes import precision
    from .hardware import get_hardware
    prec = precision(dtype, kv_dtype)
    comment = "%" if latex else "#"
    unit = METRICS[metric][0]
    head = settings_lines(model, stage, convention if metric in ("flops",) else None, prec)
    if hardware is not None:
        head.append(time_line(model, get_hardware(hardware), prec, compute_efficiency,
                              bandwidth_efficiency))
    head.append(f"# metric {metric} [{unit}]: {METRICS[metric][1]}")
    if model.uses_layout(stage):
        outs = ", ".join(map(str, model.layout.outputs))
        head.append(f"# ({outs}): the layout rule of "
                    f"({', '.join(i.name for i in model.layout.inputs)}); see `symcost formulas "
                    f"{model.family.name} --layout`")
    lines = [comment + h[1:] for h in head]
    if latex:
        lines += [r"% needs \usepackage{amsmath}", r"\begin{align*}"]
    eq = " &= " if latex else " = "
    end = r" \\" if latex else ""
    body: list[str] = []
    quantities = model.stage_quantities(stage)
    for sym, definition in model.definitions.items():
        if str(sym) in quantities:
            body.append(f"{_render(sym, latex)}{eq}{_render(definition, latex)}")
    kw = dict(dtype=dtype, kv_dtype=kv_dtype)
    if metric == "time_s":
        total = model.formula(stage, metric, named=True, hardware=hardware,
                              compute_efficiency=compute_efficiency,
                              bandwidth_efficiency=bandwidth_efficiency, **kw)
    else:
        total = model.formula(stage, metric, convention, named=True, **kw)
    name = sp.Symbol(metric)
    body.append(f"{_render(name, latex)}{eq}{_render(total, latex)}")
    if metric not in ("params", "weight_bytes", "kv_bytes", "memory_bytes", "time_s"):
        parts = model.formula(stage, metric, convention, by="component", named=True, **kw)
        for path, expr in parts.items():
            if 0 < path.count(".") <= depth:
                label = rf"\text{{{path.replace('_', chr(92) + '_')}}}" if latex else path
                body.append(f"{label}{eq}{_render(expr, latex)}")
    if latex:
        lines += [b + end for b in body[:-1]] + body[-1:] + [r"\end{align*}"]
    else:
        lines += ["  " + b for b in body]
    return "\n".join(lines)


def layout_text(model: Model, latex: bool = False) -> str:
    """The layout rule as ordered cases: the first condition that holds gives the outputs."""
    outs = ", ".join(map(str, model.layout.outputs))
    lines = [f"# ({outs}) of ({', '.join(i.name for i in model.layout.inputs)}): "
             f"{model.layout.describe()}; first matching case wins"]
    for cond, values in model.layout.pieces:
        lines.append(f"  {tuple(values)}  if  {_render(cond, latex)}")
    return "\n".join(lines)
