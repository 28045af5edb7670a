"""Compile exact integer expressions to vectorised NumPy functions (derive once, evaluate many).

Exactness: before printing, every sum or product with rational coefficients becomes
``_idiv(q*expr expanded, q)`` (integer coefficients, then one exact floor division; the value
is an integer), ``floor``/``ceiling`` become floor divisions of numerator by denominator, so
common subexpressions are integer-valued too. ``Piecewise`` prints as ``numpy.select``.
Floats, and Max/Min/Piecewise arguments that are not integer-valued, are not supported.

Overflow: alongside the NumPy program we generate its *magnitude bound*: the same program in
which every value is replaced by an upper bound of its absolute value (sums of bounds,
products of bounds, max over branches, conditions and operands; each bound >= 1). It uses only
``+``, ``*`` and ``max`` of nonnegative numbers, so it is monotone in the argument bounds: one
exact Python-int evaluation at a chunk's largest ``|argument|`` bounds every intermediate of
every point. Chunks under 2**63 run in int64 (the common case: one scalar call per chunk);
otherwise the bound is evaluated per point in float64 and points at or above 2**62 (a 2x margin
over float rounding) are recomputed with Python ints (object arrays). Nothing wraps silently.

Speed: points run in chunks of ``CHUNK`` (temporaries stay in cache), the chunks on every core
(:func:`parallel`: threads, as NumPy releases the GIL in its loops).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache, reduce
from math import lcm

import numpy as np
import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.printing.numpy import NumPyPrinter

from .errors import SymcostError
from .ops import expected_distinct, expected_distinct_numpy, fvcore_einsum, fvcore_einsum_numpy

__all__ = ["compile_exprs", "CompiledFunction", "CHUNK", "FUNCTIONS", "parallel"]

_INT64_MAX = 2**63 - 1
_RISK = float(2**62)
CHUNK = 1 << 16  # points per chunk: temporaries stay in cache, NumPy calls stay few
WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(WORKERS, thread_name_prefix="symcost")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has no pool threads


def parallel(fn: Callable[[int], None], starts: Iterable[int]) -> None:
    """``fn(s)`` for every chunk start ``s``, on every core (NumPy releases the GIL in its
    loops): one run of consecutive chunks per core, so cores write apart (no shared huge page
    faults); the first exception is raised here. ``fn`` must not call ``parallel``."""
    starts = list(starts)
    if len(starts) < 2 or WORKERS < 2:
        for s in starts:
            fn(s)
        return

    def run(part: list[int]) -> None:
        for s in part:
            fn(s)

    k = -(-len(starts) // WORKERS)
    for _ in _pool().map(run, [starts[i : i + k] for i in range(0, len(starts), k)]):
        pass


class _idiv(sp.Function):
    """``num // q`` for an integer-valued ``num / q`` (``num`` has integer coefficients)."""

    is_integer = True


class _fdiv(sp.Function):
    """``floor(num / den)``."""

    is_integer = True


def _fractional(expr) -> bool:
    """A non-integer rational inside the polynomial structure (Add/Mul/Pow) of ``expr``."""
    if expr.is_Rational:
        return not expr.is_Integer
    if expr.is_Add or expr.is_Mul or expr.is_Pow:
        return any(_fractional(a) for a in expr.args)
    return False


def _polynomial(expr):
    """``expr`` with its polynomial structure kept and every other node integerized."""
    if expr.is_Pow and not (expr.exp.is_Integer and expr.exp >= 0):
        raise TypeError(f"power {expr} is not a nonnegative integer power")
    if expr.is_Add or expr.is_Mul or expr.is_Pow:
        return expr.func(*[_polynomial(a) for a in expr.args])
    return expr if expr.is_Rational else _integerize(expr)


