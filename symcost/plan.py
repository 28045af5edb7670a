"""Capacity and throughput: the largest batch that fits, what it serves, and inverse questions.

Forward (:func:`plan`): for a request shape on a hardware and runtime, the largest batch whose
``memory_bytes`` fits the device memory the runtime may use, and at that batch (or a given
one) TTFT, TPOT, tokens/s, pages/s and pages/day, with what bounds each stage.
NB: a batch is served as one wave (all requests start and finish together, as Hugging Face
``generate`` does); one request is one page (one image).

Inverse: the largest image at an aspect ratio under a budget (:func:`largest_image`), the batch
for a throughput and the devices for pages per day (:func:`for_throughput`). They solve on the
closed forms: memory is monotone in the batch (bisection on the compiled function); along a
ray of fixed aspect ratio every metric is constant between the layout's breakpoints, so one
evaluation per piece decides.
"""

from __future__ import annotations

import math

from .errors import SymcostError
from .hardware import Hardware, get_hardware
from .model import Model

__all__ = ["plan", "max_batch", "largest_image", "for_throughput", "DAY_S"]

DAY_S = 86_400


def _serving(model: Model):
    s = model.family.serving
    if s is None:
        raise SymcostError(f"plan: {model.family.name} declares no serving stage")
    return s


def capacity_bytes(model: Model, hw: Hardware) -> int:
    return int(hw.memory_bytes * model.runtime.memory_fraction)


def max_batch(
    model: Model, hw: Hardware, point: dict, dtype: str = "bf16", kv_dtype: str | None = None
) -> tuple[int, int]:
    """``(largest batch that fits, memory_bytes at batch 1)``; 0 when batch 1 does not fit.

    Bisection on the compiled ``memory_bytes``, which only grows with the batch.
    """
    s = _serving(model)
    cap = capacity_bytes(model, hw)
    ev = model.compile(s.stage, ["memory_bytes"], dtype=dtype, kv_dtype=kv_dtype)
    batch = model.family.input(s.batch)

    def memory(b: int) -> int:
        return int(ev(**{**point, s.batch: b})["memory_bytes"])

    at_one = memory(batch.lo)
    if at_one > cap:
        return 0, at_one
    lo, hi = batch.lo, batch.hi  # memory(lo) fits
    if memory(hi) <= cap:
        return hi, at_one
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if memory(mid) <= cap else (lo, mid)
    return lo, at_one


def _serve(model: Model, hw: Hardware, point: dict, batch: int, kw: dict) -> dict:
    s = _serving(model)
    r = model.evaluate(**{**point, s.batch: batch}, stage=s.stage, hardware=hw, **kw)
    n = point.get(s.new_tokens) or model.family.input(s.new_tokens).default or 1
    t = r["time_s"]
    return {
        "batch": batch,
        "memory_bytes": r["memory_bytes"],
        "weight_bytes": r["weight_bytes"],
        "kv_bytes": r["kv_bytes"],
        "activation_bytes": r["activation_bytes"],
        "time_s": t,
        "ttft_s": r[s.first_token],
        "tpot_s": r[s.per_token],
        "tokens_per_s": batch * n / t,
        "pages_per_s": batch / t,
        "pages_per_day": batch / t * DAY_S,
    }


def _stage_bounds(model: Model, hw: Hardware, point: dict, batch: int, kw: dict) -> dict:
    """What bounds each stage's time at this batch (decode at the mean cache length)."""
    s = _serving(model)
    out = {}
    for stage in model.family.stage_names:
        if stage in (s.stage, s.step):  # the request itself; an engine step is simulate's
            continue
        inputs = {i.name: point[i.name] for i in model.stage_inputs(stage) if i.name in point}
        inputs[s.batch] = batch
        if "kv_len" in {i.name for i in model.stage_inputs(stage)}:
            full = model.evaluate(**{**point, s.batch: 1}, stage=s.stage)
            prefill = full.get("prefill_tokens", 0)
            inputs["kv_len"] = prefill + point.get(s.new_tokens, 1) // 2
        r = model.evaluate(**inputs, stage=stage, hardware=hw, **kw)
        out[stage] = r["bound"]
    return out


