"""FLOP expressions traced symbolically from the reference modules, checked against the hand derivations.

A module runs once under ``FakeTensorMode`` with a ``ShapeEnv`` and inputs whose chosen dimensions are
symbolic (SymInt), inside ``FlopCounterMode`` with the "torch" counter's SDPA handling (see
validation.measure). The counter's total is then a SymInt whose SymPy expression (in ShapeEnv symbols
``s0, s1 ...``) is renamed to our symbols and compared with ``symcost.conventions.flops(cost, "torch")``
of the hand derivation. The trace is only valid where the guards the ShapeEnv recorded hold; they are
returned with the expression.

NB: torch is imported lazily. Parameters stay on the meta device; they are handed to the module as fake
    CPU tensors (swapped in for the call, then restored), inputs are fake CPU tensors: nothing is allocated
    but the small hint-sized input tensors used to make them.
NB: ``enable_python_dispatcher()`` is needed: without it ``F.pad`` (SAM windows) and ``F.interpolate``
    (SAM rel-pos table, CLIP position table) reach C++ CompositeImplicit/Explicit kernels that reject
    symbolic sizes ("SymIntArrayRef expected to contain only concrete integers").
NB: the ShapeEnv specialises sizes 0 and 1 and duck-sizes dynamic dims with equal hints into one symbol,
    so every symbol gets its own hint >= 2 and the region always has ``symbol >= 2``.
NB: SAM's ``get_rel_pos`` computes ``int(2 * max(q_size, k_size) - 1)``: ``int()`` of a SymInt guards
    ``Eq(2*g - 1, <hint>)`` and specialises g. ``sam_global_block`` traces it with ``_symint_get_rel_pos``
    bound on the attention instance (the same code without ``int()``, which is a no-op on ints); the
    unpatched trace is kept (``patched=False``) to show the specialisation and to check the copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from validation import ValidationError

__all__ = [
    "Trace",
    "trace",
    "traced_flops",
    "to_sympy",
    "clip_layer",
    "clip_full",
    "decoder_layers",
    "sam_global_block",
    "sam_windowed_block",
    "by_residue",
    "equal",
    "S",
    "B",
    "n",
    "g",
    "L",
]

# Our symbols (B and L are symcost's own).
from derivations.common.vlm import B, L  # noqa: E402

S = sp.Symbol("S", integer=True, positive=True)  # new tokens in one decoder forward
n = sp.Symbol("n", integer=True, positive=True)  # CLIP token count per view (1 + grid^2)
g = sp.Symbol("g", integer=True, positive=True)  # token grid side (SAM map / CLIP grid)


class SymbolicTraceError(ValidationError):
    """A symbolic dimension was specialised to a constant (or traced to something else)."""


@dataclass
class Trace:
    total: sp.Expr  # FLOPs of the whole call, in our symbols
    by_module: dict[str, sp.Expr]  # inclusive FLOPs per module path (root is "")
    guards: list[sp.Basic]  # ShapeEnv guards, in our symbols (deduplicated)
    guard_code: list[str]  # produce_guards() output (sizes as L['x0'].size()[i])
    ranges: dict[sp.Symbol, tuple]  # (lower, upper) of our symbols; upper sp.oo if unbounded
    specialized: dict[sp.Symbol, int] = field(default_factory=dict)  # symbols the trace fixed
    holds: Callable[[dict], bool] | None = None  # holds({symbol: int}) -> guards hold there


def to_sympy(expr, names=None):
    """Plain SymPy for a ShapeEnv expression: FloorDiv -> floor, PythonMod/Mod -> Mod, ...; renamed."""
    from torch.utils._sympy import functions as F

    names = names or {}
    binary = {
        F.FloorDiv: lambda a, b: sp.floor(a / b),
        F.CeilDiv: lambda a, b: sp.ceiling(a / b),
        F.CleanDiv: lambda a, b: a / b,
        F.IntTrueDiv: lambda a, b: a / b,
        F.FloatTrueDiv: lambda a, b: a / b,
        F.PythonMod: sp.Mod,
        F.Mod: sp.Mod,
        F.PowByNatural: lambda a, b: a**b,
    }

    def conv(e):
        if isinstance(e, sp.Symbol):
            return names.get(e, e)
        if not e.args:
            return e
        args = [conv(a) for a in e.args]
        for cls, fn in binary.items():
            if isinstance(e, cls):
                return fn(*args)
        if isinstance(e, F.Max):
            return sp.Max(*args)
        if isinstance(e, F.Min):
            return sp.Min(*args)
        if isinstance(e, (F.TruncToInt, F.FloorToInt)):
            return sp.floor(args[0])
        if isinstance(e, F.CeilToInt):
            return sp.ceiling(args[0])
        if isinstance(e, F.ToFloat):
            return args[0]
        return e.func(*args)

    return conv(sp.sympify(expr))


def _fake_state(module, fake_mode):
    """Parameters and buffers of ``module`` as fake CPU tensors (meta ones converted, not copied)."""
    import torch

    cpu = torch.device("cpu")
    conv = fake_mode.fake_tensor_converter
    state = {}
    for name, t in [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]:
        if t.is_meta:
            state[name] = conv.from_meta_and_device(fake_mode, t, cpu)
        else:
            state[name] = fake_mode.from_tensor(t, static_shapes=True)
    return state


def _expr(x):
    return x.node.expr if hasattr(x, "node") else sp.Integer(int(x))


def trace(module, input_shapes, dynamic_dims, *, call=None) -> Trace:
    """Run ``module`` once on fake inputs of ``input_shapes`` (hint sizes) under FlopCounterMode.

    ``dynamic_dims``: ``{(input index, dim): our Symbol}``; those dims become SymInts (a symbol used
    twice must have the same hint, distinct symbols distinct hints, all >= 2). ``call(module, *inputs)``
    runs the module (default ``module(*inputs)``); it runs inside the fake and counting modes.
    Raises :class:`SymbolicTraceError` if a dynamic dim got specialised to a constant.
    """
    t, _ = _run(module, input_shapes, dynamic_dims, call)
    if t.specialized:
        raise SymbolicTraceError(f"symbols specialised by the trace: {t.specialized}; guards: {t.guards}")
    return t


_TRACES = 0


def _run(module, input_shapes, dynamic_dims, call):
    """NB: ShapeEnv names a symbol after its source, and some of torch's SymPy caches are global:
    two traces with the same source names (hence symbols) in one process gave the second one a
    different (wrong) guard set. Every trace therefore gets fresh source names."""
    import torch
    from torch._dispatch.python import enable_python_dispatcher
    from torch._dynamo.source import LocalSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
    from torch.utils._sympy.numbers import int_oo
    from torch.utils.flop_counter import FlopCounterMode

    from validation.measure import _cpu_sdpa_on_meta, torch_formulas

    hints = {}
    for (i, d), sym in dynamic_dims.items():
        h = input_shapes[i][d]
        if hints.setdefault(sym, h) != h or h < 2:
            raise ValidationError(f"symbol {sym}: hints must agree and be >= 2, got {h} and {hints[sym]}")
    if len(set(hints.values())) != len(hints):
        raise ValidationError(f"distinct symbols need distinct hints (duck sizing merges them): {hints}")

    global _TRACES
    _TRACES += 1
    tag = _TRACES  # fresh source names, hence fresh ShapeEnv symbol names (see _run's NB)
    env = ShapeEnv()
    fake_mode = FakeTensorMode(shape_env=env)
    inputs, sources = [], []
    for i, shape in enumerate(input_shapes):
        dyn = [DimDynamic.DUCK if (i, d) in dynamic_dims else DimDynamic.STATIC for d in range(len(shape))]
        source = LocalSource(f"x{i}_trace{tag}")
        inputs.append(
            fake_mode.from_tensor(
                torch.empty(*shape),
                source=source,
                symbolic_context=StatelessSymbolicContext(dynamic_sizes=dyn),
            )
        )
        sources.append(source)
    names = {}
    for (i, d), sym in dynamic_dims.items():
        names[_expr(inputs[i].shape[d])] = sym

    state = _fake_state(module, fake_mode)
    counter = FlopCounterMode(display=False, custom_mapping=torch_formulas())

    with fake_mode, enable_python_dispatcher(), torch.no_grad(), counter, _cpu_sdpa_on_meta():
        with _swapped(module, state), _quiet():
            call(module, *inputs) if call is not None else module(*inputs)

    root = type(module).__name__
    by_module = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        path = name.removeprefix(root).removeprefix(".")
        by_module[path] = to_sympy(sum((_expr(v) for v in ops.values()), sp.Integer(0)), names)
    total = to_sympy(_expr(counter.get_total_flops()), names)

    specialized = {}
    for s_env, sym in names.items():
        value = env.replacements.get(s_env) if isinstance(s_env, sp.Symbol) else s_env
        if value is not None and getattr(value, "is_Integer", False):
            specialized[sym] = int(value)
    guards, seen = [], set()
    for gd in env.guards:
        e = to_sympy(gd.expr, names)
        if e not in seen:
            seen.add(e)
            guards.append(e)
    ranges = {}
    for s_env, sym in names.items():
        vr = env.var_to_range.get(s_env)
        if vr is not None:
            lo, hi = vr.lower, vr.upper
            ranges[sym] = (lo if lo in (-int_oo,) else int(lo), sp.oo if hi == int_oo else int(hi))
    try:
        code = env.produce_guards(inputs, sources)
    except Exception as exc:  # report, don't hide: produce_guards can reject specialised inputs
        code = [f"<produce_guards failed: {exc!r}>"]

    # Region test: every guard the ShapeEnv recorded, evaluated exactly by SymPy at given values
    env_guards = [gd.expr for gd in env.guards]
    env_symbol = {sym: s_env for s_env, sym in names.items()}

    def holds(values):
        """Do all the trace's guards hold at these integer values of our symbols?"""
        at = {env_symbol[sym]: sp.Integer(int(v)) for sym, v in values.items()}
        return all(bool(g.xreplace(at)) for g in env_guards)

    return Trace(total, by_module, guards, code, ranges, specialized, holds), inputs


