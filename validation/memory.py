"""Peak activation memory of DeepSeek-OCR v1 stages, measured on the reference modules (vendor code path).

Definition. The *activation peak* of a stage is the peak, over the run, of the live tensor-storage bytes
above what was live when the stage began. Parameters, buffers and tensors that existed before the run
(inputs, an input KV cache) are the baseline; a pre-existing storage that is freed during the run (the
4.46 ``DynamicCache`` replaces a layer's K by ``cat([K_old, k_new])``, dropping K_old) leaves the live
total, so the result can rise by only the growth plus transients.

Two meters, one run:
  ``LiveBytes``      a TorchDispatchMode. Every op output whose storage is not one of the op's inputs'
                     storages is a new allocation: its untyped storage (not the view) is keyed, its nbytes
                     added on first sight and subtracted by a weakref finalizer when the storage dies
                     (storages keep their PyObject alive as long as the StorageImpl lives, so the
                     finalizer fires at the real free). Parameters/buffers are never op outputs except
                     as views, which alias an input, so they are never counted. Pre-existing tensors
                     passed as ``preexisting`` are keyed up front (baseline) so that their frees count.
                     It sees tensors only: scratch that a kernel allocates internally (CPU flash
                     attention's per-thread buffers, oneDNN scratchpads) is invisible to it.
  ``AllocatorPeak``  the same quantity at the CPU allocator: torch.profiler's ``[memory]`` events (every
                     c10 CPU allocation, kernel scratch and oneDNN/ideep buffers included). The profiler
                     only reports frees of blocks allocated while it runs, so cases allocate their
                     pre-existing tensors inside the profiling session and the baseline is taken at the
                     stage start.

Runners (``VendorVision``, ``VendorDecoder``) follow the vendor's HF code (deepencoder.py,
modeling_deepseekv2.py, modeling_deepseekocr.py, transformers 4.46 LlamaAttention/DynamicCache/mask
converter) op by op and *lifetime by lifetime* (which Python locals keep which tensors alive), on the
weights of ``reference_model.build_vision`` / ``build_language_model`` (random, bf16, CPU, no_grad):

NB (vendor vs transformers 5.23 modules, memory-wise; each is what the runners do differently):
  SAM attention   vendor keeps ``rel_h``, ``rel_w`` (each ``B*nh*HW*k``) and the qkv Linear output alive
                  through SDPA (its ``qkv`` local is a view of it) next to the [3,B*nh,HW,64] copy; the
                  bias ``rel_h + rel_w`` is materialised [B,nh,HW,HW] in the activation dtype and passed
                  as ``attn_mask``. get_rel_pos interpolates (in fp32, then back) only when the table
                  length differs (global blocks at g != 64); transformers always interpolates, in bf16.
                  The transformers SDPA class otherwise runs the same op chain.
  SAM tail        vendor runs ``net_3(net_2(x).clone())``: one extra [B,512,g/2,g/2] copy.
  CLIP            vendor fuses qkv (one [B,N,3072] output, kept alive through SDPA by its local) where
                  transformers has three [B,N,1024]; its block keeps ``x``, the attention output and
                  ``h = x + attn`` alive through the MLP; the position table is looked up
                  (``Embedding(position_ids)``, a [1,257,1024] allocation) and resized in fp32 when
                  g/4 != 16; the embeddings and the pre-LN output stay alive through all 24 blocks.
  Decoder         per-layer RoPE (fp32 cos/sin [B,S,128] + bf16 copies); eager attention: scores
                  QK^T/sqrt(d) (two bf16 [B,10,S,K] transiently), + mask, softmax fp32 then ``.to(bf16)``
                  (bf16 + fp32 + bf16 live at once), PV; in prefill the cached V is a transposed view of
                  v_proj's output, so ``matmul`` copies it. 4.46 ``DynamicCache``: prefill stores k/v
                  without copying, decode concatenates (old layer K/V freed after the cat); transformers
                  5.23 always concatenates, so its prefill holds K and V twice during attention.
                  Mask: 4.46 ``_prepare_4d_causal_attention_mask`` from generate's 2-D ones mask
                  ([S,S] fp32 -> bf16, expanded/inverted/bool temporaries, final [B,1,S,S] bf16 kept
                  for the whole forward); _modules builds full().triu().
  MoE             vendor ``moe_infer``: fp32 router copies, ``cnts`` [N,64] int64, argsort, sorted
                  tokens [6N,H], per-expert SwiGLU outputs kept in a list, ``cat`` [6N,H], ``new_x``
                  [6N,H], fp32 weighted copy [N,6,H] and fp32 sum [N,H] (all alive together at the
                  end of moe_infer), then bf16; shared experts on top. transformers' experts (eager:
                  index_add_ loop; _modules: batched_mm, which gathers [6N,2I,H] weights) differ.
  lm_head         every position, then ``logits.float()``: bf16 and fp32 [B,S,V] live together.

NB: CUDA autocast (the vendor's ``infer`` wraps generate in ``autocast("cuda", bf16)``) is not emulated:
    it would make LayerNorm / LayerNorm2d's pow outputs fp32 (SAM/CLIP norm outputs twice as big, plus a
    bf16 cast before each Linear) and the router Linear bf16; none of these is at a stage peak.
NB: ``generate`` (4.46) post-processes the prefill logits as ``outputs.logits.clone()[:, -1, :].float()``
    (a full fp32 clone); case ``prefill_generate_*`` adds that step after the forward.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import re
import time
import weakref

from validation import ValidationError

HEAD_DIM = 128
N_HEADS = 10
TOP_K = 6
N_EXPERTS = 64
ROPE_THETA = 10000.0
RMS_EPS = 1e-6

_TAGS: list[str] = []  # scope labels of the running code, read by the trackers at allocation time


@contextlib.contextmanager
def scope(name: str):
    """Label allocations made inside (nested labels join with '/')."""
    _TAGS.append(name)
    try:
        yield
    finally:
        _TAGS.pop()


def _tag() -> str:
    return "/".join(_TAGS)


# --------------------------------------------------------------------------------------------------
# tensor-level live-storage tracker


@functools.cache
def _mode_class():
    from torch.utils._python_dispatch import TorchDispatchMode

    class _LiveBytesMode(TorchDispatchMode):
        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            self.owner._after_op(func, args, kwargs, out)
            return out

    return _LiveBytesMode


class LiveBytes:
    """Live tensor-storage bytes above the baseline, and its peak, while the ``with`` block runs.

    ``with LiveBytes(preexisting=[tensors]) as m: run()`` then ``m.peak_bytes``. ``preexisting`` tensors
    are registered at construction (the tracker keeps no reference to them), so drop your own
    references if the run is meant to free them. ``m.breakdown()`` lists what was live at the peak.
    """

    def __init__(self, preexisting=(), keep_events: bool = True):
        self.baseline_bytes = 0
        self.live_bytes = 0
        self.peak_bytes = 0
        self.n_allocs = 0
        self.peak_by_tag: dict[str, int] = {}
        self._tag_peak_event: dict[str, int] = {}
        self._live: dict[int, tuple[int, int]] = {}  # storage key -> (alloc id, nbytes)
        self._allocs: list[tuple] = []  # alloc id -> (nbytes at birth, shape, dtype, op, tag, preexisting)
        self._events: list[tuple[int, int]] = []  # (alloc id, +/- bytes)
        self._keep_events = keep_events
        self._peak_event = 0
        self._finalizers: list = []
        self._mode = None
        self._active = True
        for t in preexisting:
            self._register(t, "<preexisting>", preexisting=True)
        self.baseline_bytes = self.live_bytes
        self.peak_bytes = 0
        self.peak_by_tag = {}
        self._tag_peak_event = {}
        self._peak_event = len(self._events)

    # -- bookkeeping -------------------------------------------------------------------------------
    def _register(self, t, op: str, preexisting: bool = False):
        st = t.untyped_storage()
        key = st._cdata
        if key in self._live:
            return
        nbytes = st.nbytes()
        aid = len(self._allocs)
        dtype = str(t.dtype).replace("torch.", "")
        self._allocs.append((nbytes, tuple(t.shape), dtype, op, _tag(), preexisting))
        self._live[key] = (aid, nbytes)
        self._finalizers.append(weakref.finalize(st, self._on_free, key))
        if not preexisting:
            self.n_allocs += 1
        self._change(aid, nbytes)

    def _change(self, aid: int, delta: int):
        self.live_bytes += delta
        if self._keep_events:
            self._events.append((aid, delta))
        above = self.live_bytes - self.baseline_bytes
        if delta > 0:
            tag = _tag()
            if above > self.peak_by_tag.get(tag, -1):
                self.peak_by_tag[tag] = above
                self._tag_peak_event[tag] = len(self._events)
        if above > self.peak_bytes:
            self.peak_bytes = above
            self._peak_event = len(self._events)

    def _on_free(self, key: int):
        if not self._active:
            return
        rec = self._live.pop(key, None)
        if rec is not None:
            self._change(rec[0], -rec[1])

    def _after_op(self, func, args, kwargs, out):
        import torch
        from torch.utils._pytree import tree_flatten

        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:
            return
        inputs = {
            t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        fresh = func.overloadpacket is torch.ops.aten.lift_fresh  # torch.tensor(data): a new storage
        for t in outs:
            try:
                st = t.untyped_storage()
            except (RuntimeError, NotImplementedError):
                continue
            key = st._cdata
            rec = self._live.get(key)
            if rec is not None:  # in-place / out= op on a tracked storage: follow a resize
                nbytes = st.nbytes()
                if nbytes != rec[1]:
                    self._live[key] = (rec[0], nbytes)
                    self._change(rec[0], nbytes - rec[1])
                continue
            if key in inputs and not fresh:  # a view or in-place result of an input (params included)
                continue
            self._register(t, str(func))

    # -- context -----------------------------------------------------------------------------------
    def __enter__(self):
        self._mode = _mode_class()(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self._mode = None
        self.final_bytes = self.live_bytes - self.baseline_bytes
        # Storages still alive (e.g. the returned logits) keep their records; later frees are ignored.
        self._active = False
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()
        return False

    # -- results -----------------------------------------------------------------------------------
    def _live_at(self, tag: str | None) -> dict[int, int]:
        if not self._keep_events:
            raise ValidationError("LiveBytes(keep_events=False) keeps no history")
        end = self._peak_event if tag is None else self._tag_peak_event[tag]
        live: dict[int, int] = {}
        for aid, delta in self._events[:end]:
            live[aid] = live.get(aid, 0) + delta
            if delta < 0 and live[aid] == 0:
                del live[aid]
        return live

    def live_at_peak(self, tag: str | None = None) -> list[dict]:
        """Every storage live at the peak (or at ``tag``'s local peak), pre-existing ones included."""
        rows = []
        for aid, nbytes in self._live_at(tag).items():
            _, shape, dtype, op, atag, pre = self._allocs[aid]
            rows.append(
                {"bytes": nbytes, "shape": shape, "dtype": dtype, "op": op, "tag": atag, "preexisting": pre}
            )
        rows.sort(key=lambda r: -r["bytes"])
        return rows

    def breakdown(self, top: int = 12, tag: str | None = None) -> dict:
        """What is live at the peak (or at ``tag``'s local peak).

        ``top``: the largest new storages; ``groups``: storages grouped by (shape, dtype, op, tag with
        layer/block indices replaced by ``*``), with the pre-existing storages freed before that point
        as negative groups; ``by_tag`` / ``by_op``: sums of the new storages.
        """
        live = self._live_at(tag)
        rows = self.live_at_peak(tag)
        new = [r for r in rows if not r["preexisting"]]
        by_tag: dict[str, int] = {}
        by_op: dict[str, int] = {}
        groups: dict[tuple, list[int]] = {}
        for r in new:
            by_tag[r["tag"]] = by_tag.get(r["tag"], 0) + r["bytes"]
            by_op[r["op"]] = by_op.get(r["op"], 0) + r["bytes"]
            g = groups.setdefault((r["shape"], r["dtype"], r["op"], tag_pattern(r["tag"])), [0, 0])
            g[0] += 1
            g[1] += r["bytes"]
        freed = 0
        for aid, (nbytes, shape, dtype, _op, atag, pre) in enumerate(self._allocs):
            if pre and aid not in live:
                freed += nbytes
                g = groups.setdefault((shape, dtype, "<preexisting, freed>", tag_pattern(atag)), [0, 0])
                g[0] += 1
                g[1] -= nbytes
        group_rows = [
            {"count": c, "bytes": b, "shape": k[0], "dtype": k[1], "op": k[2], "tag": k[3]}
            for k, (c, b) in groups.items()
        ]
        group_rows.sort(key=lambda r: -abs(r["bytes"]))
        return {
            "peak_bytes": self.peak_bytes if tag is None else self.peak_by_tag[tag],
            "new_bytes": sum(r["bytes"] for r in new),
            "preexisting_freed_bytes": freed,
            "top": new[:top],
            "rest_bytes": sum(r["bytes"] for r in new[top:]),
            "rest_count": len(new[top:]),
            "groups": group_rows,
            "by_tag": dict(sorted(by_tag.items(), key=lambda kv: -kv[1])),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        }

    def peak_by_phase(self) -> dict[str, tuple[int, str]]:
        """{tag pattern: (largest local peak over the matching tags, the tag where it happened)}."""
        out: dict[str, tuple[int, str]] = {}
        for tag, value in self.peak_by_tag.items():
            pat = tag_pattern(tag)
            if value > out.get(pat, (-1, ""))[0]:
                out[pat] = (value, tag)
        return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))


