"""symcost: exact closed-form costs of models, derived layer by layer with SymPy.

    >>> import symcost
    >>> symcost.families()                             # the registered model families
    >>> m = symcost.load(family, **options)            # options: see get_family(family).options
    >>> m.formula(stage, "flops", "torch")             # a SymPy closed form
    >>> m.compile(stage, ["flops"])(widths, heights)   # vectorised, exact int64

The engine knows no model: families (``derivations/``) declare their inputs, options, stages
and layout rule, and register themselves as ``symcost.families`` entry points.
Names are imported on first use, so ``import symcost`` (and the CLI's start) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# public name -> the module that defines it
_WHERE = {
    "smax": "arith",
    "smin": "arith",
    "where": "arith",
    "CONVENTIONS": "conventions",
    "Cost": "cost",
    "DTYPE_BYTES": "dtypes",
    "current": "dtypes",
    "SymcostError": "errors",
    "Family": "family",
    "Option": "family",
    "Serving": "family",
    "Stage": "family",
    "Timing": "family",
    "families": "family",
    "get_family": "family",
    "HARDWARE": "hardware",
    "Input": "inputs",
    "AspectTiler": "layout",
    "ComputedLayout": "layout",
    "dense_table": "layout",
    "FixedLayout": "layout",
    "by_tile_count": "layout",
    "METRICS": "metrics",
    "Model": "model",
    "RUNTIMES": "runtime",
    "get_runtime": "runtime",
    "simulate": "simulation",
    "Node": "tree",
    "captured": "tree",
    "choose": "tree",
    "op": "tree",
    "repeat": "tree",
    "seq": "tree",
    "sum_over": "tree",
    "when": "tree",
}
__all__ = ["load", *_WHERE]

if TYPE_CHECKING:
    from .model import Model


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'symcost' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def load(family: str, **options) -> Model:
    """Load a family's cost model with its options (``get_family(family).options``); options the
    family does not declare are refused, declared ones checked against their choices."""
    from .family import get_family

    fam = get_family(family)
    for name in options:
        fam.option(name)  # raises, naming the options the family has
    resolved = {}
    for opt in fam.options:
        value = options.get(opt.name, opt.default)
        resolved[opt.name] = None if value is None else opt.check(value)
    return fam.load(**resolved)
