"""`symcost simulate`: the engine step as the decoder's general case, the degenerate equality with
`plan`, the hand-worked schedule, an independent implementation of the scheduler's rules, the
properties of any run, and the command line."""

import json
from collections import deque
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcost
from symcost import SymcostError
from symcost.cli import main
from symcost.dtypes import precision
from symcost.hardware import get_hardware, op_times
from symcost.simulation import (
    PERCENTILES,
    Arrivals,
    StepTimer,
    Workload,
    engine_limits,
    parse_distribution,
    read_workload,
    simulate,
    workload,
)
from symcost.tree import captured

A100 = get_hardware("a100-40gb")
A4 = ["--preset", "gundam", "--image", "1654x2339", "--prompt-tokens", "12", "--hardware", "a100-40gb"]
CONTRACT = {"pages", "makespan_s", "pages_per_s", "pages_per_day", "output_tokens_per_s", "ttft_s", "tpot_s"}
CONTRACT |= {"e2e_s", "mean_batch", "kv_peak_tokens", "preemptions", "bound"}
SETTLED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def models():
    """Each family's model under each runtime, built once (trees, compiled steps are memoised)."""
    out = {}
    for family, opts in (("deepseek-ocr", dict(preset="gundam")), ("deepseek-ocr2", {})):
        for runtime in ("vllm", "hf"):
            out[family, runtime] = symcost.load(family, runtime=runtime, **opts)
    out["tiny"] = symcost.load("deepseek-ocr", preset="tiny", runtime="vllm")
    out["lighton-ocr", "vllm"] = symcost.load("lighton-ocr", runtime="vllm")  # dense, images batched
    return out


def _values(m, stage, **inputs):
    """A stage tree built from plain ints (the numeric model)."""
    grid = (1,) * len(m.layout.outputs)
    if m.uses_layout(stage):
        grid = tuple(int(g) for g in m.tile_grid(inputs["width"], inputs["height"]))
    return m._build(m.stage(stage), m.values(grid, m.check_inputs(stage, inputs)), precision())


def _step(m, seqs, tokens, pairs, keys):
    return _values(m, "step", batch=seqs, step_tokens=tokens, score_pairs=pairs, attended_keys=keys)


# -- the step: the decoder's general case ----------------------------------------------------


@settings(SETTLED, max_examples=12)
@given(
    key=st.sampled_from([("deepseek-ocr", "vllm"), ("deepseek-ocr", "hf"), ("deepseek-ocr2", "vllm")]),
    batch=st.integers(1, 64),
    past=st.integers(0, 9000),
    size=st.sampled_from([(1654, 2339), (800, 600), (3000, 500)]),
    prompt=st.integers(0, 300),
)
def test_uniform_step_is_decode_and_prefill(models, key, batch, past, size, prompt):
    """The step at B sequences of 1 token after L is the decode stage (cost field for cost field,
    and its time replayed as a graph); at B sequences of S0 tokens from an empty cache its
    forward is the prefill stage and its sampling the request's first token."""
    m = models[key]
    keys = batch * (past + 1)
    step = _step(m, batch, batch, keys, keys)
    decode = _values(m, "decode", kv_len=past, batch=batch)
    assert step.cost == decode.cost
    r = m.evaluate(stage="decode", kv_len=past, batch=batch, hardware=A100)
    timer = StepTimer(m, A100, precision(), 1.0, 1.0)
    assert timer.step(batch, batch, keys, keys, graph=True)[0] == pytest.approx(r["time_s"], rel=1e-12)
    point = dict(width=size[0], height=size[1], prompt_tokens=prompt, batch=batch)
    s0 = m.evaluate(stage="prefill", **point)["prefill_tokens"]
    step = _step(m, batch, batch * s0, batch * s0 * s0, batch * s0)
    assert step.find("decoder").cost == _values(m, "prefill", **point).cost
    request = _values(m, "request", **point, new_tokens=1)
    assert step.find("next_token").cost == request.find("next_token").cost


