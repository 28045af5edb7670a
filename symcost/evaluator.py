"""Compiled evaluation of one stage over arrays of inputs: exact integers, vectorised.

Every output depends on the image inputs only through the layout (e.g. the tile grid), so when
the other inputs are scalars the compiled program runs once per possible layout outcome and
each point gathers its row; otherwise the program runs per point on the layout's outputs.
Either way the points run in chunks on every core (:func:`symcost.compile.parallel`).
"""

from __future__ import annotations

import threading

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
    (float64) come with the metrics. An output that is the same at every point (e.g.
    ``params``) may be a read-only broadcast view: treat outputs as read-only.
    """

    def __init__(
        self,
        model,
        stage: str,
        metrics: tuple[str, ...],
        convention: str,
        prec: Precision,
        components: bool,
        hardware: Hardware | None,
        compute_efficiency: float,
        bandwidth_efficiency: float,
    ):
        self.model, self.stage, self.metrics = model, stage, metrics
        self.uses_layout = model.uses_layout(stage)
        layout_names = {i.name for i in model.layout.inputs} if self.uses_layout else set()
        self.inputs = model.stage_inputs(stage)
        self.scalar_inputs = tuple(i for i in self.inputs if i.name not in layout_names)
        self.args = (tuple(model.layout.outputs) if self.uses_layout else ()) + tuple(
            i.symbol for i in self.scalar_inputs
        )
        # programs in the named quantities, which they compute first: nothing is expanded
        steps = model.steps(self.args)
        exprs = model.expressions(stage, convention, prec.dtype, prec.kv_dtype, named=True)
        wanted = {m: exprs[m] for m in metrics if m in exprs}
        if "arithmetic_intensity" in metrics:
            wanted.update(work=exprs["work"], io_bytes=exprs["io_bytes"])
        self.quantities = model.stage_quantities(stage)
        wanted.update({str(s): s for s, _ in steps if str(s) in self.quantities})
        if components:
            per = model.formula(
                stage, "flops", convention, by="component", dtype=prec.dtype, kv_dtype=prec.kv_dtype
            )
            wanted.update({f"components.{k}": v for k, v in per.items()})
        self._fn = CompiledFunction(self.args, wanted, steps)
        self._time = None
        if hardware is not None:
            times = model.time_expressions(
                stage,
                hardware,
                prec.dtype,
                prec.kv_dtype,
                compute_efficiency,
                bandwidth_efficiency,
                named=True,
            )
            self._time_names = tuple(times)
            self._time = sp.lambdify(
                self.args, list(times.values()), modules=[FUNCTIONS, np], cse=lambda e: _after(steps, e)
            )
        self._drop = {"work", "io_bytes"} - set(metrics) if "arithmetic_intensity" in metrics else set()
        self._table: tuple = (None, {})  # (scalar inputs, outputs per layout outcome)

    def __call__(self, *args, **inputs) -> dict[str, np.ndarray]:
        image = self.model.family.image or ()
        if len(args) > len(image):
            raise SymcostError(
                f"expected at most {len(image)} positional arrays ({', '.join(image)}), got {len(args)}"
            )
        values = self.model.check_inputs(self.stage, {**dict(zip(image, args)), **inputs}, arrays=True)
        scalars = [values[i.name] for i in self.scalar_inputs]
        shape = np.broadcast_shapes(*[np.shape(a) for a in values.values()])
        if not self.uses_layout:
            return self._finish(self._evaluate([], scalars), shape)
        layout = self.model.layout
        image_arrays = np.broadcast_arrays(*[values[i.name] for i in layout.inputs])
        if layout.outcomes is None or len(layout.outcomes) > image_arrays[0].size:
            # no table (a computed layout), or fewer points than outcomes: the layout per point, then
            # the program
            return self._finish(self._evaluate(self._computed(image_arrays), scalars), shape)
        if any(a.size != 1 for a in scalars):
            grids = layout.outcomes[self._codes(image_arrays)]
            cols = [grids[..., k] for k in range(grids.shape[-1])]
            return self._finish(self._evaluate(cols, scalars), shape)
        # gather: evaluate each possible outcome once, then index per point (exact: the same
        # values the per-point program computes)
        given = tuple(int(a.reshape(-1)[0]) for a in scalars)
        key, table = self._table  # the last inputs' table, kept: calls repeat them
        if key != given:
            outcomes = layout.outcomes
            table = self._evaluate(
                [outcomes[:, k] for k in range(outcomes.shape[1])], [a.reshape(-1) for a in scalars]
            )
            self._table = (given, table)
        return self._gather(table, image_arrays, shape)

    def _gather(self, table: dict, image_arrays, shape) -> dict[str, np.ndarray]:
        """Each point's row of ``table`` (one value per layout outcome), over chunks in threads:
        a chunk's codes stay in cache while every output takes from them. An output equal at
        every outcome (e.g. ``params``) is a read-only broadcast view: nothing to write."""
        flat = [a.reshape(-1) for a in image_arrays]
        n = flat[0].size
        same = {k for k, v in table.items() if (v == v[0]).all()}
        out = {k: np.broadcast_to(table[k][:1].reshape(()), shape) for k in same}
        pairs = []  # (table column, output row) for the threads
        for dtype in (np.int64, np.float64):  # one block per dtype: fewer, larger page faults
            names = [k for k, v in table.items() if v.dtype == dtype and k not in same]
            block = np.empty((len(names), n), dtype=dtype)
            for row, k in zip(block, names):
                pairs.append((np.ascontiguousarray(table[k]), row))
                out[k] = row.reshape(shape)
        objects = [k for k, v in table.items() if v.dtype == object and k not in same]
        code = np.empty(n, dtype=np.intp) if objects else None  # all codes: for Python ints

        def work(s: int) -> None:
            m = min(CHUNK, n - s)
            c = self.model.layout.codes(
                *[a[s : s + m] for a in flat], out=_chunk_codes(m) if code is None else code[s : s + m]
            )
            for column, row in pairs:
                np.take(column, c, out=row[s : s + m], mode="clip")  # codes are in range

        parallel(work, range(0, n, CHUNK))
        if code is not None:  # Python ints (beyond int64): rare
            for k in objects:
                out[k] = np.take(table[k], code).reshape(shape)
        return {k: out[k] for k in table}

    def _computed(self, image_arrays) -> list[np.ndarray]:
        """A computed layout's outputs per point, over chunks in threads."""
        layout = self.model.layout
        flat = [a.reshape(-1) for a in image_arrays]
        cols = [np.empty(flat[0].size, dtype=np.int64) for _ in layout.outputs]

        def work(s: int) -> None:
            for col, got in zip(cols, layout.at(*[a[s : s + CHUNK] for a in flat])):
                col[s : s + CHUNK] = got

        parallel(work, range(0, flat[0].size, CHUNK))
        return [c.reshape(image_arrays[0].shape) for c in cols]

    def _codes(self, image_arrays) -> np.ndarray:
        """Layout code per point, over chunks in threads."""
        flat = [a.reshape(-1) for a in image_arrays]
        code = np.empty(flat[0].size, dtype=np.intp)
        parallel(
            lambda s: self.model.layout.codes(*[a[s : s + CHUNK] for a in flat], out=code[s : s + CHUNK]),
            range(0, code.size, CHUNK),
        )
        return code.reshape(image_arrays[0].shape)

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


def _after(steps: list, exprs: list) -> tuple[list, list]:
    """lambdify's program: the steps, then ``exprs`` with their common terms computed once
    (``time_s`` repeats every op of ``ttft_s``)."""
    subs, reduced = sp.cse(exprs)
    return steps + subs, reduced


_LOCAL = threading.local()


def _chunk_codes(n: int) -> np.ndarray:
    """This thread's array for one chunk's layout codes (reused: no page faults)."""
    if not hasattr(_LOCAL, "codes"):
        _LOCAL.codes = np.empty(CHUNK, dtype=np.intp)
    return _LOCAL.codes[:n]
