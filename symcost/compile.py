"""Compile exact integer expressions to vectorised NumPy functions (derive once, evaluate many).

The printer keeps integer expressions integer: a sum or product with rational coefficients
is printed as ``(q*expr) // q`` (exact, since the value is an integer), ``floor``/``ceiling``
as floor division, ``Piecewise`` as ``numpy.select`` with an integer default. Floats in an
expression are refused. Results are int64; a float64 shadow evaluation flags points whose
magnitude could overflow int64 (>= 2**62), and those are recomputed with Python integers.
"""
from __future__ import annotations

from functools import reduce
from math import lcm
from typing import Callable, Sequence

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .errors import SymcostError
from .ops import fvcore_einsum, fvcore_einsum_numpy

__all__ = ["compile_exprs", "CompiledFunction"]

_SAFE = float(2 ** 62)
CHUNK = 1 << 18  # points per chunk: bounds temporary memory for any number of points


def _denominator(expr) -> int:
    terms = expr.args if expr.is_Add else (expr,)
    return reduce(lcm, (int(t.as_coeff_Mul()[0].q) for t in terms), 1)


class _ExactPrinter(NumPyPrinter):
    def _print_Add(self, expr, order=None):
        q = _denominator(expr)
        if q == 1:
            return super()._print_Add(expr, order)
        return f"(({self._print(sp.expand(q * expr))}) // {q})"

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Rational and coeff.q != 1:
            return f"(({self._print(coeff.p * rest)}) // {coeff.q})"
        return super()._print_Mul(expr)

    def _print_Rational(self, expr):
        raise TypeError(f"non-integer constant {expr} in an exact expression")

    def _print_Float(self, expr):
        raise TypeError(f"float constant {expr} in an exact expression")

    def _print_floor(self, expr):
        num, den = expr.args[0].as_numer_denom()
        return f"(({self._print(num)}) // ({self._print(den)}))"

    def _print_ceiling(self, expr):
        num, den = expr.args[0].as_numer_denom()
        return f"(-((-({self._print(num)})) // ({self._print(den)})))"

    def _print_Max(self, expr):
        return reduce(lambda a, b: f"numpy.maximum({a}, {b})", map(self._print, expr.args))

    def _print_Min(self, expr):
        return reduce(lambda a, b: f"numpy.minimum({a}, {b})", map(self._print, expr.args))

    def _print_Piecewise(self, expr):
        *body, last = expr.args
        if last.cond is not sp.true:
            raise TypeError("Piecewise without a final True branch")
        if not body:
            return self._print(last.expr)
        conds = ", ".join(self._print(a.cond) for a in body)
        vals = ", ".join(self._print(a.expr) for a in body)
        return f"numpy.select([{conds}], [{vals}], default={self._print(last.expr)})"

    def _print_fvcore_einsum(self, expr):
        return f"_fvcore_einsum({self._print(expr.args[0])})"


def _fvcore_einsum_any(x):
    arr = np.asarray(x)
    if arr.dtype == object:  # exact path: Python ints
        return np.vectorize(lambda v: int(fvcore_einsum(sp.Integer(int(v)))), otypes=[object])(arr)
    return fvcore_einsum_numpy(arr)


_NAMESPACE = {"_fvcore_einsum": _fvcore_einsum_any}


class CompiledFunction:
    """``f(*arrays) -> dict name -> int64 (or object, exact) array``, vectorised and chunked."""

    def __init__(self, args: Sequence[sp.Symbol], exprs: dict[str, sp.Expr]):
        self.args = tuple(args)
        self.names = tuple(exprs)
        self.exprs = tuple(sp.sympify(exprs[n]) for n in self.names)
        for e in self.exprs:
            extra = e.free_symbols - set(self.args)
            if extra:
                raise TypeError(f"expression has symbols {extra} not among arguments {self.args}")
        self._fn: Callable = sp.lambdify(self.args, list(self.exprs), modules=[_NAMESPACE, "numpy"],
                                         printer=_ExactPrinter, cse=True)
        self.source = self._fn.__doc__

    def _chunk(self, cols: list[np.ndarray]) -> list[np.ndarray]:
        n = len(cols[0]) if cols else 1
        outs = [np.broadcast_to(np.asarray(o), (n,)) for o in self._fn(*cols)]
        shadow = self._fn(*[c.astype(np.float64) for c in cols])
        risky = np.zeros(n, dtype=bool)
        for s in shadow:
            risky |= ~(np.abs(np.broadcast_to(np.asarray(s, dtype=np.float64), (n,))) < _SAFE)
        if not risky.any():
            return [o.astype(np.int64, copy=False) for o in outs]
        exact = self._fn(*[c[risky].astype(object) for c in cols])
        fixed = []
        for o, e in zip(outs, exact):
            o = o.astype(object)
            o[risky] = np.broadcast_to(np.asarray(e, dtype=object), (int(risky.sum()),))
            fixed.append(o)
        return fixed

    def __call__(self, *arrays) -> dict[str, np.ndarray]:
        if len(arrays) != len(self.args):
            raise SymcostError(f"expected {len(self.args)} arguments {self.args}, got {len(arrays)}")
        cols = np.broadcast_arrays(*[np.asarray(a, dtype=np.int64) for a in arrays])
        shape = cols[0].shape if cols else ()
        flat = [c.reshape(-1) for c in cols]
        n = flat[0].size if flat else 1
        parts = [self._chunk([c[s:s + CHUNK] for c in flat]) for s in range(0, max(n, 1), CHUNK)]
        out = {}
        for k, name in enumerate(self.names):
            col = [p[k] for p in parts]
            dtype = object if any(c.dtype == object for c in col) else np.int64
            out[name] = np.concatenate([c.astype(dtype) for c in col]).reshape(shape)
        return out


def compile_exprs(args: Sequence[sp.Symbol], exprs: dict[str, sp.Expr]) -> CompiledFunction:
    return CompiledFunction(args, exprs)
