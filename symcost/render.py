"""Closed forms as a reader wants them: branches folded outward, each collected by batch."""

from __future__ import annotations

import math
from functools import reduce
from itertools import product

import sympy as sp
from sympy.logic.boolalg import ITE
from sympy.printing.str import StrPrinter

from .arith import smax

__all__ = ["tidy", "render", "piecewise"]

# Folding branches outward multiplies them (a time formula has ~30 two-way branches, a tile
# rule ~60 cases): past this many combined cases they stay where they are.
MAX_CASES = 64


def tidy(expr, collect_by=()) -> sp.Expr:
    """Fold branches outward and collect each branch by the given symbols: ``B*(a + b*n_crops)``."""
    expr = sp.sympify(expr)
    if math.prod(len(p.args) for p in expr.atoms(sp.Piecewise)) <= MAX_CASES:
        expr = _fold(expr)
    # substituted branches and definitions can make one argument of a maximum dominate another
    expr = expr.replace(lambda x: isinstance(x, sp.Max), lambda x: reduce(smax, x.args))
    return _collected(expr, tuple(collect_by))


def _fold(expr) -> sp.Expr:
    """One outer ``Piecewise`` with no branch inside: one case per combination of the innermost
    branches, in order (the first condition that holds wins, as in ``sp.piecewise_fold``), each
    the expression with those branches substituted.

    Why not ``sp.piecewise_fold``: it folds argument by argument, so a branch that recurs in
    many terms (a gate inside every op's maximum) multiplies the cases per occurrence.
    """
    # a branch substituted into a comparison (``n_crops >= 2``) becomes an if-then-else condition
    expr = expr.replace(
        lambda x: isinstance(x, ITE),
        lambda x: sp.Or(sp.And(x.args[0], x.args[1]), sp.And(~x.args[0], x.args[2])),
    )
    return piecewise(_cases(expr))


def piecewise(cases) -> sp.Expr:
    """Ordered ``(value, condition)`` cases as one expression: neighbours that agree share a
    case, the last holds otherwise."""
    merged: list = []
    for value, cond in cases:
        if merged and merged[-1][0] == value:
            merged[-1] = (value, sp.Or(merged[-1][1], cond))
        else:
            merged.append((value, cond))
    if len(merged) == 1:
        return merged[0][0]
    return sp.Piecewise(*merged[:-1], (merged[-1][0], True), evaluate=False)


def _cases(expr) -> list[tuple[sp.Expr, object]]:
    """``[(value, condition)]`` in order, the last condition True, no branch inside a value."""
    inner = sorted(
        (
            p
            for p in expr.atoms(sp.Piecewise)
            if p.args[-1].cond is sp.true and not any(a.has(sp.Piecewise) for a in p.args)
        ),
        key=sp.default_sort_key,
    )
    if not inner:
        return [(expr, sp.true)]
    out = []
    for choice in product(*[p.args for p in inner]):
        cond = sp.And(*[c for _, c in choice])
        if cond is sp.false:
            continue
        value = expr.xreplace({p: e for p, (e, _) in zip(inner, choice)})
        out += [(v, sp.And(cond, c)) for v, c in _cases(value) if sp.And(cond, c) is not sp.false]
    return out


def _collected(expr, collect_by) -> sp.Expr:
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(_collected(e, collect_by), c) for e, c in expr.args])
    if isinstance(expr, (sp.Max, sp.Min)):
        return expr.func(*[_collected(a, collect_by) for a in expr.args])
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
