"""symcost simulate FAMILY: serve a workload as an engine does, step by step."""

from __future__ import annotations

import json
import sys

from ..args import (
    add_hardware,
    add_model_options,
    add_precision,
    hardware_settings,
    int_in,
    load_model,
    single,
)
from ..errors import SymcostError

HELP = (
    "serve a workload as an engine does (continuous or static batching), step by step: "
    "pages/day, latency percentiles, what bounds it, cost per page"
)

_ENGINE_FLAGS = (
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "gpu_memory_utilization",
    "max_model_len",
    "num_gpu_blocks_override",
    "batch",
)


def _number(name: str, lo: float, hi: float):
    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 40 else float("nan")
        except ValueError:
            value = float("nan")
        if not lo < value < hi:  # also refuses NaN
            raise SymcostError(f"{name}: {text[:40]!r} is not a number in ({lo:g}, {hi:g})")
        return value

    return parse


def _tokens_budget(text: str) -> int | str:
    if text == "unlimited":
        return text
    return int_in(1, 1 << 24)(text)


def add_vllm_memory_flags(e) -> None:
    """The engine flags vLLM's KV-cache accounting reads (plan and simulate share them)."""
    e.add_argument(
        "--max-num-batched-tokens",
        type=_tokens_budget,
        default=None,
        help="tokens per step, prefills cut into chunks within it (vllm); integer in "
        "[1, 16777216] or 'unlimited'. Default: vLLM's: offline 8192 (16384 on devices of at "
        "least 70 GiB that are not A100s), with --rate or --concurrency 2048 (8192)",
    )
    e.add_argument(
        "--gpu-memory-utilization",
        type=_number("--gpu-memory-utilization", 0, 1.000001),
        default=None,
        help="share of device memory for weights, activations and the KV cache (vllm); a "
        "number in (0, 1]. Default: 0.9 (vLLM's)",
    )
    e.add_argument(
        "--max-model-len",
        type=int_in(1, 1 << 24),
        default=None,
        help="longest sequence, prompt + output tokens (vllm); a page reaching it stops; "
        "integer in [1, 16777216]. Default: the model's max_position_embeddings",
    )


def add_host_flag(p) -> None:
    """--host: the CPU's share of each engine step (plan and simulate share it)."""
    from ..host import HOSTS

    p.add_argument(
        "--host",
        default="none",
        metavar="PROFILE",
        help=f"host profile: CPU seconds per step, sequence, token and sampled token, serial or "
        f"overlapped with the GPU; one of {', '.join(HOSTS)} or a .json file written by `symcost "
        "calibrate host`. Default: none (no host time)",
    )


