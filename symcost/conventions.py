"""Counting conventions: how a FLOP counter turns a :class:`Cost` into the number it prints.

Each convention is a weighted sum of Cost fields, so it applies at every node of a tree.

NB: ``torch`` is FlopCounterMode with SDPA counted (its CUDA formula; 2 per MAC; only mm,
addmm, bmm, convolution, SDPA). ``torch-cpu`` is FlopCounterMode out of the box on CPU, where
torch 2.13 has no formula for the CPU flash-attention kernel, so SDPA counts 0.
``fvcore`` is FlopCountAnalysis (1 per MAC, layer_norm 5 per element, einsums rounded as
numpy.einsum_path prints them) with a handle added for SDPA; ``fvcore-default`` leaves SDPA
unsupported (0). ``symcost`` is our own full count: 2 per MAC of every kind plus vector FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import shown
from .cost import Cost
from .errors import SymcostError

__all__ = ["Convention", "CONVENTIONS", "flops", "get_convention"]


@dataclass(frozen=True)
class Convention:
    name: str
    weights: tuple[tuple[str, int], ...]  # (Cost field, FLOPs per unit)
    summary: str

    def flops(self, cost: Cost):
        return sum(w * getattr(cost, f) for f, w in self.weights)


_MACS2 = (("mm_macs", 2), ("conv_macs", 2), ("einsum_macs", 2))
_FV = (("mm_macs", 1), ("conv_macs", 1), ("einsum_fvcore", 1), ("ln_elems", 5))

CONVENTIONS = {
    c.name: c
    for c in (
        Convention(
            "torch",
            _MACS2 + (("sdpa_macs", 2),),
            "FlopCounterMode, SDPA counted as on GPU: 2 per MAC of mm/bmm/conv/SDPA",
        ),
        Convention("torch-cpu", _MACS2, "FlopCounterMode out of the box on CPU: SDPA uncounted"),
        Convention(
            "fvcore",
            _FV + (("sdpa_macs", 1),),
            "fvcore with an SDPA handle: 1 per MAC, layer_norm 5/elt, einsums rounded",
        ),
        Convention("fvcore-default", _FV, "fvcore out of the box: SDPA unsupported (0)"),
        Convention(
            "symcost",
            _MACS2 + (("sdpa_macs", 2), ("vector_flops", 1)),
            "all work: 2 per MAC of every kind plus vector FLOPs (norms, softmax, ...)",
        ),
    )
}


def get_convention(name: str) -> Convention:
    if not isinstance(name, str) or name not in CONVENTIONS:
        raise SymcostError(f"convention: {shown(name)} is not one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def flops(cost: Cost, convention: str):
    """FLOPs of ``cost`` as the counter named ``convention`` reports them."""
    return get_convention(convention).flops(cost)
