"""Robustness: every bad input gets one clear error, no file is half-written, no user string is
evaluated, edge shapes stay exact, and the same command prints the same bytes."""
import ast
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcost
from symcost import SymcostError
from symcost.checks import LIMITS
from symcost.cli import main
from symcost.hardware import HARDWARE, load_hardware
from symcost.sweep import MAX_CELLS

ROOT = Path(__file__).resolve().parents[1]
E = ("eval", "deepseek-ocr", "--image", "640x640")
S = ("sweep", "deepseek-ocr", "--width", "600:640:20", "--height", "600:640:20", "--out", "t.csv")


@pytest.fixture(scope="module")
def gundam():
    return symcost.load("deepseek-ocr", preset="gundam")


# -- the CLI: one line on stderr naming the parameter, exit 2, nothing on stdout, no file -----
CLI_BAD = [  # argv, fragments the one stderr line must contain (parameter, bad value, allowed)
    ((), ["command"]),
    (("nope",), ["command", "'nope'", "formulas"]),
    (("eval", "nope", "--image", "1x1"), ["family", "'nope'", "deepseek-ocr"]),
    (E + ("--preset", "huge"), ["--preset", "'huge'", "gundam-m"]),
    (E + ("--preset", ""), ["--preset", "''", "gundam"]),
    (E + ("--vision-mode", "x"), ["--vision-mode", "'x'", "crops, nocrop"]),
    (E + ("--max-crops", "1"), ["--max-crops", "'1'", "[2, 9]"]),
    (E + ("--convention", "flopz"), ["--convention", "'flopz'", "fvcore-default"]),
    (E + ("--stage", "train"), ["--stage", "'train'", "request"]),
    (E + ("--dtype", "int8"), ["--dtype", "'int8'", "fp8"]),
    (E + ("--kv-dtype", "int4"), ["--kv-dtype", "'int4'", "bf16"]),
    (E + ("--attention", "paged"), ["--attention", "'paged'", "eager, flash"]),
    (E + ("--hardware", "tpu"), ["hardware", "'tpu'", "h100-sxm"]),
    (E + ("--hardware", ""), ["hardware", "''", "h100-sxm"]),
    (E + ("--hardware", "missing.json"), ["hardware", "'missing.json'", "FileNotFoundError"]),
    (E + ("--hardware", "a100-80gb", "--dtype", "fp8"), ["dtype", "'fp8'", "bf16"]),
    (E + ("--efficiency", "nan"), ["--efficiency", "'nan'", "(0, 1]"]),
    (E + ("--efficiency", "inf"), ["--efficiency", "'inf'", "(0, 1]"]),
    (E + ("--efficiency", "0"), ["--efficiency", "'0'", "(0, 1]"]),
    (("formulas", "deepseek-ocr", "--metric", "speed"), ["--metric", "'speed'", "io_bytes"]),
    (S + ("--metric", "speed"), ["--metric", "'speed'", "arithmetic_intensity"]),
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
    (("eval", "deepseek-ocr", "--image", "\uff16\uff14\uff10x640"), ["--image", "WxH"]),
    (E + ("--image", "1x99999"), ["--image", "'1x99999'", "[1, 65535]"]),
    (E + ("--prompt-tokens=-1",), ["--prompt-tokens", "'-1'", "[0, 1048576]"]),
    (E + ("--prompt-tokens", "1.5"), ["--prompt-tokens", "'1.5'", "[0, 1048576]"]),
    (E + ("--prompt-tokens", "True"), ["--prompt-tokens", "'True'", "[0, 1048576]"]),
    (E + ("--prompt-tokens", ""), ["--prompt-tokens", "''", "[0, 1048576]"]),
    (E + ("--prompt-tokens", "9" * 5000), ["--prompt-tokens", "[0, 1048576]"]),
    (E + ("--kv-len", "nan"), ["--kv-len", "'nan'", "[0, 1048576]"]),
    (E + ("--kv-len", "1048577"), ["--kv-len", "'1048577'", "[0, 1048576]"]),
    (E + ("--new-tokens", "0"), ["--new-tokens", "'0'", "[1, 1048576]"]),
    (E + ("--batch", "0"), ["--batch", "'0'", "[1, 65536]"]),
    (E + ("--batch", "1e3"), ["--batch", "'1e3'", "[1, 65536]"]),
    (E + ("--foo",), ["unrecognized arguments: --foo"]),
    (E + ("a\nb",), ["unrecognized arguments: a\\nb"]),
    (S[:3] + ("640:600:20",) + S[4:], ["--width", "'640:600:20'", "reversed"]),
    (S[:5] + ("600:640:0",) + S[6:], ["--height", "step 0", ">= 1"]),
    (S[:3] + ("",) + S[4:], ["--width", "''", "A:B:STEP"]),
    (S[:3] + ("0:10:1",) + S[4:], ["--width", "'0:10:1'", "1 <= A <= B <= 65535"]),
    (("sweep", "deepseek-ocr", "--width", "1:65535:1", "--height", "1:65535:1", "--out", "t.csv"),
     ["--width/--height", "65535 x 65535", f"{MAX_CELLS:,}"]),
    (S[:-1] + ("t.txt",), ["--out", "'t.txt'", ".csv, .json, .parquet"]),
    (S[:-1] + ("nodir/t.csv",), ["--out", "nodir", "does not exist"]),
    (S[:-1] + ("sub.csv",), ["--out", "'sub.csv'", "not a regular file"]),
    (S + ("--plot", "p.pdf"), ["--plot", "'p.pdf'", ".png, .svg"]),
    (S + ("--plot", "old.png"), ["--plot", "'old.png'", "--force"]),
    (S[:-1] + ("old.csv",), ["--out", "'old.csv'", "--force"]),
]