def _integerize(expr):
    """Rewrite ``expr`` so that every node is integer-valued (see the module docstring)."""
    if isinstance(expr, sp.Float):
        raise TypeError(f"float constant {expr} in an exact expression")
    if expr.is_Atom:
        if expr.is_Rational and not expr.is_Integer:
            raise TypeError(f"non-integer constant {expr} in an exact expression")
        return expr
    if isinstance(expr, (sp.floor, sp.ceiling)):
        num, den = sp.fraction(sp.together(expr.args[0]))
        if isinstance(expr, sp.floor):
            return _fdiv(_integerize(sp.expand(num)), _integerize(sp.expand(den)))
        return -_fdiv(_integerize(sp.expand(-num)), _integerize(sp.expand(den)))
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(_integerize(e), _integerize(c)) for e, c in expr.args])
    if expr.is_Add or expr.is_Mul or expr.is_Pow:
        expr = _polynomial(expr)
        if not _fractional(expr):
            return expr
        e = sp.expand(expr)
        terms = e.args if e.is_Add else (e,)
        q = reduce(lcm, (int(t.as_coeff_Mul()[0].q) for t in terms), 1)
        return _idiv(sp.expand(q * e), q) if q != 1 else e
    return expr.func(*[_integerize(a) for a in expr.args])


class _ExactPrinter(NumPyPrinter):
    def _print_Add(self, expr, order=None):
        if _fractional(expr):
            return self._print(_integerize(expr))
        return super()._print_Add(expr, order)

    def _print_Mul(self, expr):
        if _fractional(expr):
            return self._print(_integerize(expr))
        return super()._print_Mul(expr)

    def _print_Rational(self, expr):
        raise TypeError(f"non-integer constant {expr} in an exact expression")

    def _print_Float(self, expr):
        raise TypeError(f"float constant {expr} in an exact expression")

    def _print__idiv(self, expr):
        return f"(({self._print(expr.args[0])}) // {self._print(expr.args[1])})"

    def _print__fdiv(self, expr):
        return f"(({self._print(expr.args[0])}) // ({self._print(expr.args[1])}))"

    def _print_floor(self, expr):
        return self._print(_integerize(expr))

    def _print_ceiling(self, expr):
        return self._print(_integerize(expr))

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

    def _print_expected_distinct(self, expr):
        return f"_expected_distinct({', '.join(self._print(a) for a in expr.args)})"


def _fvcore_einsum_any(x):
    arr = np.asarray(x)
    if arr.dtype == object:  # exact path: Python ints
        return np.vectorize(lambda v: int(fvcore_einsum(sp.Integer(int(v)))), otypes=[object])(arr)
    return fvcore_einsum_numpy(arr)


def _expected_distinct_any(*args):
    if any(np.asarray(a).dtype == object for a in args):  # exact path: Python ints
        return np.vectorize(lambda *v: int(expected_distinct(*map(int, v))), otypes=[object])(*args)
    return expected_distinct_numpy(*args)


# The programs call ``numpy.<name>``: NumPy itself is their namespace (lambdify's "numpy" would
# run ``from numpy import *``, importing f2py, testing and the rest: a fifth of a cold compile).
_NAMESPACE = {"_fvcore_einsum": _fvcore_einsum_any, "_expected_distinct": _expected_distinct_any, "numpy": np}
# the same functions under their SymPy names, for lambdify's default printer (float programs)
FUNCTIONS = {"fvcore_einsum": _fvcore_einsum_any, "expected_distinct": _expected_distinct_any, "numpy": np}
_MAX_OF = (
    sp.Max,
    sp.Min,
    sp.Piecewise,
    ExprCondPair,
    sp.Mod,
    sp.Abs,
    _fdiv,
    sp.logic.boolalg.BooleanFunction,
    sp.core.relational.Relational,
)


