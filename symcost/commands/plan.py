"""symcost plan FAMILY: the largest batch that fits, what it serves, and inverse questions."""

from __future__ import annotations

import json
import math

from ..args import (
    add_convention,
    add_hardware,
    add_inputs,
    add_model_options,
    add_precision,
    given_inputs,
    hardware_settings,
    load_model,
    parse_image,
    real_in,
    single,
)
from ..errors import SymcostError
from ..plan import PAGES_PER_DAY

HELP = "capacity and throughput on a GPU: largest batch, FLOPs, TTFT, TPOT, pages/day; inverse queries"

# flag -> (metric, the flag's unit, how many of the metric's unit one of the flag's is, range)
QUESTIONS = {
    "--max-flops": ("flops", "FLOP", 1.0, (1.0, 1e30)),
    "--max-ttft-ms": ("ttft_s", "ms", 1e-3, (1e-6, 1e9)),
    "--max-memory-gb": ("memory_bytes", "GB", 1e9, (1e-6, 1e9)),
}


def add_arguments(p, family):
    add_model_options(p, family)
    add_inputs(p, family)
    add_convention(p)
    add_precision(p)
    add_hardware(p, required=True)
    g = p.add_argument_group(
        "inverse questions (the largest image of --aspect within a budget, at --batch or 1; the "
        "images are every long side with the short side round(long x short/long), as sweep "
        "--aspect makes them)"
    )
    what = {
        "--max-flops": "request FLOPs (--convention)",
        "--max-ttft-ms": "time to first token",
        "--max-memory-gb": "device memory (GB = 1e9 B)",
    }
    for flag, (_, unit, _, (lo, hi)) in QUESTIONS.items():
        g.add_argument(
            flag,
            type=real_in(lo, hi, unit),
            default=None,
            help=f"the largest image whose {what[flag]} stays within this many {unit}; a number in "
            f"[{lo:g}, {hi:g}]. Default: none",
        )
    g.add_argument(
        "--aspect",
        default=None,
        metavar="W:H",
        help="the aspect ratio of the images for the questions above: W:H with "
        "integers, or a name (square, a4, a4-landscape, letter, "
        "letter-landscape). Default: the --image's (all of them must share it), else square",
    )
    g.add_argument(
        "--pages-per-day",
        type=real_in(*PAGES_PER_DAY, "pages/day"),
        default=None,
        help="the batch reaching this throughput on one device, and the devices needed for it at "
        f"the largest batch; a number of pages/day in [{PAGES_PER_DAY[0]:g}, {PAGES_PER_DAY[1]:g}]. "
        "Default: none",
    )
    from .simulate import add_host_flag, add_vllm_memory_flags

    add_host_flag(p)

    add_vllm_memory_flags(
        p.add_argument_group(
            "vLLM's KV-cache accounting (--runtime vllm; its profiling run sizes the cache: "
            "kv_capacity_tokens)"
        )
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object with exact integers. Default: labelled lines"
    )


_VLLM_FLAGS = ("--gpu-memory-utilization", "--max-num-batched-tokens", "--max-model-len")


def _kv_cache(model, args, images: list, batch) -> dict:
    """vLLM's KV-cache accounting for this plan: vLLM's engine defaults (offline), the flags
    given, ``max_num_seqs`` = --batch when given."""
    from ..dtypes import precision
    from ..hardware import get_hardware
    from ..kvcache import kv_cache, profile_image
    from ..simulation import Arrivals, engine_limits

    hw = get_hardware(args.hardware)
    eng = engine_limits(
        model,
        hw,
        Arrivals(),
        max_num_seqs=batch,
        max_num_batched_tokens=args.max_num_batched_tokens,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
    )
    image, why = profile_image(model, images)
    assert eng.max_num_batched_tokens is not None  # plan refuses "unlimited"
    kv = kv_cache(
        model,
        hw,
        precision(args.dtype, args.kv_dtype),
        eng.max_num_seqs,
        eng.max_num_batched_tokens,
        eng.block_size,
        eng.gpu_memory_utilization,
        eng.max_model_len,
        image,
    )
    engine = {k: getattr(eng, k) for k in ("max_num_seqs", "max_num_batched_tokens", "block_size")}
    return {
        "kv_capacity_tokens": kv.tokens,
        "kv_cache": kv.as_dict()
        | {"engine": engine, "engine_sources": dict(eng.sources), "image_source": why},
    }


