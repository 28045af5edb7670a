"""A derived cost model: stage trees built lazily, closed forms per metric, compiled evaluators.

A family (see ``derivations/``) builds a :class:`Model` for chosen options; everything a user
asks of it -- formulas, breakdowns, compiled functions, single evaluations -- is answered here,
generically, from the family's declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import sympy as sp

from .arith import smax, where
from .checks import check_fraction, check_int, check_shapes, shown
from .conventions import get_convention
from .cost import Cost
from .dtypes import Precision, building, precision
from .errors import SymcostError
from .family import Family, Stage
from .hardware import Hardware, get_hardware, op_times
from .inputs import Input
from .layout import Layout
from .metrics import INT_METRICS, check_metric, check_metrics
from .render import piecewise, tidy
from .runtime import Runtime
from .tree import Node, choose, live_before

__all__ = ["Model"]

BREAKDOWNS = ("component", "kind")
BOUNDS = ("compute", "memory", "launch")  # what an op's time is bound by, in op_times' order


@dataclass(eq=False, repr=False)
class Model:
    family: Family
    options: Mapping[str, object]  # every option as resolved (defaults filled in)
    layout: Layout  # image inputs -> layout symbols (e.g. tile grid)
    named: Mapping[sp.Symbol, Callable]  # name -> definition(v) in inputs and earlier names
    stages: Mapping[str, Stage]
    weights: Callable[[], Node]  # one pass over every module, for parameter counts
    kv_elems_per_token: int  # KV-cache elements per cached token (all layers)
    runtime: Runtime
    settings: tuple[tuple[str, str], ...]  # what this configuration is, for headers
    _cache: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        """One line: the family and its declared options as resolved."""
        options = ", ".join(f"{o.name}={self.options.get(o.name)!r}" for o in self.family.options)
        return f"<Model {self.family.name}: {options}>"

    def _memo(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- names ----------------------------------------------------------------------------
    def symbols(self) -> SimpleNamespace:
        """Stage values as symbols: inputs by name, layout outputs and named quantities by symbol."""
        v = {i.name: i.symbol for i in self.family.inputs}
        v |= {str(s): s for s in self.layout.outputs}
        v |= {str(s): s for s in self.named}
        return SimpleNamespace(**v)

    def values(self, layout: tuple[int, ...], inputs: Mapping[str, int]) -> SimpleNamespace:
        """Stage values with plain ints (layout outputs, inputs), named quantities computed."""
        v = self.symbols()
        for sym, value in zip(self.layout.outputs, layout):
            setattr(v, str(sym), int(value))
        for name, value in inputs.items():
            setattr(v, name, value)
        for sym, fn in self.named.items():
            setattr(v, str(sym), fn(v))
        return v

    @property
    def definitions(self) -> dict[sp.Symbol, sp.Expr]:
        """Each named quantity's definition in symbols (may use earlier names)."""
        return self._memo(
            "definitions", lambda: {s: sp.sympify(fn(self.symbols())) for s, fn in self.named.items()}
        )

    @property
    def _expanded(self) -> dict[sp.Symbol, sp.Expr]:
        """Each named quantity's definition in inputs and layout symbols only."""

        def make() -> dict:
            out: dict = {}
            for sym, definition in self.definitions.items():  # a definition uses earlier names only
                out[sym] = definition.xreplace(out)
            return out

        return self._memo("expanded", make)

    def expand(self, expr):
        """Replace named quantities by their definitions (one pass: definitions come expanded)."""
        return sp.sympify(expr).xreplace(self._expanded)

    @property
    def quantities(self) -> dict[str, sp.Expr]:
        """Each named quantity fully expanded, keyed by name."""
        return {str(s): e for s, e in self._expanded.items()}

    # -- stages ---------------------------------------------------------------------------
    def stage(self, stage: str) -> Stage:
        return choose("stage", self.stages, stage)

    def stage_inputs(self, stage: str) -> tuple[Input, ...]:
        names = self.stage(stage).inputs
        return tuple(i for i in self.family.inputs if i.name in names)

    def uses_layout(self, stage: str) -> bool:
        names = self.stage(stage).inputs
        return all(i.name in names for i in self.layout.inputs)

    def stage_quantities(self, stage: str) -> dict[str, sp.Expr]:
        """Named quantities that the stage's inputs determine."""
        avail = {i.symbol for i in self.stage_inputs(stage)}
        image = self.uses_layout(stage)
        if image:
            avail |= set(self.layout.outputs)
        # a constant (e.g. no tiles in this mode) belongs to the image's stages only
        return {
            k: e for k, e in self.quantities.items() if e.free_symbols <= avail and (e.free_symbols or image)
        }

    def check_inputs(self, stage: str, given: Mapping[str, object], arrays: bool = False) -> dict:
        """The stage's inputs from ``given`` (checked against their bounds) and defaults; an
        input the stage does not read, or a missing required one, is an error."""
        self.stage(stage)
        for name in given:
            inp = self.family.input(name)
            if inp not in self.stage_inputs(stage):
                readers = [s for s in self.stages if name in self.stages[s].inputs]
                raise SymcostError(
                    f"{name}: stage {stage} does not read it (stages that do: {', '.join(readers) or 'none'})"
                )
        out: dict = {}
        for inp in self.stage_inputs(stage):
            if inp.name in given:
                value = given[inp.name]
                out[inp.name] = inp.check_array(value) if arrays else inp.check(value)
            elif inp.default is None:
                raise SymcostError(f"{inp.name}: required by stage {stage} ({inp.help})")
            else:
                out[inp.name] = np.asarray(inp.default, dtype=np.int64) if arrays else inp.default
        if arrays:
            check_shapes(**out)
        return out

    # -- trees ----------------------------------------------------------------------------
    def tree(self, stage: str = "vision", dtype: str = "bf16", kv_dtype: str | None = None) -> Node:
        spec, prec = self.stage(stage), precision(dtype, kv_dtype)
        return self._memo(("tree", stage, prec), lambda: self._build(spec, self.symbols(), prec))

    @staticmethod
    def _build(spec: Stage, v, prec: Precision) -> Node:
        with building(prec):
            return spec.build(v)

    def weights_tree(self) -> Node:
        return self._memo("weights", self.weights)

    def parameters(self) -> dict[str, int]:
        """Parameter count of every module (dotted path -> int), each module once."""
        return {p: int(c.params) for p, c in self.weights_tree().components().items()}

    def stage_params(self, stage: str) -> int:
        root = self.weights_tree()
        return sum(int(root.find(p).cost.params) for p in self.stage(stage).weights)

    # -- closed forms ---------------------------------------------------------------------
    def _metrics(self, cost: Cost, stage: str, convention: str, prec: Precision, v) -> dict:
        """Every integer metric of a stage's ``cost`` (expressions or ints, as ``v`` holds)."""
        spec = self.stage(stage)
        params = self.stage_params(stage)
        kv_per_token = self.kv_elems_per_token * prec.kv
        weight_bytes = prec.weight * params
        kv_in = kv_per_token * spec.kv_in(v)
        return {
            "flops": get_convention(convention).flops(cost),
            "macs": cost.macs,
            "params": params,
            "weight_bytes": weight_bytes,
            "kv_in_bytes": kv_in,
            "kv_bytes": kv_per_token * spec.kv_out(v),
            "activation_bytes": cost.peak_bytes,
            "memory_bytes": weight_bytes + kv_in + cost.peak_bytes,
            "io_bytes": cost.io_bytes,
        }

    def expressions(
        self,
        stage: str = "vision",
        convention: str = "torch",
        dtype: str = "bf16",
        kv_dtype: str | None = None,
        named: bool = False,
    ) -> dict[str, sp.Expr]:
        """All integer metrics of a stage as closed forms in layout and input symbols (``named``:
        in named quantities too), plus ``work`` (2*MACs + vector FLOPs, for arithmetic intensity)."""
        prec = precision(dtype, kv_dtype)
        get_convention(convention)
        if not named:
            return self._memo(
                ("expr", stage, convention, prec),
                lambda: {
                    m: self.expand(e)
                    for m, e in self.expressions(stage, convention, dtype, kv_dtype, True).items()
                },
            )

        def make():
            cost = self.tree(stage, dtype, kv_dtype).cost
            out = self._metrics(cost, stage, convention, prec, self.symbols())
            out["work"] = 2 * cost.macs + cost.vector_flops
            return {m: sp.sympify(e) for m, e in out.items()}

        return self._memo(("expr", stage, convention, prec, "named"), make)

    def steps(self, available) -> list[tuple[sp.Symbol, sp.Expr]]:
        """The named quantities that the symbols ``available`` determine, as ``(symbol,
        definition)`` in order (a definition uses earlier names): a program computes them first."""
        return [
            (s, d) for s, d in self.definitions.items() if self._expanded[s].free_symbols <= set(available)
        ]

    def formula(
        self,
        stage: str = "vision",
        metric: str = "flops",
        convention: str = "torch",
        *,
        by: str | None = None,
        named: bool = False,
        image: bool = False,
        dtype: str = "bf16",
        kv_dtype: str | None = None,
        hardware=None,
        compute_efficiency: float = 1.0,
        bandwidth_efficiency: float = 1.0,
        depth: int | None = None,
    ):
        """A metric as a tidy SymPy expression: total (``by=None``), per ``"component"`` (down to
        ``depth`` levels below the stage root) or per ``"kind"``.

        ``named=True`` keeps the model's named quantities (e.g. ``n_crops``) as symbols; by
        default they are expanded into layout and input symbols; ``image=True`` also
        substitutes the layout rule, giving expressions in the image inputs. ``time_s`` needs
        ``hardware``.
        """
        check_metric(metric, tuple(m for m in INT_METRICS) + ("time_s",))
        self.stage(stage)
        if by is not None:
            choose("by", dict.fromkeys(BREAKDOWNS), by)
        if depth is not None:
            if by != "component":
                raise SymcostError("depth: applies to by='component' only")
            depth = check_int("depth", depth, 0, 1 << 10)
        prec = precision(dtype, kv_dtype)
        get_convention(convention)
        if metric == "time_s":
            if hardware is None:
                raise SymcostError("hardware: time_s needs a hardware preset or file")
            if by is not None:
                raise SymcostError(f"by: time_s has no per-{by} breakdown")
            total = self.time_expressions(
                stage, hardware, dtype, kv_dtype, compute_efficiency, bandwidth_efficiency, named=True
            )["time_s"]
            return self._finish(total, named, image)
        if hardware is not None:
            raise SymcostError(f"hardware: applies to metric time_s only, not {metric}")
        if by is None:
            cost = self.tree(stage, dtype, kv_dtype).cost
            return self._finish(
                self._metrics(cost, stage, convention, prec, self.symbols())[metric], named, image
            )
        if metric in ("params", "weight_bytes", "kv_in_bytes", "kv_bytes", "memory_bytes"):
            raise SymcostError(
                f"metric: {shown(metric)} has no per-{by} breakdown; "
                "use parameters() for per-module parameters"
            )
        tree = self.tree(stage, dtype, kv_dtype)
        costs = tree.components(depth) if by == "component" else tree.by_kind()
        names = {
            "flops": lambda c: get_convention(convention).flops(c),
            "macs": lambda c: c.macs,
            "activation_bytes": lambda c: c.peak_bytes,
            "io_bytes": lambda c: c.io_bytes,
        }
        return {name: self._finish(names[metric](c), named, image) for name, c in costs.items()}

    def _finish(self, expr, named: bool, image: bool):
        expr = sp.sympify(expr)
        if not named or image:
            expr = self.expand(expr)
        if not image:
            return tidy(expr, self._collect_by())
        # one branch per case of the layout rule, the outcome substituted as numbers (substituting
        # the rule's Piecewise into the expression's own branches would explode)
        outputs = self.layout.outputs
        return piecewise(
            (tidy(expr.xreplace(dict(zip(outputs, map(sp.sympify, values)))), self._collect_by()), cond)
            for cond, values in self.layout.pieces
        )

    def _collect_by(self) -> tuple[sp.Symbol, ...]:
        serving = self.family.serving
        return (self.family.input(serving.batch).symbol,) if serving else ()

    # -- time -----------------------------------------------------------------------------
    def _times(
        self,
        tree: Node,
        stage: str,
        hw: Hardware,
        prec: Precision,
        ce: float,
        be: float,
        v,
        shares: bool = False,
    ) -> dict:
        """``time_s`` and the stage's own latencies; with ``shares`` (numeric trees only) also the
        time of ops bound by compute, memory and launches, and the stage's ``bound``."""
        spec = self.stage(stage)
        ops = [(path, op_times(c, hw, prec, self.runtime, graph, ce, be)) for path, c, graph in tree.leaves()]
        op_s = [(path, smax(smax(*t[:2]), t[2])) for path, t in ops]  # each op takes the largest
        total_of = (lambda xs: sum(xs, 0.0)) if shares else (lambda xs: sp.Add(*xs))  # Add: one flatten

        def seconds(*under):
            return total_of(
                [
                    s
                    for path, s in op_s
                    if not under or any(path == u or path.startswith(u + ".") for u in under)
                ]
            )

        out = {"time_s": seconds()}
        for timing in spec.timings:
            total = seconds(*(f"{tree.name}.{p}" for p in timing.paths))
            per = timing.per(v) if timing.per else 1
            out[timing.name] = (
                where(sp.sympify(per) >= 1, total / per, 0)
                if isinstance(per, sp.Basic)
                else (total / per if per >= 1 else 0.0)
            )
        if shares:
            out.update(_bounds(t for _, t in ops))
        return out

    def time_expressions(
        self,
        stage,
        hardware,
        dtype="bf16",
        kv_dtype=None,
        compute_efficiency=1.0,
        bandwidth_efficiency=1.0,
        named=False,
    ) -> dict:
        """Times as closed forms (see :mod:`symcost.hardware` for the model)."""
        hw = get_hardware(hardware)
        ce = check_fraction("compute_efficiency", compute_efficiency)
        be = check_fraction("bandwidth_efficiency", bandwidth_efficiency)
        prec = precision(dtype, kv_dtype)
        key = ("time", stage, hw, prec, ce, be)
        if not named:
            return self._memo(
                (*key, "expanded"),
                lambda: {
                    k: self.expand(e)
                    for k, e in self.time_expressions(stage, hw, dtype, kv_dtype, ce, be, named=True).items()
                },
            )

        def make():
            tree = self.tree(stage, dtype, kv_dtype)
            times = self._times(tree, stage, hw, prec, ce, be, self.symbols())
            return {k: sp.sympify(e) for k, e in times.items()}

        return self._memo(key, make)

    # -- layout ---------------------------------------------------------------------------
    def tile_expressions(self) -> dict:
        return dict(zip(self.layout.outputs, self.layout.expressions))

    def tile_grid(self, *arrays) -> tuple[np.ndarray, ...]:
        """The layout's outputs (e.g. ``(w_tiles, h_tiles)``) as int64 arrays for its input arrays."""
        if len(arrays) != len(self.layout.inputs):
            raise SymcostError(
                f"tile_grid: expected {len(self.layout.inputs)} arrays "
                f"({', '.join(i.name for i in self.layout.inputs)}), got {len(arrays)}"
            )
        checked = [i.check_array(a) for i, a in zip(self.layout.inputs, arrays)]
        check_shapes(**{i.name: a for i, a in zip(self.layout.inputs, checked)})
        return self.layout.at(*np.broadcast_arrays(*checked))

    # -- evaluation -----------------------------------------------------------------------
    def _parse_call(self, args, stage):
        """``(image values..., [stage])`` positional arguments -> (stage, {image input: value})."""
        args = list(args)
        if args and isinstance(args[-1], str):
            if stage is not None:
                raise SymcostError("stage: given twice")
            stage = args.pop()
        image = self.family.image or ()
        if len(args) > len(image):
            raise SymcostError(
                f"expected at most {len(image)} positional values "
                f"({', '.join(image)}) and a stage, got {len(args)}"
            )
        return stage or self.family.default_stage, dict(zip(image, args))

    def evaluate(
        self,
        *args,
        stage: str | None = None,
        convention: str = "torch",
        dtype: str = "bf16",
        kv_dtype: str | None = None,
        hardware=None,
        compute_efficiency: float = 1.0,
        bandwidth_efficiency: float = 1.0,
        steps: bool = False,
        **inputs,
    ) -> dict:
        """The numeric model at one point, ``evaluate(*image, stage, **inputs)`` (image values in the
        family's ``image`` order, e.g. width and height): the cost tree built from plain ints.

        Returns the layout outputs, named quantities, every integer metric, ``components``
        (dotted path -> FLOPs under ``convention``) and, with ``hardware``, times. ``steps=True``
        adds ``steps``: per step of the stage (each child of its root, in order) the device memory
        when it peaks, the KV cache when it ends and, with ``hardware``, its time and bound.
        NB: only the sum over decode steps touches SymPy (a one-variable power sum).
        """
        stage, image = self._parse_call(args, stage)
        values = self.check_inputs(stage, {**image, **inputs})
        prec = precision(dtype, kv_dtype)
        conv = get_convention(convention)
        ce = check_fraction("compute_efficiency", compute_efficiency)
        be = check_fraction("bandwidth_efficiency", bandwidth_efficiency)
        hw = get_hardware(hardware) if hardware is not None else None
        if hw is None and (ce != 1.0 or be != 1.0):
            raise SymcostError("compute_efficiency/bandwidth_efficiency: apply only with hardware")
        if not isinstance(steps, bool):
            raise SymcostError(f"steps: {shown(steps)} is not True or False")
        grid = (1,) * len(self.layout.outputs)
        out: dict = {}
        if self.uses_layout(stage):
            grid = tuple(int(g) for g in self.tile_grid(*[values[i.name] for i in self.layout.inputs]))
            out.update({str(s): g for s, g in zip(self.layout.outputs, grid)})
        v = self.values(grid, values)
        tree = self._build(self.stage(stage), v, prec)
        out.update({k: int(getattr(v, k)) for k in self.stage_quantities(stage)})
        cost = tree.cost
        out.update({k: int(x) for k, x in self._metrics(cost, stage, convention, prec, v).items()})
        work = 2 * cost.macs + cost.vector_flops
        out["arithmetic_intensity"] = float(work) / float(cost.io_bytes) if cost.io_bytes else 0.0
        out["components"] = {p: int(conv.flops(c)) for p, c in tree.components().items()}
        if hw is not None:
            times = self._times(tree, stage, hw, prec, ce, be, v, shares=True)
            out.update({k: (t if isinstance(t, str) else float(t)) for k, t in times.items()})
        if steps:
            ops = (
                []
                if hw is None
                else [(p, op_times(c, hw, prec, self.runtime, g, ce, be)) for p, c, g in tree.leaves()]
            )
            out["steps"] = _steps(
                tree, out["weight_bytes"] + out["kv_in_bytes"], out["kv_in_bytes"], ops, hw is not None
            )
        return out

    def compile(
        self,
        stage: str = "vision",
        metrics=("flops",),
        convention: str = "torch",
        dtype: str = "bf16",
        kv_dtype: str | None = None,
        components: bool = False,
        hardware=None,
        compute_efficiency: float = 1.0,
        bandwidth_efficiency: float = 1.0,
    ):
        """A vectorised evaluator of the given metrics (and the stage's quantities); ``time_s``
        (and the stage's latencies) need ``hardware``."""
        from .evaluator import Evaluator

        metrics = check_metrics(metrics)
        self.stage(stage)
        get_convention(convention)
        prec = precision(dtype, kv_dtype)
        if not isinstance(components, bool):
            raise SymcostError(f"components: {shown(components)} is not True or False")
        hw = get_hardware(hardware) if hardware is not None else None
        if "time_s" in metrics and hw is None:
            raise SymcostError("hardware: metric time_s needs a hardware preset or file")
        ce = check_fraction("compute_efficiency", compute_efficiency)
        be = check_fraction("bandwidth_efficiency", bandwidth_efficiency)
        if hw is None and (ce != 1.0 or be != 1.0):
            raise SymcostError("compute_efficiency/bandwidth_efficiency: apply only with hardware")
        key = ("compile", stage, metrics, convention, prec, components, hw, ce, be)
        return self._memo(
            key, lambda: Evaluator(self, stage, metrics, convention, prec, components, hw, ce, be)
        )


