"""Sweeps: every point of a product of input axes through the compiled closed forms, streamed.

A sweep is a :class:`Target` (family, options, stage, metrics, convention, precision,
hardware) and its axes: a :class:`Range` of one input, a :class:`Ray` of images of one
aspect ratio with the long side varied, or listed :class:`Images`. Its points are the
product of the axes, the first axis varying fastest (width, then height, then the other
inputs in the family's order). :class:`Rows` are sweeps written one after the other to one
file (one per curve of a plot).

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

import ctypes
import itertools
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from math import prod
from typing import TYPE_CHECKING

import numpy as np

from .compile import CompiledFunction
from .errors import SymcostError
from .files import (
    INTERRUPTS,
    atomic_write,
    check_target,
    interrupts_as_keyboard,
    locked_temp,
    raise_once,
    remove_leftovers,
    shielded,
    umask,
)
from .hardware import Hardware, get_hardware
from .inputs import Input
from .metrics import INT_METRICS

if TYPE_CHECKING:
    from .evaluator import Evaluator
    from .model import Model

__all__ = [
    "Range",
    "Ray",
    "Images",
    "Target",
    "Sweep",
    "Rows",
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
    "Limits",
    "LIMITS",
    "Estimate",
    "estimate",
    "check_estimate",
]

FORMATS = ("csv", "json", "parquet")
CHUNK_POINTS = 1 << 18  # points per chunk: 2 MiB per int64 column, ~9 MiB of CSV text
MAX_POINTS = 1 << 62  # point indices stay int64
_FORMAT_ROWS = 1 << 14  # rows turned into Python objects at a time while formatting text
# leading zeros matched apart: int() never sees more than 18 digits
_SPEC = re.compile(r"0*([0-9]{1,18})(?::0*([0-9]{1,18})(?::0*([0-9]{1,18}))?)?")
_RATIO = re.compile(r"0*([0-9]{1,5}):0*([0-9]{1,5})")
_PART = re.compile(r"part-[0-9]{6,}\.parquet")
_PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a process gets when its parent dies
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


@dataclass(frozen=True)
class Images:
    """Listed images, in the order given (``--image WxH``, repeatable)."""

    names: tuple[str, str]  # (width input, height input)
    sizes: tuple[tuple[int, int], ...]  # (W, H) each

    @property
    def size(self) -> int:
        return len(self.sizes)

    def values(self, k) -> tuple[np.ndarray, ...]:
        table = np.array(self.sizes, dtype=np.int64)
        return table[k, 0], table[k, 1]

    def x(self, k) -> np.ndarray:
        return np.asarray(k, dtype=np.int64)

    def dense(self) -> Images:
        return self

    def locate(self, point: dict) -> int | None:
        key = tuple(point.get(n) for n in self.names)
        return self.sizes.index(key) if key in self.sizes else None

    def describe(self) -> str:
        return "images " + ", ".join(f"{w}x{h}" for w, h in self.sizes)


Axis = Range | Ray | Images


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
        """Inputs held at one value: unvaried ranges and a single listed image."""
        out = {a.name: a.start for a in self.axes if isinstance(a, Range) and a.size == 1}
        for a in self.axes:
            if isinstance(a, Images) and a.size == 1:
                out |= dict(zip(a.names, a.sizes[0]))
        return out

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
            flag = "--image" if isinstance(axis, Images) else inp.flag
            if name not in reads:
                readers = [s for s in model.stages if name in model.stage(s).inputs]
                raise SymcostError(
                    f"{flag}: stage {stage} does not read it (stages that do: {', '.join(readers) or 'none'})"
                )
            if name in given:
                raise SymcostError(f"{flag}: given twice")
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


_WIDTH = {"int64": 0, "decimal128": 1, "decimal256": 2, "float64": 0, "string": 0}


@dataclass(frozen=True)
class Rows:
    """What one output holds: sweeps one after the other (as many as a plot draws curves). An
    option whose value differs between them leads every row as a column; a column whose kind
    differs between them takes the widest."""

    sweeps: tuple[Sweep, ...]

    @staticmethod
    def of(sweeps: Sweep | Sequence[Sweep]) -> Rows:
        return Rows((sweeps,) if isinstance(sweeps, Sweep) else tuple(sweeps))

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sweeps)

    @cached_property
    def labels(self) -> dict[str, tuple]:
        """Option -> its value per sweep, for the options whose values differ."""
        models = [model_of(s.target) for s in self.sweeps]
        return {
            o.name: tuple(str(m.options.get(o.name)) for m in models)
            for o in models[0].family.options
            if len({str(m.options.get(o.name)) for m in models}) > 1
        }

    @cached_property
    def columns(self) -> dict[str, str]:
        out = dict.fromkeys(self.labels, "string")
        for sweep in self.sweeps:
            for name, kind in compiled(sweep.target).columns.items():
                out[name] = max(out.get(name, kind), kind, key=_WIDTH.__getitem__)
        return out

    def tasks(self, chunk: int) -> Iterator[tuple[int, int, int]]:
        """(sweep, start, stop) of every chunk, in row order."""
        for k, sweep in enumerate(self.sweeps):
            for start, stop in sweep.chunks(chunk):
                yield k, start, stop

    def evaluate(self, k: int, start: int, stop: int) -> dict[str, np.ndarray]:
        cols = self.sweeps[k].evaluate(start, stop)
        labels = {
            n: np.broadcast_to(np.array(v[k], dtype=object), (stop - start,)) for n, v in self.labels.items()
        }
        return labels | cols


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
    quote = json.dumps if fmt == "json" else _csv_cell
    for s in range(0, n, _FORMAT_ROWS):
        lists = [
            [quote(x) for x in c[s : s + _FORMAT_ROWS]]
            if c.dtype == object and isinstance(c[0], str)
            else c[s : s + _FORMAT_ROWS].tolist()
            for c in cols.values()
        ]
        blocks.append(sep.join(map(row.format, *lists)).encode())
    return sep.encode().join(blocks)


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text


def _arrow_type(kind: str):
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "decimal128": pa.decimal128(38, 0),
        "decimal256": pa.decimal256(76, 0),
        "string": pa.string(),
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
        if kind == "string":
            arrays.append(pa.array(list(v), type=pa.string()))
        elif kind in ("int64", "float64"):  # object ints fit: the declared bound says so
            arrays.append(pa.array(np.asarray(v, dtype=kind)))
        elif v.dtype == object:  # Python ints past int64
            arrays.append(pa.array(v, type=_arrow_type(kind)))
        else:
            arrays.append(pa.array(v).cast(_arrow_type(kind)))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(columns))


def _payload(rows: Rows, fmt: str, k: int, start: int, stop: int):
    cols = rows.evaluate(k, start, stop)
    if fmt == "parquet":
        return _record_batch(cols, rows.columns)
    return _text(cols, fmt)


def require_pyarrow(param: str) -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise SymcostError(f"{param}: .parquet needs pyarrow (pip install 'symcost[parquet]')") from None


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies (even by SIGKILL); elsewhere
    the end of the task pipe tells an idle worker, a failed send a busy one."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def _work(conn, inherited, parent: int, rows: Rows, fmt: str) -> None:
    """A worker: (sweep, start, stop) tasks in, ("ok", payload) or ("error", exception) out, in order."""
    for s in INTERRUPTS:  # Ctrl-C goes to the whole group: the parent handles it; others kill
        signal.signal(s, signal.SIG_IGN if s == signal.SIGINT else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
    _die_with_parent(parent)
    for c in inherited:  # other workers' pipe ends: their EOF must not wait for this process
        c.close()
    from . import compile as compiled

    compiled.WORKERS = 1  # the processes are the parallelism: no thread pool inside each
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            os._exit(0)
        if task is None:
            os._exit(0)
        try:
            answer = ("ok", _payload(rows, fmt, *task))
        except Exception as e:  # a bug or a refused value: the parent raises it
            answer = ("error", e)
        try:
            conn.send(answer)
        except OSError:  # the parent died
            os._exit(0)
        except Exception as e:  # an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))


class _Workers:
    """``jobs`` forked processes computing chunk payloads, which come back in the order asked:
    chunk k goes to worker k % jobs, which answers in order; at most two chunks per worker are
    in flight (the memory bound). Workers die with this process; on any exit from the block
    they are stopped and reaped, with interrupts ignored until that is done."""

    def __init__(self, jobs: int, rows: Rows, fmt: str):
        self.jobs, self.rows, self.fmt = jobs, rows, fmt
        self.conns: list = []
        self.procs: list = []

    def __enter__(self) -> _Workers:
        ctx = multiprocessing.get_context("fork")
        parent = os.getpid()
        # blocked across fork: a signal must not reach a worker before its handlers are set
        signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
        try:
            for _ in range(self.jobs):
                mine, theirs = ctx.Pipe()
                args = (theirs, [*self.conns, mine], parent, self.rows, self.fmt)
                proc = ctx.Process(target=_work, args=args, daemon=True)
                proc.start()
                theirs.close()
                self.conns.append(mine)
                self.procs.append(proc)
        except BaseException as e:
            self.__exit__(type(e), e, None)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
        return self

    def __exit__(self, kind, value, traceback) -> None:
        with shielded():
            for conn in self.conns:
                conn.close()  # idle workers see the end of the pipe and exit
            for proc in self.procs:
                if kind is not None:
                    proc.kill()
                proc.join(10)
                if proc.exitcode is None:
                    proc.kill()
                    proc.join()

    def results(self, tasks: Iterator) -> Iterator:
        """(points, payload) of every task, in order."""
        flight: deque = deque()
        order = itertools.count()

        def submit() -> None:
            task = next(tasks, None)
            if task is not None:
                worker = next(order) % self.jobs
                self.conns[worker].send(task)
                flight.append((task[2] - task[1], worker))

        for _ in range(2 * self.jobs):
            submit()
        while flight:
            n, worker = flight.popleft()
            try:
                kind, value = self.conns[worker].recv()
            except (EOFError, OSError):
                self._died(worker)
            if kind == "error":
                raise value
            submit()
            yield n, value

    def _died(self, worker: int):
        proc = self.procs[worker]
        proc.join(10)
        code = proc.exitcode
        if code is not None and -code in INTERRUPTS:  # the signal went to the whole group
            raise_once(-code, None)
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        raise SymcostError(
            f"--jobs: worker process {proc.pid} ended ({how}, out of memory?); fewer --jobs need less memory"
        )


def _payloads(rows: Rows, fmt: str, tasks: Iterator, jobs: int) -> Iterator:
    """Chunk payloads in order, computed here or, with ``jobs > 1``, by forked workers."""
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for k, s, e in tasks:
            yield e - s, _payload(rows, fmt, k, s, e)
        return
    with _Workers(jobs, rows, fmt) as workers:
        yield from workers.results(iter(tasks))


@dataclass(frozen=True)
class Limits:
    """What a sweep may cost before it is refused (``--allow-huge`` runs it anyway): its
    estimated time, and its estimated output size against the free space of the output's
    folder. Sweeps under ``min_points`` are not estimated (seconds to minutes; a full disk is
    still one clean error)."""

    max_hours: float = 24.0
    min_points: int = 1 << 22
    sample_points: int = 1 << 16  # evaluated and encoded once, at the sweep's end (its largest
    # numbers: the longest rows)


@dataclass(frozen=True)
class Estimate:
    points: int
    sampled: int  # points evaluated and encoded to measure
    processes: int  # processes the time is divided among
    seconds: float
    bytes: int

    def describe(self, fmt: str) -> str:
        return (
            f"{self.points:.3e} points would take about {_duration(self.seconds)} on "
            f"{self.processes} process{'es' if self.processes > 1 else ''} and write about "
            f"{_bytes(self.bytes)} of {fmt.upper()} (measured on {self.sampled:,} of its points)"
        )


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.3g} {unit}"
    return f"{seconds:.3g} s"


def _bytes(n: float) -> str:
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.3g} {unit}"
    return f"{n:,.0f} B"


LIMITS = Limits()  # what the command line applies


def estimate(sweeps: Sweep | Sequence[Sweep], fmt: str, processes: int, limits: Limits = LIMITS) -> Estimate:
    """Time and output size of the whole sweep (or sweeps written together), from the last
    ``limits.sample_points`` points evaluated and encoded here, spread over ``processes``."""
    rows = Rows.of(sweeps)
    last = rows.sweeps[-1]
    n = min(limits.sample_points, last.size)
    start = time.perf_counter()
    payload = _payload(rows, fmt, len(rows.sweeps) - 1, last.size - n, last.size)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_batches([payload]), sink)
        size = sink.getvalue().size
    else:
        size = len(payload)
    seconds = (time.perf_counter() - start) * rows.size / n / processes
    return Estimate(rows.size, n, processes, seconds, rows.size * size // n)


def check_estimate(
    sweeps: Sweep | Sequence[Sweep], path: str, fmt: str, processes: int, limits: Limits = LIMITS
) -> None:
    """Refuse a sweep estimated to run over ``limits.max_hours`` or to outgrow the free space
    of ``path``'s folder, saying its estimated size and time."""
    if Rows.of(sweeps).size < limits.min_points:
        return
    est = estimate(sweeps, fmt, processes, limits)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if est.seconds > limits.max_hours * 3600 or est.bytes > free:
        raise SymcostError(
            f"sweep: {est.describe(fmt)}; refused above {limits.max_hours:g} hours or beyond the "
            f"{_bytes(free)} free for --out: narrow or thin the ranges (A:B:STEP), or pass "
            "--allow-huge to run it anyway"
        )


