"""Composition: a cost tree whose every node (op, block, view, stage) reports the same metrics.

Constructors: :func:`op` (a leaf from a registered formula), :func:`seq` (children run in
order), :func:`repeat` (a block run n times), :func:`sum_over` (a block run once per value of
a variable, e.g. decode steps, summed in closed form), :func:`when` (a branch that runs only
under a condition), :func:`choose` (a static selection by name, e.g. a vision mode).

Liveness (``peak_bytes``, ``out_bytes``, ``retained_bytes`` of :class:`~symcost.cost.Cost`):
a node's input is held by its caller while it runs. In a ``seq`` each child reads the previous
child's output, which is freed once that child ends, unless the producer is marked ``keep``
(read again later in the same ``seq``, like a residual): a kept output lives until the ``seq``
ends. The last child's output is the ``seq``'s output. Retained bytes (KV-cache growth) live
until the stage ends. ``repeat`` chains its runs (each reads the previous run's output) unless
``collect`` (independent runs whose outputs are all kept, like a per-request loop).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import TypeVar

import sympy as sp

from .arith import smax, where
from .checks import shown
from .cost import ADDITIVE_FIELDS, ZERO, Cost, Count
from .errors import SymcostError
from .ops import get_op

__all__ = ["Node", "op", "seq", "repeat", "sum_over", "when", "captured", "choose", "live_before"]

T = TypeVar("T")


def _gate(cost: Cost, cond) -> Cost:
    """``cost`` where ``cond`` holds, else 0. A field that is 0 wherever ``cond`` fails anyway
    stays ungated: for ``x > 0`` with ``x`` a nonnegative symbol, the fields that vanish at
    ``x = 0`` (everything but per-call costs such as weight reads and launches)."""
    if cond is True or cond is sp.true:
        return cost
    if cond is False or cond is sp.false:
        return ZERO
    vanishing: dict = {}
    if (
        isinstance(cond, sp.StrictGreaterThan)
        and cond.rhs == 0
        and cond.lhs.is_Symbol
        and cond.lhs.is_nonnegative
    ):
        vanishing = {cond.lhs: 0}

    def gate(x):
        if x == 0 or (vanishing and isinstance(x, sp.Basic) and x.xreplace(vanishing) == 0):
            return x
        return sp.Piecewise((x, cond), (0, True))

    return cost.map(gate)


@lru_cache(maxsize=256)
def _power_sum(k: int, var: sp.Symbol, lo, hi):
    return sp.factor(sp.summation(var**k, (var, lo, hi)))


def _sum_field(expr, var, lo, hi):
    """``sum(expr for var in lo..hi)`` for ``expr`` polynomial in ``var`` (Faulhaber, closed form;
    0 for an empty range)."""
    if not (isinstance(expr, sp.Basic) and expr.has(var)):  # numbers stay plain
        return (hi - lo + 1) * expr
    poly = sp.Poly(sp.expand(expr), var)
    return sp.Add(*[c * _power_sum(k, var, lo, hi) for (k,), c in poly.terms()])


def _at(expr, var, value):
    """``expr`` with ``var = value`` (numbers stay plain)."""
    return expr.xreplace({var: sp.sympify(value)}) if isinstance(expr, sp.Basic) else expr


def _sum_cost(cost: Cost, over) -> Cost:
    """Sum over ``var`` in ``lo..hi``. Every step reads the previous step's output; the peak is
    at the last step (steps only grow), after the retained bytes of all earlier steps."""
    var, lo, hi = over
    sums = {f: _sum_field(getattr(cost, f), var, lo, hi) for f in ADDITIVE_FIELDS}
    at_last = {f: _at(getattr(cost, f), var, hi) for f in ("peak_bytes", "out_bytes")}
    earlier = _sum_field(cost.retained_bytes, var, lo, hi - 1)
    peak = where(sp.sympify(hi - lo) >= 0, earlier + at_last["out_bytes"] + at_last["peak_bytes"], 0)
    return Cost(
        **sums,
        peak_bytes=peak,
        out_bytes=at_last["out_bytes"],
        retained_bytes=_sum_field(cost.retained_bytes, var, lo, hi),
    )


def _repeat_cost(cost: Cost, count, collect: bool) -> Cost:
    """``count`` runs (count >= 1): chained (run k reads run k-1's output) or collected."""
    scaled = {f: getattr(cost, f) * count for f in ADDITIVE_FIELDS}
    retained = cost.retained_bytes * count
    if collect:
        return Cost(
            **scaled,
            peak_bytes=(count - 1) * (cost.retained_bytes + cost.out_bytes) + cost.peak_bytes,
            out_bytes=count * cost.out_bytes,
            retained_bytes=retained,
        )
    later = (count - 1) * cost.retained_bytes + cost.out_bytes + cost.peak_bytes
    return Cost(
        **scaled,
        peak_bytes=where(sp.sympify(count) >= 2, later, cost.peak_bytes),
        out_bytes=cost.out_bytes,
        retained_bytes=retained,
    )


def _add(values: list) -> Count:
    """A sum: numbers stay plain; expressions join one SymPy ``Add`` (one flatten, not one per
    term as ``sum`` would)."""
    if all(isinstance(v, numbers.Number) for v in values):
        return sum(values, 0)
    return sp.Add(*values)


def live_before(children: tuple[Node, ...]) -> Iterator[tuple[Node, Count]]:
    """Each child of a ``seq`` with the bytes live while it runs besides its own peak: the retained
    bytes and kept outputs of earlier children, and its input (the previous child's output)."""
    held: Count = 0  # retained bytes and kept outputs of earlier children
    previous: Count = 0  # the previous child's output: this child's input
    for c in children:
        cost = c.cost
        yield c, held + previous
        held = held + cost.retained_bytes + (cost.out_bytes if c.keep else 0)
        previous = 0 if c.keep else cost.out_bytes


def _seq_cost(children: tuple[Node, ...]) -> Cost:
    """Children in order: additive fields summed, liveness walked (see the module docstring)."""
    total = {f: _add([getattr(c.cost, f) for c in children]) for f in ADDITIVE_FIELDS}
    peak: Count = 0
    for c, live in live_before(children):
        peak = smax(peak, live + c.cost.peak_bytes)
    retained = _add([c.cost.retained_bytes for c in children])
    out = children[-1].cost.out_bytes if children else 0
    return Cost(**total, peak_bytes=peak, out_bytes=out, retained_bytes=retained)


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    children: tuple[Node, ...] = ()
    own: Cost = ZERO  # a leaf's cost
    kind: str | None = None  # a leaf's op kind (the registry key)
    count: object = 1  # the subtree runs this many times
    over: tuple | None = None  # (var, lo, hi): the subtree runs once per var in lo..hi
    cond: object = True  # the subtree runs only where this holds
    keep: bool = False  # the output is read again later in the enclosing seq
    collect: bool = False  # repeated runs are independent and their outputs all kept
    graph: bool = False  # runs as a replayed CUDA graph (per-kernel floor of graphs)

    def _apply(self, cost: Cost) -> Cost:
        if self.count != 1:
            cost = _repeat_cost(cost, self.count, self.collect)
        if self.over is not None:
            cost = _sum_cost(cost, self.over)
        return _gate(cost, self.cond)

    @cached_property
    def cost(self) -> Cost:
        """Total cost of this node: repetitions, summation and condition applied."""
        return self._apply(_seq_cost(self.children) if self.children else self.own)

    def walk(
        self, prefix: str = "", context=(), depth: int | None = None
    ) -> Iterator[tuple[str, Node, Cost]]:
        """Yield ``(dotted path, node, cost in context)`` for every node (down to ``depth`` levels
        below this one), pre-order.

        The cost in context applies the repetitions, sums and conditions of all ancestors.
        """
        path = f"{prefix}.{self.name}" if prefix else self.name
        cost = self.cost
        for ancestor in context:  # nearest first
            cost = ancestor._apply(cost)
        yield path, self, cost
        if depth is None or depth > 0:
            for child in self.children:
                yield from child.walk(path, (self,) + context, None if depth is None else depth - 1)

    def leaves(self, prefix: str = "", context=(), graph: bool = False) -> Iterator[tuple[str, Cost, bool]]:
        """``(dotted path, cost in context, runs inside a CUDA graph)`` of every op; additive
        fields only (an op's liveness in context is its ancestors' business)."""
        path = f"{prefix}.{self.name}" if prefix else self.name
        graph = graph or self.graph
        if self.kind is not None:
            cost = Cost(**{f: getattr(self.cost, f) for f in ADDITIVE_FIELDS})
            for ancestor in context:
                cost = ancestor._apply(cost)
            yield path, cost, graph
        for child in self.children:
            yield from child.leaves(path, (self,) + context, graph)

    def components(self, depth: int | None = None) -> dict[str, Cost]:
        """Every node's cost in context (down to ``depth`` levels below this one), keyed by dotted
        path (root included)."""
        return {path: cost for path, _, cost in self.walk(depth=depth)}

    def by_kind(self, under: str | None = None) -> dict[str, Cost]:
        """Leaf costs in context summed per op kind (``linear``, ``sdpa`` ...), optionally only
        for leaves under the dotted path ``under`` (root name included). Additive fields only."""
        out: dict[str, Cost] = {}
        for path, node, cost in self.walk():
            if node.kind is not None and (under is None or path.startswith(under + ".")):
                prev = out.get(node.kind, ZERO)
                out[node.kind] = Cost(**{f: getattr(prev, f) + getattr(cost, f) for f in ADDITIVE_FIELDS})
        return out

    def find(self, path: str) -> Node:
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


def op(name: str, kind: str, *, keep: bool = False, kernels=None, **shape) -> Node:
    """A leaf: the formula registered as ``kind`` applied to ``shape``; ``kernels`` overrides
    the number of kernels the formula assumes (a runtime's real launch count)."""
    formula = get_op(kind)
    for arg, value in shape.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 0:
            raise SymcostError(f"{name} ({kind}): {arg} = {value} must be >= 0")
    cost = formula(**shape)
    if kernels is not None:
        cost = replace(cost, kernels=kernels)
    return Node(name, own=cost, kind=kind, keep=keep)


def seq(name: str, *children: Node, keep: bool = False) -> Node:
    names = [c.name for c in children]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate child names under {name!r}: {names}")
    return Node(name, tuple(children), keep=keep)


def repeat(name: str, count, *children: Node, collect: bool = False) -> Node:
    """``children`` in order, the whole run ``count`` times (count >= 1); see the module
    docstring for ``collect``."""
    return replace(seq(name, *children), count=count, collect=collect)


def sum_over(name: str, var: sp.Symbol, lo, hi, body: Callable[[object], Node]) -> Node:
    """``body(var)`` runs once for each ``var`` in ``lo..hi`` (symbols or ints), summed in closed
    form; its costs must be polynomial in ``var``."""
    return Node(name, (body(var),), over=(var, lo, hi))


def when(cond, node: Node) -> Node:
    """``node`` runs only where ``cond`` (a SymPy boolean) holds; it costs 0 elsewhere."""
    return replace(node, cond=cond)


def captured(node: Node) -> Node:
    """``node`` runs as a replayed CUDA graph: its kernels pay the runtime's graph floor."""
    return replace(node, graph=True)


def choose(parameter: str, options: Mapping[str, T], key: str) -> T:
    """Select ``options[key]``; an unknown key raises naming ``parameter`` and the allowed values."""
    if not isinstance(key, str) or key not in options:
        raise SymcostError(f"{parameter}: {shown(key)} is not one of {', '.join(sorted(options))}")
    return options[key]
