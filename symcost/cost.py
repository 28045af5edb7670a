"""The one cost value type: a frozen record of exact counts that composes with ``+`` and ``*``.

Fields hold ``int`` or SymPy expressions alike. ``a + b`` means "run a, then b": every count
adds, except ``peak_act_elems`` (the largest live activation set), which takes the max.
``n * a`` means "run a n times" (n >= 1): counts scale, the peak does not.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .arith import smax

__all__ = ["Cost", "ZERO", "ADDITIVE_FIELDS"]


@dataclass(frozen=True, slots=True)
class Cost:
    """Counts of one op, block, view or stage. Elements, not bytes: dtypes are applied later."""

    mm_macs: object = 0          # matmul-class MACs: linear, mm, bmm, eager attention matmuls
    conv_macs: object = 0        # convolution MACs (no bias)
    einsum_macs: object = 0      # exact MACs of einsums (torch decomposes them to bmm)
    einsum_fvcore: object = 0    # fvcore's rounded count of the same einsums (see ops.fvcore_einsum)
    sdpa_macs: object = 0        # fused scaled-dot-product-attention MACs (QK^T and PV)
    ln_elems: object = 0         # elements through aten layer_norm (fvcore counts 5 each)
    vector_flops: object = 0     # norms, softmax, activations, adds: per-op convention in ops.py
    params: object = 0           # parameters owned by this node
    weight_elems: object = 0     # weight elements read from memory
    act_read_elems: object = 0   # activation elements read from memory
    act_write_elems: object = 0  # activation elements written to memory
    kv_read_elems: object = 0    # KV-cache elements read
    kv_write_elems: object = 0   # KV-cache elements written
    peak_act_elems: object = 0   # largest set of activation elements live at once (max, not sum)

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        out = {f: getattr(self, f) + getattr(other, f) for f in ADDITIVE_FIELDS}
        out["peak_act_elems"] = smax(self.peak_act_elems, other.peak_act_elems)
        return Cost(**out)

    def __radd__(self, other):
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    def __mul__(self, n) -> "Cost":
        return replace(self, **{f: getattr(self, f) * n for f in ADDITIVE_FIELDS})

    __rmul__ = __mul__

    @property
    def macs(self):
        """All multiply-accumulates, each counted once (einsums exactly)."""
        return self.mm_macs + self.conv_macs + self.einsum_macs + self.sdpa_macs

    def map(self, fn) -> "Cost":
        """Apply ``fn`` to every field (e.g. substitution or Piecewise gating)."""
        return Cost(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


ADDITIVE_FIELDS = tuple(f.name for f in fields(Cost) if f.name != "peak_act_elems")
ZERO = Cost()
