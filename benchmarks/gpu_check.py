"""Time and memory of the real model on a GPU, beside symcost's predictions (issue 10, part 4).

The reference model in bf16 with random weights, run the vendor's way (``validation.memory``'s
``VendorVision`` / ``VendorDecoder``: SAM attention with the rel-pos bias, eager attention,
``DynamicCache`` by concatenation, ``moe_infer``, ``logits.float()``):
  vision at three sizes, prefill at two lengths, decode at batch 1 and 64;
each timed with CUDA events (warm-up, then the median of several runs) and with
``torch.cuda.max_memory_allocated`` above what was allocated before the run (weights and the
input cache), beside symcost's ``time_s`` (runtimes hf and vllm) and ``activation_bytes``.

    python benchmarks/gpu_check.py --out DIR                 # on the GPU machine (H200)
    python benchmarks/gpu_check.py --device cpu --smoke      # the same script, tiny, on CPU

Writes DIR/gpu_check.json and DIR/gpu_check.md (the table for docs/).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# case name -> (kind, measured-run parameters, symcost stage and inputs)
FULL = {
    "vision 512 (tiny)": ("vision", {"size": 512}, ("tiny", "vision", {"width": 512, "height": 512})),
    "vision 1024 (base)": ("vision", {"size": 1024}, ("base", "vision", {"width": 1024, "height": 1024})),
    "vision 1280 (large)": ("vision", {"size": 1280}, ("large", "vision", {"width": 1280, "height": 1280})),
    "prefill S=273": (
        "prefill",
        {"seq": 273},
        ("tiny", "prefill", {"width": 512, "height": 512, "prompt_tokens": 200}),
    ),
    "prefill S=1000": (
        "prefill",
        {"seq": 1000},
        ("tiny", "prefill", {"width": 512, "height": 512, "prompt_tokens": 927}),
    ),
    "decode B=1 L=1024": (
        "decode",
        {"batch": 1, "past": 1024},
        ("tiny", "decode", {"kv_len": 1024, "batch": 1}),
    ),
    "decode B=64 L=1024": (
        "decode",
        {"batch": 64, "past": 1024},
        ("tiny", "decode", {"kv_len": 1024, "batch": 64}),
    ),
}
SMOKE = {k: FULL[k] for k in ("vision 512 (tiny)", "prefill S=273", "decode B=1 L=1024")}


def materialise(module, device):
    """Meta parameters made real on ``device`` with N(0, 0.02) weights (fast on a GPU)."""
    import torch

    module = module.to_empty(device=device)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in module.parameters():
            p.normal_(0.0, 0.02)
    return module.eval()


def timed(make, device, warmup: int, repeat: int) -> tuple[float, int]:
    """(median seconds, peak bytes above the start) of ``run()``, a fresh ``(run, inputs) =
    make()`` each time (a run grows its KV cache)."""
    import torch

    for _ in range(warmup):
        make()[0]()
    cuda = device.startswith("cuda")
    times = []
    for _ in range(repeat):
        run, pre = make()
        del pre  # held, it would keep the input cache alive past the HF cache's concatenation
        if cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = run()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
        del out, run
    run, pre = make()
    if cuda:
        del pre
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:  # no allocator statistics on CPU: the live-tensor tracker
        from validation.memory import LiveBytes

        tracker = LiveBytes(preexisting=pre)
        del pre
        with tracker:
            out = run()
        peak = tracker.peak_bytes
    del out, run
    return statistics.median(times), peak


def predict(preset: str, stage: str, inputs: dict, layers: int | None, hardware: str) -> dict:
    import symcost

    out = {}
    for runtime in ("hf", "vllm"):
        m = symcost.load("deepseek-ocr", preset=preset, runtime=runtime)
        r = m.evaluate(stage=stage, hardware=hardware, **inputs)
        out[runtime] = r
    if layers is not None:  # smoke runs cut the decoder: scale its share is not modelled, say so
        out["note"] = f"decoder cut to {layers} layers in the run; predictions are full depth"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--hardware", default="h200", help="symcost hardware preset for predictions")
    ap.add_argument(
        "--smoke", action="store_true", help="three small cases, 2 decoder layers, one timed run each"
    )
    ap.add_argument("--out", default=".", help="folder for gpu_check.json and gpu_check.md")
    args = ap.parse_args(argv)

    import torch

    from validation import memory
    from validation.reference_model import build_language_model, build_vision

    cases = SMOKE if args.smoke else FULL
    layers = 2 if args.smoke else None
    warmup, repeat = (0, 1) if args.smoke else (3, 7)  # smoke: the pipeline and its peaks, not timing
    torch.set_default_device(args.device)
    vision = materialise(build_vision("meta", torch.bfloat16), args.device)
    lm = build_language_model("meta", torch.bfloat16)
    if layers is not None:
        lm.model.layers = lm.model.layers[:layers]
    lm = materialise(lm, args.device)
    runners = {"vision": memory.VendorVision(vision), "decoder": memory.VendorDecoder(lm)}
    rows = []
    for name, (kind, params, (preset, stage, inputs)) in cases.items():
        runner = runners["vision" if kind == "vision" else "decoder"]
        seconds, peak = timed(
            functools.partial(memory._setup, runner, kind, params), args.device, warmup, repeat
        )
        pred = predict(preset, stage, inputs, layers, args.hardware)
        rows.append(
            {
                "case": name,
                "measured_s": seconds,
                "measured_peak_bytes": peak,
                "predicted_hf_s": pred["hf"]["time_s"],
                "predicted_vllm_s": pred["vllm"]["time_s"],
                "predicted_activation_bytes": pred["hf"]["activation_bytes"],
                "bound_hf": pred["hf"]["bound"],
                "note": pred.get("note", ""),
            }
        )
        print(
            f"{name}: {seconds * 1e3:.2f} ms measured, {rows[-1]['predicted_hf_s'] * 1e3:.2f} ms "
            f"predicted (hf), peak {peak / 1e6:.1f} MB",
            flush=True,
        )
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {
        "device": device,
        "torch": torch.__version__,
        "hardware_preset": args.hardware,
        "warmup": warmup,
        "repeat": repeat,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# GPU check: {device}, torch {torch.__version__}, bf16, median of {repeat} after "
        f"{warmup} warm-up runs; predictions for `{args.hardware}`",
        "",
        "| case | measured ms | predicted ms (hf) | ratio | predicted ms (vllm) | measured peak MB "
        "| predicted activation MB | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = r["measured_peak_bytes"]
        mem_ratio = r["predicted_activation_bytes"] / peak if peak else 0
        lines.append(
            f"| {r['case']} | {r['measured_s'] * 1e3:.2f} | {r['predicted_hf_s'] * 1e3:.2f} | "
            f"{r['predicted_hf_s'] / r['measured_s']:.2f} | {r['predicted_vllm_s'] * 1e3:.2f} | "
            f"{r['measured_peak_bytes'] / 1e6:.1f} | {r['predicted_activation_bytes'] / 1e6:.1f} | "
            f"{mem_ratio:.2f} |"
        )
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
