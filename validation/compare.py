"""Analytic vs measured, per component: the engine of ``symcost validate``."""
from __future__ import annotations

import symcost

from .analytic import COUNTER_CONVENTIONS, decoder_columns, vision_columns

__all__ = ["compare", "validate_case", "STAGES"]

STAGES = ("vision", "prefill", "decode")


def compare(analytic: dict[str, int], measured: dict[str, int]) -> list[dict]:
    """One row per measured column: analytic, measured, absolute and relative difference."""
    rows = []
    for name, got in measured.items():
        want = analytic.get(name)
        diff = None if want is None else want - got
        rows.append({"component": name, "analytic": want, "measured": got, "abs_diff": diff,
                     "rel_diff": (abs(diff) / got if got else float(diff != 0))
                     if diff is not None else None,
                     "ok": diff == 0})
    return rows


def validate_case(preset: str, vision_mode: str, stage: str, width: int, height: int,
                  counter: str, prompt_tokens: int = 0, kv_len: int = 0,
                  max_crops: int = 9) -> dict:
    """Measure one shape with ``counter`` and compare it with the analytic columns."""
    from .measure import measure_decoder, measure_vision

    model = symcost.load("deepseek-ocr", preset=preset, vision_mode=vision_mode,
                         max_crops=max_crops)
    point = model.evaluate(width, height, stage, prompt_tokens=prompt_tokens, kv_len=kv_len)
    case = {"preset": preset, "vision_mode": vision_mode, "stage": stage, "width": width,
            "height": height, "counter": counter, "convention": COUNTER_CONVENTIONS[counter][0], "w_tiles": point["w_tiles"],
            "h_tiles": point["h_tiles"], "n_crops": point["n_crops"]}
    if stage == "vision":
        opts = model.options
        measured = measure_vision(opts["global_px"], opts["crop_px"] or None, point["n_crops"],
                                  counter)
        analytic = vision_columns(preset, width, height, counter, vision_mode)
    else:
        s_new, l_past = (point["prefill_tokens"], 0) if stage == "prefill" else (1, kv_len)
        case.update(s_new=s_new, l_past=l_past)
        measured = measure_decoder(s_new, l_past, counter)
        analytic = decoder_columns(s_new, l_past, counter)
    case["rows"] = compare(analytic, measured)
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case