@settings(SETTLED, max_examples=15)
@given(
    key=st.sampled_from([("deepseek-ocr", "vllm"), ("deepseek-ocr", "hf"), ("deepseek-ocr2", "vllm")]),
    seqs=st.integers(1, 300),
    extra=st.integers(0, 9000),
    cached=st.integers(0, 100_000),
    wide=st.integers(0, 10**7),
)
def test_step_timer_equals_the_numeric_model(models, key, seqs, extra, cached, wide):
    m = models[key]
    tokens = seqs + extra
    keys = tokens + cached
    pairs = keys + wide
    r = m.evaluate(
        stage="step", batch=seqs, step_tokens=tokens, score_pairs=pairs, attended_keys=keys, hardware=A100
    )
    got, parts = StepTimer(m, A100, precision(), 1.0, 1.0).step(seqs, tokens, pairs, keys, graph=False)
    assert got == pytest.approx(r["time_s"], rel=1e-12)
    bound = (r["compute_bound_s"], r["memory_bound_s"], r["launch_bound_s"])
    assert parts == pytest.approx(bound, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("key", [("deepseek-ocr", "vllm"), ("deepseek-ocr2", "hf")])
def test_decode_run_sums_each_side_then_takes_the_max(models, key):
    """k decode steps at once: per op, compute, memory and launches summed over the steps, then
    the max (the request stage's rule); the first and last step as single steps."""
    m = models[key]
    timer = StepTimer(m, A100, precision(), 1.0, 1.0)
    seqs, keys, k = 37, 37 * 700, 23
    total, parts, first, last = timer.run(seqs, keys, k)
    sums, ends = 0, []
    for j in range(k):
        at = keys + seqs * j
        leaves = captured(_step(m, seqs, seqs, at, at)).leaves()
        t = np.array([op_times(c, A100, precision(), m.runtime, True) for _, c, _ in leaves], dtype=float)
        sums = sums + t
        ends.append(t.max(axis=1).sum())
    assert total == pytest.approx(sums.max(axis=1).sum(), rel=1e-12)
    assert sum(parts) == pytest.approx(total, rel=1e-12)
    assert (first, last) == pytest.approx((ends[0], ends[-1]), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["deepseek-ocr", "deepseek-ocr2"])
def test_step_flops_equal_flop_counter(family):
    """The step's FLOPs at a mixed batch's aggregates = FlopCounterMode on the real decoder over
    the same sequences (one forward per sequence with its own cache, as a varlen kernel runs)."""
    from validation.step import compare_step

    rng = np.random.default_rng(7)
    for _ in range(2):
        comp = [(1, int(rng.integers(1, 3000))), (int(rng.integers(2, 90)), 0)]
        comp.append((int(rng.integers(2, 40)), int(rng.integers(1, 500))))
        analytic, measured = compare_step(family, comp)
        assert analytic == measured, comp


# -- the degenerate equality with plan -------------------------------------------------------


@pytest.mark.parametrize(
    "key,batch,new",
    [
        (("deepseek-ocr", "vllm"), 100, 1000),
        (("deepseek-ocr", "vllm"), 8, 50),
        (("deepseek-ocr", "hf"), 8, 50),
        (("deepseek-ocr2", "vllm"), 8, 50),
        (("deepseek-ocr2", "hf"), 8, 50),
        (("lighton-ocr", "vllm"), 8, 50),
    ],
)
def test_degenerate_equality_with_plan(models, key, batch, new):
    """B identical pages, offline, max_num_seqs (or batch) B, no token budget, no host time: the
    makespan is plan's one-wave time at batch B (within 0.1 %; in fact to rounding)."""
    m = models[key]
    work = workload([(1654, 2339)], batch, 12, new)
    if key[1] == "vllm":
        eng = engine_limits(m, A100, Arrivals(), max_num_seqs=batch, max_num_batched_tokens="unlimited")
    else:
        eng = engine_limits(m, A100, Arrivals(), batch=batch)
    r = simulate(m, A100, work, engine=eng)
    point = dict(width=1654, height=2339, prompt_tokens=12, new_tokens=new, batch=batch)
    wave = m.evaluate(stage="request", hardware=A100, **point)["time_s"]  # plan --batch B's time_s
    assert r["makespan_s"] == pytest.approx(wave, rel=1e-3)
    assert r["steps"] == new and r["preemptions"] == 0


# -- the hand-worked schedule (docs/simulate.md) ---------------------------------------------

HAND = Workload(
    width=np.array([0, 800, 0, 0]),
    height=np.array([0, 600, 0, 0]),
    prompt_tokens=np.array([30, 3, 20, 10]),
    new_tokens=np.array([4, 3, 2, 2]),
)
HAND_LIMITS = dict(
    max_num_seqs=3, max_num_batched_tokens=64, block_size=16, num_gpu_blocks_override=7, max_model_len=112
)
# step: (page, tokens, computed before) ..., images encoded, preempted, finished, blocks, queue
HAND_STEPS = [
    ([[0, 30, 0], [1, 34, 0]], [1], [], [], 5, [2, 3]),  # R6, R2, R3, R4; p0's first token (R8)
    ([[0, 1, 30], [1, 42, 34]], [], [], [], 7, [2, 3]),  # R1; p2 refused 2 blocks, 1 free (R7)
    ([[0, 1, 31], [1, 1, 76]], [], [], [], 7, [2, 3]),  # R1; R7 again
    ([[0, 1, 32]], [], [1], [0], 0, [1, 2, 3]),  # R4 fails: R5 preempts p1; p0's last token
    ([[1, 64, 0]], [1], [], [], 4, [2, 3]),  # R6: p1 recomputes 78 tokens from 0, image again
    ([[1, 14, 64], [2, 20, 0]], [], [], [1], 2, [3]),  # p1 done; p2 admitted; p3 refused (R7)
    ([[2, 1, 20], [3, 10, 0]], [], [], [2], 1, []),
    ([[3, 1, 10]], [], [], [3], 0, []),
]


def test_hand_worked_schedule(models):
    m = models["tiny"]
    r = simulate(m, A100, HAND, engine=engine_limits(m, A100, Arrivals(), **HAND_LIMITS), trace=True)
    got = [
        (s["tokens"], s["encoded"], s["preempted"], s["finished"], s["kv_blocks"], s["waiting"])
        for s in r["trace"]
    ]
    assert got == HAND_STEPS
    assert (r["preemptions"], r["steps"], r["output_tokens"]) == (1, 8, 11)
    assert [s["step"] for s in r["trace"]] == list(range(1, 9))


# -- an independent implementation of the scheduler's rules -----------------------------------


def _cdiv(a, b):
    return -(-a // b)


def reference(pages, budget, max_seqs, blocks, bs, max_len, clients=None):
    """vLLM V1's rules R1-R8 (docs/simulate.md), request by request, written apart from the
    engine: the trace of every step. ``pages``: (S0, outputs, image tokens, image start)."""
    n = len(pages)
    computed, out, encoded = [0] * n, [0] * n, [False] * n
    enc_budget = max(budget, max(p[2] for p in pages))
    enc_used, free, running, steps = 0, blocks, [], []
    sent = n if clients is None else min(clients, n)
    waiting = deque(range(sent))
    done = 0

    def encoder(i, c, k, enc):
        s0, _, img, start = pages[i]
        if not img or encoded[i] or start >= c + k or start + img <= c:
            return k, False
        if img > enc or img > enc_budget - enc_used:
            return (start - c if c < start else 0), False
        return k, True

    while done < n:
        left, enc, tokens, encs, victims = budget, enc_budget, [], [], []
        idx = 0
        while idx < len(running) and left > 0:  # R1
            i = running[idx]
            k = min(pages[i][0] + out[i] - computed[i], left, max_len - 1 - computed[i])  # R2
            k, e = encoder(i, computed[i], k, enc)  # R3
            if k <= 0:
                idx += 1
                continue
            need = _cdiv(computed[i] + k, bs) - _cdiv(computed[i], bs)  # R4
            while need > free:  # R5
                v = running.pop()
                victims.append(v)
                free += _cdiv(computed[v], bs)
                computed[v] = 0
                if encoded[v]:
                    encoded[v], enc_used = False, enc_used - pages[v][2]
                waiting.appendleft(v)
                if v == i:
                    break
            if i not in running:
                break
            free, left = free - need, left - k
            tokens.append([i, k, computed[i]])
            if e:
                enc, enc_used, encoded[i] = enc - pages[i][2], enc_used + pages[i][2], True
                encs.append(i)
            idx += 1
        if not victims:  # R6
            while waiting and left > 0 and len(running) < max_seqs:
                i = waiting[0]
                k, e = encoder(i, 0, min(pages[i][0] + out[i], left), enc)
                if k <= 0 or _cdiv(k, bs) > free:  # R7
                    break
                waiting.popleft()
                running.append(i)
                free, left = free - _cdiv(k, bs), left - k
                tokens.append([i, k, 0])
                if e:
                    enc, enc_used, encoded[i] = enc - pages[i][2], enc_used + pages[i][2], True
                    encs.append(i)
        finished = []
        for i, k, c in tokens:
            computed[i] = c + k
            s0, n_out, img, start = pages[i]
            if encoded[i] and c + k >= start + img:
                encoded[i], enc_used = False, enc_used - img
            if c + k == s0 + out[i]:  # R8
                out[i] += 1
                if out[i] == n_out:
                    finished.append(i)
        for i in finished:
            running.remove(i)
            free += _cdiv(computed[i], bs)
            done += 1
            if sent < n:  # a closed loop's client sends its next page
                waiting.append(sent)
                sent += 1
        steps.append((tokens, encs, victims, finished, blocks - free, list(waiting)))
    return steps


@SETTLED
@given(
    pages=st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(1, 12)), min_size=1, max_size=14),
    budget=st.integers(8, 200),
    max_seqs=st.integers(1, 6),
    bs=st.sampled_from([1, 4, 16]),
    spare=st.integers(0, 12),
    clients=st.one_of(st.none(), st.integers(1, 5)),
)
def test_scheduler_equals_an_independent_implementation(models, pages, budget, max_seqs, bs, spare, clients):
    m = models["tiny"]  # any image: 73 tokens at position 1
    max_len = 73 + 40 + 12
    blocks = _cdiv(max_len, bs) + spare
    work = Workload(
        np.array([640 if img else 0 for img, _, _ in pages]),
        np.array([480 if img else 0 for img, _, _ in pages]),
        np.array([p for _, p, _ in pages]),
        np.array([k for _, _, k in pages]),
    )
    arrivals = Arrivals("concurrency", clients) if clients else Arrivals()
    eng = engine_limits(
        m,
        A100,
        arrivals,
        max_num_seqs=max_seqs,
        max_num_batched_tokens=budget,
        block_size=bs,
        num_gpu_blocks_override=blocks,
        max_model_len=max_len,
    )
    r = simulate(m, A100, work, arrivals, eng, trace=True)
    got = [
        (s["tokens"], s["encoded"], s["preempted"], s["finished"], s["kv_blocks"], s["waiting"])
        for s in r["trace"]
    ]
    spec = [(p + 73 if img else p, k, 73 if img else 0, 1 if img else 0) for img, p, k in pages]
    assert got == reference(spec, budget, max_seqs, blocks, bs, max_len, clients)