def tag_pattern(tag: str) -> str:
    """'model/L3/attn' -> 'model/L*/attn', 'sam/b2/attn' -> 'sam/b*/attn'."""
    return re.sub(r"(^|/)(L|b)\d+(?=/|$)", r"\1\2*", tag)


# --------------------------------------------------------------------------------------------------
# allocator-level peak (kernel scratch included)

_STAGE = "symcost::memory_stage"


class AllocatorPeak:
    """Peak of CPU-allocator bytes inside ``with ap.stage():`` above the bytes live at its start.

    Enter it *before* creating pre-existing tensors that the stage may free (see module docstring).
    """

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile

        self.peak_bytes = None
        self.final_bytes = None
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    @contextlib.contextmanager
    def stage(self):
        from torch.profiler import record_function

        with record_function(_STAGE):
            yield

    def __exit__(self, *exc):
        self._prof.__exit__(*exc)
        events = self._prof.profiler.kineto_results.events()
        self._prof = None
        spans = [(e.start_ns(), e.end_ns()) for e in events if e.name() == _STAGE]
        if not spans:
            return False
        start, end = spans[0]
        mem = sorted(
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
        )
        total = base = peak = 0
        started = False
        for t, nbytes in mem:
            if t > end:
                break
            if not started and t >= start:
                started, base, peak = True, total, total
            total += nbytes
            if started:
                peak = max(peak, total)
        self.peak_bytes = peak - base if started else 0
        self.final_bytes = total - base if started else 0
        return False


