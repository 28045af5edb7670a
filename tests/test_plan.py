"""`symcost plan`: the largest batch that fits, what a wave serves (one image or a mix), memory
at the peak, and inverse queries on the sweep's ray, each answer checked against forward
evaluations of the same closed forms; API misuse is one SymcostError naming the parameter."""

import ast
import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost
from symcost import SymcostError
from symcost.cli import main
from symcost.hardware import HARDWARE
from symcost.plan import DAY_S, BudgetUnmet, capacity_bytes, for_throughput, largest_image, max_batch, plan
from symcost.sweep import Ray

ROOT = Path(__file__).resolve().parents[1]
A4 = [
    "--preset",
    "gundam",
    "--image",
    "1654x2339",
    "--prompt-tokens",
    "12",
    "--new-tokens",
    "1000",
    "--hardware",
    "a100-40gb",
]
PAGE = {"width": 1654, "height": 2339, "prompt_tokens": 12, "new_tokens": 1000}
WIDE = {**PAGE, "width": 1280, "height": 720}
CONTRACT = {
    "max_batch",
    "batch",
    "mix",
    "flops",
    "memory_bytes",
    "memory_capacity_bytes",
    "fits",
    "peak",
    "ttft_s",
    "tpot_s",
    "tokens_per_s",
    "pages_per_s",
    "pages_per_day",
    "bound",
}
STEPS = {"vision", "prefill", "next_token", "decode"}


