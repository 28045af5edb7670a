"""Sweeps: every point of a product of input axes through the compiled closed forms, streamed.

A sweep is a :class:`Target` (family, options, stage, metrics, convention, precision,
hardware) and its axes: a :class:`Range` of one input, or a :class:`Ray` of images of one
aspect ratio with the long side varied. Its points are the product of the axes, the first
axis varying fastest (width, then height, then the other inputs in the family's order).

Points run in chunks of ``CHUNK_POINTS``; each chunk is evaluated, formatted and written
before later ones are taken, so memory stays bounded whatever the size of the sweep (CSV,
JSON and Parquet alike). Forked workers format CSV and JSON chunks on every core (results
written in order); Parquet is encoded in-process by Arrow's threads; :func:`write_dataset`
maps chunks over a dask cluster into a folder of Parquet part files.

Column types come from declared bounds, never from values: inputs and layout outputs are
int64; an integer metric or quantity is int64 when the magnitude bound of its compiled
program over every input's declared range fits in int64, else decimal128(38, 0)
(decimal256(76, 0) past 10**38); ``arithmetic_intensity`` and times are float64.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from math import prod
from typing import TYPE_CHECKING

import numpy as np

from .compile import CompiledFunction
from .errors import SymcostError
from .files import atomic_write, check_target, interrupts_as_keyboard
from .hardware import Hardware, get_hardware
from .inputs import Input
from .metrics import INT_METRICS

if TYPE_CHECKING:
    from .evaluator import Evaluator
    from .model import Model

__all__ = [
    "Range",
    "Ray",
    "Target",
    "Sweep",
    "parse_range",
    "parse_aspect",
    "make_sweep",
    "model_of",
    "compiled",
    "write",
    "write_dataset",
    "check_dataset_target",
    "arrow_schema",
    "require_pyarrow",
    "default_jobs",
    "Progress",
    "FORMATS",
    "ASPECTS",
    "CHUNK_POINTS",
]

FORMATS = ("csv", "json", "parquet")
CHUNK_POINTS = 1 << 18  # points per chunk: 2 MiB per int64 column, ~9 MiB of CSV text
MAX_POINTS = 1 << 62  # point indices stay int64
_FORMAT_ROWS = 1 << 14  # rows turned into Python objects at a time while formatting text
# leading zeros matched apart: int() never sees more than 18 digits
_SPEC = re.compile(r"0*([0-9]{1,18})(?::0*([0-9]{1,18})(?::0*([0-9]{1,18}))?)?")
_RATIO = re.compile(r"0*([0-9]{1,5}):0*([0-9]{1,5})")
_PART = re.compile(r"part-[0-9]{6,}\.parquet")
# named aspect ratios, width:height
ASPECTS = {
    "square": (1, 1),
    "a4": (210, 297),
    "a4-landscape": (297, 210),
    "letter": (17, 22),
    "letter-landscape": (22, 17),
}


def _echo(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


# -- axes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """``start, start+step, ... <= stop`` of one input."""

    name: str
    start: int
    stop: int
    step: int = 1

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def size(self) -> int:
        return (self.stop - self.start) // self.step + 1

    def values(self, k) -> tuple[np.ndarray, ...]:
        return (self.start + np.asarray(k, dtype=np.int64) * self.step,)

    def x(self, k) -> np.ndarray:
        return self.values(k)[0]

    def dense(self) -> Range:
        return Range(self.name, self.start, self.stop)

    def locate(self, point: dict) -> int | None:
        """The point's coordinate on the dense axis, or None when it is off it."""
        v = point.get(self.name)
        return v if v is not None and self.start <= v <= self.stop else None

    def describe(self) -> str:
        last = self.start + (self.size - 1) * self.step
        return f"{self.name} {self.start}..{last}" + (f" step {self.step}" if self.step > 1 else "")