# --------------------------------------------------------------------------------------------------
# process memory


def _proc_status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# vendor vision path (deepencoder.py + DeepseekOCRModel.forward, one global view, no crop)


def _sam_abs_pos(pos_embed, size):
    import torch
    import torch.nn.functional as F

    if pos_embed.size(1) == size:
        return pos_embed
    dtype = pos_embed.dtype
    old = pos_embed.permute(0, 3, 1, 2)
    old = old.to(torch.float32)
    new = F.interpolate(old, size=(size, size), mode="bicubic", antialias=True, align_corners=False).to(dtype)
    return new.permute(0, 2, 3, 1)


def _rel_pos_table(q_size, k_size, rel_pos):
    import torch
    import torch.nn.functional as F

    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:  # vendor: interpolate only when needed, in fp32
        dtype = rel_pos.dtype
        rel_pos = rel_pos.to(torch.float32)
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        ).to(dtype)
        resized = resized.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        resized = rel_pos
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return resized[coords.long()]


def _decomposed_rel_pos(q, rel_pos_h, rel_pos_w, q_size, k_size):
    import torch

    q_h, q_w = q_size
    k_h, k_w = k_size
    table_h = _rel_pos_table(q_h, k_h, rel_pos_h)
    table_w = _rel_pos_table(q_w, k_w, rel_pos_w)
    b, _, dim = q.shape
    r_q = q.reshape(b, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, table_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, table_w)
    rel_h = rel_h.unsqueeze(-1)
    rel_w = rel_w.unsqueeze(-2)
    rel_h = rel_h.reshape(b, q_h * q_w, k_h, 1)
    rel_w = rel_w.reshape(b, q_h * q_w, 1, k_w)
    return rel_h, rel_w


