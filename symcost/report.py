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

__all__ = [
    "settings_lines",
    "applies",
    "holds_kv",
    "reads_kv",
    "time_line",
    "formulas_text",
    "layout_text",
    "table",
    "COLUMNS",
    "human",
]

# column -> (title, unit, value of one unit in the metric's base unit): one unit per column,
# whatever the rows and the run, so two tables read side by side (times in ms as `plan`
# prints them, bytes in GB as hardware memory is given)
COLUMNS = {
    "flops": ("flops", "GFLOP", 1e9),
    "macs": ("macs", "GMAC", 1e9),
    "params": ("params", "M", 1e6),
    "weight_bytes": ("weights", "GB", 1e9),
    "kv_in_bytes": ("kv in", "GB", 1e9),
    "kv_bytes": ("kv after", "GB", 1e9),
    "activation_bytes": ("activations", "GB", 1e9),
    "memory_bytes": ("memory", "GB", 1e9),
    "io_bytes": ("io", "GB", 1e9),
    "arithmetic_intensity": ("intensity", "FLOP/B", 1),
    "time_s": ("time", "ms", 1e-3),
    "ttft_s": ("ttft", "ms", 1e-3),
    "tpot_s": ("tpot", "ms", 1e-3),
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


# LaTeX source characters per line of a long sum: TeX refuses a line over ~5.8 m (a time formula
# is a sum of a hundred maxima), and a reader wants it to fit a page anyway
_TEX_LINE = 160


def _equation(name: str, expr, latex: bool) -> str:
    """``name = expr``; in LaTeX a long sum continues on ``&\\quad + ...`` lines of the block."""
    if not latex:
        return f"{name} = {render(expr)}"
    if not isinstance(expr, sp.Add) or len(_render(expr, True)) <= _TEX_LINE:
        return f"{name} &= {_render(expr, True)}"
    pieces = []
    for term in expr.as_ordered_terms():
        negative = term.could_extract_minus_sign()
        pieces.append(("- " if negative else "+ ") + _render(-term if negative else term, True))
    pieces[0] = pieces[0].removeprefix("+ ")
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + len(piece) > _TEX_LINE:
            lines.append(piece)
        else:
            lines[-1] += " " + piece
    return " \\\\\n".join([f"{name} &= {lines[0]}"] + [rf"&\quad {ln}" for ln in lines[1:]])


def settings_lines(
    model: Model,
    stage: str | None = None,
    convention: str | None = None,
    prec: Precision | None = None,
    inputs: dict | None = None,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """What every number below assumes: the model's settings that can change the stage's numbers,
    the stage, the counting convention, dtypes and the inputs (``skip``: settings shown as table
    columns instead)."""
    parts = [f"{k} {v}" for k, v in model.settings if k not in skip and applies(model, k, stage)]
    lines = ["# " + ", ".join(parts)]
    if stage is not None:
        lines.append(f"# stage {stage}: {model.stage(stage).summary}")
    if convention is not None:
        lines.append(f"# convention {convention}: {get_convention(convention).summary}")
    if prec is not None:
        kv = f", kv_dtype {prec.kv_dtype}" if stage is None or holds_kv(model, stage) else ""
        lines.append(f"# dtype {prec.dtype} (activations {_act_name(prec)}){kv}")
    if inputs:
        lines.append(
            "# inputs: " + ", ".join(f"{k} {model.family.input(k).symbol} = {v:,}" for k, v in inputs.items())
        )
    return lines


def applies(model: Model, setting: str, stage: str | None) -> bool:
    """Whether a setting can change a stage's numbers. Rule: every setting can, unless it is an
    option that declares the stages it changes (``Option.stages``) and ``stage`` is not one of
    them (e.g. the decoder's attention kernel on a vision stage): the family knows, the engine
    cannot tell without building every alternative."""
    option = next((o for o in model.family.options if o.name == setting), None)
    return stage is None or option is None or option.stages is None or stage in option.stages


def holds_kv(model: Model, stage: str) -> bool:
    """Whether the stage reads or leaves a KV cache (else the KV dtype changes none of its numbers)."""
    spec, v = model.stage(stage), model.symbols()
    return not (sp.sympify(spec.kv_in(v)) == 0 and sp.sympify(spec.kv_out(v)) == 0)


def reads_kv(model: Model, stage: str) -> bool:
    """Whether the stage starts with a KV cache (its ``kv_in_bytes`` can be other than 0)."""
    return sp.sympify(model.stage(stage).kv_in(model.symbols())) != 0


def _act_name(prec: Precision) -> str:
    return {4: "fp32", 2: "bf16" if prec.dtype in ("bf16", "fp8") else "fp16"}[prec.act]


def time_line(model: Model, hw: Hardware, prec: Precision, ce: float, be: float) -> str:
    """One line saying what ``time_s`` assumes on ``hw``."""
    r = model.runtime
    graph = (
        f", {r.graph_floor_s * 1e6:g} us inside CUDA graphs" if r.graph_floor_s != r.kernel_floor_s else ""
    )
    peak = hw.matmul_flops_per_s(prec.dtype) / 1e12
    return (
        f"# time on {hw.name}: per op max(compute at {ce * 100:.4g}% of {peak:g} TFLOP/s "
        f"{prec.dtype} matmul and {hw.vector_tflops:g} TFLOP/s vector, memory at {be * 100:.4g}% of "
        f"{hw.memory_gbps:g} GB/s, kernels x {r.kernel_floor_s * 1e6:g} us launch floor{graph} "
        f"({r.name})), summed over ops"
    )


def human(x) -> str:
    """4 significant digits with thousands separators; ints exact below 10^6."""
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x)
    if isinstance(x, int) and abs(x) < 10**6:
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
    """Right-aligned columns; metrics in the fixed unit of their title (missing values: -)."""
    titles, cells = [], []
    for c in columns:
        values = [r.get(c) for r in rows]
        if c in COLUMNS:
            name, unit, size = COLUMNS[c]
            titles.append(f"{name} [{unit}]")
            cells.append(
                [
                    human(v / size) if isinstance(v, (int, float)) and not isinstance(v, bool) else human(v)
                    for v in values
                ]
            )
        else:
            titles.append(c)
            cells.append([human(v) for v in values])
    widths = [max(len(t), *(len(v) for v in col)) for t, col in zip(titles, cells)]
    out = ["  ".join(t.rjust(w) for t, w in zip(titles, widths))]
    for k in range(len(rows)):
        out.append("  ".join(col[k].rjust(w) for col, w in zip(cells, widths)))
    return "\n".join(out)


_TEX_SPECIAL = {c: "\\" + c for c in "#$%&_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}
# metrics whose numbers depend on dtypes (the others count work, not storage)
_DTYPE_METRICS = (
    "weight_bytes",
    "kv_in_bytes",
    "kv_bytes",
    "activation_bytes",
    "memory_bytes",
    "io_bytes",
    "time_s",
)


def _tex_text(text: str) -> str:
    return r"\text{" + "".join(_TEX_SPECIAL.get(c, c) for c in text) + "}"


def _block(head: list[str], body: list[str], latex: bool) -> str:
    """Comment lines then ``name = expr`` lines; LaTeX: ``%`` comments and one align* block."""
    if not latex:
        return "\n".join(head + ["  " + b for b in body])
    return "\n".join(
        ["%" + h[1:] for h in head]
        + [r"% needs \usepackage{amsmath} (\allowdisplaybreaks to break across pages)", r"\begin{align*}"]
        + [b + r" \\" for b in body[:-1]]
        + body[-1:]
        + [r"\end{align*}"]
    )


def formulas_text(
    model: Model,
    stage: str,
    metric: str,
    convention: str,
    *,
    latex: bool = False,
    depth: int = 3,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    hardware=None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> str:
    """The closed forms of one metric: named quantities, the total, then every component down
    to ``depth`` levels below the stage root. LaTeX: one ``align*`` block, ``%`` comments."""
    from .dtypes import precision
    from .hardware import get_hardware

    prec = precision(dtype, kv_dtype)
    head = settings_lines(
        model, stage, convention if metric == "flops" else None, prec if metric in _DTYPE_METRICS else None
    )
    if hardware is not None:
        head.append(time_line(model, get_hardware(hardware), prec, compute_efficiency, bandwidth_efficiency))
    head.append(f"# metric {metric} [{METRICS[metric][0]}]: {METRICS[metric][1]}")
    image = set(model.family.image or ())
    symbols = [f"{i.symbol} = {i.name} [{i.unit}]" for i in model.stage_inputs(stage) if i.name not in image]
    if symbols:
        head.append("# symbols: " + ", ".join(symbols))
    if model.uses_layout(stage):
        outs = ", ".join(map(str, model.layout.outputs))
        head.append(
            f"# ({outs}): the layout rule of "
            f"({', '.join(i.name for i in model.layout.inputs)}); see `symcost formulas "
            f"{model.family.name} --layout`"
        )
    body: list[str] = []
    quantities = model.stage_quantities(stage)
    for sym, definition in model.definitions.items():
        if str(sym) in quantities:
            body.append(_equation(_render(sym, latex), definition, latex))
    if metric == "time_s":
        total = model.formula(
            stage,
            metric,
            named=True,
            hardware=hardware,
            dtype=dtype,
            kv_dtype=kv_dtype,
            compute_efficiency=compute_efficiency,
            bandwidth_efficiency=bandwidth_efficiency,
        )
    else:
        total = model.formula(stage, metric, convention, named=True, dtype=dtype, kv_dtype=kv_dtype)
    body.append(_equation(_tex_text(metric) if latex else metric, total, latex))
    if metric not in ("params", "weight_bytes", "kv_in_bytes", "kv_bytes", "memory_bytes", "time_s"):
        parts = model.formula(
            stage, metric, convention, by="component", named=True, dtype=dtype, kv_dtype=kv_dtype, depth=depth
        )
        for path, expr in parts.items():
            if 0 < path.count(".") <= depth:
                body.append(_equation(_tex_text(path) if latex else path, expr, latex))
    return _block(head, body, latex)


def layout_text(model: Model, latex: bool = False) -> str:
    """The layout rule as ordered cases: the first condition that holds gives the outputs."""
    layout = model.layout
    outs = ", ".join(map(str, layout.outputs))
    head = [
        f"# ({outs}) of ({', '.join(i.name for i in layout.inputs)}): {layout.describe()}; "
        "first matching case wins"
    ]
    target = _render(sp.Tuple(*layout.outputs), latex)
    body = []
    for k, (cond, values) in enumerate(layout.pieces):
        value = _render(sp.Tuple(*values), latex)
        if not latex:
            body.append(f"{value}  if  {_render(cond, latex)}")
            continue
        when = (
            r"\text{otherwise}"
            if cond is sp.true
            else (r"\text{if } " if k == 0 else r"\text{else if } ") + _render(cond, latex)
        )
        body.append(f"{target if k == 0 else ''} &= {value} && {when}")
    return _block(head, body, latex)
