"""A derived cost model: stage trees built lazily, closed forms per metric, compiled evaluators.

A derivation (see ``derivations/``) fills a :class:`Model` with its stages; everything a user
asks of the model -- formulas, breakdowns, compiled functions -- is answered here, generically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import sympy as sp

from .checks import check_ints
from .compile import CompiledFunction
from .conventions import get_convention
from .cost import Cost
from .errors import SymcostError
from .layout import TileRule
from .metrics import METRICS, cost_metrics, dtype_bytes
from .symbols import ARGUMENTS, h_tiles, w_tiles
from .tree import Node, choose

__all__ = ["Model", "Stage", "ATTENTION"]

ATTENTION = ("eager", "flash")


@dataclass(frozen=True)
class Stage:
    build: Callable[[str], Node]  # attention variant -> cost tree
    weights: tuple[str, ...]      # paths in the weights tree of the modules this stage runs
    kv_tokens: object             # tokens per sequence held in the KV cache after the stage
    summary: str


@dataclass(eq=False)
class Model:
    family: str
    preset: str
    options: Mapping[str, object]          # e.g. vision_mode, crop_mode, max_crops
    layout: TileRule | None                # (W, H) -> (w_tiles, h_tiles); None: always (1, 1)
    quantities: Mapping[str, sp.Expr]      # named closed forms, e.g. image_tokens
    stages: Mapping[str, Stage]
    weights: Callable[[], Node]            # one pass over every module, for parameter counts
    kv_elems_per_token: int                # per sequence, all layers
    batch: sp.Symbol = ARGUMENTS["batch"]
    _cache: dict = field(default_factory=dict, repr=False)

    def _memo(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- trees ----------------------------------------------------------------------------
    def stage(self, stage: str) -> Stage:
        return choose("stage", self.stages, stage)

    def tree(self, stage: str = "vision", attention: str = "eager") -> Node:
        spec = self.stage(stage)
        choose("attention", dict.fromkeys(ATTENTION), attention)
        return self._memo(("tree", stage, attention), lambda: spec.build(attention))

    def weights_tree(self) -> Node:
        return self._memo("weights", self.weights)

    def parameters(self) -> dict[str, int]:
        """Parameter count of every module (dotted path -> int), each module once."""
        return {p: int(c.params) for p, c in self.weights_tree().components().items()}

    def stage_params(self, stage: str) -> int:
        root = self.weights_tree()
        return sum(int(root.find(p).cost.params) for p in self.stage(stage).weights)

    # -- closed forms ---------------------------------------------------------------------
    def _metrics(self, cost: Cost, stage: str, convention: str, dtype: str, kv_dtype) -> dict:
        """Every integer metric of ``cost`` (a stage's or a component's) as expressions."""
        wb, _, kb = dtype_bytes(dtype, kv_dtype)
        out = cost_metrics(cost, convention, dtype, kv_dtype)
        params = self.stage_params(stage)
        out["params"] = params
        out["weight_bytes"] = wb * params
        out["kv_bytes"] = kb * self.kv_elems_per_token * self.batch * self.stage(stage).kv_tokens
        return {m: sp.sympify(out[m]) for m in METRICS if m in out}

    def expressions(self, stage: str = "vision", convention: str = "torch", dtype: str = "bf16",
                    kv_dtype: str | None = None, attention: str = "eager") -> dict[str, sp.Expr]:
        """All integer metrics of a stage as closed forms in tile and stage symbols."""
        get_convention(convention)
        key = ("expr", stage, convention, dtype, kv_dtype, attention)
        return self._memo(key, lambda: self._metrics(self.tree(stage, attention).cost, stage,
                                                     convention, dtype, kv_dtype))

    def formula(self, stage: str = "vision", metric: str = "flops", convention: str = "torch", *,
                by: str | None = None, image: bool = False, dtype: str = "bf16",
                kv_dtype: str | None = None, attention: str = "eager"):
        """A metric as a SymPy expression: total (``by=None``), per ``"component"`` or per ``"kind"``.

        In tile symbols ``w_tiles, h_tiles`` by default; ``image=True`` substitutes the tile
        rule, giving expressions in ``W, H``.
        """
        if metric not in METRICS or metric == "arithmetic_intensity":
            allowed = [m for m in METRICS if m != "arithmetic_intensity"]
            raise SymcostError(f"metric: {metric!r} is not one of {', '.join(allowed)}")
        sub = self.tile_expressions() if image else {}
        if by is None:
            expr = self.expressions(stage, convention, dtype, kv_dtype, attention)[metric]
            return expr.subs(sub) if sub else expr
        tree = self.tree(stage, attention)
        parts = {"component": tree.components, "kind": tree.by_kind}
        costs = choose("by", parts, by)()
        if metric in ("params", "weight_bytes", "kv_bytes"):
            raise SymcostError(f"metric: {metric!r} has no per-{by} breakdown; "
                               "use parameters() for per-module parameters")
        out = {name: sp.sympify(cost_metrics(c, convention, dtype, kv_dtype)[metric])
               for name, c in costs.items()}
        return {k: v.subs(sub) for k, v in out.items()} if sub else out

    # -- layout ---------------------------------------------------------------------------
    def tile_expressions(self) -> dict:
        if self.layout is None:
            return {w_tiles: sp.Integer(1), h_tiles: sp.Integer(1)}
        i, j = self.layout.expressions
        return {w_tiles: i, h_tiles: j}

    def tile_grid(self, width, height) -> tuple[np.ndarray, np.ndarray]:
        """``(w_tiles, h_tiles)`` int64 arrays for integer ``width``, ``height`` arrays."""
        w, h = np.broadcast_arrays(check_ints("width", width), check_ints("height", height))
        if self.layout is None:
            return np.ones_like(w), np.ones_like(h)
        return self.layout.numpy(w, h)

    # -- evaluation -----------------------------------------------------------------------
    def compile(self, stage: str = "vision", metrics=("flops",), convention: str = "torch",
                dtype: str = "bf16", kv_dtype: str | None = None, attention: str = "eager",
                components: bool = False) -> "Evaluator":
        """A vectorised evaluator of the given metrics (and the model's quantities)."""
        metrics = tuple(metrics)
        for m in metrics:
            if m not in METRICS:
                raise SymcostError(f"metric: {m!r} is not one of {', '.join(METRICS)}")
        key = ("compile", stage, metrics, convention, dtype, kv_dtype, attention, components)
        return self._memo(key, lambda: Evaluator(self, stage, metrics, convention, dtype, kv_dtype,
                                                 attention, components))


class Evaluator:
    """``ev(width, height, prompt_tokens=0, kv_len=0, new_tokens=1, batch=1) -> dict of arrays``.

    Exact integers (int64, or Python ints where a value could exceed int64); the tile grid,
    the model's quantities and ``arithmetic_intensity`` (float) come with the metrics.
    """

    def __init__(self, model: Model, stage, metrics, convention, dtype, kv_dtype, attention,
                 components):
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

    def __call__(self, width, height, prompt_tokens=0, kv_len=0, new_tokens=1, batch=1):
        values = dict(prompt_tokens=prompt_tokens, kv_len=kv_len, new_tokens=new_tokens,
                      batch=batch)
        arrays = {n: check_ints(n, v) for n, v in values.items()}
        i, j = self.model.tile_grid(width, height)
        out = self._fn(i, j, *arrays.values())
        out = {"w_tiles": i, "h_tiles": j, **out}
        if "arithmetic_intensity" in self.metrics:
            flops = out["flops"].astype(np.float64)
            io = out["io_bytes"].astype(np.float64)
            out["arithmetic_intensity"] = np.divide(flops, io, out=np.zeros_like(flops),
                                                    where=io > 0)
            for m in ("flops", "io_bytes"):
                if m not in self.metrics:
                    del out[m]
        return out