def plan(
    model: Model,
    hardware,
    point: dict,
    batch: int | None = None,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> dict:
    """The forward plan for one request shape ``point`` (inputs by name, batch excluded)."""
    s = _serving(model)
    if s.batch in point:
        raise SymcostError(f"{s.batch}: give it as plan's batch, not as an input")
    hw = get_hardware(hardware)
    kw = dict(
        dtype=dtype,
        kv_dtype=kv_dtype,
        compute_efficiency=compute_efficiency,
        bandwidth_efficiency=bandwidth_efficiency,
    )
    model.check_inputs(s.stage, point)
    fits, at_one = max_batch(model, hw, point, dtype, kv_dtype)
    cap = capacity_bytes(model, hw)
    if fits == 0:
        raise SymcostError(
            f"plan: one request needs {at_one / 1e9:.2f} GB, more than the "
            f"{cap / 1e9:.2f} GB {model.runtime.name} may use on {hw.name}"
        )
    limit = model.family.input(s.batch)
    bound = "memory capacity" if fits < limit.hi else f"{s.batch} limit {limit.hi}"
    if batch is not None:
        batch = limit.check(batch)
    served = _serve(model, hw, point, batch or fits, kw)
    out = {
        "max_batch": fits,
        "max_batch_bound": bound,
        **served,
        "memory_capacity_bytes": cap,
        "fits": served["memory_bytes"] <= cap,
        "bound": _stage_bounds(model, hw, point, batch or fits, kw),
    }
    return out


def for_throughput(
    model: Model,
    hardware,
    point: dict,
    pages_per_day: float,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> dict:
    """The smallest batch reaching ``pages_per_day`` on one device (bisection: throughput grows
    with the batch), and the devices needed at the largest batch that fits."""
    hw = get_hardware(hardware)
    kw = dict(
        dtype=dtype,
        kv_dtype=kv_dtype,
        compute_efficiency=compute_efficiency,
        bandwidth_efficiency=bandwidth_efficiency,
    )
    fits, _ = max_batch(model, hw, point, dtype, kv_dtype)
    if fits == 0:
        raise SymcostError("plan: one request does not fit in memory")
    best = _serve(model, hw, point, fits, kw)["pages_per_day"]
    devices = math.ceil(pages_per_day / best)
    out = {
        "pages_per_day_target": pages_per_day,
        "max_batch": fits,
        "pages_per_day_at_max_batch": best,
        "devices": devices,
        "batch_for_target": None,
    }
    if best >= pages_per_day:
        lo, hi = 0, fits  # rate(hi) reaches the target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (
                (lo, mid)
                if _serve(model, hw, point, mid, kw)["pages_per_day"] >= pages_per_day
                else (mid, hi)
            )
        out["batch_for_target"] = hi
    return out


def largest_image(
    model: Model,
    metric: str,
    budget: float,
    aspect: tuple[int, int],
    point: dict,
    stage: str | None = None,
    hardware=None,
    **kw,
) -> dict:
    """The largest image ``(a*k, b*k)`` whose ``metric`` stays within ``budget``.

    Every metric depends on the image only through the layout, which along the ray changes at
    finitely many scales k (:func:`breaks`); one evaluation per piece decides, from the top.
    """
    s = _serving(model)
    stage = stage or s.stage
    a, b = (x // math.gcd(*aspect) for x in aspect)  # the finest steps along the ray
    names = model.family.image
    if names is None:
        raise SymcostError(f"largest image: {model.family.name} has no image inputs")
    w_in, h_in = (model.family.input(n) for n in names)
    k_max = min(w_in.hi // a, h_in.hi // b)
    if k_max < 1:
        raise SymcostError(f"--aspect: {a}:{b} leaves no image within the input bounds")
    edges = sorted({k for k in breaks(model, a, b, k_max)} | {k_max})
    starts = [1] + [e + 1 for e in edges[:-1]]
    for lo, hi in reversed(list(zip(starts, edges))):
        r = model.evaluate(a * lo, b * lo, stage=stage, hardware=hardware, **point, **kw)
        if r[metric] <= budget:
            grid = {str(o): r[str(o)] for o in model.layout.outputs if str(o) in r}
            return {
                "width": a * hi,
                "height": b * hi,
                "value": r[metric],
                "metric": metric,
                "budget": budget,
                "scale_range": [lo, hi],
                **grid,
            }
    raise SymcostError(f"budget: no image at aspect {a}:{b} has {metric} <= {budget:g}")


def breaks(model: Model, a: int, b: int, k_max: int) -> list[int]:
    """Scales k on the ray (a*k, b*k) after which the layout may change (the layout's own)."""
    return [k for k in model.layout.breaks(a, b, k_max) if 1 <= k < k_max]
