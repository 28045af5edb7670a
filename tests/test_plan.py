"""`symcost plan`: the largest batch that fits, throughput, and inverse queries, each answer
checked against forward evaluations of the same closed forms."""

import json
import math

import pytest

import symcost
from symcost.cli import main
from symcost.hardware import HARDWARE
from symcost.plan import DAY_S, capacity_bytes, for_throughput, largest_image, plan

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
CONTRACT = {
    "max_batch",
    "memory_bytes",
    "memory_capacity_bytes",
    "ttft_s",
    "tpot_s",
    "tokens_per_s",
    "pages_per_s",
    "pages_per_day",
    "bound",
}


def run_json(capsys, *argv):
    assert main(["plan", "deepseek-ocr", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("runtime", ["vllm", "hf"])
def test_max_batch_fits_and_one_more_does_not(capsys, runtime):
    out = run_json(capsys, *A4, "--runtime", runtime)
    assert CONTRACT <= set(out)
    assert out["memory_bytes"] <= out["memory_capacity_bytes"]
    m = symcost.load("deepseek-ocr", preset="gundam", runtime=runtime)
    more = m.evaluate(1654, 2339, "request", prompt_tokens=12, new_tokens=1000, batch=out["max_batch"] + 1)
    assert more["memory_bytes"] > out["memory_capacity_bytes"]
    assert out["memory_capacity_bytes"] == capacity_bytes(m, HARDWARE["a100-40gb"])
    # throughput is the batch over the request's time, per second and per day
    assert out["pages_per_s"] == pytest.approx(out["max_batch"] / out["time_s"])
    assert out["pages_per_day"] == pytest.approx(out["pages_per_s"] * DAY_S)
    assert out["tokens_per_s"] == pytest.approx(out["pages_per_s"] * 1000)
    assert set(out["bound"]) == {"vision", "prefill", "decode"}


def test_fixed_batch_gives_the_same_keys(capsys):
    out = run_json(capsys, *A4, "--runtime", "vllm", "--batch", "8")
    assert CONTRACT <= set(out) and out["batch"] == 8
    m = symcost.load("deepseek-ocr", preset="gundam", runtime="vllm")
    r = m.evaluate(1654, 2339, "request", prompt_tokens=12, new_tokens=1000, batch=8, hardware="a100-40gb")
    assert (out["memory_bytes"], out["ttft_s"], out["tpot_s"]) == (
        r["memory_bytes"],
        r["ttft_s"],
        r["tpot_s"],
    )


def test_largest_image_under_a_flop_budget():
    """Between the untiled and the tiled cost of an A4 page, the answer is the largest untiled
    A4 image: it fits the budget and the next image on the ray does not."""
    m = symcost.load("deepseek-ocr", preset="gundam")
    point = {"prompt_tokens": 12, "new_tokens": 1, "batch": 1}
    untiled = m.evaluate(420, 594, "request", **point)["flops"]
    tiled = m.evaluate(630, 891, "request", **point)["flops"]
    budget = (untiled + tiled) / 2
    ans = largest_image(m, "flops", budget, (210, 297), point)
    k = ans["width"] // 210
    assert (ans["width"], ans["height"]) == (210 * k, 297 * k)
    assert m.evaluate(210 * k, 297 * k, "request", **point)["flops"] <= budget
    assert m.evaluate(210 * (k + 1), 297 * (k + 1), "request", **point)["flops"] > budget
    assert max(210 * k, 297 * k) <= 640 < max(210 * (k + 1), 297 * (k + 1))  # the shortcut edge


def test_largest_image_under_a_ttft_budget_deepseek_ocr2():
    m = symcost.load("deepseek-ocr2")
    point = {"prompt_tokens": 12, "new_tokens": 1, "batch": 1}
    times = [m.evaluate(16 * k, 9 * k, "request", hardware="h200", **point)["ttft_s"] for k in (20, 60, 200)]
    budget = (times[0] + times[-1]) / 2
    ans = largest_image(m, "ttft_s", budget, (16, 9), point, hardware="h200")
    k = ans["width"] // 16
    assert m.evaluate(16 * k, 9 * k, "request", hardware="h200", **point)["ttft_s"] <= budget
    later = [
        m.evaluate(16 * j, 9 * j, "request", hardware="h200", **point)["ttft_s"]
        for j in range(k + 1, 65_535 // 16 + 1, 97)
    ]
    assert all(t > budget for t in later)  # no larger image on the ray fits (sampled)


def test_pages_per_day(capsys):
    m = symcost.load("deepseek-ocr", preset="gundam", runtime="vllm")
    point = {"width": 1654, "height": 2339, "prompt_tokens": 12, "new_tokens": 1000}
    one = plan(m, "a100-40gb", point)
    target = one["pages_per_day"] * 0.5
    t = for_throughput(m, "a100-40gb", point, target)
    b = t["batch_for_target"]
    assert plan(m, "a100-40gb", point, batch=b)["pages_per_day"] >= target
    assert plan(m, "a100-40gb", point, batch=b - 1)["pages_per_day"] < target
    many = for_throughput(m, "a100-40gb", point, 10 * one["pages_per_day"])
    assert many["devices"] == math.ceil(10 * one["pages_per_day"] / one["pages_per_day"]) == 10
    assert many["batch_for_target"] is None  # one device cannot


def test_a_mix_fits_every_image(capsys):
    out = run_json(
        capsys,
        "--preset",
        "gundam",
        "--image",
        "640x640",
        "--image",
        "4000x4000",
        "--new-tokens",
        "500",
        "--hardware",
        "h100-sxm",
        "--runtime",
        "vllm",
    )
    sizes = [
        run_json(
            capsys,
            "--preset",
            "gundam",
            "--image",
            img,
            "--new-tokens",
            "500",
            "--hardware",
            "h100-sxm",
            "--runtime",
            "vllm",
        )
        for img in ("640x640", "4000x4000")
    ]
    assert out["max_batch"] == min(s["max_batch"] for s in sizes)
    assert len(out["images"]) == 2


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--preset", "gundam", "--hardware", "h200"], "--image"),
        (A4 + ["--aspect", "1:1"], "--aspect"),
        (
            ["--preset", "gundam", "--image", "640x640", "--hardware", "h200", "--max-flops", "-1"],
            "--max-flops",
        ),
        (
            ["--preset", "gundam", "--image", "640x640", "--prompt-tokens", "1048576", "--hardware", "l4"],
            "plan: one request needs",
        ),
    ],
)
def test_plan_refuses(capsys, argv, fragment):
    assert main(["plan", "deepseek-ocr", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