def add_arguments(p, family):
    from ..simulation import PERCENTILES

    add_model_options(p, family)
    s = family.serving
    tokens = family.input(s.new_tokens) if s else None
    g = p.add_argument_group("workload (one request per page)")
    g.add_argument(
        "--image",
        action="append",
        default=None,
        metavar="WxH",
        help="page image size in px; repeat for a mix in equal parts (pages cycle through them). "
        "Default: none; required unless --text-only or --workload",
    )
    g.add_argument(
        "--text-only",
        action="store_true",
        help="requests without an image (prompt tokens only). Default: every page has an --image",
    )
    g.add_argument(
        "--prompt-tokens",
        type=int_in(0, 1 << 20),
        default=None,
        help="text tokens of each prompt, BOS included, image block excluded; integer in "
        "[0, 1048576]. Default: 0 (a text-only request needs at least 1)",
    )
    g.add_argument(
        "--new-tokens",
        type=int_in(1, tokens.hi if tokens else 1 << 20),
        default=None,
        help="tokens generated per page; integer in [1, 1048576]. Default: none; give it or "
        "--new-tokens-dist (unless --workload)",
    )
    g.add_argument(
        "--new-tokens-dist",
        default=None,
        metavar="DIST",
        help="tokens generated per page drawn from a distribution, seeded by --seed: "
        "lognormal:mean=M,sd=S (the tokens' mean and standard deviation, rounded, at least 1) "
        "or uniform:A:B (integers A..B). Default: none",
    )
    g.add_argument(
        "--pages",
        type=int_in(1, 10_000_000),
        default=None,
        help="pages in the workload; integer in [1, 10000000]. Default: 1000",
    )
    g.add_argument(
        "--workload",
        default=None,
        metavar="FILE",
        help="a corpus instead: CSV or Parquet (.parquet) with columns width,height,"
        "prompt_tokens,new_tokens[,arrival_s] (width = height = 0: text only). Default: none",
    )
    g.add_argument(
        "--seed",
        type=int_in(0, 2**62),
        default=None,
        help="seed of --new-tokens-dist and --rate draws; integer in [0, 2^62]. Default: 0",
    )
    a = p.add_argument_group("arrivals (default: offline, every page queued at t = 0)")
    a.add_argument(
        "--rate",
        type=_number("--rate", 0, 1e9),
        default=None,
        help="Poisson arrivals at this many pages/s (a positive number). Default: offline",
    )
    a.add_argument(
        "--concurrency",
        type=int_in(1, 1 << 20),
        default=None,
        help="closed loop: this many clients, each sending its next page when its last "
        "returns; integer in [1, 1048576]. Default: offline",
    )
    e = p.add_argument_group(
        "engine limits (--runtime vllm: vLLM's, defaults as vLLM sets them; --runtime hf: --batch)"
    )
    e.add_argument(
        "--max-num-seqs",
        type=int_in(1, 1 << 16),
        default=None,
        help="requests running at once (vllm); integer in [1, 65536]. Default: vLLM's, 256, or "
        "1024 on devices of at least 70 GiB that are not A100s",
    )
    add_vllm_memory_flags(e)
    e.add_argument(
        "--block-size",
        type=int_in(1, 4096),
        default=None,
        help="tokens per KV-cache block (vllm); integer in [1, 4096]. Default: 16 (vLLM's)",
    )
    e.add_argument(
        "--num-gpu-blocks-override",
        type=int_in(1, 1 << 30),
        default=None,
        help="KV-cache blocks instead of the memory accounting (vllm, as vLLM's flag of that "
        "name); integer in [1, 1073741824]. Default: device memory x --gpu-memory-utilization "
        "minus weights and the profiling step's activations, over the KV bytes of a block",
    )
    e.add_argument(
        "--batch",
        type=int_in(1, 1 << 16),
        default=None,
        help="requests per generate() call (hf static batching); integer in [1, 65536]. "
        "Default: the largest that fits (as plan finds it)",
    )
    add_precision(p)
    add_hardware(p, required=True)
    add_host_flag(p)
    o = p.add_argument_group("output")
    o.add_argument(
        "--devices",
        type=int_in(1, 1 << 16),
        default=1,
        help="data-parallel replicas, pages dealt round-robin; integer in [1, 65536]. Default: 1",
    )
    o.add_argument(
        "--gpu-hour-price",
        type=_number("--gpu-hour-price", 0, 1e9),
        default=None,
        help="price of one device-hour (any currency) for the cost per million pages; a "
        "positive number. Default: none",
    )
    o.add_argument(
        "--json",
        action="store_true",
        help="one JSON object with every figure (latencies: p"
        + ", p".join(map(str, PERCENTILES))
        + " and mean, in s). Default: labelled lines",
    )
    o.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="a .png or .svg: timeline (running batch, KV use, tokens/s) and latency CDFs "
        "(needs matplotlib). Default: none",
    )
    o.add_argument("--force", action="store_true", help="replace an existing --plot file. Default: refuse")