# -- properties of any run ------------------------------------------------------------------


@st.composite
def runs(draw):
    """A small random workload, engine and arrival process."""
    n = draw(st.integers(1, 25))
    sizes = draw(
        st.lists(st.sampled_from([(1654, 2339), (640, 480), (1280, 720), (0, 0)]), min_size=n, max_size=n)
    )
    work = Workload(
        np.array([w for w, _ in sizes]),
        np.array([h for _, h in sizes]),
        np.array(draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))),
        np.array(draw(st.lists(st.integers(1, 120), min_size=n, max_size=n))),
    )
    arrivals = draw(
        st.sampled_from(
            [Arrivals(), Arrivals("rate", 2.0), Arrivals("rate", 200.0), Arrivals("concurrency", 3)]
        )
    )
    limits = dict(
        max_num_seqs=draw(st.integers(1, 16)),
        max_num_batched_tokens=draw(st.sampled_from([64, 300, 2048, "unlimited"])),
        block_size=draw(st.sampled_from([1, 16, 32])),
        max_model_len=2048,
        num_gpu_blocks_override=None,
    )
    limits["num_gpu_blocks_override"] = draw(st.integers(2048, 2048 * 4)) // limits["block_size"]
    return work, arrivals, limits, draw(st.integers(0, 100))


