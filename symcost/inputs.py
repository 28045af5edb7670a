"""Inputs of a cost model: a symbol with its bounds, its CLI flag and its meaning.

A family declares its inputs; the engine builds arguments, checks, CLI flags and help from
them. Bounds live on the input (as tinygrad's ``Variable``): every value a user gives is
checked against them before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from .checks import check_int, check_ints

__all__ = ["Input"]


@dataclass(frozen=True)
class Input:
    name: str  # Python keyword, e.g. "prompt_tokens"
    symbol: sp.Symbol  # its symbol in closed forms, e.g. P
    lo: int  # inclusive bounds
    hi: int
    default: int | None  # None: required wherever a stage reads it
    unit: str  # e.g. "px", "tokens", "requests"
    help: str  # one line: what it is

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value) -> int:
        return check_int(self.name, value, self.lo, self.hi)

    def check_array(self, values) -> np.ndarray:
        return check_ints(self.name, values, self.lo, self.hi)
