"""Composition: a cost tree whose every node (op, block, view, stage) reports the same metrics.

Constructors: :func:`op` (a leaf from a registered formula), :func:`seq` (children run in
order), :func:`repeat` (a block run n times), :func:`sum_over` (a block run once per value of
a variable, e.g. decode steps, summed in closed form), :func:`when` (a branch that runs only
under a condition), :func:`choose` (a static selection by name, e.g. a vision mode).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Callable, Iterator, Mapping

import sympy as sp

from .cost import ADDITIVE_FIELDS, ZERO, Cost
from .errors import SymcostError
from .ops import OPS

__all__ = ["Node", "op", "seq", "repeat", "sum_over", "when", "choose"]


def _gate(cost: Cost, cond) -> Cost:
    if cond is True or cond is sp.true:
        return cost
    if cond is False or cond is sp.false:
        return ZERO
    return cost.map(lambda x: sp.Piecewise((x, cond), (0, True)) if x != 0 else x)


@lru_cache(maxsize=None)
def _power_sum(k: int, var: sp.Symbol, lo, hi):
    return sp.factor(sp.summation(var ** k, (var, lo, hi)))


def _sum_field(expr, var, lo, hi):
    """``sum(expr for var in lo..hi)`` for ``expr`` polynomial in ``var`` (Faulhaber, closed form)."""
    expr = sp.sympify(expr)
    if not expr.has(var):
        return (hi - lo + 1) * expr
    poly = sp.Poly(sp.expand(expr), var)
    return sp.Add(*[c * _power_sum(k, var, lo, hi) for (k,), c in poly.terms()])


def _sum_cost(cost: Cost, over) -> Cost:
    """Sum over a range; the peak is taken at the last value (it never shrinks as var grows)."""
    var, lo, hi = over
    sums = {f: _sum_field(getattr(cost, f), var, lo, hi) for f in ADDITIVE_FIELDS}
    return replace(cost, **sums, peak_act_elems=sp.sympify(cost.peak_act_elems).subs(var, hi))


def _in_context(cost: Cost, count=1, over=None, cond=True) -> Cost:
    if count != 1:
        cost = cost * count
    if over is not None:
        cost = _sum_cost(cost, over)
    return _gate(cost, cond)


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    children: tuple["Node", ...] = ()
    own: Cost = ZERO          # a leaf's cost
    kind: str | None = None   # a leaf's op kind (the registry key)
    count: object = 1         # the subtree runs this many times
    over: tuple | None = None  # (var, lo, hi): the subtree runs once per var in lo..hi
    cond: object = True       # the subtree runs only where this holds

    def _apply(self, cost: Cost) -> Cost:
        return _in_context(cost, self.count, self.over, self.cond)

    @cached_property
    def cost(self) -> Cost:
        """Total cost of this node: repetitions, summation and condition applied."""
        return self._apply(sum((c.cost for c in self.children), self.own))

    def walk(self, prefix: str = "", context=()) -> Iterator[tuple[str, "Node", Cost]]:
        """Yield ``(dotted path, node, cost in context)`` for every node, pre-order.

        The cost in context applies the repetitions, sums and conditions of all ancestors.
        """
        path = f"{prefix}.{self.name}" if prefix else self.name
        cost = self.cost
        for ancestor in context:  # nearest first
            cost = ancestor._apply(cost)
        yield path, self, cost
        for child in self.children:
            yield from child.walk(path, (self,) + context)

    def components(self) -> dict[str, Cost]:
        """Every node's cost in context, keyed by dotted path (root included)."""
        return {path: cost for path, _, cost in self.walk()}

    def by_kind(self, under: str | None = None) -> dict[str, Cost]:
        """Leaf costs in context summed per op kind (``linear``, ``sdpa`` ...), optionally only
        for leaves under the dotted path ``under`` (root name included)."""
        out: dict[str, Cost] = {}
        for path, node, cost in self.walk():
            if node.kind is not None and (under is None or path.startswith(under + ".")):
                out[node.kind] = out.get(node.kind, ZERO) + cost
        return out

    def find(self, path: str) -> "Node":
        """The descendant at a dotted path relative to this node."""
        node = self
        for part in path.split("."):
            for child in node.children:
                if child.name == part:
                    node = child
                    break
            else:
                raise SymcostError(f"component {path!r} not found under {self.name!r}")
        return node


def op(name: str, kind: str, **shape) -> Node:
    """A leaf: the formula registered as ``kind`` applied to ``shape``."""
    return Node(name, own=OPS[kind](**shape), kind=kind)


def seq(name: str, *children: Node) -> Node:
    names = [c.name for c in children]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate child names under {name!r}: {names}")
    return Node(name, tuple(children))


def repeat(name: str, count, *children: Node) -> Node:
    """``children`` in order, the whole run ``count`` times (count >= 1)."""
    return replace(seq(name, *children), count=count)


def sum_over(name: str, var: sp.Symbol, lo, hi, body: Callable[[object], Node]) -> Node:
    """``body(var)`` runs once for each ``var`` in ``lo..hi`` (symbols or ints), summed in closed
    form; its costs must be polynomial in ``var``."""
    return Node(name, (body(var),), over=(var, lo, hi))


def when(cond, node: Node) -> Node:
    """``node`` runs only where ``cond`` (a SymPy boolean) holds; it costs 0 elsewhere."""
    return replace(node, cond=cond)


def choose(parameter: str, options: Mapping[str, object], key: str):
    """Select ``options[key]``; an unknown key raises naming ``parameter`` and the allowed values."""
    if not isinstance(key, str) or key not in options:
        raise SymcostError(f"{parameter}: {key!r} is not one of {', '.join(sorted(options))}")
    return options[key]