@dataclass(frozen=True)
class Ray:
    """Images of aspect ratio ``W:H`` with the long side from ``start`` to ``stop`` px; the short
    side is ``round(long * short/long)`` (halves up), at least 1."""

    names: tuple[str, str]  # (width input, height input)
    aspect: tuple[int, int]  # W:H
    start: int
    stop: int
    step: int = 1

    @property
    def size(self) -> int:
        return (self.stop - self.start) // self.step + 1

    def sides(self, long) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.aspect
        hi, lo = max(a, b), min(a, b)
        long = np.asarray(long, dtype=np.int64)
        short = np.maximum((2 * long * lo + hi) // (2 * hi), 1)
        return (long, short) if a >= b else (short, long)

    def values(self, k) -> tuple[np.ndarray, ...]:
        return self.sides(self.x(k))

    def x(self, k) -> np.ndarray:
        return self.start + np.asarray(k, dtype=np.int64) * self.step

    def dense(self) -> Ray:
        return Ray(self.names, self.aspect, self.start, self.stop)

    def locate(self, point: dict) -> int | None:
        w, h = (point.get(n) for n in self.names)
        if w is None or h is None:
            return None
        long = max(w, h)
        on = self.start <= long <= self.stop and tuple(int(s) for s in self.sides(long)) == (w, h)
        return long if on else None

    def describe(self) -> str:
        last = self.start + (self.size - 1) * self.step
        return f"aspect {self.aspect[0]}:{self.aspect[1]}, long side {self.start}..{last}" + (
            f" step {self.step}" if self.step > 1 else ""
        )


Axis = Range | Ray


def parse_range(text: str, inp: Input, flag: str | None = None) -> Range:
    """``N``, ``A:B`` or ``A:B:STEP`` (inclusive) -> a :class:`Range` within the input's bounds."""
    flag = flag or inp.flag
    m = _SPEC.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise SymcostError(
            f"{flag}: {_echo(str(text))} is not N, A:B or A:B:STEP with integers "
            f"{inp.lo} <= A <= B <= {inp.hi}, STEP >= 1"
        )
    a = int(m[1])
    b = int(m[2]) if m[2] is not None else a
    step = int(m[3]) if m[3] is not None else 1
    if m[2] is None and not inp.lo <= a <= inp.hi:
        raise SymcostError(f"{flag}: {a} is out of range [{inp.lo}, {inp.hi}]")
    if step < 1:
        raise SymcostError(f"{flag}: step {step} must be >= 1")
    if not inp.lo <= a <= b <= inp.hi:
        raise SymcostError(
            f"{flag}: {_echo(text)} needs {inp.lo} <= A <= B <= {inp.hi} "
            "(empty or reversed ranges are refused)"
        )
    return Range(inp.name, a, b, step)


def parse_aspect(text: str) -> tuple[int, int]:
    """``W:H`` (integers in [1, 65535]) or a name from :data:`ASPECTS`."""
    if text in ASPECTS:
        a, b = ASPECTS[text]
    else:
        m = _RATIO.fullmatch(text) if isinstance(text, str) else None
        a, b = (int(m[1]), int(m[2])) if m else (0, 0)
        if not (1 <= a <= 65535 and 1 <= b <= 65535):
            raise SymcostError(
                f"--aspect: {_echo(str(text))} is not W:H with integers in "
                f"[1, 65535] or one of {', '.join(ASPECTS)}"
            )
    return a, b


# -- what is evaluated ------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One stage of one configured model, the metrics asked, and how they are counted."""

    family: str
    options: tuple[tuple[str, object], ...] = ()
    stage: str | None = None  # None: the family's default stage
    metrics: tuple[str, ...] = ("flops",)
    convention: str = "torch"
    dtype: str = "bf16"
    kv_dtype: str | None = None
    hardware: Hardware | str | None = None  # resolve file names first for remote workers
    compute_efficiency: float = 1.0
    bandwidth_efficiency: float = 1.0

    def replace_option(self, name: str | None, value) -> Target:
        """The target with option ``name`` set to ``value`` (itself when either is None)."""
        if name is None or value is None:
            return self
        return replace(self, options=tuple((dict(self.options) | {name: value}).items()))


@dataclass(frozen=True)
class Compiled:
    model: Model
    stage: str
    evaluator: Evaluator
    columns: dict  # column -> int64, decimal128, decimal256 or float64, in order


_MODELS: dict[Target, Model] = {}
_COMPILED: dict[Target, Compiled] = {}  # per process: forked workers inherit the parent's


def model_of(target: Target) -> Model:
    """The target's model (options checked), loaded once per process; nothing compiled."""
    if target not in _MODELS:
        import symcost

        _MODELS[target] = symcost.load(target.family, **dict(target.options))
    return _MODELS[target]


def compiled(target: Target) -> Compiled:
    """The model, evaluator and column kinds of a target (compiled once per process)."""
    if target not in _COMPILED:
        _COMPILED[target] = _compile(target)
    return _COMPILED[target]


def _compile(t: Target) -> Compiled:
    model = model_of(t)
    stage = t.stage or model.family.default_stage
    ev = model.compile(
        stage,
        t.metrics,
        t.convention,
        t.dtype,
        t.kv_dtype,
        hardware=None if t.hardware is None else get_hardware(t.hardware),
        compute_efficiency=t.compute_efficiency,
        bandwidth_efficiency=t.bandwidth_efficiency,
    )
    columns = {i.name: "int64" for i in model.stage_inputs(stage)}
    if model.uses_layout(stage):
        columns |= {str(s): "int64" for s in model.layout.outputs}
    exprs = dict(model.stage_quantities(stage))
    if any(m in INT_METRICS for m in t.metrics):
        all_exprs = model.expressions(stage, t.convention, t.dtype, t.kv_dtype)
        exprs |= {m: all_exprs[m] for m in t.metrics if m in INT_METRICS}
    # the bound program is monotone in its arguments' magnitudes: evaluated at every
    # argument's declared maximum, it bounds the column over the whole input domain
    tops = [max(1, abs(m)) for m in model.layout.maxima] if model.uses_layout(stage) else []
    tops += [max(1, abs(i.lo), abs(i.hi)) for i in ev.scalar_inputs]
    kinds = dict.fromkeys(t.metrics, "float64")  # metrics in the order asked
    for name, expr in exprs.items():
        bound = CompiledFunction(ev.args, {name: expr})._bound_int(*tops)
        if bound >= 10**76:
            raise SymcostError(f"metric: {name} can reach {bound:.3e}, beyond any column type")
        kinds[name] = "int64" if bound < 2**63 else "decimal128" if bound < 10**38 else "decimal256"
    columns |= {q: kinds[q] for q in model.stage_quantities(stage)}
    columns |= {m: kinds[m] for m in t.metrics}
    return Compiled(model, stage, ev, columns)


# -- the sweep --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """The product of ``axes`` (first fastest) through ``target``; build it with :func:`make_sweep`."""

    target: Target
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return prod(a.size for a in self.axes)

    @property
    def stage(self) -> str:
        return self.target.stage or model_of(self.target).family.default_stage

    @property
    def varied(self) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if a.size > 1)

    @property
    def fixed(self) -> dict[str, int]:
        return {a.name: a.start for a in self.axes if isinstance(a, Range) and a.size == 1}

    def with_axes(self, axes) -> Sweep:
        return Sweep(self.target, tuple(axes))

    def chunks(self, size: int = CHUNK_POINTS) -> Iterator[tuple[int, int]]:
        """``[start, stop)`` ranges; inside one, inputs outside the image axes stay constant
        where they can (the compiled evaluator then gathers per layout outcome)."""
        names = set(model_of(self.target).family.image or ())
        inner = prod(a.size for a in self.axes if set(a.names) <= names)
        total = self.size
        if inner >= size:
            for block in range(0, total, inner):
                for s in range(block, block + inner, size):
                    yield s, min(s + size, block + inner)
        else:
            step = size // inner * inner
            for s in range(0, total, step):
                yield s, min(s + step, total)

    def evaluate(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Every column for points ``start <= i < stop``, exact (int64 or object ints)."""
        c = compiled(self.target)
        stop = self.size if stop is None else stop
        n = stop - start
        k = np.arange(start, stop, dtype=np.int64)
        values: dict[str, np.ndarray] = {}
        stride = 1
        for axis in self.axes:
            first = start // stride
            idx = (
                np.int64(first % axis.size) if first == (stop - 1) // stride else (k // stride) % axis.size
            )  # constant inputs stay scalars
            values.update(zip(axis.names, axis.values(idx)))
            stride *= axis.size
        out = c.evaluator(**values)
        return {
            name: np.broadcast_to(values[name] if name in values else out[name], (n,)) for name in c.columns
        }


def make_sweep(target: Target, axes) -> Sweep:
    """A sweep with its axes checked against the stage (an input it does not read is an error
    naming the stage), inputs not swept fixed at their defaults, axes in the family's order."""
    model = model_of(target)
    stage = target.stage or model.family.default_stage
    target = replace(target, stage=stage)
    model.stage(stage)
    reads = {i.name for i in model.stage_inputs(stage)}
    given: dict[str, Axis] = {}
    for axis in axes:
        for name in axis.names:
            inp = model.family.input(name)
            if name not in reads:
                readers = [s for s in model.stages if name in model.stage(s).inputs]
                raise SymcostError(
                    f"{inp.flag}: stage {stage} does not read it (stages that do: "
                    f"{', '.join(readers) or 'none'})"
                )
            if name in given:
                raise SymcostError(f"{inp.flag}: given twice")
            last = axis.values(axis.size - 1)[axis.names.index(name)]
            first = axis.values(0)[axis.names.index(name)]
            for v in (int(first), int(last)):
                if not inp.lo <= v <= inp.hi:  # a ray's short side may not fit the input
                    raise SymcostError(f"{inp.flag}: {v} is out of range [{inp.lo}, {inp.hi}]")
            given[name] = axis
    ordered: list[Axis] = []
    for inp in model.stage_inputs(stage):
        if inp.name in given:
            if given[inp.name] not in ordered:
                ordered.append(given[inp.name])
        elif inp.default is None:
            raise SymcostError(f"{inp.flag}: required by stage {stage} ({inp.help})")
        else:
            ordered.append(Range(inp.name, inp.default, inp.default))
    sweep = Sweep(target, tuple(ordered))
    if sweep.size > MAX_POINTS:
        raise SymcostError(f"sweep: {sweep.size:.3e} points is more than {MAX_POINTS:.3e}")
    return sweep


# -- formats ----------------------------------------------------------------------------------
def _text(cols: dict[str, np.ndarray], fmt: str) -> bytes:
    """CSV rows, or JSON records separated by ``,\\n``, of one chunk (exact ints, float repr)."""
    names = list(cols)
    if fmt == "csv":
        row, sep = ",".join(["{}"] * len(names)) + "\n", ""
    else:
        row, sep = "{{" + ", ".join(f'"{k}": {{}}' for k in names) + "}}", ",\n"
    n = len(cols[names[0]])
    blocks = []
    for s in range(0, n, _FORMAT_ROWS):
        lists = [c[s : s + _FORMAT_ROWS].tolist() for c in cols.values()]
        blocks.append(sep.join(map(row.format, *lists)).encode())
    return sep.encode().join(blocks)


def _arrow_type(kind: str):
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "decimal128": pa.decimal128(38, 0),
        "decimal256": pa.decimal256(76, 0),
    }[kind]


