"""Sweep plots: curves along the swept side, one per compare-option value, steps exactly at the
layout changes, measured points only from the plot's own family and preset (each equal to the
analytic value), heat maps of metrics and the tile grid, deterministic SVG, and measured-point
files refused cleanly when they are not what they claim."""

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import symcost
from symcost import SymcostError
from symcost.cli import main
from symcost.plot import heat_data, line_data, load_measured, validation_hook
from symcost.sweep import Range, Ray, Target, make_sweep, model_of

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "validation" / "data" / "vision_flops.csv"
MODES = ["crops", "nocrop", "nocrop-hf"]
WIDE = Ray(("width", "height"), (16, 9), 200, 4000)  # 1280x720 and 1920x1080 lie on it


def _target(preset="gundam", metrics=("flops",), **kw):
    return Target("deepseek-ocr", (("preset", preset),), "vision", metrics, **kw)


def _reference_rows(preset_column, counter="FlopCounterMode"):
    with open(REFERENCE, newline="") as f:
        return [r for r in csv.DictReader(f) if r["preset"] == preset_column and r["counter"] == counter]


def test_measured_series_of_a_gundam_plot_holds_only_gundam_rows(tmp_path):
    # the reference has a Gundam-M row at 1280x720 too; add rows named like this family's
    # presets, so that only the preset column can keep them off the Gundam plot
    rows = list(csv.DictReader(REFERENCE.read_text().splitlines()))
    extra = [dict(r, preset="gundam-m") for r in rows if r["preset"] == "gundam_m_vllmcrop"]
    extra += [dict(r, preset="base", W="1920", H="1080") for r in rows if r["preset"] == "base"]
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows + extra)
    sweep = make_sweep(_target(), [WIDE])
    measured, read = load_measured(str(path), sweep.target, MODES)
    assert read == len(rows) + len(extra)
    want = {(int(r["W"]), int(r["H"]), int(r["vision_total"])) for r in _reference_rows("gundam")}
    assert {(m.width, m.height, m.value) for m in measured} == want  # torch rows of gundam only
    lines = line_data(sweep, MODES, measured)
    drawn = [(c.mode, x, meas, ana) for c in lines.curves for x, meas, ana, _ in c.measured]
    gundam_on_line = {(1280, 720), (1920, 1080)}
    assert sorted(x for _, x, _, _ in drawn) == [1280, 1920]
    assert all(mode == "crops" and meas == ana for mode, _, meas, ana in drawn)
    values = {
        int(r["vision_total"])
        for r in _reference_rows("gundam")
        if (int(r["W"]), int(r["H"])) in gundam_on_line
    }
    assert {meas for _, _, meas, _ in drawn} == values
    m_sweep = make_sweep(_target("gundam-m"), [WIDE])  # and the Gundam-M row on its own plot
    m_points, _ = load_measured(str(path), m_sweep.target, MODES)
    m_drawn = [m for c in line_data(m_sweep, MODES, m_points).curves for m in c.measured]
    assert [(x, meas) for x, meas, _, _ in m_drawn] == [
        (1280, int(_reference_rows("gundam_m_vllmcrop")[0]["vision_total"]))
    ]
    assert all(meas == ana for _, meas, ana, _ in m_drawn)


def test_curves_follow_the_swept_side_with_exact_steps():
    sweep = make_sweep(
        _target(metrics=("flops", "activation_bytes")), [Ray(("width", "height"), (1, 1), 1, 3000, 50)]
    )
    lines = line_data(sweep, MODES, [])
    assert [c.mode for c in lines.curves] == MODES
    crops = lines.curves[0]
    assert crops.x.tolist() == list(range(1, 3001))  # every pixel of the long side
    m = model_of(sweep.target)
    w, h = m.tile_grid(crops.x, crops.x)
    assert crops.layout["w_tiles"].tolist() == w.tolist()
    changes = [int(x) for x, a, b in zip(crops.x[1:], w[1:] * 10 + h[1:], w[:-1] * 10 + h[:-1]) if a != b]
    assert lines.steps == changes and len(changes) >= 2
    ev = m.compile("vision", ("flops", "activation_bytes"))
    assert crops.values["flops"].tolist() == ev(crops.x, crops.x)["flops"].tolist()
    nocrop_hf = symcost.load("deepseek-ocr", preset="gundam", vision_mode="nocrop-hf")
    assert (
        lines.curves[2].values["flops"].tolist()
        == nocrop_hf.compile("vision", ("flops",))(crops.x, crops.x)["flops"].tolist()
    )
    assert not lines.curves[1].layout  # nocrop never tiles: no tile curve drawn
    for text in (
        "preset gundam",
        "stage vision",
        "convention torch",
        "dtype bf16",
        "B = 1",
        "one curve per vision_mode: crops, nocrop, nocrop-hf",
    ):
        assert text in lines.title


