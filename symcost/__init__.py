"""symcost: exact closed-form costs of models, derived layer by layer with SymPy.

    >>> import symcost
    >>> m = symcost.load("deepseek-ocr", preset="gundam", vision_mode="crops")
    >>> m.formula("vision", "flops", "torch")          # SymPy expression in w_tiles, h_tiles
    >>> m.compile("vision", ["flops"])(1280, 720)      # vectorised, exact int64

The engine knows no model: families (``derivations/``) declare their inputs, options, stages
and layout rule, and register themselves as ``symcost.families`` entry points.
"""
from __future__ import annotations

from .arith import smax, smin, where
from .conventions import CONVENTIONS
from .cost import Cost
from .dtypes import DTYPE_BYTES, current
from .errors import SymcostError
from .family import Family, Option, Serving, Stage, Timing, families, get_family
from .hardware import HARDWARE
from .inputs import Input
from .layout import AspectTiler, FixedLayout, by_tile_count
from .metrics import METRICS
from .model import Model
from .runtime import RUNTIMES, get_runtime
from .tree import Node, captured, choose, op, repeat, seq, sum_over, when

__all__ = [
    "load", "families", "get_family", "Family", "Option", "Stage", "Timing", "Serving", "Input",
    "Model", "Cost", "Node", "op", "seq", "repeat", "sum_over", "when", "captured", "choose",
    "where", "smin", "smax", "AspectTiler", "FixedLayout", "by_tile_count", "CONVENTIONS",
    "METRICS", "DTYPE_BYTES", "HARDWARE", "RUNTIMES", "get_runtime", "current", "SymcostError",
]


def load(family: str, **options) -> Model:
    """Load a family's cost model, e.g. ``load("deepseek-ocr", preset="gundam")``; options the
    family does not declare are refused, declared ones checked against their choices."""
    fam = get_family(family)
    for name in options:
        fam.option(name)  # raises, naming the options the family has
    resolved = {}
    for opt in fam.options:
        value = options.get(opt.name, opt.default)
        resolved[opt.name] = None if value is None else opt.check(value)
    return fam.load(**resolved)
