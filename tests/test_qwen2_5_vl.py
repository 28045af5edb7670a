"""Qwen2.5-VL / olmOCR-2 proved against transformers 5.23's native module and processor.

Every FLOP case goes through ``validation.qwen2_5_vl_compare.validate_case`` (what ``symcost validate
qwen2.5-vl`` runs): the measured side is ``Qwen2_5_VLForConditionalGeneration`` at the real sizes on
the meta device, its grid from ``Qwen2_5_VLProcessor`` on a blank image; the analytic side is the family.
Default cases are small (meta runs of a few windows); the US Letter page, the scaled-down branch and the
exhaustive [1, 4096]^2 resize grid are slow.
"""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symcost
from derivations.qwen2_5_vl import PRESETS, RENDERERS
from derivations.qwen2_5_vl.resize import token_grid
from symcost import SymcostError
from symcost.cli import main

# transformers' meta-built counts (../shared/field/README.md): total, vision incl. merger, lm_head
STATED = {
    "olmocr-2-7b": (8_292_166_656, 676_550_144, 544_997_376),
    "qwen2.5-vl-7b": (8_292_166_656, 676_550_144, 544_997_376),
    "qwen2.5-vl-3b": (3_754_622_976, 668_684_288, 0),
}
# the field README's image tokens for page renders (H x W there; W x H here), Qwen2.5-VL column
RENDERS = [((995, 1288), 1656), ((910, 1288), 1472), ((1275, 1650), 2714), ((1700, 2200), 4819)]
RENDERS += [((2550, 3300), 10738), ((1280, 1656), 2714)]


def load(**options):
    return symcost.load("qwen2.5-vl", **options)


# --------------------------------------------------------------------------- no torch needed


def test_interface_eval_json(capsys):
    argv = "eval qwen2.5-vl --preset olmocr-2-7b --image 995x1288 --stage vision --json".split()
    assert main(argv) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["image_tokens"] == 1656 and (rec["w_tokens"], rec["h_tokens"]) == (36, 46)
    assert rec["flops"] == rec["components"]["vision"] > 0
    assert main(["params", "qwen2.5-vl"]) == 0
    assert "8,292,166,656" in capsys.readouterr().out


@pytest.mark.parametrize("size,tokens", RENDERS, ids=str)
def test_image_tokens_of_the_field_table(size, tokens):
    assert load().evaluate(*size)["image_tokens"] == tokens


@pytest.mark.parametrize("preset", PRESETS)
def test_parameters_equal_the_meta_built_counts(preset):
    total, vision, lm_head = STATED[preset]
    params = load(preset=preset).parameters()
    assert (params["model"], params["model.vision"], params["model.decoder.lm_head"]) == (
        total,
        vision,
        lm_head,
    )


def test_olmocr_render():
    """A US Letter page (612 x 792 pt) renders to 996 x 1288 px (pdftoppm rounds up), 36 x 46 tokens."""
    r = load(render="olmocr").evaluate(612, 792)
    assert (r["w_tokens"], r["h_tokens"], r["image_tokens"]) == (36, 46, 1656)
    cfg, render = PRESETS["olmocr-2-7b"].resize, RENDERERS["olmocr"]
    *_, (w_px, h_px) = token_grid(cfg, render, np.array([612, 2880, 842]), np.array([792, 2763, 595]))
    assert w_px.tolist() == [996, 1289, 1288] and h_px.tolist() == [1288, 1236, 911]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_olmocr_render_is_pdftoppm(tmp_path):
    """The render rule against pdftoppm itself on one-page PDFs of 16 sizes, run as olmOCR runs it."""
    rng = np.random.default_rng(3)
    sizes = [(612, 792), (595, 842), (1215, 496), (2880, 2763), (1, 1), (3, 1288)]
    sizes += [tuple(int(x) for x in rng.integers(1, 3000, 2)) for _ in range(10)]
    render = RENDERERS["olmocr"]
    cfg = PRESETS["olmocr-2-7b"].resize
    for w, h in sizes:
        pdf = tmp_path / "page.pdf"
        pdf.write_bytes(_one_page_pdf(w, h))
        dpi = render.longest_px * 72 / max(float(w), float(h))  # renderpdf.py's -r argument
        png = subprocess.run(
            ["pdftoppm", "-png", "-f", "1", "-l", "1", "-r", str(dpi), str(pdf)],
            capture_output=True,
            check=True,
        ).stdout
        got = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        *_, (w_px, h_px) = token_grid(cfg, render, w, h)
        assert got == (int(w_px), int(h_px)), (w, h)


def _one_page_pdf(w: int, h: int) -> bytes:
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    return out + f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()


