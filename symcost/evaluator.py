"""Compiled evaluation of one stage over arrays of inputs: exact integers, vectorised.

Every output depends on the image inputs only through the layout (e.g. the tile grid), so when
the other inputs are scalars the compiled program runs once per possible layout outcome and
each point gathers its row; otherwise the program runs per point on the layout's outputs.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .compile import CHUNK, FUNCTIONS, CompiledFunction, parallel
from .dtypes import Precision
from .errors import SymcostError
from .hardware import Hardware

__all__ = ["Evaluator"]


class Evaluator:
    """``ev(*image, **inputs) -> dict of arrays`` for one stage, e.g. ``ev(widths, heights,
    prompt_tokens=12)``.

    Exact integers (int64, or Python ints in object arrays where a value could pass int64);
    the layout outputs, the stage's named quantities, ``arithmetic_intensity`` and times
    (float64) come with the metrics.
    """

    def __init__(self, model, stage: str, metrics: tuple[str, ...], convention: str,
                 prec: Precision, components: bool, hardware: Hardware | None,
                 compute_efficiency: float, bandwidth_efficiency: float):
        self.model, self.stage, self.metrics = model, stage, metrics
        self.uses_layout = model.uses_layout(stage)
        layout_names = {i.name for i in model.layout.inputs} if self.uses_layout else set()
        self.inputs = model.stage_inputs(stage)
        self.scalar_inputs = tuple(i for i in self.inputs if i.name not in layout_names)
        self.args = (tuple(model.layout.outputs) if self.uses_layout else ()) + \
            tuple(i.symbol for i in self.scalar_inputs)
        exprs = model.expressions(stage, convention, prec.dtype, prec.kv_dtype)
        wanted = {m: exprs[m] for m in metrics if m in exprs}
        if "arithmetic_intensity" in metrics:
            wanted.update(work=exprs["work"], io_bytes=exprs["io_bytes"])
        self.quantities = model.stage_quantities(stage)
        wanted.update(self.quantities)
        if components:
            per = model.formula(stage, "flops", convention, by="component", dtype=prec.dtype,
                                kv_dtype=prec.kv_dtype)
            wanted.update({f"components.{k}": v for k, v in per.items()})
        self._fn = CompiledFunction(self.args, wanted)
        self._time = None
        if hardware is not None:
            times = model.time_expressions(stage, hardware, prec.dtype, prec.kv_dtype,
                                           compute_efficiency, bandwidth_efficiency)
            self._time_names = tuple(times)
            self._time = sp.lambdify(self.args, list(times.values()), modules=[FUNCTIONS, "numpy"])
        self._drop = {"work", "io_bytes"} - set(metrics) if "arithmetic_intensity" in metrics \
            else set()

    def __call__(self, *args, **inputs) -> dict[str, np.ndarray]:
        image = self.model.family.image or ()
        if len(args) > len(image):
            raise SymcostError(f"expected at most {len(image)} positional arrays "
                               f"({', '.join(image)}), got {len(args)}")
        values = self.model.check_inputs(self.stage, {**dict(zip(image, args)), **inputs},
                                         arrays=True)
        scalars = [values[i.name] for i in self.scalar_inputs]
        shape = np.broadcast_shapes(*[np.shape(a) for a in values.values()])
        if not self.uses_layout:
            return self._finish(self._evaluate([], scalars), shape)
        layout = self.model.layout
        image_arrays = np.broadcast_arrays(*[values[i.name] for i in layout.inputs])
        if any(a.size != 1 for a in scalars):
            grids = layout.outcomes[self._codes(image_arrays)]
            cols = [grids[..., k] for k in range(grids.shape[-1])]
            return self._finish(self._evaluate(cols, scalars), shape)
        # gather: evaluate each possible outcome once, then index per point (exact: the same
        # values the per-point program computes)
        outcomes = layout.outcomes
        table = self._evaluate([outcomes[:, k] for k in range(outcomes.shape[1])],
                               [a.reshape(-1) for a in scalars])
        return self._gather(table, image_arrays, shape)

    def _gather(self, table: dict, image_arrays, shape) -> dict[str, np.ndarray]:
        """Each point's row of ``table`` (one value per layout outcome), over chunks in threads:
        a chunk's codes stay in cache while every output takes from them."""
        flat = [a.reshape(-1) for a in image_arrays]
        n = flat[0].size
        out, pairs = {}, []  # pairs: (table column, output row) for the threads
        for dtype in (np.int64, np.float64):  # one block per dtype: fewer, larger page faults
            names = [k for k, v in table.items() if v.dtype == dtype]
            block = np.empty((len(names), n), dtype=dtype)
            for row, k in zip(block, names):
                pairs.append((np.ascontiguousarray(table[k]), row))
                out[k] = row.reshape(shape)
        objects = [k for k, v in table.items() if v.dtype == object]
        code = np.empty(n, dtype=np.intp) if objects else None

        def work(s: int) -> None:
            c = self.model.layout.codes(*[a[s:s + CHUNK] for a in flat])
            for column, row in pairs:
                np.take(column, c, out=row[s:s + CHUNK], mode="clip")  # codes are in range
            if code is not None:
                code[s:s + CHUNK] = c

        parallel(work, range(0, n, CHUNK))
        for k in objects:  # Python ints: beyond int64, rare
            out[k] = np.take(table[k], code).reshape(shape)
        return {k: out[k] for k in table}

    def _codes(self, image_arrays) -> np.ndarray:
        """Layout code per point, over chunks in threads (temporaries stay in cache)."""
        shape = image_arrays[0].shape
        flat = [a.reshape(-1) for a in image_arrays]
        code = np.empty(flat[0].size, dtype=np.intp)

        def work(s: int) -> None:
            code[s:s + CHUNK] = self.model.layout.codes(*[a[s:s + CHUNK] for a in flat])

        parallel(work, range(0, code.size, CHUNK))
        return code.reshape(shape)

    def _evaluate(self, layout_cols, scalars) -> dict[str, np.ndarray]:
        """All outputs for layout columns and input arrays (broadcast together)."""
        cols = list(layout_cols) + list(scalars)
        out = self._fn(*cols)
        out = {str(s): np.asarray(c) for s, c in zip(self.model.layout.outputs, layout_cols)} | out
        if self._time is not None:
            arrays = np.broadcast_arrays(*cols) if cols else []
            with np.errstate(divide="ignore", invalid="ignore"):  # branches select() discards
                times = self._time(*arrays)
            n_shape = arrays[0].shape if arrays else ()
            for name, value in zip(self._time_names, times):
                out[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), n_shape)
        if "arithmetic_intensity" in self.metrics:
            work = np.asarray(out["work"]).astype(np.float64)
            io = np.asarray(out["io_bytes"]).astype(np.float64)
            out["arithmetic_intensity"] = np.divide(work, io, out=np.zeros_like(work), where=io > 0)
            for m in self._drop:
                del out[m]
        return out

    @staticmethod
    def _finish(out: dict, shape) -> dict[str, np.ndarray]:
        return {k: np.broadcast_to(v, shape) if np.shape(v) != shape else v for k, v in out.items()}