class _quiet:
    """Silence torch's structured-trace and ShapeEnv loggers during a trace.

    NB: under pytest's log capture (root at DEBUG) every guard is logged with a stack summary,
    which doubles the time of the SAM windowed trace.
    """

    NAMES = ("torch.__trace", "torch.fx.experimental.symbolic_shapes", "torch._subclasses.fake_tensor")

    def __enter__(self):
        import logging

        self.saved = [(lg, lg.level) for lg in map(logging.getLogger, self.NAMES)]
        for lg, _ in self.saved:
            lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for lg, level in self.saved:
            lg.setLevel(level)
        return False


class _swapped:
    """Temporarily replace ``module``'s parameters and buffers by the fake ``state`` tensors."""

    def __init__(self, module, state):
        self.module, self.state, self.saved = module, state, []

    def __enter__(self):
        for name, t in self.state.items():
            owner, _, leaf = name.rpartition(".")
            mod = self.module.get_submodule(owner) if owner else self.module
            kind = "_parameters" if leaf in mod._parameters else "_buffers"
            self.saved.append((mod, kind, leaf, getattr(mod, kind)[leaf]))
            getattr(mod, kind)[leaf] = t
        return self

    def __exit__(self, *exc):
        for mod, kind, leaf, t in reversed(self.saved):
            getattr(mod, kind)[leaf] = t
        return False


