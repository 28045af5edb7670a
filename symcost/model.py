"""A derived cost model: stage trees built lazily, closed forms per metric, compiled evaluators.

A derivation (see ``derivations/``) fills a :class:`Model` with its stages; everything a user
asks of the model -- formulas, breakdowns, compiled functions -- is answered here, generically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Mapping

import numpy as np
import sympy as sp

from .checks import check_efficiency, check_int, check_ints, check_shapes
from .compile import CHUNK, CompiledFunction
from .conventions import get_convention
from .cost import Cost
from .errors import SymcostError
from .hardware import Hardware, get_hardware, roofline_seconds
from .layout import TileRule
from .metrics import METRICS, cost_metrics, dtype_bytes, io_bytes
from .arith import where
from .symbols import ARGUMENTS, h_tiles, stage_vars, w_tiles
from .tree import Node, choose

__all__ = ["Model", "Stage", "ATTENTION"]

ATTENTION = ("eager", "flash")


@dataclass(frozen=True)
class Stage:
    build: Callable[[SimpleNamespace, str], Node]  # (stage vars, attention variant) -> tree
    weights: tuple[str, ...]      # paths in the weights tree of the modules this stage runs
    kv_tokens: Callable[[SimpleNamespace], object]  # tokens per sequence cached after the stage
    summary: str


@dataclass(eq=False)
class Model:
    family: str
    preset: str
    options: Mapping[str, object]          # e.g. vision_mode, crop_mode, max_crops
    layout: TileRule | None                # (W, H) -> (w_tiles, h_tiles); None: always (1, 1)
    named: Mapping[sp.Symbol, Callable]    # name -> definition(v) in stage vars and earlier names
    stages: Mapping[str, Stage]
    weights: Callable[[], Node]            # one pass over every module, for parameter counts
    kv_elems_per_token: int                # per sequence, all layers
    _cache: dict = field(default_factory=dict, repr=False)

    def _memo(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- named quantities -----------------------------------------------------------------
    @property
    def definitions(self) -> dict[sp.Symbol, sp.Expr]:
        """Each named quantity's definition in symbols (may use earlier names)."""
        return self._memo("definitions", lambda: {s: sp.sympify(fn(stage_vars()))
                                                  for s, fn in self.named.items()})

    def expand(self, expr):
        """Replace named quantities by their definitions (latest first, so chains resolve)."""
        for sym, definition in reversed(tuple(self.definitions.items())):
            expr = expr.subs(sym, definition)
        return expr

    def values(self, w_tiles: int, h_tiles: int, prompt_tokens: int = 0, kv_len: int = 0,
               new_tokens: int = 1, batch: int = 1) -> SimpleNamespace:
        """Stage variables with plain ints, named quantities computed (no SymPy)."""
        v = stage_vars(w_tiles=w_tiles, h_tiles=h_tiles, P=prompt_tokens, L=kv_len,
                       N=new_tokens, B=batch)
        for sym, fn in self.named.items():
            setattr(v, str(sym), fn(v))
        return v

    @property
    def quantities(self) -> dict[str, sp.Expr]:
        """Each named quantity fully expanded, keyed by name."""
        return {str(s): self.expand(s) for s in self.named}

    # -- trees ----------------------------------------------------------------------------
    def stage(self, stage: str) -> Stage:
        return choose("stage", self.stages, stage)

    def tree(self, stage: str = "vision", attention: str = "eager") -> Node:
        spec = self.stage(stage)
        choose("attention", dict.fromkeys(ATTENTION), attention)
        return self._memo(("tree", stage, attention), lambda: spec.build(stage_vars(), attention))

    def weights_tree(self) -> Node:
        return self._memo("weights", self.weights)

    def parameters(self) -> dict[str, int]:
        """Parameter count of every module (dotted path -> int), each module once."""
        return {p: int(c.params) for p, c in self.weights_tree().components().items()}

    def stage_params(self, stage: str) -> int:
        root = self.weights_tree()
        return sum(int(root.find(p).cost.params) for p in self.stage(stage).weights)

    def _check_options(self, stage, convention, dtype, kv_dtype, attention) -> None:
        """Each option is one of its allowed names (before any is used in a memo key)."""
        self.stage(stage)
        get_convention(convention)
        dtype_bytes(dtype, kv_dtype)
        choose("attention", dict.fromkeys(ATTENTION), attention)

    # -- closed forms ---------------------------------------------------------------------
    def _metrics(self, cost: Cost, stage: str, convention: str, dtype: str, kv_dtype,
                 v: SimpleNamespace) -> dict:
        """Every integer metric of a stage's ``cost`` (expressions or ints, as ``v`` holds)."""
        wb, _, kb = dtype_bytes(dtype, kv_dtype)
        out = cost_metrics(cost, convention, dtype, kv_dtype)
        params = self.stage_params(stage)
        out["params"] = params
        out["weight_bytes"] = wb * params
        out["kv_bytes"] = kb * self.kv_elems_per_token * v.B * self.stage(stage).kv_tokens(v)
        return {m: out[m] for m in METRICS if m in out}

    def expressions(self, stage: str = "vision", convention: str = "torch", dtype: str = "bf16",
                    kv_dtype: str | None = None, attention: str = "eager") -> dict[str, sp.Expr]:
        """All integer metrics of a stage as closed forms in tile and stage symbols."""
        self._check_options(stage, convention, dtype, kv_dtype, attention)
        key = ("expr", stage, convention, dtype, kv_dtype, attention)
        return self._memo(key, lambda: {
            m: self.expand(sp.sympify(e)) for m, e in self._metrics(
                self.tree(stage, attention).cost, stage, convention, dtype, kv_dtype,
                stage_vars()).items()})

    def formula(self, stage: str = "vision", metric: str = "flops", convention: str = "torch", *,
                by: str | None = None, named: bool = False, image: bool = False,
                dtype: str = "bf16", kv_dtype: str | None = None, attention: str = "eager"):
        """A metric as a SymPy expression: total (``by=None``), per ``"component"`` or per ``"kind"``.

        ``named=True`` keeps the model's named quantities (``n_crops``, ``prefill_tokens`` ...)
        as symbols; by default they are expanded into tile and stage symbols (``w_tiles``,
        ``h_tiles``, ``P``, ``L``, ``N``, ``B``); ``image=True`` also substitutes the tile rule,
        giving expressions in ``W``, ``H``.
        """
        allowed = [m for m in METRICS if m != "arithmetic_intensity"]
        if metric not in allowed:
            raise SymcostError(f"metric: {metric!r} is not one of {', '.join(allowed)}")

        def finish(expr):
            expr = sp.sympify(expr)
            if named and not image:
                return expr
            expr = self.expand(expr)
            return expr.subs(self.tile_expressions()) if image else expr

        if by is None:
            tree = self.tree(stage, attention)
            return finish(self._metrics(tree.cost, stage, convention, dtype, kv_dtype,
                                        stage_vars())[metric])
        if metric in ("params", "weight_bytes", "kv_bytes"):
            raise SymcostError(f"metric: {metric!r} has no per-{by} breakdown; "
                               "use parameters() for per-module parameters")
        tree = self.tree(stage, attention)
        costs = choose("by", {"component": tree.components, "kind": tree.by_kind}, by)()
        return {name: finish(cost_metrics(c, convention, dtype, kv_dtype)[metric])
                for name, c in costs.items()}

    def _times(self, tree: Node, stage: str, hardware, dtype: str, kv_dtype,
               efficiency: float, v: SimpleNamespace) -> dict:
        """``time_s``; for a request also ``ttft_s`` (vision + prefill) and ``tpot_s`` (mean
        decode step, 0 when N = 1). Floats for a numeric tree, expressions for a symbolic one."""
        hw = hardware if isinstance(hardware, Hardware) else get_hardware(hardware)

        leaves = [(path, c) for path, node, c in tree.walk() if node.kind is not None]

        def seconds(under=None):  # the ops under a dotted path (all ops when None)
            return roofline_seconds(
                [c for path, c in leaves if under is None or path.startswith(under + ".")],
                hw, dtype, lambda c: io_bytes(c, dtype, kv_dtype), efficiency)

        out = {"time_s": seconds()}
        if stage == "request":
            out["ttft_s"] = seconds("request.vision") + seconds("request.prefill")
            out["tpot_s"] = where(v.N >= 2, seconds("request.decode") / (v.N - 1), 0)
        return out

    def time_expressions(self, stage, hardware, dtype="bf16", kv_dtype=None, attention="eager",
                         efficiency=1.0) -> dict:
        """Roofline times as closed forms (see :mod:`symcost.hardware` for the model)."""
        self._check_options(stage, "torch", dtype, kv_dtype, attention)
        hardware = hardware if isinstance(hardware, Hardware) else get_hardware(hardware)
        efficiency = check_efficiency(efficiency)
        return self._memo(("time", stage, hardware, dtype, kv_dtype, attention, efficiency),
                          lambda: {k: self.expand(sp.sympify(e)) for k, e in self._times(
                              self.tree(stage, attention), stage, hardware, dtype, kv_dtype,
                              efficiency, stage_vars()).items()})

    # -- layout ---------------------------------------------------------------------------
    def tile_expressions(self) -> dict:
        if self.layout is None:
            return {w_tiles: sp.Integer(1), h_tiles: sp.Integer(1)}
        i, j = self.layout.expressions
        return {w_tiles: i, h_tiles: j}

    def tile_grid(self, width, height) -> tuple[np.ndarray, np.ndarray]:
        """``(w_tiles, h_tiles)`` int64 arrays for integer ``width``, ``height`` arrays."""
        w, h = check_ints("width", width), check_ints("height", height)
        check_shapes(width=w, height=h)
        w, h = np.broadcast_arrays(w, h)
        if self.layout is None:
            return np.ones_like(w), np.ones_like(h)
        return self.layout.numpy(w, h)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, width: int, height: int, stage: str = "vision", prompt_tokens: int = 0,
                 kv_len: int = 0, new_tokens: int = 1, batch: int = 1, convention: str = "torch",
                 dtype: str = "bf16", kv_dtype: str | None = None, attention: str = "eager",
                 hardware=None, efficiency: float = 1.0) -> dict:
        """The numeric model: one shape, the cost tree built from plain ints.

        Returns the tile grid, named quantities, every integer metric, ``components``
        (dotted path -> FLOPs under ``convention``) and, with ``hardware``, roofline times.
        NB: only the sum over decode steps touches SymPy (a one-variable power sum).
        """
        args = dict(prompt_tokens=prompt_tokens, kv_len=kv_len, new_tokens=new_tokens,
                    batch=batch)
        args = {k: check_int(k, x) for k, x in args.items()}
        i, j = (int(a) for a in self.tile_grid(check_int("width", width),
                                               check_int("height", height)))
        self._check_options(stage, convention, dtype, kv_dtype, attention)
        efficiency = check_efficiency(efficiency)  # checked even without hardware: never ignored
        conv = get_convention(convention)
        v = self.values(i, j, **args)
        tree = self.stage(stage).build(v, attention)
        out = {"w_tiles": i, "h_tiles": j, **{str(s): getattr(v, str(s)) for s in self.named}}
        out.update(self._metrics(tree.cost, stage, convention, dtype, kv_dtype, v))
        out["components"] = {p: int(conv.flops(c)) for p, c in tree.components().items()}
        if hardware is not None:
            out.update({k: float(t) for k, t in self._times(tree, stage, hardware, dtype, kv_dtype,
                                                            efficiency, v).items()})
        return {k: int(x) if isinstance(x, sp.Integer) else x for k, x in out.items()}

    def compile(self, stage: str = "vision", metrics=("flops",), convention: str = "torch",
                dtype: str = "bf16", kv_dtype: str | None = None, attention: str = "eager",
                components: bool = False, hardware: str | None = None,
                efficiency: float = 1.0) -> "Evaluator":
        """A vectorised evaluator of the given metrics (and the model's quantities); with
        ``hardware``, also roofline ``time_s`` (and ``ttft_s``, ``tpot_s`` for a request)."""
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise SymcostError(f"metrics: {metrics!r} is not a list of names from "
                               f"{', '.join(METRICS)}")
        metrics = tuple(metrics)
        for m in metrics:
            if not isinstance(m, str) or m not in METRICS:
                raise SymcostError(f"metric: {m!r} is not one of {', '.join(METRICS)}")
        self._check_options(stage, convention, dtype, kv_dtype, attention)
        if not isinstance(components, bool):
            raise SymcostError(f"components: {components!r} is not True or False")
        if hardware is not None:
            hardware = hardware if isinstance(hardware, Hardware) else get_hardware(hardware)
        efficiency = check_efficiency(efficiency)
        key = ("compile", stage, metrics, convention, dtype, kv_dtype, attention, components,
               hardware, efficiency)
        return self._memo(key, lambda: Evaluator(self, stage, metrics, convention, dtype, kv_dtype,
                                                 attention, components, hardware, efficiency))


