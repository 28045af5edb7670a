"""Serve a workload as an inference engine does: a step-level simulation (``symcost simulate``).

One engine on one device (or ``devices`` data-parallel replicas, each with its share of the
pages) serves a workload of pages, step after step; every step's time comes from the family's
closed forms. Two schedulers, small classes over one request model:

- :class:`ContinuousBatching` (``--runtime vllm``): vLLM's V1 scheduler
  (``vllm/v1/core/sched/scheduler.py``, ``Scheduler.schedule``), rule by rule:
  1. running requests first, in admission order, each given
     ``min(num_tokens - num_computed_tokens, token_budget)`` new tokens ("There's no decoding
     phase nor prefill phase": a decode is 1 token, a prefill chunk the rest, cut by the budget);
  2. a request's image is encoded in the step whose token range first overlaps its image
     block, if the encoder budget (``max(max_num_batched_tokens, largest image)``) and cache
     hold it, else the chunk stops before the image (``_try_schedule_encoder_inputs``);
  3. KV slots are allocated block by block, ``ceil((computed + new) / block_size)`` blocks in
     all (``allocate_slots``); when none are free the last running request is preempted
     (``preempted_req = self.running.pop()``): its blocks are freed, its computed tokens reset
     to 0 (recompute, outputs kept), its image re-encoded later, and it goes back to the front
     of the queue (``self.waiting.prepend_request``);
  4. then, only if nothing was preempted (``if not preempted_reqs``), waiting requests in
     order while budget is left and fewer than ``max_num_seqs`` run
     (``if len(self.running) == self.max_num_running_reqs: break``); a request that cannot get
     its blocks stops admission (``if new_blocks is None: ... break``);
  5. a request whose scheduled tokens reach its end samples one token (its first, or one more
     after a recompute); it finishes at ``n_out`` tokens or at ``max_model_len``
     (``check_stop``: ``request.num_tokens >= max_model_len``).
- :class:`StaticBatching` (``--runtime hf``): ``generate()`` on ``batch`` requests padded to
  the longest prompt, decoding until the longest output; the next batch when all finish.

Step time: vision of the images scheduled this step (the family's vision stage on them, one call
per tile layout: the family says whether it loops over images or packs them), then ONE decoder
forward over the step's mixed batch, the
family's ``Serving.step`` stage, a closed form in the batch's aggregates (sequences, tokens,
score pairs, keys read). Per op, time = max(compute, memory, launches) (see
:mod:`symcost.hardware`); a step with no prefill chunk replays a CUDA graph (the runtime's graph
floor; under ``hf`` it equals the eager floor). Between events (an admission, a finish, a
chunk, a preemption, an arrival) decode steps differ only by their growing contexts, so the
run of ``k`` steps costs a closed form too: per op, compute, memory and launches each summed
over the steps, then the max, as the request stage's sum over decode steps does (exact while an
op stays on one side for the whole run). The simulation jumps from event to event.

NB: a host model (``host``: CPU seconds per step from the step's shape) and a preprocessing
stage are hooks for later: by default the host costs nothing and a page reaches the engine when
it arrives.
NB: the KV-cache capacity is vLLM's own accounting (:mod:`symcost.kvcache`), as ``plan`` gives it.
"""

from __future__ import annotations

import csv
import heapq
import math
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import sympy as sp

from .checks import check_fraction, check_int, shown
from .dtypes import Precision, precision
from .errors import SymcostError
from .family import Serving
from .hardware import Hardware, get_hardware, op_times
from .model import Model
from .ops import expected_distinct_value
from .plan import DAY_S, _mix
from .tree import captured

__all__ = [
    "simulate",
    "Workload",
    "workload",
    "read_workload",
    "parse_distribution",
    "Arrivals",
    "Engine",
    "engine_limits",
    "HostModel",
    "StepTimer",
    "ContinuousBatching",
    "StaticBatching",
    "kv_capacity",
    "beside_plan",
    "PERCENTILES",
]

PERCENTILES = (50, 90, 99)
_GIB = 2**30
_MAX_PAGES = 10_000_000


def serving(model: Model) -> Serving:
    """The family's serving declaration, which must name an engine step."""
    s = model.family.serving
    if s is None or s.step is None:
        raise SymcostError(f"simulate: {model.family.name} declares no engine step stage")
    return s


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """Pages, one request each: the image (0 x 0: text only), prompt tokens (image block
    excluded), tokens to generate, and optionally when each arrives (s)."""

    width: np.ndarray
    height: np.ndarray
    prompt_tokens: np.ndarray
    new_tokens: np.ndarray
    arrival_s: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.new_tokens)


def parse_distribution(text: str) -> tuple[str, float, float]:
    """``lognormal:mean=M,sd=S`` or ``uniform:A:B`` (``--new-tokens-dist``), checked."""
    bad = SymcostError(
        f"new_tokens_dist: {shown(text)} is not lognormal:mean=M,sd=S (M > 0, S >= 0) or "
        "uniform:A:B (integers 1 <= A <= B)"
    )
    if not isinstance(text, str) or len(text) > 100:
        raise bad
    kind, _, rest = text.partition(":")
    try:
        if kind == "lognormal":
            fields = dict(p.split("=", 1) for p in rest.split(","))
            if set(fields) != {"mean", "sd"}:
                raise bad
            mean, sd = float(fields["mean"]), float(fields["sd"])
            if not (0 < mean < 1e7 and 0 <= sd < 1e7):
                raise bad
            return kind, mean, sd
        if kind == "uniform":
            a, b = (int(x) for x in rest.split(":"))
            if not 1 <= a <= b <= 1 << 20:
                raise bad
            return kind, float(a), float(b)
    except ValueError:
        raise bad from None
    raise bad


