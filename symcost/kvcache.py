"""The KV cache vLLM allocates: its memory accounting at start-up, step by step as vLLM runs it.

vLLM (0.8.x, the V1 engine; ``vllm/v1/worker/gpu_worker.py``, ``Worker.determine_available_memory``)
sizes the KV cache once, before serving:

    available = total x gpu_memory_utilization - peak
    total     = torch.cuda.mem_get_info()[1]: the device memory as the driver reports it
                (:attr:`symcost.hardware.Hardware.memory_gb`, each preset with its source)
    peak      = the torch allocator's peak during ``profile_run`` (the weights, loaded before, plus
                the profiling run's activations) + memory allocated outside torch (cuBLAS
                workspaces, NCCL: "non_torch_allocations")

``GPUModelRunner.profile_run`` (``vllm/v1/worker/gpu_model_runner.py``): for a multimodal model it
first runs the vision encoder on ``min(ceil(encoder_budget / max_tokens_per_item), max_num_seqs
x 1 image per prompt)`` dummy images of the processor's largest size
(``get_image_size_with_most_features``: the family declares it, :attr:`Serving.profile_image`),
``encoder_budget = max(max_num_batched_tokens, max_tokens_per_item)``
(``compute_encoder_budget``); then ``_dummy_run(max_num_tokens)``: one decoder forward over
``max_num_batched_tokens`` tokens split over ``min(max_num_seqs, tokens)`` sequences (the
remainder on the last), and ``_dummy_sampler_run`` on one token per sequence. Its activation peak
is the larger of the vision stage on those images and the family's step stage on that batch.
NB: the encoder outputs stay cached while the decoder runs; their bytes (images x image tokens x
hidden size x 2 B, tens of MB) are not added to the step's peak.

Then ``kv_cache_utils.get_kv_cache_config``: ``num_blocks = available // (block bytes)``, and it
logs "GPU KV cache size: N tokens" (N = blocks x block_size) and "Maximum concurrency for
max_model_len tokens per request: N / max_model_len x". vLLM refuses to start when N <
max_model_len.

CUDA graphs: vLLM 0.8.x captures them after the KV cache is allocated
(``Worker.compile_or_warm_up_model`` -> ``capture_model``), so their memory (logged "Graph
capturing finished ..., took X GiB") comes out of the (1 - utilization) margin, not the KV cache:
:attr:`VllmMemory.cuda_graph_bytes` is 0 for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .checks import check_fraction, check_int
from .dtypes import Precision
from .errors import SymcostError
from .hardware import Hardware
from .model import Model

__all__ = ["VllmMemory", "VLLM_MEMORY", "KvCache", "kv_cache", "profile_image"]

_GIB = 2**30


@dataclass(frozen=True)
class VllmMemory:
    """What vLLM's accounting takes besides the weights and the profiling run, with sources."""

    # vLLM's own memory-profiling log on one H100 (TP 1): "non_torch_memory takes 0.16GiB"
    # (vllm-project/vllm PR #12126, 2025-01-16)
    non_torch_bytes: int = round(0.16 * _GIB)
    non_torch_source: str = "vLLM's profiling log, one H100, TP 1 (vllm-project/vllm PR #12126)"
    # captured after the KV cache is sized (see the module docstring)
    cuda_graph_bytes: int = 0
    cuda_graph_source: str = "vLLM 0.8.x captures CUDA graphs after sizing the KV cache"


VLLM_MEMORY = VllmMemory()


@dataclass(frozen=True)
class KvCache:
    """The accounting's parts (bytes) and its result: KV-cache blocks and tokens."""

    total_bytes: int  # device memory as the driver reports it
    gpu_memory_utilization: float
    weight_bytes: int
    profile_activation_bytes: int  # the profiling run's activation peak
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_bytes: int  # what is left for the KV cache (may be negative: vLLM refuses to start)
    bytes_per_token: int  # KV bytes of one cached token, all layers
    block_size: int
    blocks: int
    max_model_len: int
    profile: dict  # the profiling run: tokens, sequences, images and their size

    @property
    def tokens(self) -> int:
        return self.blocks * self.block_size

    @property
    def concurrency(self) -> float:
        """Requests of ``max_model_len`` tokens the cache holds at once (vLLM's log line)."""
        return self.tokens / self.max_model_len

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return out | {"kv_capacity_tokens": self.tokens, "max_concurrency": self.concurrency}

    def log_lines(self) -> list[str]:
        """As vLLM logs them (``kv_cache_utils.py``)."""
        return [
            f"GPU KV cache size: {self.tokens:,} tokens",
            f"Maximum concurrency for {self.max_model_len:,} tokens per request: {self.concurrency:.2f}x",
        ]


