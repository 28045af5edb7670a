"""Primitive op formulas: small pure functions of shapes, each registered once under its kind.

Every formula returns a :class:`Cost`. Shapes may be ints or SymPy expressions.

NB: vector FLOPs (our own convention, used by the ``symcost`` counting convention only):
add/mul 1 per element, layer norm 5 (as fvcore), RMS norm 4, softmax 5 (max, sub, exp, sum,
div), exact GELU 8, SiLU 4, quick-GELU 4, RoPE 3 (x*cos + rot(x)*sin); bias adds are 1 per
output element.
NB: bytes: a formula reads its inputs and weights and writes its outputs once each (no cache
reuse); ``peak_act_elems`` is inputs + outputs (+ materialised intermediates) of the op.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from .cost import Cost

__all__ = ["OPS", "register", "fvcore_einsum", "ACTIVATION_FLOPS"]

OPS: dict[str, Callable[..., Cost]] = {}

ACTIVATION_FLOPS = {"gelu": 8, "silu": 4, "quick_gelu": 4, "add": 1, "mul": 1, "rope": 3}


def register(kind: str):
    """Register a formula under ``kind`` (one formula per kind)."""
    def deco(fn):
        if kind in OPS:
            raise ValueError(f"op kind {kind!r} registered twice")
        OPS[kind] = fn
        return fn
    return deco


def _sig4_halved(flop: int) -> int:
    """fvcore's einsum count: ``floor(float('%.3e' % flop) / 2)``, in exact integer arithmetic.

    '%.3e' rounds the (exact, < 2**53) float to 4 significant digits, ties to even.
    """
    if flop < 10_000:
        return flop // 2
    q = 10 ** (len(str(flop)) - 4)
    m, r = divmod(flop, q)
    if 2 * r > q or (2 * r == q and m % 2):
        m += 1
    return (m * q) // 2


class fvcore_einsum(sp.Function):
    """fvcore's einsum count of an einsum of ``macs`` MACs (numpy.einsum_path's printed cost, halved).

    NB: numpy prices a 2-operand contraction at 2 FLOP per MAC and prints 4 significant digits;
    fvcore parses that and floors half of it.
    """

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, macs):
        if macs.is_Integer:
            return sp.Integer(_sig4_halved(2 * int(macs)))
        return None


@register("linear")
def linear(tokens, d_in, d_out, bias=True) -> Cost:
    """``y = x W^T (+ b)`` on ``tokens`` rows."""
    params = d_in * d_out + (d_out if bias else 0)
    return Cost(mm_macs=tokens * d_in * d_out, vector_flops=tokens * d_out if bias else 0,
                params=params, weight_elems=params, act_read_elems=tokens * d_in,
                act_write_elems=tokens * d_out, peak_act_elems=tokens * (d_in + d_out))


@register("conv2d")
def conv2d(batch, c_in, c_out, kernel, in_hw, out_hw, bias=False) -> Cost:
    """Square conv, ``in_hw``/``out_hw`` the input/output side; no groups, no dilation."""
    params = c_out * c_in * kernel * kernel + (c_out if bias else 0)
    out = batch * out_hw * out_hw * c_out
    inp = batch * in_hw * in_hw * c_in
    return Cost(conv_macs=out * c_in * kernel * kernel, vector_flops=out if bias else 0,
                params=params, weight_elems=params, act_read_elems=inp, act_write_elems=out,
                peak_act_elems=inp + out)


@register("layer_norm")
def layer_norm(tokens, dim, aten=True) -> Cost:
    """LayerNorm with affine; ``aten=False`` for hand-written norms (elementwise ops) counters miss."""
    elems = tokens * dim
    return Cost(ln_elems=elems if aten else 0, vector_flops=5 * elems, params=2 * dim,
                weight_elems=2 * dim, act_read_elems=elems, act_write_elems=elems,
                peak_act_elems=2 * elems)


@register("rms_norm")
def rms_norm(tokens, dim) -> Cost:
    elems = tokens * dim
    return Cost(vector_flops=4 * elems, params=dim, weight_elems=dim, act_read_elems=elems,
                act_write_elems=elems, peak_act_elems=2 * elems)


@register("elementwise")
def elementwise(elems, fn="add", n_inputs=1) -> Cost:
    """``fn`` over ``elems`` outputs reading ``n_inputs`` tensors of that size."""
    return Cost(vector_flops=ACTIVATION_FLOPS[fn] * elems, act_read_elems=n_inputs * elems,
                act_write_elems=elems, peak_act_elems=(n_inputs + 1) * elems)


@register("bmm")
def bmm(batch, m, k, n) -> Cost:
    """``[batch, m, k] @ [batch, k, n]``."""
    a, b, out = batch * m * k, batch * k * n, batch * m * n
    return Cost(mm_macs=batch * m * k * n, act_read_elems=a + b, act_write_elems=out,
                peak_act_elems=a + b + out)


@register("softmax")
def softmax(elems) -> Cost:
    return Cost(vector_flops=5 * elems, act_read_elems=elems, act_write_elems=elems,
                peak_act_elems=2 * elems)


@register("einsum")
def einsum(out_elems, contracted, operand_elems) -> Cost:
    """A two-operand einsum writing ``out_elems`` with ``contracted`` MACs per output element.

    NB: torch lowers it to bmm (exact MACs); fvcore rounds it (see ``fvcore_einsum``).
    """
    macs = out_elems * contracted
    rounded = _sig4_halved(2 * macs) if isinstance(macs, int) else fvcore_einsum(macs)
    return Cost(einsum_macs=macs, einsum_fvcore=rounded,
                act_read_elems=operand_elems, act_write_elems=out_elems,
                peak_act_elems=operand_elems + out_elems)


@register("moe_linear")
def moe_linear(tokens, d_in, d_out, experts, experts_read) -> Cost:
    """One projection of ``experts`` expert MLPs, ``tokens`` routed rows in all (no bias).

    ``experts_read`` experts have their weights read (those that received a row).
    """
    return Cost(mm_macs=tokens * d_in * d_out, params=experts * d_in * d_out,
                weight_elems=experts_read * d_in * d_out, act_read_elems=tokens * d_in,
                act_write_elems=tokens * d_out, peak_act_elems=tokens * (d_in + d_out))


@register("attention")
def attention(batch_heads, s_q, s_k, d, materialise_scores=True) -> Cost:
    """Unfused attention ``softmax(QK^T/sqrt(d) + mask) V`` (counters see two bmm).

    K and V are read from the KV cache. ``materialise_scores=False`` models a flash kernel:
    same MACs, scores never leave the chip.
    NB: the full ``s_q x s_k`` rectangle is computed (no causal skipping), as the vendor does.
    NB: materialised scores cost 3 writes and 3 reads (QK^T, mask add, softmax, PV).
    """
    scores = batch_heads * s_q * s_k
    q_or_out = batch_heads * s_q * d
    kv = 2 * batch_heads * s_k * d
    io = 3 * scores if materialise_scores else 0
    return Cost(mm_macs=2 * scores * d, vector_flops=7 * scores,  # scale, mask add, softmax
                act_read_elems=q_or_out + io, act_write_elems=q_or_out + io, kv_read_elems=kv,
                peak_act_elems=2 * q_or_out + kv + (scores if materialise_scores else 0))


@register("sdpa")
def sdpa(batch_heads, s_q, s_k, d_qk, d_v, mask_elems=0) -> Cost:
    """Fused attention ``softmax(QK^T/sqrt(d) + mask) V``; scores are never written to memory."""
    q, k, v, out = (batch_heads * s_q * d_qk, batch_heads * s_k * d_qk,
                    batch_heads * s_k * d_v, batch_heads * s_q * d_v)
    scores = batch_heads * s_q * s_k
    return Cost(sdpa_macs=scores * (d_qk + d_v), vector_flops=6 * scores,  # scale + softmax
                act_read_elems=q + k + v + mask_elems, act_write_elems=out,
                peak_act_elems=q + k + v + mask_elems + out)


@register("kv_append")
def kv_append(tokens, dim) -> Cost:
    """Write new keys and values (``tokens x dim`` each) into the KV cache."""
    return Cost(act_read_elems=2 * tokens * dim, kv_write_elems=2 * tokens * dim,
                peak_act_elems=2 * tokens * dim)


@register("embedding")
def embedding(tokens, vocab, dim) -> Cost:
    """Row gather: reads one table row per token."""
    return Cost(params=vocab * dim, weight_elems=tokens * dim, act_write_elems=tokens * dim,
                peak_act_elems=tokens * dim)


@register("parameter")
def parameter(elems) -> Cost:
    """Parameters that no counted op reads (e.g. a learned separator vector)."""
    return Cost(params=elems)


_POW10 = None


def fvcore_einsum_numpy(macs):
    """Vectorised :class:`fvcore_einsum` on int64 arrays, integer arithmetic only."""
    import numpy as np

    global _POW10
    if _POW10 is None:
        _POW10 = np.array([10 ** k for k in range(19)], dtype=np.int64)
    flop = 2 * np.asarray(macs, dtype=np.int64)
    digits = np.searchsorted(_POW10, flop, side="right")  # number of decimal digits
    q = _POW10[np.maximum(digits - 4, 0)]
    m, r = np.divmod(flop, q)
    m = m + ((2 * r > q) | ((2 * r == q) & (m % 2 == 1)))
    return np.where(flop < 10_000, flop // 2, (m * q) // 2)
