"""The ``symcost`` command line: formulas, eval, params, sweep, validate.

Every bad input ends in one line on stderr naming the parameter, and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .checks import LIMITS
from .conventions import CONVENTIONS
from .errors import SymcostError
from .metrics import DTYPE_BYTES, METRICS

__all__ = ["main"]

STAGES = ("vision", "prefill", "decode", "request")
_IMAGE = re.compile(r"(0*[0-9]{1,5})[xX](0*[0-9]{1,5})")  # bounded digits: int() stays cheap
_W_MAX = LIMITS["width"][1]
# measured points for the sweep plot by default: the reference data, when the checkout has it
_REFERENCE_CSV = Path(__file__).resolve().parents[1] / "validation" / "data" / "vision_flops.csv"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message by default)
        raise SymcostError(message)


def parse_image(text: str) -> tuple[int, int]:
    m = _IMAGE.fullmatch(text)
    if not m or not all(1 <= int(g) <= _W_MAX for g in m.groups()):
        raise SymcostError(f"--image: {text!r} is not WxH with integers in [1, {_W_MAX}]")
    return int(m.group(1)), int(m.group(2))


def _int_arg(name: str):
    lo, hi = LIMITS[name]
    return _choice_int(lo, hi)


def _choice_int(lo: int, hi: int):
    def parse(text: str) -> int:
        if not re.fullmatch(r"0*[0-9]{1,18}", text) or not lo <= int(text) <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer in [{lo}, {hi}]")
        return int(text)
    return parse


def _choice(allowed):
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)}")
        return text
    return parse


def _model_args(p: argparse.ArgumentParser) -> None:
    from derivations.deepseek_ocr import PRESETS, VISION_MODES
    p.add_argument("family", type=_choice(("deepseek-ocr",)))
    p.add_argument("--preset", default="gundam", type=_choice(tuple(PRESETS)))
    p.add_argument("--vision-mode", default="crops", type=_choice(tuple(VISION_MODES)))
    p.add_argument("--max-crops", default=9, type=_choice_int(2, 9))


def _cost_args(p: argparse.ArgumentParser, stage_default="vision") -> None:
    p.add_argument("--stage", default=stage_default, type=_choice(STAGES))
    p.add_argument("--convention", default="torch", type=_choice(tuple(CONVENTIONS)))
    p.add_argument("--dtype", default="bf16", type=_choice(tuple(DTYPE_BYTES)))
    p.add_argument("--kv-dtype", default=None, type=_choice(tuple(DTYPE_BYTES)))
    p.add_argument("--attention", default="eager", type=_choice(("eager", "flash")))


def _stage_vars(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-tokens", default=0, type=_int_arg("prompt_tokens"))
    p.add_argument("--kv-len", default=0, type=_int_arg("kv_len"))
    p.add_argument("--new-tokens", default=1, type=_int_arg("new_tokens"))
    p.add_argument("--batch", default=1, type=_int_arg("batch"))


def _load(args):
    import symcost
    return symcost.load(args.family, preset=args.preset, vision_mode=args.vision_mode,
                        max_crops=args.max_crops)


def cmd_formulas(args) -> int:
    from .report import formulas_text, layout_text
    model = _load(args)
    if args.layout:
        print(layout_text(model, args.latex))
        return 0
    print(formulas_text(model, args.stage, args.metric, args.convention, latex=args.latex,
                        depth=args.depth, dtype=args.dtype, kv_dtype=args.kv_dtype,
                        attention=args.attention))
    return 0


def evaluate_records(args) -> list[dict]:
    """One record per ``--image``: the numeric model's metrics, components and times."""
    shapes = [parse_image(text) for text in args.image]  # every image checked before any work
    model = _load(args)
    records = []
    for width, height in shapes:
        r = model.evaluate(width, height, args.stage, prompt_tokens=args.prompt_tokens,
                           kv_len=args.kv_len, new_tokens=args.new_tokens, batch=args.batch,
                           convention=args.convention, dtype=args.dtype,
                           kv_dtype=args.kv_dtype, attention=args.attention,
                           hardware=args.hardware, efficiency=args.efficiency)
        io = r["io_bytes"]
        record = {"width": width, "height": height, "preset": model.preset,
                  "vision_mode": model.options["vision_mode"],
                  "crop_mode": model.options["crop_mode"], "stage": args.stage,
                  "convention": args.convention, "dtype": args.dtype,
                  "kv_dtype": args.kv_dtype or args.dtype, "attention": args.attention,
                  "prompt_tokens": args.prompt_tokens, "kv_len": args.kv_len,
                  "new_tokens": args.new_tokens, "batch": args.batch,
                  **{k: v for k, v in r.items() if k != "components"},
                  "arithmetic_intensity": r["flops"] / io if io else 0.0}
        if args.hardware is not None:
            record["hardware"] = args.hardware
        record["components"] = r["components"]
        records.append(record)
    return records