def default_jobs() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write(
    sweeps: Sweep | Sequence[Sweep],
    path: str,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: Progress | None = None,
    chunk: int = CHUNK_POINTS,
) -> None:
    """Stream the sweep (or sweeps, one after the other: see :class:`Rows`) to ``path``
    (.csv, .json or .parquet by extension), chunk by chunk, whole or not at all. JSON is one
    list of records, written record by record. ``jobs`` worker processes format CSV and JSON
    chunks (the Python-bound part)."""
    fmt = check_target(path, force=force, extensions=FORMATS)
    if fmt == "parquet":
        require_pyarrow("--out")
    rows = Rows.of(sweeps)
    columns = rows.columns
    # Parquet stays in this process: Arrow encodes columns on its own threads, and shipping
    # record batches between processes costs more CPU than it saves (measured: 3x)
    workers = 1 if fmt == "parquet" or rows.size <= chunk else jobs

    def chunks(put):
        done = 0
        for n, payload in _payloads(rows, fmt, rows.tasks(chunk), workers):
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
def _write_part(rows: Rows, k: int, start: int, stop: int, path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches([_payload(rows, "parquet", k, start, stop)]), path)
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
    if os.path.islink(path) or not os.path.isdir(path) or not _only_parts(path):
        raise SymcostError(
            f"{param}: {path[:200]!r} exists and is not a dataset symcost wrote "
            "(only part-*.parquet files); remove it yourself"
        )


