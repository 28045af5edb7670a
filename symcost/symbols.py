"""The one symbol table. Assumptions are set here once; every module uses these objects."""
from __future__ import annotations

from types import SimpleNamespace

import sympy as sp

__all__ = ["stage_vars", "W", "H", "w_tiles", "h_tiles", "B", "P", "L", "N", "n_crops",
           "image_tokens", "prefill_tokens", "ARGUMENTS"]

W = sp.Symbol("W", integer=True, positive=True)              # image width, px
H = sp.Symbol("H", integer=True, positive=True)              # image height, px
w_tiles = sp.Symbol("w_tiles", integer=True, positive=True)  # tiles across the width
h_tiles = sp.Symbol("h_tiles", integer=True, positive=True)  # tiles down the height
B = sp.Symbol("B", integer=True, positive=True)              # requests in a batch
P = sp.Symbol("P", integer=True, nonnegative=True)           # prompt text tokens (BOS included)
L = sp.Symbol("L", integer=True, nonnegative=True)           # tokens already in the KV cache
N = sp.Symbol("N", integer=True, positive=True)              # new tokens generated

# Named intermediate quantities: a model defines them (Model.named) so formulas read in layers.
n_crops = sp.Symbol("n_crops", integer=True, nonnegative=True)                # tiles encoded
image_tokens = sp.Symbol("image_tokens", integer=True, positive=True)         # image block length
prefill_tokens = sp.Symbol("prefill_tokens", integer=True, positive=True)     # S0 = P + image_tokens

# Python argument name of each symbol, in the order compiled functions take them.
ARGUMENTS = {"width": W, "height": H, "prompt_tokens": P, "kv_len": L, "new_tokens": N,
             "batch": B}


def stage_vars(**values) -> SimpleNamespace:
    """Stage variables by name (``v.B``, ``v.w_tiles`` ...): symbols, or the values given."""
    names = (w_tiles, h_tiles, B, P, L, N, n_crops, image_tokens, prefill_tokens)
    unknown = set(values) - {str(s) for s in names}
    if unknown:
        raise TypeError(f"unknown stage variables {sorted(unknown)}")
    return SimpleNamespace(**{**{str(s): s for s in names}, **values})
