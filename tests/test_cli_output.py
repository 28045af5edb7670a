"""What the CLI prints is readable at a glance and says what it assumes: self-describing
headers, units in every column, numbers scaled to them, JSON records with every key, formulas
(text and compilable LaTeX) equal to the API's, help that teaches every option."""

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

import symcost
from symcost.cli import build_parser, main
from symcost.render import render

OCR, OCR2 = "deepseek-ocr", "deepseek-ocr2"
TOTAL_PARAMS = {OCR: "3,336,106,240", OCR2: "3,389,119,360"}  # the checkpoints' counts (README)


def run(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return out


def header_and_table(out: str) -> tuple[list[str], list[dict]]:
    """The ``#`` lines, and the table as one dict per row (title -> cell)."""
    lines = out.splitlines()
    head = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    titles = re.split(r"\s{2,}", body[0].strip())
    rows = [dict(zip(titles, re.split(r"\s{2,}", ln.strip()))) for ln in body[1:]]
    assert all(len(r) == len(titles) for r in rows)
    return head, rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


# -- eval: headers and tables -----------------------------------------------------------------
def test_eval_header_echoes_every_setting_and_units_label_every_column(capsys):
    out = run(
        capsys,
        "eval",
        OCR,
        "--stage",
        "request",
        "--image",
        "1280x720",
        "--image",
        "1654x2339",
        "--prompt-tokens",
        "12",
        "--new-tokens",
        "500",
        "--batch",
        "4",
        "--hardware",
        "h100-sxm",
        "--kv-dtype",
        "fp8",
    )
    head, rows = header_and_table(out)
    text = "\n".join(head)
    for fragment in (
        "family deepseek-ocr",
        "preset gundam (",
        "vision_mode crops (",
        "runtime hf",
        "stage request: vision + prefill",
        "convention torch: FlopCounterMode",
        "dtype bf16 (activations bf16), kv_dtype fp8",
        "prompt_tokens P = 12",
        "new_tokens N = 500",
        "batch B = 4",
        "time on h100-sxm: per op max(compute at 100% of 989.5 TFLOP/s bf16 matmul",
        "3350 GB/s",
        "launch floor",
        "# bound: ",
    ):
        assert fragment in text, fragment
    assert [r["image"] for r in rows] == ["1280x720", "1654x2339"]
    titles = list(rows[0])
    for metric in (
        "flops",
        "io",
        "weights",
        "activations",
        "memory",
        "kv after",
        "intensity",
        "time",
        "ttft",
        "tpot",
    ):
        title = next(t for t in titles if t.split(" [")[0] == metric)
        assert re.fullmatch(rf"{metric} \[[kMGTPE]?(FLOP|B|FLOP/B)\]|{metric} \[[mun]?s\]", title), title
    assert {r["bound"] for r in rows} <= {"compute", "memory", "launch"}


def test_eval_table_numbers_are_the_json_numbers_scaled(capsys):
    argv = (
        "eval",
        OCR2,
        "--stage",
        "prefill",
        "--image",
        "1280x720",
        "--image",
        "640x480",
        "--image",
        "4000x3000",
        "--prompt-tokens",
        "30",
        "--hardware",
        "h200",
    )
    records = json.loads(run(capsys, *argv, "--json"))
    _, rows = header_and_table(run(capsys, *argv))
    keys = {
        "flops": "flops",
        "io": "io_bytes",
        "activations": "activation_bytes",
        "memory": "memory_bytes",
        "weights": "weight_bytes",
        "kv after": "kv_bytes",
        "time": "time_s",
    }
    for title in rows[0]:
        name, _, unit = title.partition(" [")
        if name not in keys:
            continue
        scale = {"GFLOP]": 1e9, "GB]": 1e9, "ms]": 1e-3}[unit]
        cells = [number(r[title]) for r in rows]
        for cell, rec in zip(cells, records):
            assert cell == pytest.approx(rec[keys[name]] / scale, rel=5e-4, abs=5e-4), title
    assert [int(r["image_tokens"].replace(",", "")) for r in rows] == [r["image_tokens"] for r in records]


def test_a_columns_unit_is_the_same_in_every_run(capsys):
    """A tiny decode step and a whole request: every column both show has the same title (unit),
    and its cells read the JSON value in that unit."""
    small = ("eval", OCR, "--stage", "decode", "--kv-len", "10", "--runtime", "vllm", "--hardware", "h200")
    large = ("eval", OCR, "--stage", "request", "--image", "4000x4000", "--new-tokens", "8000")
    large += ("--batch", "64", "--hardware", "h200")
    tables = [header_and_table(run(capsys, *argv))[1] for argv in (small, large)]
    titles = [{t.split(" [")[0]: t for t in rows[0]} for rows in tables]
    metrics = {"flops", "io", "activations", "memory", "kv after", "time"}
    shared = titles[0].keys() & titles[1].keys() & metrics
    assert len(shared) == 6
    assert {m: titles[0][m] for m in shared} == {m: titles[1][m] for m in shared}
    assert titles[0]["time"] == "time [ms]" and titles[1]["tpot"] == "tpot [ms]"


def test_eval_compares_options_and_hardware_side_by_side(capsys):
    out = run(
        capsys,
        "eval",
        OCR,
        "--image",
        "1280x720",
        "--stage",
        "request",
        "--new-tokens",
        "500",
        "--hardware",
        "h100-sxm",
        "--hardware",
        "a100-40gb",
        "--preset",
        "gundam",
        "--preset",
        "base",
    )
    head, rows = header_and_table(out)
    assert [(r["preset"], r["hardware"]) for r in rows] == [
        ("gundam", "h100-sxm"),
        ("gundam", "a100-40gb"),
        ("base", "h100-sxm"),
        ("base", "a100-40gb"),
    ]
    # the vision mode only gundam has is a column ("-" for base), not a header claim
    assert [r["vision_mode"] for r in rows] == ["crops", "crops", "-", "-"]
    assert "preset" not in head[0] and "vision_mode" not in head[0] and "runtime hf" in head[0]
    assert sum("# time on h100-sxm" in h for h in head) == 1
    assert sum("# time on a100-40gb" in h for h in head) == 1
    times = {
        (r["preset"], r["hardware"]): number(r[next(t for t in r if t.startswith("time"))]) for r in rows
    }
    assert times[("gundam", "a100-40gb")] > times[("gundam", "h100-sxm")]  # slower memory
    records = json.loads(
        run(capsys, "eval", OCR, "--image", "1280x720", "--preset", "gundam", "--preset", "base", "--json")
    )
    assert [r["preset"] for r in records] == ["gundam", "base"]
    assert records[0]["n_crops"] == 2 and records[1]["n_crops"] == 0


def test_eval_time_lines_follow_each_compared_runtime(capsys):
    head, rows = header_and_table(
        run(
            capsys,
            "eval",
            OCR,
            "--image",
            "640x640",
            "--runtime",
            "hf",
            "--runtime",
            "vllm",
            "--hardware",
            "h200",
        )
    )
    lines = [h for h in head if h.startswith("# time on h200: ")]
    assert len(lines) == 2 and lines[0].endswith("20 us launch floor (hf)), summed over ops")
    assert "5 us launch floor, 1 us inside CUDA graphs (vllm)" in lines[1]
    assert [r["runtime"] for r in rows] == ["hf", "vllm"]
    assert "attention" not in rows[0]  # it differs between the rows but cannot change vision
    _, rows = header_and_table(
        run(
            capsys,
            "eval",
            OCR,
            "--stage",
            "decode",
            "--runtime",
            "hf",
            "--runtime",
            "vllm",
            "--hardware",
            "h200",
        )
    )
    assert [(r["runtime"], r["attention"]) for r in rows] == [("hf", "eager"), ("vllm", "flash")]


def test_eval_header_leaves_out_what_the_stage_does_not_hold(capsys):
    vision, _ = header_and_table(run(capsys, "eval", OCR, "--image", "640x640"))
    decode, rows = header_and_table(run(capsys, "eval", OCR, "--stage", "decode", "--kv-len", "9"))
    assert "dtype bf16 (activations bf16)" in "\n".join(vision)
    assert "kv_dtype" not in "\n".join(vision)  # a vision stage holds no KV cache
    assert not any(
        t.startswith("kv ") for t in header_and_table(run(capsys, "eval", OCR, "--image", "640x640"))[1][0]
    )
    assert "kv_dtype bf16" in "\n".join(decode) and "kv_len L = 9, batch B = 1" in "\n".join(decode)
    assert "image" not in rows[0] and "w_tiles" not in rows[0]  # decode reads no image


def test_eval_header_leaves_out_settings_the_stage_ignores(capsys):
    vision = run(capsys, "eval", OCR, "--image", "640x640").splitlines()[0]
    decode = run(capsys, "eval", OCR, "--stage", "decode").splitlines()[0]
    assert "logits" not in vision and "experts" not in vision and "attention" not in vision
    assert "preset" not in decode and "vision_mode" not in decode


@pytest.mark.parametrize("family", [OCR, OCR2, "lighton-ocr"])
def test_declared_option_stages_are_true(family):
    """An option left out of a stage's header changes none of that stage's numbers."""
    fam = symcost.get_family(family)
    declared = [o for o in fam.options if o.stages is not None]
    assert declared
    points = {
        "vision": dict(width=1280, height=720),
        "prefill": dict(width=641, height=640),
        "decode": dict(kv_len=300, batch=3),
        "request": dict(width=1280, height=720),
        "step": dict(batch=3, step_tokens=300, score_pairs=40_000, attended_keys=2_000),
    }
    for option in declared:
        values = option.choices if isinstance(option.choices, range) else list(option.choices)
        for stage in set(fam.stage_names) - set(option.stages):
            seen = set()
            for value in values:
                try:
                    model = symcost.load(family, **{option.name: value})
                except symcost.SymcostError:  # a value other options rule out
                    continue
                r = model.evaluate(stage=stage, hardware="h200", **points[stage])
                seen.add(json.dumps(r, sort_keys=True))
            assert len(seen) == 1, (option.name, stage)


def test_decode_needs_no_image_and_options_name_their_stages(capsys):
    assert main(["eval", OCR, "--stage", "decode", "--kv-len", "4096", "--batch", "32"]) == 0
    capsys.readouterr()
    assert main(["eval", OCR, "--image", "640x640", "--new-tokens", "500"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "symcost: error: --new-tokens: stage vision does not read it; stages that do: "
        "request (choose one with --stage)\n"
    )


# -- eval --json: records with every key, null where a stage uses none -------------------------
_KEYS = ("flops", "w_tiles", "h_tiles", "n_crops", "image_tokens", "params", "components")


@pytest.mark.parametrize(
    "stage,extra",
    [("vision", ()), ("prefill", ("--prompt-tokens", "12")), ("request", ("--prompt-tokens", "12"))],
)
def test_eval_json_records_of_image_stages(stage, extra, capsys):
    records = json.loads(
        run(
            capsys,
            "eval",
            OCR2,
            "--image",
            "1280x720",
            "--image",
            "640x480",
            "--stage",
            stage,
            *extra,
            "--logits",
            "all",
            "--json",
        )
    )
    model = symcost.load(OCR2, logits="all")
    assert isinstance(records, list) and len(records) == 2
    for rec, (w, h) in zip(records, [(1280, 720), (640, 480)]):
        assert all(k in rec for k in _KEYS)
        assert (rec["width"], rec["height"], rec["logits"], rec["stage"]) == (w, h, "all", stage)
        assert (rec["w_tiles"], rec["h_tiles"]) == tuple(int(g) for g in model.tile_grid(w, h))
        assert rec["components"][stage] == rec["flops"]  # the stage root is the total
        assert rec["params"] == model.stage_params(stage)
        want = model.evaluate(w, h, stage, **({"prompt_tokens": 12} if extra else {}))
        assert {k: rec[k] for k in want} == want
    assert records[0]["n_crops"] == 2 and records[1]["n_crops"] == 0


def test_eval_json_decode_has_no_image(capsys):
    (rec,) = json.loads(run(capsys, "eval", OCR2, "--stage", "decode", "--kv-len", "4096", "--json"))
    assert all(k in rec for k in _KEYS)
    assert rec["flops"] > 0 and rec["kv_len"] == 4096 and rec["components"]["decode"] == rec["flops"]
    for key in (
        "width",
        "height",
        "w_tiles",
        "h_tiles",
        "n_crops",
        "image_tokens",
        "prefill_tokens",
        "prompt_tokens",
        "new_tokens",
    ):
        assert rec[key] is None, key  # no 1x1 image is pretended
    assert rec["params"] == symcost.load(OCR2).stage_params("decode")


def test_many_images_give_the_numeric_models_numbers_fast(capsys):
    rng = np.random.default_rng(7)
    sides = [(640, 640), (641, 640), (65535, 1), (1, 65535)] + [
        tuple(int(x) for x in rng.integers(1, 5000, 2)) for _ in range(116)
    ]
    argv = ["eval", OCR, "--stage", "prefill", "--prompt-tokens", "7", "--hardware", "h200", "--json"] + [
        a for w, h in sides for a in ("--image", f"{w}x{h}")
    ]
    start = time.perf_counter()
    records = json.loads(run(capsys, *argv))
    elapsed = time.perf_counter() - start
    model = symcost.load(OCR)
    for rec, (w, h) in zip(records, sides):
        want = model.evaluate(w, h, "prefill", prompt_tokens=7, hardware="h200")
        assert {k: rec[k] for k in want} == want, (w, h)
    assert len(records) == 120
    assert elapsed < 10, elapsed  # one numeric evaluation per tile grid, not per image


# -- formulas -----------------------------------------------------------------------------------
def test_formula_api_is_what_the_cli_prints(capsys):
    m = symcost.load(OCR, preset="gundam", vision_mode="crops")
    expr = m.formula("vision", "flops", "torch", named=True)
    assert str(expr) == "B*(388149837824*n_crops + 1139967033344)"
    out = run(capsys, "formulas", OCR, "--preset", "gundam")
    assert f"  flops = {render(expr)}\n" in out
    io = m.formula("request", "io_bytes", "torch", named=True)
    assert f"  io_bytes = {render(io)}\n" in run(
        capsys, "formulas", OCR, "--stage", "request", "--metric", "io_bytes"
    )


def test_formulas_header_and_depth(capsys):
    out = run(capsys, "formulas", OCR, "--depth", "1")
    head = [ln for ln in out.splitlines() if ln.startswith("#")]
    body = [ln.strip() for ln in out.splitlines() if not ln.startswith("#")]
    text = "\n".join(head)
    for fragment in (
        "preset gundam",
        "stage vision",
        "convention torch: FlopCounterMode",
        "metric flops [FLOP]",
        "symbols: B = batch [requests]",
        "--layout",
    ):
        assert fragment in text, fragment
    assert "dtype" not in text  # FLOPs do not depend on dtypes
    names = [b.split(" = ")[0] for b in body]
    assert names == ["n_crops", "image_tokens", "flops", "vision.crops", "vision.global", "vision.layout"]
    deep = run(capsys, "formulas", OCR, "--depth", "3")
    assert "vision.crops.sam.patch_embed = " in deep and "vision.crops.sam.neck.0" not in deep
    only = run(capsys, "formulas", OCR, "--depth", "0")
    assert [ln.split(" = ")[0].strip() for ln in only.splitlines() if not ln.startswith("#")] == [
        "n_crops",
        "image_tokens",
        "flops",
    ]
    byte = run(capsys, "formulas", OCR, "--stage", "decode", "--metric", "kv_bytes")
    assert "# dtype bf16 (activations bf16), kv_dtype bf16" in byte and "convention" not in byte


def test_time_formulas_per_hardware(capsys):
    outs = {
        hw: run(capsys, "formulas", OCR, "--metric", "time_s", "--hardware", hw)
        for hw in ("h200", "a100-40gb")
    }
    assert "# time on h200: " in outs["h200"] and "4800 GB/s" in outs["h200"]
    assert "# time on a100-40gb: " in outs["a100-40gb"] and "1555 GB/s" in outs["a100-40gb"]
    lines = {hw: next(ln for ln in o.splitlines() if ln.startswith("  time_s = ")) for hw, o in outs.items()}
    assert lines["h200"] != lines["a100-40gb"]
    m = symcost.load(OCR)  # the printed closed form is the time the model evaluates
    named = m.formula("vision", "time_s", hardware="h200", named=True)
    assert f"  time_s = {render(named)}" == lines["h200"]
    expr = m.formula("vision", "time_s", hardware="h200")  # in the tile grid and B
    batch = m.family.input("batch").symbol
    for w, h in ((640, 640), (1280, 720), (3000, 900)):
        grid = dict(zip(m.layout.outputs, (int(g) for g in m.tile_grid(w, h))))
        value = float(expr.subs({**grid, batch: 2}))
        assert value == pytest.approx(m.evaluate(w, h, batch=2, hardware="h200")["time_s"], rel=1e-9)


LATEX_CASES = [
    ("formulas", OCR),
    ("formulas", OCR, "--convention", "fvcore"),  # fvcore's rounded einsums
    ("formulas", OCR, "--stage", "request", "--metric", "io_bytes"),  # expected experts, cases
    ("formulas", OCR2, "--stage", "decode", "--metric", "activation_bytes"),
    ("formulas", OCR, "--metric", "time_s", "--hardware", "h200"),
    ("formulas", OCR, "--layout"),
    ("formulas", OCR2, "--layout"),
]
_TEX_WORDS = {
    "begin",
    "end",
    "left",
    "right",
    "cdot",
    "geq",
    "leq",
    "neq",
    "max",
    "min",
    "text",
    "operatorname",
    "wedge",
    "vee",
    "neg",
    "frac",
    "lfloor",
    "rfloor",
    "lceil",
    "rceil",
    "times",
    "log",
    "quad",
}


def _latex(capsys, argv) -> str:
    return run(capsys, *argv, "--latex")


@pytest.mark.parametrize("argv", LATEX_CASES, ids=lambda a: " ".join(a[1:]))
def test_latex_is_one_align_block_of_known_commands(argv, capsys):
    out = _latex(capsys, argv)
    lines = out.splitlines()
    assert out.count(r"\begin{align*}") == 1 and out.count(r"\end{align*}") == 1
    begin, end = lines.index(r"\begin{align*}"), lines.index(r"\end{align*}")
    assert end == len(lines) - 1 and begin > 0
    assert all(ln.startswith("%") for ln in lines[:begin])  # comments only above the block
    assert r"\usepackage{amsmath}" in "\n".join(lines[:begin])
    body = "\n".join(lines[begin + 1 : end])
    assert "#" not in body.replace(r"\#", "") and "%" not in body.replace(r"\%", "")
    assert r"\operatorname{fvcore}_{einsum}" not in body
    words = set(re.findall(r"\\(?:\\|([a-zA-Z]+)|.)", body)) - {""}
    assert words <= _TEX_WORDS, words - _TEX_WORDS
    for name in re.findall(r"\\operatorname\{([^}]*)\}", body):
        assert re.fullmatch(r"[a-z]+(\\_[a-z]+)*", name), name
    for env in re.findall(r"\\begin\{([^}]*)\}", body):
        assert env == "cases"
    assert all(ln.rstrip().endswith(r"\\") for ln in lines[begin + 1 : end - 1])
    assert not lines[end - 1].rstrip().endswith(r"\\")
    if argv[2:3] == ("--convention",):
        assert r"\operatorname{fvcore\_einsum}" in body


@pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex absent (apt-get install -y --no-install-recommends texlive-latex-base)",
)
def test_latex_compiles(capsys, tmp_path):
    blocks = [_latex(capsys, argv) for argv in LATEX_CASES]
    doc = "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{amsmath}",
            r"\allowdisplaybreaks",
            r"\begin{document}",
            *blocks,
            r"\end{document}",
            "",
        ]
    )
    (tmp_path / "f.tex").write_text(doc)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    log = (tmp_path / "f.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "! " not in log
    assert (tmp_path / "f.pdf").stat().st_size > 1000


def test_layout_text_lists_ordered_cases(capsys):
    out = run(capsys, "formulas", OCR, "--layout")
    lines = out.splitlines()
    assert lines[0].startswith("# (w_tiles, h_tiles) of (width, height): tile 640px")
    assert "first matching case wins" in lines[0]
    assert lines[1] == "  (1, 1)  if  (H <= 640) & (W <= 640)"
    assert any("(144*W == 17*H)" in ln for ln in lines) and "Eq(" not in out


# -- params -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", [OCR, OCR2])
def test_params_totals_and_depth(family, capsys):
    out = run(capsys, "params", family, "--depth", "1")
    rows = [ln.split() for ln in out.splitlines() if not ln.startswith("#")][1:]
    assert rows[0] == ["model", TOTAL_PARAMS[family]]
    assert [r[0] for r in rows] == ["model", "model.vision", "model.decoder"]
    assert sum(int(r[1].replace(",", "")) for r in rows[1:]) == int(rows[0][1].replace(",", ""))
    assert f"# family {family}" in out
    only = run(capsys, "params", family, "--depth", "0")
    assert [ln.split()[0] for ln in only.splitlines() if not ln.startswith("#")] == ["component", "model"]
    deep = run(capsys, "params", family)
    assert max(ln.split()[0].count(".") for ln in deep.splitlines() if ln.startswith("model")) == 3


# -- help that teaches ---------------------------------------------------------------------------
def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


@pytest.mark.parametrize("command", ["formulas", "eval", "params"])
@pytest.mark.parametrize("family", [OCR, OCR2])
def test_every_option_says_its_choices_default_and_meaning(command, family):
    parser = _subparsers(_subparsers(build_parser())[command])[family]
    checked = 0
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        text = " ".join((action.help or "").split())
        assert len(text) > 30, (action.dest, text)  # a meaning, not a word
        assert "Default" in text or "default" in text or action.required, (action.dest, text)
        if action.nargs == 0:  # a switch: what happens without it is the default
            continue
        allowed = ("Choices:", "integer in [", " in [", "WxH", "a preset (")
        assert any(a in text for a in allowed), (action.dest, text)
        checked += 1
    assert checked >= {"formulas": 10, "eval": 15, "params": 5}[command]


def test_help_of_eval_lists_stages_and_readers(capsys):
    assert main(["eval", OCR, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--new-tokens NEW_TOKENS tokens generated per request (tokens); integer in [1, 1048576]; "
        "default 1; read by: request" in out
    )
    for stage in ("vision:", "prefill:", "decode:", "request:"):
        assert stage in out
