"""Primitive op formulas: small pure functions of shapes, each registered once under its kind.

Every formula returns a :class:`Cost`. Shapes are element counts (ints or SymPy expressions);
bytes follow the precision the tree is built in (:func:`symcost.dtypes.current`).

NB: vector FLOPs (our own convention, used by the ``symcost`` counting convention only):
add/mul 1 per element, layer norm 5 (as fvcore), RMS norm 4, softmax 5 (max, sub, exp, sum,
div), exact GELU 8, SiLU 4, quick-GELU 4, RoPE 3 (x*cos + rot(x)*sin); bias adds are 1 per
output element.
NB: traffic: a kernel reads its inputs and weights and writes its outputs once each (no cache
reuse across kernels). An op that runs as several kernels (an eager norm, eager attention)
counts the reads and writes of its intermediates.
NB: liveness: ``peak_bytes`` is what the op allocates at its busiest moment (its output
included), ``out_bytes`` what it leaves for the next op.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from .checks import shown
from .cost import Cost, Count
from .dtypes import FP32_BYTES, current
from .errors import SymcostError

__all__ = ["OPS", "register", "fvcore_einsum", "expected_distinct", "ACTIVATION_FLOPS", "get_op"]

OPS: dict[str, Callable[..., Cost]] = {}

ACTIVATION_FLOPS = {"gelu": 8, "silu": 4, "quick_gelu": 4, "add": 1, "mul": 1, "rope": 3, "copy": 0}


def register(kind: str):
    """Register a formula under ``kind`` (one formula per kind)."""

    def deco(fn):
        if kind in OPS:
            raise ValueError(f"op kind {kind!r} registered twice")
        OPS[kind] = fn
        return fn

    return deco


def get_op(kind: str) -> Callable[..., Cost]:
    if kind not in OPS:
        raise SymcostError(f"op kind: {shown(kind)} is not one of {', '.join(sorted(OPS))}")
    return OPS[kind]


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


def expected_distinct_value(draws: int, population: int, per_draw: int) -> int:
    """``round(population * (1 - (1 - per_draw/population) ** draws))`` in IEEE doubles."""
    return int(round(population * (1.0 - (1.0 - per_draw / population) ** draws)))


class expected_distinct(sp.Function):
    """Expected distinct items when ``draws`` times ``per_draw`` of ``population`` are picked
    uniformly (without replacement within a draw), rounded to an integer.

    NB: evaluated in IEEE doubles (the same expression in Python and NumPy), so the compiled
    value equals the SymPy one exactly.
    """

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, draws, population, per_draw):
        if draws.is_Integer and population.is_Integer and per_draw.is_Integer:
            return sp.Integer(expected_distinct_value(int(draws), int(population), int(per_draw)))
        return None


def _out(elems: Count, bytes_per: int) -> dict:
    """An op that allocates only its output."""
    return {"out_bytes": elems * bytes_per, "peak_bytes": elems * bytes_per}


@register("linear")
def linear(tokens, d_in, d_out, bias=True, tied=False) -> Cost:
    """``y = x W^T (+ b)`` on ``tokens`` rows; ``tied``: the weight is owned elsewhere (params 0)."""
    p = current()
    weights = d_in * d_out + (d_out if bias else 0)
    return Cost(
        mm_macs=tokens * d_in * d_out,
        vector_flops=tokens * d_out if bias else 0,
        params=0 if tied else weights,
        weight_read_bytes=weights * p.weight,
        act_read_bytes=tokens * d_in * p.act,
        act_write_bytes=tokens * d_out * p.act,
        kernels=1,
        **_out(tokens * d_out, p.act),
    )


@register("conv2d")
def conv2d(batch, c_in, c_out, kernel, in_hw, out_hw, bias=False) -> Cost:
    """Square conv, ``in_hw``/``out_hw`` the input/output side; no groups, no dilation."""
    p = current()
    weights = c_out * c_in * kernel * kernel + (c_out if bias else 0)
    out = batch * out_hw * out_hw * c_out
    return Cost(
        conv_macs=out * c_in * kernel * kernel,
        vector_flops=out if bias else 0,
        params=weights,
        weight_read_bytes=weights * p.weight,
        act_read_bytes=batch * in_hw * in_hw * c_in * p.act,
        act_write_bytes=out * p.act,
        kernels=1,
        **_out(out, p.act),
    )


@register("layer_norm")
def layer_norm(tokens, dim, aten=True) -> Cost:
    """LayerNorm with affine. ``aten=False``: hand-written from elementwise ops (which counters
    miss): mean, x-u, pow, mean, x-u, +eps, sqrt, div, *w, +b: 10 kernels, two full-size
    temporaries live at once."""
    p = current()
    e = tokens * dim
    if aten:
        return Cost(
            ln_elems=e,
            vector_flops=5 * e,
            params=2 * dim,
            weight_read_bytes=2 * dim * p.weight,
            act_read_bytes=e * p.act,
            act_write_bytes=e * p.act,
            kernels=1,
            **_out(e, p.act),
        )
    return Cost(
        vector_flops=5 * e,
        params=2 * dim,
        weight_read_bytes=2 * dim * p.weight,
        act_read_bytes=8 * e * p.act,
        act_write_bytes=5 * e * p.act,
        kernels=10,
        out_bytes=e * p.act,
        peak_bytes=2 * e * p.act,
    )


@register("rms_norm")
def rms_norm(tokens, dim, fused=False) -> Cost:
    """RMSNorm computed in fp32. Eager (HF): x.float(), pow, mean, +eps, rsqrt, mul, cast back,
    *w: 8 kernels (6 when activations are fp32 and the casts are no-ops), two fp32 temporaries
    live at once. ``fused``: one kernel reading x and writing y."""
    p = current()
    e = tokens * dim
    if fused:
        return Cost(
            vector_flops=4 * e,
            params=dim,
            weight_read_bytes=dim * p.weight,
            act_read_bytes=e * p.act,
            act_write_bytes=e * p.act,
            kernels=1,
            **_out(e, p.act),
        )
    casts = 2 * p.act * e if p.act != FP32_BYTES else 0
    return Cost(
        vector_flops=4 * e,
        params=dim,
        weight_read_bytes=dim * p.weight,
        act_read_bytes=4 * FP32_BYTES * e + casts,
        act_write_bytes=3 * FP32_BYTES * e + casts,
        kernels=6 + (2 if casts else 0),
        out_bytes=e * p.act,
        peak_bytes=2 * FP32_BYTES * e,
    )


@register("elementwise")
def elementwise(elems, fn="add", n_inputs=1) -> Cost:
    """``fn`` over ``elems`` outputs reading ``n_inputs`` tensors of that size (one kernel)."""
    p = current()
    return Cost(
        vector_flops=ACTIVATION_FLOPS[fn] * elems,
        act_read_bytes=n_inputs * elems * p.act,
        act_write_bytes=elems * p.act,
        kernels=1,
        **_out(elems, p.act),
    )


@register("cast")
def cast(elems, to_bytes=FP32_BYTES) -> Cost:
    """A dtype copy (``x.float()``); a no-op costing nothing when ``x`` already has that size."""
    p = current()
    if p.act == to_bytes:
        return Cost()
    return Cost(
        act_read_bytes=elems * p.act, act_write_bytes=elems * to_bytes, kernels=1, **_out(elems, to_bytes)
    )


@register("bmm")
def bmm(batch, m, k, n, n_total=None) -> Cost:
    """``[batch, m, k] @ [batch, k, n]``; ``n_total``: a ragged batch's sum of ``n`` over its
    ``batch`` products (default ``batch * n``; ``n`` is then unused)."""
    p = current()
    cols = batch * n if n_total is None else n_total
    return Cost(
        mm_macs=m * k * cols,
        act_read_bytes=(batch * m * k + k * cols) * p.act,
        act_write_bytes=m * cols * p.act,
        kernels=1,
        **_out(m * cols, p.act),
    )


@register("softmax")
def softmax(elems) -> Cost:
    p = current()
    return Cost(
        vector_flops=5 * elems,
        act_read_bytes=elems * p.act,
        act_write_bytes=elems * p.act,
        kernels=1,
        **_out(elems, p.act),
    )


@register("einsum")
def einsum(out_elems, contracted, operand_elems) -> Cost:
    """A two-operand einsum writing ``out_elems`` with ``contracted`` MACs per output element.

    NB: torch lowers it to bmm (exact MACs); fvcore rounds it (see ``fvcore_einsum``).
    """
    p = current()
    macs = out_elems * contracted
    rounded = _sig4_halved(2 * macs) if isinstance(macs, int) else fvcore_einsum(macs)
    return Cost(
        einsum_macs=macs,
        einsum_fvcore=rounded,
        act_read_bytes=operand_elems * p.act,
        act_write_bytes=out_elems * p.act,
        kernels=1,
        **_out(out_elems, p.act),
    )


@register("moe_linear")
def moe_linear(tokens, d_in, d_out, experts, experts_read) -> Cost:
    """One projection of ``experts`` expert MLPs, ``tokens`` routed rows in all (no bias).

    ``experts_read`` experts have their weights read (those that received a row), one kernel
    each.
    """
    p = current()
    return Cost(
        mm_macs=tokens * d_in * d_out,
        params=experts * d_in * d_out,
        weight_read_bytes=experts_read * d_in * d_out * p.weight,
        act_read_bytes=tokens * d_in * p.act,
        act_write_bytes=tokens * d_out * p.act,
        kernels=experts_read,
        **_out(tokens * d_out, p.act),
    )


@register("attention")
def attention(heads, kv_heads, queries, pairs, keys, d, fused=False) -> Cost:
    """Decoder attention ``softmax(QK^T/sqrt(d) + mask) V`` over a batch of sequences, each with
    its own new tokens and keys (cached + new), in aggregates: ``queries`` new tokens in all,
    ``pairs`` = sum over sequences of new tokens x keys (score entries per head), ``keys`` = sum
    of keys. ``b`` sequences of ``s_q`` queries over ``s_k`` keys each: ``queries = b*s_q``,
    ``pairs = b*s_q*s_k``, ``keys = b*s_k`` (a ragged batch is what a varlen kernel runs).

    Eager (HF): QK^T, /sqrt(d), +mask, softmax to fp32, cast back, PV: 6 kernels, each reading
    and writing the ``[batch, heads, s_q, s_k]`` scores; with GQA (kv_heads < heads) K and V are
    first expanded to every head (2 copies). ``fused`` (SDPA, flash): one kernel, scores never
    leave the chip, and FLOP counters see an SDPA op rather than two matmuls.
    NB: the full ``s_q x s_k`` rectangle is computed (no causal skipping), as eager code does.
    """
    p = current()
    scores = heads * pairs
    q_or_out = heads * queries * d
    cached = 2 * kv_heads * keys * d
    # eager, bytes per score element: 4 kernels write (and 4 read) it at the activation dtype,
    # the softmax writes (and the cast reads) it in fp32; the mask is read once per sequence
    per_score = 0 if fused else 4 * p.act + FP32_BYTES
    mask = 0 if fused else pairs * p.act
    gqa = kv_heads != heads and not fused
    expand = 2 * heads * keys * d * p.act if gqa else 0
    macs = 2 * scores * d
    return Cost(
        mm_macs=0 if fused else macs,
        sdpa_macs=macs if fused else 0,
        vector_flops=7 * scores,  # scale, mask add, softmax
        act_read_bytes=q_or_out * p.act + per_score * scores + mask + expand,
        act_write_bytes=q_or_out * p.act + per_score * scores + expand,
        kv_read_bytes=cached * p.kv,
        kernels=1 if fused else 6 + (2 if gqa else 0),
        out_bytes=q_or_out * p.act,
        peak_bytes=q_or_out * p.act + (0 if fused else (p.act + FP32_BYTES) * scores) + expand,
    )


@register("sdpa")
def sdpa(batch_heads, s_q, s_k, d_qk, d_v, mask_elems=0) -> Cost:
    """Fused attention ``softmax(QK^T/sqrt(d) + mask) V`` on activations; scores never written."""
    p = current()
    q, k, v, out = (
        batch_heads * s_q * d_qk,
        batch_heads * s_k * d_qk,
        batch_heads * s_k * d_v,
        batch_heads * s_q * d_v,
    )
    scores = batch_heads * s_q * s_k
    return Cost(
        sdpa_macs=scores * (d_qk + d_v),
        vector_flops=6 * scores,  # scale + softmax
        act_read_bytes=(q + k + v + mask_elems) * p.act,
        act_write_bytes=out * p.act,
        kernels=1,
        **_out(out, p.act),
    )


@register("kv_cache")
def kv_cache(kv_heads, d, new, cached, concat=True) -> Cost:
    """Store ``new`` keys and values next to ``cached`` ones for one layer, both summed over the
    batch's sequences (``b`` sequences of ``s`` new tokens after ``L`` cached: ``new = b*s``,
    ``cached = b*L``).

    ``concat`` (HF DynamicCache): K and V are each replaced by ``cat([old, new])``: reads the
    old cache, writes all of it again, and holds a second copy of one tensor while it copies.
    Otherwise (paged): the new rows are written in place.
    """
    p = current()
    row = kv_heads * d  # one token of K (or V)
    grown = 2 * new * row * p.kv
    if not concat:
        return Cost(
            act_read_bytes=2 * new * row * p.act,
            kv_write_bytes=grown,
            kernels=1,
            peak_bytes=grown,
            retained_bytes=grown,
        )
    return Cost(
        act_read_bytes=2 * new * row * p.act,
        kv_read_bytes=2 * cached * row * p.kv,
        kv_write_bytes=2 * (cached + new) * row * p.kv,
        kernels=2,
        peak_bytes=(cached + 2 * new) * row * p.kv,
        retained_bytes=grown,
    )


@register("embedding")
def embedding(tokens, vocab, dim) -> Cost:
    """Row gather: reads one table row per token."""
    p = current()
    return Cost(
        params=vocab * dim,
        weight_read_bytes=tokens * dim * p.weight,
        act_write_bytes=tokens * dim * p.act,
        kernels=1,
        **_out(tokens * dim, p.act),
    )


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
        _POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
    flop = 2 * np.asarray(macs, dtype=np.int64)
    digits = np.searchsorted(_POW10, flop, side="right")  # number of decimal digits
    q = _POW10[np.maximum(digits - 4, 0)]
    m, r = np.divmod(flop, q)
    m = m + ((2 * r > q) | ((2 * r == q) & (m % 2 == 1)))
    return np.where(flop < 10_000, flop // 2, (m * q) // 2)


def expected_distinct_numpy(draws, population, per_draw):
    """Vectorised :class:`expected_distinct`: Python floats per distinct argument triple, so the
    value is bit for bit the SymPy one (NumPy's vectorised ``pow`` may differ in the last ulp)."""
    import numpy as np

    args = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (draws, population, per_draw)))
    if np.ndim(population) == 0 and np.ndim(per_draw) == 0:  # the usual case: one 1-D unique
        keys, inverse = np.unique(args[0].reshape(-1), return_inverse=True)
        pop, k = int(population), int(per_draw)
        values = np.array([expected_distinct_value(int(d), pop, k) for d in keys], dtype=np.int64)
    else:
        stacked = np.stack([a.reshape(-1) for a in args], axis=1)
        triples, inverse = np.unique(stacked, axis=0, return_inverse=True)
        values = np.array([expected_distinct_value(*map(int, t)) for t in triples], dtype=np.int64)
    return values[inverse.reshape(-1)].reshape(args[0].shape)
