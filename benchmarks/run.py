"""symcost benchmarks: every figure measured side by side in one run, each beside its target.

    python benchmarks/run.py           # full run (about half a minute on 2 cores)
    python benchmarks/run.py --smoke   # everything tiny, seconds; targets shown, not enforced
    python benchmarks/run.py --smoke --perturb   # TEST ONLY: one wrong value, the run must fail

"Full model" = stage request with N = 1 (vision + prefill), every integer metric and
arithmetic_intensity; deepseek-ocr at preset gundam, deepseek-ocr2 and lighton-ocr at their defaults,
got-ocr2 with crop_to_patches (vision mode crops).
Figures, per family:
  compiled points/s on 10^6 random (W, H) in [1, 8192]^2
  compiled / numeric ``Model.evaluate`` per point
  compiled / torch ``FlopCounterMode`` (meta device) per shape
and cold starts beside ``import sympy``: every ``symcost`` command of the README (``validate``
aside), a compile of the request with ``time_s`` and a ``time_s`` closed form from Python.
``symcost.simulate`` serving 100,000 A4 pages of ~1,000 output tokens (vLLM, A100-40GB).
``--perturb`` runs the agreement checks alone (what it tests).

Exit status 1 when a compiled value disagrees with the numeric model or a vision FLOP count
with torch, or (full run) a figure misses its target; the last line names every failure.
This is a measurement, not a test: tests/test_benchmarks_smoke.py checks only its content.
"""

from __future__ import annotations

import argparse
import operator
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # validation/ lives at the repository root

import sympy  # noqa: E402

import symcost  # noqa: E402
from symcost.metrics import INT_METRICS  # noqa: E402

METRICS = (*INT_METRICS, "arithmetic_intensity")
# family -> (load options, points/s target); DeepSeek-OCR-2's full model is the larger program
FAMILIES = {
    "deepseek-ocr": ({"preset": "gundam"}, 3e7),
    "deepseek-ocr2": ({}, 1e7),
    "lighton-ocr": ({}, 1e7),
    "got-ocr2": ({"vision_mode": "crops"}, 1e7),  # the tiled mode: its default has one fixed layout
    "paddleocr-vl": ({}, 1e7),
    "qwen2.5-vl": ({}, 1e7),
}
# families whose pipeline refuses some sizes -> (smallest side px, largest aspect ratio) of the pages drawn
# lighton-ocr: a side resized to <= 14 px cannot be merged 2 x 2; smart_resize refuses aspect > 200
PAGES = {"lighton-ocr": (28, 100), "paddleocr-vl": (1, 200), "qwen2.5-vl": (1, 200)}
TORCH_SHAPES = [(1280, 720), (1654, 2339), (4000, 4000)]
ABOVE, BELOW = (">=", operator.ge), ("<", operator.lt)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: tuple | None  # ((symbol, comparison), bound) or None: reported only
    detail: str

    def met(self) -> bool:
        return self.target is None or self.target[0][1](self.value, self.target[1])

    def line(self, enforce: bool) -> str:
        if self.target is None:
            verdict = "no target"
        else:
            (symbol, _), bound = self.target
            status = ("ok" if self.met() else "MISSED") if enforce else "not enforced (smoke)"
            verdict = f"target {symbol} {bound:.3g} {self.unit}: {status}"
        return f"{self.name}: {self.value:.3g} {self.unit} ({verdict}); {self.detail}"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, NumPy "
        f"{np.__version__}, SymPy {sympy.__version__}; load average {load} at start"
    )


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def first_difference(out: dict, numeric: list[dict], idx) -> str | None:
    """The first value where the compiled outputs differ from ``Model.evaluate``'s, if any."""
    for i, k in enumerate(idx):
        for name, column in out.items():
            want = numeric[i].get(name, "missing")
            if column[k].item() != want:  # exact: ints, and the same float division
                return f"point {k}: {name} compiled {column[k].item()} != numeric {want}"
    return None


