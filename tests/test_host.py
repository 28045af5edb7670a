"""The host's share of a step (symcost.host): the no-repeat n-gram processor, profiles and their
files, calibrate host, and --host in simulate and plan."""

from __future__ import annotations

import json

import pytest

import symcost
from symcost.cli import main
from symcost.hardware import HARDWARE
from symcost.host import HostProfile, get_host, load_host, no_repeat_ngram_banned
from symcost.simulation import Arrivals, engine_limits, simulate, workload


def test_no_repeat_ngram_bans_what_would_repeat_an_ngram():
    # n = 3: the last two tokens (1, 2) were followed by 3 and by 4 earlier in the window
    tokens = [1, 2, 3, 9, 1, 2, 4, 7, 1, 2]
    assert no_repeat_ngram_banned(tokens, 3, 100) == {3, 4}
    assert no_repeat_ngram_banned(tokens, 3, 100, frozenset({4})) == {3}
    assert no_repeat_ngram_banned(tokens, 3, 6) == {4}  # (1, 2, 3) left the window
    assert no_repeat_ngram_banned(tokens[:2], 3, 100) == set()  # shorter than the n-gram
    # brute force: every earlier n-gram in the window whose prefix is the current one
    import random

    rng = random.Random(0)
    for _ in range(200):
        t = [rng.randrange(3) for _ in range(rng.randrange(1, 40))]
        n, w = rng.randrange(2, 6), rng.randrange(2, 30)
        want = {
            t[i + n - 1]
            for i in range(len(t) - n + 1)
            if i >= len(t) - w and t[i : i + n - 1] == t[len(t) - n + 1 :]
        }
        assert no_repeat_ngram_banned(t, n, w) == (want if len(t) >= n else set())


def test_a_profile_costs_per_step_sequence_token_and_sample():
    h = HostProfile("x", 1e-3, 1e-5, 1e-7, 2e-5, False)
    assert h.seconds(10, 100, 8) == pytest.approx(1e-3 + 1e-4 + 1e-5 + 1.6e-4)
    assert get_host("none").free and get_host("none").seconds(100, 100, 100) == 0


def _write(tmp_path, data) -> str:
    path = tmp_path / "h.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


GOOD = {
    "name": "t",
    "per_step_s": 0.0,
    "per_sequence_s": 0.0,
    "per_token_s": 0.0,
    "per_sampled_s": 1e-5,
    "overlaps": False,
    "sources": {"per_sampled_s": "test"},
}


@pytest.mark.parametrize(
    "data, message",
    [
        ("{", "cannot read"),
        ("[]", "expected a JSON object"),
        (GOOD | {"extra": 1}, "unknown key 'extra'"),
        ({k: v for k, v in GOOD.items() if k != "overlaps"}, "missing key 'overlaps'"),
        (GOOD | {"per_step_s": -1}, "per_step_s"),
        (GOOD | {"per_token_s": "1"}, "per_token_s"),
        (GOOD | {"overlaps": 1}, "overlaps must be true or false"),
        (GOOD | {"sources": []}, "sources must map"),
        ('{"name": "a", "name": "b"}', "appears twice"),
    ],
)
def test_bad_host_files_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(symcost.SymcostError, match=message):
        load_host(_write(tmp_path, data))


def test_a_serial_host_adds_its_seconds_to_each_step():
    m = symcost.load("deepseek-ocr", runtime="vllm")
    hw = HARDWARE["h200"]
    eng = engine_limits(m, hw, Arrivals("concurrency", 1))
    work = workload([], 4, 200, 50)
    base = simulate(m, hw, work, Arrivals("concurrency", 1), eng)
    h = HostProfile("t", 0.0, 0.0, 0.0, 1e-3, False)
    slow = simulate(m, hw, work, Arrivals("concurrency", 1), eng, host=h)
    # one sequence decoding: every decode step samples one token, 1 ms more
    assert slow["tpot_s"]["p50"] == pytest.approx(base["tpot_s"]["p50"] + 1e-3, rel=1e-6)
    over = simulate(m, hw, work, Arrivals("concurrency", 1), eng, host=HostProfile("o", 0, 0, 0, 1e-9, True))
    assert over["tpot_s"]["p50"] == pytest.approx(base["tpot_s"]["p50"])  # hidden under the GPU


def test_calibrate_writes_what_host_reads(tmp_path, capsys):
    out = tmp_path / "host.json"
    assert main(["calibrate", "host", "--out", str(out)]) == 0
    profile = load_host(str(out))
    assert profile.per_sampled_s > 0 and not profile.overlaps
    assert "not measured" in dict(profile.sources)["per_step_s"]
    capsys.readouterr()
    assert main(["calibrate", "host", "--out", str(out)]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    argv = ["simulate", "deepseek-ocr", "--text-only", "--prompt-tokens", "20", "--new-tokens", "20"]
    argv += ["--pages", "4", "--hardware", "h200", "--runtime", "vllm", "--host", str(out), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["host"]["per_sampled_s"] == profile.per_sampled_s and result["time_shares"]["host"] > 0


def test_host_on_plan_needs_its_served_line(capsys):
    argv = ["plan", "deepseek-ocr", "--hardware", "l4", "--host", "x.json", "--max-flops", "1e12"]
    assert main(argv) == 2
    assert "--host: applies to plan's served line" in capsys.readouterr().err
