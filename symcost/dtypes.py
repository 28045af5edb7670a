"""Storage types: bytes per element, and the precision a cost tree is built in.

Trees count bytes, not elements, because some tensors keep their own dtype whatever the
model's (a softmax or logits upcast to fp32, an fp8 weight beside bf16 activations); the
precision is therefore fixed while a tree is built (:func:`building`) and read by the op
formulas (:func:`current`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from .checks import shown
from .errors import SymcostError

__all__ = ["DTYPE_BYTES", "FP32_BYTES", "Precision", "precision", "current", "building"]

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
FP32_BYTES = 4


@dataclass(frozen=True)
class Precision:
    """Bytes per element of weights, activations and the KV cache, with the names they came from.

    NB: activations follow ``dtype`` except fp8, where they stay bf16 (fp8 activations are not
    what any runtime we model executes).
    """

    dtype: str
    kv_dtype: str
    weight: int
    act: int
    kv: int


def precision(dtype: str = "bf16", kv_dtype: str | None = None) -> Precision:
    """The precision for a weight ``dtype`` and a KV-cache ``kv_dtype`` (default: ``dtype``)."""
    for name, value in (("dtype", dtype), ("kv_dtype", kv_dtype)):
        if (value is not None or name == "dtype") and (
            not isinstance(value, str) or value not in DTYPE_BYTES
        ):
            raise SymcostError(f"{name}: {shown(value)} is not one of {', '.join(DTYPE_BYTES)}")
    kv_dtype = kv_dtype or dtype
    w = DTYPE_BYTES[dtype]
    return Precision(dtype, kv_dtype, w, w if dtype != "fp8" else 2, DTYPE_BYTES[kv_dtype])


# Precision is a frozen dataclass: an immutable default
_CURRENT: ContextVar[Precision] = ContextVar("symcost_precision", default=precision())  # noqa: B039


def current() -> Precision:
    """The precision trees are being built in (bf16 outside :func:`building`)."""
    return _CURRENT.get()


@contextmanager
def building(p: Precision) -> Iterator[Precision]:
    """Build trees in precision ``p`` inside the ``with`` block."""
    token = _CURRENT.set(p)
    try:
        yield p
    finally:
        _CURRENT.reset(token)
