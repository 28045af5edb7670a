"""Closed forms as a reader wants them: branches folded outward, each collected by batch."""

from __future__ import annotations

import math

import sympy as sp
from sympy.printing.str import StrPrinter

__all__ = ["tidy", "render"]

# Folding branches outward multiplies them (a time formula has ~30 two-way branches, a tile
# rule ~60 cases): past this many combined cases they stay where they are.
MAX_CASES = 64


def tidy(expr, collect_by=()) -> sp.Expr:
    """Fold branches outward and collect each branch by the given symbols: ``B*(a + b*n_crops)``."""
    expr = sp.sympify(expr)
    if math.prod(len(p.args) for p in expr.atoms(sp.Piecewise)) <= MAX_CASES:
        expr = sp.piecewise_fold(expr)
    return _collected(expr, tuple(collect_by))


def _collected(expr, collect_by) -> sp.Expr:
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(_collected(e, collect_by), c) for e, c in expr.args])
    if isinstance(expr, (sp.Max, sp.Min)):
        return expr.func(*[_collected(a, collect_by) for a in expr.args], evaluate=False)
    expr = sp.expand(expr)
    return sp.collect(expr, list(collect_by)) if collect_by else expr


class _Text(StrPrinter):
    """SymPy's text, with equations written ``(a == b)`` rather than ``Eq(a, b)`` (parenthesised
    as SymPy does inequalities inside ``&``)."""

    def _print_Equality(self, expr):
        return f"({self._print(expr.lhs)} == {self._print(expr.rhs)})"


def render(expr, latex: bool = False) -> str:
    """Text (terms by degree) or LaTeX of an already tidy expression."""
    return sp.latex(expr) if latex else _Text({"order": "grlex"}).doprint(expr)
