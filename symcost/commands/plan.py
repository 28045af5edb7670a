"""symcost plan FAMILY: the largest batch that fits, what it serves, and inverse questions."""

from __future__ import annotations

import json

from ..args import (
    add_hardware,
    add_inputs,
    add_model_options,
    add_precision,
    given_inputs,
    hardware_settings,
    load_model,
    parse_image,
    single,
)
from ..errors import SymcostError

HELP = "capacity and throughput on a GPU: largest batch, TTFT, TPOT, pages/day; inverse queries"


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 40 else float("nan")
        except ValueError:
            value = float("nan")
        if not 0 < value < 1e30:
            raise SymcostError(f"{name}: {text[:40]!r} is not a positive number")
        return value

    return parse


def add_arguments(p, family):
    add_model_options(p, family)
    add_inputs(p, family)
    add_precision(p)
    add_hardware(p, required=True)
    g = p.add_argument_group("inverse questions")
    g.add_argument(
        "--max-flops",
        type=_positive("--max-flops"),
        default=None,
        help="largest image (at --aspect) whose request FLOPs (torch convention, at "
        "--batch or 1) stay within this many FLOP; a positive number. Default: "
        "none",
    )
    g.add_argument(
        "--max-ttft-ms",
        type=_positive("--max-ttft-ms"),
        default=None,
        help="largest image (at --aspect) whose time to first token stays within this "
        "many ms; a positive number. Default: none",
    )
    g.add_argument(
        "--max-memory-gb",
        type=_positive("--max-memory-gb"),
        default=None,
        help="largest image (at --aspect) whose memory stays within this many GB "
        "(1e9 B); a positive number. Default: none",
    )
    g.add_argument(
        "--aspect",
        default=None,
        metavar="W:H",
        help="the aspect ratio of the images for the questions above: W:H with "
        "integers, or a name (square, a4, a4-landscape, letter, "
        "letter-landscape). Default: the first --image's, else square",
    )
    g.add_argument(
        "--pages-per-day",
        type=_positive("--pages-per-day"),
        default=None,
        help="the batch reaching this throughput on one device, and the devices "
        "needed for it at the largest batch; a positive number. Default: none",
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object with exact integers. Default: labelled lines"
    )


def run(args, family) -> int:
    from ..plan import for_throughput, largest_image, plan

    if family.serving is None:
        raise SymcostError(f"plan: {family.name} declares no serving stage")
    s = family.serving
    model = load_model(family, single(args, family))
    hw = hardware_settings(args)
    inputs = given_inputs(args, family)
    batch = inputs.pop(s.batch, None)
    kw = dict(dtype=args.dtype, kv_dtype=args.kv_dtype, **hw)
    images = [parse_image(t, *(family.input(n) for n in family.image)) for t in args.image or []]
    inverse = any(x is not None for x in (args.max_flops, args.max_ttft_ms, args.max_memory_gb))
    if not images and not inverse:
        raise SymcostError("--image: plan needs at least one image (repeat for a mix)")
    if args.aspect is not None and not inverse:
        raise SymcostError("--aspect: applies only with --max-flops, --max-ttft-ms or --max-memory-gb")
    points = [{**dict(zip(family.image, img)), **inputs} for img in images]
    for point in points:
        model.check_inputs(s.stage, {**point, s.batch: batch or 1})
    out: dict = {
        "family": family.name,
        **model.options,
        "hardware": args.hardware,
        "dtype": args.dtype,
        "kv_dtype": args.kv_dtype or args.dtype,
        **inputs,
    }
    if points:
        plans = [plan(model, args.hardware, point, batch, **kw) for point in points]
        if len(plans) == 1:
            out.update(plans[0], image=f"{images[0][0]}x{images[0][1]}")
        else:  # a mix in equal parts: the largest batch fits every image; time adds per page
            rate = len(plans) / sum(1 / p["pages_per_day"] for p in plans)
            out.update(
                max_batch=min(p["max_batch"] for p in plans),
                memory_bytes=max(p["memory_bytes"] for p in plans),
                memory_capacity_bytes=plans[0]["memory_capacity_bytes"],
                ttft_s=max(p["ttft_s"] for p in plans),
                tpot_s=max(p["tpot_s"] for p in plans),
                pages_per_day=rate,
                pages_per_s=rate / 86_400,
                tokens_per_s=sum(p["tokens_per_s"] for p in plans) / len(plans),
                bound=plans[0]["bound"],
                images=[{"image": f"{w}x{h}", **p} for (w, h), p in zip(images, plans)],
            )
        if s.step is not None:  # beside the wave: a server on the same pages (symcost simulate)
            from ..simulation import beside_plan

            at = out.get("batch") or batch or out["max_batch"]  # a mix: the given batch, else the largest
            out["simulated"] = beside_plan(model, args.hardware, points, at, **kw)
    from ..sweep import parse_aspect

    aspect = parse_aspect(args.aspect) if args.aspect else (images[0] if images else (1, 1))
    questions = {
        "max_flops": ("flops", args.max_flops, {}),
        "max_ttft_ms": (
            "ttft_s",
            args.max_ttft_ms and args.max_ttft_ms / 1e3,
            dict(hardware=args.hardware, **kw),
        ),
        "max_memory_gb": (
            "memory_bytes",
            args.max_memory_gb and args.max_memory_gb * 1e9,
            dict(dtype=args.dtype, kv_dtype=args.kv_dtype),
        ),
    }
    for key, (metric, budget, extra) in questions.items():
        if budget is not None:
            point = {**inputs, s.batch: batch or 1}
            out[f"largest_image_{key}"] = largest_image(model, metric, budget, aspect, point, **extra)
    if args.pages_per_day is not None:
        if not points:
            raise SymcostError("--pages-per-day: needs --image")
        out["throughput"] = for_throughput(model, args.hardware, points[0], args.pages_per_day, **kw)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(_text(model, out, args))
    return 0