@pytest.fixture(scope="module")
def models():
    """Models by (family, options), shared by the API and by CLI runs (a compiled function is
    built once per model)."""
    cache: dict = {}

    def get(family: str, **options):
        key = (family, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = symcost.load(family, **options)
        return cache[key]

    return get


@pytest.fixture
def cli(models, monkeypatch, capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of `symcost plan` with the shared models."""
    import symcost.commands.plan as command

    monkeypatch.setattr(command, "load_model", lambda family, options: models(family.name, **options))

    def run(*argv):
        code = main(["plan", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def vllm(models):
    return models("deepseek-ocr", preset="gundam", runtime="vllm")


# -- one image --------------------------------------------------------------------------------
def test_max_batch_fits_and_one_more_does_not(models, cli):
    code, out, _ = cli("deepseek-ocr", *A4, "--runtime", "vllm", "--json")
    out = json.loads(out)
    assert code == 0 and CONTRACT <= set(out) and out["fits"]
    assert out["memory_bytes"] <= out["memory_capacity_bytes"]
    m = vllm(models)
    more = m.evaluate(1654, 2339, "request", prompt_tokens=12, new_tokens=1000, batch=out["max_batch"] + 1)
    assert more["memory_bytes"] > out["memory_capacity_bytes"]
    assert out["memory_capacity_bytes"] == capacity_bytes(m, HARDWARE["a100-40gb"])
    # throughput is the batch over the wave's time, per second and per day
    assert out["pages_per_s"] == pytest.approx(out["max_batch"] / out["time_s"])
    assert out["pages_per_day"] == pytest.approx(out["pages_per_s"] * DAY_S)
    assert out["tokens_per_s"] == pytest.approx(out["pages_per_s"] * 1000)
    assert set(out["bound"]) == STEPS and out["mix"] == [{"image": "1654x2339", "requests": out["batch"]}]


def test_fixed_batch_gives_the_wave_of_that_batch(models):
    m = vllm(models)
    out = plan(m, "a100-40gb", PAGE, batch=8)
    assert CONTRACT <= set(out) and out["batch"] == 8
    r = m.evaluate(**PAGE, batch=8, stage="request", hardware="a100-40gb", steps=True)
    assert (out["memory_bytes"], out["flops"], out["ttft_s"], out["tpot_s"]) == (
        r["memory_bytes"],
        r["flops"],
        r["ttft_s"],
        r["tpot_s"],
    )
    assert out["bound"] == {k: s["bound"] for k, s in r["steps"].items()}


# -- a mix is one wave ------------------------------------------------------------------------
def test_a_mix_is_one_wave_every_figure_of_it(models):
    """The issue's mix (an A4 page and a 1280x720 image, 1000 tokens): the batch that fits, the
    memory, FLOPs, times and bounds are those of one wave holding both in equal parts, each the
    share-weighted mean of the images' figures at that batch; the batch plan chose and the
    same batch given give the same figures; one more request does not fit."""
    m = vllm(models)
    out = plan(m, "a100-40gb", [PAGE, WIDE])
    b = out["batch"]
    assert b == out["max_batch"] and [s["requests"] for s in out["mix"]] == [b // 2, b - b // 2]
    runs = [
        (s["requests"], m.evaluate(**s["point"], batch=b, stage="request", hardware="a100-40gb", steps=True))
        for s in out["mix"]
    ]
    assert out["memory_bytes"] == math.ceil(sum(n * r["memory_bytes"] for n, r in runs) / b)
    assert out["flops"] == math.ceil(sum(n * r["flops"] for n, r in runs) / b)
    for key in ("ttft_s", "tpot_s", "time_s"):
        assert out[key] == pytest.approx(sum(n * r[key] for n, r in runs) / b, rel=1e-12)
    for step in STEPS:
        shares = {
            k: sum(n * r["steps"][step][f"{k}_bound_s"] for n, r in runs)
            for k in ("compute", "memory", "launch")
        }
        assert out["bound"][step] == max(shares, key=shares.get)
    assert out["tokens_per_s"] == pytest.approx(out["pages_per_s"] * 1000, rel=1e-12)
    assert plan(m, "a100-40gb", [PAGE, WIDE], batch=b) == out  # --batch 269 gave other figures
    over = plan(m, "a100-40gb", [PAGE, WIDE], batch=b + 1)
    assert not over["fits"] and over["memory_bytes"] > over["memory_capacity_bytes"]


IMAGES = [(1, 1), (640, 640), (1280, 720), (1654, 2339), (4000, 3000)]


@settings(max_examples=5)
@given(
    mix=st.lists(st.sampled_from(IMAGES), min_size=1, max_size=3),
    batch=st.one_of(st.none(), st.integers(1, 400)),
    order=st.randoms(use_true_random=False),
)
def test_any_mix_is_one_consistent_wave(models, mix, batch, order):
    """For any mix and fixed N: tokens/s = pages/s x N; the shares add up to the batch and stay
    within one request of the proportion; memory is the wave's (the compiled memory of each image
    at the batch, share-weighted) and its parts at the peak add up to it; fits says whether it
    fits, and the largest batch fits; the steps' times add up to the wave's; the order of the
    images changes nothing."""
    m = vllm(models)
    points = [{"width": w, "height": h, "prompt_tokens": 12, "new_tokens": 300} for w, h in mix]
    out = plan(m, "h100-sxm", points, batch=batch)
    shuffled = list(points)
    order.shuffle(shuffled)
    assert plan(m, "h100-sxm", shuffled, batch=batch) == out
    b = out["batch"]
    assert b == (batch or out["max_batch"])
    assert out["tokens_per_s"] == pytest.approx(out["pages_per_s"] * 300, rel=1e-12)
    assert out["pages_per_day"] == pytest.approx(out["pages_per_s"] * DAY_S, rel=1e-12)
    assert sum(s["requests"] for s in out["mix"]) == b
    for s in out["mix"]:
        weight = sum(p == s["point"] for p in points) / len(points)
        assert abs(s["requests"] - b * weight) < 1
    ev = m.compile("request", ["memory_bytes"])
    memory = sum(s["requests"] * int(ev(**s["point"], batch=b)["memory_bytes"]) for s in out["mix"])
    assert out["memory_bytes"] == -(-memory // b)
    peak = out["peak"]
    assert peak["weight_bytes"] + peak["kv_bytes"] + peak["other_bytes"] == out["memory_bytes"]
    assert peak["kv_bytes"] >= 0 and peak["other_bytes"] >= 0
    assert out["fits"] == (out["memory_bytes"] <= out["memory_capacity_bytes"])
    assert out["fits"] or batch is not None
    assert sum(out["step_time_s"].values()) == pytest.approx(out["time_s"], rel=1e-9)


def test_the_order_of_images_changes_nothing(cli):
    """The issue's case: swapping 1x1 and 1654x2339 changed the bounds (the first image's)."""
    argv = (
        "deepseek-ocr",
        "--preset",
        "gundam",
        "--hardware",
        "h200",
        "--runtime",
        "vllm",
        "--new-tokens",
        "100",
    )
    one = cli(*argv, "--image", "1x1", "--image", "1654x2339")
    two = cli(*argv, "--image", "1654x2339", "--image", "1x1")
    assert one[0] == 0 and one == two
    assert re.search(r"^ +images  1654x2339 x [0-9,]+, 1x1 x", one[1], flags=re.M)  # the costlier first


def test_a_batch_that_does_not_fit_says_so(cli):
    argv = ("deepseek-ocr", "--preset", "gundam", "--image", "1654x2339", "--hardware", "h200")
    argv += ("--new-tokens", "1000", "--runtime", "vllm", "--batch", "5000")
    code, text, _ = cli(*argv)
    assert code == 0 and re.search(
        r"memory  600\.02 GB of 135\.68 GB: DOES NOT FIT \(the largest batch", text
    )
    code, out, _ = cli(*argv, "--image", "1x1", "--json")
    out = json.loads(out)
    assert out["fits"] is False and out["memory_bytes"] > out["memory_capacity_bytes"]


# -- memory at the peak -----------------------------------------------------------------------
def test_memory_parts_are_those_of_the_step_where_it_peaks(models):
    """At batch 1 the peak is in vision (no cache yet); with fp8 on h100-sxm at the largest batch
    it is in prefill, holding the prefill's cache (23.7 GB), not the final one (49.6 GB)."""
    m = vllm(models)
    one = plan(m, "a100-40gb", PAGE, batch=1)
    assert one["peak"]["steps"] == ["vision"] and one["peak"]["kv_bytes"] == 0
    fp8 = plan(m, "h100-sxm", PAGE, dtype="fp8")
    b = fp8["batch"]
    r = m.evaluate(**PAGE, batch=b, stage="request", dtype="fp8")
    assert fp8["peak"]["steps"] == ["prefill"]
    assert fp8["peak"]["kv_bytes"] == b * r["prefill_tokens"] * m.kv_elems_per_token * 1  # fp8: 1 B
    assert fp8["peak"]["kv_bytes"] < r["kv_bytes"]
    for p in (one, fp8):
        assert sum(p["peak"][k] for k in ("weight_bytes", "kv_bytes", "other_bytes")) == p["memory_bytes"]