@pytest.mark.parametrize("argv,fragments", CLI_BAD, ids=[" ".join(a)[-40:] for a, _ in CLI_BAD])
def test_cli_bad_input(argv, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.csv").write_text("old\n")
    (tmp_path / "old.png").write_text("old\n")
    (tmp_path / "sub.csv").mkdir()
    before = sorted(os.listdir(tmp_path))

    def no_work(*a, **k):  # sweeps are refused before anything is compiled
        raise AssertionError("compiled before the input was checked")
    if argv[:1] == ("sweep",):
        monkeypatch.setattr(symcost.Model, "compile", no_work)
    assert main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("symcost: error: ")
    for fragment in fragments:
        assert fragment in err
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "old.csv").read_text() == "old\n"


def test_cli_help_is_not_an_error(capsys):
    assert main(["--help"]) == 0
    assert "usage: symcost" in capsys.readouterr().out


# -- the API: SymcostError (a ValueError) naming the parameter ------------------------------
def _api_cases():
    ld = symcost.load
    m = ld("deepseek-ocr", preset="gundam")
    ev = m.compile("request", ["flops"])
    hw = '{"name": "g", "matmul_tflops": {"bf16": 1}, "vector_tflops": 1, "memory_gbps": 1'
    return [
        ("family", lambda: ld("nope"), ["family", "'nope'", "deepseek-ocr"]),
        ("family None", lambda: ld(None), ["family", "None"]),
        ("preset", lambda: ld("deepseek-ocr", preset="huge"), ["preset", "'huge'", "gundam"]),
        ("preset empty", lambda: ld("deepseek-ocr", preset=""), ["preset", "''", "tiny"]),
        ("vision_mode", lambda: ld("deepseek-ocr", vision_mode="x"), ["vision_mode", "nocrop"]),
        ("max_crops bool", lambda: ld("deepseek-ocr", max_crops=True), ["max_crops", "True"]),
        ("max_crops float", lambda: ld("deepseek-ocr", max_crops=6.0), ["max_crops", "6.0"]),
        ("max_crops 10", lambda: ld("deepseek-ocr", max_crops=10), ["max_crops", "[2, 9]"]),
        ("unknown option", lambda: ld("deepseek-ocr", crops=3), ["crops", "preset, vision_mode"]),
        ("stage", lambda: m.formula("train"), ["stage", "'train'", "request"]),
        ("stage list", lambda: m.formula(["vision"]), ["stage", "['vision']"]),
        ("metric", lambda: m.formula("vision", "speed"), ["metric", "'speed'", "io_bytes"]),
        ("convention", lambda: m.formula("vision", "flops", "x"), ["convention", "'x'", "torch"]),
        ("by", lambda: m.formula("vision", by="layer"), ["by", "'layer'", "component, kind"]),
        ("dtype", lambda: m.formula("vision", dtype="int8"), ["dtype", "'int8'", "fp8"]),
        ("kv_dtype", lambda: m.formula("decode", "kv_bytes", kv_dtype="x"), ["kv_dtype", "'x'"]),
        ("attention", lambda: m.formula("decode", attention="paged"), ["attention", "flash"]),
        ("tree stage", lambda: m.tree("train"), ["stage", "'train'"]),
        ("tree attention", lambda: m.tree("vision", "paged"), ["attention", "'paged'"]),
        ("expressions dtype list", lambda: m.expressions("vision", dtype=["bf16"]), ["dtype"]),
        ("tile_grid 0", lambda: m.tile_grid(0, 640), ["width", "0", "[1, 65535]"]),
        ("tile_grid 65536", lambda: m.tile_grid(640, 65536), ["height", "65536", "[1, 65535]"]),
        ("tile_grid float", lambda: m.tile_grid(640.0, 640), ["width", "float64"]),
        ("tile_grid nan", lambda: m.tile_grid(np.nan, 640), ["width", "float64"]),
        ("tile_grid bool", lambda: m.tile_grid(True, 640), ["width", "bool"]),
        ("tile_grid str", lambda: m.tile_grid("640", 640), ["width", "<U3"]),
        ("tile_grid None", lambda: m.tile_grid(None, 640), ["width", "object"]),
        ("tile_grid 2**70", lambda: m.tile_grid([2 ** 70], 640), ["width", str(2 ** 70)]),
        ("tile_grid ragged", lambda: m.tile_grid([[1], [1, 2]], 640), ["width", "ragged"]),
        ("tile_grid shapes", lambda: m.tile_grid([1, 2, 3], [1, 2]), ["width (3,)", "height (2,)"]),
        ("evaluate float", lambda: m.evaluate(640.0, 640), ["width", "640.0", "[1, 65535]"]),
        ("evaluate nan", lambda: m.evaluate(640, float("nan")), ["height", "nan"]),
        ("evaluate inf", lambda: m.evaluate(float("inf"), 640), ["width", "inf"]),
        ("evaluate bool", lambda: m.evaluate(True, 640), ["width", "True"]),
        ("evaluate str", lambda: m.evaluate("", 640), ["width", "''"]),
        ("evaluate array", lambda: m.evaluate(np.array([640]), 640), ["width", "array"]),
        ("prompt -1", lambda: m.evaluate(640, 640, prompt_tokens=-1), ["prompt_tokens", "-1"]),
        ("kv_len 2**20+1", lambda: m.evaluate(640, 640, "decode", kv_len=2 ** 20 + 1),
         ["kv_len", "1048577", "[0, 1048576]"]),
        ("kv_len float", lambda: m.evaluate(640, 640, "decode", kv_len=1.5), ["kv_len", "1.5"]),
        ("new_tokens 0", lambda: m.evaluate(640, 640, "request", new_tokens=0),
         ["new_tokens", "0", "[1, 1048576]"]),
        ("batch bool", lambda: m.evaluate(640, 640, batch=True), ["batch", "True"]),
        ("batch 0", lambda: m.evaluate(640, 640, batch=0), ["batch", "0", "[1, 65536]"]),
        ("evaluate stage", lambda: m.evaluate(640, 640, "train"), ["stage", "'train'"]),
        ("evaluate convention", lambda: m.evaluate(640, 640, convention="x"), ["convention"]),
        ("evaluate dtype", lambda: m.evaluate(640, 640, dtype="x"), ["dtype", "'x'"]),
        ("evaluate attention", lambda: m.evaluate(640, 640, attention="x"), ["attention"]),
        ("hardware name", lambda: m.evaluate(640, 640, hardware="tpu"), ["hardware", "'tpu'"]),
        ("hardware int", lambda: m.evaluate(640, 640, hardware=3), ["hardware", "3", "h200"]),
        ("hardware no fp8", lambda: m.evaluate(640, 640, hardware="a100-80gb", dtype="fp8"),
         ["dtype", "'fp8'", "a100-80gb"]),
        ("efficiency nan", lambda: m.evaluate(640, 640, hardware="h200", efficiency=float("nan")),
         ["efficiency", "nan", "(0, 1]"]),
        ("efficiency without hardware", lambda: m.evaluate(640, 640, efficiency=2),
         ["efficiency", "2"]),
        ("efficiency str", lambda: m.compile(hardware="h200", efficiency="1"), ["efficiency"]),
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
        ("evaluator uint64", lambda: ev(np.array([2 ** 64 - 1], dtype=np.uint64), 640),
         ["width", str(2 ** 64 - 1)]),
        ("evaluator object", lambda: ev(np.array([640, 1.5], dtype=object), 640), ["width"]),
        ("evaluator shapes", lambda: ev([1, 2, 3], [1, 2]), ["width (3,)", "height (2,)"]),
        ("evaluator token shape", lambda: ev([1, 2, 3], 640, prompt_tokens=[1, 2]),
         ["width (3,)", "prompt_tokens (2,)"]),
        ("evaluator tokens float", lambda: ev(640, 640, prompt_tokens=1.0), ["prompt_tokens"]),
        ("evaluator tokens neg", lambda: ev(640, 640, kv_len=[-1]), ["kv_len", "-1"]),
        ("evaluator new 0", lambda: ev(640, 640, new_tokens=0), ["new_tokens", "0"]),
        ("evaluator ragged", lambda: ev([[1], [1, 2]], 640), ["width", "ragged"]),
        ("evaluator 2**80", lambda: ev([2 ** 80], 640), ["width", str(2 ** 80)]),
        ("hardware file", lambda: load_hardware("missing.json"), ["hardware", "'missing.json'"]),
        ("hardware file json", lambda: _hw_file(hw), ["hardware", "JSONDecodeError", "line 1"]),
    ]


