"""Metrics of a cost: FLOPs, MACs, bytes. The model behind each one is stated here, once.

- ``flops``: the counting convention's number (see :mod:`symcost.conventions`).
- ``macs``: every multiply-accumulate once, einsums exact.
- ``params``: parameters of the modules the stage runs, each module once (all experts).
- ``weight_bytes``: ``params`` stored at the weight dtype (memory footprint, all experts).
- ``kv_bytes``: the KV cache held after the stage, at the KV dtype, for the whole batch.
- ``activation_bytes``: peak live activations: the largest inputs + outputs (+ materialised
  scores or masks) of any single op, at the activation dtype. Weights and KV are not included.
- ``io_bytes``: bytes moved to and from device memory: every op reads its inputs and the
  weights it uses (MoE: only experts that received a token) and writes its outputs once;
  eager attention also writes and reads its score matrix; flash attention does not.
- ``arithmetic_intensity``: ``flops / io_bytes`` (FLOP per byte), a float.

NB: dtypes: ``dtype`` sets weights and KV cache; activations use it too unless it is fp8,
in which case they stay bf16 (fp8 activations are not what the vendor runs).
"""
from __future__ import annotations

from .conventions import get_convention
from .cost import Cost
from .errors import SymcostError

__all__ = ["DTYPE_BYTES", "METRICS", "dtype_bytes", "io_bytes", "cost_metrics"]

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
METRICS = ("flops", "macs", "params", "weight_bytes", "kv_bytes", "activation_bytes",
           "io_bytes", "arithmetic_intensity")


def dtype_bytes(dtype: str, kv_dtype: str | None = None) -> tuple[int, int, int]:
    """``(weight, activation, kv)`` bytes per element."""
    for name, value in (("dtype", dtype), ("kv_dtype", kv_dtype)):
        if value is not None and (not isinstance(value, str) or value not in DTYPE_BYTES):
            raise SymcostError(f"{name}: {value!r} is not one of {', '.join(DTYPE_BYTES)}")
    w = DTYPE_BYTES[dtype]
    return w, (w if dtype != "fp8" else 2), DTYPE_BYTES[kv_dtype or dtype]


def io_bytes(cost: Cost, dtype: str = "bf16", kv_dtype: str | None = None):
    """Bytes moved to and from device memory: weights, activations and KV at their dtypes."""
    wb, ab, kb = dtype_bytes(dtype, kv_dtype)
    return (wb * cost.weight_elems + ab * (cost.act_read_elems + cost.act_write_elems)
            + kb * (cost.kv_read_elems + cost.kv_write_elems))


def cost_metrics(cost: Cost, convention: str, dtype: str = "bf16",
                 kv_dtype: str | None = None) -> dict:
    """The integer metrics that follow from one Cost (``flops, macs, activation_bytes, io_bytes``)."""
    return {
        "flops": get_convention(convention).flops(cost),
        "macs": cost.macs,
        "activation_bytes": dtype_bytes(dtype, kv_dtype)[1] * cost.peak_act_elems,
        "io_bytes": io_bytes(cost, dtype, kv_dtype),
    }