def cmd_eval(args) -> int:
    from .report import table
    records = evaluate_records(args)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    cols = ["width", "height", "w_tiles", "h_tiles", "n_crops", "image_tokens", "flops",
            "io_bytes", "activation_bytes", "kv_bytes"]
    cols += [c for c in ("time_s", "ttft_s", "tpot_s") if c in records[0]]
    print(f"# {args.family} {records[0]['preset']}, vision_mode {args.vision_mode}, stage "
          f"{args.stage}, convention {args.convention}, dtype {args.dtype}")
    print(table(records, cols))
    return 0


def cmd_params(args) -> int:
    from .report import table
    model = _load(args)
    rows = [{"component": k, "params": v} for k, v in model.parameters().items()
            if k.count(".") <= args.depth]
    print(table(rows, ["component", "params"]))
    return 0


def cmd_sweep(args) -> int:
    import time

    from .files import check_target
    from .plot import PLOT_FORMATS
    from .sweep import FORMATS, parse_range, sweep, write_table
    widths = parse_range("--width", args.width, "width")
    heights = parse_range("--height", args.height, "height")
    check_target(args.out, force=args.force, extensions=FORMATS)  # refused before any work
    if args.plot:
        check_target(args.plot, force=args.force, param="--plot", extensions=PLOT_FORMATS)
    metrics = tuple(dict.fromkeys(args.metric or ["flops"]))
    model = _load(args)
    values = dict(prompt_tokens=args.prompt_tokens, kv_len=args.kv_len,
                  new_tokens=args.new_tokens, batch=args.batch)
    start = time.perf_counter()
    table = sweep(model, widths, heights, args.stage, metrics, args.convention, dtype=args.dtype,
                  kv_dtype=args.kv_dtype, attention=args.attention, **values)
    write_table(args.out, table, force=args.force)
    print(f"wrote {len(table['width']):,} points x {len(table)} columns to {args.out} in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.plot:
        _sweep_plot(args, widths, heights, metrics[0], values)
    return 0


def _sweep_plot(args, widths, heights, metric, values) -> None:
    """Square images where the grid has them (W = H), else the first height's row."""
    import numpy as np

    import symcost

    from .plot import load_measured, plot_curves
    common = np.intersect1d(widths, heights)
    w, h = (common, common) if len(common) > 1 else (widths, np.full_like(widths, heights[0]))
    source = args.measured or (str(_REFERENCE_CSV) if _REFERENCE_CSV.exists() else None)
    measured = load_measured(source, args.preset, args.convention) \
        if source and args.stage == "vision" and metric == "flops" else []
    curves, tiles, at_measured = {}, None, []
    for mode in ("crops", "nocrop"):
        m = symcost.load(args.family, preset=args.preset, vision_mode=mode,
                         max_crops=args.max_crops)
        ev = m.compile(args.stage, (metric,), args.convention, dtype=args.dtype,
                       kv_dtype=args.kv_dtype, attention=args.attention)
        out = ev(w, h, **values)
        curves[mode] = out[metric]
        if mode == "crops":
            tiles = out["w_tiles"] * out["h_tiles"] * (out["n_crops"] > 0)
            at_measured = [int(ev(mw, mh, **values)[metric]) for mw, mh, _ in measured]
    title = (f"{args.family} {args.preset}: {args.stage} {metric} ({args.convention})"
             + ("" if len(common) > 1 else f", height {heights[0]}"))
    plot_curves(args.plot, np.sqrt(w * h), curves, tiles, measured, at_measured, title, metric,
                force=args.force)


def cmd_validate(args) -> int:
    from .report import table
    try:
        from validation.compare import validate_case
        import fvcore, torch, transformers  # noqa: F401  (fail here, not mid-run)
    except ImportError as e:
        raise SymcostError(f"validate: needs torch, transformers and fvcore ({e.name} missing); "
                           "pip install 'symcost[validation]'") from None
    images = [parse_image(t) for t in (args.image or ["1280x720"])]
    cases = []
    for k, (w, h) in enumerate(images, 1):
        if len(images) > 1:
            print(f"[{k}/{len(images)}] {w}x{h} {args.stage} ({args.counter})", file=sys.stderr)
        cases.append(validate_case(args.preset, args.vision_mode, args.stage, w, h, args.counter,
                                   args.prompt_tokens, args.kv_len, args.max_crops))
    if args.json:
        print(json.dumps(cases, indent=1))
    else:
        for case in cases:
            print(f"# {case['preset']} {case['vision_mode']} {case['width']}x{case['height']} "
                  f"{case['stage']}, counter {case['counter']}: tiles {case['w_tiles']}x"
                  f"{case['h_tiles']} ({case['n_crops']} crops), "
                  f"{'all match' if case['ok'] else 'MISMATCH'}")
            print(table(case["rows"], ["component", "analytic", "measured", "abs_diff",
                                       "rel_diff", "ok"]))
    return 0 if all(c["ok"] for c in cases) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symcost", description="Exact closed-form costs of DeepSeek-OCR.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("formulas", help="print the closed forms")
    _model_args(p)
    _cost_args(p)
    allowed = [m for m in METRICS if m != "arithmetic_intensity"]
    p.add_argument("--metric", default="flops", type=_choice(allowed))
    p.add_argument("--depth", default=3, type=_choice_int(0, 12))
    p.add_argument("--latex", action="store_true")
    p.add_argument("--layout", action="store_true", help="print the tile rule instead")
    p.set_defaults(run=cmd_formulas)

    p = sub.add_parser("eval", help="evaluate for images")
    _model_args(p)
    _cost_args(p)
    _stage_vars(p)
    p.add_argument("--image", action="append", required=True, help="WxH, repeatable")
    p.add_argument("--hardware", default=None, help="preset name or a .json file")
    p.add_argument("--efficiency", default=1.0, type=_efficiency)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("sweep", help="evaluate a grid of image sizes to a file")
    _model_args(p)
    _cost_args(p)
    _stage_vars(p)
    p.add_argument("--width", required=True, help="A:B:STEP, inclusive")
    p.add_argument("--height", required=True, help="A:B:STEP, inclusive")
    p.add_argument("--metric", action="append", type=_choice(METRICS),
                   help="repeatable; default flops")
    p.add_argument("--out", required=True, help="FILE.csv, .json or .parquet")
    p.add_argument("--plot", default=None, help="FILE.png or .svg")
    p.add_argument("--measured", default=None,
                   help="measured points to overlay: the reference CSV or a validate --json file")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser("validate", help="measure the real modules and compare")
    _model_args(p)
    p.add_argument("--stage", default="vision", type=_choice(("vision", "prefill", "decode")))
    p.add_argument("--counter", default="torch",
                   type=_choice(("torch", "torch-cpu", "fvcore", "fvcore-default")))
    p.add_argument("--image", action="append", help="WxH, repeatable (default 1280x720)")
    p.add_argument("--prompt-tokens", default=0, type=_int_arg("prompt_tokens"))
    p.add_argument("--kv-len", default=0, type=_int_arg("kv_len"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("params", help="parameter counts per module")
    _model_args(p)
    p.add_argument("--depth", default=3, type=_choice_int(0, 12))
    p.set_defaults(run=cmd_params)
    return parser


def _efficiency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1]")
    return value


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as e:  # --help: argparse printed it and exits 0
        return e.code if isinstance(e.code, int) else 0
    except SymcostError as e:
        print(f"symcost: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symcost: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not bad input: still one line, no traceback
        print(f"symcost: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
              "(please report it)", file=sys.stderr)
        return 70


def _one_line(text: str) -> str:
    """Non-printable characters escaped (argparse echoes raw arguments): one line on stderr."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if __name__ == "__main__":
    sys.exit(main())