def _label(point: dict, family) -> str:
    return "x".join(str(point[n]) for n in family.image)


def _requests(n: int) -> str:
    return f"{n:,} request" + ("" if n == 1 else "s")


def _aspect(args, images) -> tuple[int, int]:
    from ..sweep import parse_aspect

    if args.aspect is not None:
        return parse_aspect(args.aspect)
    ratios = {(w // math.gcd(w, h), h // math.gcd(w, h)) for w, h in images} or {(1, 1)}
    if len(ratios) > 1:
        shown = ", ".join(f"{a}:{b}" for a, b in sorted(ratios))
        raise SymcostError(f"--aspect: the images have different aspect ratios ({shown}); give one")
    return ratios.pop()


def run(args, family) -> int:
    from ..plan import BudgetUnmet, for_throughput, largest_image, plan

    if family.serving is None:
        raise SymcostError(f"plan: {family.name} declares no serving stage")
    s = family.serving
    model = load_model(family, single(args, family))
    effs = hardware_settings(args)
    inputs = given_inputs(args, family)
    batch = inputs.pop(s.batch, None)
    kw = dict(dtype=args.dtype, kv_dtype=args.kv_dtype, **effs)
    images = [parse_image(t, *(family.input(n) for n in family.image)) for t in args.image or []]
    asked = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in QUESTIONS}
    inverse = any(v is not None for v in asked.values())
    if not images and not inverse:
        raise SymcostError("--image: plan needs at least one image (repeat for a mix)")
    if args.aspect is not None and not inverse:
        raise SymcostError("--aspect: applies only with --max-flops, --max-ttft-ms or --max-memory-gb")
    for flag in _VLLM_FLAGS:
        if getattr(args, flag[2:].replace("-", "_")) is None:
            continue
        if model.runtime.name != "vllm":
            raise SymcostError(f"{flag}: applies to --runtime vllm only (vLLM's KV-cache accounting)")
        if not images:
            raise SymcostError(f"{flag}: needs --image (the KV cache is sized for a plan's requests)")
    if args.host != "none" and (not images or s.step is None):
        raise SymcostError(
            "--host: applies to plan's served line (simulate): needs --image and an engine step"
        )
    if args.max_num_batched_tokens == "unlimited":
        raise SymcostError("--max-num-batched-tokens: plan needs a number ('unlimited' applies to simulate)")
    if args.pages_per_day is not None and not images:
        raise SymcostError("--pages-per-day: needs --image")
    points = [{**dict(zip(family.image, img)), **inputs} for img in images]
    for point in points:
        model.check_inputs(s.stage, {**point, s.batch: batch or 1})
    aspect = _aspect(args, images) if inverse else (1, 1)
    out: dict = {
        "family": family.name,
        **model.options,
        "hardware": args.hardware,
        "dtype": args.dtype,
        "kv_dtype": args.kv_dtype or args.dtype,
        **inputs,
    }
    if points:
        out.update(plan(model, args.hardware, points, batch, convention=args.convention, **kw))
        out["mix"] = [{"image": _label(m["point"], family), "requests": m["requests"]} for m in out["mix"]]
        at = out.get("batch") or batch or out["max_batch"]  # a mix: the given batch, else the largest
        # beside a wave that fits: a server on the same pages (symcost simulate)
        if s.step is not None and 0 < at <= out["max_batch"]:
            from ..host import get_host
            from ..simulation import beside_plan

            host = get_host(args.host)
            served: dict = dict(kw, host=None if host.free else host)
            out["simulated"] = beside_plan(model, args.hardware, points, at, **served)
            out["host"] = host.as_dict()
    for flag, (metric, unit, scale, _) in QUESTIONS.items():
        if asked[flag] is None:
            continue
        timed = dict(hardware=args.hardware, **effs) if metric == "ttft_s" else {}
        try:
            answer = largest_image(
                model,
                metric,
                asked[flag] * scale,
                aspect,
                {**inputs, s.batch: batch or 1},
                convention=args.convention,
                dtype=args.dtype,
                kv_dtype=args.kv_dtype,
                **timed,
            )
        except BudgetUnmet as e:  # said in the flag's own unit
            w, h = e.image
            raise SymcostError(
                f"{flag}: no image at aspect {aspect[0]}:{aspect[1]} has {metric} <= "
                f"{asked[flag]:g} {unit} at {s.batch} {batch or 1}; the least is "
                f"{float(e.least) / scale:.4g} {unit} ({w}x{h})"
            ) from None
        out[f"largest_image_{flag[6:].replace('-', '_')}"] = answer
    if args.pages_per_day is not None:
        out["throughput"] = for_throughput(model, args.hardware, points, args.pages_per_day, **kw)
    if model.runtime.name == "vllm" and images:
        out.update(_kv_cache(model, args, images, batch))
    if args.json:
        print(json.dumps(out, indent=1, allow_nan=False))
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
    lines = settings_lines(model, s.stage, args.convention, prec, inputs)
    lines.append(
        time_line(model, hw, prec, effs.get("compute_efficiency", 1.0), effs.get("bandwidth_efficiency", 1.0))
    )
    gb = lambda b: f"{b / 1e9:,.2f} GB"  # noqa: E731
    if "max_batch" in out:
        cap, batch = out["memory_capacity_bytes"], out["batch"]
        lines.append(
            f"# memory the runtime may use on {hw.name}: {gb(cap)} ({model.runtime.memory_fraction:.0%} "
            f"of {gb(hw.memory_bytes)} = {hw.memory_bytes / 2**30:,.2f} GiB, {hw.memory_source}); "
            "GB = 1e9 B, GiB = 2^30 B"
        )
        lines.append(
            "# a batch is served as one wave; one request = one page"
            + (
                "; a mix is one wave holding the images in proportion, each figure the "
                "share-weighted mean over the images"
                if len(out["mix"]) > 1
                else ""
            )
        )
        peak = out["peak"]
        held = [(step, share["image"]) for step, share in zip(peak["steps"], out["mix"]) if step]
        at = (
            held[0][0]
            if len({step for step, _ in held}) == 1
            else ", ".join(f"{step} for {image}" for step, image in held)
        )
        fits = "" if out["fits"] else f": DOES NOT FIT (the largest batch that fits is {out['max_batch']:,})"
        rows = [
            (
                "image" if len(out["mix"]) == 1 else "images",
                ", ".join(f"{m['image']} x {m['requests']:,}" for m in out["mix"]),
            ),
            ("largest batch that fits", f"{_requests(out['max_batch'])} ({out['max_batch_bound']})"),
            ("batch", _requests(batch)),
            (
                "FLOPs",
                f"{human(out['flops'] / 1e12)} TFLOP for the wave, {human(out['flops'] / batch / 1e12)} "
                f"TFLOP per request (convention {out['convention']})",
            ),
            ("memory", f"{gb(out['memory_bytes'])} of {gb(cap)}{fits}"),
            (
                "at the peak",
                f"weights {gb(peak['weight_bytes'])} + KV cache {gb(peak['kv_bytes'])} + other "
                f"activations {gb(peak['other_bytes'])}, in {at}",
            ),
            ("time to first token", f"{human(out['ttft_s'] * 1e3)} ms"),
            ("time per output token", f"{human(out['tpot_s'] * 1e3)} ms"),
            (
                "throughput",
                f"{human(out['tokens_per_s'])} tokens/s, {human(out['pages_per_s'])} "
                f"pages/s, {human(out['pages_per_day'])} pages/day",
            ),
            ("bound per step", ", ".join(f"{k} {v}" for k, v in out["bound"].items())),
        ]
        if "simulated" in out:
            sim = out["simulated"]
            rows.append(
                (
                    "served (simulate)",
                    f"{human(sim['output_tokens_per_s'])} tokens/s, {human(sim['pages_per_day'])} pages/day, "
                    f"TTFT p50 {human(sim['ttft_p50_s'])} s, TPOT p50 {human(sim['tpot_p50_s'] * 1e3)} ms, "
                    f"bound {sim['bound']} ({sim['pages']:,} pages queued at once; "
                    f"host {out['host']['name']}; "
                    + ", ".join(
                        f"{k} {v:,}" for k, v in sim["engine"].items() if k in ("max_num_seqs", "batch")
                    )
                    + ")",
                )
            )
        if "kv_cache" in out:
            lines.append(_kv_header(out["kv_cache"], hw))
            kv = out["kv_cache"]
            short = kv["kv_capacity_tokens"] < kv["max_model_len"]
            status = " (vLLM refuses to start: fewer than max_model_len)" if short else ""
            rows.append(("KV cache (vLLM)", "; ".join(_kv_log(kv)) + status))
        lines += [f"{k:>24}  {v}" for k, v in rows]
    for flag, (metric, unit, scale, _) in QUESTIONS.items():
        value = out.get(f"largest_image_{flag[6:].replace('-', '_')}")
        if value is None:
            continue
        grid = "".join(f", {o} {value[str(o)]}" for o in model.layout.outputs if str(o) in value)
        size = (
            f"any size (cost constant past {value['constant_from'][0]}x{value['constant_from'][1]})"
            if value["constant_from"]
            else f"{_label(value, model.family)} px{grid}"
        )
        lines.append(
            f"{'largest image':>24}  {size} at {s.batch} {value[s.batch]} ({flag}: {metric} "
            f"{human(value['value'] / scale)} {unit} <= {human(value['budget'] / scale)} {unit})"
        )
    if "throughput" in out:
        t = out["throughput"]
        target = t["batch_for_target"]
        lines.append(
            f"{'for ' + human(t['pages_per_day_target']) + ' pages/day':>24}  "
            + (f"batch {target} on one {hw.name}" if target else f"more than one {hw.name} gives")
            + f"; {t['devices']} x {hw.name} at "
            f"batch {t['max_batch']} ({human(t['pages_per_day_at_max_batch'])} pages/day each)"
        )
    return "\n".join(lines)


def _kv_log(kv: dict) -> list[str]:
    """vLLM's two log lines (``kv_cache_utils.py``)."""
    return [
        f"GPU KV cache size: {kv['kv_capacity_tokens']:,} tokens",
        f"Maximum concurrency for {kv['max_model_len']:,} tokens per request: {kv['max_concurrency']:.2f}x",
    ]


def _kv_header(kv: dict, hw) -> str:
    """What vLLM's accounting subtracts, each part in GB (1e9 B)."""
    gb = lambda b: f"{b / 1e9:,.2f} GB"  # noqa: E731
    p = kv["profile"]
    images = ""
    if p["images"]:
        images = f", {p['images']} images {p['image'][0]}x{p['image'][1]} ({kv['image_source']})"
    return (
        f"# vLLM's KV cache (vLLM 0.8 V1 accounting): {kv['gpu_memory_utilization']:g} x "
        f"{gb(kv['total_bytes'])} (driver's total, {hw.memory_source}) - weights {gb(kv['weight_bytes'])} - "
        f"profiling run {gb(kv['profile_activation_bytes'])} ({p['tokens']:,} tokens over {p['sequences']:,} "
        f"sequences{images}) - non-torch {gb(kv['non_torch_bytes'])} - CUDA graphs "
        f"{gb(kv['cuda_graph_bytes'])} = {gb(kv['kv_bytes'])}; {kv['bytes_per_token']:,} B per token, "
        f"blocks of {kv['block_size']}"
    )
