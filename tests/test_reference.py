"""Every reference value measured on the vendor's code, reproduced to the integer."""
import csv
from pathlib import Path

import pytest

from validation.analytic import decoder_columns, vision_columns

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


@pytest.mark.parametrize("row", VISION, ids=lambda r: f"{r['case_id']}-{r['counter']}")
def test_vision_row(row):
    got = vision_columns(PRESET.get(row["preset"], row["preset"]), int(row["W"]), int(row["H"]),
                         row["counter"])
    flop_cols = [k for k in row if k.startswith(("global_", "crops_", "vision_total"))
                 and k != "global_px"]
    want = _numeric_columns(row, flop_cols + sorted(META))
    assert {k: got.get(k) for k in want} == want
    # every FLOP column the reference fills is one we compute
    assert len([k for k in flop_cols if row[k] != ""]) == len(set(want) - META)


@pytest.mark.parametrize("row", DECODER, ids=lambda r: f"{r['phase']}-{r['S_new']}-{r['L_past']}-{r['counter']}")
def test_decoder_row(row):
    got = decoder_columns(int(row["S_new"]), int(row["L_past"]), row["counter"])
    want = _numeric_columns(row, got)
    assert set(want) == set(got)
    assert got == want


def test_fvcore_decoder_is_half_of_flopcountermode():
    for s_new, l_past in ((1, 0), (273, 0), (1, 1000), (4096, 7)):
        t = decoder_columns(s_new, l_past, "FlopCounterMode")
        f = decoder_columns(s_new, l_past, "fvcore")
        assert {k: 2 * v for k, v in f.items()} == t
