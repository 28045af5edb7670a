"""Robustness: every bad input gets one clear error naming the parameter, no file is
half-written, no signal leaves debris, stdout failures are reported, no user string is
evaluated, edge shapes stay exact, and the same command prints the same bytes."""

import ast
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import tokenize
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcost
from symcost import SymcostError
from symcost.cli import main
from symcost.files import atomic_write, read_small_file
from symcost.hardware import HARDWARE, get_hardware, load_hardware

ROOT = Path(__file__).resolve().parents[1]
FAMILY = symcost.get_family("deepseek-ocr")
E = ("eval", "deepseek-ocr", "--image", "640x640")
S = ("sweep", "deepseek-ocr", "--width", "600:640:20", "--height", "600:640:20", "--out", "t.csv")
P = ("plan", "deepseek-ocr", "--image", "640x640", "--hardware", "h200")
TOKENS = FAMILY.input("prompt_tokens")
WIDTH = FAMILY.input("width")
GOOD_HW = {
    "name": "g",
    "matmul_tflops": {"bf16": 100},
    "vector_tflops": 10,
    "memory_gbps": 1000,
    "memory_gb": 80,
}


def _cli(argv, **kw):
    """Run the installed entry point in a fresh interpreter (what a shell user gets)."""
    return subprocess.run(
        [sys.executable, "-m", "symcost.cli", *argv], capture_output=True, text=True, timeout=120, **kw
    )


def _one_error_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("symcost: error: "), err
    return err


@pytest.fixture(scope="module")
def gundam():
    return symcost.load("deepseek-ocr", preset="gundam")