@settings(SETTLED, max_examples=40)
@given(case=runs())
def test_properties_of_any_run(models, case):
    m = models["deepseek-ocr", "vllm"]
    work, arrivals, limits, seed = case
    eng = engine_limits(m, A100, arrivals, **limits)
    r = simulate(m, A100, work, arrivals, eng, seed=seed)
    assert r["pages"] == len(work) and r["output_tokens"] == int(work.new_tokens.sum())
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):  # finite: every page finished
        stats = r[name]
        values = [stats[f"p{q}"] for q in PERCENTILES]
        assert np.isfinite(values).all() and values == sorted(values), name
        assert 0 <= values[0] and np.isfinite(stats["mean"]) and stats["mean"] >= 0
    assert r["ttft_s"]["p50"] <= r["e2e_s"]["p50"]
    assert r["kv_peak_tokens"] <= r["kv_capacity_tokens"]
    assert r["output_tokens_per_s"] <= r["ceiling_tokens_per_s"] * (1 + 1e-9)
    assert r["output_tokens_per_s"] == pytest.approx(
        r["pages_per_s"] * r["output_tokens"] / r["pages"], rel=1e-12
    )
    assert sum(r["time_shares"].values()) == pytest.approx(1, rel=1e-9)
    again = simulate(m, A100, work, arrivals, eng, seed=seed)
    slow = simulate(m, A100, work, arrivals, eng, seed=seed, fast=False)
    assert json.dumps(again) == json.dumps(r) == json.dumps(slow)


