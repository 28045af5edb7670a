"""Sweeps: a grid of image sizes evaluated with the compiled closed forms, written whole or not at all."""
from __future__ import annotations

import json
import re

import numpy as np

from .errors import SymcostError
from .files import atomic_write, check_target
from .inputs import Input
from .model import Model

__all__ = ["parse_range", "sweep", "write_table", "MAX_CELLS", "FORMATS"]

MAX_CELLS = 1 << 28  # points x columns; ~2 GiB of int64: refused beyond, before any work
FORMATS = ("csv", "json", "parquet")
_RANGE = re.compile(r"(0*[0-9]{1,18}):(0*[0-9]{1,18}):(0*[0-9]{1,18})")  # bounded: int() stays cheap
_ROWS_PER_WRITE = 1 << 18


def parse_range(text: str, inp: Input) -> np.ndarray:
    """``A:B:STEP`` -> ``A, A+STEP, ... <= B`` (inclusive), every value within the input's bounds."""
    flag = inp.flag
    m = _RANGE.fullmatch(text)
    if not m:
        shown = repr(text if len(text) <= 40 else text[:37] + "...")
        raise SymcostError(f"{flag}: {shown} is not A:B:STEP with integers "
                           f"{inp.lo} <= A <= B <= {inp.hi}, STEP >= 1")
    a, b, step = (int(g) for g in m.groups())
    if step < 1:
        raise SymcostError(f"{flag}: step {step} must be >= 1")
    if not inp.lo <= a <= b <= inp.hi:
        raise SymcostError(f"{flag}: {text!r} needs {inp.lo} <= A <= B <= {inp.hi} "
                           "(empty or reversed ranges are refused)")
    return np.arange(a, b + 1, step, dtype=np.int64)


def sweep(model: Model, widths: np.ndarray, heights: np.ndarray, stage: str, metrics,
          convention: str, *, dtype: str = "bf16", kv_dtype: str | None = None,
          **inputs) -> dict[str, np.ndarray]:
    """Every (width, height) pair, width fastest; columns width, height, layout, metrics."""
    n_cols = 4 + len(metrics)
    if len(widths) * len(heights) * n_cols > MAX_CELLS:
        raise SymcostError(f"--width/--height: {len(widths)} x {len(heights)} points x {n_cols} "
                           f"columns exceeds the limit of {MAX_CELLS:,} cells")
    w, h = np.meshgrid(widths, heights, indexing="xy")
    w, h = w.reshape(-1), h.reshape(-1)
    out = model.compile(stage, tuple(metrics), convention, dtype=dtype, kv_dtype=kv_dtype)(
        w, h, **inputs)
    names = model.family.image
    return {names[0]: w, names[1]: h, **{str(s): out[str(s)] for s in model.layout.outputs},
            **{m: out[m] for m in metrics}}


def _write_csv(f, table: dict[str, np.ndarray]) -> None:
    names = list(table)
    f.write(",".join(names) + "\n")
    row = ",".join(["{}"] * len(names)) + "\n"
    n = len(table[names[0]])
    for s in range(0, n, _ROWS_PER_WRITE):
        cols = [table[k][s:s + _ROWS_PER_WRITE].tolist() for k in names]
        f.write("".join(map(row.format, *cols)))


def _write_json(f, table: dict[str, np.ndarray]) -> None:
    names = list(table)
    cols = [table[k].tolist() for k in names]
    json.dump([dict(zip(names, r)) for r in zip(*cols)], f)


def write_table(path: str, table: dict[str, np.ndarray], force: bool = False) -> None:
    """Write by extension (.csv, .json, .parquet); parquet needs pyarrow."""
    ext = check_target(path, force=force, extensions=FORMATS)
    if ext == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SymcostError("--out: .parquet needs pyarrow (pip install pyarrow)") from None
        arrays = {k: (v.astype(np.int64) if v.dtype != object else v.astype(str))
                  for k, v in table.items()}
        atomic_write(path, lambda f: pq.write_table(pa.table(arrays), f), binary=True,
                     force=force)
        return
    atomic_write(path, lambda f: (_write_csv if ext == "csv" else _write_json)(f, table),
                 force=force)