# -- the CLI: one line on stderr naming the parameter, exit 2, nothing on stdout, no file -----
CLI_BAD = [  # argv, fragments the one stderr line must contain (parameter, bad value, allowed)
    (("nope",), ["COMMAND", "'nope'", "formulas"]),
    (("eval", "nope", "--image", "1x1"), ["family", "'nope'", "deepseek-ocr2"]),
    (("eval", "deepseek-ocr"), ["--image", "required by stage vision"]),
    (E + ("--preset", "huge"), ["--preset", "'huge'", "gundam-m"]),
    (E + ("--preset", ""), ["--preset", "''", "gundam"]),
    (E + ("--vision-mode", "x"), ["--vision-mode", "'x'", "crops, nocrop"]),
    (E + ("--max-crops", "1"), ["--max-crops", "'1'", "[2, 9]"]),
    (E + ("--preset", "base", "--max-crops", "6"), ["--max-crops", "crop presets"]),
    (E + ("--runtime", "vllm", "--attention", "eager"), ["--attention", "'eager'", "vllm"]),
    (E + ("--convention", "flopz"), ["--convention", "'flopz'", "fvcore-default"]),
    (E + ("--stage", "train"), ["--stage", "'train'", "request"]),
    (E + ("--dtype", "int8"), ["--dtype", "'int8'", "fp8"]),
    (E + ("--kv-dtype", "int4"), ["--kv-dtype", "'int4'", "bf16"]),
    (E + ("--attention", "paged"), ["--attention", "'paged'", "eager", "flash"]),
    (E + ("--hardware", "tpu"), ["--hardware", "'tpu'", "h100-sxm"]),
    (E + ("--hardware", ""), ["--hardware", "''", "h100-sxm"]),
    (E + ("--hardware", "missing.json"), ["--hardware", "'missing.json'", "FileNotFoundError"]),
    (E + ("--hardware", "a100-80gb", "--dtype", "fp8"), ["--dtype", "'fp8'", "bf16"]),
    (E + ("--compute-efficiency", "0.5"), ["--compute-efficiency", "only with --hardware"]),
    (
        E + ("--hardware", "h200", "--compute-efficiency", "nan"),
        ["--compute-efficiency", "'nan'", "[1e-06, 1]"],
    ),
    (
        E + ("--hardware", "h200", "--compute-efficiency", "1e-7"),
        ["--compute-efficiency", "'1e-7'", "[1e-06, 1]"],
    ),
    (
        E + ("--hardware", "h200", "--bandwidth-efficiency", "inf"),
        ["--bandwidth-efficiency", "'inf'", "[1e-06, 1]"],
    ),
    (
        E + ("--hardware", "h200", "--bandwidth-efficiency", "0"),
        ["--bandwidth-efficiency", "'0'", "[1e-06, 1]"],
    ),
    (
        E + ("--hardware", "h200", "--bandwidth-efficiency", "1" * 500),
        ["--bandwidth-efficiency", "[1e-06, 1]"],
    ),
    (("formulas", "deepseek-ocr", "--metric", "speed"), ["--metric", "'speed'", "io_bytes"]),
    (("formulas", "deepseek-ocr", "--metric", "time_s"), ["--metric", "--hardware"]),
    (("formulas", "deepseek-ocr", "--hardware", "h200"), ["--hardware", "time_s"]),
    (("formulas", "deepseek-ocr", "--layout", "--stage", "decode"), ["--layout", "--stage"]),
    (("formulas", "deepseek-ocr", "--depth", "13"), ["--depth", "'13'", "[0, 12]"]),
    (("params", "deepseek-ocr", "--depth", "-1"), ["--depth", "'-1'", "[0, 12]"]),
    (("eval", "deepseek-ocr", "--image", "640"), ["--image", "'640'", "WxH", "[1, 65535]"]),
    (("eval", "deepseek-ocr", "--image", ""), ["--image", "''", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "0x640"), ["--image", "'0x640'", "[1, 65535]"]),
    (("eval", "deepseek-ocr", "--image", "65536x640"), ["--image", "'65536x640'", "[1, 65535]"]),
    (("eval", "deepseek-ocr", "--image", "640.5x640"), ["--image", "'640.5x640'", "WxH"]),
    (("eval", "deepseek-ocr", "--image=-640x640"), ["--image", "'-640x640'", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "nanxinf"), ["--image", "'nanxinf'", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "640x640\n"), ["--image", "'640x640\\n'", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "9" * 5000 + "x1"), ["--image", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "0" * 5000 + "65536x1"), ["--image", "WxH"]),
    (("eval", "deepseek-ocr", "--image", "\uff16\uff14\uff10x640"), ["--image", "WxH"]),
    (E + ("--image", "1x99999"), ["--image", "'1x99999'", "[1, 65535]"]),
    (
        ("eval", "deepseek-ocr", "--stage", "decode", "--image", "640x640"),
        ["--image", "stage decode does not read it", "vision, prefill, request"],
    ),
    (E + ("--new-tokens", "5"), ["--new-tokens", "stage vision does not read it", "request"]),
    (
        ("eval", "deepseek-ocr", "--stage", "decode", "--prompt-tokens", "5"),
        ["--prompt-tokens", "stage decode", "prefill, request"],
    ),
    (E + ("--stage", "prefill", "--prompt-tokens=-1"), ["--prompt-tokens", "'-1'", "[0, 1048576]"]),
    (E + ("--stage", "prefill", "--prompt-tokens", "1.5"), ["--prompt-tokens", "'1.5'"]),
    (E + ("--stage", "prefill", "--prompt-tokens", "True"), ["--prompt-tokens", "'True'"]),
    (E + ("--stage", "prefill", "--prompt-tokens", ""), ["--prompt-tokens", "''"]),
    (E + ("--stage", "prefill", "--prompt-tokens", "9" * 5000), ["--prompt-tokens", "[0, 1048576]"]),
    (
        E + ("--stage", "prefill", "--prompt-tokens", "0" * 5000 + "1048577"),
        ["--prompt-tokens", "[0, 1048576]"],
    ),
    (("eval", "deepseek-ocr", "--stage", "decode", "--kv-len", "nan"), ["--kv-len", "'nan'"]),
    (
        ("eval", "deepseek-ocr", "--stage", "decode", "--kv-len", "1048577"),
        ["--kv-len", "'1048577'", "[0, 1048576]"],
    ),
    (E + ("--stage", "request", "--new-tokens", "0"), ["--new-tokens", "'0'", "[1, 1048576]"]),
    (E + ("--batch", "0"), ["--batch", "'0'", "[1, 65536]"]),
    (E + ("--batch", "1e3"), ["--batch", "'1e3'", "[1, 65536]"]),
    (E + ("--foo",), ["unrecognized arguments: --foo"]),
    (E + ("a\nb",), ["unrecognized arguments: a\\nb"]),
    (("eval", "deepseek-ocr2", "--image", "640x640", "--preset", "gundam"), ["--preset"]),
    (S[:-1] + ("t.txt",), ["--out", "'t.txt'", ".csv"]),
    (S[:-1] + ("nodir/t.csv",), ["--out", "nodir", "does not exist"]),
    (S[:-1] + ("sub.csv",), ["--out", "'sub.csv'", "not a regular file"]),
    (S[:-1] + ("old.csv",), ["--out", "'old.csv'", "--force"]),
    # one rule for every flag: ranges named, one number syntax, no abbreviations, once each
    (P + ("--max-flops", "0"), ["--max-flops", "'0'", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops=-1",), ["--max-flops", "'-1'", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops", "nan"), ["--max-flops", "'nan'", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops", "inf"), ["--max-flops", "'inf'", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops", "1e31"), ["--max-flops", "'1e31'", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops", "9" * 5000), ["--max-flops", "FLOP in [1, 1e+30]"]),
    (P + ("--max-flops", "1_000_000_000_000"), ["--max-flops", "'1_000_000_000_000'"]),
    (P + ("--max-flops", "\u0661\u0660\u0660\u0660"), ["--max-flops", "FLOP in [1, 1e+30]"]),
    (P + ("--max-ttft-ms", "1e-9"), ["--max-ttft-ms", "'1e-9'", "ms in [1e-06, 1e+09]"]),
    (P + ("--max-memory-gb", "-5"), ["--max-memory-gb", "'-5'", "GB in [1e-06, 1e+09]"]),
    (P + ("--pages-per-day", "1e16"), ["--pages-per-day", "pages/day in [1e-06, 1e+15]"]),
    (E + ("--hardware", "h200", "--compute-efficiency", "0_5"), ["--compute-efficiency", "'0_5'"]),
    (
        E + ("--hardware", "h200", "--compute-efficiency", "\u0660.\u0665"),
        ["--compute-efficiency", "[1e-06, 1]"],
    ),
    (E + ("--batch", "\u0661\u0660"), ["--batch", "[1, 65536]"]),
    (E + ("--batch", "1_0"), ["--batch", "'1_0'", "[1, 65536]"]),
    (E + ("--hardwar", "h200"), ["unrecognized arguments: --hardwar"]),
    (P[:-2] + ("--hardw", "h200"), ["required: --hardware"]),  # not read as --hardware
    (E + ("--stage", "vision", "--stage", "prefill"), ["--stage", "given twice"]),
    (E + ("--json", "--json"), ["--json", "given twice"]),
    (P + ("--hardware", "h100-sxm"), ["--hardware", "given twice"]),
    (P + ("--max-flops", "1e12", "--max-flops", "1e15"), ["--max-flops", "given twice"]),
]


@pytest.mark.parametrize("argv,fragments", CLI_BAD, ids=[" ".join(a)[-40:] for a, _ in CLI_BAD])
def test_cli_bad_input(argv, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.csv").write_text("old\n")
    (tmp_path / "sub.csv").mkdir()
    before = sorted(os.listdir(tmp_path))

    def no_work(*a, **k):  # sweeps are refused before anything is compiled
        raise AssertionError("compiled before the input was checked")

    if argv[:1] == ("sweep",):
        monkeypatch.setattr(symcost.Model, "compile", no_work)
    assert main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _one_error_line(err)
    assert len(err) < 600  # nothing echoed whole
    for fragment in fragments:
        assert fragment in err
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "old.csv").read_text() == "old\n"


@pytest.mark.parametrize(
    "argv,same",
    [
        (E[:3] + ("0" * 5000 + "640x" + "0" * 5000 + "641",), E[:3] + ("640x641",)),
        (E + ("--batch", "0" * 5000 + "2"), E + ("--batch", "2")),
    ],
)
def test_leading_zeros_are_read_not_refused(argv, same, capsys):
    """Beyond 4,300 digits int() raises: leading zeros are matched apart, the value is the same."""
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert main(list(same)) == 0
    assert out == capsys.readouterr().out


def test_sweep_range_with_leading_zeros_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zeros = "0" * 5000
    assert (
        main(
            [
                "sweep",
                "deepseek-ocr",
                "--width",
                f"{zeros}1:{zeros}2:{zeros}1",
                "--height",
                "1:2:1",
                "--out",
                "a.csv",
            ]
        )
        == 0
    )
    assert main(["sweep", "deepseek-ocr", "--width", "1:2:1", "--height", "1:2:1", "--out", "b.csv"]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_a_file_name_is_said_on_one_line(tmp_path, capsys, monkeypatch):
    """A newline in an --out name is escaped where the name is said, never printed raw."""
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "deepseek-ocr", "--width", "600", "--height", "600", "--out", "a\nb.csv"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "to a\\nb.csv in" in err
    assert (tmp_path / "a\nb.csv").exists()


def test_cli_alone_and_help_are_not_errors(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: symcost" in out and all(c in out for c in ("formulas", "eval", "params"))
    assert main(["--help"]) == 0
    assert "usage: symcost" in capsys.readouterr().out


# -- the API: SymcostError (a ValueError) naming the parameter, on one line ------------------
def _api_cases():
    ld = symcost.load
    m = ld("deepseek-ocr", preset="gundam")
    ev = m.compile("request", ["flops"])
    return [
        ("family", lambda: ld("nope"), ["family", "'nope'", "deepseek-ocr"]),
        ("family None", lambda: ld(None), ["family", "None"]),
        ("preset", lambda: ld("deepseek-ocr", preset="huge"), ["preset", "'huge'", "gundam"]),
        ("preset empty", lambda: ld("deepseek-ocr", preset=""), ["preset", "''", "tiny"]),
        ("vision_mode", lambda: ld("deepseek-ocr", vision_mode="x"), ["vision_mode", "nocrop"]),
        ("max_crops bool", lambda: ld("deepseek-ocr", max_crops=True), ["max_crops", "True"]),
        ("max_crops float", lambda: ld("deepseek-ocr", max_crops=6.0), ["max_crops", "6.0"]),
        ("max_crops 10", lambda: ld("deepseek-ocr", max_crops=10), ["max_crops", "[2, 9]"]),
        ("attention", lambda: ld("deepseek-ocr", attention="paged"), ["attention", "flash"]),
        ("unknown option", lambda: ld("deepseek-ocr", crops=3), ["crops", "preset, vision_mode"]),
        ("stage", lambda: m.formula("train"), ["stage", "'train'", "request"]),
        ("stage list", lambda: m.formula(["vision"]), ["stage", "['vision']"]),
        ("metric", lambda: m.formula("vision", "speed"), ["metric", "'speed'", "io_bytes"]),
        ("convention", lambda: m.formula("vision", "flops", "x"), ["convention", "'x'", "torch"]),
        ("by", lambda: m.formula("vision", by="layer"), ["by", "'layer'", "component, kind"]),
        ("dtype", lambda: m.formula("vision", dtype="int8"), ["dtype", "'int8'", "fp8"]),
        ("kv_dtype", lambda: m.formula("decode", "kv_bytes", kv_dtype="x"), ["kv_dtype", "'x'"]),
        ("time_s without hardware", lambda: m.formula("vision", "time_s"), ["hardware", "time_s"]),
        ("tree stage", lambda: m.tree("train"), ["stage", "'train'"]),
        ("expressions dtype list", lambda: m.expressions("vision", dtype=["bf16"]), ["dtype"]),
        ("tile_grid 0", lambda: m.tile_grid(0, 640), ["width", "0", "[1, 65535]"]),
        ("tile_grid 65536", lambda: m.tile_grid(640, 65536), ["height", "65536", "[1, 65535]"]),
        ("tile_grid float", lambda: m.tile_grid(640.0, 640), ["width", "float64"]),
        ("tile_grid nan", lambda: m.tile_grid(np.nan, 640), ["width", "float64"]),
        ("tile_grid bool", lambda: m.tile_grid(True, 640), ["width", "bool"]),
        ("tile_grid str", lambda: m.tile_grid("640", 640), ["width", "<U3"]),
        ("tile_grid None", lambda: m.tile_grid(None, 640), ["width", "object"]),
        ("tile_grid 2**70", lambda: m.tile_grid([2**70], 640), ["width", str(2**70)[:20]]),
        ("tile_grid ragged", lambda: m.tile_grid([[1], [1, 2]], 640), ["width", "ragged"]),
        ("tile_grid shapes", lambda: m.tile_grid([1, 2, 3], [1, 2]), ["width (3,)", "height (2,)"]),
        ("evaluate float", lambda: m.evaluate(640.0, 640), ["width", "640.0", "[1, 65535]"]),
        ("evaluate nan", lambda: m.evaluate(640, float("nan")), ["height", "nan"]),
        ("evaluate inf", lambda: m.evaluate(float("inf"), 640), ["width", "inf"]),
        ("evaluate bool", lambda: m.evaluate(True, 640), ["width", "True"]),
        ("evaluate str", lambda: m.evaluate("", 640), ["width", "''"]),
        ("evaluate huge", lambda: m.evaluate(10**5000, 640), ["width", "[1, 65535]"]),
        ("prompt -1", lambda: m.evaluate(640, 640, "prefill", prompt_tokens=-1), ["prompt_tokens", "-1"]),
        (
            "prompt on vision",
            lambda: m.evaluate(640, 640, prompt_tokens=1),
            ["prompt_tokens", "stage vision", "prefill, request"],
        ),
        (
            "kv_len 2**20+1",
            lambda: m.evaluate(stage="decode", kv_len=2**20 + 1),
            ["kv_len", "1048577", "[0, 1048576]"],
        ),
        ("kv_len float", lambda: m.evaluate(stage="decode", kv_len=1.5), ["kv_len", "1.5"]),
        (
            "new_tokens 0",
            lambda: m.evaluate(640, 640, "request", new_tokens=0),
            ["new_tokens", "0", "[1, 1048576]"],
        ),
        ("batch bool", lambda: m.evaluate(640, 640, batch=True), ["batch", "True"]),
        ("batch 0", lambda: m.evaluate(640, 640, batch=0), ["batch", "0", "[1, 65536]"]),
        ("evaluate stage", lambda: m.evaluate(640, 640, "train"), ["stage", "'train'"]),
        ("evaluate convention", lambda: m.evaluate(640, 640, convention="x"), ["convention"]),
        ("evaluate dtype", lambda: m.evaluate(640, 640, dtype="x"), ["dtype", "'x'"]),
        ("hardware name", lambda: m.evaluate(640, 640, hardware="tpu"), ["hardware", "'tpu'"]),
        ("hardware int", lambda: m.evaluate(640, 640, hardware=3), ["hardware", "3", "h200"]),
        (
            "hardware no fp8",
            lambda: m.evaluate(640, 640, hardware="a100-80gb", dtype="fp8"),
            ["dtype", "'fp8'", "a100-80gb"],
        ),
        (
            "hardware object 0 GB/s",
            lambda: m.evaluate(640, 640, hardware=replace(HARDWARE["h200"], memory_gbps=0)),
            ["memory_gbps", "0", "GB/s"],
        ),
        (
            "efficiency nan",
            lambda: m.evaluate(640, 640, hardware="h200", compute_efficiency=float("nan")),
            ["compute_efficiency", "nan", "[1e-06, 1]"],
        ),
        (
            "efficiency tiny",
            lambda: m.evaluate(640, 640, hardware="h200", bandwidth_efficiency=1e-7),
            ["bandwidth_efficiency", "1e-07", "[1e-06, 1]"],
        ),
        (
            "efficiency without hardware",
            lambda: m.evaluate(640, 640, compute_efficiency=0.5),
            ["efficiency", "hardware"],
        ),
        (
            "efficiency str",
            lambda: m.compile(hardware="h200", compute_efficiency="1"),
            ["compute_efficiency", "'1'"],
        ),
        ("compile metrics str", lambda: m.compile("vision", "flops"), ["metrics", "'flops'"]),
        ("compile metrics None", lambda: m.compile("vision", None), ["metrics", "None"]),
        ("compile metric", lambda: m.compile("vision", ["x"]), ["metric", "'x'", "io_bytes"]),
        ("compile stage list", lambda: m.compile(["vision"]), ["stage", "['vision']"]),
        ("compile convention", lambda: m.compile(convention="x"), ["convention", "'x'"]),
        ("compile hardware", lambda: m.compile(hardware="tpu"), ["hardware", "'tpu'"]),
        ("compile components", lambda: m.compile(components="yes"), ["components", "'yes'"]),
        ("evaluator floats", lambda: ev([640.0], [640]), ["width", "float64"]),
        ("evaluator nan", lambda: ev([640], [np.nan]), ["height", "float64"]),
        ("evaluator bools", lambda: ev([True], [640]), ["width", "bool"]),
        ("evaluator 65536", lambda: ev([640, 65536], 640), ["width", "65536"]),
        ("evaluator 0", lambda: ev(640, [0]), ["height", "0"]),
        (
            "evaluator uint64",
            lambda: ev(np.array([2**64 - 1], dtype=np.uint64), 640),
            ["width", str(2**64 - 1)],
        ),
        ("evaluator object", lambda: ev(np.array([640, 1.5], dtype=object), 640), ["width"]),
        ("evaluator shapes", lambda: ev([1, 2, 3], [1, 2]), ["width (3,)", "height (2,)"]),
        (
            "evaluator token shape",
            lambda: ev([1, 2, 3], 640, prompt_tokens=[1, 2]),
            ["width (3,)", "prompt_tokens (2,)"],
        ),
        ("evaluator tokens float", lambda: ev(640, 640, prompt_tokens=1.0), ["prompt_tokens"]),
        ("evaluator kv_len", lambda: ev(640, 640, kv_len=[1]), ["kv_len", "stage request"]),
        ("evaluator new 0", lambda: ev(640, 640, new_tokens=0), ["new_tokens", "0"]),
        ("evaluator ragged", lambda: ev([[1], [1, 2]], 640), ["width", "ragged"]),
        ("evaluator 2**80", lambda: ev([2**80], 640), ["width", str(2**80)]),
        ("hardware file", lambda: load_hardware("missing.json"), ["hardware", "'missing.json'"]),
    ]


def test_api_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    for label, call, fragments in _api_cases():
        with pytest.raises(SymcostError) as e:
            call()
        assert isinstance(e.value, ValueError)
        message = str(e.value)
        assert "\n" not in message and len(message) < 400, (label, message)
        missing = [f for f in fragments if f not in message]
        assert not missing, (label, message)
        seen.append(label)
    assert len(seen) > 70


ROWS = np.arange(200).reshape(20, 10)  # an array whose repr spans lines
WORDS = np.array([["vision"] * 5] * 4)
_ONE_LINE = [  # (label, call); the value shown must not bring its line breaks along
    ("width array", lambda m: m.evaluate(ROWS, 640)),
    ("batch array", lambda m: m.evaluate(640, 640, batch=ROWS)),
    ("efficiency array", lambda m: m.evaluate(640, 640, hardware="h200", compute_efficiency=ROWS)),
    ("hardware array", lambda m: m.evaluate(640, 640, hardware=WORDS)),
    ("hardware file name", lambda m: get_hardware(replace(HARDWARE["h200"], name="\n" * 3))),
    ("metric array", lambda m: m.formula("vision", WORDS)),
]
_ONE_LINE_ENGINE = [  # family options, tree.choose, conventions, dtypes, runtimes, compile
    ("preset array", lambda m: symcost.load("deepseek-ocr", preset=WORDS)),
    ("max_crops array", lambda m: symcost.load("deepseek-ocr", max_crops=ROWS)),
    ("runtime array", lambda m: symcost.load("deepseek-ocr", runtime=WORDS)),
    ("family array", lambda m: symcost.load(WORDS)),
    ("stage array", lambda m: m.formula(WORDS)),
    ("convention array", lambda m: m.formula("vision", "flops", WORDS)),
    ("dtype array", lambda m: m.formula("vision", dtype=WORDS)),
    ("components array", lambda m: m.compile("vision", ["flops"], components=ROWS)),
]


@pytest.mark.parametrize(
    "label,call", _ONE_LINE + _ONE_LINE_ENGINE, ids=[c[0] for c in _ONE_LINE + _ONE_LINE_ENGINE]
)
def test_api_messages_are_one_line(label, call, gundam):
    with pytest.raises(SymcostError) as e:
        call(gundam)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    assert re.match(r"[a-z_ ]+(: [a-z_.]+)?: ", message), message  # starts with the parameter


def test_lists_and_empty_arrays_are_fine(gundam):
    ev = gundam.compile("vision", ["flops"])
    assert ev([], [])["flops"].shape == (0,)
    assert gundam.tile_grid(np.array([], dtype=np.int64), 640)[0].shape == (0,)
    one = ev(np.int32(641), [640])
    assert one["flops"].tolist() == [gundam.evaluate(641, 640)["flops"]]
    assert gundam.compile("vision", ("flops",), hardware=HARDWARE["h200"]) is gundam.compile(
        "vision", ("flops",), hardware=HARDWARE["h200"]
    )


# -- hardware files: parsed safely, field by field; no rate makes a time 0 or infinite --------
HW_BAD = [
    ("{nope", ["JSONDecodeError", "line 1 column 2"]),
    ("", ["JSONDecodeError"]),
    ("[1]", ["expected a JSON object"]),
    ("[" * 30000 + "]" * 30000, ["cannot read"]),
    (" " * 70000 + json.dumps(GOOD_HW), ["larger than 65,536"]),
    (json.dumps({**GOOD_HW, "clock_mhz": 1}), ["unknown key 'clock_mhz'", "memory_gbps (GB/s"]),
    (json.dumps({k: v for k, v in GOOD_HW.items() if k != "name"}), ["missing key 'name'"]),
    ('{"name": "a", "name": "b"}', ["key 'name' appears twice"]),
    (json.dumps({**GOOD_HW, "vector_tflops": float("nan")}), ["vector_tflops", "TFLOP/s", "nan"]),
    (json.dumps({**GOOD_HW, "memory_gbps": float("inf")}), ["memory_gbps", "GB/s", "inf"]),
    (json.dumps({**GOOD_HW, "memory_gbps": 0}), ["memory_gbps", "0 is not", "[0.001, 1e+07]"]),
    (json.dumps({**GOOD_HW, "memory_gbps": 1e-300}), ["memory_gbps", "1e-300", "[0.001"]),
    (json.dumps({**GOOD_HW, "memory_gbps": 1e300}), ["memory_gbps", "1e+300", "1e+07]"]),
    (json.dumps({**GOOD_HW, "memory_gbps": True}), ["memory_gbps", "True"]),
    (json.dumps({**GOOD_HW, "memory_gbps": "1000"}), ["memory_gbps", "'1000'"]),
    (json.dumps({**GOOD_HW, "vector_tflops": 10**400}), ["vector_tflops", "an integer of about 401 digits"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"bf16": 10**400}}), ["matmul_tflops.bf16"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"bf16": 1e-9}}), ["matmul_tflops.bf16", "1e-09"]),
    (json.dumps(GOOD_HW).replace("1000", "9" * 5000), ["cannot read", "ValueError"]),
    (json.dumps({**GOOD_HW, "name": " "}), ["name must be a non-empty string"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {}}), ["matmul_tflops", "fp32, bf16"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": [1]}), ["matmul_tflops", "fp32, bf16"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"int8": 1}}), ["unknown dtype 'int8'", "fp8"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"bf16": -1}}), ["matmul_tflops.bf16", "TFLOP/s"]),
]


@pytest.mark.parametrize("text,fragments", HW_BAD, ids=range(len(HW_BAD)))
def test_hardware_file_refused(text, fragments, tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(text)
    with pytest.raises(SymcostError) as e:
        load_hardware(str(path))
    message = str(e.value)
    assert "\n" not in message and len(message) < 400
    for fragment in fragments:
        assert fragment in message


def test_hardware_file_refusals_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("big.json").write_text(json.dumps({**GOOD_HW, "memory_gbps": 10**400}))
    Path("tiny.json").write_text(json.dumps({**GOOD_HW, "vector_tflops": 1e-300}))
    for name, fragment in (("big.json", "memory_gbps"), ("tiny.json", "vector_tflops")):
        assert main(list(E) + ["--hardware", name]) == 2
        out, err = capsys.readouterr()
        assert out == "" and fragment in _one_error_line(err) and len(err) < 400


def test_hardware_file_not_utf8_and_good_file(tmp_path):
    path = tmp_path / "hw.json"
    path.write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(SymcostError, match="not UTF-8"):
        load_hardware(str(path))
    path.write_text(json.dumps(GOOD_HW))
    assert load_hardware(str(path)).memory_gbps == 1000.0


def test_fifo_as_hardware_file_does_not_block(tmp_path):
    """An O_NONBLOCK open and a regular-file check: a FIFO with no writer would block open()."""
    os.mkfifo(tmp_path / "hw.json")
    start = time.monotonic()
    proc = _cli(list(E) + ["--hardware", "hw.json"], cwd=tmp_path)
    assert time.monotonic() - start < 60
    assert proc.returncode == 2 and proc.stdout == ""
    assert "not a regular file" in _one_error_line(proc.stderr)


def test_devices_and_large_files_are_refused(tmp_path):
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(SymcostError, match="'.*zero.json' is not a regular file"):
        load_hardware(str(tmp_path / "zero.json"))
    (tmp_path / "big.json").write_bytes(b" " * 100)
    with pytest.raises(SymcostError, match="larger than 99 bytes"):
        read_small_file(str(tmp_path / "big.json"), "hardware", 99)
    assert read_small_file(str(tmp_path / "big.json"), "hardware", 100) == " " * 100
    with pytest.raises(SymcostError, match="is not a regular file"):
        read_small_file(str(tmp_path), "hardware", 100)


# -- no output a reader cannot trust: finite numbers, strict JSON ----------------------------
def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"non-finite number {name} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "argv",
    [
        (
            "--stage",
            "request",
            "--image",
            "65535x65535",
            "--prompt-tokens",
            "1048576",
            "--new-tokens",
            "1048576",
            "--batch",
            "65536",
            "--dtype",
            "fp32",
            "--hardware",
            "slow.json",
            "--compute-efficiency",
            "1e-6",
            "--bandwidth-efficiency",
            "1e-6",
        ),
        ("--stage", "decode", "--kv-len", "0", "--hardware", "fast.json"),
        ("--stage", "vision", "--image", "1x1", "--preset", "tiny", "--hardware", "fast.json"),
        ("--stage", "vision", "--image", "1x1", "--image", "65535x1", "--hardware", "h200"),
    ],
    ids=["slowest-largest", "fastest-decode", "fastest-vision", "two-images"],
)
def test_times_are_finite_and_positive_at_the_extremes(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slow = {
        "name": "slow",
        "matmul_tflops": {"fp32": 1e-3},
        "vector_tflops": 1e-3,
        "memory_gbps": 1e-3,
        "memory_gb": 1e-3,
    }
    fast = {
        "name": "fast",
        "matmul_tflops": {"bf16": 1e6},
        "vector_tflops": 1e6,
        "memory_gbps": 1e7,
        "memory_gb": 1e6,
    }
    Path("slow.json").write_text(json.dumps(slow))
    Path("fast.json").write_text(json.dumps(fast))
    assert main(["eval", "deepseek-ocr", *argv, "--json"]) == 0
    records = _strict_json(capsys.readouterr().out)
    for r in records:
        for key in ("time_s", "compute_bound_s", "memory_bound_s", "arithmetic_intensity"):
            assert math.isfinite(r[key]), key
        assert r["time_s"] > 0
    assert main(["eval", "deepseek-ocr", *argv]) == 0  # the table too
    table = capsys.readouterr().out
    assert not re.search(r"\b(nan|inf)\b", table, re.IGNORECASE)


# -- refused before any work ----------------------------------------------------------------
def test_validate_refuses_fvcore_decode_before_measuring(capsys, monkeypatch):
    import validation.compare

    calls = []
    real = validation.compare.validate_case

    def spy(model, stage, counter, point, check_only=False):
        calls.append(check_only)
        return real(model, stage, counter, point, check_only=check_only)

    monkeypatch.setattr(validation.compare, "validate_case", spy)
    assert main(["validate", "deepseek-ocr", "--stage", "decode", "--counter", "fvcore"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--counter" in _one_error_line(err) and "decode" in err
    assert calls == [True]  # the check-only pass refused it; nothing was measured


# -- stdout that cannot take the output: an error line, not success --------------------------
def test_stdout_full_disk_is_an_error():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "symcost.cli", "params", "deepseek-ocr"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    assert "stdout" in _one_error_line(proc.stderr) and "No space left" in proc.stderr


@pytest.mark.parametrize("argv", [("params", "deepseek-ocr"), E + ("--json",)])
def test_closed_stdout_is_an_error(argv):
    proc = subprocess.run(
        [sys.executable, "-m", "symcost.cli", *argv],
        stdout=None,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 2
    assert "stdout" in _one_error_line(proc.stderr) and "closed" in proc.stderr


def test_an_error_leaves_stdout_empty(capsys, monkeypatch):
    """Output is written only when the command succeeds: no header above an error line."""
    import symcost.commands.params as params

    def half(args, family):
        print("# a header")
        raise SymcostError("--depth: refused after printing")

    monkeypatch.setattr(params, "run", half)
    assert main(["params", "deepseek-ocr"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--depth" in _one_error_line(err)


# -- internal errors: one line, or the traceback when asked -----------------------------------
def test_internal_error_is_one_line_and_debug_reraises(capsys, monkeypatch):
    import symcost.commands.params as params

    def bug(args, family):
        raise ZeroDivisionError("a bug\nover lines")

    monkeypatch.setattr(params, "run", bug)
    monkeypatch.delenv("SYMCOST_DEBUG", raising=False)
    assert main(["params", "deepseek-ocr"]) == 70
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("symcost: internal error: ZeroDivisionError: a bug")
    assert "SYMCOST_DEBUG=1" in err
    monkeypatch.setenv("SYMCOST_DEBUG", "1")
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["params", "deepseek-ocr"])


# -- the CLI never raises, and what it prints is usable ---------------------------------------
_JUNK = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "-1",
            "0",
            "1",
            "2",
            "nan",
            "inf",
            "1e309",
            "1e-7",
            "0.5",
            "True",
            "9" * 400,
            "0" * 5000 + "1",
            "\x00",
            "\u2603",
            "640x640",
            "1x1",
            "65535x65535",
            "0x0",
            "1:2:1",
            "600:640:40",
            "5:1:1",
            "1:2:0",
            "gundam",
            "base",
            "tiny",
            "nocrop",
            "fvcore",
            "request",
            "decode",
            "prefill",
            "vision",
            "fp8",
            "fp32",
            "flash",
            "vllm",
            "last",
            "h200",
            "a100-80gb",
            "flops",
            "io_bytes",
            "time_s",
            "t.csv",
            "t.json",
            "t.txt",
            "p.svg",
            "hw.json",
            "-",
        ]
    ),
)
_FLAGS = [
    "--preset",
    "--vision-mode",
    "--max-crops",
    "--runtime",
    "--attention",
    "--logits",
    "--experts",
    "--stage",
    "--convention",
    "--dtype",
    "--kv-dtype",
    "--prompt-tokens",
    "--kv-len",
    "--new-tokens",
    "--batch",
    "--image",
    "--hardware",
    "--compute-efficiency",
    "--bandwidth-efficiency",
    "--metric",
    "--depth",
    "--width",
    "--height",
    "--out",
]
_SWITCHES = ["--json", "--latex", "--layout", "--force", "--help", "--nope"]
_FLAG_VALUE = st.tuples(st.sampled_from(_FLAGS), _JUNK).map(list)
_TOKEN = st.one_of(
    _FLAG_VALUE,
    _FLAG_VALUE,
    _FLAG_VALUE,  # mostly flags, some strays
    st.sampled_from(_SWITCHES).map(lambda s: [s]),
    _JUNK.map(lambda s: [s]),
)
_REQUIRED = {
    "eval": ["--image", "641x640"],
    "sweep": ["--width", "600:640:40", "--height", "600:640:40", "--out", "s.csv"],
}
# what an error line must name: a flag, or one of these parameters
_NAMED = re.compile(r"--[a-z][a-z-]*|\b(COMMAND|family|hardware file|unrecognized arguments)\b")


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["formulas", "eval", "eval", "params", "sweep", "nope", ""]),
    family=st.sampled_from(["deepseek-ocr", "deepseek-ocr", "deepseek-ocr2", "x", ""]),
    tokens=st.lists(_TOKEN, max_size=5),
)
def test_cli_fuzz(command, family, tokens, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [command, family] + [t for group in tokens for t in group]
    required = _REQUIRED.get(command, [])
    for flag, value in zip(required[::2], required[1::2]):  # bounded sweeps only
        if flag not in argv:
            argv += [flag, value]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, err)
    if code == 0:
        assert out.strip() or command == "sweep", argv  # a sweep's output is its file
        if "--json" in argv and "--help" not in argv and command == "eval":
            records = _strict_json(out)
            assert isinstance(records, list) and records and "flops" in records[0]
    else:
        assert out == "", argv
        _one_error_line(err)
        assert _NAMED.search(err), (argv, err)
    assert not list(tmp_path.glob(".symcost-*.part"))


# -- files: whole or not at all, never replaced without --force ------------------------------
def test_target_appearing_while_writing_is_kept(tmp_path):
    target = tmp_path / "t.csv"

    def slow(f):
        f.write("mine\n")
        target.write_text("theirs\n")  # another writer finished first

    with pytest.raises(SymcostError, match="appeared while writing; pass --force"):
        atomic_write(str(target), slow)
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    atomic_write(str(target), slow, force=True)
    assert target.read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_two_writers_in_one_process_second_is_refused(tmp_path, capsys, monkeypatch):
    """A command that finds its output written by another one meanwhile exits 2."""
    monkeypatch.chdir(tmp_path)
    import symcost.files as files

    real, calls = files.atomic_write, []

    def racing(path, write, **kw):
        calls.append(path)
        if len(calls) == 1:  # while the first writes, a second command writes the same file

            def write_then_race(f):
                write(f)
                assert main(list(S)) == 0

            return real(path, write_then_race, **kw)
        return real(path, write, **kw)

    monkeypatch.setattr(files, "atomic_write", racing)
    monkeypatch.setattr("symcost.sweep.atomic_write", racing, raising=False)
    assert main(list(S)) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "appeared while writing" in err and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 3 * 3


def test_two_writer_processes_one_wins(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "symcost.cli",
        "sweep",
        "deepseek-ocr",
        "--width",
        "1:500",
        "--height",
        "1:500",
        "--out",
        "t.csv",
        "--metric",
        "flops",
        "--metric",
        "io_bytes",
    ]
    procs = [
        subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0, 2], results
    assert "--out" in _one_error_line(results[1][1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 500 * 500


def test_force_replaces_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("old\n")
    assert main(list(S) + ["--force"]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("width,height,") and len(lines) == 1 + 3 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert main(list(S)) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--out" in _one_error_line(err) and "Permission denied" in err
    assert list(tmp_path.iterdir()) == []


# -- signals: nothing half-written, one line, exit 130 ---------------------------------------
def _default_signals():
    """A background shell may start children with SIGINT ignored: restore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sweep_signalled(tmp_path, signum, *extra):
    """Start a large sweep, send ``signum`` while its temp file is written; (code, stdout, stderr)."""
    argv = [
        sys.executable,
        "-m",
        "symcost.cli",
        "sweep",
        "deepseek-ocr",
        "--width",
        "1:2500:1",
        "--height",
        "1:2500:1",
        "--out",
        "big.csv",
        *extra,
    ]
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".symcost-*.part")):
        assert proc.poll() is None, "finished before its temp file was seen"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.2)  # well into the write
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]


@pytest.mark.parametrize("signum", _SIGNALS, ids=[s.name for s in _SIGNALS])
def test_signal_during_write_leaves_nothing(tmp_path, signum):
    code, out, err = _sweep_signalled(tmp_path, signum)
    assert (code, out, err) == (130, "", "symcost: interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_with_force_keeps_the_old_file(tmp_path):
    (tmp_path / "big.csv").write_text("old\n")
    code, out, err = _sweep_signalled(tmp_path, signal.SIGTERM, "--force")
    assert (code, err) == (130, "symcost: interrupted\n")
    assert [p.name for p in tmp_path.iterdir()] == ["big.csv"]
    assert (tmp_path / "big.csv").read_text() == "old\n"


_API_WRITER = """
import sys, time
from symcost.files import atomic_write
def slow(f):
    for _ in range(10_000):
        f.write("x" * 1000)
        f.flush()
        time.sleep(0.01)
atomic_write("out.txt", slow)
"""


@pytest.mark.parametrize("signum", _SIGNALS[1:], ids=[s.name for s in _SIGNALS[1:]])
def test_api_writer_cleans_up_on_termination(tmp_path, signum):
    """Without the CLI's handlers: atomic_write alone turns SIGTERM/SIGHUP/SIGQUIT into cleanup."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _API_WRITER],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".symcost-*.part")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.1)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_imports_is_one_line(tmp_path):
    """SIGINT while symcost imports SymPy and the families: no traceback, exit 130. That works
    because nothing heavy is imported before ``main`` runs."""
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, symcost.cli; print(sorted({'sympy', 'numpy', 'derivations'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert light == "[]\n"
    start = time.monotonic()  # the interpreter's own start: the signal comes after it
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    bare = time.monotonic() - start
    interrupted = 0
    for delay in np.linspace(max(0.1, 2 * bare), max(0.4, 3 * bare + 0.3), 8):
        # the installed console script, what users run (under `python -m`, runpy turns a handled
        # Ctrl-C during main's imports into a SIGINT exit)
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("symcost")), "formulas", "deepseek-ocr"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_signals,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode in (0, -signal.SIGINT) and out:  # it finished first (the signal may
            assert "flops = " in out and err == ""  # land in the interpreter's own exit)
            continue
        if proc.returncode != 130:  # still in the interpreter's own start (a loaded machine):
            assert "symcost" not in err, err  # then no frame of ours is in the traceback
            continue
        assert (out, err) == ("", "symcost: interrupted\n"), delay
        interrupted += 1
    assert interrupted >= 3


# -- no code from users is evaluated ---------------------------------------------------------
_SOURCES = sorted(p for d in ("symcost", "derivations", "validation") for p in (ROOT / d).rglob("*.py"))
_FORBIDDEN = {"eval", "exec", "parse_expr", "__import__", "parse_latex"}


def _name(func):
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


# (file, function, call) running generated code, never a user's: symcost's magnitude bound from
# its own expressions (checked token by token below)
_GENERATED_CODE = {("compile.py", "_def_bound", "exec")}


def _offences(source: str, where: str) -> list[str]:
    """eval/exec/parse_expr/__import__ calls, sympy.parsing imports, and sympify/S of a string
    literal or of a CLI argument (``args.*``)."""
    found = []
    tree = ast.parse(source)
    for fn in ast.walk(tree):  # tag each node with its enclosing function
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                node.owner = fn.name
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
            if any("parsing" in n or n in _FORBIDDEN for n in names):
                found.append(f"{where}:{node.lineno} imports {names}")
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        allowed = (where, getattr(node, "owner", None), name) in _GENERATED_CODE
        if (
            name in _FORBIDDEN
            and not allowed
            and not (name == "eval" and isinstance(node.func, ast.Attribute))
        ):
            found.append(f"{where}:{node.lineno} calls {name}")  # x.eval() is SymPy's, not ours
        if name in ("sympify", "S") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.JoinedStr) or (
                isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ):
                found.append(f"{where}:{node.lineno} sympifies a string literal")
            if any(
                isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "args"
                for n in ast.walk(arg)
            ):
                found.append(f"{where}:{node.lineno} sympifies a CLI argument")
    return found


def test_no_eval_and_no_sympify_of_strings():
    assert len(_SOURCES) > 20
    assert [o for p in _SOURCES for o in _offences(p.read_text(), p.name)] == []


def test_the_source_check_catches_offences():
    bad = (
        "import sympy as sp\nfrom sympy.parsing.sympy_parser import parse_expr\n"
        "sp.sympify('x')\nsp.S(f'{w}')\nsp.sympify(args.image)\neval('1')\nexec(c)\n"
        "parse_expr(t)\nsp.sympify(3)\nsp.Piecewise((1, True)).eval()\n"
    )
    assert len(_offences(bad, "bad")) == 7
    assert _offences("def _def_bound():\n    exec(c)\n", "compile.py") == []
    assert len(_offences("def other():\n    exec(c)\n", "compile.py")) == 1
    assert len(_offences("def _def_bound():\n    exec(c)\n", "model.py")) == 1


def test_generated_source_holds_only_symcost_tokens(gundam):
    """What the one allowed exec runs: names a0.., x0.., bound, _max; integers; arithmetic."""
    fn = gundam.compile("request", ["flops", "io_bytes"], hardware="h200")._fn
    source = fn.bound_source
    assert source.startswith("def bound(")
    allowed = re.compile(r"(a|x)[0-9]+|[0-9]+|def|bound|return|_max|\*\*|[-+*(),:=]")
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (
            tokenize.NEWLINE,
            tokenize.NL,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            assert allowed.fullmatch(tok.string), tok


def test_no_string_reaches_sympify_at_run_time(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real, strings = sympy.sympify, []

    def watch(a, *args, **kwargs):
        if isinstance(a, str):
            strings.append(a)
        return real(a, *args, **kwargs)

    monkeypatch.setattr(sympy, "sympify", watch)
    hostile = "__import__('os').system('echo pwned')"
    for argv in (
        ["formulas", "deepseek-ocr", "--stage", "request"],
        ["formulas", "deepseek-ocr", "--metric", "time_s", "--hardware", "h200"],
        ["eval", "deepseek-ocr", "--image", "640x641", "--hardware", "h200"],
        ["eval", "deepseek-ocr", "--image", hostile],
        ["eval", "deepseek-ocr", "--image", "1x1", "--hardware", hostile],
        ["eval", "deepseek-ocr", "--image", "1x1", "--batch", hostile],
        ["sweep", "deepseek-ocr", "--width", hostile, "--height", "1:2:1", "--out", "a.csv"],
        list(S),
    ):
        assert main(argv) in (0, 2)
    capsys.readouterr()
    assert strings == []
    sympy.sympify("1")  # the watch sees a string when one is passed
    assert strings == ["1"]


# -- exactness at the input bounds: numeric model == compiled model, to the integer ----------
EDGES = (WIDTH.lo, 640, 641, 8192, WIDTH.hi)
TOP = {i.name: i.hi for i in FAMILY.inputs}
STAGE_CASES = [  # stage, stage arguments, (W, H) pairs
    ("vision", dict(batch=1), [(w, h) for w in EDGES for h in EDGES]),
    ("vision", dict(batch=TOP["batch"]), [(1, 1), (641, 640), (WIDTH.hi, WIDTH.hi)]),
    ("prefill", dict(prompt_tokens=TOKENS.lo), [(1, 1), (641, 640), (8192, 1), (WIDTH.hi,) * 2]),
    ("prefill", dict(prompt_tokens=TOKENS.hi, batch=TOP["batch"]), [(641, 640), (WIDTH.hi,) * 2]),
    ("decode", dict(kv_len=0), [None]),
    ("decode", dict(kv_len=TOP["kv_len"], batch=TOP["batch"]), [None]),
    ("request", dict(prompt_tokens=0, new_tokens=1), [(1, 1), (641, 640), (WIDTH.hi,) * 2]),
    ("request", dict(prompt_tokens=0, new_tokens=2), [(641, 640)]),
    (
        "request",
        dict(prompt_tokens=TOKENS.hi, new_tokens=TOP["new_tokens"], batch=TOP["batch"]),
        [(WIDTH.hi, 641)],
    ),
]
_INT_KEYS = (
    "w_tiles",
    "h_tiles",
    "n_crops",
    "image_tokens",
    "prefill_tokens",
    "flops",
    "macs",
    "params",
    "weight_bytes",
    "kv_bytes",
    "activation_bytes",
    "memory_bytes",
    "io_bytes",
)


_EDGE_MODELS = {}


def _edge_model(name):
    if name not in _EDGE_MODELS:
        family, _, preset = name.partition(":")
        _EDGE_MODELS[name] = symcost.load(family, **({"preset": preset} if preset else {}))
    return _EDGE_MODELS[name]


@pytest.mark.parametrize("name", ["deepseek-ocr:gundam", "deepseek-ocr:base", "deepseek-ocr2"])
@pytest.mark.parametrize(
    "stage,values,shapes",
    STAGE_CASES,
    ids=[f"{s}-{'-'.join(map(str, v.values()))}" for s, v, _ in STAGE_CASES],
)
def test_edges_numeric_equals_compiled(name, stage, values, shapes):
    m = _edge_model(name)
    metrics = [k for k in _INT_KEYS[5:]]
    ev = m.compile(stage, metrics)
    if shapes == [None]:  # decode: no image
        got, want = ev(**values), m.evaluate(stage=stage, **values)
        assert all(int(got[k]) == want[k] for k in metrics)
        return
    w, h = (np.array(c, dtype=np.int64) for c in zip(*shapes))
    got = ev(w, h, **values)
    for k, (wi, hi) in enumerate(shapes):
        want = m.evaluate(int(wi), int(hi), stage, **values)
        for key in _INT_KEYS:
            if key in want:
                assert int(got[key][k]) == want[key], (key, wi, hi)


# -- determinism: the same command prints the same bytes ------------------------------------
DETERMINISTIC = [
    ["formulas", "deepseek-ocr", "--preset", "gundam", "--stage", "request"],
    ["formulas", "deepseek-ocr", "--preset", "gundam-m", "--layout", "--latex"],
    [
        "eval",
        "deepseek-ocr2",
        "--stage",
        "request",
        "--image",
        "1280x720",
        "--image",
        "641x640",
        "--prompt-tokens",
        "12",
        "--new-tokens",
        "500",
        "--hardware",
        "h100-sxm",
        "--json",
    ],
]


@pytest.mark.parametrize("argv", DETERMINISTIC, ids=lambda a: " ".join(a[:3]))
def test_same_command_same_bytes(argv):
    outs = [
        subprocess.run(
            [sys.executable, "-m", "symcost.cli", *argv],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("0", "4242")
    ]
    assert outs[0] and outs[0] == outs[1]
