"""Metrics of a stage. The model behind each one is stated here, once.

- ``flops``: the counting convention's number (see :mod:`symcost.conventions`).
- ``macs``: every multiply-accumulate once, einsums exact.
- ``params``: parameters of the modules the stage runs, each module once (all experts).
- ``weight_bytes``: ``params`` stored at the weight dtype.
- ``kv_in_bytes``: the KV cache held when the stage begins (its input), at the KV dtype.
- ``kv_bytes``: the KV cache held after the stage, at the KV dtype, for the whole batch.
- ``activation_bytes``: the peak, over the stage, of live bytes above what was live when it
  began (weights and the input KV cache excluded): activations kept for later ops, logits and
  their upcasts, cache growth and transient copies (a liveness walk, :mod:`symcost.tree`).
- ``memory_bytes`` = ``weight_bytes`` + ``kv_in_bytes`` + ``activation_bytes``: the device
  memory the stage needs (the three parts add up to it; the cache the stage writes is part of
  ``activation_bytes``).
- ``io_bytes``: bytes moved to and from device memory by every kernel (weights they use,
  activations, KV cache), each read or written once per kernel.
- ``arithmetic_intensity``: work the hardware does (``2*macs + vector FLOPs``) per byte of
  ``io_bytes``, whatever the counting convention (a float).
With hardware: ``time_s`` (see :mod:`symcost.hardware`) and a stage's own latencies
(e.g. ``ttft_s``, ``tpot_s``).
"""

from __future__ import annotations

from .errors import SymcostError

__all__ = ["METRICS", "INT_METRICS", "UNITS", "check_metric", "check_metrics"]

# metric -> (unit, one-line meaning)
METRICS = {
    "flops": ("FLOP", "FLOPs as the counting convention counts them"),
    "macs": ("MAC", "multiply-accumulates, each once"),
    "params": ("parameters", "parameters of the modules the stage runs"),
    "weight_bytes": ("B", "those parameters at the weight dtype"),
    "kv_in_bytes": ("B", "KV cache held when the stage begins"),
    "kv_bytes": ("B", "KV cache held after the stage"),
    "activation_bytes": ("B", "peak live bytes above the stage's start (no weights, no input KV)"),
    "memory_bytes": ("B", "device memory the stage needs: weights + kv_in + activations"),
    "io_bytes": ("B", "bytes moved to and from device memory"),
    "arithmetic_intensity": ("FLOP/B", "(2*MACs + vector FLOPs) per byte moved"),
    "time_s": ("s", "time on the hardware and runtime (needs --hardware)"),
}
INT_METRICS = tuple(m for m in METRICS if m not in ("arithmetic_intensity", "time_s"))
UNITS = {m: u for m, (u, _) in METRICS.items()}


def check_metric(metric, allowed=tuple(METRICS)) -> str:
    if not isinstance(metric, str) or metric not in allowed:
        raise SymcostError(f"metric: {str(metric)[:40]!r} is not one of {', '.join(allowed)}")
    return metric


def check_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        raise SymcostError(f"metrics: {str(metrics)[:40]!r} is not a list of names from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(check_metric(m) for m in metrics))