def _workload(args, family):
    from ..args import parse_image
    from ..simulation import read_workload, workload

    if args.workload:
        for flag in ("image", "text_only", "prompt_tokens", "new_tokens", "new_tokens_dist", "pages"):
            if getattr(args, flag):
                raise SymcostError(
                    f"--{flag.replace('_', '-')}: does not apply with --workload (the file lists the pages)"
                )
        return read_workload(args.workload)
    if args.text_only and args.image:
        raise SymcostError("--image: does not apply with --text-only")
    if not args.text_only and not args.image:
        raise SymcostError("--image: give at least one page size (repeat for a mix), or --text-only")
    if args.image and not family.image:
        raise SymcostError(f"--image: {family.name} takes no images")
    if (args.new_tokens is None) == (args.new_tokens_dist is None):
        raise SymcostError("--new-tokens: give --new-tokens or --new-tokens-dist (one of them)")
    images = [parse_image(t, *(family.input(n) for n in family.image)) for t in args.image or []]
    prompt = args.prompt_tokens if args.prompt_tokens is not None else 0
    return workload(
        images,
        args.pages or 1000,
        prompt,
        args.new_tokens,
        args.new_tokens_dist,
        args.seed or 0,
    )


def _progress():
    """A progress line on stderr for long runs at a terminal (percent of pages finished)."""
    if not (sys.stderr and sys.stderr.isatty()):
        return None
    shown = [-1]

    def tick(done: int, total: int) -> None:
        pct = 100 * done // total
        if total >= 10_000 and pct != shown[0]:
            shown[0] = pct
            end = "\n" if done == total else ""
            print(f"\rsimulate: {pct}% ({done:,}/{total:,} pages)", end=end, file=sys.stderr, flush=True)

    return tick


def run(args, family) -> int:
    from ..files import check_target
    from ..hardware import get_hardware
    from ..host import get_host
    from ..simulation import Arrivals, engine_limits, simulate

    if family.serving is None or family.serving.step is None:
        raise SymcostError(f"simulate: {family.name} declares no engine step")
    if args.plot:
        from ..plot import PLOT_FORMATS

        check_target(args.plot, force=args.force, param="--plot", extensions=PLOT_FORMATS)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SymcostError("--plot: needs matplotlib (pip install 'symcost[plot]')") from None
    elif args.force:
        raise SymcostError("--force: applies only with --plot")
    model = load_model(family, single(args, family))
    hw = get_hardware(args.hardware)
    effs = hardware_settings(args)
    work = _workload(args, family)
    if args.rate is not None and args.concurrency is not None:
        raise SymcostError("--concurrency: give --rate or --concurrency, not both")
    if work.arrival_s is not None and (args.rate is not None or args.concurrency is not None):
        flag = "--rate" if args.rate is not None else "--concurrency"
        raise SymcostError(f"{flag}: the --workload file gives arrival times (arrival_s)")
    if args.seed is not None and args.rate is None and not args.new_tokens_dist:
        raise SymcostError("--seed: applies only with --new-tokens-dist or --rate (nothing else is drawn)")
    if args.rate is not None:
        arrivals = Arrivals("rate", args.rate)
    elif args.concurrency is not None:
        arrivals = Arrivals("concurrency", args.concurrency)
    else:
        arrivals = Arrivals("file" if work.arrival_s is not None else "offline")
    engine = engine_limits(model, hw, arrivals, **{k: getattr(args, k) for k in _ENGINE_FLAGS})
    host = get_host(args.host)
    out = simulate(
        model,
        hw,
        work,
        arrivals,
        engine,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        devices=args.devices,
        gpu_hour_price=args.gpu_hour_price,
        seed=args.seed or 0,
        progress=_progress(),
        timeline=bool(args.plot),
        host=None if host.free else host,
        **effs,
    )
    out["host"] = host.as_dict()
    if args.plot:
        from ..plot import draw_simulation

        draw_simulation(out, args.plot, force=args.force)
    out.pop("timeline", None)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(_text(model, hw, out, args, work))
    return 0


