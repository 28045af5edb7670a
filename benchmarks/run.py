"""symcost benchmarks, measured side by side in one run (not a test; no figure is asserted).

    python benchmarks/run.py           # full run (a few minutes on 2 cores)
    python benchmarks/run.py --smoke   # everything tiny, seconds

Figures (preset gundam, "full model" = stage request with N=1 = vision + prefill, all metrics):
  1. compiled points/s        2. compiled / numeric model per point
  3. compiled / torch FlopCounterMode (meta device) per shape
  4. cold start of the CLI, against `python -c "import sympy"`
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # validation/ lives at the repository root

import symcost  # noqa: E402
from symcost.metrics import METRICS  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, " \
           f"NumPy {np.__version__}"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI-speed sanity")
    args = ap.parse_args(argv)
    smoke = args.smoke
    n_points, n_numeric, n_torch, n_cold, repeat = \
        (2_000, 3, 1, 1, 1) if smoke else (1_000_000, 300, 3, 5, 5)
    print(f"machine: {machine()}")
    print(f"mode: {'smoke' if smoke else 'full'}; preset gundam; stage request (N=1: vision + "
          f"prefill); metrics {', '.join(METRICS)}")

    m = symcost.load("deepseek-ocr", preset="gundam")
    start = time.perf_counter()
    ev = m.compile("request", METRICS)
    compile_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    w, h = rng.integers(1, 8193, n_points), rng.integers(1, 8193, n_points)
    ev(w[:10], h[:10])  # warm-up
    t_ev = best_of(lambda: ev(w, h), repeat)
    rate = n_points / t_ev
    prompts = np.zeros(n_points, dtype=np.int64)  # an array stage argument: per-point program
    t_pp = best_of(lambda: ev(w, h, prompts), max(1, repeat // 2))
    print(f"\n[1] compiled points/s: {rate:.3g} points/s ({n_points} random (W, H) in [1, 8192]^2, "
          f"{t_ev * 1e3:.1f} ms, best of {repeat}; compile once {compile_s:.2f} s)")
    print(f"    per-point program (prompt_tokens as an array): {n_points / t_pp:.3g} points/s "
          f"({t_pp * 1e3:.1f} ms); ratio to 10^7 target: {rate / 1e7:.2f}x")

    idx = rng.choice(n_points, n_numeric, replace=False)
    start = time.perf_counter()
    numeric = [m.evaluate(int(w[k]), int(h[k]), "request") for k in idx]
    t_num = (time.perf_counter() - start) / n_numeric
    out = ev(w[idx], h[idx])
    agree = all(int(out[k][i]) == numeric[i][k] for i in range(n_numeric)
                for k in METRICS if k != "arithmetic_intensity")
    print(f"\n[2] compiled / numeric model: {t_num * rate:.3g}x per point (numeric "
          f"Model.evaluate {t_num * 1e3:.2f} ms/point on {n_numeric} of the points, "
          f"extrapolated; values agree: {agree})")

    try:
        from validation.measure import measure_vision
        from validation.reference_model import build_vision
        vision = m.compile("vision", ("flops",))
        start = time.perf_counter()
        meta = build_vision("meta")
        build_s = time.perf_counter() - start
        shapes = [(1280, 720), (1654, 2339), (4000, 4000)][:n_torch]
        per_shape, agree = [], True
        for sw, sh in shapes:
            n_crops = int(ev(sw, sh)["n_crops"])
            start = time.perf_counter()
            got = measure_vision(1024, 640, n_crops, "torch", model=meta)
            per_shape.append(time.perf_counter() - start)
            agree &= got["vision_total"] == int(vision(sw, sh)["flops"])
        t_torch = statistics.median(per_shape)
        print(f"\n[3] compiled / torch FlopCounterMode: {t_torch * rate:.3g}x per shape "
              f"(validation.measure.measure_vision, counter torch, meta device: "
              f"{t_torch:.2f} s/shape, median of {len(shapes)}; model built once in "
              f"{build_s:.1f} s, not counted; vision FLOPs agree: {agree})")
    except ImportError as exc:
        print(f"\n[3] compiled / torch FlopCounterMode: not measured ({exc})")

    exe = Path(sys.executable).parent / "symcost"
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "symcost.cli"]
    commands = {
        "import sympy": [sys.executable, "-c", "import sympy"],
        "symcost formulas deepseek-ocr": cli + ["formulas", "deepseek-ocr"],
        "symcost eval deepseek-ocr --preset gundam --image 1280x720":
            cli + ["eval", "deepseek-ocr", "--preset", "gundam", "--image", "1280x720"],
    }
    cold = {}
    for name, cmd in commands.items():
        def run(cmd=cmd):
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        cold[name] = best_of(run, n_cold)
    base = cold["import sympy"]
    print(f"\n[4] cold start (fresh process, best of {n_cold}):")
    for name, t in cold.items():
        print(f"    {name:60s} {t:6.2f} s  ({t / base:.2f}x import sympy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
