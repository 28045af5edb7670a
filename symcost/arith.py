"""Int-or-symbol arithmetic: Python semantics for plain numbers, SymPy for expressions.

A derivation written with these helpers builds exact closed forms from symbols and plain
integer counts (the numeric model, no SymPy on the path) from numbers.
"""

from __future__ import annotations

import numbers

import sympy as sp

__all__ = ["where", "smin", "smax"]


def where(cond, a, b):
    """``a if cond else b``; a SymPy ``Piecewise`` when ``cond`` is symbolic."""
    if isinstance(cond, bool) or cond in (sp.true, sp.false):
        return a if cond else b
    return sp.Piecewise((a, cond), (b, True))


def smin(a, b):
    """``min(a, b)``; a SymPy ``Min`` when either is symbolic."""
    return min(a, b) if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) else sp.Min(a, b)


def smax(a, b):
    """``max(a, b)``; for expressions a ``Max`` of the arguments no other argument dominates.

    Why not ``sp.Max(a, b)``: its pairwise assumption queries dominated the whole derivation's
    time; a cost's terms are polynomials in nonnegative symbols, where coefficient signs decide.
    """
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return max(a, b)
    keep: list = []
    for x in _max_args(a) + _max_args(b):
        if any(_dominates(k, x) for k in keep):
            continue
        keep = [k for k in keep if not _dominates(x, k)] + [x]
    return keep[0] if len(keep) == 1 else sp.Max(*keep, evaluate=False)


def _max_args(x) -> list:
    return list(x.args) if isinstance(x, sp.Max) else [sp.sympify(x)]


def _dominates(a, b) -> bool:
    """``a >= b`` for every value of nonnegative symbols, shown by coefficient signs alone."""
    diff = sp.expand(a - b)
    if diff.is_number:
        return bool(diff >= 0)
    if diff.has(sp.Piecewise, sp.Max, sp.Min) or not all(s.is_nonnegative for s in diff.free_symbols):
        return False
    return all(c >= 0 for c in diff.as_coefficients_dict().values())