def _text(model, hw, out: dict, args, work) -> str:
    """Labelled lines, every figure with its unit; the header says what they assume."""
    from ..dtypes import precision
    from ..report import human, settings_lines, time_line

    prec = precision(args.dtype, args.kv_dtype)
    lines = settings_lines(model, None, None, prec)
    lines.append(time_line(model, hw, prec, out["compute_efficiency"], out["bandwidth_efficiency"]))
    eng = ", ".join(f"{k} {_fmt(v)} ({out['engine_sources'][k]})" for k, v in out["engine"].items())
    scheduler = (
        "vLLM V1 continuous batching with chunked prefill; decode-only steps replay CUDA graphs"
        if model.runtime.name == "vllm"
        else "static batching: generate() on a batch padded to its longest prompt and output"
    )
    lines.append(f"# engine: {scheduler}; {eng}")
    lines.append(f"# workload: {_describe(work)}; arrivals {out['arrivals_text']}")
    lines.append(
        f"# {out['devices']} x {hw.name} (pages dealt round-robin); {_host_text(out['host'])}; "
        "latencies: percentiles over pages (ITL: over every token gap)"
    )
    pct = lambda d: ", ".join(f"{k} {_ms(v)}" for k, v in d.items())  # noqa: E731
    share = lambda d: ", ".join(f"{k} {v * 100:.1f} %" for k, v in d.items())  # noqa: E731
    tokens_per_page = out["output_tokens"] / out["pages"]
    b = out["bound_s"]
    rows = [
        ("pages", f"{out['pages']:,} in {human(out['makespan_s'])} s (makespan)"),
        (
            "throughput",
            f"{human(out['pages_per_s'])} pages/s, {human(out['pages_per_day'])} pages/day, "
            f"{human(out['output_tokens_per_s'])} output tokens/s "
            f"(= pages/s x {human(tokens_per_page)} tokens per page)",
        ),
        ("time to first token", pct(out["ttft_s"])),
        ("time per output token", pct(out["tpot_s"])),
        ("inter-token latency", pct(out["itl_s"])),
        ("end-to-end latency", pct(out["e2e_s"])),
        ("running batch", f"mean {human(out['mean_batch'])}, peak {out['peak_batch']:,} sequences"),
        (
            "KV cache",
            f"peak {out['kv_peak_tokens']:,} tokens ({out['kv_peak_bytes'] / 1e9:,.2f} GB)"
            + (
                f" of {out['kv_capacity_tokens']:,} tokens"
                if out["kv_capacity_tokens"] is not None
                else " (padded batch, no paging)"
            ),
        ),
        ("preemptions", f"{out['preemptions']:,} (recomputed)"),
        ("time share", share(out["time_shares"])),
        (
            "bound",
            f"{out['bound']} (op time bound by compute {human(b['compute'])} s, memory "
            f"{human(b['memory'])} s, launches {human(b['launch'])} s; steps short of KV "
            f"{human(b['kv_capacity'])} s; no page waiting with a slot free {human(b['arrivals'])} s)",
        ),
        (
            "ceiling",
            f"{human(out['ceiling_tokens_per_s'])} output tokens/s (every slot decoding at the "
            "shortest context: no schedule beats it)",
        ),
        ("GPU-hours", f"{human(out['gpu_hours'])} h"),
    ]
    if out["cost_per_million_pages"] is not None:
        rows.append(
            (
                "cost",
                f"{human(out['cost_per_million_pages'])} per million pages at "
                f"{human(out['gpu_hour_price'])} per device-hour",
            )
        )
    if out["length_capped"]:
        rows.append(("stopped at max_model_len", f"{out['length_capped']:,} pages"))
    return "\n".join(lines + [f"{k:>24}  {v}" for k, v in rows])


def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ms(seconds: float) -> str:
    from ..report import human

    return f"{human(seconds * 1e3)} ms" if seconds < 1 else f"{human(seconds)} s"


def _describe(work) -> str:
    import numpy as np

    images = np.unique(np.stack([work.width, work.height], axis=1), axis=0).tolist()
    text = ", ".join("text only" if w == 0 else f"{w}x{h}" for w, h in images[:4])
    text += f" and {len(images) - 4:,} more sizes" if len(images) > 4 else ""

    def spread(x) -> str:
        if (x == x[0]).all():
            return f"{int(x[0]):,}"
        return f"{int(x.min()):,} to {int(x.max()):,} (mean {x.mean():,.1f})"

    return (
        f"{len(work):,} pages, images {text}, prompt {spread(work.prompt_tokens)} tokens, "
        f"new tokens {spread(work.new_tokens)}"
    )


def _host_text(host: dict) -> str:
    from ..host import HostProfile

    return HostProfile(**(host | {"sources": tuple(host["sources"].items())})).describe()
