"""Closed forms as a reader wants them: branches folded outward, each collected by batch."""
from __future__ import annotations

import sympy as sp

__all__ = ["tidy", "render"]


def tidy(expr, collect_by=()) -> sp.Expr:
    """Fold branches outward and collect each branch by the given symbols: ``B*(a + b*n_crops)``."""
    expr = sp.piecewise_fold(sp.sympify(expr))
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(tidy(e, collect_by), c) for e, c in expr.args])
    if isinstance(expr, (sp.Max, sp.Min)):
        return expr.func(*[tidy(a, collect_by) for a in expr.args], evaluate=False)
    expr = sp.expand(expr)
    return sp.collect(expr, list(collect_by)) if collect_by else expr


def render(expr, latex: bool = False) -> str:
    """Text (terms by degree) or LaTeX of an already tidy expression."""
    return sp.latex(expr) if latex else sp.sstr(expr, order="grlex")