def _draw(dist: tuple[str, float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    kind, x, y = dist
    if kind == "uniform":
        return rng.integers(int(x), int(y) + 1, n)
    sigma2 = math.log1p((y / x) ** 2)  # a lognormal with this mean and standard deviation
    draws = rng.lognormal(math.log(x) - sigma2 / 2, math.sqrt(sigma2), n)
    return np.minimum(np.maximum(np.rint(draws), 1), 1 << 20).astype(np.int64)


def workload(
    images: list[tuple[int, int]],
    pages: int,
    prompt_tokens: int,
    new_tokens: int | None = None,
    new_tokens_dist: str | None = None,
    seed: int = 0,
) -> Workload:
    """``pages`` requests cycling through ``images`` (empty: text only) in equal parts, each
    with ``prompt_tokens`` and ``new_tokens`` (or draws from ``new_tokens_dist``, seeded)."""
    pages = check_int("pages", pages, 1, _MAX_PAGES)
    if (new_tokens is None) == (new_tokens_dist is None):
        raise SymcostError("new_tokens: give new_tokens or new_tokens_dist (one of them)")
    idx = np.arange(pages) % max(len(images), 1)
    w = np.array([i[0] for i in images] or [0], dtype=np.int64)[idx]
    h = np.array([i[1] for i in images] or [0], dtype=np.int64)[idx]
    if new_tokens_dist is not None:
        n = _draw(parse_distribution(new_tokens_dist), pages, np.random.default_rng(seed))
    else:
        n = np.full(pages, new_tokens, dtype=np.int64)
    return Workload(w, h, np.full(pages, prompt_tokens, dtype=np.int64), n)


_COLUMNS = ("width", "height", "prompt_tokens", "new_tokens")


def read_workload(path: str) -> Workload:
    """A corpus from CSV or Parquet: ``width,height,prompt_tokens,new_tokens[,arrival_s]`` per
    page; width = height = 0 for a text-only request."""
    if not isinstance(path, str) or not path:
        raise SymcostError("workload: expected a file path")
    try:
        if path.endswith(".parquet"):
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise SymcostError("workload: Parquet needs pyarrow (pip install pyarrow)") from None
            table = pq.read_table(path)
            cols = {name: table.column(name).to_pylist() for name in table.column_names}
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            cols = {k: [r[k] for r in rows] for k in (rows[0].keys() if rows else ())}
    except OSError as e:
        raise SymcostError(f"workload: cannot read {path[:200]!r} ({e.strerror or e})") from None
    except SymcostError:
        raise
    except Exception as e:  # a malformed file of any kind: one line
        raise SymcostError(f"workload: cannot read {path[:200]!r} ({type(e).__name__})") from None
    missing = [c for c in _COLUMNS if c not in cols]
    extra = sorted(set(cols) - set(_COLUMNS) - {"arrival_s"})
    if missing or extra:
        what = f"missing column {missing[0]!r}" if missing else f"unknown column {extra[0][:40]!r}"
        raise SymcostError(f"workload: {what}; columns are {', '.join(_COLUMNS)}[, arrival_s]")
    n = len(cols["new_tokens"])
    if not 1 <= n <= _MAX_PAGES:
        raise SymcostError(f"workload: {n} pages; expected 1 to {_MAX_PAGES:,}")

    def ints(name: str, lo: int, hi: int) -> np.ndarray:
        try:
            arr = np.array([int(v) for v in cols[name]], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise SymcostError(f"workload: column {name} must hold integers") from None
        bad = (arr < lo) | (arr > hi)
        if bad.any():
            row = int(np.argmax(bad))
            raise SymcostError(f"workload: {name} {int(arr[row])} on row {row + 1} is not in [{lo}, {hi}]")
        return arr

    w, h = ints("width", 0, 65_535), ints("height", 0, 65_535)
    if ((w == 0) != (h == 0)).any():
        raise SymcostError("workload: width and height are both 0 (text only) or both positive")
    arrival = None
    if "arrival_s" in cols:
        try:
            arrival = np.array([float(v) for v in cols["arrival_s"]], dtype=np.float64)
        except (TypeError, ValueError):
            raise SymcostError("workload: column arrival_s must hold numbers (s)") from None
        if not (np.isfinite(arrival).all() and (arrival >= 0).all()):
            raise SymcostError("workload: arrival_s must be finite and >= 0")
    return Workload(w, h, ints("prompt_tokens", 0, 1 << 20), ints("new_tokens", 1, 1 << 20), arrival)


@dataclass(frozen=True)
class Arrivals:
    """When pages reach the engine: ``offline`` (all queued at t = 0, a batch job), ``rate``
    (Poisson, ``value`` pages/s), ``concurrency`` (closed loop: ``value`` clients, each sending
    its next page when its last returns, as benchmark clients do) or ``file`` (the workload's
    ``arrival_s``)."""

    kind: str = "offline"
    value: float = 0.0

    def __post_init__(self):
        kinds = ("offline", "rate", "concurrency", "file")
        if self.kind not in kinds:
            raise SymcostError(f"arrivals: {shown(self.kind)} is not one of {', '.join(kinds)}")
        if self.kind == "rate" and not 0 < self.value < 1e9:
            raise SymcostError(f"rate: {shown(self.value)} is not a positive number of pages/s")
        if self.kind == "concurrency" and not (float(self.value).is_integer() and 1 <= self.value <= 1 << 20):
            raise SymcostError(f"concurrency: {shown(self.value)} is not an integer in [1, 1048576]")

    @property
    def online(self) -> bool:
        """A server (vLLM's API-server defaults) rather than a batch job (its LLM-class ones)."""
        return self.kind != "offline"

    def times(self, work: Workload, rng: np.random.Generator) -> np.ndarray | None:
        """Arrival times (s) of an open loop; None for a closed loop."""
        n = len(work)
        if self.kind == "offline":
            return np.zeros(n)
        if self.kind == "rate":
            return np.cumsum(rng.exponential(1.0 / self.value, n))
        if self.kind == "file":
            if work.arrival_s is None:
                raise SymcostError("arrivals: 'file' needs a workload with an arrival_s column")
            return work.arrival_s
        return None

    def describe(self) -> str:
        return {
            "offline": "offline (every page queued at t = 0)",
            "rate": f"Poisson at {self.value:g} pages/s",
            "concurrency": f"closed loop, {int(self.value)} clients",
            "file": "the workload's arrival_s",
        }[self.kind]


# --------------------------------------------------------------------------- engine limits


@dataclass(frozen=True)
class Engine:
    """The engine's limits. Continuous batching (vLLM): ``max_num_seqs`` running requests,
    ``max_num_batched_tokens`` per step (None: unlimited), KV blocks of ``block_size`` tokens in
    ``gpu_memory_utilization`` of the device, sequences of at most ``max_model_len`` tokens.
    Static batching (hf): ``batch`` requests per ``generate()``."""

    max_num_seqs: int = 0
    max_num_batched_tokens: int | None = None
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 0
    num_gpu_blocks_override: int | None = None  # KV blocks instead of the memory accounting
    batch: int = 0
    sources: tuple[tuple[str, str], ...] = ()  # limit -> where its value comes from


# vLLM's defaults (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults): devices with at least
# 70 GiB that are not A100s get the large ones ("Setting large max_num_batched_tokens for A100
# reduces throughput"); the LLM class (a batch job) and the API server (online) differ.
_VLLM_BATCHED_TOKENS = {(True, False): 16384, (True, True): 8192, (False, False): 8192, (False, True): 2048}
_VLLM_SEQS = {True: 1024, False: 256}
_VLLM_BLOCK = 16  # vllm/platforms: "if cache_config.block_size is None: cache_config.block_size = 16"
_VLLM_UTILIZATION = 0.9  # CacheConfig.gpu_memory_utilization


def engine_limits(
    model: Model,
    hw: Hardware,
    arrivals: Arrivals,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | str | None = None,
    block_size: int | None = None,
    gpu_memory_utilization: float | None = None,
    max_model_len: int | None = None,
    num_gpu_blocks_override: int | None = None,
    batch: int | None = None,
) -> Engine:
    """The engine's limits: the given ones, else the runtime's defaults (with their sources).
    ``max_num_batched_tokens="unlimited"``: no per-step token budget. A limit that does not
    apply to the runtime is an error."""
    positions = serving(model).max_positions
    if model.runtime.name != "vllm":
        given = dict(
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            block_size=block_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            num_gpu_blocks_override=num_gpu_blocks_override,
        )
        for name, value in given.items():
            if value is not None:
                raise SymcostError(f"{name}: applies to runtime vllm (continuous batching) only")
        if batch is None:
            return Engine(batch=0, sources=(("batch", "the largest that fits (plan)"),))
        return Engine(batch=check_int("batch", batch, 1, 1 << 16), sources=(("batch", "given"),))
    if batch is not None:
        raise SymcostError("batch: applies to runtime hf (static batching) only; vllm takes max_num_seqs")
    large = hw.memory_bytes >= 70 * _GIB and "a100" not in hw.name.lower()
    sources = []

    def pick(name, value, default, why):
        sources.append((name, "given" if value is not None else why))
        return default if value is None else value

    ctx = "API server" if arrivals.online else "LLM class"
    size = ">= 70 GiB, not A100" if large else "< 70 GiB or A100"
    seqs = pick("max_num_seqs", max_num_seqs, _VLLM_SEQS[large], f"vLLM default ({size})")
    tokens = pick(
        "max_num_batched_tokens",
        max_num_batched_tokens,
        _VLLM_BATCHED_TOKENS[(large, arrivals.online)],
        f"vLLM default ({ctx}, {size})",
    )
    block = pick("block_size", block_size, _VLLM_BLOCK, "vLLM default")
    util = pick("gpu_memory_utilization", gpu_memory_utilization, _VLLM_UTILIZATION, "vLLM default")
    if positions is None and max_model_len is None:
        raise SymcostError(f"max_model_len: {model.family.name} declares no longest sequence; give it")
    length = pick("max_model_len", max_model_len, positions, "the model's max_position_embeddings")
    return Engine(
        max_num_seqs=check_int("max_num_seqs", seqs, 1, 1 << 16),
        max_num_batched_tokens=None
        if tokens == "unlimited"
        else check_int("max_num_batched_tokens", tokens, 1, 1 << 24),
        block_size=check_int("block_size", block, 1, 1 << 12),
        gpu_memory_utilization=check_fraction("gpu_memory_utilization", util),
        max_model_len=check_int("max_model_len", length, 1, 1 << 24),
        num_gpu_blocks_override=None
        if num_gpu_blocks_override is None
        else check_int("num_gpu_blocks_override", num_gpu_blocks_override, 1, 1 << 30),
        sources=tuple(sources),
    )


class HostModel(Protocol):
    """The host's share of a step (a hook: none by default). ``seconds(seqs, tokens, sampled)``:
    CPU seconds of a step running ``seqs`` sequences, ``tokens`` tokens, sampling ``sampled``
    tokens; ``overlaps``: whether the GPU runs meanwhile (then a step takes the longer of the
    two) or waits (the sum)."""

    @property
    def overlaps(self) -> bool: ...

    def seconds(self, seqs: int, tokens: int, sampled: int) -> float: ...


def _with_host(gpu_s: float, host_s: float, overlaps: bool) -> float:
    return max(gpu_s, host_s) if overlaps else gpu_s + host_s


# --------------------------------------------------------------------------- step time


class StepTimer:
    """Time of one engine step (and of a run of decode-only steps) from the family's step stage.

    Per op of the step's tree, its compute, memory and launch seconds (:func:`op_times`) are
    linear forms in monomials of the aggregates: sequences B, tokens T and functions of them
    (experts touched), each times 1, score pairs A or keys K (an op linear in A and K, checked).
    Compiled once into a matrix, a step costs one small matrix product; a run of ``k`` decode
    steps (B = T sequences, A = K growing by B per step) sums each monomial over the steps first
    (so each op's compute, memory and launches are summed, then the max taken).
    """

    def __init__(self, model: Model, hw: Hardware, prec: Precision, ce: float, be: float):
        s = serving(model)
        b, t, a, k = (
            model.family.input(n).symbol for n in (s.batch, s.step_tokens, s.score_pairs, s.attended_keys)
        )
        tree = model.tree(s.step or "", prec.dtype, prec.kv_dtype)
        eager = [op_times(c, hw, prec, model.runtime, False, ce, be) for _, c, _ in tree.leaves()]
        graph = [op_times(c, hw, prec, model.runtime, True, ce, be) for _, c, _ in captured(tree).leaves()]
        exprs = [sp.sympify(x) for row in eager + graph for x in row]
        atoms = sorted({f for e in exprs for f in e.atoms(sp.Function, sp.Min, sp.Max)}, key=str)
        for f in atoms:
            if not f.free_symbols <= {b, t}:
                raise SymcostError(f"simulate: the step's {f.func.__name__} depends on more than B and T")
        scalar = {"expected_distinct": expected_distinct_value}
        self._atoms = [sp.lambdify((b, t), f, modules=[scalar, "math"]) for f in atoms]
        fixed = [b, t, *atoms]
        growing = (a, k)
        monomials: dict[tuple, int] = {}
        rows = []
        gens = (*fixed, *growing)
        for e in exprs:
            row: dict[int, float] = {}
            for term, coef in sp.expand(e).as_coefficients_dict().items():
                powers = {} if term == 1 else term.as_powers_dict()
                if set(powers) - set(gens) or not all(sp.sympify(x).is_Integer for x in powers.values()):
                    raise SymcostError(f"simulate: the step's time is not a polynomial in B, T, A, K: {term}")
                exps = tuple(int(powers.get(g, 0)) for g in gens)
                if sum(exps[len(fixed) :]) > 1:
                    raise SymcostError("simulate: the step's time is not linear in score pairs and keys")
                g = 1 + exps[len(fixed) :].index(1) if any(exps[len(fixed) :]) else 0
                j = monomials.setdefault((exps[: len(fixed)], g), len(monomials))
                row[j] = row.get(j, 0.0) + float(coef)
            rows.append(row)
        n_ops = len(eager)
        m = np.zeros((2, n_ops, 3, len(monomials)))
        for r, row in enumerate(rows):
            variant, rest = divmod(r, 3 * n_ops)
            op_index, side = divmod(rest, 3)
            for j, c in row.items():
                m[variant, op_index, side, j] = c
        # [variant] (3 * ops, monomials): rows op-major, then compute, memory, launch
        self._m = m.reshape(2, 3 * n_ops, len(monomials))
        self._n_ops = n_ops
        keys = list(monomials)
        self._exps = np.array([key[0] for key in keys], dtype=np.float64)
        self._grow = np.array([key[1] for key in keys], dtype=np.int64)
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._curves: dict[int, _Curve] = {}

    def _lines(self, variant: int, seqs: int, tokens: int) -> np.ndarray:
        """(3, ops, 3 sides): seconds = [0] + [1] * A + [2] * K at these B and T."""
        key = (variant, seqs, tokens)
        lines = self._cache.get(key)
        if lines is None:
            fixed = np.array([seqs, tokens, *(f(seqs, tokens) for f in self._atoms)], dtype=np.float64)
            base = np.prod(fixed**self._exps, axis=1)
            v = base[:, None] * (self._grow[:, None] == np.arange(3))  # (monomials, 3 growths)
            lines = (self._m[variant] @ v).reshape(self._n_ops, 3, 3).transpose(2, 0, 1)
            if len(self._cache) > 65_536:
                self._cache.clear()
            self._cache[key] = lines
        return lines

    def step(self, seqs: int, tokens: int, pairs: int, keys: int, graph: bool) -> tuple[float, tuple]:
        """Seconds of one step, and the seconds of ops bound by compute, memory and launches."""
        c, a, k = self._lines(int(graph), seqs, tokens)
        t = c + a * pairs + k * keys
        top = t.max(axis=1)
        parts = np.bincount(t.argmax(axis=1), weights=top, minlength=3)
        return float(top.sum()), (float(parts[0]), float(parts[1]), float(parts[2]))

    def curve(self, graph: bool, seqs: int, tokens: int, extra: int) -> _Curve:
        """Steps of B = ``seqs``, T = ``tokens`` and A = K + ``extra`` as a function of K."""
        c, a, k = self._lines(int(graph), seqs, tokens)
        return _Curve(c + a * extra, a + k)

    def decode(self, seqs: int) -> _Curve:
        """Decode-only steps of ``seqs`` sequences as a function of the keys they read."""
        curve = self._curves.get(seqs)
        if curve is None:
            curve = self._curves[seqs] = self.curve(True, seqs, seqs, 0)  # A = K: 1 token each
        return curve

    def run(self, seqs: int, keys: int, k: int) -> tuple[float, tuple, float, float]:
        """``k`` decode-only steps of ``seqs`` sequences, the first reading ``keys`` keys in all
        (each step adds ``seqs``): total seconds, the bound split, first and last step's seconds.
        Each op's three times summed over the steps are ``k`` times their value at the mean
        keys, so the run is ``k`` steps at the mean keys."""
        f = self.decode(seqs)
        mean = keys + seqs * (k - 1) / 2
        c, m, n = f.parts(mean)
        return k * f(mean), (k * c, k * m, k * n), f(keys), f(keys + seqs * (k - 1))

    def run_seconds(self, seqs: int, keys: int, k: int) -> float:
        """Total seconds of :meth:`run` alone."""
        return k * self.decode(seqs)(keys + seqs * (k - 1) / 2)


class _Curve:
    """``sum over ops of max(c + s * r)`` over the op's three sides, for r >= 0: a convex
    piecewise-linear function, stored as segments (start, intercept, slope) with the same per
    side (which ops each side bounds is fixed within a segment)."""

    def __init__(self, c: np.ndarray, s: np.ndarray):
        cs, ss = c.tolist(), s.tolist()
        changes = sorted((r, op, side) for op in range(len(cs)) for r, side in _envelope(cs[op], ss[op]))
        ic, sl, now = [0.0] * 3, [0.0] * 3, [-1] * len(cs)
        self.starts: list[float] = []
        self.lines: list[tuple] = []  # per segment: intercept, slope, side intercepts, side slopes
        for r, op, side in changes:  # sweep: each op moves to its next side at r
            if now[op] >= 0:
                ic[now[op]] -= cs[op][now[op]]
                sl[now[op]] -= ss[op][now[op]]
            ic[side] += cs[op][side]
            sl[side] += ss[op][side]
            now[op] = side
            if self.starts and self.starts[-1] == r:
                self.lines.pop()
                self.starts.pop()
            self.starts.append(r)
            self.lines.append((sum(ic), sum(sl), tuple(ic), tuple(sl)))

    def __call__(self, r: float) -> float:
        c, s, _, _ = self.lines[bisect_right(self.starts, r) - 1]
        return c + s * r

    def parts(self, r: float) -> tuple[float, float, float]:
        _, _, c, s = self.lines[bisect_right(self.starts, r) - 1]
        return (c[0] + s[0] * r, c[1] + s[1] * r, c[2] + s[2] * r)


def _envelope(c: list[float], s: list[float]) -> list[tuple[float, int]]:
    """The upper envelope of the lines ``c[i] + s[i] * r`` over r >= 0: (start, line) pieces."""
    cur = max(range(3), key=lambda i: (c[i], s[i]))
    out, r = [(0.0, cur)], 0.0
    while True:
        ahead = [((c[cur] - c[i]) / (s[i] - s[cur]), -s[i], i) for i in range(3) if s[i] > s[cur]]
        ahead = [x for x in ahead if x[0] >= r]
        if not ahead:
            return out
        r, _, cur = min(ahead)
        if r == out[-1][0]:  # lines meeting in one point: the steepest goes on
            out[-1] = (r, cur)
        else:
            out.append((r, cur))


class _Steps:
    """Step times within one run. Steps of the same B, T and A - K (the decode batch plus one
    page's whole prefill, say) differ only in K: from the second such step on, a curve in K
    answers without NumPy. Kept per run, so a run's figures never depend on what ran before."""

    def __init__(self, timer: StepTimer):
        self.timer = timer
        self.curves: dict[tuple, _Curve] = {}
        self.seen: set[tuple] = set()

    def __call__(self, seqs: int, tokens: int, pairs: int, keys: int, graph: bool) -> tuple[float, tuple]:
        key = (graph, seqs, tokens, pairs - keys)
        curve = self.curves.get(key)
        if curve is None:
            if key not in self.seen:
                self.seen.add(key)
                return self.timer.step(seqs, tokens, pairs, keys, graph)
            curve = self.curves[key] = self.timer.curve(graph, seqs, tokens, pairs - keys)
        return curve(keys), curve.parts(keys)


# --------------------------------------------------------------------------- pages and traces


@dataclass
class _Pages:
    """Per request, as Python lists (read one at a time in the hot loop)."""

    s0: list[int]  # prefill tokens: prompt + image block
    n_out: list[int]  # tokens it generates (capped at max_model_len)
    img: list[int]  # image block tokens (0: text only)
    layout: list[int]  # its tile layout (-1: text only)
    img_start: list[int]  # its first position in the prompt


@dataclass
class _Trace:
    """What a replica recorded: per request times, and per event (a step or a run of steps)."""

    n: int
    arrival: np.ndarray
    timeline: bool = False  # record the per-event series (plots)
    first: np.ndarray = field(init=False)
    finish: np.ndarray = field(init=False)
    preemptions: int = 0
    steps: int = 0
    t: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0  # decoder time of steps with a prefill chunk
    decode_s: float = 0.0  # decoder time of decode-only steps
    host_s: float = 0.0
    parts: list = field(default_factory=lambda: [0.0, 0.0, 0.0])  # bound by compute, memory, launch
    kv_blocked_s: float = 0.0  # steps in which a waiting page could not get KV blocks
    starved_s: float = 0.0  # time with nothing waiting and a free slot (idle included)
    idle_s: float = 0.0  # time with nothing to run
    batch_time: float = 0.0  # sum of sequences x seconds over steps
    peak_batch: int = 0
    peak_blocks: int = 0
    # per event: end time, sequences, blocks in use, output tokens so far
    ev_t: list = field(default_factory=list)
    ev_seqs: list = field(default_factory=list)
    ev_blocks: list = field(default_factory=list)
    ev_tokens: list = field(default_factory=list)
    # inter-token gaps: runs of k steps from d0 to d1 seconds, each giving `weight` gaps per step
    itl: list = field(default_factory=list)  # (d0, d1, k, weight)
    tokens: int = 0

    def __post_init__(self):
        self.first = np.full(self.n, np.nan)
        self.finish = np.full(self.n, np.nan)

    def idle(self, gap: float) -> None:
        self.t += gap
        self.idle_s += gap
        self.starved_s += gap

    def bound(self, parts) -> None:
        self.parts[0] += parts[0]
        self.parts[1] += parts[1]
        self.parts[2] += parts[2]

    def event(self, dur: float, seqs: int, blocks: int, steps: int = 1) -> None:
        self.t += dur
        self.steps += steps
        self.batch_time += seqs * dur
        if seqs > self.peak_batch:
            self.peak_batch = seqs
        if blocks > self.peak_blocks:
            self.peak_blocks = blocks
        if self.timeline:
            self.ev_t.append(self.t)
            self.ev_seqs.append(seqs)
            self.ev_blocks.append(blocks)
            self.ev_tokens.append(self.tokens)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- schedulers


class ContinuousBatching:
    """vLLM's V1 scheduler (see the module docstring for each rule and its source line).

    Requests in the decode phase that advance together are kept in aggregate: request i's
    computed tokens are ``base[i] + G`` (G counts the steps in which all of them decoded), so
    a step costs O(prefill chunks), not O(sequences): the sum of their bases, their count per
    ``base mod block_size`` (who needs a new KV block at which step) and a heap of the steps at
    which they finish. A step the aggregate cannot take exactly (a preemption, a token budget
    smaller than the decode batch, a decode scheduled after a prefill chunk) runs request by
    request; ``fast=False`` runs every step so (a check: the results are identical).
    """

    def __init__(
        self,
        pages: _Pages,
        timer: StepTimer,
        vision: _Vision,
        eng: Engine,
        total_blocks: int,
        host: HostModel | None = None,
        fast: bool = True,
        progress: Callable[[int], None] | None = None,
        log: list | None = None,
    ):
        self.p, self.timer, self.eng, self.host, self.vision = pages, timer, eng, host, vision
        self.fast, self.progress, self.log = fast and log is None, progress, log
        self.bs = eng.block_size
        self.budget = eng.max_num_batched_tokens if eng.max_num_batched_tokens is not None else 1 << 62
        # vLLM's encoder budget and cache: max(max_num_encoder_input_tokens, largest item)
        self.enc_budget = max(self.budget, max(pages.img, default=0))
        self.total_blocks = total_blocks

    # -- the run -------------------------------------------------------------------------
    def run(self, arrival: np.ndarray | None, concurrency: int = 0, timeline: bool = False) -> _Trace:
        n = len(self.p.s0)
        tr = _Trace(n, np.zeros(n) if arrival is None else np.array(arrival, dtype=np.float64), timeline)
        self.tr, self.steps = tr, _Steps(self.timer)
        self.free = self.total_blocks
        self.computed = [0] * n  # KV tokens (decode-set members: base + G)
        self.out = [0] * n  # tokens generated
        self.encoded = [False] * n  # its image's embeddings are in the encoder cache
        self.enc_used = 0
        self.base = [0] * n
        self.gend = [-1] * n  # a decode-set member's finishing G (-1: not a member)
        self.last_tok = [0.0] * n  # when it last produced a token (outside the decode set)
        self.last_decode = 0.0  # when the decode set last advanced
        self.running: list[int] = []
        self.pf: list[int] = []  # running requests outside the decode set, in running order
        self.waiting: deque[int] = deque()
        self.G = self.D = self.Sb = 0
        self.cnt = [0] * self.bs  # decode-set members per base mod block_size
        self.heap: list[tuple[int, int]] = []
        self.done = 0
        self.finished: list[int] = []  # in this step (for the log)
        self.closed = arrival is None
        if self.closed:  # closed loop: the clients' first pages at t = 0
            self.order = list(range(n))
            self.next = min(concurrency, n)
            self.waiting.extend(range(self.next))
        else:
            self.order = np.argsort(tr.arrival, kind="stable").tolist()
            self.next = 0
        while self.done < n:
            self._arrive()
            if not self.running and not self.waiting:  # idle until the next page
                tr.idle(tr.arrival[self.order[self.next]] - tr.t)
                continue
            if self.log is not None or not self._decode_run():  # a log lists every step
                self._step()
        return tr

    def _arrive(self) -> None:
        if self.closed:
            return
        arrival, order = self.tr.arrival, self.order
        while self.next < len(order) and arrival[order[self.next]] <= self.tr.t:
            self.waiting.append(order[self.next])  # a preprocessing stage would delay it here
            self.next += 1

    # -- request state -------------------------------------------------------------------
    def _ntok(self, i: int) -> int:
        """``num_tokens``: prompt + tokens generated so far."""
        return self.p.s0[i] + self.out[i]

    def _enter_decode(self, i: int) -> None:
        b = self.computed[i] - self.G
        self.base[i] = b
        self.D += 1
        self.Sb += b
        self.cnt[b % self.bs] += 1
        end = self.p.s0[i] + self.p.n_out[i] - 1 - b  # the G at which its last token is out
        self.gend[i] = end
        heapq.heappush(self.heap, (end, i))

    def _leave_decode(self, i: int) -> None:
        b = self.base[i]
        self.computed[i] = b + self.G
        self.out[i] = self.computed[i] + 1 - self.p.s0[i]
        self.last_tok[i] = max(self.last_tok[i], self.last_decode)
        self.D -= 1
        self.Sb -= b
        self.cnt[b % self.bs] -= 1
        self.gend[i] = -1  # its heap entry is stale from now on

    def _finish(self, i: int) -> None:
        tr = self.tr
        self.free += _cdiv(self.computed[i], self.bs)
        self._free_encoder(i)
        self.running.remove(i)
        tr.finish[i] = tr.t
        self.done += 1
        self.finished.append(i)
        if self.progress is not None:
            self.progress(self.done)
        if self.closed and self.next < len(self.order):  # its client sends the next page now
            j = self.order[self.next]
            tr.arrival[j] = tr.t
            self.waiting.append(j)
            self.next += 1

    def _free_encoder(self, i: int) -> None:
        if self.encoded[i]:
            self.encoded[i] = False
            self.enc_used -= self.p.img[i]

    def _preempt(self, i: int) -> None:
        """``_preempt_request``: blocks freed, computed tokens 0, back to the queue's front."""
        self.free += _cdiv(self.computed[i], self.bs)
        self.computed[i] = 0
        self._free_encoder(i)
        self.pf.remove(i)
        self.waiting.appendleft(i)
        self.tr.preemptions += 1

    def _encoder(self, i: int, c: int, n: int, enc: int) -> tuple[int, bool]:
        """``_try_schedule_encoder_inputs`` for request i's image: how many of the ``n`` tokens
        from ``c`` on it may run, and whether its image is encoded in this step."""
        p = self.p
        img = p.img[i]
        if not img or self.encoded[i]:
            return n, False
        start = p.img_start[i]
        if start >= c + n or start + img <= c:  # not in this chunk, or already in the KV cache
            return n, False
        if img > enc or img > self.enc_budget - self.enc_used:  # budget or cache: stop before it
            return (start - c if c < start else 0), False
        return n, True

    # -- a run of decode-only steps ------------------------------------------------------
    def _decode_run(self) -> bool:
        """Jump over the decode-only steps before the next event; False when the next step is
        not one of them (a chunk to run, a page to admit, a block short)."""
        D, G, bs = self.D, self.G, self.bs
        if self.pf or D == 0 or D > self.budget:
            return False
        need = self.cnt[(-G) % bs]
        if need > self.free:
            return False
        if self.waiting and len(self.running) < self.eng.max_num_seqs and self.budget > D:
            i = self.waiting[0]  # admitted in the next step if its first chunk's blocks fit
            n, _ = self._encoder(i, 0, min(self._ntok(i), self.budget - D), self.enc_budget)
            if n > 0 and _cdiv(n, bs) <= self.free - need:
                return False
        heap, gend = self.heap, self.gend
        while gend[heap[0][1]] != heap[0][0]:
            heapq.heappop(heap)  # stale: that request left the decode set
        k = self._steps_with_blocks(heap[0][0] - G)
        seqs, keys = D, self.Sb + D * (G + 1)
        if not self.closed and self.next < len(self.order) and len(self.running) < self.eng.max_num_seqs:
            wait = self.tr.arrival[self.order[self.next]] - self.tr.t
            if wait > 0:  # stop at the first step boundary after the next arrival
                k = self._steps_lasting(seqs, keys, k, wait)
        if k < 1:
            return False
        # a page waits with a slot free: its blocks do not fit (the budget has room for it)
        blocked = bool(self.waiting) and len(self.running) < self.eng.max_num_seqs and self.budget > D
        self._advance(seqs, keys, k, blocked)
        return True

    def _steps_with_blocks(self, k: int) -> int:
        """The most of the next ``k`` decode steps whose new KV blocks fit the free ones (the
        step after them preempts)."""
        D, bs, free = self.D, self.bs, self.free
        if D * _cdiv(k, bs) <= free:
            return k
        per_step = np.array(self.cnt)[(-self.G - np.arange(bs)) % bs]  # new blocks at steps G, G+1, ...
        prefix = np.concatenate(([0], np.cumsum(per_step)))
        cycles, rem = divmod(free, D)
        return min(k, cycles * bs + int(np.searchsorted(prefix, rem, side="right")) - 1)

    def _steps_lasting(self, seqs: int, keys: int, k: int, wait: float) -> int:
        """The fewest of ``k`` steps lasting at least ``wait`` seconds (all ``k`` if none do)."""
        run = self.timer.run_seconds
        if run(seqs, keys, k) < wait:
            return k
        lo, hi = 0, k  # run(lo) < wait <= run(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if run(seqs, keys, mid) < wait else (lo, mid)
        return hi

    def _advance(self, seqs: int, keys: int, k: int, blocked: bool) -> None:
        """``k`` decode-only steps of the whole decode set (``blocked``: a page waits for KV)."""
        tr, bs = self.tr, self.bs
        gpu, parts, d0, d1 = self.timer.run(seqs, keys, k)
        dur = gpu
        if self.host is not None:
            dur = _with_host(gpu, k * self.host.seconds(seqs, seqs, seqs), self.host.overlaps)
            tr.host_s += dur - gpu
        cycles, rem = divmod(k, bs)
        cnt, G = self.cnt, self.G
        self.free -= cycles * self.D + sum(cnt[(-G - j) % bs] for j in range(rem))
        tr.decode_s += gpu
        tr.bound(parts)
        if blocked:
            tr.kv_blocked_s += dur
        self._starved(dur)
        tr.tokens += seqs * k
        tr.itl.append((d0, d1, k, seqs))
        self.G += k
        tr.event(dur, seqs, self.total_blocks - self.free, k)
        self.last_decode = tr.t
        self._finish_decoders()

    def _starved(self, dur: float) -> None:
        if not self.waiting and len(self.running) < self.eng.max_num_seqs:
            self.tr.starved_s += dur

    def _finish_decoders(self) -> None:
        heap, gend, G = self.heap, self.gend, self.G
        while heap and heap[0][0] <= G:
            end, i = heapq.heappop(heap)
            if gend[i] == end:
                self._leave_decode(i)
                self._finish(i)

    # -- one step ------------------------------------------------------------------------
    def _step(self) -> None:
        """One step: the decode set in aggregate when the rules allow, else request by request."""
        need = self.cnt[(-self.G) % self.bs]
        pf = self.pf
        tail = not pf or self.running[len(self.running) - len(pf) :] == pf
        slow = not (self.fast and tail and self.D <= self.budget and need <= self.free)
        if not slow:  # pf is the running list's tail: preemptions pop it from its end
            decoders, budget, explicit = self.D, self.budget - self.D, pf
            self.free -= need
        else:  # request by request: the decode set dissolves, and is rebuilt after the step
            for i in self.running:
                if self.gend[i] >= 0:
                    self._leave_decode(i)
            self.heap.clear()
            self.pf = list(self.running)
            decoders, budget, explicit = 0, self.budget, list(self.running)
        chunks: list[tuple[int, int, int]] = []
        victims: list[int] = []
        encoded: list[int] = []
        enc, preempted, limit, idx = self.enc_budget, False, len(explicit), 0
        while idx < limit and budget > 0:  # running requests, in order
            i = explicit[idx]
            idx += 1
            c = self.computed[i]
            n = min(self._ntok(i) - c, budget, self.eng.max_model_len - 1 - c)
            n, encode = self._encoder(i, c, n, enc)
            if n <= 0:
                continue
            add = _cdiv(c + n, self.bs) - _cdiv(c, self.bs)
            while add > self.free:  # preempt the last running request until the blocks fit
                victim = self.running.pop()
                victims.append(victim)
                self._preempt(victim)
                preempted = True
                limit -= 1
                if victim == i:
                    break
            if idx > limit:  # it preempted itself
                break
            self.free -= add
            budget -= n
            chunks.append((i, n, c))
            if encode:
                enc -= self.p.img[i]
                self._encode(i)
                encoded.append(i)
        blocked = preempted
        if not preempted:  # then the waiting requests, in order
            while self.waiting and budget > 0 and len(self.running) < self.eng.max_num_seqs:
                i = self.waiting[0]
                n, encode = self._encoder(i, 0, min(self._ntok(i), budget), enc)
                if n <= 0:
                    break
                if _cdiv(n, self.bs) > self.free:
                    blocked = True
                    break
                self.waiting.popleft()
                self.running.append(i)
                self.pf.append(i)
                self.free -= _cdiv(n, self.bs)
                budget -= n
                chunks.append((i, n, 0))
                if encode:
                    enc -= self.p.img[i]
                    self._encode(i)
                    encoded.append(i)
        self.finished = []
        vision = self.vision.seconds([self.p.layout[i] for i in encoded], self.tr) if encoded else 0.0
        self._execute(decoders, chunks, vision, blocked, slow)
        if self.log is not None:
            self.log.append(
                {
                    "step": self.tr.steps,
                    "end_s": self.tr.t,
                    "tokens": [list(x) for x in chunks],  # request, new tokens, computed before
                    "encoded": encoded,
                    "preempted": victims,
                    "finished": self.finished,
                    "kv_blocks": self.total_blocks - self.free,
                    "waiting": list(self.waiting),
                }
            )

    def _encode(self, i: int) -> None:
        self.encoded[i] = True
        self.enc_used += self.p.img[i]

    def _execute(self, decoders: int, chunks: list, vision: float, blocked: bool, slow: bool) -> None:
        """Run the scheduled step: its time, then each request's new state. ``chunks``: the
        requests scheduled one by one, (request, new tokens, computed before)."""
        tr, p, start = self.tr, self.p, self.tr.t
        seqs = decoders
        keys = self.Sb + decoders * (self.G + 1) if decoders else 0
        tokens, pairs, prefills, sampled = seqs, keys, 0, decoders
        for i, n, c in chunks:
            seqs += 1
            tokens += n
            pairs += n * (c + n)
            keys += c + n
            end = self._ntok(i)
            sampled += c + n == end
            prefills += not (n == 1 and c == end - 1 and self.out[i])  # else a decode token
        if seqs == 0:
            raise SymcostError("simulate: internal error: a step with nothing to run")
        gpu, parts = self.steps(seqs, tokens, pairs, keys, graph=not prefills)
        dur = gpu + vision
        if self.host is not None:
            dur = _with_host(dur, self.host.seconds(seqs, tokens, sampled), self.host.overlaps)
            tr.host_s += dur - gpu - vision
        tr.vision_s += vision
        if prefills:
            tr.prefill_s += gpu
        else:
            tr.decode_s += gpu
        tr.bound(parts)
        if blocked:
            tr.kv_blocked_s += dur
        self._starved(dur)
        tr.tokens += sampled
        self.G += 1
        tr.event(dur, seqs, self.total_blocks - self.free)
        if decoders:
            self.last_decode = tr.t
        steady = decoders  # tokens whose last one came at the end of the previous step
        for i, n, c in chunks:
            self.computed[i] = c + n
            if self.encoded[i] and c + n >= p.img_start[i] + p.img[i]:
                self._free_encoder(i)  # its embeddings are in the KV cache now
            if c + n < self._ntok(i):
                continue  # a prefill chunk short of the end: its sampled token is dropped
            if not self.out[i]:
                tr.first[i] = tr.t
            elif self.last_tok[i] == start:
                steady += 1
            else:  # the first token after a recompute (or a step it sat out): the whole gap
                tr.itl.append((tr.t - self.last_tok[i], tr.t - self.last_tok[i], 1, 1))
            self.out[i] += 1
            self.last_tok[i] = tr.t
        if steady:
            tr.itl.append((dur, dur, 1, steady))
        rejoin = self.pf if slow else [i for i, _, _ in chunks]  # a slow step dissolved the set
        for i in [i for i in rejoin if self.out[i] and self.computed[i] == self._ntok(i) - 1]:
            self.pf.remove(i)
            if self.out[i] >= p.n_out[i]:
                self._finish(i)
            else:
                self._enter_decode(i)
        self._finish_decoders()


class StaticBatching:
    """Hugging Face ``generate()`` (``--runtime hf``): ``batch`` requests at a time, padded to
    the longest prompt (every sequence runs ``max S0`` positions) and decoding until the longest
    output (finished sequences keep running as padding); the images are encoded before the
    prefill by the family's vision stage, one call per tile layout present (the family says
    whether a call loops image by image or batches them: exact for a batch of one layout); the
    next batch starts when all have finished, and a batch's pages are
    returned together (``generate()`` returns once)."""

    def __init__(self, pages: _Pages, timer: StepTimer, vision: _Vision, batch: int, progress=None):
        self.p, self.timer, self.vision, self.batch, self.progress = pages, timer, vision, batch, progress

    def run(self, arrival: np.ndarray | None, concurrency: int = 0, timeline: bool = False) -> _Trace:
        n = len(self.p.s0)
        tr = _Trace(n, np.zeros(n) if arrival is None else np.array(arrival, dtype=np.float64), timeline)
        closed = arrival is None
        order = list(range(n)) if closed else np.argsort(tr.arrival, kind="stable").tolist()
        sent = min(concurrency, n) if closed else 0
        waiting: deque[int] = deque(order[:sent])
        done = 0
        while done < n:
            if not closed:
                while sent < n and tr.arrival[order[sent]] <= tr.t:
                    waiting.append(order[sent])
                    sent += 1
            if not waiting:  # idle until the next page
                tr.idle(tr.arrival[order[sent]] - tr.t)
                continue
            group = [waiting.popleft() for _ in range(min(self.batch, len(waiting)))]
            start = tr.t
            self._generate(tr, group)
            if len(group) < self.batch:
                tr.starved_s += tr.t - start
            for i in group:
                tr.finish[i] = tr.t
                done += 1
                if closed and sent < n:  # its client sends the next page
                    tr.arrival[order[sent]] = tr.t
                    waiting.append(order[sent])
                    sent += 1
            if self.progress is not None:
                self.progress(done)
        return tr

    def _generate(self, tr: _Trace, group: list[int]) -> None:
        p, b = self.p, len(group)
        s_max = max(p.s0[i] for i in group)
        n_max = max(p.n_out[i] for i in group)
        vision = self.vision.seconds([p.layout[i] for i in group if p.layout[i] >= 0], tr)
        gpu, parts = self.timer.step(b, b * s_max, b * s_max * s_max, b * s_max, graph=False)  # prefill
        tr.bound(parts)
        tr.vision_s += vision
        tr.prefill_s += gpu
        tr.tokens += b
        tr.peak_blocks = max(tr.peak_blocks, b * (s_max + n_max - 1))  # KV tokens, padding included
        tr.event(vision + gpu, b, b * s_max)
        for i in group:
            tr.first[i] = tr.t
        if n_max == 1:
            return
        k = n_max - 1
        gpu, parts, d0, d1 = self.timer.run(b, b * (s_max + 1), k)
        tr.bound(parts)
        tr.decode_s += gpu
        tr.tokens += sum(p.n_out[i] - 1 for i in group)
        used = sorted(p.n_out[i] - 1 for i in group)  # run steps giving each sequence a real token
        step = (d1 - d0) / (k - 1) if k > 1 else 0.0
        prev = 0
        for rank, steps in enumerate(used):  # the gaps: step j gives one to each sequence still going
            if steps > prev:
                tr.itl.append((d0 + step * prev, d0 + step * (steps - 1), steps - prev, b - rank))
                prev = steps
        tr.event(gpu, b, b * (s_max + n_max - 1), k)


# --------------------------------------------------------------------------- capacity


def kv_capacity(model: Model, hw: Hardware, prec: Precision, eng: Engine, pages: _Pages, vision: _Vision):
    """vLLM's KV-cache accounting (:func:`symcost.kvcache.kv_cache`) for this engine; with no
    token budget, the profiling run takes the workload's largest first step."""
    from .kvcache import kv_cache, profile_image

    tokens = eng.max_num_batched_tokens
    if tokens is None:
        tokens = min(eng.max_num_seqs, len(pages.s0)) * max(pages.s0)
    image, _ = profile_image(model, vision.sizes)
    return kv_cache(
        model,
        hw,
        prec,
        eng.max_num_seqs,
        tokens,
        eng.block_size,
        eng.gpu_memory_utilization,
        eng.max_model_len,
        image,
    )


# --------------------------------------------------------------------------- the entry point


def _pages(model: Model, vision: _Vision, work: Workload, max_len: int | None) -> tuple[_Pages, int]:
    """Per request: prefill tokens, outputs, image block, layout; and the number of length-capped
    requests."""
    s = serving(model)
    n = len(work)
    has_image = work.width > 0
    img = np.zeros(n, dtype=np.int64)
    layout = np.full(n, -1)
    if has_image.any():
        if s.vision is None or model.family.image is None:
            raise SymcostError(f"image: {model.family.name} takes no images (use text-only requests)")
        layout[has_image] = vision.layouts(work.width[has_image], work.height[has_image])
        for j in np.unique(layout[has_image]).tolist():
            r = vision.evaluate(j, 1)
            img[layout == j] = r[s.image_tokens]
    s0 = work.prompt_tokens + img
    if (s0 < 1).any():
        raise SymcostError("prompt_tokens: a text-only request needs at least 1 prompt token")
    n_out = work.new_tokens.copy()
    capped = 0
    if max_len is not None:
        if (s0 >= max_len).any():
            worst = int(s0.max())
            raise SymcostError(
                f"max_model_len: a request's prompt has {worst:,} tokens, not fewer than "
                f"max_model_len {max_len:,}"
            )
        room = max_len - s0
        capped = int((n_out > room).sum())
        n_out = np.minimum(n_out, room)
    offset = s.image_offset if s else 0
    pages = _Pages(
        s0=s0.tolist(),
        n_out=n_out.tolist(),
        img=img.tolist(),
        layout=layout.tolist(),
        img_start=np.where(img > 0, np.minimum(offset, work.prompt_tokens), 0).tolist(),
    )
    return pages, capped


class _Vision:
    """The family's vision stage on the workload's images: it depends on an image only through
    its tile layout, so one numeric evaluation per layout (and per batch size: hf encodes a
    batch's images of one layout in one call where the family's code does) answers all."""

    def __init__(self, model: Model, hw: Hardware, prec: Precision, ce: float, be: float):
        self.model, self.kw = (
            model,
            dict(
                dtype=prec.dtype,
                kv_dtype=prec.kv_dtype,
                hardware=hw,
                compute_efficiency=ce,
                bandwidth_efficiency=be,
            ),
        )
        self.sizes: list[tuple[int, int]] = []  # an image of each layout
        self._index: dict[tuple, int] = {}
        self._cache: dict[tuple[int, int], dict] = {}
        self._steps: dict[tuple[int, ...], tuple[float, tuple]] = {}  # layouts -> seconds, parts

    def layouts(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Each image's layout index (into ``sizes``, which keeps the layouts seen so far)."""
        grids = np.stack(self.model.tile_grid(w, h), axis=1)
        unique, first, inverse = np.unique(grids, axis=0, return_index=True, return_inverse=True)
        index = []
        for grid, j in zip(map(tuple, unique.tolist()), first):
            if grid not in self._index:
                self._index[grid] = len(self.sizes)
                self.sizes.append((int(w[j]), int(h[j])))
            index.append(self._index[grid])
        return np.array(index, dtype=np.int64)[inverse.reshape(-1)]

    def evaluate(self, layout: int, count: int) -> dict:
        """The vision stage on ``count`` images of one layout."""
        key = (layout, count)
        if key not in self._cache:
            s = serving(self.model)
            kw: dict[str, Any] = {**self.kw, s.batch: count}
            self._cache[key] = self.model.evaluate(*self.sizes[layout], stage=s.vision, **kw)
        return self._cache[key]

    def seconds(self, layouts: list[int], tr: _Trace) -> float:
        """Encoding these images (their layouts) in one step or batch: the family's vision stage
        on each layout's images together (vLLM and HF hand a step's or a batch's images to the
        model at once; the family's stage says whether it loops over them or batches them)."""
        key = tuple(sorted(layouts))
        done = self._steps.get(key)
        if done is None:
            total, parts = 0.0, [0.0, 0.0, 0.0]
            for layout, count in Counter(key).items():
                r = self.evaluate(layout, count)
                total += r["time_s"]
                for j, side in enumerate(("compute", "memory", "launch")):
                    parts[j] += r[f"{side}_bound_s"]
            done = self._steps[key] = (total, tuple(parts))
        tr.bound(done[1])
        return done[0]


def _hf_batch(model: Model, hw: Hardware, prec: Precision, work: Workload, pages: _Pages) -> int:
    """The largest batch whose padded worst request fits (plan's bisection)."""
    from .plan import max_batch

    s = serving(model)
    worst = int(np.argmax(np.array(pages.s0) + np.array(pages.n_out)))
    point = {s.prompt_tokens: int(work.prompt_tokens[worst]), s.new_tokens: int(work.new_tokens[worst])}
    if work.width[worst] > 0:
        point.update(zip(model.family.image or (), (int(work.width[worst]), int(work.height[worst]))))
    fits, at_one = max_batch(model, hw, point, prec.dtype, prec.kv_dtype)
    if fits == 0:
        raise SymcostError(f"batch: one request needs {at_one / 1e9:.2f} GB, more than {hw.name} holds")
    return fits


def simulate(
    model: Model,
    hardware,
    work: Workload,
    arrivals: Arrivals | None = None,
    engine: Engine | None = None,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
    devices: int = 1,
    gpu_hour_price: float | None = None,
    seed: int = 0,
    host: HostModel | None = None,
    fast: bool = True,
    progress: Callable[[int, int], None] | None = None,
    timeline: bool = False,
    trace: bool = False,
) -> dict:
    """Serve ``work`` on ``devices`` replicas of ``model`` on ``hardware``; every figure of the
    run as a dict (see ``docs/simulate.md``). ``engine`` from :func:`engine_limits` (default:
    the runtime's defaults); ``fast=False`` schedules every step request by request (a check);
    ``timeline=True`` adds the per-event series for plots; ``trace=True`` (continuous batching,
    one device) lists every step: the tokens each request ran, images encoded, preemptions,
    finishes, KV blocks in use and the queue (decode steps one by one, each at its own time)."""
    if not isinstance(model, Model):
        raise SymcostError("model: expected a symcost.Model (symcost.load(...))")
    serving(model)
    hw = get_hardware(hardware)
    prec = precision(dtype, kv_dtype)
    ce = check_fraction("compute_efficiency", compute_efficiency)
    be = check_fraction("bandwidth_efficiency", bandwidth_efficiency)
    arrivals = arrivals or (Arrivals("file") if work.arrival_s is not None else Arrivals())
    if work.arrival_s is not None and arrivals.kind != "file":
        raise SymcostError(f"arrivals: the workload gives arrival times; {arrivals.kind} does not apply")
    devices = check_int("devices", devices, 1, 1 << 16)
    if gpu_hour_price is not None and not (
        isinstance(gpu_hour_price, (int, float)) and 0 < gpu_hour_price < 1e9
    ):
        raise SymcostError(f"gpu_hour_price: {shown(gpu_hour_price)} is not a positive number")
    check_int("seed", seed, 0, 2**63 - 1)
    if arrivals.kind == "concurrency" and int(arrivals.value) < devices:
        raise SymcostError(
            f"concurrency: {int(arrivals.value)} clients for {devices} devices; give at least one each"
        )
    engine = engine or engine_limits(model, hw, arrivals)
    vllm = model.runtime.name == "vllm"
    key = (hw, prec, ce, be)  # compiled once per model and setting (hypothesis runs many)
    timer = model._memo(("simulate.timer", key), lambda: StepTimer(model, hw, prec, ce, be))
    vision = model._memo(("simulate.vision", key), lambda: _Vision(model, hw, prec, ce, be))
    pages, capped = _pages(model, vision, work, engine.max_model_len if vllm else None)
    total_blocks = 0
    accounting = None
    if vllm:
        if engine.num_gpu_blocks_override is not None:  # vLLM's CacheConfig.num_gpu_blocks_override
            capacity, why = engine.num_gpu_blocks_override * engine.block_size, "num_gpu_blocks_override"
        else:
            accounting = kv_capacity(model, hw, prec, engine, pages, vision)
            capacity, why = accounting.tokens, "gpu_memory_utilization"
        if capacity < engine.max_model_len:  # vLLM refuses to start so
            raise SymcostError(
                f"{why}: the KV cache holds {capacity:,} tokens on {hw.name}, fewer than "
                f"max_model_len {engine.max_model_len:,} (raise it or lower max_model_len)"
            )
        total_blocks = capacity // engine.block_size
    elif engine.batch == 0:
        engine = replace(engine, batch=_hf_batch(model, hw, prec, work, pages))
    rng = np.random.default_rng(seed)
    times = arrivals.times(work, rng)
    n = len(work)
    done_total = [0] * devices

    def report(d: int) -> Callable[[int], None] | None:
        if progress is None:
            return None

        def tick(done: int) -> None:
            done_total[d] = done
            progress(sum(done_total), n)

        return tick

    if trace and (not vllm or devices != 1):
        raise SymcostError("trace: lists the steps of continuous batching (runtime vllm) on one device")
    log: list | None = [] if trace else None
    traces, shares = [], []
    for d in range(devices):
        index = np.arange(d, n, devices)
        share = _subset(pages, index)
        part_times = None if times is None else times[index]
        clients = 0
        if arrivals.kind == "concurrency":
            clients = int(arrivals.value) // devices + (d < int(arrivals.value) % devices)
        if vllm:
            sched = ContinuousBatching(share, timer, vision, engine, total_blocks, host, fast, report(d), log)
        else:
            sched = StaticBatching(share, timer, vision, engine.batch, report(d))  # type: ignore[assignment]
        traces.append(sched.run(part_times, clients, timeline and d == 0))
        shares.append(share)
    out = _summary(
        model,
        hw,
        prec,
        ce,
        be,
        engine,
        arrivals,
        traces,
        shares,
        devices,
        total_blocks,
        gpu_hour_price,
        seed,
        capped,
        timer,
        timeline,
    )
    if accounting is not None:
        out["kv_cache"] = accounting.as_dict()
    if log is not None:
        out["trace"] = log
    return out


def _subset(pages: _Pages, index: np.ndarray) -> _Pages:
    pick = index.tolist()
    return _Pages(
        s0=[pages.s0[i] for i in pick],
        n_out=[pages.n_out[i] for i in pick],
        img=[pages.img[i] for i in pick],
        layout=[pages.layout[i] for i in pick],
        img_start=[pages.img_start[i] for i in pick],
    )


# --------------------------------------------------------------------------- figures


def _stats(x: np.ndarray) -> dict:
    """p50, p90, p99 (NumPy's linear interpolation, as vLLM's benchmark) and the mean, in s."""
    if len(x) == 0:
        return {f"p{q}": 0.0 for q in PERCENTILES} | {"mean": 0.0}
    out = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES))}
    return out | {"mean": float(np.mean(x))}


def _itl_stats(runs: list) -> dict:
    """Inter-token latency over every token gap: a run of k steps from d0 to d1 seconds gives
    ``weight`` gaps per step, its step times spaced evenly from d0 to d1 (exact at both ends).
    Percentiles are the smallest gap with at least q % of the gaps at or below it (bisection on
    the value: the gaps are never listed one by one)."""
    if not runs:
        return {f"p{q}": 0.0 for q in PERCENTILES} | {"mean": 0.0}
    d0, d1, k, w = np.array(runs, dtype=np.float64).T
    total = float(np.sum(k * w))
    mean = float(np.sum(w * k * (d0 + d1) / 2) / total)
    slope = np.where(k > 1, (d1 - d0) / np.maximum(k - 1, 1), 0.0)

    def below(v: np.ndarray) -> np.ndarray:  # gaps <= v, for each value in v
        flat = slope[None, :] <= 0
        steps = np.where(
            flat,
            np.where(d0[None, :] <= v[:, None], k, 0),
            np.minimum(np.maximum(np.floor((v[:, None] - d0) / np.where(flat, 1, slope)) + 1, 0), k),
        )
        return steps @ w

    target = np.array(PERCENTILES) / 100 * total
    lo = np.full(len(PERCENTILES), float(min(d0.min(), d1.min())))
    hi = np.full(len(PERCENTILES), float(max(d0.max(), d1.max())))
    for _ in range(32):  # to 2^-32 of the range
        mid = (lo + hi) / 2
        ok = below(mid) >= target
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, hi)} | {"mean": mean}