def arrow_schema(columns: dict):
    """The Parquet schema of a target's columns: the same for every grid."""
    import pyarrow as pa

    return pa.schema([pa.field(k, _arrow_type(kind), nullable=False) for k, kind in columns.items()])


def _record_batch(cols: dict[str, np.ndarray], columns: dict):
    import pyarrow as pa

    arrays = []
    for name, kind in columns.items():
        v = cols[name]
        if kind in ("int64", "float64"):  # object ints fit: the declared bound says so
            arrays.append(pa.array(np.asarray(v, dtype=kind)))
        elif v.dtype == object:  # Python ints past int64
            arrays.append(pa.array(v, type=_arrow_type(kind)))
        else:
            arrays.append(pa.array(v).cast(_arrow_type(kind)))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(columns))


def _payload(sweep: Sweep, fmt: str, start: int, stop: int):
    cols = sweep.evaluate(start, stop)
    if fmt == "parquet":
        return _record_batch(cols, compiled(sweep.target).columns)
    return _text(cols, fmt)


def require_pyarrow(param: str) -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise SymcostError(f"{param}: .parquet needs pyarrow (pip install 'symcost[parquet]')") from None


def _worker_init() -> None:
    from . import compile as compiled

    compiled.WORKERS = 1  # the processes are the parallelism: no thread pool inside each
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    for s in ("SIGTERM", "SIGHUP", "SIGQUIT"):
        if hasattr(signal, s):
            signal.signal(getattr(signal, s), signal.SIG_DFL)


