"""symcost compare: one page (or a mix of pages) across families, side by side.

Each family at its default options, with what its own pipeline does to a page
(``Family.page_options``, e.g. a page render before the processor), the runtime given to all.
Per family: image tokens, vision / prefill / request FLOPs and the request's peak memory at
batch 1, then ``plan``'s wave at the largest batch that fits the device: TTFT, TPOT,
tokens/s and pages/day on one device.
"""

from __future__ import annotations

import json

from ..args import add_precision, choice, int_in, parse_image
from ..errors import SymcostError

HELP = "one page across families: image tokens, FLOPs, memory, TTFT, TPOT, pages/day on one device"
RUNTIMES = ("hf", "vllm")
COLUMNS = (  # key, title, unit scale
    ("family", "family", None),
    ("image_tokens", "image tokens", None),
    ("vision_flops", "vision [GFLOP]", 1e9),
    ("prefill_flops", "prefill [GFLOP]", 1e9),
    ("flops", "request [GFLOP]", 1e9),
    ("memory_bytes", "memory [GB]", 1e9),
    ("params", "params [M]", 1e6),
    ("batch", "batch", None),
    ("ttft_s", "ttft [ms]", 1e-3),
    ("tpot_s", "tpot [ms]", 1e-3),
    ("tokens_per_s", "tokens/s", 1),
    ("pages_per_day", "pages/day", 1),
)


