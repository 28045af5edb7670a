"""symcost compare: one page across families; its figures are the families' own and agree."""

import json

import pytest

import symcost
from symcost.cli import main

PAGE = "1275x1650"  # US Letter at 150 dpi


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def records():
    from symcost.commands.compare import compare

    return compare(["got-ocr2", "qwen2.5-vl"], [(1275, 1650)], "h100-sxm", "vllm", 12, 500)


def test_records_are_each_familys_own_figures(records):
    got, qwen = records
    assert (got["family"], qwen["family"]) == ("got-ocr2", "qwen2.5-vl")
    assert qwen["options"]["render"] == "olmocr"  # olmOCR renders the page to 1288 px first
    for r in records:
        m = symcost.load(r["family"], **r["options"])
        page = dict(width=1275, height=1650)
        request = m.evaluate(stage="request", **page, prompt_tokens=12, new_tokens=500)
        assert (r["flops"], r["memory_bytes"], r["params"]) == (
            request["flops"],
            request["memory_bytes"],
            request["params"],
        )
        assert r["vision_flops"] == m.evaluate(stage="vision", **page)["flops"]
        assert r["prefill_flops"] == m.evaluate(stage="prefill", **page, prompt_tokens=12)["flops"]
        wave = symcost.plan.plan(m, "h100-sxm", [{**page, "prompt_tokens": 12, "new_tokens": 500}], None)
        assert (r["batch"], r["pages_per_day"]) == (wave["batch"], wave["pages_per_day"])
        # figures shown together agree: tokens/s = pages/s x new tokens
        assert r["tokens_per_s"] == pytest.approx(r["pages_per_day"] / 86_400 * 500, rel=1e-12)
    assert (got["image_tokens"], qwen["image_tokens"]) == (256, 1656)  # the figures


def test_cli_json_and_table(capsys, tmp_path):
    argv = ("compare", "--image", PAGE, "--family", "got-ocr2", "--family", "lighton-ocr")
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    recs = json.loads(out)
    assert [r["family"] for r in recs] == ["got-ocr2", "lighton-ocr"]
    for key in ("family", "options", "image_tokens", "flops", "memory_bytes", "pages_per_day"):
        assert all(key in r for r in recs)
    code, out, _ = run(capsys, *argv)
    lines = out.splitlines()
    assert code == 0 and "h100-sxm, runtime vllm, dtype bf16" in lines[0]
    header = next(line for line in lines if line.startswith("family"))
    assert "request [GFLOP]" in header and "pages/day" in header
    row = next(line for line in lines if line.startswith("lighton-ocr"))
    assert f"{recs[1]['image_tokens']:,}" in row and f"{recs[1]['pages_per_day']:,.0f}" in row


@pytest.mark.parametrize(
    "extra,message",
    [
        (("--family", "nope"), "--family"),
        (("--runtime", "sglang"), "--runtime"),
        (("--new-tokens", "0"), "--new-tokens"),
        (("--plot", "x.txt"), "--plot"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "compare", "--image", PAGE, "--family", "got-ocr2", *extra)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_plot_is_written(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "c.png"
    code, _, _ = run(capsys, "compare", "--image", PAGE, "--family", "got-ocr2", "--plot", str(path))
    assert code == 0 and path.read_bytes()[:4] == b"\x89PNG"
