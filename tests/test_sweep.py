"""Sweeps: every format equals the compiled closed forms (and the numeric model) point by point,
streamed output equals one in-memory evaluation, the Parquet schema comes from declared bounds,
dask equals one process, and bad input is one line naming the flag, before any work."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symcost
from symcost import SymcostError
from symcost import sweep as sw
from symcost.cli import main
from symcost.sweep import Range, Ray, Target, make_sweep, parse_aspect, parse_range

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

GUNDAM = Target(
    "deepseek-ocr", (("preset", "gundam"),), "vision", ("flops", "activation_bytes", "arithmetic_intensity")
)
GRID = ["--width", "1:1400:7", "--height", "300:1500:13"]  # 200 x 93 points, every tile grid
VISION = [
    "sweep",
    "deepseek-ocr",
    *GRID,
    "--metric",
    "flops",
    "--metric",
    "activation_bytes",
    "--metric",
    "arithmetic_intensity",
]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _expected(model, metrics, widths, heights, stage="vision", **inputs):
    """The compiled evaluator on the meshgrid, width fastest: what every format must hold."""
    w, h = (a.reshape(-1) for a in np.meshgrid(widths, heights, indexing="xy"))
    return w, h, model.compile(stage, metrics)(w, h, **inputs)


@pytest.fixture(scope="module")
def gundam():
    return symcost.load("deepseek-ocr", preset="gundam")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One vision sweep written as CSV, JSON and Parquet through the CLI."""
    d = tmp_path_factory.mktemp("formats")
    for ext in ("csv", "json", "parquet"):
        assert main(VISION + ["--out", str(d / f"g.{ext}"), "--quiet"]) == 0
    return d


def test_csv_json_parquet_equal_the_compiled_values(files, gundam):
    metrics = ("flops", "activation_bytes", "arithmetic_intensity")
    w, h, want = _expected(gundam, metrics, np.arange(1, 1401, 7), np.arange(300, 1501, 13))
    rows = _csv(files / "g.csv")
    records = json.loads((files / "g.json").read_text())
    table = pq.read_table(files / "g.parquet").to_pydict()
    assert len(rows) == len(records) == len(table["width"]) == len(w) == 200 * 93
    for key in ("w_tiles", "h_tiles", "n_crops", "image_tokens", "flops", "activation_bytes"):
        exact = want[key].tolist()
        assert [int(r[key]) for r in rows] == exact, key
        assert [r[key] for r in records] == exact, key
        assert table[key] == exact, key
    ai = want["arithmetic_intensity"].tolist()  # floats round-trip exactly, never truncated
    assert [float(r["arithmetic_intensity"]) for r in rows] == ai
    assert [r["arithmetic_intensity"] for r in records] == ai
    assert table["arithmetic_intensity"] == ai
    assert any(x != int(x) for x in ai)
    assert [r["width"] for r in records] == w.tolist() and table["height"] == h.tolist()
    assert len({(r["w_tiles"], r["h_tiles"]) for r in records}) > 10


def test_rows_equal_the_numeric_model(files, gundam):
    rows = _csv(files / "g.csv")
    for k in (0, 1, 92, 200 * 40 + 77, len(rows) - 1):
        r = rows[k]
        want = gundam.evaluate(int(r["width"]), int(r["height"]), "vision")
        for key in ("w_tiles", "h_tiles", "n_crops", "image_tokens", "flops", "activation_bytes"):
            assert int(r[key]) == want[key], (k, key)
        assert float(r["arithmetic_intensity"]) == pytest.approx(want["arithmetic_intensity"], rel=1e-12)