def _sam_attention(attn, x):
    import torch.nn.functional as F

    b, h, w, _ = x.shape
    nh = attn.num_attention_heads
    qkv = attn.qkv(x).reshape(b, h * w, 3, nh, -1).permute(2, 0, 3, 1, 4)  # stays alive (a view)
    q, k, v = qkv.reshape(3, b * nh, h * w, -1).unbind(0)
    with scope("relpos"):
        rel_h, rel_w = _decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w))
    q = q.view(b, nh, h * w, -1)
    k = k.view(b, nh, h * w, -1)
    v = v.view(b, nh, h * w, -1)
    rel_h = rel_h.view(b, nh, rel_h.size(1), rel_h.size(2), rel_h.size(3))
    rel_w = rel_w.view(b, nh, rel_w.size(1), rel_w.size(2), rel_w.size(3))
    with scope("bias"):
        attn_bias = (rel_h + rel_w).view(b, nh, rel_h.size(2), rel_h.size(3) * rel_w.size(4))
    with scope("sdpa"):
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
    x = x.view(b, nh, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    x = attn.proj(x)
    return x


def _window_partition(x, ws):
    import torch.nn.functional as F

    b, h, w, c = x.shape
    pad_h = (ws - h % ws) % ws
    pad_w = (ws - w % ws) % ws
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // ws, ws, wp // ws, ws, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)
    return windows, (hp, wp)


def _window_unpartition(windows, ws, pad_hw, hw):
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // ws // ws)
    x = windows.view(b, hp // ws, wp // ws, ws, ws, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


def _sam_block(blk, x):
    shortcut = x
    x = blk.layer_norm1(x)
    ws = blk.window_size
    if ws > 0:
        h, w = x.shape[1], x.shape[2]
        x, pad_hw = _window_partition(x, ws)
    with scope("attn"):
        x = _sam_attention(blk.attn, x)
    if ws > 0:
        x = _window_unpartition(x, ws, pad_hw, (h, w))
    x = shortcut + x
    with scope("mlp"):
        x = x + blk.mlp.lin2(blk.mlp.act(blk.mlp.lin1(blk.layer_norm2(x))))
    return x


def _sam_forward(sam, x):
    with scope("patch_embed"):
        x = sam.patch_embed.projection(x)
        x = x.permute(0, 2, 3, 1)
        x = x + _sam_abs_pos(sam.pos_embed, x.size(1))
    for i, blk in enumerate(sam.layers):
        with scope(f"b{i}"):
            x = _sam_block(blk, x)
    with scope("neck"):
        neck = sam.neck
        x = neck.layer_norm2(neck.conv2(neck.layer_norm1(neck.conv1(x.permute(0, 3, 1, 2)))))
    with scope("net2_net3"):
        x2 = sam.proj.conv1(x)
        x3 = sam.proj.conv2(x2.clone())
    return x3


def _quick_gelu(x):
    import torch

    return x * torch.sigmoid(1.702 * x)


def _clip_abs_pos(abs_pos, tgt_size):
    import torch
    import torch.nn.functional as F

    dim = abs_pos.size(-1)
    abs_pos_new = abs_pos.squeeze(0)
    cls_token, old = abs_pos_new[:1], abs_pos_new[1:]
    src = int(math.sqrt(abs_pos_new.shape[0] - 1))
    tgt = int(math.sqrt(tgt_size))
    if src == tgt:
        return abs_pos
    dtype = abs_pos.dtype
    old = old.view(1, src, src, dim).permute(0, 3, 1, 2).contiguous()
    old = old.to(torch.float32)
    new = F.interpolate(old, size=(tgt, tgt), mode="bicubic", antialias=True, align_corners=False).to(dtype)
    new = new.permute(0, 2, 3, 1)
    new = new.view(tgt * tgt, dim)
    pos = torch.cat([cls_token, new], dim=0)
    return pos.view(1, tgt * tgt + 1, dim)


def _clip_attention(layer, qkv_weight, qkv_bias, x):
    import torch
    import torch.nn.functional as F

    bsz, seqlen, _ = x.shape
    nh, hd = 16, 64
    xqkv = F.linear(x, qkv_weight, qkv_bias)
    xqkv = xqkv.view(bsz, seqlen, 3, nh, hd)
    xq, xk, xv = torch.split(xqkv, 1, dim=2)
    xq = xq.squeeze(2).permute(0, 2, 1, 3)
    xk = xk.squeeze(2).permute(0, 2, 1, 3)
    xv = xv.squeeze(2).permute(0, 2, 1, 3)
    with scope("sdpa"):
        output = F.scaled_dot_product_attention(xq, xk, xv, attn_mask=None)
    output = output.permute(0, 2, 1, 3).reshape(bsz, seqlen, -1)
    return layer.self_attn.out_proj(output)


def _clip_block(layer, qkv, x):
    with scope("attn"):
        residual = _clip_attention(layer, qkv[0], qkv[1], layer.layer_norm1(x))
    h = x + residual
    with scope("mlp"):
        out = h + layer.mlp.fc2(_quick_gelu(layer.mlp.fc1(layer.layer_norm2(h))))
    return out


class VendorVision:
    """One view through SAM -> CLIP -> projector -> newline/separator layout, as the vendor runs it.

    With a batch of views (tiles) it returns the projector output and skips the layout.
    """

    def __init__(self, vision=None):
        import torch

        from validation.reference_model import build_vision

        self.vt = vision if vision is not None else build_vision("cpu", torch.bfloat16)
        dtype = self.vt.projector.weight.dtype
        with torch.no_grad():  # the vendor's fused qkv_proj, built once (weights: not activations)
            self.clip_qkv = [
                (
                    torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                    torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
                )
                for a in (layer.self_attn for layer in self.vt.clip.encoder.layers)
            ]
            self.position_ids = torch.arange(257)[None]
            self.image_newline = torch.zeros(1280, dtype=dtype)
            self.view_seperator = torch.zeros(1280, dtype=dtype)

    def _clip_embeddings(self, pixels, patch_embeds):
        import torch
        import torch.nn.functional as F

        emb_mod = self.vt.clip.embeddings
        batch = pixels.shape[0]
        patch_embeds = patch_embeds.flatten(2).transpose(1, 2)  # a copy: the SAM map is channels-last
        cls = emb_mod.class_embedding.expand(batch, 1, -1)
        emb = torch.cat([cls, patch_embeds], dim=1)
        table = F.embedding(self.position_ids, emb_mod.position_embedding.weight)  # a temporary, as vendor
        return emb + _clip_abs_pos(table, emb.size(1))

    def _clip(self, pixels, patch_embeds):
        clip = self.vt.clip
        with scope("embed"):
            x = self._clip_embeddings(pixels, patch_embeds)
            hidden_states = clip.pre_layrnorm(x)  # x and hidden_states stay alive through the blocks
        out = hidden_states
        for i, layer in enumerate(clip.encoder.layers):
            with scope(f"b{i}"):
                out = _clip_block(layer, self.clip_qkv[i], out)
        return out

    def __call__(self, pixels):
        import torch

        with torch.no_grad():
            with scope("sam"):
                feats_1 = _sam_forward(self.vt.sam, pixels)
            with scope("clip"):
                feats_2 = self._clip(pixels, feats_1)
            with scope("projector"):
                feats = torch.cat((feats_2[:, 1:], feats_1.flatten(2).permute(0, 2, 1)), dim=-1)
                feats = self.vt.projector(feats)
            if feats.shape[0] > 1:  # a batch of tiles: the crop layout (Gundam) is not run here
                return feats
            with scope("layout"):
                _, hw, n_dim = feats.shape
                h = w = int(hw**0.5)
                feats = feats.view(h, w, n_dim)
                feats = torch.cat([feats, self.image_newline[None, None, :].expand(h, 1, n_dim)], dim=1)
                feats = feats.view(-1, n_dim)
                return torch.cat([feats, self.view_seperator[None, :]], dim=0)

    def case(self, size: int, batch: int = 1):
        """(run, preexisting) for one [batch,3,size,size] bf16 view."""
        import torch

        gen = torch.Generator(device=torch.get_default_device()).manual_seed(1)
        pixels = torch.randn(batch, 3, size, size, generator=gen).to(self.vt.projector.weight.dtype)
        return (lambda: self(pixels)), []


# --------------------------------------------------------------------------------------------------
# vendor decoder path (modeling_deepseekv2.py + transformers 4.46 Llama eager attention / DynamicCache)


class VendorCache:
    """transformers 4.46 ``DynamicCache``: store on first update, ``torch.cat`` afterwards."""

    def __init__(self):
        self.key_cache = []
        self.value_cache = []
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if len(self.key_cache) <= layer_idx else self.key_cache[layer_idx].shape[-2]

    def update(self, key_states, value_states, layer_idx):
        import torch

        if layer_idx == 0:
            self.seen_tokens += key_states.shape[-2]
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states], dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]