def profile_image(model: Model, images: list[tuple[int, int]]) -> tuple[tuple[int, int] | None, str]:
    """The dummy image of vLLM's profiling run: the family's declared largest, else the image of
    ``images`` with the longest image block; and where it comes from."""
    s = model.family.serving
    if s is None or s.vision is None or model.family.image is None:
        return None, "the family takes no images"
    if s.profile_image is not None:
        return s.profile_image, "the processor's largest, as the family declares it"
    if not images:
        return None, "none: the family declares no largest image and the requests hold none"
    tokens = [model.evaluate(w, h, stage=s.vision)[s.image_tokens] for w, h in images]
    largest = images[max(range(len(images)), key=lambda i: tokens[i])]
    return largest, "the largest requested: the family declares none"


def kv_cache(
    model: Model,
    hw: Hardware,
    prec: Precision,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    block_size: int,
    gpu_memory_utilization: float,
    max_model_len: int,
    image: tuple[int, int] | None,
    memory: VllmMemory = VLLM_MEMORY,
) -> KvCache:
    """vLLM's KV-cache accounting (see the module docstring) for ``model`` on ``hw``; ``image``:
    the profiling run's dummy image (None: text only)."""
    s = model.family.serving
    if s is None or s.step is None:
        raise SymcostError(f"kv cache: {model.family.name} declares no engine step stage")
    seqs_cap = check_int("max_num_seqs", max_num_seqs, 1, 1 << 16)
    tokens = check_int("max_num_batched_tokens", max_num_batched_tokens, 1, 1 << 24)
    block = check_int("block_size", block_size, 1, 1 << 12)
    util = check_fraction("gpu_memory_utilization", gpu_memory_utilization)
    length = check_int("max_model_len", max_model_len, 1, 1 << 24)
    seqs = min(seqs_cap, tokens)
    q, r = divmod(tokens, seqs)  # _dummy_run: q tokens each, the remainder on the last
    step_inputs: dict[str, Any] = {
        s.batch: seqs,
        s.step_tokens: tokens,
        s.score_pairs: (seqs - 1) * q * q + (q + r) ** 2,
        s.attended_keys: tokens,
    }
    kw: dict[str, Any] = dict(dtype=prec.dtype, kv_dtype=prec.kv_dtype)
    peak = model.evaluate(stage=s.step, **kw, **step_inputs)["activation_bytes"]
    profile: dict[str, Any] = {"tokens": tokens, "sequences": seqs, "images": 0, "image": None}
    if image is not None and s.vision is not None:
        per_item = model.evaluate(*image, stage=s.vision, **kw)[s.image_tokens]
        budget = max(tokens, per_item)  # compute_encoder_budget
        count = min(math.ceil(budget / per_item), seqs_cap)
        vision = model.evaluate(*image, stage=s.vision, **kw, **{s.batch: count})["activation_bytes"]
        peak = max(peak, vision)
        profile.update(images=count, image=list(image), image_tokens=per_item)
    weights = model.stage_params(s.stage) * prec.weight
    total = hw.memory_bytes
    kv = math.floor(total * util) - weights - peak - memory.non_torch_bytes - memory.cuda_graph_bytes
    per_token = model.kv_elems_per_token * prec.kv
    blocks = max(kv, 0) // (per_token * block)
    return KvCache(
        total_bytes=total,
        gpu_memory_utilization=util,
        weight_bytes=weights,
        profile_activation_bytes=peak,
        non_torch_bytes=memory.non_torch_bytes,
        cuda_graph_bytes=memory.cuda_graph_bytes,
        kv_bytes=kv,
        bytes_per_token=per_token,
        block_size=block,
        blocks=blocks,
        max_model_len=length,
        profile=profile,
    )
