"""The serving engine's step against FlopCounterMode on the real decoder over the same mixed batch.

A step runs sequences each with its own new tokens ``s_i`` after its own ``L_i`` cached ones
(decode tokens and prefill chunks together). A varlen (flash) kernel computes each sequence's
attention over its own keys only; transformers has no ragged forward, so each sequence runs as
its own forward (batch 1, its own cache) on the meta device and the counts add: what the varlen
kernel computes. The family's ``step`` stage, evaluated at the batch's aggregates (sequences,
tokens, score pairs, keys), must give the same integer under the ``torch`` convention.

- deepseek-ocr: the reference model's plain forward (logits on every position), so against the
  step under runtime ``hf``;
- deepseek-ocr2: transformers' model with ``logits_to_keep=1`` (each sequence's last position,
  as vLLM samples) and SDPA, so against the step under runtime ``vllm``.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

RUNTIMES = {"deepseek-ocr": "hf", "deepseek-ocr2": "vllm"}


def aggregates(composition: list[tuple[int, int]]) -> dict[str, int]:
    """The step stage's inputs for sequences ``(new tokens, cached tokens)``."""
    return {
        "batch": len(composition),
        "step_tokens": sum(s for s, _ in composition),
        "score_pairs": sum(s * (past + s) for s, past in composition),
        "attended_keys": sum(past + s for s, past in composition),
    }


def measure_step(family: str, composition: list[tuple[int, int]]) -> int:
    """FlopCounterMode (torch convention) over the sequences ``(new tokens, cached tokens)``,
    one forward per distinct sequence, times how often it occurs."""
    if family == "deepseek-ocr":
        from validation.measure import measure_decoder

        def one(s: int, past: int) -> int:
            return measure_decoder(s, past, "torch", model=_reference_decoder())["total_full_depth"]
    elif family == "deepseek-ocr2":
        from validation.ocr2 import measure_decoder as measure_ocr2

        def one(s: int, past: int) -> int:
            return measure_ocr2(s, past, "torch", logits="last")["total_full_depth"]
    else:
        raise ValueError(f"family must be one of {', '.join(RUNTIMES)}, got {family!r}")
    return sum(count * one(s, past) for (s, past), count in Counter(composition).items())


def compare_step(family: str, composition: list[tuple[int, int]]) -> tuple[int, int]:
    """(the step stage's FLOPs at the aggregates, the measured FLOPs)."""
    import symcost

    model = symcost.load(family, runtime=RUNTIMES[family])
    analytic = model.evaluate(stage="step", convention="torch", **aggregates(composition))["flops"]
    return analytic, measure_step(family, composition)


@cache
def _reference_decoder():
    """The v1 reference language model on the meta device, built once."""
    import torch

    from validation.reference_model import build_language_model

    return build_language_model("meta", torch.bfloat16)
