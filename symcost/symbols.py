"""The one symbol table. Assumptions are set here once; every module uses these objects."""
from __future__ import annotations

import sympy as sp

__all__ = ["W", "H", "w_tiles", "h_tiles", "B", "P", "L", "N", "STAGE_SYMBOLS", "ARGUMENTS"]

W = sp.Symbol("W", integer=True, positive=True)              # image width, px
H = sp.Symbol("H", integer=True, positive=True)              # image height, px
w_tiles = sp.Symbol("w_tiles", integer=True, positive=True)  # tiles across the width
h_tiles = sp.Symbol("h_tiles", integer=True, positive=True)  # tiles down the height
B = sp.Symbol("B", integer=True, positive=True)              # requests in a batch
P = sp.Symbol("P", integer=True, nonnegative=True)           # prompt text tokens (BOS included)
L = sp.Symbol("L", integer=True, nonnegative=True)           # tokens already in the KV cache
N = sp.Symbol("N", integer=True, positive=True)              # new tokens generated

# Python argument name of each symbol, in the order compiled functions take them.
ARGUMENTS = {"width": W, "height": H, "prompt_tokens": P, "kv_len": L, "new_tokens": N,
             "batch": B}
STAGE_SYMBOLS = tuple(ARGUMENTS.values())
