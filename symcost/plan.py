"""Capacity and throughput: the largest batch that fits, what it serves, and inverse questions.

Forward (:func:`plan`): for request shapes on a hardware and runtime, the largest batch whose
device memory fits what the runtime may use, and at that batch (or a given one) its memory,
FLOPs, TTFT, TPOT, tokens/s, pages/s and pages/day, with what bounds each step of the request.
NB: a batch is served as one wave (all requests start and finish together, as Hugging Face
``generate`` does); one request is one page (one image).

A mix (a list of request shapes, one entry per share: repeat an entry to weigh it) is one
wave of B requests holding the shapes in the given proportion: request j of the wave takes
the shape furthest below its share of the first j + 1 requests (ties: the shape whose request
needs the most memory first), so every prefix of the wave is within one request of the
proportion and the shares do not depend on the order of the list. Every figure of a mix
describes that one wave: each is the share-weighted mean of the figure of a wave of B requests
of one shape (``sum(n_i * x_i(B)) / B``). That is exact where a figure adds up per request with
costs the wave pays once (weights read, kernels launched), as FLOPs, the KV cache and the
decoder's activations do; a time is the sum over ops of the largest of compute, memory and
launch time, so the mean is exact while each op is bound by the same resource for every shape,
else it overstates the wave by the difference. Memory is the mean of the shapes' peaks: exact
where memory grows per request (the KV cache, the decoder's activations: the peak near
capacity, at the end of decode); where a step holds one image's activations at a time (vision)
and the shapes peak there (small batches), the mean understates the wave's peak by at most the
largest image's activations minus the mean. Integer figures of a mix are rounded up.

Inverse: the largest image at an aspect ratio under a budget (:func:`largest_image`), on the
sweep's ray (every long side, the short side rounded: :class:`symcost.sweep.Ray`), evaluated
all at once on the compiled stage; the batch for a throughput and the devices for pages per
day (:func:`for_throughput`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_int, check_positive, shown
from .errors import SymcostError
from .hardware import Hardware, get_hardware
from .metrics import INT_METRICS, UNITS
from .model import BOUNDS, Model

__all__ = [
    "plan",
    "max_batch",
    "largest_image",
    "for_throughput",
    "capacity_bytes",
    "Mix",
    "BudgetUnmet",
    "DAY_S",
    "PAGES_PER_DAY",
]

DAY_S = 86_400
PAGES_PER_DAY = (1e-6, 1e15)  # accepted throughput targets, pages/day
_COUNT_BUDGET = (1.0, 1e30)  # accepted budgets of counts (FLOP, B, ...)
_TIME_BUDGET = (1e-12, 1e9)  # accepted budgets of times, s


def _serving(model: Model):
    if not isinstance(model, Model):
        raise SymcostError(f"model: {shown(model)} is not a symcost.Model (symcost.load(...))")
    s = model.family.serving
    if s is None:
        raise SymcostError(f"plan: {model.family.name} declares no serving stage")
    return s


def capacity_bytes(model: Model, hw: Hardware) -> int:
    """The device memory the model's runtime may use on ``hw``, in bytes."""
    return int(hw.memory_bytes * model.runtime.memory_fraction)


@dataclass(frozen=True)
class Mix:
    """Distinct request shapes (``points``, in canonical order), how many entries each had
    (``weights``), and ``period``: the shape of each request of a wave, repeating every
    ``sum(weights)`` requests (see the module docstring)."""

    points: tuple[dict, ...]
    weights: tuple[int, ...]
    period: tuple[int, ...]

    def shares(self, batch) -> np.ndarray:
        """Requests of each shape in a wave of ``batch`` (an int or an int array): shape
        ``(*batch.shape, len(points))``."""
        period = np.asarray(self.period)
        prefix = np.zeros((len(period) + 1, len(self.points)), dtype=np.int64)
        prefix[1:] = np.cumsum(period[:, None] == np.arange(len(self.points)), axis=0)
        full, rest = np.divmod(np.asarray(batch, dtype=np.int64), len(period))
        return full[..., None] * np.asarray(self.weights) + prefix[rest]


