"""Analytic vs measured, per component: the engine of ``symcost validate``."""

from __future__ import annotations

from validation import ValidationError

from .analytic import COUNTER_CONVENTIONS, decoder_columns, vision_columns

__all__ = ["compare", "validate_case", "vendor_global_view", "STAGES"]

STAGES = ("vision", "prefill", "decode")


def compare(analytic: dict[str, int], measured: dict[str, int]) -> list[dict]:
    """One row per measured column: analytic, measured, absolute and relative difference."""
    rows = []
    for name, got in measured.items():
        want = analytic.get(name)
        diff = None if want is None else want - got
        rows.append(
            {
                "component": name,
                "analytic": want,
                "measured": got,
                "abs_diff": diff,
                "rel_diff": (abs(diff) / got if got else float(diff != 0)) if diff is not None else None,
                "ok": diff == 0,
            }
        )
    return rows


def vendor_global_view(preset: str, vision_mode: str, width: int, height: int) -> tuple[int, int]:
    """Size of the global view the vendor builds from a W x H image (PIL, as docs/models.md says):
    HF crop_mode=False pads (or, at image_size <= 640, resizes) to image_size; crop mode, the
    small-image shortcut and vLLM's no-crop pad to base_size."""
    from PIL import Image, ImageOps

    from derivations.deepseek_ocr import PRESETS

    p = PRESETS[preset]
    side = p.image_size if (vision_mode == "nocrop-hf" or not p.crop_mode) else p.base_size
    image = Image.new("RGB", (width, height))
    if vision_mode == "nocrop-hf" or not p.crop_mode:
        if side <= 640:
            image = image.resize((side, side))  # aspect ratio not kept
    return ImageOps.pad(image, (side, side), color=(127, 127, 127)).size


def validate_case(model, stage: str, counter: str, point: dict, check_only: bool = False) -> dict:
    """Measure one shape with ``counter`` and compare it with the analytic columns."""
    from symcost import SymcostError

    if stage == "decode" and counter.startswith("fvcore"):
        raise SymcostError(
            "--counter: fvcore cannot trace a decode step (it needs a KV cache "
            "of real tensors); use torch or torch-cpu"
        )
    if point.get("batch", 1) != 1:
        raise SymcostError("--batch: validate deepseek-ocr measures batch 1 (the reference data's)")
    if check_only:
        return {}
    from .measure import measure_decoder, measure_vision  # imports torch: only when measuring

    opts = model.options
    width, height = point.get("width", 1), point.get("height", 1)
    prompt_tokens, kv_len = point.get("prompt_tokens", 0), point.get("kv_len", 0)
    if stage == "decode":
        r = model.evaluate(stage="decode", kv_len=kv_len)
        r.update(w_tiles=1, h_tiles=1, n_crops=0)
    else:
        r = model.evaluate(
            width, height, stage, **({"prompt_tokens": prompt_tokens} if stage == "prefill" else {})
        )
    case = {
        "family": "deepseek-ocr",
        "preset": opts["preset"],
        "vision_mode": opts["vision_mode"],
        "stage": stage,
        "width": width,
        "height": height,
        "counter": counter,
        "convention": COUNTER_CONVENTIONS[counter][0],
        "w_tiles": r["w_tiles"],
        "h_tiles": r["h_tiles"],
        "n_crops": r["n_crops"],
    }
    if stage == "vision":
        gw, gh = vendor_global_view(opts["preset"], opts["vision_mode"], width, height)
        if (gw, gh) != (opts["global_px"], opts["global_px"]):
            raise ValidationError(f"the vendor builds a {gw}x{gh} global view, the model {opts['global_px']}")
        measured = measure_vision(gw, opts["crop_px"] or None, r["n_crops"], counter)
        analytic = vision_columns(opts["preset"], width, height, counter, opts["vision_mode"])
        case["title"] = (
            f"{opts['preset']} {opts['vision_mode']} {width}x{height} vision, "
            f"counter {counter}: tiles {r['w_tiles']}x{r['h_tiles']} "
            f"({r['n_crops']} crops)"
        )
    else:
        s_new, l_past = (r["prefill_tokens"], 0) if stage == "prefill" else (1, kv_len)
        case.update(s_new=s_new, l_past=l_past)
        measured = measure_decoder(s_new, l_past, counter)
        analytic = decoder_columns(s_new, l_past, counter)
        case["title"] = f"decoder {stage} S={s_new} L={l_past}, counter {counter}"
    case["rows"] = compare(analytic, measured)
    case["ok"] = all(r["ok"] for r in case["rows"])
    case["measured"] = measured
    return case