def test_refusal_is_one_line_naming_image(capsys):
    with pytest.raises(SymcostError, match=r"--image: 1x201 .*side ratio above 200"):
        load().evaluate(1, 201)
    assert main("eval qwen2.5-vl --image 300x1".split()) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--image: 300x1" in err
    with pytest.raises(SymcostError, match=r"1x300 .* \(2 more such points\)"):
        load().compile("vision")(np.array([5, 1, 1, 400, 9]), np.array([5, 300, 500, 1, 9]))


def test_windows_are_polynomial_in_the_layout():
    """The window classes add up: every token in exactly one window, calls = ceil(w/4) ceil(h/4)."""
    from derivations.qwen2_5_vl.vision import windows

    vis = PRESETS["olmocr-2-7b"].vision
    for w in range(1, 30):
        for h in range(1, 30):
            classes = windows(vis, w, h, w % 4, h % 4)
            assert sum(count * size for _, count, size, _ in classes) == w * h
            assert sum(calls for *_, calls in classes) == math.ceil(w / 4) * math.ceil(h / 4)


def test_compiled_equals_numeric_per_point_and_by_table():
    """Both compiled paths (per point: fewer points than outcomes; gathered from the outcome table:
    more) equal Model.evaluate, every integer metric of the request."""
    m = load()
    rng = np.random.default_rng(0)
    n = len(m.layout.table) + 1
    w, h = rng.integers(1, 8193, n), rng.integers(1, 8193, n)
    w[:3], h[:3] = [1, 112, 5000], [1, 112, 5000]
    keep = np.maximum(w, h) <= 200 * np.minimum(w, h)
    w, h = w[keep], h[keep]
    metrics = ("flops", "activation_bytes", "memory_bytes", "io_bytes", "kv_bytes")
    ev = m.compile("request", metrics)
    by_table = ev(w, h, prompt_tokens=7, new_tokens=3)
    per_point = ev(w[:40], h[:40], prompt_tokens=7, new_tokens=3)
    for k in list(range(3)) + list(rng.choice(40, 5, replace=False)):
        r = m.evaluate(int(w[k]), int(h[k]), "request", prompt_tokens=7, new_tokens=3)
        for name in metrics + ("w_tokens", "h_tokens", "image_tokens"):
            assert by_table[name][k] == per_point[name][k] == r[name], (name, w[k], h[k])


def test_import_does_not_load_torch():
    code = (
        "import sys, symcost, validation.qwen2_5_vl_compare as c\n"
        "c.validate_case(symcost.load('qwen2.5-vl'), 'decode', 'torch', {'kv_len': 9}, check_only=True)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_runtime_and_convention():
    for runtime in ("hf", "vllm"):
        m = load(runtime=runtime)
        for conv in symcost.CONVENTIONS:
            r = m.evaluate(
                995, 1288, "request", prompt_tokens=20, new_tokens=5, convention=conv, hardware="h100-sxm"
            )
            assert r["flops"] > 0 and r["ttft_s"] > 0 and r["tpot_s"] > 0
    with pytest.raises(SymcostError, match="attention"):
        load(runtime="vllm", attention="eager")


# --------------------------------------------------------------------------- measured (torch)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from validation import qwen2_5_vl as q  # noqa: E402
from validation.qwen2_5_vl_compare import grid_mismatches, validate_case, validate_params  # noqa: E402


def assert_all_match(case):
    bad = [r for r in case["rows"] if not r["ok"]]
    assert not bad, f"{case['title']}: {bad}"
    assert case["ok"] and len(case["rows"]) >= 10


# edge cases of the layout: scaled up (1x1, 30x20), one whole window (112 px), a partial row and column
# of each kind, round-half-even ties (70 = 2.5 x 28, 126 = 4.5 x 28), the widest side ratio allowed
# (200: 14 px round to 0 tokens, then scaled up)
VISION_SIZES = [(1, 1), (30, 20), (112, 112), (140, 84), (300, 200), (70, 126), (2800, 14)]


@pytest.mark.parametrize("size", VISION_SIZES, ids=str)
def test_vision_flops(size):
    case = validate_case(load(), "vision", "torch", {"width": size[0], "height": size[1]})
    assert_all_match(case)


def test_vision_batch_and_torch_cpu():
    case = validate_case(
        load(preset="qwen2.5-vl-3b"), "vision", "torch", {"width": 300, "height": 200, "batch": 2}
    )
    assert_all_match(case)
    ootb = validate_case(load(), "vision", "torch-cpu", {"width": 300, "height": 200})
    assert_all_match(ootb)
    assert ootb["measured"]["window_blocks_attn_core"] == 0 < case["measured"]["window_blocks_attn_core"]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(995, 1288), (5000, 4000)], ids=str)
def test_vision_flops_full_pages(size):
    """US Letter at olmOCR's 1288 px; a page past max_pixels (the scaled-down branch)."""
    assert_all_match(validate_case(load(), "vision", "torch", {"width": size[0], "height": size[1]}))