def add_arguments(p) -> None:
    from ..family import families

    names = families()
    p.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="WxH",
        help="the page in pixels, e.g. 1275x1650 (US Letter at 150 dpi); repeatable: a mix in equal "
        "parts. Required",
    )
    p.add_argument(
        "--family",
        action="append",
        type=choice(names),
        default=None,
        help=f"a family to compare; repeatable. Choices: {', '.join(names)}. Default: every family",
    )
    p.add_argument(
        "--hardware",
        default="h100-sxm",
        help="accelerator: a preset or a .json file (see README). Default: h100-sxm",
    )
    p.add_argument(
        "--runtime",
        type=choice(RUNTIMES),
        default="vllm",
        help="serving runtime. Choices: hf, vllm. Default: vllm",
    )
    p.add_argument(
        "--prompt-tokens",
        type=int_in(0, 65536),
        default=0,
        help="text tokens of the prompt besides the image, in [0, 65536]. Default: 0",
    )
    p.add_argument(
        "--new-tokens",
        type=int_in(1, 65536),
        default=1000,
        help="generated tokens per page, in [1, 65536]. Default: 1000",
    )
    add_precision(p)
    p.add_argument(
        "--json", action="store_true", help="print the records as JSON (exact integers). Default: a table"
    )
    p.add_argument(
        "--plot", default=None, help="write a bar chart (.png, .pdf or .svg; needs .[plot]). Default: none"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --plot file. Default: refuse")


def compare(
    families,
    images: list[tuple[int, int]],
    hardware,
    runtime: str = "vllm",
    prompt_tokens: int = 0,
    new_tokens: int = 1000,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
) -> list[dict]:
    """One record per family: ``family``, ``options``, ``image_tokens`` (of the first page),
    ``vision_flops``, ``prefill_flops``, ``flops`` (request), ``memory_bytes`` (request peak) at
    batch 1, ``params``, and ``plan``'s ``batch``, ``ttft_s``, ``tpot_s``, ``tokens_per_s``,
    ``pages_per_day`` at the largest batch that fits (mean over the pages of a mix)."""
    import symcost
    from symcost.hardware import get_hardware
    from symcost.plan import plan

    hw = get_hardware(hardware)
    records = []
    for name in families:
        fam = symcost.get_family(name)
        s = fam.serving
        if fam.image is None or s is None:
            raise SymcostError(f"--family: {name} has no image input or serving declaration to compare")
        options = {**fam.page_options}
        if "runtime" in {o.name for o in fam.options}:
            options["runtime"] = runtime
        model = symcost.load(name, **options)
        points = [
            {**dict(zip(fam.image, img)), s.prompt_tokens: prompt_tokens, s.new_tokens: new_tokens}
            for img in images
        ]
        per_page = []
        for point in points:
            image: dict = {k: point[k] for k in fam.image}
            vision = model.evaluate(stage=s.vision, **image) if s.vision else {}
            prefill = model.evaluate(stage="prefill", **{**image, s.prompt_tokens: prompt_tokens})
            request = model.evaluate(stage=s.stage, **point, dtype=dtype, kv_dtype=kv_dtype)
            per_page.append((vision, prefill, request))
        wave = plan(model, hw, points, None, dtype=dtype, kv_dtype=kv_dtype)
        n = len(points)
        records.append(
            {
                "family": name,
                "options": {o.name: model.options[o.name] for o in fam.options},
                "image_tokens": per_page[0][1].get(s.image_tokens, per_page[0][0].get(s.image_tokens)),
                "vision_flops": sum(int(v.get("flops", 0)) for v, _, _ in per_page) // n,
                "prefill_flops": sum(int(p["flops"]) for _, p, _ in per_page) // n,
                "flops": sum(int(r["flops"]) for _, _, r in per_page) // n,
                "memory_bytes": max(int(r["memory_bytes"]) for _, _, r in per_page),
                "params": int(per_page[0][2]["params"]),
                "batch": wave.get("batch") or wave["max_batch"],
                "fits": bool(wave["max_batch"]),
                "ttft_s": wave.get("ttft_s"),
                "tpot_s": wave.get("tpot_s"),
                "tokens_per_s": wave.get("tokens_per_s"),
                "pages_per_day": wave.get("pages_per_day"),
            }
        )
    return records


def run(args) -> int:
    from symcost.hardware import get_hardware

    from ..family import families, get_family
    from ..files import check_target

    names = list(dict.fromkeys(args.family or families()))
    first = get_family(names[0])
    if first.image is None:
        raise SymcostError(f"--family: {names[0]} has no image input to compare")
    images = [parse_image(t, *(first.input(n) for n in first.image)) for t in args.image]
    hw = get_hardware(args.hardware)
    if args.plot:  # refused before any work
        check_target(args.plot, force=args.force, param="--plot", extensions=("png", "pdf", "svg"))
    records = compare(
        names, images, hw, args.runtime, args.prompt_tokens, args.new_tokens, args.dtype, args.kv_dtype
    )
    if args.plot:
        _plot(records, args.plot, _title(args, hw), args.force)
    if args.json:
        print(json.dumps(records, indent=1, allow_nan=False))
        return 0
    print(_title(args, hw))
    print("# per family: its default options and its own page pipeline (options column); FLOPs in the")
    print("# torch convention (FlopCounterMode, SDPA counted) at batch 1; memory: the request's peak at")
    print("# batch 1; ttft, tpot, tokens/s, pages/day: plan's wave at the largest batch that fits one device")
    print(_table(records))
    return 0


def _title(args, hw) -> str:
    pages = ", ".join(args.image)
    return (
        f"# compare: page {pages} px, prompt {args.prompt_tokens} + image tokens, {args.new_tokens} new "
        f"tokens; {hw.name}, runtime {args.runtime}, dtype {args.dtype}, "
        f"kv_dtype {args.kv_dtype or args.dtype}"
    )


def _cell(value, scale) -> str:
    if value is None:
        return "-"
    if scale is None:
        return f"{value:,}" if isinstance(value, int) else str(value)
    return f"{value / scale:,.1f}" if value / scale < 1e4 else f"{value / scale:,.0f}"


def _table(records: list[dict]) -> str:
    rows = [[title for _, title, _ in COLUMNS] + ["options"]]
    for r in records:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        rows.append([_cell(r[k], scale) for k, _, scale in COLUMNS] + [opts])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _plot(records: list[dict], path: str, title: str, force: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymcostError("--plot: needs matplotlib (pip install 'symcost[plot]')") from None
    from ..files import atomic_write

    names = [r["family"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = (
        ("image_tokens", "image tokens per page", 1),
        ("flops", "request TFLOP per page (batch 1)", 1e12),
        ("pages_per_day", "pages/day on one device (millions)", 1e6),
    )
    for ax, (key, label, scale) in zip(axes, panels):
        ax.barh(names, [(r[key] or 0) / scale for r in records], color="tab:blue")
        ax.set_xlabel(label)
        ax.invert_yaxis()
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title.removeprefix("# "), fontsize=9)
    fig.tight_layout()
    fmt = path.rsplit(".", 1)[-1]
    atomic_write(path, lambda f: fig.savefig(f, format=fmt), binary=True, force=force, param="--plot")
    plt.close(fig)