def _hw_file(text, path="hw.json"):
    Path(path).write_text(text)
    return load_hardware(path)


def test_api_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    for label, call, fragments in _api_cases():
        with pytest.raises(SymcostError) as e:
            call()
        assert isinstance(e.value, ValueError)
        message = str(e.value)
        assert "\n" not in message, label
        missing = [f for f in fragments if f not in message]
        assert not missing, (label, message)
        seen.append(label)
    assert len(seen) > 70


def test_lists_and_empty_arrays_are_fine(gundam):
    ev = gundam.compile("vision", ["flops"])
    assert ev([], [])["flops"].shape == (0,)
    assert gundam.tile_grid(np.array([], dtype=np.int64), 640)[0].shape == (0,)
    one = ev(np.int32(641), [640])
    assert one["flops"].tolist() == [gundam.evaluate(641, 640)["flops"]]
    assert gundam.compile("vision", ("flops",), hardware=HARDWARE["h200"]) is \
        gundam.compile("vision", ("flops",), hardware=HARDWARE["h200"])


# -- hardware files: parsed safely, field by field, units stated ----------------------------
GOOD_HW = {"name": "g", "matmul_tflops": {"bf16": 100}, "vector_tflops": 10, "memory_gbps": 1000}
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
    (json.dumps({**GOOD_HW, "memory_gbps": 0}), ["memory_gbps", "positive", "got 0"]),
    (json.dumps({**GOOD_HW, "memory_gbps": True}), ["memory_gbps", "got True"]),
    (json.dumps({**GOOD_HW, "memory_gbps": "1000"}), ["memory_gbps", "got '1000'"]),
    (json.dumps(GOOD_HW).replace("1000", "9" * 5000), ["cannot read", "ValueError"]),
    (json.dumps({**GOOD_HW, "name": " "}), ["name must be a non-empty string"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {}}), ["matmul_tflops", "fp32, bf16"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"int8": 1}}), ["unknown dtype 'int8'", "fp8"]),
    (json.dumps({**GOOD_HW, "matmul_tflops": {"bf16": -1}}), ["matmul_tflops.bf16", "TFLOP/s"]),
]