def _make_causal_mask(bsz, tgt_len, dtype, past):
    import torch

    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min)  # default dtype (fp32), as 4.46
    cond = torch.arange(mask.size(-1))
    mask.masked_fill_(cond < (cond + 1).view(mask.size(-1), 1), 0)
    mask = mask.to(dtype)
    if past > 0:
        mask = torch.cat([torch.zeros(tgt_len, past, dtype=dtype), mask], dim=-1)
    return mask[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len + past)


def _expand_mask(mask, dtype, tgt_len):
    import torch

    bsz, src_len = mask.size()
    expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def _prepare_4d_causal_mask(mask_2d, bsz, q_len, dtype, past):
    """4.46 ``_prepare_4d_causal_attention_mask`` with the 2-D mask generate passes."""
    import torch

    causal = _make_causal_mask(bsz, q_len, dtype, past) if q_len > 1 else None
    expanded = _expand_mask(mask_2d, dtype, q_len)
    if causal is not None:
        expanded = causal.masked_fill(expanded.bool(), torch.finfo(dtype).min)
    return expanded


def _rms_norm(norm, hidden_states):
    import torch

    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + RMS_EPS)
    return norm.weight * hidden_states.to(input_dtype)


def _rotary(inv_freq, x, position_ids):
    import torch

    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos()
    sin = emb.sin()
    cos = cos * 1.0  # attention_scaling of the default rope type
    sin = sin * 1.0
    return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def _rotate_half(x):
    import torch

    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _apply_rope(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    q_embed = (q * cos) + (_rotate_half(q) * sin)
    k_embed = (k * cos) + (_rotate_half(k) * sin)
    return q_embed, k_embed


def _llama_attention(attn, inv_freq, hidden_states, attention_mask, position_ids, cache, layer_idx):
    import torch
    import torch.nn.functional as F

    bsz, q_len, _ = hidden_states.size()
    query_states = attn.q_proj(hidden_states)
    key_states = attn.k_proj(hidden_states)
    value_states = attn.v_proj(hidden_states)
    query_states = query_states.view(bsz, q_len, -1, HEAD_DIM).transpose(1, 2)
    key_states = key_states.view(bsz, q_len, -1, HEAD_DIM).transpose(1, 2)
    value_states = value_states.view(bsz, q_len, -1, HEAD_DIM).transpose(1, 2)
    with scope("rope"):
        cos, sin = _rotary(inv_freq, value_states, position_ids)
        query_states, key_states = _apply_rope(query_states, key_states, cos, sin)
    with scope("cache"):
        key_states, value_states = cache.update(key_states, value_states, layer_idx)
    with scope("core"):
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(HEAD_DIM)
        causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]
        attn_weights = attn_weights + causal_mask
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(bsz, q_len, -1)
    attn_output = attn.o_proj(attn_output)
    attn_weights = None
    return attn_output, attn_weights, cache