def _mix(model: Model, points, dtype: str, kv_dtype: str | None) -> tuple[Mix, list[np.ndarray]]:
    """The canonical mix of ``points`` (a dict or a non-empty list of dicts) and, per distinct
    shape, ``memory_bytes`` of a wave of every batch from the batch input's lower bound up."""
    s = _serving(model)
    given = [points] if isinstance(points, Mapping) else points
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
        raise SymcostError(
            f"points: {shown(points)} is not a dict of inputs or a non-empty list of them (a mix)"
        )
    checked = []
    for point in given:
        if not isinstance(point, Mapping):
            raise SymcostError(f"points: {shown(point)} is not a dict of inputs")
        if s.batch in point:
            raise SymcostError(f"{s.batch}: give it as plan's batch, not as an input")
        full = model.check_inputs(s.stage, point)  # defaults filled in
        checked.append({k: v for k, v in full.items() if k != s.batch})
    distinct = list({tuple(p.items()): p for p in checked}.values())
    counts = [sum(p == q for q in checked) for p in distinct]
    limit = model.family.input(s.batch)
    ev = model.compile(s.stage, ["memory_bytes"], dtype=dtype, kv_dtype=kv_dtype)
    batches = np.arange(limit.lo, limit.hi + 1)
    memory = [np.asarray(ev(**p, **{s.batch: batches})["memory_bytes"]) for p in distinct]
    # canonical order: the shape whose request needs the most memory first, then by inputs
    order = sorted(
        range(len(distinct)), key=lambda i: (-int(memory[i][0]), [-v for v in distinct[i].values()])
    )
    weights = [counts[i] for i in order]
    total = sum(weights)
    period, taken = [], [0] * len(order)
    for j in range(total):  # the shape furthest below its share of j + 1 requests
        k = max(range(len(order)), key=lambda i: ((j + 1) * weights[i] - total * taken[i], -i))
        period.append(k)
        taken[k] += 1
    mix = Mix(tuple(distinct[i] for i in order), tuple(weights), tuple(period))
    return mix, [memory[i] for i in order]


def _wave_memory(mix: Mix, memory: list[np.ndarray], batches: np.ndarray) -> np.ndarray:
    """``sum(n_i * memory_i)`` over the shapes of each wave (Python ints: no overflow)."""
    n = mix.shares(batches).astype(object)
    return sum((n[..., i] * m.astype(object) for i, m in enumerate(memory)), np.zeros(len(batches), object))


def max_batch(
    model: Model, hardware, points, dtype: str = "bf16", kv_dtype: str | None = None
) -> tuple[int, int]:
    """``(largest batch B such that waves of B and of every smaller batch fit, memory_bytes of the
    smallest wave)``; 0 when the smallest wave does not fit. The compiled ``memory_bytes`` is evaluated
    at every batch at once."""
    mix, memory = _mix(model, points, dtype, kv_dtype)
    return _max_batch(model, get_hardware(hardware), mix, memory)


