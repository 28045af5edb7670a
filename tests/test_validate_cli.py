"""`symcost validate` end to end: real modules measured, analytic compared, exit code honest."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("fvcore")

from symcost.cli import main  # noqa: E402
from validation.compare import compare  # noqa: E402


def run(capsys, *argv):
    code = main(["validate", "deepseek-ocr", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else []


@pytest.mark.parametrize(
    "argv",
    [
        ("--preset", "gundam", "--image", "641x640", "--image", "1280x720"),
        ("--preset", "gundam", "--vision-mode", "nocrop", "--image", "3000x400"),
        ("--preset", "gundam-m", "--image", "1280x720"),
        ("--preset", "gundam", "--stage", "prefill", "--prompt-tokens", "9", "--image", "1000x1500"),
        ("--stage", "decode", "--kv-len", "777"),
        ("--preset", "gundam", "--vision-mode", "nocrop-hf", "--image", "1280x720"),
        ("--preset", "tiny", "--counter", "fvcore", "--image", "800x600"),
        ("--preset", "small", "--counter", "torch-cpu"),
    ],
)
def test_validate_matches(capsys, argv):
    code, cases = run(capsys, *argv)
    assert code == 0
    assert cases and all(c["ok"] for c in cases)
    for case in cases:
        assert len(case["rows"]) >= 10
        assert all(r["abs_diff"] == 0 for r in case["rows"])


@pytest.mark.parametrize("preset", ["gundam", "gundam-m"])
def test_every_vision_mode_at_640_and_1024(capsys, preset):
    """Issue 13: each mode measured with the global view the vendor's preprocessing builds."""
    for mode in ("crops", "nocrop", "nocrop-hf"):
        code, cases = run(
            capsys, "--preset", preset, "--vision-mode", mode, "--image", "640x640", "--image", "1024x1024"
        )
        assert code == 0 and len(cases) == 2 and all(c["ok"] for c in cases), mode


def test_nocrop_hf_is_the_image_size_view(capsys):
    """Gundam's HF crop_mode=False is a 640 view (Small's cost); Gundam-M's a 1024 one (Base's)."""
    totals = {}
    for preset, mode in [
        ("gundam", "nocrop-hf"),
        ("small", "crops"),
        ("gundam-m", "nocrop-hf"),
        ("base", "crops"),
    ]:
        _, (case,) = run(capsys, "--preset", preset, "--vision-mode", mode, "--image", "1024x1024")
        totals[preset] = case["measured"]["vision_total"]
    assert totals["gundam"] == totals["small"] and totals["gundam-m"] == totals["base"]


def test_nocrop_measures_no_tiles(capsys):
    _, (case,) = run(capsys, "--preset", "gundam", "--vision-mode", "nocrop", "--image", "2000x1000")
    assert case["n_crops"] == 0
    assert not any(r["component"].startswith("vision.crops.") for r in case["rows"])


def test_compare_flags_a_difference():
    rows = compare({"a": 10, "b": 5}, {"a": 10, "b": 6, "c": 1})
    assert [r["ok"] for r in rows] == [True, False, False]
    assert rows[1]["abs_diff"] == -1 and rows[1]["rel_diff"] == pytest.approx(1 / 6)