def _summary(
    model: Model,
    hw: Hardware,
    prec: Precision,
    ce: float,
    be: float,
    eng: Engine,
    arrivals: Arrivals,
    traces: list[_Trace],
    shares: list[_Pages],
    devices: int,
    total_blocks: int,
    price: float | None,
    seed: int,
    capped: int,
    timer: StepTimer,
    timeline: bool,
) -> dict:
    vllm = model.runtime.name == "vllm"
    first = np.concatenate([t.first for t in traces])
    finish = np.concatenate([t.finish for t in traces])
    arrival = np.concatenate([t.arrival for t in traces])
    n_out = np.concatenate([np.array(s.n_out) for s in shares])
    pages = len(n_out)
    makespan = max(t.t for t in traces)
    tokens = int(n_out.sum())
    many = n_out > 1
    busy = sum(t.vision_s + t.prefill_s + t.decode_s + t.host_s for t in traces)
    span = sum(t.t for t in traces)  # device-seconds until each replica's last page
    parts = np.sum([t.parts for t in traces], axis=0)
    shares_s = {
        "vision": sum(t.vision_s for t in traces),
        "prefill": sum(t.prefill_s for t in traces),
        "decode": sum(t.decode_s for t in traces),
        "host": sum(t.host_s for t in traces),
        "idle": sum(t.idle_s for t in traces),
    }
    bound_s = {
        "compute": float(parts[0]),
        "memory": float(parts[1]),
        "launch": float(parts[2]),
        "host": shares_s["host"],
        "kv_capacity": sum(t.kv_blocked_s for t in traces),
        "arrivals": sum(t.starved_s for t in traces),
    }
    if bound_s["kv_capacity"] >= span / 2:
        bound = "KV capacity"
    elif bound_s["arrivals"] >= span / 2:
        bound = "arrivals"
    else:
        names = {"compute": "compute", "memory": "memory bandwidth", "launch": "launches", "host": "host"}
        bound = names[max(names, key=lambda k: bound_s[k])]
    per_token = model.kv_elems_per_token * prec.kv
    peak_tokens = max(t.peak_blocks for t in traces) * (eng.block_size if vllm else 1)
    limit = eng.max_num_seqs if vllm else eng.batch
    ceiling = devices * limit / timer.step(limit, limit, limit, limit, graph=True)[0]
    gpu_hours = devices * makespan / 3600
    pages_per_s = pages / makespan
    out = {
        "family": model.family.name,
        **{k: v for k, v in model.options.items()},
        "hardware": hw.name,
        "dtype": prec.dtype,
        "kv_dtype": prec.kv_dtype,
        "compute_efficiency": ce,
        "bandwidth_efficiency": be,
        "arrivals": arrivals.kind,
        "arrivals_value": arrivals.value,
        "arrivals_text": arrivals.describe(),
        "devices": devices,
        "seed": seed,
        "engine": {k: getattr(eng, k) for k in _ENGINE_KEYS[vllm]},
        "engine_sources": dict(eng.sources),
        "pages": pages,
        "output_tokens": tokens,
        "length_capped": capped,
        "makespan_s": makespan,
        "pages_per_s": pages_per_s,
        "pages_per_day": pages_per_s * DAY_S,
        "output_tokens_per_s": tokens / makespan,
        "ttft_s": _stats(first - arrival),
        "tpot_s": _stats((finish - first)[many] / (n_out[many] - 1)),
        "itl_s": _itl_stats([r for t in traces for r in t.itl]),
        "e2e_s": _stats(finish - arrival),
        "mean_batch": sum(t.batch_time for t in traces) / busy if busy else 0.0,
        "peak_batch": max(t.peak_batch for t in traces),
        "kv_capacity_tokens": total_blocks * eng.block_size if vllm else None,
        "kv_peak_tokens": peak_tokens,
        "kv_peak_bytes": peak_tokens * per_token,
        "preemptions": sum(t.preemptions for t in traces),
        "steps": sum(t.steps for t in traces),
        "time_shares": {k: v / span for k, v in shares_s.items()},
        "bound": bound,
        "bound_s": bound_s,
        "ceiling_tokens_per_s": ceiling,
        "gpu_hours": gpu_hours,
        "gpu_hour_price": price,
        "cost_per_million_pages": None if price is None else price * gpu_hours / pages * 1e6,
    }
    if timeline:
        t0 = traces[0]
        ev_t = np.array(t0.ev_t)
        ev_tok = np.array(t0.ev_tokens, dtype=np.float64)
        dt = np.diff(np.concatenate(([0.0], ev_t)))
        rate = np.divide(np.diff(np.concatenate(([0.0], ev_tok))), dt, out=np.zeros_like(dt), where=dt > 0)
        out["timeline"] = {
            "t_s": ev_t.tolist(),
            "seqs": t0.ev_seqs,
            "kv_tokens": [b * (eng.block_size if vllm else 1) for b in t0.ev_blocks],
            "tokens_per_s": rate.tolist(),
            "ttft_s": (first - arrival).tolist(),
            "e2e_s": (finish - arrival).tolist(),
        }
    return out