def _swiglu(x, gate_w, up_w, down_w):
    import torch.nn.functional as F

    return F.linear(F.silu(F.linear(x, gate_w)) * F.linear(x, up_w), down_w)


def _moe_gate(gate, hidden_states):
    import torch
    import torch.nn.functional as F

    _, _, h = hidden_states.shape
    hidden_states = hidden_states.view(-1, h)
    logits = F.linear(hidden_states.type(torch.float32), gate.weight.type(torch.float32), None)
    scores = logits.softmax(dim=-1, dtype=torch.float32)
    topk_weight, topk_idx = torch.topk(scores, k=TOP_K, dim=-1, sorted=False)
    topk_weight = topk_weight * 1.0  # routed_scaling_factor, norm_topk_prob=False
    return topk_idx, topk_weight, None


def _moe_infer(experts, x, topk_ids, topk_weight):
    import torch

    inter = experts.down_proj.shape[-1]
    cnts = topk_ids.new_zeros((topk_ids.shape[0], N_EXPERTS))
    cnts.scatter_(1, topk_ids, 1)
    tokens_per_expert = cnts.sum(dim=0)
    idxs = topk_ids.view(-1).argsort()
    sorted_tokens = x[idxs // topk_ids.shape[1]]
    tokens_per_expert = tokens_per_expert.cpu().numpy()
    outputs = []
    start_idx = 0
    for i, num_tokens in enumerate(tokens_per_expert):
        end_idx = start_idx + num_tokens
        if num_tokens == 0:
            continue
        tokens_for_this_expert = sorted_tokens[start_idx:end_idx]
        gate_up = experts.gate_up_proj[i]
        expert_out = _swiglu(tokens_for_this_expert, gate_up[:inter], gate_up[inter:], experts.down_proj[i])
        outputs.append(expert_out)
        start_idx = end_idx
    outs = torch.cat(outputs, dim=0) if len(outputs) else sorted_tokens.new_empty(0)
    new_x = torch.empty_like(outs)
    new_x[idxs] = outs
    final_out = (
        new_x.view(*topk_ids.shape, -1)
        .type(topk_weight.dtype)
        .mul_(topk_weight.unsqueeze(dim=-1))
        .sum(dim=1)
        .type(new_x.dtype)
    )
    return final_out


def _moe(mlp, hidden_states):
    identity = hidden_states
    orig_shape = hidden_states.shape
    with scope("gate"):
        topk_idx, topk_weight, _aux = _moe_gate(mlp.gate, hidden_states)
    hidden_states = hidden_states.view(-1, hidden_states.shape[-1])
    with scope("routed"):
        y = _moe_infer(mlp.experts, hidden_states, topk_idx, topk_weight).view(*orig_shape)
    with scope("shared"):
        s = mlp.shared_experts
        y = y + _swiglu(identity, s.gate_proj.weight, s.up_proj.weight, s.down_proj.weight)
    return y


def _decoder_layer(layer, inv_freq, hidden_states, attention_mask, position_ids, cache, layer_idx):
    residual = hidden_states
    hidden_states = _rms_norm(layer.input_layernorm, hidden_states)
    with scope("attn"):
        hidden_states, _weights, present = _llama_attention(
            layer.self_attn, inv_freq, hidden_states, attention_mask, position_ids, cache, layer_idx
        )
    hidden_states = residual + hidden_states
    residual = hidden_states
    hidden_states = _rms_norm(layer.post_attention_layernorm, hidden_states)
    mlp = layer.mlp
    if hasattr(mlp, "experts"):
        with scope("moe"):
            hidden_states = _moe(mlp, hidden_states)
    else:
        with scope("mlp"):
            hidden_states = _swiglu(
                hidden_states, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
            )
    hidden_states = residual + hidden_states
    return (hidden_states, present)


def build_language_model_cpu(n_layers: int | None = None):
    """The reference LM (bf16, random weights on CPU); ``n_layers`` keeps only the first layers.
    At full depth the MoE layers share one set of weights (the activations measured here depend
    on shapes and routing, not on each layer's random values): 1.5 GB instead of 6."""
    import torch

    from validation.reference_model import build_language_model

    if n_layers is None:
        return build_language_model("cpu", torch.bfloat16, shared_layers=True)
    lm = build_language_model("meta", torch.bfloat16)
    lm.model.layers = lm.model.layers[:n_layers]
    lm = lm.to_empty(device="cpu")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for p in lm.parameters():
            p.normal_(0.0, 0.02)
    return lm.eval()


class VendorDecoder:
    """DeepseekOCRForCausalLM.forward for the text part (vision skipped), with a ``VendorCache``."""

    def __init__(self, lm=None, n_layers: int | None = None):
        import torch

        self.lm = lm if lm is not None else build_language_model_cpu(n_layers)
        self.layers = list(self.lm.model.layers)
        self.dtype = self.lm.lm_head.weight.dtype
        self.hidden = self.lm.lm_head.weight.shape[1]
        self.vocab = self.lm.lm_head.weight.shape[0]
        exponents = torch.arange(0, HEAD_DIM, 2, dtype=torch.int64).float() / HEAD_DIM
        self.inv_freq = 1.0 / (ROPE_THETA**exponents)  # LlamaRotaryEmbedding's fp32 buffer

    def _model(self, cache, attention_mask, position_ids, inputs_embeds, input_ids):
        """DeepseekOCRModel.forward + DeepseekV2Model.forward: returns the final-norm hidden states."""
        if inputs_embeds is None:
            with scope("embed"):
                inputs_embeds = self.lm.model.embed_tokens(input_ids)
        bsz, seq_length = inputs_embeds.shape[:2]
        past = cache.get_seq_length()
        with scope("mask"):
            mask = _prepare_4d_causal_mask(attention_mask, bsz, seq_length, inputs_embeds.dtype, past)
        hidden_states = inputs_embeds
        for i, layer in enumerate(self.layers):
            with scope(f"L{i}"):
                layer_outputs = _decoder_layer(
                    layer, self.inv_freq, hidden_states, mask, position_ids, cache, i
                )
            hidden_states = layer_outputs[0]
        with scope("norm"):
            hidden_states = _rms_norm(self.lm.model.norm, hidden_states)
        return hidden_states

    def __call__(
        self, cache, attention_mask, position_ids, inputs_embeds=None, input_ids=None, generate_step=False
    ):
        """DeepseekOCRForCausalLM.forward: fp32 logits [B,S,V] (and 4.46 generate's next-token logits)."""
        import torch

        with torch.no_grad():
            with scope("model"):
                hidden_states = self._model(cache, attention_mask, position_ids, inputs_embeds, input_ids)
            with scope("lm_head"):
                logits = self.lm.lm_head(hidden_states)
                logits = logits.float()
            if generate_step:  # transformers 4.46 _sample: clone the full logits, then slice
                del hidden_states
                with scope("generate"):
                    next_token_logits = logits.clone()[:, -1, :].float()
                return logits, next_token_logits
            return logits

    def prefill_case(self, seq: int, batch: int = 1, generate_step: bool = False):
        """(run, preexisting): ``seq`` tokens of inputs_embeds, empty cache."""
        import torch

        gen = torch.Generator(device=torch.get_default_device()).manual_seed(2)
        embeds = torch.randn(batch, seq, self.hidden, generator=gen).to(self.dtype)
        mask = torch.ones(batch, seq, dtype=torch.long)
        pos = torch.arange(seq)[None].expand(batch, -1).contiguous()
        cache = VendorCache()
        return (lambda: self(cache, mask, pos, inputs_embeds=embeds, generate_step=generate_step)), []

    def decode_case(self, batch: int, past: int):
        """(run, preexisting): one token per sequence on a pre-existing cache of ``past`` tokens."""
        import torch

        gen = torch.Generator(device=torch.get_default_device()).manual_seed(3)
        cache = VendorCache()
        shape = (batch, N_HEADS, past, HEAD_DIM)
        for _ in self.layers:
            cache.key_cache.append(torch.randn(shape, generator=gen).to(self.dtype))
            cache.value_cache.append(torch.randn(shape, generator=gen).to(self.dtype))
        cache.seen_tokens = past
        ids = torch.randint(0, self.vocab, (batch, 1), generator=gen)
        mask = torch.ones(batch, past + 1, dtype=torch.long)
        pos = torch.full((batch, 1), past, dtype=torch.long)
        pre = list(cache.key_cache) + list(cache.value_cache)
        return (lambda: self(cache, mask, pos, input_ids=ids)), pre


# --------------------------------------------------------------------------------------------------
# cases


CASES = {
    # name: (kind, params)
    "vision_tiny": ("vision", {"size": 512}),
    "vision_base": ("vision", {"size": 1024}),
    "vision_small": ("vision", {"size": 640}),
    "vision_tiles_640x4": ("vision", {"size": 640, "batch": 4}),
    "prefill_273": ("prefill", {"seq": 273}),
    "prefill_1000": ("prefill", {"seq": 1000}),
    "prefill_generate_1000": ("prefill", {"seq": 1000, "generate_step": True}),
    "decode_b1_l1024": ("decode", {"batch": 1, "past": 1024}),
    "decode_b8_l1024": ("decode", {"batch": 8, "past": 1024}),
}
DEFAULT_CASES = (
    "vision_tiny",
    "vision_base",
    "prefill_273",
    "prefill_1000",
    "decode_b1_l1024",
    "decode_b8_l1024",
)


def _setup(runner, kind, params):
    if kind == "vision":
        return runner.case(**params)
    if kind == "prefill":
        return runner.prefill_case(**params)
    return runner.decode_case(**params)


def measure(
    runner,
    kind: str,
    params: dict,
    *,
    allocator: bool = True,
    warmup: bool = True,
    top: int = 12,
    phase_breakdowns: int = 6,
) -> dict:
    """Measure one case: tensor-level peak + breakdown, allocator-level peak, wall time, RSS.

    ``peak_by_phase``: the largest local peak (live - baseline when an allocation is made) per tag
    pattern ('model/L*/attn/core', 'sam/b*/attn/bias', ...); ``phase_breakdowns``: the grouped
    breakdown at the local peak of the ``phase_breakdowns`` highest phases.
    """
    import torch

    if warmup:  # first calls pay one-time costs (oneDNN primitive creation, lazy inits)
        run, pre = _setup(runner, kind, params)
        del pre
        run()
        del run
        gc.collect()

    ap = AllocatorPeak() if allocator else None
    with ap if ap is not None else contextlib.nullcontext():
        run, pre = _setup(runner, kind, params)
        tracker = LiveBytes(preexisting=pre)
        del pre
        gc.collect()
        t0 = time.perf_counter()
        with tracker, ap.stage() if ap is not None else contextlib.nullcontext():
            out = run()
        wall_tracked = time.perf_counter() - t0
        del out, run
    ops: dict[str, int] = {}
    for r in tracker._allocs:
        if "scaled_dot_product" in r[3] or "_efficient_attention" in r[3] or "_flash_attention" in r[3]:
            ops[r[3]] = ops.get(r[3], 0) + 1
    gc.collect()

    run, pre = _setup(runner, kind, params)
    del pre
    gc.collect()
    before = _proc_status()
    hwm_ok = _reset_hwm()
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    after = _proc_status()
    del out, run
    gc.collect()
    rss_delta = None
    if hwm_ok and "VmHWM" in after and "VmRSS" in before:
        rss_delta = after["VmHWM"] - before["VmRSS"]

    torch_threads = torch.get_num_threads()
    phases = tracker.peak_by_phase()
    return {
        "kind": kind,
        "params": dict(params),
        "peak_bytes": tracker.peak_bytes,
        "final_bytes": tracker.final_bytes,
        "baseline_bytes": tracker.baseline_bytes,
        "n_allocs": tracker.n_allocs,
        "allocator_peak_bytes": getattr(ap, "peak_bytes", None),
        "allocator_final_bytes": getattr(ap, "final_bytes", None),
        "wall_s": wall,
        "wall_s_tracked": wall_tracked,
        "rss_peak_delta_bytes": rss_delta,
        "rss_hwm_bytes": after.get("VmHWM"),
        "threads": torch_threads,
        "attention_kernels": ops,
        "peak_by_phase": {k: v[0] for k, v in phases.items()},
        "breakdown": tracker.breakdown(top=top),
        "phase_breakdowns": {
            k: _short(tracker.breakdown(top=0, tag=v[1]), groups=top) | {"at": v[1]}
            for k, v in list(phases.items())[:phase_breakdowns]
        },
    }


def _short(b: dict, groups: int) -> dict:
    return {
        "peak_bytes": b["peak_bytes"],
        "preexisting_freed_bytes": b["preexisting_freed_bytes"],
        "groups": b["groups"][:groups],
        "rest_bytes": sum(g["bytes"] for g in b["groups"][groups:]),
    }


def measure_all(
    cases=DEFAULT_CASES,
    *,
    n_layers: int | None = None,
    allocator: bool = True,
    top: int = 12,
    vision=None,
    lm=None,
) -> dict:
    """{case name: result of ``measure``} for the named ``CASES``; models are built once."""
    results = {}
    vision_runner: VendorVision | None = None
    decoder_runner: VendorDecoder | None = None
    runner: VendorVision | VendorDecoder
    for name in cases:
        kind, params = CASES[name]
        if kind == "vision":
            if vision_runner is None:
                vision_runner = VendorVision(vision)
            runner = vision_runner
        else:
            if decoder_runner is None:
                decoder_runner = VendorDecoder(lm, n_layers=n_layers)
            runner = decoder_runner
        results[name] = measure(runner, kind, params, allocator=allocator, top=top)
    return results


def _mib(n):
    return "-" if n is None else f"{n / 2**20:.2f}"


def format_results(results: dict, groups: int = 10) -> str:
    """Readable summary: per case the peaks, timings and the grouped breakdown at the peak."""
    lines = []
    for name, r in results.items():
        lines.append(
            f"== {name} {r['params']}: peak {r['peak_bytes']:,} B ({_mib(r['peak_bytes'])} MiB); "
            f"allocator {_mib(r['allocator_peak_bytes'])} MiB; "
            f"live at end {_mib(r['final_bytes'])} MiB; "
            f"wall {r['wall_s']:.2f} s (tracked {r['wall_s_tracked']:.2f} s); "
            f"RSS high-water delta {_mib(r['rss_peak_delta_bytes'])} MiB"
        )
        b = r["breakdown"]
        lines.append(
            f"   new storages {b['new_bytes']:,} B, pre-existing freed "
            f"{b['preexisting_freed_bytes']:,} B; attention kernels {r['attention_kernels']}"
        )
        for g in b["groups"][:groups]:
            lines.append(
                f"   {g['bytes']:>14,}  {g['count']:>3} x {list(g['shape'])!s:<26} {g['dtype']:<9} "
                f"{g['op']:<42} {g['tag']}"
            )
        rest = b["groups"][groups:]
        rest_bytes = sum(g["bytes"] for g in rest)
        lines.append(f"   {rest_bytes:>14,}  (rest: {sum(g['count'] for g in rest)} storages)")
        top_phases = list(r["peak_by_phase"].items())[:8]
        lines.append("   local peaks: " + ", ".join(f"{k} {v / 2**20:.2f}" for k, v in top_phases) + " MiB")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(DEFAULT_CASES), choices=list(CASES))
    parser.add_argument("--layers", type=int, default=None, help="keep only the first N decoder layers")
    parser.add_argument("--no-allocator", action="store_true", help="skip the profiler-based allocator peak")
    parser.add_argument("--json", help="write the full results here")
    args = parser.parse_args(argv)
    results = measure_all(args.cases, n_layers=args.layers, allocator=not args.no_allocator)
    print(format_results(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
