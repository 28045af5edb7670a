"""The one cost value type: a frozen record of exact counts that composes with ``+`` and ``*``.

Fields hold ``int`` or SymPy expressions alike. Work and traffic are additive; the three
liveness fields describe device memory over time (see :mod:`symcost.tree` for the walk):

- ``peak_bytes``: the most bytes live at once while the node runs, above what was live when it
  started, its input excluded (the caller holds that);
- ``out_bytes``: the node's output, still live when it ends (the next node's input);
- ``retained_bytes``: bytes that stay live after the node and its output are gone (KV-cache
  growth), until the stage ends.

``a + b`` means "run a, then b on a's output": counts add, ``a``'s output is live while ``b``
runs. ``n * a`` means "a, n times" for additive fields only (liveness is the tree's business).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeAlias

import sympy as sp

from .arith import smax

__all__ = ["Cost", "Count", "ZERO", "ADDITIVE_FIELDS", "LIVENESS_FIELDS"]

Count: TypeAlias = int | sp.Expr


@dataclass(frozen=True, slots=True)
class Cost:
    """Counts of one op, block, view or stage. Work in MACs/elements, traffic and memory in bytes."""

    mm_macs: Count = 0  # matmul-class MACs: linear, mm, bmm, eager attention matmuls
    conv_macs: Count = 0  # convolution MACs (no bias)
    einsum_macs: Count = 0  # exact MACs of einsums (torch decomposes them to bmm)
    einsum_fvcore: Count = 0  # fvcore's rounded count of the same einsums (see ops.fvcore_einsum)
    sdpa_macs: Count = 0  # fused scaled-dot-product-attention MACs (QK^T and PV)
    ln_elems: Count = 0  # elements through aten layer_norm (fvcore counts 5 each)
    vector_flops: Count = 0  # norms, softmax, activations, adds: per-op convention in ops.py
    params: Count = 0  # parameters owned by this node
    weight_read_bytes: Count = 0  # weights read from device memory
    act_read_bytes: Count = 0  # activations read
    act_write_bytes: Count = 0  # activations written
    kv_read_bytes: Count = 0  # KV cache read
    kv_write_bytes: Count = 0  # KV cache written
    kernels: Count = 0  # device kernels launched
    peak_bytes: Count = 0  # liveness, see the module docstring
    out_bytes: Count = 0
    retained_bytes: Count = 0

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        out = {f: getattr(self, f) + getattr(other, f) for f in ADDITIVE_FIELDS}
        return Cost(**out, **chain(self, other))

    def __radd__(self, other):
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    def __mul__(self, n) -> Cost:
        return Cost(
            **{f: getattr(self, f) * n for f in ADDITIVE_FIELDS},
            **{f: getattr(self, f) for f in LIVENESS_FIELDS},
        )

    __rmul__ = __mul__

    @property
    def macs(self) -> Count:
        """All multiply-accumulates, each counted once (einsums exactly)."""
        return self.mm_macs + self.conv_macs + self.einsum_macs + self.sdpa_macs

    @property
    def io_bytes(self) -> Count:
        """Bytes moved to and from device memory."""
        return (
            self.weight_read_bytes
            + self.act_read_bytes
            + self.act_write_bytes
            + self.kv_read_bytes
            + self.kv_write_bytes
        )

    def map(self, fn: Callable) -> Cost:
        """Apply ``fn`` to every field (e.g. substitution or Piecewise gating)."""
        return Cost(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


def chain(a: Cost, b: Cost) -> dict:
    """Liveness of ``a`` then ``b``: a's retained bytes and output are live while b runs."""
    return {
        "peak_bytes": smax(a.peak_bytes, a.retained_bytes + a.out_bytes + b.peak_bytes),
        "out_bytes": b.out_bytes,
        "retained_bytes": a.retained_bytes + b.retained_bytes,
    }


LIVENESS_FIELDS = ("peak_bytes", "out_bytes", "retained_bytes")
ADDITIVE_FIELDS = tuple(f.name for f in fields(Cost) if f.name not in LIVENESS_FIELDS)
ZERO = Cost()