def _text(model, out: dict, args) -> str:
    """The plan as labelled lines, every number with its unit."""
    from ..dtypes import precision
    from ..hardware import get_hardware
    from ..report import human, settings_lines, time_line

    hw = get_hardware(args.hardware)
    effs = hardware_settings(args)
    prec = precision(args.dtype, args.kv_dtype)
    s = model.family.serving
    inputs = {k: out[k] for k in (s.prompt_tokens, s.new_tokens) if k in out}
    lines = settings_lines(model, s.stage, None, prec, inputs)
    lines.append(
        time_line(model, hw, prec, effs.get("compute_efficiency", 1.0), effs.get("bandwidth_efficiency", 1.0))
    )
    gb = lambda b: f"{b / 1e9:,.2f} GB"  # noqa: E731
    if "max_batch" in out:
        cap = out["memory_capacity_bytes"]
        lines.append(
            f"# memory the runtime may use on {hw.name}: {gb(cap)} "
            f"({model.runtime.memory_fraction:.0%} of {gb(hw.memory_bytes)}); a batch "
            "is served as one wave; one request = one page"
        )
        rows = [
            ("image", out.get("image", "mix: " + ", ".join(i["image"] for i in out.get("images", [])))),
            (
                "largest batch that fits",
                f"{out['max_batch']:,} requests ({out.get('max_batch_bound', 'every image')})",
            ),
            ("batch", f"{out.get('batch', out['max_batch']):,} requests"),
            ("memory", f"{gb(out['memory_bytes'])} of {gb(cap)}"),
            ("time to first token", f"{human(out['ttft_s'] * 1e3)} ms"),
            ("time per output token", f"{human(out['tpot_s'] * 1e3)} ms"),
            (
                "throughput",
                f"{human(out['tokens_per_s'])} tokens/s, {human(out['pages_per_s'])} "
                f"pages/s, {human(out['pages_per_day'])} pages/day",
            ),
            ("bound per stage", ", ".join(f"{k} {v}" for k, v in out["bound"].items())),
        ]
        if "simulated" in out:
            sim = out["simulated"]
            rows.append(
                (
                    "served (simulate)",
                    f"{human(sim['output_tokens_per_s'])} tokens/s, {human(sim['pages_per_day'])} pages/day, "
                    f"TTFT p50 {human(sim['ttft_p50_s'])} s, TPOT p50 {human(sim['tpot_p50_s'] * 1e3)} ms, "
                    f"bound {sim['bound']} ({sim['pages']:,} pages queued at once; "
                    + ", ".join(
                        f"{k} {v:,}" for k, v in sim["engine"].items() if k in ("max_num_seqs", "batch")
                    )
                    + ")",
                )
            )
        if "weight_bytes" in out:
            rows.insert(
                4,
                (
                    "  of which",
                    f"weights {gb(out['weight_bytes'])}, KV cache "
                    f"{gb(out['kv_bytes'])}, other activations "
                    f"{gb(out['activation_bytes'] - out['kv_bytes'])}",
                ),
            )
        lines += [f"{k:>24}  {v}" for k, v in rows]
    for key, value in out.items():
        if key.startswith("largest_image_"):
            unit = {"flops": "FLOP", "ttft_s": "s", "memory_bytes": "B"}[value["metric"]]
            grid = f", tiles {value['w_tiles']}x{value['h_tiles']}" if "w_tiles" in value else ""
            flag = "--" + key.removeprefix("largest_image_").replace("_", "-")
            lines.append(
                f"{'largest image':>24}  {value['width']}x{value['height']} px{grid} "
                f"({flag}: {value['metric']} {human(value['value'])} {unit} <= "
                f"{human(value['budget'])} {unit})"
            )
    if "throughput" in out:
        t = out["throughput"]
        batch = t["batch_for_target"]
        lines.append(
            f"{'for ' + human(t['pages_per_day_target']) + ' pages/day':>24}  "
            + (f"batch {batch} on one {hw.name}" if batch else f"more than one {hw.name} gives")
            + f"; {t['devices']} x {hw.name} at "
            f"batch {t['max_batch']} ({human(t['pages_per_day_at_max_batch'])} pages/day each)"
        )
    return "\n".join(lines)