@pytest.mark.parametrize("logits", ["all", "last"])
def test_prefill_flops(logits):
    case = validate_case(
        load(logits=logits), "prefill", "torch", {"width": 300, "height": 200, "prompt_tokens": 31}
    )
    assert_all_match(case)
    assert case["measured"]["prefill_tokens"] == 31 + 77


@pytest.mark.parametrize(
    "options,kv_len,batch",
    [({}, 0, 1), ({}, 1000, 1), ({"preset": "qwen2.5-vl-3b", "attention": "eager"}, 100, 3)],
    ids=str,
)
def test_decode_flops(options, kv_len, batch):
    assert_all_match(validate_case(load(**options), "decode", "torch", {"kv_len": kv_len, "batch": batch}))


@pytest.mark.parametrize("preset", PRESETS)
def test_parameters_per_component(preset):
    case = validate_params(load(preset=preset))
    assert case["ok"], case["rows"]
    assert case["measured"]["total"] == STATED[preset][0]


@pytest.mark.parametrize("size", [(1, 1), (995, 1288), (300, 7), (70, 126)], ids=str)
def test_image_tokens_equal_the_processor_run(size):
    run = q.run_processor("olmocr-2-7b", *size)
    r = load().evaluate(*size)
    assert run["image_tokens"] == r["image_tokens"]
    assert run["grid_thw"] == (1, 2 * r["h_tokens"], 2 * r["w_tokens"])


def test_validate_refuses_what_it_cannot_measure():
    with pytest.raises(SymcostError, match="--runtime"):
        validate_case(load(runtime="vllm"), "vision", "torch", {"width": 9, "height": 9}, check_only=True)
    with pytest.raises(SymcostError, match="--counter"):
        validate_case(load(), "vision", "fvcore", {"width": 9, "height": 9}, check_only=True)
    with pytest.raises(SymcostError, match="--image: transformers' processor refuses 1x300"):
        validate_case(load(), "vision", "torch", {"width": 1, "height": 300}, check_only=True)


@pytest.mark.slow
def test_resize_rule_equals_smart_resize_on_every_size():
    """Exhaustive: the layout's resize against the processor module's smart_resize on [1, 4096]^2."""
    sides = range(1, 4097)
    got = grid_mismatches("olmocr-2-7b", sides, sides, processes=2)
    took = f"{got['analytic_s']:.1f} s vs {got['processor_s']:.1f} s"
    print(f"{got['pairs']} pairs, {got['refused']} refused, {took}")
    assert got["pairs"] == 4096**2 and got["refused"] > 0
    assert got["mismatches"] == 0, got["first"]


def test_resize_rule_on_a_grid_sample():
    sides = list(range(1, 60)) + [995, 1288, 3585, 3600, 4096]
    got = grid_mismatches("olmocr-2-7b", sides, sides, processes=1)
    assert got["mismatches"] == 0 and got["refused"] > 0, got["first"]


# --------------------------------------------------------------------------- peak memory

TOLERANCE = 0.10  # the bar for modelled peak memory


def _check_memory(analytic: int, measured: int):
    print(f"analytic {analytic:,} B, measured {measured:,} B, ratio {analytic / measured:.4f}")
    assert abs(analytic - measured) <= TOLERANCE * measured


def test_vision_peak_memory():
    """Two blocks (windowed, full) of the real tower on CPU in bf16, 5 x 3 tokens (edge windows)."""
    from dataclasses import replace

    from derivations.qwen2_5_vl.vision import tower

    vis = replace(PRESETS["olmocr-2-7b"].vision, depth=2, full_blocks=(1,))
    got = q.measure_memory("olmocr-2-7b", "vision", w_tokens=5, h_tokens=3)["peak_bytes"]
    _check_memory(int(tower(vis, 1, (5, 3, 1, 3), False).cost.peak_bytes), got)


@pytest.mark.slow
@pytest.mark.parametrize("stage,shape,batch", [("prefill", {"seq": 200}, 1), ("decode", {"past": 500}, 2)])
def test_decoder_peak_memory(stage, shape, batch):
    """Two decoder layers of the 3B preset on CPU in bf16 (transformers' sdpa, DynamicCache)."""
    from dataclasses import replace

    from derivations.common.decoder import decoder
    from derivations.common.vlm import execution
    from derivations.qwen2_5_vl import HF

    dec = replace(PRESETS["qwen2.5-vl-3b"].decoder, layers=2, dense_layers=2)
    ex, _ = execution("hf", None, None, "expected", HF)
    s, past = (shape["seq"], 0) if stage == "prefill" else (1, shape["past"])
    got = q.measure_memory("qwen2.5-vl-3b", stage, batch=batch, **shape)["peak_bytes"]
    _check_memory(int(decoder(dec, ex, batch, s, past).cost.peak_bytes), got)
