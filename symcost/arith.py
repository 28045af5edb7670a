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
    return min(a, b) if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) \
        else sp.Min(a, b)


def smax(a, b):
    """``max(a, b)``; a SymPy ``Max`` when either is symbolic."""
    return max(a, b) if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) \
        else sp.Max(a, b)
