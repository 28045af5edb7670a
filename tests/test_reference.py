"""Every reference value measured on the vendor's code, reproduced to the integer.

Counts: a value is "independently reproduced" when its analytic side comes from its own node of
the cost tree; the reference's aliases (``validation.analytic.ALIASES``) are compared too but
not counted.
"""

import csv
from pathlib import Path

import pytest

from validation.analytic import ALIASES, decoder_columns, vision_columns

DATA = Path(__file__).resolve().parents[1] / "validation" / "data"
PRESET = {"gundam_m_vllmcrop": "gundam-m"}
META = {"w_tiles", "h_tiles", "n_crops", "n_image_tokens"}


def _rows(name):
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


VISION = _rows("vision_flops.csv")
DECODER = _rows("decoder_flops.csv")


def _numeric_columns(row, keys):
    return {k: int(row[k]) for k in keys if row.get(k, "") != ""}


def vision_flop_columns(row):
    return [k for k in row if k.startswith(("global_", "crops_", "vision_total")) and k != "global_px"]


@pytest.mark.parametrize("row", VISION, ids=lambda r: f"{r['case_id']}-{r['counter']}")
def test_vision_row(row):
    got = vision_columns(
        PRESET.get(row["preset"], row["preset"]), int(row["W"]), int(row["H"]), row["counter"]
    )
    flop_cols = vision_flop_columns(row)
    want = _numeric_columns(row, flop_cols + sorted(META))
    assert {k: got.get(k) for k in want} == want
    # every FLOP column the reference fills is one we compute
    assert len([k for k in flop_cols if row[k] != ""]) == len(set(want) - META)


@pytest.mark.parametrize(
    "row", DECODER, ids=lambda r: f"{r['phase']}-{r['S_new']}-{r['L_past']}-{r['counter']}"
)
def test_decoder_row(row):
    got = decoder_columns(int(row["S_new"]), int(row["L_past"]), row["counter"])
    want = _numeric_columns(row, got)
    assert set(want) == set(got)  # every FLOP column of the reference, compared
    assert got == want


def independent_values() -> tuple[int, int]:
    """(values compared, values independently reproduced) over both reference files."""
    compared = independent = 0
    for row in VISION:
        cols = [k for k in vision_flop_columns(row) + sorted(META) if row.get(k, "") != ""]
        compared += len(cols)
        independent += len([k for k in cols if k not in ALIASES])
    for row in DECODER:
        cols = [k for k in decoder_columns(1, 0, "torch") if row.get(k, "") != ""]
        compared += len(cols)
        independent += len([k for k in cols if k not in ALIASES])
    return compared, independent


def test_reference_counts():
    """The numbers the README states (both tests above pass for every one of them)."""
    compared, independent = independent_values()
    print(f"reference values compared: {compared}, independently reproduced: {independent}")
    assert (compared, independent) == (1172, 1104)
