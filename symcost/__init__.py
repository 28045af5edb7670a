"""symcost: exact closed-form costs of models, derived layer by layer with SymPy.

    >>> import symcost
    >>> m = symcost.load("deepseek-ocr", preset="gundam", vision_mode="crops")
    >>> m.formula("vision", "flops", "torch")          # SymPy expression in w_tiles, h_tiles
    >>> m.compile("vision", ["flops"])(1280, 720)      # vectorised, exact int64
"""
from __future__ import annotations

import inspect
from importlib import import_module

from .arith import smin, where
from .conventions import CONVENTIONS
from .cost import Cost
from .errors import SymcostError
from .layout import TileRule
from .metrics import DTYPE_BYTES, METRICS
from .model import Model, Stage
from .symbols import B, H, L, N, P, W, h_tiles, image_tokens, n_crops, prefill_tokens, w_tiles
from .tree import Node, choose, op, repeat, seq, sum_over, when

__all__ = [
    "load", "FAMILIES", "SymcostError", "Model", "Stage", "Cost", "Node",
    "op", "seq", "repeat", "sum_over", "when", "choose", "where", "smin", "TileRule",
    "CONVENTIONS", "METRICS", "DTYPE_BYTES",
    "W", "H", "w_tiles", "h_tiles", "B", "P", "L", "N", "n_crops", "image_tokens",
    "prefill_tokens",
]

# family name -> module whose ``load(**options)`` builds the Model
FAMILIES = {"deepseek-ocr": "derivations.deepseek_ocr"}


def load(family: str, **options) -> Model:
    """Load a model family's cost model, e.g. ``load("deepseek-ocr", preset="gundam")``."""
    module = choose("family", FAMILIES, family)
    loader = import_module(module).load
    allowed = tuple(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SymcostError(f"{unknown[0]}: not an option of {family}; options: {', '.join(allowed)}")
    return loader(**options)