def _payloads(sweep: Sweep, fmt: str, ranges: Iterator, jobs: int) -> Iterator:
    """Chunk payloads in order; with ``jobs > 1`` computed by forked workers, at most
    ``2 * jobs`` chunks in flight (the memory bound)."""
    if jobs <= 1:
        for s, e in ranges:
            yield e - s, _payload(sweep, fmt, s, e)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method), initializer=_worker_init)
    try:
        window: deque = deque()
        for s, e in ranges:
            window.append((e - s, pool.submit(_payload, sweep, fmt, s, e)))
            if len(window) >= 2 * jobs:
                n, fut = window.popleft()
                yield n, fut.result()
        while window:
            n, fut = window.popleft()
            yield n, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_jobs() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write(
    sweep: Sweep,
    path: str,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: Progress | None = None,
    chunk: int = CHUNK_POINTS,
) -> None:
    """Stream the sweep to ``path`` (.csv, .json or .parquet by extension), chunk by chunk,
    whole or not at all. JSON is one list of records, written record by record. ``jobs``
    worker processes format CSV and JSON chunks (the Python-bound part)."""
    fmt = check_target(path, force=force, extensions=FORMATS)
    if fmt == "parquet":
        require_pyarrow("--out")
    columns = compiled(sweep.target).columns
    # Parquet stays in this process: Arrow encodes columns on its own threads, and shipping
    # record batches between processes costs more CPU than it saves (measured: 3x)
    workers = 1 if fmt == "parquet" or sweep.size <= chunk else jobs

    def chunks(put):
        done = 0
        for n, payload in _payloads(sweep, fmt, sweep.chunks(chunk), workers):
            put(payload, done)
            done += n
            if progress:
                progress.update(done)

    def body(f):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(f, arrow_schema(columns)) as writer:
                chunks(lambda batch, done: writer.write_batch(batch))
            return
        f.write((",".join(columns) + "\n").encode() if fmt == "csv" else b"[\n")
        chunks(lambda text, done: f.write((b",\n" if fmt == "json" and done else b"") + text))
        if fmt == "json":
            f.write(b"\n]\n")

    try:
        atomic_write(path, body, binary=True, force=force)
    finally:
        if progress:
            progress.close()