@settings(SETTLED, max_examples=15)
@given(case=runs())
def test_every_page_finishes_once_and_runs_equal_single_steps(models, case):
    """The trace (every step on its own) finishes each page once; the decode runs of a normal
    run give the same schedule (offline and closed loops do not depend on time)."""
    m = models["deepseek-ocr", "vllm"]
    work, arrivals, limits, seed = case
    if arrivals.kind == "rate":
        arrivals = Arrivals()
    eng = engine_limits(m, A100, arrivals, **limits)
    r = simulate(m, A100, work, arrivals, eng, trace=True)
    finished = [i for s in r["trace"] for i in s["finished"]]
    assert sorted(finished) == list(range(len(work)))
    assert all(s["kv_blocks"] <= limits["num_gpu_blocks_override"] for s in r["trace"])
    fast = simulate(m, A100, work, arrivals, eng)
    for key in ("steps", "preemptions", "peak_batch", "kv_peak_tokens", "output_tokens"):
        assert fast[key] == r[key], key
    assert fast["makespan_s"] == pytest.approx(r["makespan_s"], rel=1e-2)


def test_preemption_under_kv_pressure_and_the_bound(models):
    m = models["deepseek-ocr", "vllm"]
    work = workload([(1654, 2339)], 60, 12, 400)
    eng = engine_limits(m, A100, Arrivals(), max_num_seqs=32, num_gpu_blocks_override=300, max_model_len=2048)
    r = simulate(m, A100, work, engine=eng)
    assert r["preemptions"] > 0 and r["bound"] == "KV capacity"
    assert r["kv_peak_tokens"] <= 300 * 16


def test_rate_and_concurrency_bound_by_arrivals(models):
    m = models["deepseek-ocr", "vllm"]
    work = workload([(1654, 2339)], 200, 12, 100)
    slow = simulate(m, A100, work, Arrivals("rate", 0.5), seed=3)
    assert slow["bound"] == "arrivals" and slow["time_shares"]["idle"] > 0.5
    assert slow["pages_per_s"] == pytest.approx(0.5, rel=0.25)  # what arrives
    closed = simulate(m, A100, work, Arrivals("concurrency", 4))
    assert closed["peak_batch"] <= 4 and closed["bound"] == "arrivals"
    assert simulate(m, A100, work, Arrivals("rate", 0.5), seed=4)["makespan_s"] != slow["makespan_s"]


