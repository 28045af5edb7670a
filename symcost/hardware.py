"""Accelerators and the time model: per kernel-bearing op, ``max(compute, memory, launch floor)``.

Why per op: an eager forward launches one or more kernels per op, each bounded by its own
compute or its own traffic, and never faster than its launch; summing per-op maxima never
hides a memory-bound op behind a compute-bound one, as a per-layer max would.
NB: compute time is ``2*MACs / (matmul peak(dtype) * compute_efficiency) + vector FLOPs /
(vector peak * compute_efficiency)``; memory time is ``io_bytes / (bandwidth *
bandwidth_efficiency)``; the floor is ``kernels * runtime floor`` (the graph floor inside a
replayed CUDA graph). Inside a sum over decode steps each op's three times are summed over the
steps before the max (exact while an op stays on one side for every step).
NB: fp32 matmul runs at the FP32 (non-tensor) rate: torch's default disables TF32 matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_positive, shown
from .cost import Cost
from .dtypes import DTYPE_BYTES, Precision
from .errors import SymcostError
from .files import read_json_keys
from .runtime import Runtime

__all__ = ["Hardware", "HARDWARE", "get_hardware", "load_hardware", "op_times"]

# Accepted ranges (a rate outside them is a typo, and would make times 0 or infinite)
_TFLOPS = (1e-3, 1e6)
_GBPS = (1e-3, 1e7)
_GB = (1e-3, 1e6)


@dataclass(frozen=True)
class Hardware:
    name: str
    matmul_tflops: tuple[tuple[str, float], ...]  # dense tensor throughput per dtype, TFLOP/s
    vector_tflops: float  # FP32 non-tensor throughput, TFLOP/s (1e12)
    memory_gbps: float  # memory bandwidth, GB/s (1e9 bytes)
    memory_gb: float  # device memory as the driver reports it (cudaMemGetInfo total), GB (1e9 bytes)
    source: str = "user file"
    memory_source: str = "user file"  # where memory_gb comes from

    def matmul_flops_per_s(self, dtype: str) -> float:
        rates = dict(self.matmul_tflops)
        if dtype not in rates:
            raise SymcostError(
                f"dtype: {dtype!r} has no matmul rate on {self.name}; allowed: {', '.join(rates)}"
            )
        return rates[dtype] * 1e12

    @property
    def memory_bytes(self) -> int:
        return round(self.memory_gb * 1e9)  # exact for a whole number of MiB


def _nv(bf16, fp8, fp32, gbps, mib, source, memory_source):
    rates = [("bf16", bf16), ("fp16", bf16), ("fp32", fp32)] + ([("fp8", fp8)] if fp8 else [])
    return tuple(rates), fp32, gbps, mib * 2**20 / 1e9, source, memory_source


_MODAL = "nvidia-smi total, modal-labs/modal-client PR #2797"
_SEEN = "nvidia-smi total in public logs"  # several independent nvidia-smi outputs, no one canonical page
_NO_DRIVER = "datasheet 80 GB as GiB: no driver figure found"
# Dense figures (datasheets quote "with sparsity" at 2x; those are halved here). Memory: what the
# driver reports (nvidia-smi's MiB total, cudaMemGetInfo's total: what vLLM multiplies by
# gpu_memory_utilization), in MiB, each with where it was read; datasheets quote decimal GB or
# round numbers (an L4's "24 GB" is 23,034 MiB).
HARDWARE = {
    name: Hardware(name, *spec)
    for name, spec in {
        # NVIDIA H100 Tensor Core GPU datasheet, SXM: BF16 1979 / FP8 3958 sparse, FP32 67,
        # 3.35 TB/s, 80 GB
        "h100-sxm": _nv(989.5, 1979.0, 67.0, 3350.0, 81_559, "NVIDIA H100 datasheet (SXM)", _MODAL),
        # same datasheet, PCIe: BF16 1513 / FP8 3026 sparse, FP32 51, 2 TB/s, 80 GB
        "h100-pcie": _nv(756.5, 1513.0, 51.0, 2000.0, 81_920, "NVIDIA H100 datasheet (PCIe)", _NO_DRIVER),
        # NVIDIA H200 Tensor Core GPU datasheet, SXM: tensor rates as H100 SXM, 4.8 TB/s, 141 GB
        "h200": _nv(989.5, 1979.0, 67.0, 4800.0, 143_771, "NVIDIA H200 datasheet (SXM)", _SEEN),
        # NVIDIA H20 product brief: BF16 148 / FP8 296 dense, FP32 44, 4.0 TB/s, 96 GB
        "h20": _nv(148.0, 296.0, 44.0, 4000.0, 97_871, "NVIDIA H20 product brief", _SEEN),
        # NVIDIA A100 datasheet, 80GB SXM: BF16 312 dense, FP32 19.5, 2,039 GB/s; no FP8
        "a100-80gb": _nv(312.0, None, 19.5, 2039.0, 81_920, "NVIDIA A100 datasheet (80GB SXM)", _MODAL),
        # same datasheet, 40GB SXM: BF16 312 dense, FP32 19.5, 1,555 GB/s
        "a100-40gb": _nv(312.0, None, 19.5, 1555.0, 40_960, "NVIDIA A100 datasheet (40GB SXM)", _MODAL),
        # NVIDIA L40S datasheet: BF16 362.05 dense (733 sparse), FP8 733 dense, FP32 91.6, 864 GB/s,
        # 48 GB
        "l40s": _nv(362.05, 733.0, 91.6, 864.0, 46_068, "NVIDIA L40S datasheet", _MODAL),
        # NVIDIA L4 datasheet: BF16 242 / FP8 485 sparse, FP32 30.3, 300 GB/s, 24 GB
        "l4": _nv(121.0, 242.5, 30.3, 300.0, 23_034, "NVIDIA L4 datasheet", _MODAL),
        # NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: FP16/BF16 tensor (FP32
        # accumulate) 165.2 dense, FP8 330.3 dense, FP32 82.6, 1,008 GB/s, 24 GB
        "rtx-4090": _nv(
            165.2,
            330.3,
            82.6,
            1008.0,
            24_564,
            "NVIDIA Ada Lovelace whitepaper (RTX 4090)",
            "nvidia-smi total, RLinf/RLinf#255",
        ),
        # NVIDIA HGX B200 datasheet, per GPU: FP16/BF16 4.5 PF sparse (2.25 dense), FP8 9 PF sparse,
        # 8 TB/s, 1.44 TB per 8 GPUs; FP32 80 TFLOP/s (NVIDIA Blackwell architecture brief)
        "b200": _nv(
            2250.0,
            4500.0,
            80.0,
            8000.0,
            183_359,
            "NVIDIA HGX B200 datasheet, per GPU",
            "nvidia-smi total, NVIDIA/TensorRT-LLM#10278",
        ),
        # AMD Instinct MI300X datasheet: FP16/BF16 1307.4 dense, FP8 2614.9 dense, FP32 vector 163.4,
        # 5.3 TB/s, 192 GB
        "mi300x": _nv(
            1307.4,
            2614.9,
            163.4,
            5300.0,
            196_592,
            "AMD Instinct MI300X datasheet",
            "rocminfo pool size, ROCm/legacy-rocm-build#4414",
        ),
    }.items()
}

# key -> what it holds, with its unit
_FILE_KEYS = {
    "name": "a non-empty string",
    "matmul_tflops": "{dtype: dense TFLOP/s}",
    "vector_tflops": "TFLOP/s",
    "memory_gbps": "GB/s, 1e9 bytes/s",
    "memory_gb": "GB, 1e9 bytes, as the driver reports it",
}
_FILE_MAX_BYTES = 1 << 16  # a hardware file is a few hundred bytes; refuse anything huge


def load_hardware(path: str) -> Hardware:
    """A user-defined accelerator from a JSON file, validated field by field.

    Keys: ``name`` (str), ``matmul_tflops`` ({dtype: dense TFLOP/s}), ``vector_tflops``
    (TFLOP/s), ``memory_gbps`` (GB/s, 1e9 bytes/s), ``memory_gb`` (GB). Unknown keys are refused.
    """
    data = read_json_keys(path, "hardware", _FILE_MAX_BYTES, _FILE_KEYS)
    rates = data["matmul_tflops"]
    if not isinstance(rates, dict):
        raise SymcostError(
            f"hardware file: matmul_tflops must map dtypes ({', '.join(DTYPE_BYTES)}) to TFLOP/s"
        )
    return _checked(
        "hardware file",
        data["name"],
        tuple(rates.items()),
        data["vector_tflops"],
        data["memory_gbps"],
        data["memory_gb"],
        f"file {path}",
        f"file {path}",
    )


def _checked(where: str, name, rates, vector, gbps, gb, source: str, memory_source: str) -> Hardware:
    """A Hardware whose every field is in range: a rate outside would make times 0 or infinite."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise SymcostError(f"{where}: name must be a non-empty string of at most 100 characters")
    if (
        not isinstance(rates, tuple)
        or not rates
        or not all(isinstance(r, tuple) and len(r) == 2 for r in rates)
    ):
        raise SymcostError(f"{where}: matmul_tflops must map dtypes ({', '.join(DTYPE_BYTES)}) to TFLOP/s")
    for dtype, _ in rates:
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise SymcostError(
                f"{where}: matmul_tflops: unknown dtype {shown(dtype)}; allowed: {', '.join(DTYPE_BYTES)}"
            )
    return Hardware(
        name,
        tuple((d, check_positive(f"{where}: matmul_tflops.{d}", v, "TFLOP/s", *_TFLOPS)) for d, v in rates),
        check_positive(f"{where}: vector_tflops", vector, "TFLOP/s", *_TFLOPS),
        check_positive(f"{where}: memory_gbps", gbps, "GB/s", *_GBPS),
        check_positive(f"{where}: memory_gb", gb, "GB", *_GB),
        source,
        memory_source,
    )