def _bounds(times) -> dict:
    """Seconds of the ops bound by compute, by memory and by launches (each op counted under the
    largest of its three times), and ``bound``: the largest of those sums."""
    parts = dict.fromkeys(BOUNDS, 0.0)
    for t in times:
        k = max(range(3), key=lambda i: t[i])
        parts[BOUNDS[k]] += float(t[k])
    return {**{f"{k}_bound_s": x for k, x in parts.items()}, "bound": max(parts, key=lambda k: parts[k])}


def _steps(tree: Node, base_bytes: int, kv_in_bytes: int, ops: list, timed: bool) -> dict:
    """Per child of a numeric stage tree's root (a plain ``seq``): ``memory_bytes`` when it peaks
    (``base_bytes``, i.e. weights and the input cache, plus what the liveness walk holds), the
    ``kv_bytes`` held when it ends (the input cache and the growth of it and earlier steps) and,
    with times, its ``time_s`` and bound."""
    out = {}
    kv = kv_in_bytes
    for child, live in live_before(tree.children):
        kv += int(child.cost.retained_bytes)
        step: dict = {"memory_bytes": int(base_bytes + live + child.cost.peak_bytes), "kv_bytes": kv}
        if timed:
            under = f"{tree.name}.{child.name}"
            mine = [t for path, t in ops if path == under or path.startswith(under + ".")]
            step["time_s"] = float(sum(max(t) for t in mine))
            step.update(_bounds(mine))
        out[child.name] = step
    return out