_ENGINE_KEYS = {
    True: ("max_num_seqs", "max_num_batched_tokens", "block_size", "gpu_memory_utilization", "max_model_len"),
    False: ("batch",),
}


def beside_plan(
    model: Model, hardware, points: list[dict], batch: int, pages: int | None = None, **kw
) -> dict:
    """What ``simulate`` gives for ``plan``'s workload: ``pages`` (default 10 x ``batch``, at
    least 100) pages cycling through the request shapes ``points`` in plan's wave order,
    offline, at the same concurrency (vLLM's ``max_num_seqs`` or HF's batch = ``batch``), the
    runtime's other defaults."""
    s = serving(model)
    hw = get_hardware(hardware)
    names = model.family.image or ()
    # plan's canonical wave order, so the order of the user's images changes nothing
    mix, _ = _mix(model, points, kw.get("dtype", "bf16"), kw.get("kv_dtype"))
    ordered = [mix.points[k] for k in mix.period]
    sizes = [tuple(p[n] for n in names) for p in ordered if names and all(n in p for n in names)]
    first = ordered[0]
    work = workload(
        sizes, pages or max(100, 10 * batch), first.get(s.prompt_tokens, 0), first.get(s.new_tokens, 1)
    )
    limit = {"max_num_seqs": batch} if model.runtime.name == "vllm" else {"batch": batch}
    engine = engine_limits(model, hw, Arrivals(), **limit)
    r = simulate(model, hw, work, Arrivals(), engine, **kw)
    keys = ("pages", "output_tokens_per_s", "pages_per_s", "pages_per_day", "mean_batch", "bound")
    return {k: r[k] for k in keys} | {
        "ttft_p50_s": r["ttft_s"]["p50"],
        "tpot_p50_s": r["tpot_s"]["p50"],
        "engine": r["engine"],
    }