def test_devices_share_the_pages(models):
    m = models["deepseek-ocr", "vllm"]
    work = workload([(1654, 2339)], 40, 12, 200)
    one, two = simulate(m, A100, work), simulate(m, A100, work, devices=2)
    assert two["pages"] == 40 and two["gpu_hours"] == pytest.approx(2 * two["makespan_s"] / 3600)
    assert one["makespan_s"] / 2 < two["makespan_s"] < one["makespan_s"]
    priced = simulate(m, A100, work, gpu_hour_price=2.0)
    assert priced["cost_per_million_pages"] == pytest.approx(2.0 * priced["gpu_hours"] / 40 * 1e6)


def test_static_batching_pads_and_waits(models):
    """hf: a batch runs until its longest output, its pages return together."""
    m = models["deepseek-ocr", "hf"]
    work = Workload(
        np.array([1654] * 4), np.array([2339] * 4), np.array([12] * 4), np.array([10, 50, 10, 50])
    )
    r = simulate(m, A100, work, engine=engine_limits(m, A100, Arrivals(), batch=4))
    assert r["steps"] == 50 and r["e2e_s"]["p50"] == r["e2e_s"]["p99"]
    assert r["kv_peak_tokens"] == 4 * (915 + 50 - 1)
    two = simulate(m, A100, work, engine=engine_limits(m, A100, Arrivals(), batch=2))
    assert two["steps"] == 100 and two["kv_capacity_tokens"] is None


def test_max_model_len_stops_a_page(models):
    m = models["deepseek-ocr", "vllm"]
    work = workload([(1654, 2339)], 3, 12, 500)
    r = simulate(m, A100, work, engine=engine_limits(m, A100, Arrivals(), max_model_len=1000))
    assert r["length_capped"] == 3 and r["output_tokens"] == 3 * (1000 - 915)
    with pytest.raises(SymcostError, match="max_model_len: a request's prompt has 915 tokens"):
        simulate(m, A100, work, engine=engine_limits(m, A100, Arrivals(), max_model_len=900))


# -- workloads and limits -----------------------------------------------------------------------


def test_distributions_and_files(tmp_path):
    draws = workload([(640, 480)], 20_000, 12, new_tokens_dist="lognormal:mean=1000,sd=300", seed=5)
    assert draws.new_tokens.mean() == pytest.approx(1000, rel=0.02)
    assert draws.new_tokens.std() == pytest.approx(300, rel=0.05)
    flat = workload([], 1000, 5, new_tokens_dist="uniform:3:9", seed=1)
    assert set(flat.new_tokens.tolist()) == set(range(3, 10)) and (flat.width == 0).all()
    mix = workload([(1, 2), (3, 4)], 5, 0, 7)
    assert mix.width.tolist() == [1, 3, 1, 3, 1]
    for bad in ("lognormal:mean=0,sd=1", "uniform:5:2", "gamma:1", "lognormal:mean=1", "x" * 200):
        with pytest.raises(SymcostError, match="new_tokens_dist"):
            parse_distribution(bad)
    f = tmp_path / "w.csv"
    f.write_text("width,height,prompt_tokens,new_tokens,arrival_s\n1654,2339,12,100,0.5\n0,0,40,7,0\n")
    w = read_workload(str(f))
    assert w.width.tolist() == [1654, 0] and w.arrival_s.tolist() == [0.5, 0.0]
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"width": [0], "height": [0], "prompt_tokens": [3], "new_tokens": [9]}),
        tmp_path / "w.parquet",
    )
    assert read_workload(str(tmp_path / "w.parquet")).new_tokens.tolist() == [9]
    for text, match in [
        ("width,height,prompt_tokens\n1,1,1\n", "missing column 'new_tokens'"),
        ("width,height,prompt_tokens,new_tokens,x\n1,1,1,1,1\n", "unknown column 'x'"),
        ("width,height,prompt_tokens,new_tokens\n1,0,1,1\n", "both 0"),
        ("width,height,prompt_tokens,new_tokens\n1,1,1,0\n", "new_tokens 0 on row 1"),
        ("width,height,prompt_tokens,new_tokens\n1,1,a,1\n", "prompt_tokens must hold integers"),
    ]:
        f.write_text(text)
        with pytest.raises(SymcostError, match=match):
            read_workload(str(f))