def test_streamed_equals_in_memory(tmp_path):
    s = make_sweep(GUNDAM, [Range("width", 1, 1400, 7), Range("height", 300, 1500, 13)])
    whole = s.evaluate()  # one chunk, in memory
    for ext in ("csv", "json", "parquet"):
        one, many = tmp_path / f"one.{ext}", tmp_path / f"many.{ext}"
        sw.write(s, str(one), chunk=s.size)
        sw.write(s, str(many), chunk=997, jobs=2)  # 19 chunks on two forked workers
        if ext == "parquet":
            t1, t2 = pq.read_table(one), pq.read_table(many)
            assert t2.equals(t1) and pq.ParquetFile(many).num_row_groups == -(-s.size // 997)
            assert t1.to_pydict() == {k: v.tolist() for k, v in whole.items()}
        else:
            assert many.read_bytes() == one.read_bytes()
    records = json.loads((tmp_path / "one.json").read_text())
    assert records == [dict(zip(whole, vals)) for vals in zip(*(v.tolist() for v in whole.values()))]


def test_chunks_cover_every_point_once_and_keep_inputs_constant():
    t = Target("deepseek-ocr", (("preset", "gundam"),), "request", ("flops",))
    s = make_sweep(
        t,
        [
            Range("width", 600, 700, 50),
            Range("height", 640, 700, 60),
            Range("new_tokens", 1, 5, 2),
            Range("batch", 1, 2),
        ],
    )
    for size in (1, 4, 5, 6, 7, 100):
        ranges = list(s.chunks(size))
        assert [a for a, _ in ranges] == [0] + [b for _, b in ranges[:-1]]
        assert ranges[-1][1] == s.size == 3 * 2 * 3 * 2
        if size >= 6:  # a chunk holds whole image blocks: N and B constant inside
            assert all((b - a) % 6 == 0 for a, b in ranges[:-1])


def test_nd_sweep_order_and_values(tmp_path, gundam):
    out = tmp_path / "r.csv"
    argv = [
        "sweep",
        "deepseek-ocr",
        "--stage",
        "request",
        "--width",
        "600:1300:350",
        "--height",
        "700",
        "--prompt-tokens",
        "0:24:12",
        "--new-tokens",
        "1:301:100",
        "--batch",
        "1:2",
        "--metric",
        "flops",
        "--metric",
        "kv_bytes",
        "--out",
        str(out),
    ]
    assert main(argv + ["--quiet"]) == 0
    rows = _csv(out)
    assert list(rows[0]) == [
        "width",
        "height",
        "prompt_tokens",
        "new_tokens",
        "batch",
        "w_tiles",
        "h_tiles",
        "n_crops",
        "image_tokens",
        "prefill_tokens",
        "flops",
        "kv_bytes",
    ]
    assert len(rows) == 3 * 1 * 3 * 4 * 2
    assert [int(r["width"]) for r in rows[:4]] == [600, 950, 1300, 600]  # width fastest
    assert [int(r["batch"]) for r in rows[::36]] == [1, 2]  # batch slowest
    ev = gundam.compile("request", ("flops", "kv_bytes"))
    cols = {
        k: np.array([int(r[k]) for r in rows])
        for k in ("width", "height", "prompt_tokens", "new_tokens", "batch")
    }
    want = ev(
        cols["width"],
        cols["height"],
        prompt_tokens=cols["prompt_tokens"],
        new_tokens=cols["new_tokens"],
        batch=cols["batch"],
    )
    assert [int(r["flops"]) for r in rows] == want["flops"].tolist()
    assert [int(r["kv_bytes"]) for r in rows] == want["kv_bytes"].tolist()
    r = rows[-1]
    numeric = gundam.evaluate(
        int(r["width"]),
        int(r["height"]),
        "request",
        prompt_tokens=int(r["prompt_tokens"]),
        new_tokens=int(r["new_tokens"]),
        batch=int(r["batch"]),
    )
    assert int(r["flops"]) == numeric["flops"] and int(r["kv_bytes"]) == numeric["kv_bytes"]


def test_time_s_sweeps(tmp_path, gundam):
    out = tmp_path / "t.csv"
    assert (
        main(
            [
                "sweep",
                "deepseek-ocr",
                "--width",
                "600:2000:200",
                "--height",
                "1000",
                "--metric",
                "time_s",
                "--hardware",
                "h200",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rows = _csv(out)
    ev = gundam.compile("vision", ("time_s",), hardware="h200")
    w = np.arange(600, 2001, 200)
    assert [float(r["time_s"]) for r in rows] == ev(w, 1000)["time_s"].tolist()
    want = gundam.evaluate(2000, 1000, "vision", hardware="h200")["time_s"]
    assert float(rows[-1]["time_s"]) == pytest.approx(want, rel=1e-12)


# -- Parquet: the schema comes from declared bounds --------------------------------------------
def test_parquet_schema_is_the_same_for_two_grids(tmp_path):
    t = Target(
        "deepseek-ocr", (("preset", "gundam"),), "request", ("flops", "memory_bytes", "arithmetic_intensity")
    )
    small = make_sweep(t, [Range("width", 1, 3), Range("height", 1, 2)])
    large = make_sweep(
        t,
        [
            Ray(("width", "height"), (16, 9), 600, 9000, 600),
            Range("new_tokens", 1, 1 << 20, 1 << 19),
            Range("batch", 1, 1 << 16, 1 << 15),
        ],
    )
    sw.write(small, str(tmp_path / "s.parquet"))
    sw.write(large, str(tmp_path / "l.parquet"))
    s1, s2 = (pq.read_schema(tmp_path / f"{n}.parquet") for n in "sl")
    assert s1.equals(s2, check_metadata=True)
    assert s1.field("flops").type == pa.decimal128(38, 0)  # can pass int64: declared
    assert s1.field("memory_bytes").type == pa.int64()
    assert s1.field("arithmetic_intensity").type == pa.float64()
    assert s1.field("width").type == pa.int64()
    big = pq.read_table(tmp_path / "l.parquet").to_pydict()
    assert max(big["flops"]) > 2**63  # an exact decimal where int64 would have wrapped
    m = symcost.load("deepseek-ocr", preset="gundam")
    k = int(np.argmax(np.array(big["flops"], dtype=object)))
    want = m.evaluate(
        big["width"][k], big["height"][k], "request", new_tokens=big["new_tokens"][k], batch=big["batch"][k]
    )
    assert int(big["flops"][k]) == want["flops"]
    small_rows = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert all(int(v) < 2**63 for v in small_rows["flops"])  # small values, same type


def test_column_kinds_follow_the_bound_not_the_values():
    vision = sw.compiled(GUNDAM).columns
    assert vision["flops"] == "int64" and vision["arithmetic_intensity"] == "float64"
    request = sw.compiled(Target("deepseek-ocr", (("preset", "gundam"),), "request", ("flops",))).columns
    assert request["flops"] == "decimal128"
    assert request["prefill_tokens"] == "int64"


# -- progress --------------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sw, "PROGRESS_AFTER_S", 0.0)
    argv = ["sweep", "deepseek-ocr", "--width", "1:3000:1", "--height", "1:100:1", "--out"]
    assert main(argv + [str(tmp_path / "a.csv")]) == 0  # captured stderr: not a terminal
    assert "\r" not in capsys.readouterr().err
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(argv + [str(tmp_path / "b.csv")]) == 0
    assert "\rsweep [" in tty.getvalue() and "300,000/300,000 points" in tty.getvalue()
    quiet = _Tty()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(argv + [str(tmp_path / "c.csv"), "--quiet"]) == 0
    assert quiet.getvalue() == ""


def test_progress_waits_a_second():
    tty = _Tty()
    p = sw.Progress(10, stream=tty)
    p.update(5)
    p.close()
    assert tty.getvalue() == ""


# -- parsing and bad input -------------------------------------------------------------------
def test_ranges_and_aspects():
    w = symcost.get_family("deepseek-ocr").input("width")
    assert parse_range("7", w) == Range("width", 7, 7, 1)
    assert parse_range("1:10", w) == Range("width", 1, 10, 1)
    assert parse_range("1:10:4", w).size == 3
    assert parse_range("0" * 5000 + "1:02:0001", w) == Range("width", 1, 2, 1)  # no 5,001-digit int()
    kv = symcost.get_family("deepseek-ocr").input("kv_len")
    assert parse_range("0:010", kv) == Range("kv_len", 0, 10, 1)
    assert parse_aspect("016:0009") == (16, 9)
    assert parse_aspect("a4") == (210, 297) and parse_aspect("16:9") == (16, 9)
    ray = Ray(("width", "height"), (210, 297), 200, 4000)
    w, h = ray.sides(np.array([297, 2339, 1000]))
    assert w.tolist() == [210, 1654, 707] and h.tolist() == [297, 2339, 1000]
    assert ray.locate({"width": 1654, "height": 2339}) == 2339
    assert ray.locate({"width": 1653, "height": 2339}) is None
    wide = Ray(("width", "height"), (16, 9), 1, 100)
    assert [int(v) for v in wide.sides(np.array([1, 8, 16]))[1]] == [1, 5, 9]  # halves up, >= 1


S = ["sweep", "deepseek-ocr", "--width", "600:640:20", "--height", "600:640:20"]
CLI_BAD = [  # argv, fragments of the one stderr line
    (S + ["--out", "t.csv", "--prompt-tokens", "5"], ["--prompt-tokens", "stage vision", "prefill"]),
    (S + ["--out", "t.csv", "--stage", "decode"], ["--width", "stage decode does not read it"]),
    (S[:4] + ["--out", "t.csv"], ["--height", "give both"]),
    (S + ["--aspect", "a4", "--out", "t.csv"], ["--width", "not with --aspect"]),
    (["sweep", "deepseek-ocr", "--aspect", "a4", "--out", "t.csv"], ["--long-side", "together"]),
    (
        ["sweep", "deepseek-ocr", "--aspect", "3:0", "--long-side", "9", "--out", "t.csv"],
        ["--aspect", "'3:0'", "a4-landscape"],
    ),
    (S[:3] + ["640:600:20"] + S[4:] + ["--out", "t.csv"], ["--width", "reversed"]),
    (S[:5] + ["600:640:0", "--out", "t.csv"], ["--height", "step 0", ">= 1"]),
    (S[:3] + ["1e3"] + S[4:] + ["--out", "t.csv"], ["--width", "'1e3'", "A:B:STEP"]),
    (S + ["--batch", "0:3", "--out", "t.csv"], ["--batch", "1 <= A <= B <= 65536"]),
    (S + ["--out", "t.csv", "--metric", "time_s"], ["--hardware", "time_s needs it"]),
    (S + ["--out", "t.csv", "--hardware", "h200"], ["--hardware", "only with --metric time_s"]),
    (S, ["--out", "--plot"]),
    (S + ["--out", "t.txt"], ["--out", ".csv, .json, .parquet"]),
    (S + ["--out", "old.csv"], ["--out", "--force"]),
    (S + ["--out", "x" * 300 + ".csv"], ["--out", "longer than"]),
    (S + ["--out", "t.csv", "--engine", "dask"], ["--out", "folder name ending in .parquet"]),
    (S + ["--out", "t.csv", "--scheduler", "tcp://h:1"], ["--scheduler", "--engine dask"]),
    (S + ["--out", "t.parquet", "--engine", "dask", "--scheduler", "h 1"], ["--scheduler", "tcp://"]),
    (S + ["--out", "t.csv", "--engine", "spark"], ["--engine", "'spark'", "local, dask"]),
    (S + ["--out", "t.csv", "--jobs", "0"], ["--jobs", "[1, 1024]"]),
    (S + ["--plot", "t.pdf"], ["--plot", ".png, .svg"]),
    (S + ["--plot", "t.png", "--batch", "1:2"], ["--plot", "varies 3"]),
    (S + ["--plot", "t.png", "--measure", "2"], ["--measure", "line plot of images"]),
    (
        S[:5] + ["600", "--plot", "t.png", "--measure", "2", "--metric", "macs"],
        ["--measure", "--metric flops"],
    ),
    (
        S[:5] + ["600", "--plot", "t.png", "--measure", "2", "--convention", "fvcore"],
        ["--measure", "--convention torch"],
    ),
    (S[:5] + ["600", "--plot", "t.png", "--measure", "65"], ["--measure", "[1, 64]"]),
    (S[:5] + ["600", "--plot", "t.png", "--measured", "m.txt"], ["--measured", ".csv or .json"]),
]


@pytest.mark.parametrize("argv,fragments", CLI_BAD, ids=[" ".join(a)[-45:] for a, _ in CLI_BAD])
def test_cli_bad_input(argv, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.csv").write_text("old\n")

    def no_work(*a, **k):
        raise AssertionError("compiled before the input was checked")

    monkeypatch.setattr(symcost.Model, "compile", no_work)
    before = sorted(os.listdir(tmp_path))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("symcost: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert sorted(os.listdir(tmp_path)) == before


def test_api_refuses_unread_inputs_naming_the_stage():
    with pytest.raises(SymcostError, match="--kv-len: stage vision does not read it"):
        make_sweep(GUNDAM, [Range("width", 1, 2), Range("height", 1, 2), Range("kv_len", 0, 5)])
    with pytest.raises(SymcostError, match="--width: required by stage vision"):
        make_sweep(GUNDAM, [Range("height", 1, 2)])
    with pytest.raises(SymcostError, match="--width: 0 is out of range"):
        make_sweep(GUNDAM, [Range("width", 0, 2), Range("height", 1, 2)])


def test_parquet_without_pyarrow_is_refused_before_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setattr(symcost.Model, "compile", lambda *a, **k: pytest.fail("compiled"))
    assert main(S + ["--out", str(tmp_path / "t.parquet")]) == 2
    assert "--out: .parquet needs pyarrow" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "module,flags,extra",
    [
        ("pyarrow", ["--out", "t.parquet"], "symcost[parquet]"),
        ("distributed", ["--out", "t.parquet", "--engine", "dask"], "symcost[dask]"),
        ("matplotlib", ["--plot", "t.png"], "symcost[plot]"),
    ],
)
def test_a_missing_package_names_the_projects_extra(module, flags, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    monkeypatch.chdir(tmp_path)
    assert main(S + flags) == 2
    assert f"pip install '{extra}'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_json_is_one_document_written_chunk_by_chunk(tmp_path):
    s = make_sweep(GUNDAM, [Range("width", 1, 300), Range("height", 1, 20)])
    path = tmp_path / "a.json"
    sw.write(s, str(path), chunk=512, jobs=2)
    text = path.read_text()
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and text.count("\n") == s.size + 2
    assert len(json.loads(text)) == s.size
    assert Path(path).stat().st_size > 0


# -- sweeps that would not finish ------------------------------------------------------------
HUGE = ["sweep", "deepseek-ocr", "--stage", "prefill", "--width", "1:8192", "--height", "1:8192"]
HUGE += ["--prompt-tokens", "1:8192", "--batch", "1:8", "--out", "huge.csv"]  # 4.4e12 points


def test_a_sweep_that_would_not_finish_is_refused_with_its_estimate(tmp_path):
    """A subprocess with a deadline: before the refusal existed, this streamed for years."""
    run = subprocess.run(
        [sys.executable, "-m", "symcost.cli", *HUGE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1, run.stderr
    for fragment in ("4.398e+12 points", "would take about", "write about", "TB of CSV", "--allow-huge"):
        assert fragment in run.stderr, (fragment, run.stderr)
    assert os.listdir(tmp_path) == []


def test_the_estimate_checks_time_and_free_space(tmp_path, monkeypatch):
    s = make_sweep(GUNDAM, [Range("width", 1, 400), Range("height", 1, 300)])
    out = str(tmp_path / "t.csv")
    est = sw.estimate(s, "csv", 2, sw.Limits(sample_points=4096))
    assert est.points == 120_000 and est.sampled == 4096 and est.processes == 2 and est.seconds > 0
    width = len(sw._text(s.evaluate(s.size - 4096, s.size), "csv")) / 4096
    assert est.bytes == int(120_000 * width)
    sw.check_estimate(s, out, "csv", 2, sw.Limits(min_points=0))  # seconds, a few MB: fine
    with pytest.raises(
        SymcostError, match=r"1\.200e\+05 points would take about .* refused above 1e-09 hours"
    ):
        sw.check_estimate(s, out, "csv", 2, sw.Limits(max_hours=1e-9, min_points=0))
    full = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(sw.shutil, "disk_usage", lambda p: full)
    with pytest.raises(SymcostError, match="beyond the 1,000 B free for --out"):
        sw.check_estimate(s, out, "parquet", 1, sw.Limits(min_points=0))
    sw.check_estimate(s, out, "csv", 2, sw.Limits())  # under min_points: not estimated


def test_allow_huge_writes_anyway(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sw, "LIMITS", sw.Limits(max_hours=1e-12, min_points=0))
    assert main(S + ["--out", "t.csv"]) == 2
    assert "--allow-huge" in capsys.readouterr().err and os.listdir(tmp_path) == []
    assert main(S + ["--out", "t.csv", "--allow-huge", "--quiet"]) == 0
    assert os.listdir(tmp_path) == ["t.csv"]


# -- dask (last: no worker is forked while the cluster's threads run) --------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_dask_equals_single_process(tmp_path, client):
    s = make_sweep(GUNDAM, [Range("width", 1, 1400, 7), Range("height", 300, 1500, 13)])
    single = tmp_path / "one.parquet"
    sw.write(s, str(single))
    folder = tmp_path / "ds.parquet"
    assert sw.write_dataset(s, str(folder), client, chunk=1000) == s.size
    parts = sorted(os.listdir(folder))
    assert parts == [f"part-{k:06d}.parquet" for k in range(-(-s.size // 1000))]
    joined = pa.concat_tables(pq.read_table(folder / p) for p in parts)
    assert joined.equals(pq.read_table(single))
    assert pq.read_table(folder).num_rows == s.size
    assert sorted(os.listdir(tmp_path)) == ["ds.parquet", "one.parquet"]  # no temp folder left
    with pytest.raises(SymcostError, match="exists; pass --force"):
        sw.write_dataset(s, str(folder), client)
    small = make_sweep(GUNDAM, [Range("width", 1, 10), Range("height", 1, 10)])
    assert sw.write_dataset(small, str(folder), client, force=True) == 100
    assert os.listdir(folder) == ["part-000000.parquet"]
    (tmp_path / "mine.parquet").mkdir()
    (tmp_path / "mine.parquet" / "notes.txt").write_text("keep")
    with pytest.raises(SymcostError, match="not a dataset symcost wrote"):
        sw.write_dataset(small, str(tmp_path / "mine.parquet"), client, force=True)
    assert (tmp_path / "mine.parquet" / "notes.txt").read_text() == "keep"


def test_dask_failure_leaves_no_folder(tmp_path, client, monkeypatch):
    real = sw._write_part

    def fail_late(rows, k, start, stop, path):
        if start >= 3000:
            raise OSError(28, "No space left on device")
        return real(rows, k, start, stop, path)

    monkeypatch.setattr(sw, "_write_part", fail_late)
    s = make_sweep(GUNDAM, [Range("width", 1, 100), Range("height", 1, 50)])
    with pytest.raises(OSError):
        sw.write_dataset(s, str(tmp_path / "ds.parquet"), client, chunk=1000)
    assert os.listdir(tmp_path) == []


def test_cli_dask_engine(tmp_path, files):
    out = tmp_path / "d.parquet"
    assert main(VISION + ["--engine", "dask", "--jobs", "1", "--out", str(out), "--quiet"]) == 0
    joined = pa.concat_tables(pq.read_table(out / p) for p in sorted(os.listdir(out)))
    assert joined.equals(pq.read_table(files / "g.parquet"))


def test_force_replaces_only_regular_part_files(tmp_path, client):
    """A folder or a link named like a part file is not ours: --force refuses, nothing deleted."""
    small = make_sweep(GUNDAM, [Range("width", 1, 10), Range("height", 1, 10)])
    for kind in ("folder", "link"):
        ds = tmp_path / f"{kind}.parquet"
        ds.mkdir()
        (ds / "part-000000.parquet").write_bytes(b"x")
        if kind == "folder":
            (ds / "part-000001.parquet").mkdir()
            (ds / "part-000001.parquet" / "data.txt").write_text("keep")
        else:
            (ds / "part-000001.parquet").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(SymcostError, match="not a dataset symcost wrote"):
            sw.check_dataset_target(str(ds), force=True)
        with pytest.raises(SymcostError, match="not a dataset symcost wrote"):
            sw.write_dataset(small, str(ds), client, force=True)
        assert sorted(os.listdir(ds)) == ["part-000000.parquet", "part-000001.parquet"]
    assert (tmp_path / "folder.parquet" / "part-000001.parquet" / "data.txt").read_text() == "keep"


def test_dataset_folder_has_the_usual_mode(tmp_path, client):
    """Like the files in it (0666 less the umask), not mkdtemp's 0700."""
    mask = os.umask(0o022)
    try:
        small = make_sweep(GUNDAM, [Range("width", 1, 10), Range("height", 1, 10)])
        sw.write_dataset(small, str(tmp_path / "ds.parquet"), client)
    finally:
        os.umask(mask)
    assert (tmp_path / "ds.parquet").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "ds.parquet" / "part-000000.parquet").stat().st_mode & 0o777 == 0o644


def test_a_local_cluster_that_cannot_start_is_one_line(tmp_path):
    """dask cannot create its worker space: one line naming --engine, exit 2, nothing left."""
    env = dict(os.environ, DASK_TEMPORARY_DIRECTORY="/dev/null/dask")  # cannot be created
    argv = [*S, "--engine", "dask", "--jobs", "1", "--out", "d.parquet"]
    run = subprocess.run(
        [sys.executable, "-m", "symcost.cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("symcost: error: --engine: cannot start a local dask cluster (")
    assert os.listdir(tmp_path) == []


def test_cluster_logs_are_silenced_while_it_starts(tmp_path, monkeypatch, capfd):
    """The nanny logs its failure with a traceback before raising: the user sees one line."""
    import logging

    import distributed

    def broken(*a, **k):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            logging.getLogger("distributed.nanny").exception("Failed to start process")
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", broken)
    monkeypatch.chdir(tmp_path)
    assert main([*S, "--engine", "dask", "--out", "d.parquet"]) == 2
    err = capfd.readouterr().err
    assert err == "symcost: error: --engine: cannot start a local dask cluster (Nanny failed to start.)\n"