@pytest.mark.parametrize(
    "family,runtime", [("deepseek-ocr", "hf"), ("deepseek-ocr", "vllm"), ("deepseek-ocr2", "hf")]
)
def test_the_steps_of_a_request_are_its_parts(models, family, runtime):
    """Per step (vision, prefill, next token, decode): the largest memory is the request's, the
    cache after the last step is the request's, the cache never exceeds what the step holds
    beyond weights, and the steps' times add up to the request's."""
    m = models(family, runtime=runtime)
    r = m.evaluate(
        1654, 2339, "request", prompt_tokens=12, new_tokens=300, batch=7, hardware="h200", steps=True
    )
    steps = r["steps"]
    assert set(steps) == STEPS
    assert max(s["memory_bytes"] for s in steps.values()) == r["memory_bytes"]
    assert steps["decode"]["kv_bytes"] == r["kv_bytes"] and steps["vision"]["kv_bytes"] == 0
    assert all(s["memory_bytes"] >= r["weight_bytes"] + s["kv_bytes"] for s in steps.values())
    assert sum(s["time_s"] for s in steps.values()) == pytest.approx(r["time_s"], rel=1e-12)


@pytest.mark.parametrize("stage", ["vision", "prefill", "decode", "request"])
def test_eval_memory_columns_add_up(stage, capsys):
    """weights + kv in + activations = memory, in JSON and in the table's titles."""
    argv = ["eval", "deepseek-ocr", "--stage", stage, "--batch", "3"]
    argv += {
        "vision": ["--image", "640x641"],
        "prefill": ["--image", "640x641", "--prompt-tokens", "20"],
        "decode": ["--kv-len", "500"],
        "request": ["--image", "640x641", "--new-tokens", "40"],
    }[stage]
    assert main([*argv, "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["weight_bytes"] + rec["kv_in_bytes"] + rec["activation_bytes"] == rec["memory_bytes"]
    assert (rec["kv_in_bytes"] > 0) == (stage == "decode")
    assert main(argv) == 0
    text = capsys.readouterr().out
    titles = [t.split(" [")[0] for t in re.split(r"\s{2,}", text.splitlines()[-2].strip())]
    parts = ["weights", "kv in", "activations"] if stage == "decode" else ["weights", "activations"]
    assert [t for t in titles if t in ("weights", "kv in", "activations")] == parts
    assert ("kv after" in titles) == (stage != "vision")
    assert "# memory = weights + " + ("kv in (" if stage == "decode" else "activations (") in text


# -- inverse questions on the sweep's ray ----------------------------------------------------
def _ray_values(m, metric, aspect, point, **kw):
    """Every long side of the ray and the metric there (the sweep's own ray)."""
    ray = Ray(("width", "height"), aspect, 1, 65_535)
    longs = np.arange(1, 65_536)
    w, h = ray.sides(longs)
    ev = m.compile("request", ["time_s" if metric == "ttft_s" else metric], **kw)
    return w, h, np.asarray(ev(w, h, **point)[metric])


@pytest.mark.parametrize("aspect", [(1654, 2339), (210, 297)])
def test_largest_image_under_a_flop_budget_is_on_the_sweeps_ray(models, aspect):
    """An A4 page's own aspect held only exact multiples (no image under 4e12); a4 gave 420x594
    where 453x640 (the largest untiled image of the ray) costs the same."""
    m = vllm(models)
    point = {"prompt_tokens": 12, "new_tokens": 1000, "batch": 1}
    ans = largest_image(m, "flops", 4e12, aspect, point)
    assert (ans["width"], ans["height"], ans["batch"]) == (453, 640, 1)
    assert Ray(("width", "height"), aspect, 1, 65_535).locate({"width": 453, "height": 640}) == 640
    w, h, flops = _ray_values(m, "flops", aspect, point)
    assert flops[639] == ans["value"] <= 4e12 and (flops[640:] > 4e12).all()
    assert ans["constant_from"] is None


def test_largest_image_any_size_when_cost_stops_changing(models, cli):
    m = vllm(models)
    point = {"prompt_tokens": 12, "new_tokens": 1000, "batch": 2}
    ans = largest_image(m, "memory_bytes", 1e12, (210, 297), point)
    w, h, memory = _ray_values(m, "memory_bytes", (210, 297), point)
    k = int(np.flatnonzero((w == ans["constant_from"][0]) & (h == ans["constant_from"][1]))[0])
    assert (memory[k:] == memory[-1]).all() and memory[k - 1] != memory[-1]
    code, text, _ = cli("deepseek-ocr", *A4, "--runtime", "vllm", "--batch", "2", "--max-memory-gb", "1000")
    assert code == 0
    assert f"any size (cost constant past {w[k]}x{h[k]}) at batch 2 (--max-memory-gb" in text


def test_largest_image_under_a_ttft_budget_says_its_batch(models, cli):
    """The answer holds at --batch (was: batch 1, unsaid); an unmet budget is said in ms, the
    flag's unit (was: seconds). Tiny never tiles: any size costs the same."""
    m = models("deepseek-ocr", preset="tiny", runtime="vllm")
    point = {"prompt_tokens": 12, "new_tokens": 1, "batch": 4}
    ttft = m.evaluate(800, 600, "request", hardware="h200", **point)["ttft_s"]
    ans = largest_image(m, "ttft_s", ttft * 1.01, (4, 3), point, hardware="h200")
    assert ans["batch"] == 4 and ans["value"] == pytest.approx(ttft, rel=1e-9)
    assert ans["constant_from"] == [1, 1] and (ans["width"], ans["height"]) == (65_535, 49_151)
    argv = ("deepseek-ocr", "--preset", "tiny", "--runtime", "vllm", "--aspect", "4:3", "--hardware", "h200")
    argv += ("--batch", "4", "--prompt-tokens", "12")
    code, text, _ = cli(*argv, "--max-ttft-ms", f"{ttft * 1.01e3}")
    assert code == 0 and "any size (cost constant past 1x1) at batch 4 (--max-ttft-ms: ttft_s" in text
    code, _, err = cli(*argv, "--max-ttft-ms", "0.001")
    assert code == 2 and err.startswith(
        "symcost: error: --max-ttft-ms: no image at aspect 4:3 has ttft_s <= 0.001 ms at batch 4; "
        f"the least is {ttft * 1e3:.4g} ms (1x1)"
    )


def test_largest_image_on_a_computed_layout(monkeypatch):
    """A layout with no small set of breakpoints (every size its own grid) answers the same way."""
    from symcost import ComputedLayout, Family, Input, Serving, Stage, op, seq

    w = Input("width", sp.Symbol("W", integer=True, positive=True), 1, 4096, None, "px", "width")
    h = Input("height", sp.Symbol("H", integer=True, positive=True), 1, 4096, None, "px", "height")
    b = Input("batch", sp.Symbol("B", integer=True, positive=True), 1, 64, 1, "requests", "batch")
    gw, gh = sp.symbols("gw gh", integer=True, positive=True)
    layout = ComputedLayout(
        (w, h),
        (gw, gh),
        lambda x, y: (-(-x // 14), -(-y // 14)),
        (sp.ceiling(w.symbol / 14), sp.ceiling(h.symbol / 14)),
        (293, 293),
        "ceil(side / 14) patches a side",
    )

    def load():
        stage = lambda v: seq("encode", op("proj", "linear", tokens=v.batch * v.gw * v.gh, d_in=8, d_out=4))  # noqa: E731
        return symcost.Model(
            family=family,
            options={},
            layout=layout,
            named={},
            stages={"encode": Stage("encode", "a linear per patch", ("width", "height", "batch"), stage, ())},
            weights=lambda: seq("model"),
            kv_elems_per_token=0,
            runtime=symcost.get_runtime("hf"),
            settings=(("family", "toy"),),
        )

    family = Family(
        "toy",
        "a toy",
        (w, h, b),
        (),
        ("encode",),
        load,
        ("width", "height"),
        Serving("encode", "batch", "batch", "batch"),
    )
    monkeypatch.setattr(symcost.family, "_registry", lambda: {"toy": "tests:X"})
    monkeypatch.setattr(symcost.family, "_import", lambda target: family)
    m = symcost.load("toy")
    per_patch = 2 * 8 * 4
    ans = largest_image(m, "flops", 3 * per_patch * 100 * 57, (16, 9), {"batch": 3})
    assert (ans["gw"], ans["gh"]) == (100, 57) and ans["width"] == 1400  # 1400 x 788 px
    assert m.evaluate(1401, 788, stage="encode", batch=3)["flops"] > ans["budget"]


# -- the README's main job, device memory, item 15 ------------------------------------------
def test_readme_main_job_is_one_runtime_and_plan_prints_the_requests_flops(models, cli):
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, flags=re.S).group(1)
    commands = [shlex.split(c.strip()) for c in first.split("&&") if c.strip().startswith("symcost ")]
    runtimes = {c[c.index("--runtime") + 1] if "--runtime" in c else "hf" for c in commands}
    assert [c[1] for c in commands] == ["formulas", "plan"] and runtimes == {"vllm"}
    code, text, _ = cli(*commands[1][2:])
    assert code == 0
    r = vllm(models).evaluate(**PAGE, batch=1, stage="request")
    flops = re.search(
        r"FLOPs  ([0-9,.]+) TFLOP for the wave, ([0-9.]+) TFLOP per request \(convention torch\)", text
    )
    assert float(flops.group(2)) == pytest.approx(r["flops"] / 1e12, rel=5e-4)
    # device memory says what it is and where it was read: the driver's 40,960 MiB, 42.95 GB
    assert "38.65 GB (90% of 42.95 GB = 40.00 GiB, nvidia-smi total, modal-labs/modal-client PR" in text


def test_a_request_past_the_stages_own_bounds_is_answered(models):
    """prefill + N/2 passed kv_len's bound (2^20) though no stage of the request reads kv_len."""
    m = vllm(models)
    out = plan(m, "h200", {"width": 1654, "height": 2339, "prompt_tokens": 1_000_000, "new_tokens": 200_000})
    assert out["batch"] == out["max_batch"] == 1 and set(out["bound"]) == STEPS


def test_pages_per_day(models):
    m = vllm(models)
    one = plan(m, "a100-40gb", PAGE)
    target = one["pages_per_day"] * 0.5
    t = for_throughput(m, "a100-40gb", PAGE, target)
    b = t["batch_for_target"]
    assert plan(m, "a100-40gb", PAGE, batch=b)["pages_per_day"] >= target
    assert plan(m, "a100-40gb", PAGE, batch=b - 1)["pages_per_day"] < target
    many = for_throughput(m, "a100-40gb", PAGE, 10 * one["pages_per_day"])
    assert many["devices"] == 10 and many["batch_for_target"] is None  # one device cannot


# -- the engine learns what plan needs from the family --------------------------------------
def test_plan_names_no_input_of_any_family():
    names = set()
    for f in symcost.families():
        fam = symcost.get_family(f)
        m = symcost.load(f)
        names |= set(fam.input_names) | set(m.quantities) | {str(o) for o in m.layout.outputs}
    names -= {"batch"}  # also plan's own word for the size of a wave, an output key
    for path in ("symcost/plan.py", "symcost/commands/plan.py"):
        tree = ast.parse((ROOT / path).read_text())
        strings = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert not strings & names, (path, strings & names)


def test_symcost_modules_import_no_circle():
    """Every relative import in symcost/ (type-checking ones included): the graph has no cycle."""
    modules = {}
    for p in (ROOT / "symcost").rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict = {}
    for name, p in modules.items():
        package = name if p.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [node.module or ""]
                ).strip(".")
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    if target in modules and target != name:
                        graph[name].add(target)
    state: dict = {}

    def visit(n, path):
        state[n] = "open"
        for m in graph[n]:
            assert state.get(m) != "open", " -> ".join(path + [m])
            if m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--hardware", "h200"], "--image"),
        (A4[2:] + ["--aspect", "1:1"], "--aspect: applies only"),
        (
            ["--image", "640x640", "--image", "1280x720", "--hardware", "h200", "--max-flops", "1e13"],
            "--aspect: the images",
        ),
        (["--image", "640x640", "--prompt-tokens", "1048576", "--hardware", "l4"], "plan: one request needs"),
        (
            ["--image", "640x640", "--hardware", "h200", "--max-flops", "1"],
            "--max-flops: no image at aspect 1:1 has flops <= 1 FLOP at batch 1; the least is",
        ),
        (
            A4[2:] + ["--pages-per-day", "0"],
            "--pages-per-day: '0' is not a number of pages/day in [1e-06, 1e+15]",
        ),
    ],
)
def test_plan_refuses(cli, argv, fragment):
    code, out, err = cli("deepseek-ocr", "--preset", "gundam", "--runtime", "vllm", *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1 and fragment in err


def _api_misuse(m):
    """(label, call, the parameter the message starts with)"""
    pt = {"prompt_tokens": 12, "batch": 1}
    return [
        ("pages_per_day 0", lambda: for_throughput(m, "h200", PAGE, 0), "pages_per_day"),
        ("pages_per_day -1", lambda: for_throughput(m, "h200", PAGE, -1), "pages_per_day"),
        ("pages_per_day nan", lambda: for_throughput(m, "h200", PAGE, float("nan")), "pages_per_day"),
        ("pages_per_day inf", lambda: for_throughput(m, "h200", PAGE, float("inf")), "pages_per_day"),
        ("pages_per_day str", lambda: for_throughput(m, "h200", PAGE, "1000"), "pages_per_day"),
        ("pages_per_day 10**5000", lambda: for_throughput(m, "h200", PAGE, 10**5000), "pages_per_day"),
        ("metric misspelt", lambda: largest_image(m, "flop", 1e12, (1, 1), pt), "metric"),
        ("ttft without hardware", lambda: largest_image(m, "ttft_s", 1.0, (1, 1), pt), "hardware"),
        ("aspect 0", lambda: largest_image(m, "flops", 1e12, (0, 1), pt), "aspect"),
        ("aspect float", lambda: largest_image(m, "flops", 1e12, (1.5, 2), pt), "aspect"),
        ("aspect str", lambda: largest_image(m, "flops", 1e12, "a4", pt), "aspect"),
        ("budget nan", lambda: largest_image(m, "flops", float("nan"), (1, 1), pt), "budget"),
        ("budget -1", lambda: largest_image(m, "flops", -1, (1, 1), pt), "budget"),
        ("budget str", lambda: largest_image(m, "flops", "1e12", (1, 1), pt), "budget"),
        (
            "point with the image",
            lambda: largest_image(m, "flops", 1e12, (1, 1), {**pt, "width": 5}),
            "width",
        ),
        ("point not a dict", lambda: largest_image(m, "flops", 1e12, (1, 1), [1]), "point"),
        ("compile dtype None", lambda: m.compile(dtype=None), "dtype"),
        (
            "efficiency 10**5000",
            lambda: m.evaluate(640, 640, hardware="h200", compute_efficiency=10**5000),
            "compute_efficiency",
        ),
        ("timedelta64 width", lambda: m.evaluate(np.timedelta64(640), 640), "width"),
        ("timedelta64 array", lambda: m.tile_grid(np.array([640], dtype="m8[s]"), 640), "width"),
        ("masked array", lambda: m.tile_grid(np.ma.array([640, 0], mask=[0, 1]), 640), "width"),
        ("masked array compiled", lambda: m.compile("vision")(np.ma.array([640]), 640), "width"),
        ("steps str", lambda: m.evaluate(640, 640, steps="yes"), "steps"),
        ("plan no points", lambda: plan(m, "h200", []), "points"),
        ("plan points str", lambda: plan(m, "h200", "1654x2339"), "points"),
        ("plan point list", lambda: plan(m, "h200", [[1654, 2339]]), "points"),
        ("plan batch in point", lambda: plan(m, "h200", {**PAGE, "batch": 2}), "batch"),
        ("plan batch 0", lambda: plan(m, "h200", PAGE, batch=0), "batch"),
        ("plan batch float", lambda: plan(m, "h200", PAGE, batch=2.0), "batch"),
        ("plan unknown input", lambda: plan(m, "h200", {**PAGE, "kv_len": 5}), "kv_len"),
        ("plan hardware", lambda: plan(m, "tpu", PAGE), "hardware"),
        ("plan model", lambda: plan("deepseek-ocr", "h200", PAGE), "model"),
        ("plan convention", lambda: plan(m, "h200", PAGE, convention="x"), "convention"),
        ("max_batch dtype", lambda: max_batch(m, "h200", PAGE, dtype="int8"), "dtype"),
    ]


def test_plan_api_misuse_is_one_symcost_error(models):
    for label, call, parameter in _api_misuse(vllm(models)):
        with pytest.raises(SymcostError) as e:
            call()
        message = str(e.value)
        assert isinstance(e.value, ValueError) and not isinstance(e.value, BudgetUnmet), label
        assert "\n" not in message and len(message) < 400 and message.startswith(parameter + ": "), (
            label,
            message,
        )