@pytest.mark.parametrize("text,fragments", HW_BAD, ids=range(len(HW_BAD)))
def test_hardware_file_refused(text, fragments, tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(text)
    with pytest.raises(SymcostError) as e:
        load_hardware(str(path))
    for fragment in fragments:
        assert fragment in str(e.value)


def test_hardware_file_not_utf8_and_good_file(tmp_path):
    path = tmp_path / "hw.json"
    path.write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(SymcostError, match="UnicodeDecodeError"):
        load_hardware(str(path))
    path.write_text(json.dumps(GOOD_HW))
    assert load_hardware(str(path)).memory_gbps == 1000.0


# -- the CLI never raises, whatever it is given ----------------------------------------------
_JUNK = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", " ", "-1", "0", "1", "nan", "inf", "1e309", "True", "9" * 400, "\x00", "\u2603",
     "640x640", "1x1", "65535x65535", "0x0", "1:2:1", "600:640:40", "5:1:1", "1:2:0",
     "gundam", "base", "nocrop", "fvcore", "request", "decode", "fp8", "flash", "h200",
     "flops", "io_bytes", "t.csv", "t.json", "t.parquet", "t.txt", "p.svg", "hw.json", "-"]))
_FLAGS = ["--preset", "--vision-mode", "--max-crops", "--stage", "--convention", "--dtype",
          "--kv-dtype", "--attention", "--prompt-tokens", "--kv-len", "--new-tokens", "--batch",
          "--image", "--hardware", "--efficiency", "--metric", "--depth", "--width", "--height",
          "--out", "--plot", "--measured"]
