"""Accelerators and the roofline: time as a closed form, a max(compute, memory) per op.

Why per op: an eager forward launches one kernel per op, and each kernel is bounded by its own
compute or its own traffic; summing per-op maxima never hides a memory-bound op behind a
compute-bound one, as a per-layer max would.
NB: compute time is ``2*MACs / matmul peak(dtype) + vector FLOPs / vector peak``; memory
time is ``io_bytes / bandwidth``; ``efficiency`` (0, 1] scales both peaks. Inside a sum over
decode steps each op's compute and memory times are summed over the steps before the max
(exact while an op stays on one side of the ridge point for every step).
NB: fp32 matmul runs at the FP32 (non-tensor) rate: torch's default disables TF32 matmul.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .arith import smax
from .checks import check_efficiency
from .errors import SymcostError
from .metrics import DTYPE_BYTES

__all__ = ["Hardware", "HARDWARE", "get_hardware", "load_hardware", "roofline_seconds"]


@dataclass(frozen=True)
class Hardware:
    name: str
    matmul_tflops: dict          # dense tensor throughput per dtype, TFLOP/s (1e12)
    vector_tflops: float         # FP32 non-tensor throughput, TFLOP/s
    memory_gbps: float           # memory bandwidth, GB/s (1e9 bytes)
    source: str = "user file"

    def __hash__(self):  # frozen but holds a dict: hash its items (compiled evaluators are memoised)
        return hash((self.name, tuple(sorted(self.matmul_tflops.items())), self.vector_tflops,
                     self.memory_gbps, self.source))

    def matmul_flops_per_s(self, dtype: str) -> float:
        if dtype not in self.matmul_tflops:
            raise SymcostError(f"dtype: {dtype!r} has no matmul rate on {self.name}; "
                               f"allowed: {', '.join(self.matmul_tflops)}")
        return self.matmul_tflops[dtype] * 1e12


def _nv(bf16, fp8, fp32, gbps, source):
    rates = {"bf16": bf16, "fp16": bf16, "fp32": fp32}
    if fp8:
        rates["fp8"] = fp8
    return rates, fp32, gbps, source


# Dense figures (datasheets quote "with sparsity" at 2x; those are halved here).
HARDWARE = {name: Hardware(name, *spec) for name, spec in {
    # NVIDIA H100 Tensor Core GPU datasheet, SXM column: BF16 1979 / FP8 3958 sparse, FP32 67, 3.35 TB/s
    "h100-sxm": _nv(989.5, 1979.0, 67.0, 3350.0, "NVIDIA H100 datasheet (SXM)"),
    # NVIDIA H200 Tensor Core GPU datasheet, SXM: same tensor rates as H100 SXM, 4.8 TB/s
    "h200": _nv(989.5, 1979.0, 67.0, 4800.0, "NVIDIA H200 datasheet (SXM)"),
    # NVIDIA A100 datasheet, 80GB SXM: BF16 312 dense, FP32 19.5, 2,039 GB/s; no FP8
    "a100-80gb": _nv(312.0, None, 19.5, 2039.0, "NVIDIA A100 datasheet (80GB SXM)"),
    # NVIDIA L40S datasheet: BF16 362.05 dense (733 sparse), FP8 733 dense, FP32 91.6, 864 GB/s
    "l40s": _nv(362.05, 733.0, 91.6, 864.0, "NVIDIA L40S datasheet"),
    # NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: FP16/BF16 tensor (FP32
    # accumulate) 165.2 dense, FP8 330.3 dense, FP32 82.6, 1,008 GB/s
    "rtx-4090": _nv(165.2, 330.3, 82.6, 1008.0, "NVIDIA Ada Lovelace whitepaper (RTX 4090)"),
    # NVIDIA HGX B200 datasheet, per GPU: FP16/BF16 4.5 PF sparse (2.25 dense), FP8 9 PF sparse,
    # 8 TB/s; FP32 80 TFLOP/s (NVIDIA Blackwell architecture brief)
    "b200": _nv(2250.0, 4500.0, 80.0, 8000.0, "NVIDIA HGX B200 datasheet, per GPU"),
    # AMD Instinct MI300X datasheet: FP16/BF16 1307.4 dense, FP8 2614.9 dense, FP32 vector 163.4,
    # 5.3 TB/s
    "mi300x": _nv(1307.4, 2614.9, 163.4, 5300.0, "AMD Instinct MI300X datasheet"),
}.items()}

# key -> what it holds, with its unit
_FILE_KEYS = {"name": "a non-empty string", "matmul_tflops": "{dtype: dense TFLOP/s}",
              "vector_tflops": "TFLOP/s", "memory_gbps": "GB/s, 1e9 bytes/s"}
_FILE_MAX_BYTES = 1 << 16  # a hardware file is a few hundred bytes; refuse anything huge
_KEYS_TEXT = ", ".join(f"{k} ({u})" for k, u in _FILE_KEYS.items())


def _positive(key: str, value, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise SymcostError(f"hardware file: {key} must be a positive finite number of {unit}, "
                           f"got {value!r}")
    return float(value)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:  # json would silently keep the last one
        raise SymcostError(f"hardware file: key {dup!r} appears twice")
    return dict(pairs)


def load_hardware(path: str) -> Hardware:
    """A user-defined accelerator from a JSON file, validated field by field.

    Keys: ``name`` (str), ``matmul_tflops`` ({dtype: dense TFLOP/s}), ``vector_tflops``
    (TFLOP/s), ``memory_gbps`` (GB/s, 1e9 bytes/s). Unknown keys are refused.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(_FILE_MAX_BYTES + 1)
        if len(text) > _FILE_MAX_BYTES:
            raise SymcostError(f"hardware: {path!r} is larger than {_FILE_MAX_BYTES:,} characters")
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except SymcostError:
        raise
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, UTF-8, huge ints
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise SymcostError(f"hardware: cannot read {path!r} as JSON ({e.__class__.__name__}{where})") \
            from None
    if not isinstance(data, dict):
        raise SymcostError("hardware file: expected a JSON object")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    missing = sorted(set(_FILE_KEYS) - set(data))
    if unknown or missing:
        which = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
        raise SymcostError(f"hardware file: {which}; keys are {_KEYS_TEXT}")
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise SymcostError("hardware file: name must be a non-empty string")
    rates = data["matmul_tflops"]
    if not isinstance(rates, dict) or not rates:
        raise SymcostError(f"hardware file: matmul_tflops must map dtypes ({', '.join(DTYPE_BYTES)}) "
                           "to TFLOP/s")
    for dtype in rates:
        if dtype not in DTYPE_BYTES:
            raise SymcostError(f"hardware file: matmul_tflops: unknown dtype {dtype!r}; allowed: "
                               f"{', '.join(DTYPE_BYTES)}")
    return Hardware(data["name"], {d: _positive(f"matmul_tflops.{d}", v, "TFLOP/s")
                                   for d, v in rates.items()},
                    _positive("vector_tflops", data["vector_tflops"], "TFLOP/s"),
                    _positive("memory_gbps", data["memory_gbps"], "GB/s"), f"file {path}")


def get_hardware(name_or_path: str) -> Hardware:
    """A preset by name, or a JSON file by path (anything ending in ``.json``)."""
    if isinstance(name_or_path, str) and name_or_path.endswith(".json"):
        return load_hardware(name_or_path)
    if not isinstance(name_or_path, str) or name_or_path not in HARDWARE:
        raise SymcostError(f"hardware: {name_or_path!r} is not one of {', '.join(HARDWARE)} "
                           "or a .json file")
    return HARDWARE[name_or_path]


def roofline_seconds(leaves, hw: Hardware, dtype: str, io_bytes, efficiency: float = 1.0):
    """Sum over leaf costs of ``max(compute s, memory s)``: a float for int costs, else SymPy."""
    efficiency = check_efficiency(efficiency)
    mm = hw.matmul_flops_per_s(dtype) * efficiency
    vec = hw.vector_tflops * 1e12 * efficiency
    bw = hw.memory_gbps * 1e9 * efficiency
    return sum(smax(2 * c.macs / mm + c.vector_flops / vec, io_bytes(c) / bw) for c in leaves)