def _max_batch(model: Model, hw: Hardware, mix: Mix, memory: list[np.ndarray]) -> tuple[int, int]:
    limit = model.family.input(_serving(model).batch)
    batches = np.arange(limit.lo, limit.hi + 1)
    wave = _wave_memory(mix, memory, batches)
    fits = wave <= capacity_bytes(model, hw) * batches.astype(object)
    first_over = int(np.argmin(fits)) if not fits.all() else len(batches)
    return (int(batches[first_over - 1]) if first_over else 0), -(-int(wave[0]) // int(batches[0]))


def _ceil_mean(values, shares, batch: int) -> int:
    """``sum(n_i * v_i) / batch`` rounded up (exact when it divides)."""
    return -(-sum(int(n) * int(v) for n, v in zip(shares, values)) // batch)


def _mean(values, shares, batch: int) -> float:
    return sum(int(n) * float(v) for n, v in zip(shares, values)) / batch


def _wave(model: Model, hw: Hardware, mix: Mix, batch: int, kw: dict, steps: bool = True) -> dict:
    """Every figure of the wave of ``batch`` requests of ``mix`` (see the module docstring)."""
    s = _serving(model)
    shares = mix.shares(batch)
    held = [(n, p) for n, p in zip(shares.tolist(), mix.points) if n]
    n = [k for k, _ in held]
    inputs: list[dict[str, Any]] = [{**p, s.batch: batch} for _, p in held]
    rs = [model.evaluate(stage=s.stage, hardware=hw, steps=steps, **kw, **i) for i in inputs]
    time_s = _mean([r["time_s"] for r in rs], n, batch)
    tokens = sum(k * p[s.new_tokens] for k, p in held)
    out = {
        "batch": batch,
        "mix": [{"point": p, "requests": k} for k, p in zip(shares.tolist(), mix.points)],
        "flops": _ceil_mean([r["flops"] for r in rs], n, batch),
        "memory_bytes": _ceil_mean([r["memory_bytes"] for r in rs], n, batch),
        "weight_bytes": rs[0]["weight_bytes"],
        "kv_bytes": _ceil_mean([r["kv_bytes"] for r in rs], n, batch),
        "time_s": time_s,
        "ttft_s": _mean([r[s.first_token] for r in rs], n, batch),
        "tpot_s": _mean([r[s.per_token] for r in rs], n, batch),
        "tokens_per_s": tokens / time_s,
        "pages_per_s": batch / time_s,
        "pages_per_day": batch / time_s * DAY_S,
    }
    if steps:
        out.update(_wave_steps(rs, shares.tolist(), batch, out["weight_bytes"], out["memory_bytes"]))
    return out


def _wave_steps(rs: list[dict], shares: list[int], batch: int, weight_bytes: int, memory_bytes: int) -> dict:
    """Per step of the request: the wave's time and bound; and the memory parts at the peak (the
    step where each shape's memory peaks, one per mix entry, None for a shape the wave does not
    hold: the KV cache held when that step ends, weights, and other live bytes, which add up to
    ``memory_bytes``). ``rs``: the evaluations of the shapes the wave holds."""
    n = [k for k in shares if k]
    names = list(rs[0]["steps"])
    bound = {}
    for step in names:
        seconds = {b: _mean([r["steps"][step][f"{b}_bound_s"] for r in rs], n, batch) for b in BOUNDS}
        bound[step] = max(seconds, key=lambda b: seconds[b])
    peaks = [max(names, key=lambda k: r["steps"][k]["memory_bytes"]) for r in rs]
    kv = _ceil_mean([r["steps"][p]["kv_bytes"] for r, p in zip(rs, peaks)], n, batch)
    at = iter(peaks)
    return {
        "bound": bound,
        "peak": {
            "steps": [next(at) if k else None for k in shares],
            "weight_bytes": weight_bytes,
            "kv_bytes": kv,
            "other_bytes": memory_bytes - weight_bytes - kv,
        },
        "step_time_s": {k: _mean([r["steps"][k]["time_s"] for r in rs], n, batch) for k in names},
    }


def _settings(hardware, dtype, kv_dtype, convention, compute_efficiency, bandwidth_efficiency):
    hw = get_hardware(hardware)
    return hw, dict(
        convention=convention,
        dtype=dtype,
        kv_dtype=kv_dtype,
        compute_efficiency=compute_efficiency,
        bandwidth_efficiency=bandwidth_efficiency,
    )


def _check_batch(model: Model, batch) -> int | None:
    return None if batch is None else model.family.input(_serving(model).batch).check(batch)


def plan(
    model: Model,
    hardware,
    points,
    batch: int | None = None,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    convention: str = "torch",
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> dict:
    """The forward plan for ``points``: one request shape (inputs by name, batch excluded) or a
    list of them (a mix; see the module docstring), at the largest batch that fits or ``batch``.

    Keys: ``max_batch`` and what bounds it, ``batch``, ``mix`` (requests of each shape, in
    canonical order), ``fits``, ``flops`` (the wave's, under ``convention``), memory (``memory_bytes``
    of ``memory_capacity_bytes``; ``peak``: the steps where it peaks and its parts there), times,
    throughput, and ``bound`` per step of the request.
    """
    s = _serving(model)
    hw, kw = _settings(hardware, dtype, kv_dtype, convention, compute_efficiency, bandwidth_efficiency)
    batch = _check_batch(model, batch)
    mix, memory = _mix(model, points, dtype, kv_dtype)
    fits, at_one = _max_batch(model, hw, mix, memory)
    cap = capacity_bytes(model, hw)
    if fits == 0:
        raise SymcostError(
            f"plan: one request needs {at_one / 1e9:.2f} GB, more than the "
            f"{cap / 1e9:.2f} GB {model.runtime.name} may use on {hw.name}"
        )
    limit = model.family.input(s.batch)
    wave = _wave(model, hw, mix, batch or fits, kw)
    return {
        "max_batch": fits,
        "max_batch_bound": "memory capacity" if fits < limit.hi else f"{s.batch} limit {limit.hi}",
        **wave,
        "convention": convention,
        "memory_capacity_bytes": cap,
        "fits": wave["memory_bytes"] <= cap,
    }


def for_throughput(
    model: Model,
    hardware,
    points,
    pages_per_day: float,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> dict:
    """The smallest batch reaching ``pages_per_day`` on one device (bisection: throughput grows
    with the batch), and the devices needed at the largest batch that fits."""
    _serving(model)
    target = check_positive("pages_per_day", pages_per_day, "pages/day", *PAGES_PER_DAY)
    hw, kw = _settings(hardware, dtype, kv_dtype, "torch", compute_efficiency, bandwidth_efficiency)
    mix, memory = _mix(model, points, dtype, kv_dtype)
    fits, at_one = _max_batch(model, hw, mix, memory)
    if fits == 0:
        raise SymcostError(f"plan: one request needs {at_one / 1e9:.2f} GB, more than {hw.name} may give it")

    def rate(batch: int) -> float:
        return _wave(model, hw, mix, batch, kw, steps=False)["pages_per_day"]

    best = rate(fits)
    out = {
        "pages_per_day_target": target,
        "max_batch": fits,
        "pages_per_day_at_max_batch": best,
        "devices": math.ceil(target / best),
        "batch_for_target": None,
    }
    if best >= target:
        lo, hi = 0, fits  # rate(hi) reaches the target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if rate(mid) >= target else (mid, hi)
        out["batch_for_target"] = hi
    return out


class BudgetUnmet(SymcostError):
    """No image on the ray meets the budget; ``least`` is the smallest value on it, at ``image``."""

    def __init__(self, message: str, least, image: tuple[int, int]):
        super().__init__(message)
        self.least, self.image = least, image


def _check_aspect(aspect) -> tuple[int, int]:
    if not isinstance(aspect, (tuple, list)) or len(aspect) != 2:
        raise SymcostError(f"aspect: {shown(aspect)} is not (width, height) with integers in [1, 65535]")
    a, b = (check_int("aspect", x, 1, 65_535) for x in aspect)
    g = math.gcd(a, b)
    return a // g, b // g


def largest_image(
    model: Model,
    metric: str,
    budget: float,
    aspect: tuple[int, int],
    point: dict,
    stage: str | None = None,
    hardware=None,
    convention: str = "torch",
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> dict:
    """The largest image of ``aspect`` (W:H) whose ``metric`` stays within ``budget`` (in the
    metric's unit), at the inputs ``point`` (batch included).

    The images are the sweep's ray: every long side from 1 to the inputs' bound, the short side
    ``round(long * short/long)``; the compiled stage is evaluated on all of them at once, and
    the largest within the budget wins. ``constant_from`` is set when that is the last image of
    the ray and the metric stops changing from some image on (any larger image costs the same).
    """
    from .sweep import Ray

    s = _serving(model)
    stage = stage or s.stage
    model.stage(stage)
    timed = ("time_s",) + tuple(t.name for t in model.stage(stage).timings)
    if not isinstance(metric, str) or metric not in INT_METRICS + timed:
        raise SymcostError(f"metric: {shown(metric)} is not one of {', '.join(INT_METRICS + timed)}")
    if metric in timed and hardware is None:
        raise SymcostError(f"hardware: metric {metric} needs a hardware preset or file")
    unit = UNITS.get(metric, "s")
    budget = check_positive("budget", budget, unit, *(_TIME_BUDGET if metric in timed else _COUNT_BUDGET))
    a, b = _check_aspect(aspect)
    names = model.family.image
    if names is None or not model.uses_layout(stage):
        raise SymcostError(f"largest image: stage {stage} of {model.family.name} reads no image")
    if not isinstance(point, Mapping):
        raise SymcostError(f"point: {shown(point)} is not a dict of inputs")
    for name in names:
        if name in point:
            raise SymcostError(f"{name}: the ray sets the image; give only the other inputs")
    sides = [model.family.input(n) for n in names]
    ray = Ray(names, (a, b), 1, min(i.hi for i in sides))
    longs = np.arange(ray.start, ray.stop + 1)
    w, h = ray.sides(longs)
    timed_kw = (
        dict(
            hardware=hardware,
            compute_efficiency=compute_efficiency,
            bandwidth_efficiency=bandwidth_efficiency,
        )
        if metric in timed
        else {}
    )
    ev = model.compile(
        stage, ["time_s" if metric in timed else metric], convention, dtype, kv_dtype, **timed_kw
    )
    out = ev(w, h, **point)
    values = np.asarray(out[metric])
    within = values <= budget
    batch = s.batch if s.batch in {i.name for i in model.stage_inputs(stage)} else None
    at = f" at {batch} {point.get(batch, model.family.input(batch).default)}" if batch else ""
    if not within.any():
        k = int(np.argmin(values))
        raise BudgetUnmet(
            f"budget: no image at aspect {a}:{b} has {metric} <= {budget:g} {unit}{at}; the least is "
            f"{float(values[k]):g} {unit} ({w[k]}x{h[k]})",
            values[k].item(),
            (int(w[k]), int(h[k])),
        )
    k = len(values) - 1 - int(np.argmax(within[::-1]))
    constant_from = None
    if k == len(values) - 1:
        changes = np.flatnonzero(values != values[-1])
        j = int(changes[-1]) + 1 if changes.size else 0
        constant_from = [int(w[j]), int(h[j])]
    return {
        **{name: int(side[k]) for name, side in zip(names, (w, h))},
        "metric": metric,
        "value": values[k].item(),
        "budget": budget,
        "aspect": [a, b],
        **({batch: point.get(batch, model.family.input(batch).default)} if batch else {}),
        "constant_from": constant_from,
        **{str(o): int(out[str(o)][k]) for o in model.layout.outputs if str(o) in out},
    }