def test_engine_defaults_follow_vllm(models):
    m = models["deepseek-ocr", "vllm"]
    off = engine_limits(m, A100, Arrivals())
    assert (off.max_num_seqs, off.max_num_batched_tokens, off.block_size) == (256, 8192, 16)
    assert (off.gpu_memory_utilization, off.max_model_len) == (0.9, 8192)
    online = engine_limits(m, get_hardware("h200"), Arrivals("concurrency", 10))
    assert (online.max_num_seqs, online.max_num_batched_tokens) == (1024, 8192)
    big_a100 = engine_limits(m, get_hardware("a100-80gb"), Arrivals())
    assert big_a100.max_num_batched_tokens == 8192  # A100s keep the small budget
    with pytest.raises(SymcostError, match="batch: applies to runtime hf"):
        engine_limits(m, A100, Arrivals(), batch=4)
    with pytest.raises(SymcostError, match="max_num_seqs: applies to runtime vllm"):
        engine_limits(models["deepseek-ocr", "hf"], A100, Arrivals(), max_num_seqs=4)
    small = replace(off, gpu_memory_utilization=0.16)
    with pytest.raises(SymcostError, match="gpu_memory_utilization: the KV cache holds"):
        simulate(m, A100, workload([(640, 480)], 2, 1, 2), engine=small)


# -- the command line ------------------------------------------------------------------------