def draw(rng, n: int, family: str):
    """n random (W, H) in [1, 8192]^2; for a family in PAGES, sides >= its minimum, aspect <= its maximum."""
    lo, aspect = PAGES.get(family, (1, None))
    w = rng.integers(lo, 8193, n)
    if aspect is None:
        return w, rng.integers(1, 8193, n)
    return w, rng.integers(np.maximum(lo, -(-w // aspect)), np.minimum(8192, w * aspect) + 1)


def drawn(family: str) -> str:
    return f", sides >= {PAGES[family][0]}, aspect <= {PAGES[family][1]}" if family in PAGES else ""


def bench_family(
    family: str, n_points: int, n_numeric: int, repeat: int, perturb: bool, figures: list, checks: list
) -> float:
    """Points/s and compiled / numeric for one family; returns the points/s."""
    options, target = FAMILIES[family]
    m = symcost.load(family, **options)
    start = time.perf_counter()
    ev = m.compile("request", METRICS)
    compile_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    w, h = draw(rng, n_points, family)
    for _ in range(2):  # warm-up: threads, scratch arrays, the process's first huge pages
        ev(w, h, new_tokens=1)
    t_ev = best_of(lambda: ev(w, h, new_tokens=1), repeat)
    rate = n_points / t_ev
    figures.append(
        Figure(
            f"compiled {family}",
            rate,
            "points/s",
            (ABOVE, target),
            f"{n_points} random (W, H) in [1, 8192]^2{drawn(family)} in {t_ev * 1e3:.1f} ms, best of "
            f"{repeat} after 2 warm-up calls; compiled once in {compile_s:.1f} s",
        )
    )

    idx = rng.choice(n_points, n_numeric, replace=False)
    start = time.perf_counter()
    numeric = [m.evaluate(int(w[k]), int(h[k]), "request", new_tokens=1) for k in idx]
    t_num = (time.perf_counter() - start) / n_numeric
    out = ev(w, h, new_tokens=1)
    if perturb:  # test only: one wrong value must fail the run
        out["flops"] = out["flops"].copy()
        out["flops"][idx[0]] += 1
    diff = first_difference(out, numeric, idx)
    checks.append(
        (f"compiled == numeric Model.evaluate, {family}: {n_numeric} points x {len(out)} values", diff)
    )
    figures.append(
        Figure(
            f"compiled / numeric {family}",
            t_num * rate,
            "x per point",
            (ABOVE, 1e3),
            f"Model.evaluate {t_num * 1e3:.2f} ms/point on {n_numeric} of the points",
        )
    )
    return rate


def bench_torch(rates: dict, n_shapes: int, figures: list, checks: list) -> None:
    """Vision FLOPs by FlopCounterMode on the meta device, per shape, against compiled."""
    try:  # the measuring modules import them lazily: ask before any figure needs them
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:  # a figure not measured fails the run like a missed one
        why = f"not measured: {e.name} is not installed; pip install -e '.[validation]'"
        checks.append(("compiled vision flops == torch FlopCounterMode", why))
        return
    from validation import ocr2
    from validation.measure import measure_vision
    from validation.reference_model import build_vision

    v1 = symcost.load("deepseek-ocr", preset="gundam")
    measurers = {  # family -> (model, build the meta module, measure(module, n_crops))
        "deepseek-ocr": (
            v1,
            lambda: build_vision("meta"),
            lambda mod, n: measure_vision(1024, v1.layout.tile, n, "torch", model=mod),
        ),
        "deepseek-ocr2": (
            symcost.load("deepseek-ocr2"),
            lambda: ocr2.build_model("meta"),
            lambda mod, n: ocr2.measure_vision(n, "torch", model=mod),
        ),
    }
    for family, (m, build, measure) in measurers.items():
        start = time.perf_counter()
        module = build()
        build_s = time.perf_counter() - start
        vision = m.compile("vision", ("flops",))
        per_shape, diff = [], None
        for sw, sh in TORCH_SHAPES[:n_shapes]:
            compiled = vision(sw, sh)
            start = time.perf_counter()
            got = measure(module, int(compiled["n_crops"]))["vision_total"]
            per_shape.append(time.perf_counter() - start)
            want = int(compiled["flops"])
            if got != want and diff is None:
                diff = f"{sw}x{sh}: torch {got} != compiled {want}"
        t_torch = statistics.median(per_shape)
        checks.append(
            (f"compiled vision flops == torch FlopCounterMode, {family}: {len(per_shape)} shapes", diff)
        )
        figures.append(
            Figure(
                f"compiled / torch {family}",
                t_torch * rates[family],
                "x per shape",
                (ABOVE, 1e6),
                f"FlopCounterMode on meta {t_torch:.2f} s/shape, median of {len(per_shape)} "
                f"(module built once in {build_s:.1f} s, not counted)",
            )
        )


# Cold paths: a fresh process each, as a user starts them. Targets: every README command under
# 1.5 s (validation measures real modules: left out), a compile or closed form from Python under 2 s.
README_TARGET_S, PYTHON_TARGET_S = 1.5, 2.0
PYTHON_COLD = {  # figure -> code
    "cold Python compile request flops, memory_bytes, time_s, deepseek-ocr": (
        "import numpy as np, symcost; m = symcost.load('deepseek-ocr', preset='gundam'); "
        "ev = m.compile('request', ['flops', 'memory_bytes', 'time_s'], hardware='h100-sxm'); "
        "ev(np.array([1280, 1654]), np.array([720, 2339]), prompt_tokens=12, new_tokens=500)"
    ),
    "cold Python formula prefill time_s, deepseek-ocr": (
        "import symcost; symcost.load('deepseek-ocr').formula('prefill', 'time_s', hardware='h200')"
    ),
}


def readme_commands() -> list[str]:
    """Every ``symcost`` command in the README's bash blocks, as written (tests/test_readme.py
    runs the same list)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for body in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in body.splitlines():
            for part in line.split("&&"):
                part = part.split(" #")[0].strip()
                if part.startswith("symcost "):
                    out.append(part)
    return out


def bench_simulate(n_pages: int, figures: list, checks: list) -> None:
    """``symcost.simulate``: ``n_pages`` Gundam A4 pages (lognormal output tokens, mean 1,000, sd
    300), offline, vLLM defaults on an A100-40GB; and the degenerate case against plan's wave."""
    from symcost.simulation import Arrivals, engine_limits, workload

    m = symcost.load("deepseek-ocr", preset="gundam", runtime="vllm")
    start = time.perf_counter()
    symcost.simulate(m, "a100-40gb", workload([(1654, 2339)], 8, 12, 8))  # compiles the step
    compile_s = time.perf_counter() - start
    work = workload([(1654, 2339)], n_pages, 12, new_tokens_dist="lognormal:mean=1000,sd=300")
    start = time.perf_counter()
    r = symcost.simulate(m, "a100-40gb", work)
    t = time.perf_counter() - start
    figures.append(
        Figure(
            "simulate deepseek-ocr",
            t,
            "s",
            (BELOW, 10.0),
            f"{n_pages:,} pages, {r['output_tokens']:,} output tokens, {r['steps']:,} steps "
            f"({r['output_tokens_per_s']:,.0f} tokens/s simulated); the step compiled once before "
            f"in {compile_s:.1f} s, not counted",
        )
    )
    batch, new = 8, 50  # pages = max_num_seqs = B, no budget: the makespan is plan's wave time
    eng = engine_limits(
        m, symcost.HARDWARE["a100-40gb"], Arrivals(), max_num_seqs=batch, max_num_batched_tokens="unlimited"
    )
    got = symcost.simulate(m, "a100-40gb", workload([(1654, 2339)], batch, 12, new), engine=eng)["makespan_s"]
    want = m.evaluate(
        1654, 2339, "request", prompt_tokens=12, new_tokens=new, batch=batch, hardware="a100-40gb"
    )
    diff = None if abs(got - want["time_s"]) <= 1e-3 * want["time_s"] else f"{got} s != {want['time_s']} s"
    checks.append((f"simulate makespan == plan's wave time, deepseek-ocr: {batch} pages", diff))


def bench_cold(n_cold: int, figures: list) -> None:
    """Fresh processes (best of ``n_cold``), in a scratch folder: the README's sweep writes files."""
    exe = Path(sys.executable).parent / "symcost"
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "symcost.cli"]
    commands = {"cold import sympy": ([sys.executable, "-c", "import sympy"], None)}
    for command in readme_commands():
        if not command.startswith("symcost validate"):
            commands[f"cold {command}"] = (cli + shlex.split(command)[1:], README_TARGET_S)
    for name, code in PYTHON_COLD.items():
        commands[name] = ([sys.executable, "-c", code], PYTHON_TARGET_S)
    base = None
    with tempfile.TemporaryDirectory(prefix="symcost-bench-") as scratch:
        for name, (cmd, target) in commands.items():
            t = best_of(
                lambda cmd=cmd: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=scratch),
                n_cold,
            )
            base = base or t
            figures.append(
                Figure(
                    name,
                    t,
                    "s",
                    None if target is None else (BELOW, target),
                    f"fresh process, best of {n_cold}; {t / base:.2f}x import sympy",
                )
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds; targets not enforced")
    ap.add_argument(
        "--perturb",
        action="store_true",
        help="TEST ONLY: add 1 to one compiled FLOP count before the agreement check, "
        "which must then fail the run (torch and cold-start figures are not measured)",
    )
    args = ap.parse_args(argv)
    n_points, n_numeric, n_shapes, n_cold, repeat, n_pages = (
        (2_000, 3, 1, 1, 1, 2_000) if args.smoke else (1_000_000, 300, 3, 3, 5, 100_000)
    )
    print(f"machine: {machine()}")
    print(
        f"mode: {'smoke (targets not enforced)' if args.smoke else 'full'}; full model = stage "
        f"request with N = 1 (vision + prefill); values {', '.join(METRICS)}; deepseek-ocr at "
        f"preset gundam"
    )
    figures: list[Figure] = []
    checks: list[tuple[str, str | None]] = []  # (what, first difference or None)
    rates = {f: bench_family(f, n_points, n_numeric, repeat, args.perturb, figures, checks) for f in FAMILIES}
    if not args.perturb:
        bench_torch(rates, n_shapes, figures, checks)
        bench_cold(n_cold, figures)
        bench_simulate(n_pages, figures, checks)

    print()
    for f in figures:
        print(f.line(enforce=not args.smoke))
    print()
    for what, diff in checks:
        print(f"agreement {what}: {'pass' if diff is None else 'FAIL (' + diff + ')'}")
    failed = [f"{what} ({diff})" for what, diff in checks if diff is not None]
    if not args.smoke:
        failed += [
            f"{f.name} {f.value:.3g} {f.unit} misses {f.target[0][0]} {f.target[1]:.3g}"
            for f in figures
            if not f.met()
        ]
    print("\nresult: " + ("pass" if not failed else "FAIL: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