class Evaluator:
    """``ev(width, height, prompt_tokens=0, kv_len=0, new_tokens=1, batch=1) -> dict of arrays``.

    Exact integers (int64, or Python ints where a value could exceed int64); the tile grid,
    the model's quantities and ``arithmetic_intensity`` (float) come with the metrics.
    """

    def __init__(self, model: Model, stage, metrics, convention, dtype, kv_dtype, attention,
                 components, hardware=None, efficiency=1.0):
        self.model, self.metrics = model, metrics
        exprs = model.expressions(stage, convention, dtype, kv_dtype, attention)
        wanted = {m: exprs[m] for m in metrics if m != "arithmetic_intensity"}
        if "arithmetic_intensity" in metrics:
            wanted.update(flops=exprs["flops"], io_bytes=exprs["io_bytes"])
        wanted.update(model.quantities)
        if components:
            per = model.formula(stage, "flops", convention, by="component", dtype=dtype,
                                kv_dtype=kv_dtype, attention=attention)
            wanted.update({f"components.{k}": v for k, v in per.items()})
        self.args = (w_tiles, h_tiles) + tuple(s for n, s in ARGUMENTS.items()
                                               if n not in ("width", "height"))
        self._fn = CompiledFunction(self.args, wanted)
        self._time = None
        if hardware is not None:
            times = model.time_expressions(stage, hardware, dtype, kv_dtype, attention, efficiency)
            self._time_names = tuple(times)
            self._time = sp.lambdify(self.args, list(times.values()), modules="numpy")

    def __call__(self, width, height, prompt_tokens=0, kv_len=0, new_tokens=1, batch=1):
        values = dict(prompt_tokens=prompt_tokens, kv_len=kv_len, new_tokens=new_tokens,
                      batch=batch)
        arrays = [check_ints(n, v) for n, v in values.items()]
        check_shapes(width=width, height=height, **dict(zip(values, arrays)))
        if any(a.size != 1 for a in arrays):
            i, j = self.model.tile_grid(width, height)
            return self._evaluate(i, j, arrays)
        # every output depends on (W, H) only through the tile grid: evaluate each possible grid
        # once, then gather per point (exact: the same values the per-point program computes)
        w, h = np.broadcast_arrays(check_ints("width", width), check_ints("height", height))
        shape = np.broadcast_shapes(w.shape, *[a.shape for a in arrays])
        layout = self.model.layout
        if layout is None:
            grids, code = np.ones((1, 2), dtype=np.int64), np.zeros(shape, dtype=np.intp)
        else:
            grids, code, wf, hf = layout.outcomes, np.empty(w.size, dtype=np.intp), \
                w.reshape(-1), h.reshape(-1)
            for s in range(0, w.size, CHUNK):  # temporaries stay in cache
                code[s:s + CHUNK] = layout.codes(wf[s:s + CHUNK], hf[s:s + CHUNK])
            code = np.broadcast_to(code.reshape(w.shape), shape)
        table = self._evaluate(grids[:, 0], grids[:, 1], [a.reshape(-1) for a in arrays])
        code = np.ascontiguousarray(code).reshape(-1)
        out = {k: np.take(v, code).reshape(shape) for k, v in table.items() if v.dtype == object}
        for dtype in (np.int64, np.float64):  # one block per dtype: fewer, larger page faults
            names = [k for k, v in table.items() if v.dtype == dtype]
            block = np.empty((len(names), code.size), dtype=dtype)
            for row, k in zip(block, names):
                np.take(table[k], code, out=row, mode="clip")  # codes are in range; no buffer
                out[k] = row.reshape(shape)
        return {k: out[k] for k in table}

    def _evaluate(self, i, j, arrays):
        """All outputs for tile grids ``i``, ``j`` and stage argument arrays (broadcast)."""
        out = self._fn(i, j, *arrays)
        out = {"w_tiles": i, "h_tiles": j, **out}
        if self._time is not None:
            cols = np.broadcast_arrays(i, j, *arrays)
            with np.errstate(divide="ignore", invalid="ignore"):  # branches select() discards
                times = self._time(*cols)
            for name, value in zip(self._time_names, times):
                out[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), cols[0].shape)
        if "arithmetic_intensity" in self.metrics:
            flops = out["flops"].astype(np.float64)
            io = out["io_bytes"].astype(np.float64)
            out["arithmetic_intensity"] = np.divide(flops, io, out=np.zeros_like(flops),
                                                    where=io > 0)
            for m in ("flops", "io_bytes"):
                if m not in self.metrics:
                    del out[m]
        return out