def _bound_code(expr, names: dict) -> str:
    """Python source of an upper bound (>= 1) on |every value computed for ``expr``|."""
    if expr in names:
        return names[expr]
    if expr.is_Integer:
        return str(max(1, abs(int(expr))))
    if expr in (sp.true, sp.false):
        return "1"
    sub = [_bound_code(a, names) for a in expr.args]
    if expr.is_Add:
        return "(" + " + ".join(sub) + ")"
    if expr.is_Mul:
        return "(" + " * ".join(sub) + ")"
    if expr.is_Pow:  # exponent checked by _integerize; exponent 0 still evaluates the base
        return f"_max({sub[0]} ** {int(expr.exp)}, {sub[0]})"
    if isinstance(expr, _idiv):  # |num // q| <= |num|
        return sub[0]
    if isinstance(expr, fvcore_einsum):  # fvcore_einsum_numpy's intermediates stay below 8x + 2e4
        return f"(8 * {sub[0]} + 20000)"
    if isinstance(expr, expected_distinct):  # at most the population; its args are computed
        return "_max(" + ", ".join(sub) + ")"
    if isinstance(expr, _MAX_OF):
        return "_max(" + ", ".join(sub) + ")" if len(sub) > 1 else sub[0]
    raise TypeError(f"cannot bound {expr.func.__name__} in a compiled expression")


def _array_max(*xs):
    return reduce(np.maximum, [float(x) if isinstance(x, int) else x for x in xs])


def _check_symbols(args, steps, exprs) -> None:
    """Every symbol is an argument or an earlier step."""
    known = set(args)
    for sym, e in steps:
        _check_known(e, known, args)
        known.add(sym)
    for e in exprs:
        _check_known(e, known, args)


def _check_known(expr, known: set, args) -> None:
    extra = expr.free_symbols - known
    if extra:
        raise TypeError(f"expression has symbols {extra} not among arguments {args}")