# -- dask: a Parquet dataset ------------------------------------------------------------------
def _write_part(sweep: Sweep, start: int, stop: int, path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches([_payload(sweep, "parquet", start, stop)]), path)
    return stop - start


def check_dataset_target(path: str, force: bool = False, param: str = "--out") -> None:
    """A dataset folder name: ``.parquet``, in an existing folder; an existing one is replaced
    only with ``force`` and only when it holds nothing but part files (one we wrote)."""
    if not isinstance(path, str) or not path.endswith(".parquet") or not os.path.basename(path.rstrip("/")):
        raise SymcostError(
            f"{param}: {str(path)[:200]!r} must be a folder name ending in "
            ".parquet (--engine dask writes a Parquet dataset)"
        )
    path = path.rstrip("/")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SymcostError(f"{param}: folder {folder[:200]!r} does not exist")
    if len(os.fsencode(os.path.basename(path))) > 255 - len(".symcost-XXXXXXXX.part.old"):
        raise SymcostError(f"{param}: folder name longer than 229 bytes")
    if not os.path.lexists(path):
        return
    if not force:
        raise SymcostError(f"{param}: {path[:200]!r} exists; pass --force to replace it")
    if (
        os.path.islink(path)
        or not os.path.isdir(path)
        or not all(_PART.fullmatch(n) for n in os.listdir(path))
    ):
        raise SymcostError(
            f"{param}: {path[:200]!r} exists and is not a dataset symcost wrote "
            "(only part-*.parquet files); remove it yourself"
        )