def traced_flops(module, input_shapes, dynamic_dims, *, call=None):
    """``(total FLOPs as a SymPy expression in our symbols, guards)`` of one call of ``module``."""
    t = trace(module, input_shapes, dynamic_dims, call=call)
    return t.total, t.guards


# --- hand derivations as expressions --------------------------------------------------------------


def _torch(node, divide=1):
    from symcost.conventions import flops

    return sp.expand(flops(node.cost, "torch") / divide)


# --- covered submodules ---------------------------------------------------------------------------

_VISION = None
_LM = None


def _vision():
    global _VISION
    if _VISION is None:
        from validation.reference_model import build_vision

        _VISION = build_vision("meta")
    return _VISION


def _language_model():
    global _LM
    if _LM is None:
        from validation.reference_model import build_language_model

        _LM = build_language_model("meta")
    return _LM


def clip_layer(batch_hint=3, n_hint=37):
    """One CLIPEncoderLayer on [B, n, 1024]; hand: clip(B, g4) "layers" / 24 with g4 = sqrt(n - 1).

    The hand tree takes the grid g4 (n = g4^2 + 1) and is polynomial in g4^2, so substituting
    g4 = sqrt(n - 1) gives it exactly as a polynomial in n.
    """
    from derivations.deepseek_ocr import VISION
    from derivations.deepseek_ocr.vision import clip

    layer = _vision().clip.encoder.layers[0]
    t = trace(layer, [(batch_hint, n_hint, 1024)], {(0, 0): B, (0, 1): n}, call=lambda m, x: m(x, None))
    g4 = sp.Symbol("g4", integer=True, positive=True)
    hand = sp.expand(_torch(clip(VISION.clip, B, g4).find("layers"), 24).subs(g4, sp.sqrt(n - 1)))
    return t.total, hand, t


def clip_full(batch_hint=3, g_hint=10):
    """Whole CLIP (class token, resized position table, pre-LN, 24 layers) on the SAM map [B,1024,g,g].

    Hand: clip(B, g) (every node; embeddings and norms count 0 under "torch"). The position table is
    resized only when g != 16: a hint != 16 traces that branch and guards Ne(g, 16).
    """
    from derivations.deepseek_ocr import VISION
    from derivations.deepseek_ocr.vision import clip

    t = trace(_vision().clip, [(batch_hint, 1024, g_hint, g_hint)], {(0, 0): B, (0, 2): g, (0, 3): g})
    return t.total, _torch(clip(VISION.clip, B, g)), t