def get_hardware(name_or_path) -> Hardware:
    """A preset by name, a JSON file by path (anything ending in ``.json``), or a Hardware
    (checked as a file would be)."""
    if isinstance(name_or_path, Hardware):
        hw = name_or_path
        return _checked(
            "hardware",
            hw.name,
            hw.matmul_tflops,
            hw.vector_tflops,
            hw.memory_gbps,
            hw.memory_gb,
            hw.source,
            hw.memory_source,
        )
    if isinstance(name_or_path, str) and name_or_path.endswith(".json"):
        return load_hardware(name_or_path)
    if not isinstance(name_or_path, str) or name_or_path not in HARDWARE:
        raise SymcostError(
            f"hardware: {shown(name_or_path)} is not one of {', '.join(HARDWARE)} or a .json file"
        )
    return HARDWARE[name_or_path]


def op_times(
    cost: Cost,
    hw: Hardware,
    p: Precision,
    runtime: Runtime,
    graph: bool,
    compute_efficiency: float = 1.0,
    bandwidth_efficiency: float = 1.0,
) -> tuple:
    """``(compute s, memory s, launch floor s)`` of one op's cost (floats or SymPy); the op
    takes the largest."""
    mm = hw.matmul_flops_per_s(p.dtype) * compute_efficiency
    vec = hw.vector_tflops * 1e12 * compute_efficiency
    bw = hw.memory_gbps * 1e9 * bandwidth_efficiency
    floor = runtime.graph_floor_s if graph else runtime.kernel_floor_s
    return (2 * cost.macs / mm + cost.vector_flops / vec, cost.io_bytes / bw, cost.kernels * floor)