def write_dataset(
    sweep: Sweep,
    path: str,
    client,
    *,
    force: bool = False,
    progress: Progress | None = None,
    chunk: int = CHUNK_POINTS,
) -> int:
    """Map the compiled sweep over chunks on a dask ``client``: one part file per chunk
    (``part-000000.parquet``, ... in point order) in a temporary folder next to ``path``,
    renamed to ``path`` when every part is written. Workers write the parts, so a remote
    cluster needs ``path`` on a file system its workers share. Returns the number of rows."""
    from distributed import as_completed

    path = path.rstrip("/")
    check_dataset_target(path, force)
    require_pyarrow("--out")
    compiled(sweep.target)
    ranges = list(sweep.chunks(chunk))
    digits = max(6, len(str(len(ranges) - 1)))
    folder = os.path.dirname(os.path.abspath(path))
    with interrupts_as_keyboard():
        try:
            tmp = tempfile.mkdtemp(prefix=".symcost-", suffix=".part", dir=folder)
        except OSError as e:
            raise SymcostError(f"--out: cannot write in {folder[:200]!r} ({e.strerror})") from None
        futures = []
        try:
            futures = client.map(
                _write_part,
                [sweep] * len(ranges),
                [s for s, _ in ranges],
                [e for _, e in ranges],
                [os.path.join(tmp, f"part-{k:0{digits}d}.parquet") for k in range(len(ranges))],
                pure=False,
            )
            rows = 0
            for fut in as_completed(futures):
                rows += fut.result()
                if progress:
                    progress.update(rows)
            _rename_folder(tmp, path, force)
            return rows
        except BaseException:
            client.cancel(futures)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if progress:
                progress.close()


def _rename_folder(tmp: str, path: str, force: bool) -> None:
    if os.path.lexists(path):
        check_dataset_target(path, force)  # it may have appeared while we computed
        old = tmp + ".old"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old)
    else:
        os.rename(tmp, path)


# -- progress ---------------------------------------------------------------------------------
PROGRESS_AFTER_S = 1.0  # work shorter than this draws no bar


class Progress:
    """A one-line progress bar on a stream (stderr), drawn once the work has taken
    ``PROGRESS_AFTER_S``, at most 10 times a second; off when the stream is not a terminal."""

    def __init__(self, total: int, label: str = "sweep", stream=None, quiet: bool = False):
        self.total, self.label, self.after_s = total, label, PROGRESS_AFTER_S
        self.stream = stream if stream is not None else sys.stderr
        self.on = not quiet and self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.drawn = False

    def update(self, done: int) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if now - self.start < self.after_s or (now - self.last < 0.1 and done < self.total):
            return
        self.last, self.drawn = now, True
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate else 0.0
        bar = "#" * int(30 * done / self.total)
        self.stream.write(
            f"\r{self.label} [{bar:<30}] {100 * done / self.total:5.1f}% "
            f"{done:,}/{self.total:,} points, {rate:,.0f}/s, {left:,.0f} s left "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