def test_cli_json_contract_and_figures_agree(capsys):
    argv = ["simulate", "deepseek-ocr", *A4, "--new-tokens", "300", "--pages", "300"]
    assert main([*argv, "--runtime", "vllm", "--max-num-seqs", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert CONTRACT <= set(out)
    for key in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
        assert set(out[key]) == {"p50", "p90", "p99", "mean"}
    assert out["output_tokens_per_s"] == pytest.approx(out["pages_per_s"] * 300, rel=1e-12)
    assert out["pages_per_day"] == pytest.approx(out["pages_per_s"] * 86_400, rel=1e-12)
    assert out["engine"]["max_num_seqs"] == 100 and out["engine_sources"]["max_num_seqs"] == "given"
    assert main([*argv, "--runtime", "vllm", "--concurrency", "50", "--gpu-hour-price", "2"]) == 0
    text = capsys.readouterr().out
    for piece in (
        "# engine: vLLM V1 continuous batching",
        "max_num_batched_tokens 2,048 (vLLM default (API server",
        "arrivals closed loop, 50 clients",
        "pages/day",
        "output tokens/s (= pages/s x 300 tokens per page)",
        "time to first token  p50",
        "ms",
        "per million pages at 2 per device-hour",
        "time share  vision",
    ):
        assert piece in text, piece


def test_cli_help_gives_every_option_its_meaning_values_and_default():
    from symcost.cli import build_parser

    def sub(parser):
        return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices

    parser = sub(sub(build_parser())["simulate"])["deepseek-ocr"]
    helps = {a.dest: " ".join((a.help or "").split()) for a in parser._actions if a.option_strings}
    helps.pop("help")
    assert {"rate", "concurrency", "max_num_seqs", "num_gpu_blocks_override", "batch", "plot"} <= set(helps)
    for dest, text in helps.items():
        assert len(text) > 30 and ("Default" in text or dest == "hardware"), (dest, text)
    values = ("integer in [", "a number in", "positive number", "Choices:", "WxH", "a preset (", "lognormal")
    for dest in ("rate", "max_num_batched_tokens", "gpu_memory_utilization", "new_tokens_dist", "pages"):
        assert any(v in helps[dest] for v in values), (dest, helps[dest])


def test_cli_text_only_workload_file_and_plot(tmp_path, capsys):
    base = ["simulate", "deepseek-ocr", "--hardware", "a100-40gb", "--runtime", "vllm"]
    assert (
        main(
            [
                *base,
                "--text-only",
                "--prompt-tokens",
                "50",
                "--new-tokens-dist",
                "uniform:5:20",
                "--pages",
                "30",
                "--seed",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["time_shares"]["vision"] == 0 and out["seed"] == 3
    f = tmp_path / "w.csv"
    f.write_text("width,height,prompt_tokens,new_tokens,arrival_s\n1654,2339,12,30,0\n0,0,40,7,0.25\n")
    png = tmp_path / "run.png"
    assert main([*base, "--workload", str(f), "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000 and "arrivals the workload's arrival_s" in capsys.readouterr().out
    assert main([*base, "--workload", str(f), "--plot", str(png)]) == 2  # exists: --force
    assert "--plot" in capsys.readouterr().err


PAGE = ["--image", "1654x2339", "--new-tokens", "5"]
VLLM = [*PAGE, "--runtime", "vllm"]


@pytest.mark.parametrize(
    "extra,flag",
    [
        ([], "--image"),
        (["--image", "1654x2339", "--text-only"], "--image"),
        (["--image", "1654x2339"], "--new-tokens"),
        ([*PAGE, "--new-tokens-dist", "uniform:1:2"], "--new-tokens"),
        (["--image", "1654x2339", "--new-tokens-dist", "normal:1"], "--new-tokens-dist"),
        ([*PAGE, "--rate", "1", "--concurrency", "2"], "--concurrency"),
        ([*PAGE, "--rate", "-1"], "--rate"),
        ([*PAGE, "--seed", "4"], "--seed"),
        ([*VLLM, "--batch", "4"], "--batch"),
        ([*PAGE, "--max-num-seqs", "4"], "--max-num-seqs"),
        ([*VLLM, "--max-num-batched-tokens", "lots"], "--max-num-batched-tokens"),
        ([*VLLM, "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        ([*VLLM, "--max-model-len", "500"], "--max-model-len"),
        ([*PAGE, "--pages", "0"], "--pages"),
        ([*PAGE, "--plot", "x.pdf"], "--plot"),
        ([*PAGE, "--force"], "--force"),
        ([*PAGE, "--workload", "w.csv"], "--image"),
        (["--workload", "/nonexistent/w.csv"], "--workload"),
        ([*PAGE, "--concurrency", "1", "--devices", "2"], "--concurrency"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_flag(capsys, extra, flag):
    assert main(["simulate", "deepseek-ocr", "--hardware", "a100-40gb", *extra]) == 2
    captured_out = capsys.readouterr()
    assert captured_out.out == ""
    line = captured_out.err.strip()
    assert "\n" not in line and line.startswith(f"symcost: error: {flag}"), line


def test_plan_prints_what_a_server_gives_beside_its_wave(models, capsys):
    argv = ["plan", "deepseek-ocr", *A4, "--new-tokens", "100", "--runtime", "vllm", "--batch", "20"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sim = out["simulated"]
    m = models["deepseek-ocr", "vllm"]
    eng = engine_limits(m, A100, Arrivals(), max_num_seqs=20)
    direct = simulate(m, A100, workload([(1654, 2339)], 200, 12, 100), engine=eng)
    assert sim["pages"] == 200 and sim["engine"]["max_num_seqs"] == 20
    assert sim["output_tokens_per_s"] == direct["output_tokens_per_s"]
    assert sim["output_tokens_per_s"] == pytest.approx(out["tokens_per_s"], rel=0.15)  # the wave
    assert main(argv) == 0
    assert "served (simulate)" in capsys.readouterr().out


def test_host_hook_adds_or_overlaps_its_time(models):
    """The host's share of a step (the hook issue 18 fills): serial adds its seconds to every step,
    overlapped only shows where it is longer than the GPU's."""

    class Host:
        def __init__(self, seconds: float, overlaps: bool):
            self.s, self.overlaps = seconds, overlaps

        def seconds(self, seqs: int, tokens: int, sampled: int) -> float:
            return self.s

    m = models["deepseek-ocr", "vllm"]
    work = workload([(1654, 2339)], 30, 12, 60)
    base = simulate(m, A100, work)
    serial = simulate(m, A100, work, host=Host(1e-3, False))
    assert serial["makespan_s"] == pytest.approx(base["makespan_s"] + serial["steps"] * 1e-3, rel=1e-9)
    assert serial["time_shares"]["host"] > 0 and sum(serial["time_shares"].values()) == pytest.approx(1)
    hidden = simulate(m, A100, work, host=Host(1e-6, True))
    assert hidden["makespan_s"] == pytest.approx(base["makespan_s"], rel=1e-12)
