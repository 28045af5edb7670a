"""Int-or-symbol arithmetic: Python semantics for plain numbers, SymPy for expressions.

A derivation written with these helpers builds exact closed forms from symbols and plain
integer counts (the numeric model, no SymPy on the path) from numbers.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from functools import lru_cache

import sympy as sp

__all__ = ["where", "smin", "smax", "Max", "Min"]


class _AsWritten:
    """A maximum or minimum kept as written: nested ones flattened, repeats dropped, numbers
    folded into one, and nothing else.

    Why not SymPy's own: ``sp.Max`` re-simplifies its arguments with pairwise assumption queries
    every time an expression holding it is rebuilt (``subs``, ``xreplace``, ``expand``, ``cse``),
    which dominated deriving, compiling and printing a time formula (tens of seconds).
    :func:`smax` prunes dominated arguments once, when it builds the maximum.
    """

    _kind: type[sp.Basic]  # sp.Max or sp.Min (SymPy's own nested ones flatten too)
    _fold: Callable  # max or min of plain numbers

    def __new__(cls, *args, **assumptions) -> sp.Expr:
        assumptions.pop("evaluate", None)
        terms: dict = {}
        number = None
        for arg in args:
            expr = sp.sympify(arg)
            for x in expr.args if isinstance(expr, cls._kind) else (expr,):
                if x.is_Number:
                    number = x if number is None else cls._fold(number, x)
                else:
                    terms[x] = None
        if number is not None:
            terms[number] = None
        if len(terms) == 1:
            return next(iter(terms))
        return cls._kind.__new__(cls, *terms, evaluate=False, **assumptions)


class Max(_AsWritten, sp.Max):
    _kind, _fold = sp.Max, max


class Min(_AsWritten, sp.Min):
    _kind, _fold = sp.Min, min


def where(cond, a, b):
    """``a if cond else b``; a SymPy ``Piecewise`` when ``cond`` is symbolic."""
    if isinstance(cond, bool) or cond in (sp.true, sp.false):
        return a if cond else b
    return sp.Piecewise((a, cond), (b, True))


def smin(a, b):
    """``min(a, b)``; a SymPy ``Min`` when either is symbolic."""
    return min(a, b) if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) else Min(a, b)


def smax(a, b):
    """``max(a, b)``; for expressions a ``Max`` of the arguments no other argument dominates.

    Why not SymPy's own pruning: its pairwise assumption queries dominated the whole derivation's
    time; a cost's terms are polynomials in nonnegative symbols, where coefficient signs decide.
    """
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return max(a, b)
    keep: list = []
    for x in _max_args(a) + _max_args(b):
        if any(_dominates(k, x) for k in keep):
            continue
        keep = [k for k in keep if not _dominates(x, k)] + [x]
    return keep[0] if len(keep) == 1 else Max(*keep)


def _max_args(x) -> list:
    return list(x.args) if isinstance(x, sp.Max) else [sp.sympify(x)]


def _dominates(a, b) -> bool:
    """``a >= b`` for every value of nonnegative symbols, shown by coefficient signs alone."""
    diff = dict(_terms(a))
    for term, c in _terms(b).items():
        diff[term] = diff.get(term, 0) - c
    diff = {t: c for t, c in diff.items() if c != 0}
    if all(t == 1 for t in diff):  # a number
        return all(c >= 0 for c in diff.values())
    if any(t.has(sp.Piecewise, sp.Max, sp.Min) for t in diff):
        return False
    if not all(s.is_nonnegative for t in diff for s in t.free_symbols):
        return False
    return all(c >= 0 for c in diff.values())


@lru_cache(maxsize=1 << 14)
def _terms(x) -> dict:
    """``x`` expanded, as ``{monomial: coefficient}`` (read-only). Sums and numeric factors are
    taken apart first, so each product inside is expanded (and cached) once, however many
    maxima compare it."""
    x = sp.sympify(x)
    if x.is_Add:
        out: dict = {}
        for arg in x.args:
            for term, c in _terms(arg).items():
                out[term] = out.get(term, 0) + c
        return out
    coeff, rest = x.as_coeff_Mul()
    if coeff != 1 and rest != 1:
        return {term: coeff * c for term, c in _terms(rest).items()}
    return dict(sp.expand(x).as_coefficients_dict())