def _only_parts(folder: str) -> bool:
    """Whether ``folder`` holds nothing but regular files named like part files (kinds checked,
    not only names: a folder or link named ``part-000000.parquet`` is not ours)."""
    with os.scandir(folder) as entries:
        return all(_PART.fullmatch(e.name) and e.is_file(follow_symlinks=False) for e in entries)


def write_dataset(
    sweeps: Sweep | Sequence[Sweep],
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
    rows = Rows.of(sweeps)
    rows.columns  # noqa: B018 (compiles every target here, once, before the workers need it)
    tasks = list(rows.tasks(chunk))
    digits = max(6, len(str(len(tasks) - 1)))
    folder = os.path.dirname(os.path.abspath(path))
    with interrupts_as_keyboard():
        remove_leftovers(folder)
        try:
            lock, tmp = locked_temp(folder, directory=True)
            os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; the usual mode, as the files get
        except OSError as e:
            raise SymcostError(f"--out: cannot write in {folder[:200]!r} ({e.strerror})") from None
        futures = []
        try:
            futures = client.map(
                _write_part,
                [rows] * len(tasks),
                *zip(*tasks),
                [os.path.join(tmp, f"part-{k:0{digits}d}.parquet") for k in range(len(tasks))],
                pure=False,
            )
            done = 0
            for fut in as_completed(futures):
                done += fut.result()
                if progress:
                    progress.update(done)
            _rename_folder(tmp, path, force)
            return done
        except BaseException:
            with shielded():
                client.cancel(futures)
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(lock)
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