_SWITCHES = ["--json", "--latex", "--layout", "--force", "--help", "--nope"]
_FLAG_VALUE = st.tuples(st.sampled_from(_FLAGS), _JUNK).map(list)
_TOKEN = st.one_of(_FLAG_VALUE, _FLAG_VALUE, _FLAG_VALUE,  # mostly flags, some strays
                   st.sampled_from(_SWITCHES).map(lambda s: [s]), _JUNK.map(lambda s: [s]))
_REQUIRED = {"eval": ["--image", "641x640"], "sweep": ["--width", "600:640:40", "--height",
                                                      "600:640:40", "--out", "s.csv"]}


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["formulas", "eval", "eval", "params", "sweep", "sweep", "nope", ""]),
       family=st.sampled_from(["deepseek-ocr", "deepseek-ocr", "deepseek-ocr", "x", ""]),
       tokens=st.lists(_TOKEN, max_size=5))
def test_cli_returns_0_or_2_and_never_raises(command, family, tokens, capsys, tmp_path,
                                             monkeypatch):
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
    if code == 2:
        assert out == "" and err.count("\n") == 1 and err.startswith("symcost: error: "), argv
    assert not list(tmp_path.glob(".symcost-*.part"))


# -- nothing lost or half-written ------------------------------------------------------------
def _sweep_interrupted(tmp_path, *extra):
    """Run a large sweep, SIGINT it while its temp file is being written; (code, stderr)."""
    argv = [sys.executable, "-m", "symcost.cli", "sweep", "deepseek-ocr", "--width", "1:2500:1",
            "--height", "1:2500:1", "--out", "big.csv", *extra]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,  # a background shell may have SIGINT ignored: restore it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".symcost-*.part")):
        assert proc.poll() is None, "finished before its temp file was seen"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.2)  # well into the write
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert out == ""
    return proc.returncode, err


def test_interrupt_during_write_leaves_nothing(tmp_path):
    code, err = _sweep_interrupted(tmp_path)
    assert code == 130
    assert err == "symcost: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_interrupt_with_force_keeps_the_old_file(tmp_path):
    (tmp_path / "big.csv").write_text("old\n")
    code, err = _sweep_interrupted(tmp_path, "--force")
    assert (code, err) == (130, "symcost: interrupted\n")
    assert [p.name for p in tmp_path.iterdir()] == ["big.csv"]
    assert (tmp_path / "big.csv").read_text() == "old\n"


def test_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert main(list(S)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--out" in err and "Permission denied" in err
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("old\n")
    assert main(list(S) + ["--force"]) == 0
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "width,height,w_tiles,h_tiles,flops"
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 3 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


# -- no code from users is evaluated ---------------------------------------------------------
_SOURCES = sorted(p for d in ("symcost", "derivations", "validation") for p in (ROOT / d).rglob("*.py"))
_FORBIDDEN = {"eval", "exec", "parse_expr", "__import__", "parse_latex"}


def _name(func):
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) \
        else None


# (file, function, call) running generated code, never a user's: symcost's magnitude bound from
# its own expressions (checked token by token below); torch's ShapeEnv guards in validation
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
        if name in _FORBIDDEN and not allowed \
                and not (name == "eval" and isinstance(node.func, ast.Attribute)):
            found.append(f"{where}:{node.lineno} calls {name}")  # x.eval() is SymPy's, not ours
        if name in ("sympify", "S") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant)
                                                  and isinstance(arg.value, str)):
                found.append(f"{where}:{node.lineno} sympifies a string literal")
            if any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id == "args" for n in ast.walk(arg)):
                found.append(f"{where}:{node.lineno} sympifies a CLI argument")
    return found


def test_no_eval_and_no_sympify_of_strings():
    assert len(_SOURCES) > 20
    assert [o for p in _SOURCES for o in _offences(p.read_text(), p.name)] == []


def test_the_source_check_catches_offences():
    bad = ("import sympy as sp\nfrom sympy.parsing.sympy_parser import parse_expr\n"
           "sp.sympify('x')\nsp.S(f'{w}')\nsp.sympify(args.image)\neval('1')\nexec(c)\n"
           "parse_expr(t)\nsp.sympify(3)\nsp.Piecewise((1, True)).eval()\n")
    assert len(_offences(bad, "bad")) == 7
    assert _offences("def _def_bound():\n    exec(c)\n", "compile.py") == []
    assert len(_offences("def other():\n    exec(c)\n", "compile.py")) == 1