def _symint_get_rel_pos(self, q_size, k_size, rel_pos):
    """transformers' DeepseekOcr2SamVisionAttention.get_rel_pos without ``int()`` (keeps SymInts)."""
    import torch
    import torch.nn.functional as F

    max_rel_dist = 2 * max(q_size, k_size) - 1
    rel_pos_resized = F.interpolate(
        rel_pos.reshape(1, rel_pos.shape[0], -1).transpose(1, 2), size=max_rel_dist, mode="linear"
    )
    rel_pos_resized = rel_pos_resized.reshape(-1, max_rel_dist).permute(1, 0)
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos_resized[relative_coords.long()]


def sam_global_block(g_hint=40, patched=True):
    """SAM global-attention block (layers[2]) on [1, g, g, 768]; hand: _block(windowed=False).

    ``patched=False`` runs the module as is; g is then specialised (see the module NB) and this returns
    the Trace with ``specialized`` set instead of raising.
    """
    import types

    from derivations.common.sam import _block
    from derivations.deepseek_ocr import VISION

    block = _vision().sam.layers[2]
    hand = _torch(_block(VISION.sam, "glob", 1, g, windowed=False, count=1))
    dims = {(0, 1): g, (0, 2): g}
    if not patched:
        t, _ = _run(block, [(1, g_hint, g_hint, 768)], dims, None)
        return t.total, hand, t
    block.attn.get_rel_pos = types.MethodType(_symint_get_rel_pos, block.attn)
    try:
        t = trace(block, [(1, g_hint, g_hint, 768)], dims)
    finally:
        del block.attn.get_rel_pos
    return t.total, hand, t


def sam_windowed_block(g_hint=40):
    """SAM windowed block (layers[0], 14x14 windows over the zero-padded map) on [1, g, g, 768].

    The trace carries the padding as ``Mod(14 - Mod(g, 14), 14)`` and floor divisions; the hand form
    has ``ceiling(g/14)``. ``by_residue`` proves them equal for each g mod 14.
    """
    from derivations.common.sam import _block
    from derivations.deepseek_ocr import VISION

    block = _vision().sam.layers[0]
    t = trace(block, [(1, g_hint, g_hint, 768)], {(0, 1): g, (0, 2): g})
    hand = _torch(_block(VISION.sam, "win", 1, g, windowed=True, count=1))
    return t.total, hand, t


def by_residue(a, b, var=g, m=14, q_min=0):
    """For each r in 0..m-1, is ``a - b`` identically 0 at var = m*q + r (q >= q_min integer)?"""
    q = sp.Symbol("q", integer=True, nonnegative=True)
    out = {}
    for r in range(m):
        at = {var: m * (q + q_min) + r}
        out[r] = sp.simplify(sp.expand(a.subs(at) - b.subs(at))) == 0
    return out


def decoder_layers(s_hint=37, past_hint=53, past=True, s_static=None):
    """The 12-layer LanguageModel traced once; returns {part: (traced, hand)} and the Trace.

    Input embeds [1, S, 1280] and, if ``past``, a DynamicCache of 12 x (K, V) [1, 10, L, 128], so
    K = S + L keys (prefill without cache: K = S). ``s_static=1`` traces a decode step (S fixed
    to 1, only L symbolic). Hand: decoder(1, S, K): layer0, moe_layers / 11 (compared with each of
    layers 1..11), lm_head and the whole decoder.
    """
    from derivations.common.decoder import decoder
    from derivations.deepseek_ocr import DECODER, VENDOR

    s_dim = s_static if s_static is not None else s_hint
    shapes = [(1, s_dim, 1280)]
    dims = {} if s_static is not None else {(0, 1): S}
    if past:
        from derivations.deepseek_ocr import DECODER as D

        shapes += [(1, D.kv_heads, past_hint, D.head_dim)] * (2 * D.layers)
        dims |= {(i, 2): L for i in range(1, 2 * D.layers + 1)}

    def call(model, embeds, *kv):
        if not kv:
            return model(embeds)
        from transformers import DynamicCache

        cache = DynamicCache()
        for i in range(12):
            cache.update(kv[2 * i], kv[2 * i + 1], i)
        return model(embeds, cache)

    t = trace(_language_model(), shapes, dims, call=call)
    s = S if s_static is None else sp.Integer(s_static)
    tree = decoder(DECODER, VENDOR, 1, s, L if past else 0)
    parts = {"layer0": (t.by_module["model.layers.0"], _torch(tree.find("layer0")))}
    moe = _torch(tree.find("moe_layers"), 11)
    for i in range(1, 12):
        parts[f"layer{i}"] = (t.by_module[f"model.layers.{i}"], moe)
    parts["lm_head"] = (t.by_module["lm_head"], _torch(tree.find("lm_head")))
    parts["total"] = (t.total, _torch(tree))
    return parts, t


def equal(a, b) -> bool:
    """SymPy proof of a == b (expand, then simplify the difference)."""
    d = sp.expand(a - b)
    return d == 0 or sp.simplify(d) == 0