class CompiledFunction:
    """``f(*arrays) -> dict name -> int64 (or object, exact) array``, vectorised and chunked."""

    def __init__(
        self,
        args: Sequence[sp.Symbol],
        exprs: dict[str, sp.Expr],
        steps: Sequence[tuple[sp.Symbol, sp.Expr]] = (),
    ):
        """``steps``: ``(symbol, expression)`` pairs computed first, in order, each in the
        arguments and earlier steps (e.g. a model's named quantities); outputs may use them."""
        self.args = tuple(args)
        self.names = tuple(exprs)
        self.exprs = tuple(sp.sympify(exprs[n]) for n in self.names)
        steps = [(sym, sp.sympify(e)) for sym, e in steps]
        _check_symbols(self.args, steps, self.exprs)
        subs, reduced = sp.cse([_integerize(e) for e in self.exprs])
        subs = [(sym, _integerize(e)) for sym, e in steps] + subs
        self._fn: Callable = sp.lambdify(
            self.args,
            reduced,
            modules=[_NAMESPACE, np],
            printer=_ExactPrinter,
            cse=lambda _: (subs, reduced),
        )
        self.source = self._fn.__doc__
        # the magnitude-bound program: one bound per cse variable and per output
        names = {a: f"a{k}" for k, a in enumerate(self.args)}
        lines = []
        for k, (sym, rhs) in enumerate(subs):
            lines.append(f"    x{k} = {_bound_code(rhs, names)}")
            names[sym] = f"x{k}"
        outs = [_bound_code(e, names) for e in reduced]
        every = ["1"] + [f"x{k}" for k in range(len(subs))] + outs  # "1": a program may have no output
        params = ", ".join(f"a{k}" for k in range(len(self.args)))
        self.bound_source = (
            f"def bound({params}):\n" + "\n".join(lines) + f"\n    return _max({', '.join(every)}, 1)\n"
        )
        self._bound_int = self._def_bound(max)
        self._bound_float = self._def_bound(_array_max)

    def _def_bound(self, maximum) -> Callable:
        scope = {"_max": maximum}
        exec(compile(self.bound_source, "<symcost bound>", "exec"), scope)
        return scope["bound"]

    def _exact(self, cols: list) -> list:
        """Python-int evaluation (object arrays)."""
        return self._fn(*[c.astype(object) if isinstance(c, np.ndarray) else int(c) for c in cols])

    def _chunk(self, cols: list, n: int) -> list[np.ndarray]:
        """Evaluate on one chunk; ``cols`` are int64 arrays of length ``n`` or int64 scalars."""
        top = [
            max(1, abs(int(c.min())), abs(int(c.max()))) if isinstance(c, np.ndarray) else max(1, abs(int(c)))
            for c in cols
        ]
        if self._bound_int(*top) <= _INT64_MAX:  # every intermediate of every point fits
            return [np.broadcast_to(np.asarray(o, dtype=np.int64), (n,)) for o in self._fn(*cols)]
        with np.errstate(over="ignore"):  # the float bound may reach inf: that is "risky"
            per_point = self._bound_float(*[np.maximum(np.abs(c.astype(np.float64)), 1.0) for c in cols])
        risky = np.broadcast_to(~(np.asarray(per_point) < _RISK), (n,))
        if not risky.any():  # the chunk's extremes come from different points: every point fits
            return [np.broadcast_to(np.asarray(o, dtype=np.int64), (n,)) for o in self._fn(*cols)]
        if risky.all():
            return [
                np.broadcast_to(np.asarray(o, dtype=object), (n,))
                for o in self._exact([np.broadcast_to(c, (n,)) for c in cols])
            ]
        safe = [c[~risky] if isinstance(c, np.ndarray) and c.ndim else c for c in cols]
        fast = self._fn(*safe)
        exact = self._exact(
            [
                c[risky] if isinstance(c, np.ndarray) and c.ndim else np.broadcast_to(c, (int(risky.sum()),))
                for c in cols
            ]
        )
        outs = []
        for f, e in zip(fast, exact):
            o = np.empty(n, dtype=object)
            o[~risky] = np.broadcast_to(np.asarray(f, dtype=np.int64), (n - int(risky.sum()),))
            o[risky] = np.broadcast_to(np.asarray(e, dtype=object), (int(risky.sum()),))
            outs.append(o)
        return outs

    def __call__(self, *arrays) -> dict[str, np.ndarray]:
        if len(arrays) != len(self.args):
            raise SymcostError(f"expected {len(self.args)} arguments {self.args}, got {len(arrays)}")
        given = [np.asarray(a, dtype=np.int64) for a in arrays]
        shape = np.broadcast_shapes(*[a.shape for a in given])
        n = int(np.prod(shape))
        # size-1 arguments stay scalars: broadcasting them costs nothing
        flat = [
            np.int64(a.reshape(-1)[0]) if a.size == 1 else np.broadcast_to(a, shape).reshape(-1)
            for a in given
        ]
        out = [np.empty(n, dtype=np.int64) for _ in self.names]
        exact: dict[int, list] = {}  # chunk start -> its parts, when one holds Python ints

        def work(s: int) -> None:
            m = min(CHUNK, n - s)
            part = self._chunk([c[s : s + m] if isinstance(c, np.ndarray) else c for c in flat], m)
            if any(p.dtype == object for p in part):
                exact[s] = part  # merged below, once every int64 chunk is written
            for o, p in zip(out, part):
                if p.dtype != object:
                    o[s : s + m] = p

        parallel(work, range(0, n, CHUNK))
        for s, part in exact.items():
            for k, p in enumerate(part):
                if p.dtype == object:
                    if out[k].dtype != object:
                        out[k] = out[k].astype(object)
                    out[k][s : s + p.size] = p
        return {name: o.reshape(shape) for name, o in zip(self.names, out)}


def compile_exprs(args: Sequence[sp.Symbol], exprs: dict[str, sp.Expr], steps=()) -> CompiledFunction:
    return CompiledFunction(args, exprs, steps)