def test_generated_source_holds_only_symcost_tokens(gundam):
    """What the one allowed exec runs: names a0.., x0.., bound, _max; integers; arithmetic."""
    fn = gundam.compile("request", ["flops", "io_bytes"], hardware="h200")._fn
    source = getattr(fn, "bound_source", "")
    allowed = re.compile(r"(a|x)[0-9]+|[0-9]+|def|bound|return|_max|\*\*|[-+*(),:=]")
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
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
    for argv in (["formulas", "deepseek-ocr", "--stage", "request"],
                 ["eval", "deepseek-ocr", "--image", "640x641", "--hardware", "h200"],
                 ["eval", "deepseek-ocr", "--image", hostile],
                 ["eval", "deepseek-ocr", "--image", "1x1", "--hardware", hostile],
                 ["sweep", "deepseek-ocr", "--width", hostile, "--height", "1:2:1", "--out", "a.csv"],
                 list(S)):
        assert main(argv) in (0, 2)
    capsys.readouterr()
    assert strings == []
    sympy.sympify("1")  # the watch sees a string when one is passed
    assert strings == ["1"]


# -- exactness at the edges: numeric model == compiled model, to the integer ----------------
EDGES = (1, 640, 641, 8192, 65535)
STAGE_CASES = [  # stage, stage arguments, (W, H) pairs
    ("vision", dict(batch=1), [(w, h) for w in EDGES for h in EDGES]),
    ("vision", dict(batch=1 << 16), [(1, 1), (641, 640), (65535, 65535)]),
    ("prefill", dict(prompt_tokens=0), [(1, 1), (641, 640), (8192, 1), (65535, 65535)]),
    ("prefill", dict(prompt_tokens=1 << 20, batch=1 << 16), [(641, 640), (65535, 65535)]),
    ("decode", dict(kv_len=0), [(640, 640)]),
    ("decode", dict(kv_len=1 << 20, batch=1 << 16), [(640, 640)]),
    ("request", dict(prompt_tokens=0, new_tokens=1), [(1, 1), (641, 640), (65535, 65535)]),
    ("request", dict(prompt_tokens=0, new_tokens=2), [(641, 640)]),
    ("request", dict(prompt_tokens=1 << 20, new_tokens=1 << 20, batch=1 << 16), [(65535, 641)]),
]
_INT_KEYS = ("w_tiles", "h_tiles", "n_crops", "image_tokens", "prefill_tokens", "flops", "macs",
             "params", "weight_bytes", "kv_bytes", "activation_bytes", "io_bytes")


@pytest.mark.parametrize("preset", ["gundam", "gundam-m", "base"])
@pytest.mark.parametrize("stage,values,shapes", STAGE_CASES,
                         ids=[f"{s}-{'-'.join(map(str, v.values()))}" for s, v, _ in STAGE_CASES])
def test_edges_numeric_equals_compiled(preset, stage, values, shapes):
    m = symcost.load("deepseek-ocr", preset=preset)
    metrics = [k for k in _INT_KEYS[5:]]
    w, h = (np.array(c, dtype=np.int64) for c in zip(*shapes))
    got = m.compile(stage, metrics)(w, h, **values)
    for k, (wi, hi) in enumerate(shapes):
        want = m.evaluate(int(wi), int(hi), stage, **values)
        for key in _INT_KEYS:
            assert int(got[key][k]) == want[key], (key, wi, hi)
    assert max(LIMITS["width"]) == EDGES[-1]


# -- determinism: the same command prints the same bytes ------------------------------------
DETERMINISTIC = [
    ["formulas", "deepseek-ocr", "--preset", "gundam", "--stage", "request"],
    ["formulas", "deepseek-ocr", "--preset", "gundam-m", "--layout"],
    ["eval", "deepseek-ocr", "--stage", "request", "--image", "1280x720", "--image", "641x640",
     "--prompt-tokens", "12", "--new-tokens", "500", "--hardware", "h100-sxm", "--json"],
]


@pytest.mark.parametrize("argv", DETERMINISTIC, ids=lambda a: " ".join(a[:3]))
def test_same_command_same_bytes(argv):
    outs = [subprocess.run([sys.executable, "-m", "symcost.cli", *argv], capture_output=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("0", "4242")]
    assert outs[0] and outs[0] == outs[1]