def test_one_fixed_side_is_a_line_over_the_other():
    sweep = make_sweep(_target(), [Range("width", 100, 3000, 100), Range("height", 900, 900)])
    lines = line_data(sweep, ["crops"], [])
    assert lines.xlabel == "width (px)" and lines.curves[0].x[[0, -1]].tolist() == [100, 3000]
    assert "H = 900" in lines.title


def test_heat_map_of_metrics_and_tile_grid():
    t = Target("deepseek-ocr2", (), "vision", ("flops",))
    sweep = make_sweep(t, [Range("width", 1, 4096), Range("height", 1, 4096)])
    heat = heat_data(sweep)
    assert len(heat.x) == len(heat.y) == 1024  # thinned to the sweep's own points
    assert heat.x[[0, 1, -1]].tolist() == [1, 5, 4093]
    gx, gy = np.meshgrid(heat.x, heat.y)
    m = model_of(t)
    w, h = m.tile_grid(gx, gy)
    assert (heat.grid[..., 0] == w).all() and (heat.grid[..., 1] == h).all()
    assert (heat.panels["flops"] == m.compile("vision", ("flops",))(gx, gy)["flops"]).all()


def test_cli_plots_png_and_deterministic_svg(tmp_path):
    common = [
        "sweep",
        "deepseek-ocr",
        "--aspect",
        "16:9",
        "--long-side",
        "200:3000:10",
        "--measured",
        str(REFERENCE),
        "--quiet",
    ]
    png, svg1, svg2 = (tmp_path / n for n in ("a.png", "a1.svg", "a2.svg"))
    assert main(common + ["--plot", str(png), "--out", str(tmp_path / "a.csv")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert main(common + ["--plot", str(svg1)]) == 0
    assert main(common + ["--plot", str(svg2)]) == 0
    text = svg1.read_text()
    assert svg1.read_bytes() == svg2.read_bytes() and "<dc:date>" not in text
    assert text.count("<svg") == 1 and "measured" in text
    heat = tmp_path / "h.png"
    assert (
        main(
            [
                "sweep",
                "deepseek-ocr2",
                "--width",
                "1:2000:10",
                "--height",
                "1:2000:10",
                "--metric",
                "flops",
                "--metric",
                "io_bytes",
                "--plot",
                str(heat),
                "--quiet",
            ]
        )
        == 0
    )
    assert heat.read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "a.png", "a1.svg", "a2.svg", "h.png"]


# -- measured-point files: checked before any output ------------------------------------------
def _bad(text_or_make, name="m.json"):
    return pytest.param(text_or_make, name, id=f"{name}:{str(text_or_make)[:30]}")


_CASE = {
    "preset": "gundam",
    "vision_mode": "crops",
    "stage": "vision",
    "width": 1280,
    "height": 720,
    "convention": "torch",
    "measured": {"vision_total": 1916266708992},
}
BAD = [
    _bad(json.dumps([dict(_CASE, width=True)])),
    _bad(json.dumps([dict(_CASE, width=640.7)])),
    _bad(json.dumps([dict(_CASE, width=1280.0)])),
    _bad(json.dumps([dict(_CASE, width="1280")])),
    _bad(json.dumps([dict(_CASE, height=0)])),
    _bad(json.dumps([dict(_CASE, measured={"vision_total": -1})])),
    _bad(json.dumps([_CASE]).replace("1916266708992", "1e400")),
    _bad(json.dumps([_CASE]).replace("1916266708992", "9" * 401)),
    _bad(json.dumps([_CASE]).replace("1916266708992", "NaN")),
    # options no single family has (render: qwen2.5-vl's, max_crops: deepseek-ocr's)
    _bad(json.dumps([dict(_CASE, render="none", max_crops=9)])),
    _bad("[" * 100_000 + "]" * 100_000),
    _bad('{"not": "a list"}'),
    _bad("[1, 2"),
    _bad(b"\xff\xfe".decode("latin-1")),
    _bad("W,H,counter,preset,vision_total\n640.7,640,FlopCounterMode,gundam,1\n", "m.csv"),
    _bad("W,H,counter,preset,vision_total\n640,640,FlopCounterMode,gundam,1e400\n", "m.csv"),
    _bad("W,H,counter,preset,vision_total\n640,640,FlopCounterMode,gundam," + "9" * 401 + "\n", "m.csv"),
    _bad("W,H,counter,preset,vision_total\n640,640,abacus,gundam,1\n", "m.csv"),
    _bad(json.dumps([{k: v for k, v in dict(_CASE, counter=[1]).items() if k != "convention"}])),
    _bad(
        'W,H,counter,preset,vision_total\n640,640,FlopCounterMode,gundam,"' + "1" * 131_073 + '"\n', "m.csv"
    ),
    _bad("fifo", "m.csv"),
    _bad("zero", "m.csv"),
    _bad("huge", "m.csv"),
]


@pytest.mark.parametrize("content,name", BAD)
def test_bad_measured_file_is_refused_before_any_output(content, name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if content == "fifo":
        os.mkfifo(name)
    elif content == "zero":
        os.symlink("/dev/zero", name)
    elif content == "huge":
        with open(name, "wb") as f:
            f.truncate((16 << 20) + 1)
    else:
        Path(name).write_text(content, encoding="latin-1")
    before = sorted(os.listdir(tmp_path))
    argv = [
        "sweep",
        "deepseek-ocr",
        "--aspect",
        "16:9",
        "--long-side",
        "200:2000",
        "--out",
        "s.csv",
        "--plot",
        "p.png",
        "--measured",
        name,
    ]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("symcost: error: --measured"), err
    assert sorted(os.listdir(tmp_path)) == before


def test_validate_json_cases_are_read(tmp_path):
    cases = [
        _CASE,
        dict(_CASE, stage="prefill", measured={}),  # not vision: skipped
        dict(_CASE, preset="gundam-m"),
        dict(_CASE, convention="fvcore"),
        dict(_CASE, vision_mode="nocrop", width=1920, height=1080, measured={"vision_total": 1139967033344}),
    ]
    path = tmp_path / "v.json"
    path.write_text(json.dumps(cases, indent=1))
    sweep = make_sweep(_target(), [WIDE])
    points, read = load_measured(str(path), sweep.target, MODES)
    assert read == 5
    assert [(p.width, p.mode, p.value) for p in points] == [
        (1280, "crops", 1916266708992),
        (1920, "nocrop", 1139967033344),
    ]
    lines = line_data(sweep, MODES, points)
    assert all(meas == ana for c in lines.curves for _, meas, ana, _ in c.measured)
    # no family field: the plot's family when it has every option the record names
    bare = {k: v for k, v in _CASE.items() if k != "preset"}  # vision_mode: three families have it
    assert len(load_measured(_write(tmp_path, [bare]), sweep.target, MODES)[0]) == 1
    with pytest.raises(SymcostError, match="--measured: record 1 does not say its family"):
        load_measured(_write(tmp_path, [dict(bare, render="none")]), sweep.target, MODES)


def _write(tmp_path, records):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    return str(path)


# -- live measurement -------------------------------------------------------------------------
@pytest.mark.parametrize("family,modes", [("deepseek-ocr", 3), ("deepseek-ocr2", 2)])
def test_measure_live_equals_the_analytic_curve(family, modes, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    png = tmp_path / "m.png"
    code = main(
        [
            "sweep",
            family,
            "--aspect",
            "16:9",
            "--long-side",
            "1200:1300",
            "--measure",
            "1",
            "--plot",
            str(png),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"measured points on the plotted line: {modes}, every one equal to the analytic value" in err
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_measure_needs_the_hook():
    family = replace(symcost.get_family("deepseek-ocr2"), validation="validation.nope:validate_case")
    with pytest.raises(SymcostError, match="--measure: needs .*validation.nope"):
        validation_hook(family)
    with pytest.raises(SymcostError, match="--measure: deepseek-ocr2 declares no reference"):
        validation_hook(replace(family, validation=None))


# -- the file holds what the plot draws --------------------------------------------------------
A4 = ["sweep", "deepseek-ocr", "--preset", "gundam", "--aspect", "a4", "--long-side", "200:1500"]


def _drawn(monkeypatch) -> list:
    """The curves' modes each line plot draws (drawing itself skipped)."""
    drawn: list = []
    monkeypatch.setattr("symcost.plot.draw_lines", lambda lines, *a, **k: drawn.append(lines))
    return drawn


@pytest.mark.parametrize("runtime,modes", [("hf", MODES), ("vllm", ["crops", "nocrop"])])
def test_the_file_holds_every_curve_the_plot_draws(runtime, modes, tmp_path, monkeypatch, capsys):
    drawn = _drawn(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(A4 + ["--runtime", runtime, "--out", "a4.csv", "--plot", "a4.png"]) == 0
    (lines,) = drawn
    assert [c.mode for c in lines.curves] == modes
    with open(tmp_path / "a4.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(dict.fromkeys(r["vision_mode"] for r in rows)) == modes  # a block per curve
    for curve in lines.curves:
        block = [r for r in rows if r["vision_mode"] == curve.mode]
        assert [int(r["flops"]) for r in block] == curve.values["flops"].tolist()
    err = capsys.readouterr().err
    assert ("nocrop-hf: no curve (vision_mode: nocrop-hf is the HF code's path" in err) == (runtime == "vllm")


def test_vision_mode_repeats_to_choose_the_curves_and_blocks(tmp_path, monkeypatch, capsys):
    drawn = _drawn(monkeypatch)
    monkeypatch.chdir(tmp_path)
    argv = A4 + ["--vision-mode", "nocrop", "--vision-mode", "crops", "--out", "a4.json", "--plot", "a4.png"]
    assert main(argv) == 0
    assert [c.mode for c in drawn[0].curves] == ["nocrop", "crops"]
    records = json.loads((tmp_path / "a4.json").read_text())
    assert list(dict.fromkeys(r["vision_mode"] for r in records)) == ["nocrop", "crops"]
    assert main(A4 + ["--vision-mode", "nocrop", "--out", "one.csv"]) == 0  # one value: no column
    assert "vision_mode" not in (tmp_path / "one.csv").read_text().splitlines()[0]
    bad = [
        (
            A4 + ["--runtime", "vllm", "--vision-mode", "nocrop-hf", "--out", "x.csv"],
            "--vision-mode: nocrop-hf",
        ),
        (
            ["sweep", "deepseek-ocr", "--width", "1:50", "--height", "1:50", "--vision-mode", "crops"]
            + ["--vision-mode", "nocrop", "--plot", "h.png"],
            "--vision-mode: a heat map draws one value",
        ),
    ]
    capsys.readouterr()
    for argv, fragment in bad:
        assert main(argv) == 2
        assert fragment in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["a4.json", "one.csv"]


def test_sweep_takes_listed_images(tmp_path, monkeypatch, capsys):
    """--image as in every other command: the listed images in order (repeatable), one a fixed
    image for the other ranges."""
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "deepseek-ocr", "--stage", "request", "--image", "1654x2339", "--image", "1280x720"]
    assert main(argv + ["--new-tokens", "1:3", "--out", "im.csv"]) == 0
    with open(tmp_path / "im.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    model = symcost.load("deepseek-ocr")
    assert [(r["width"], r["height"], r["new_tokens"]) for r in rows] == [
        (w, h, n) for n in "123" for w, h in (("1654", "2339"), ("1280", "720"))
    ]
    for r in rows:
        want = model.evaluate(int(r["width"]), int(r["height"]), "request", new_tokens=int(r["new_tokens"]))
        assert int(r["flops"]) == want["flops"]
    one = ["sweep", "deepseek-ocr", "--stage", "request", "--image", "1654x2339", "--new-tokens", "1:500"]
    drawn = _drawn(monkeypatch)
    assert main(one + ["--plot", "n.png", "--vision-mode", "crops"]) == 0
    assert "1654" in drawn[0].title and drawn[0].curves[0].x.tolist() == list(range(1, 501))
    capsys.readouterr()
    bad = [
        (argv + ["--plot", "x.png"], "--plot: draws along numeric inputs; --image lists images"),
        (argv + ["--width", "1:9", "--out", "x.csv"], "--width: not with --image"),
        (argv + ["--aspect", "a4", "--long-side", "9", "--out", "x.csv"], "--aspect: not with --image"),
        (["sweep", "deepseek-ocr", "--image", "0x5", "--out", "x.csv"], "--image: '0x5' is not WxH"),
        (
            ["sweep", "deepseek-ocr", "--stage", "decode", "--image", "5x5", "--out", "x.csv"],
            "--image: stage decode",
        ),
    ]
    for argv, fragment in bad:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == ["im.csv"]  # (drawing is skipped here)
