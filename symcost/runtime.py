"""Serving runtimes: how kernels are launched, which bounds the time of small ops.

A family decides what each runtime runs (which kernels, which attention, which logits); this
module says what a kernel launch costs under each and how much device memory the runtime
lets a model use.

NB: floors are order-of-magnitude figures from public measurements, not calibrated on our
model (no GPU has been available to this project); ``benchmarks/gpu_check.py`` times the real
model beside these predictions when one is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import shown
from .errors import SymcostError

__all__ = ["Runtime", "RUNTIMES", "get_runtime"]


@dataclass(frozen=True)
class Runtime:
    name: str
    summary: str
    kernel_floor_s: float  # least time of one eagerly launched kernel (launch + dispatch)
    graph_floor_s: float  # least time of one kernel inside a replayed CUDA graph
    memory_fraction: float  # share of device memory the runtime lets the model use
    source: str


RUNTIMES = {
    r.name: r
    for r in (
        # Eager PyTorch from Python: every op pays Python, the dispatcher and a CUDA launch. NVIDIA's
        # Nsight Systems user guide measures ~20 us per PyTorch element-wise op launched this way.
        # All of device memory is usable (no pool is reserved up front).
        Runtime(
            "hf",
            "Hugging Face transformers, eager PyTorch: one kernel per op, launched from Python",
            20e-6,
            20e-6,
            1.0,
            "NVIDIA Nsight Systems user guide (PyTorch element-wise op, ~20 us)",
        ),
        # vLLM: compiled model, kernels launched without per-op Python; a bare CUDA launch is 4-6 us
        # (host submission, measured on recent drivers). Decode steps replay CUDA graphs, where a
        # kernel costs ~0.5 us of launch beyond its run (NVIDIA "Getting Started with CUDA Graphs":
        # 3.4 us per 2.9 us kernel), about 1 us for the smallest kernels. gpu_memory_utilization
        # defaults to 0.9.
        Runtime(
            "vllm",
            "vLLM: fused kernels, paged KV cache, CUDA-graph decode",
            5e-6,
            1e-6,
            0.9,
            "CUDA launch 4-6 us; NVIDIA CUDA Graphs blog; vLLM gpu_memory_utilization=0.9",
        ),
    )
}


def get_runtime(name: str) -> Runtime:
    if not isinstance(name, str) or name not in RUNTIMES:
        raise SymcostError(f"runtime: {shown(name)} is not one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]
