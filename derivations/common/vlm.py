"""What every OCR family shares above the layers: inputs, serving options, and the stages of a
request (vision -> prefill -> decode steps).

    request = vision + prefill + next token + (N - 1) decode steps
    vision  = per image: the family's views (global, tiles) through its vision tower
    prefill = decoder over P prompt tokens + the image-token block, empty cache
    decode  = decoder over 1 token per sequence with L cached tokens, then the next token
    step    = one serving-engine step: decoder over B sequences of a mixed batch (decode tokens
              and prefill chunks, each with its own cache), in aggregates T, A, K; then the
              next token of every sequence (what ``symcost simulate`` runs step after step)

Stage semantics (stated once):
- ``prefill`` runs S0 = P + image_tokens positions (P counts every non-image token, BOS
  included; the tokenizer is not available offline, so the user supplies P).
- ``request`` generating N tokens = vision + prefill (which yields token 1) + N-1 decode steps;
  step t = 1..N-1 sees S0 + t - 1 cached tokens. The KV cache then holds S0 + N - 1 tokens.
- ``B`` requests: the family's vision stage says how images are batched (per image or all
  views in one call); the decoder runs the whole batch at once (weights read once per forward).
- ``step`` over B sequences, sequence i with s_i new tokens after L_i cached: T = sum s_i,
  A = sum s_i*(L_i + s_i) (attention scores per head), K = sum (L_i + s_i) (keys read). The
  ``decode`` stage is the step with s_i = 1, L_i = L; ``prefill`` the step with s_i = S0,
  L_i = 0 (see ``derivations.common.decoder.Batch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from symcost import Input, Option, Serving, Stage, SymcostError, Timing, seq, sum_over

from .decoder import Batch, DecoderConfig, Execution, decode_step, decoder, next_token, step

__all__ = [
    "INPUTS",
    "W",
    "H",
    "P",
    "L",
    "N",
    "B",
    "w_tiles",
    "h_tiles",
    "n_crops",
    "image_tokens",
    "prefill_tokens",
    "SERVING",
    "serving_for",
    "serving_options",
    "execution",
    "stages",
    "STAGE_NAMES",
    "FAMILY_STAGES",
    "IMAGE_STAGES",
    "HfCode",
]

# The models' positions end at 8192: 128x headroom. Counts stay exact at any size (request FLOPs
# reach ~2**74 at these bounds: the compiled path switches to Python ints where int64 could overflow).
_TOKENS = 1 << 20
INPUTS = (
    Input(
        "width",
        sp.Symbol("W", integer=True, positive=True),
        1,
        65_535,
        None,
        "px",
        "image width (65,535 is the largest side a JPEG can have)",
    ),
    Input("height", sp.Symbol("H", integer=True, positive=True), 1, 65_535, None, "px", "image height"),
    Input(
        "prompt_tokens",
        sp.Symbol("P", integer=True, nonnegative=True),
        0,
        _TOKENS,
        0,
        "tokens",
        "text tokens of the prompt, BOS included, image block excluded",
    ),
    Input(
        "kv_len",
        sp.Symbol("L", integer=True, nonnegative=True),
        0,
        _TOKENS,
        0,
        "tokens",
        "tokens already in the KV cache before a decode step",
    ),
    Input(
        "new_tokens",
        sp.Symbol("N", integer=True, positive=True),
        1,
        _TOKENS,
        1,
        "tokens",
        "tokens generated per request",
    ),
    Input(
        "batch",
        sp.Symbol("B", integer=True, positive=True),
        1,
        1 << 16,
        1,
        "requests",
        "requests (one image each) served together; in a step, the sequences it runs",
    ),
    Input(
        "step_tokens",
        sp.Symbol("T", integer=True, positive=True),
        1,
        _TOKENS,
        None,
        "tokens",
        "tokens a step runs: one per decoding sequence plus the prefill chunks",
    ),
    Input(
        "score_pairs",
        sp.Symbol("A", integer=True, positive=True),
        1,
        1 << 40,
        None,
        "tokens^2",
        "sum over a step's sequences of new tokens x keys attended (cached + new)",
    ),
    Input(
        "attended_keys",
        sp.Symbol("K", integer=True, positive=True),
        1,
        1 << 36,
        None,
        "tokens",
        "sum over a step's sequences of keys attended (cached + new)",
    ),
)
W, H, P, L, N, B, T, A, K = (i.symbol for i in INPUTS)

# Layout outputs and named quantities: formulas read in these
w_tiles = sp.Symbol("w_tiles", integer=True, positive=True)  # tiles across the width
h_tiles = sp.Symbol("h_tiles", integer=True, positive=True)  # tiles down the height
n_crops = sp.Symbol("n_crops", integer=True, nonnegative=True)  # tiles encoded
image_tokens = sp.Symbol("image_tokens", integer=True, positive=True)  # image block length
prefill_tokens = sp.Symbol("prefill_tokens", integer=True, positive=True)  # S0 = P + image block

STAGE_NAMES = ("vision", "prefill", "decode", "request")  # a request's stages, in order
FAMILY_STAGES = STAGE_NAMES + ("step",)  # and the serving engine's step
IMAGE_STAGES = ("vision", "prefill", "request")  # stages whose numbers the image options change
DECODER_STAGES = ("prefill", "decode", "request", "step")  # stages that run the decoder


def serving_for(max_positions: int | None, profile_image: tuple[int, int] | None = None) -> Serving:
    """What ``plan`` and ``simulate`` read. The vendors' prompts put BOS before the image block
    (``<image>`` opens the prompt, the tokenizer adds BOS), so the image starts at position 1.
    ``profile_image``: the size vLLM's processor gives its dummy images (its largest)."""
    return Serving(
        stage="request",
        batch="batch",
        new_tokens="new_tokens",
        prompt_tokens="prompt_tokens",
        step="step",
        step_tokens="step_tokens",
        score_pairs="score_pairs",
        attended_keys="attended_keys",
        vision="vision",
        image_tokens="image_tokens",
        image_offset=1,
        max_positions=max_positions,
        profile_image=profile_image,
    )


SERVING = serving_for(None)  # a family whose longest sequence is not declared: simulate asks for it


RUNTIMES = {
    "hf": "the vendor's Hugging Face code: eager ops, DynamicCache by concatenation, one kernel per op",
    "vllm": "vLLM: flash attention, paged KV cache, fused kernels, last-position logits, CUDA-graph decode",
}


def serving_options(attention_default: str, logits_default: str, moe: bool = True) -> tuple[Option, ...]:
    """The runtime-dependent options, with the family's defaults under ``hf``; ``experts`` only
    for a decoder with MoE layers (a dense decoder reads every weight)."""
    options = (
        Option("runtime", RUNTIMES, "hf", "how the model is served"),
        Option(
            "attention",
            {
                "eager": "the HF eager op chain (scores in memory)",
                "sdpa": "torch SDPA, one fused kernel (transformers' default)",
                "flash": "flash attention (HF flash_attention_2, vLLM)",
            },
            None,
            f"decoder attention kernel; default {attention_default} under hf, flash "
            "under vllm (which has only flash)",
            DECODER_STAGES,
        ),
        Option(
            "logits",
            {
                "all": "lm_head on every prefill position (a plain forward)",
                "last": "the last position only (generate() with logits_to_keep=1, vLLM)",
            },
            None,
            f"which prefill positions get logits; default {logits_default} under hf, "
            "last under vllm (which has only last)",
            ("prefill", "request", "step"),
        ),
        Option(
            "experts",
            {
                "expected": "expected distinct experts under uniform routing, 64*(1-(58/64)^tokens)",
                "worst": "every routed row hits a new expert, min(64, 6*tokens)",
            },
            "expected",
            "experts whose weights a MoE layer reads (traffic and time only; FLOPs are the same)",
            DECODER_STAGES,
        ),
    )
    return options if moe else options[:-1]


@dataclass(frozen=True)
class HfCode:
    """What a family's Hugging Face code does where runtimes differ."""

    attention: str  # default attention implementation
    logits: str  # default logits (plain forward: all; generate(): last)
    logits_upcast: bool  # the forward returns logits.float()
    clone_logits: bool  # generate() clones all the logits before taking the last row
    moe_loop: bool  # routed experts one by one in Python


def execution(
    runtime: str, attention: str | None, logits: str | None, experts: str, hf: HfCode
) -> tuple[Execution, dict]:
    """The decoder execution for the chosen options, and the options resolved.

    Why each: the HF code grows the cache by ``torch.cat`` (DynamicCache) and launches every op
    from Python (eager norms and RoPE); the family's HF code decides its attention, logits and
    MoE loop. vLLM uses flash attention, a paged KV cache, fused norms/RoPE/MoE kernels,
    samples from the last position only and replays decode steps as CUDA graphs. Uniform
    routing is the default for experts touched: it is what a batch of unrelated pages does on
    average and an upper bound for skewed routing at the same token count, while the worst case
    overstates decode traffic at batch 2-32 by up to 1.4x.
    """
    vllm = runtime == "vllm"
    if vllm and attention not in (None, "flash"):
        raise SymcostError(f"attention: {attention!r} does not apply to runtime vllm (flash only)")
    if vllm and logits == "all":
        raise SymcostError("logits: 'all' does not apply to runtime vllm (last position only)")
    attention = attention or ("flash" if vllm else hf.attention)
    logits = logits or ("last" if vllm else hf.logits)
    ex = Execution(
        attention=attention,
        concat_cache=not vllm,
        fused_norms=vllm,
        moe_loop=hf.moe_loop and not vllm,
        logits_all=logits == "all",
        logits_upcast=hf.logits_upcast and not vllm,
        clone_logits=hf.clone_logits and not vllm,
        expected_experts=experts == "expected",
        graph_decode=vllm,
    )
    return ex, {"runtime": runtime, "attention": attention, "logits": logits, "experts": experts}


def stages(dec: DecoderConfig, ex: Execution, vision: Callable, summary: str) -> dict[str, Stage]:
    """The four stages, from the family's vision stage ``vision(v) -> Node`` (root "vision")."""
    t = sp.Symbol("t", integer=True, positive=True)  # decode step index

    def prefill(v, name="prefill"):
        return decoder(dec, ex, v.batch, v.prefill_tokens, 0, name=name)

    def decode(v):
        return decode_step(dec, ex, v.batch, v.kv_len, name="decode")

    def engine_step(v):  # launched eagerly: simulate replays decode-only steps as graphs
        cached = v.attended_keys - v.step_tokens
        return step(dec, ex, Batch(v.batch, v.step_tokens, v.score_pairs, v.attended_keys, cached))

    def request(v):
        # N = 1 sums over no steps: every count is 0
        logit_rows = v.batch * (v.prefill_tokens if ex.logits_all else 1)
        return seq(
            "request",
            vision(v),
            prefill(v),
            next_token(dec, ex, v.batch, logit_rows),
            sum_over(
                "decode",
                t,
                1,
                v.new_tokens - 1,
                lambda k: decode_step(dec, ex, v.batch, v.prefill_tokens + k - 1),
            ),
        )

    image = ("width", "height")
    return {
        "vision": Stage("vision", summary, image + ("batch",), vision, ("vision",)),
        "prefill": Stage(
            "prefill",
            "decoder over prompt + image tokens, empty cache",
            image + ("prompt_tokens", "batch"),
            prefill,
            ("decoder",),
            kv_out=lambda v: v.batch * v.prefill_tokens,
        ),
        "decode": Stage(
            "decode",
            "one decoder step per sequence with L cached tokens",
            ("kv_len", "batch"),
            decode,
            ("decoder",),
            kv_in=lambda v: v.batch * v.kv_len,
            kv_out=lambda v: v.batch * (v.kv_len + 1),
        ),
        "request": Stage(
            "request",
            "vision + prefill + N-1 decode steps",
            image + ("prompt_tokens", "new_tokens", "batch"),
            request,
            ("vision", "decoder"),
            kv_out=lambda v: v.batch * (v.prefill_tokens + v.new_tokens - 1),
            timings=(
                Timing(
                    "ttft_s",
                    ("vision", "prefill", "next_token"),
                    help="time to first token: vision + prefill",
                ),
                Timing(
                    "tpot_s",
                    ("decode",),
                    per=lambda v: v.new_tokens - 1,
                    help="time per output token: mean decode step (0 when N = 1)",
                ),
            ),
        ),
        "step": Stage(
            "step",
            "one serving-engine step over B sequences (decode tokens and prefill chunks, "
            "T tokens, A score pairs, K keys read)",
            ("batch", "step_tokens", "score_pairs", "attended_keys"),
            engine_step,
            ("decoder",),
            kv_in=lambda v: v.attended_keys - v.step_tokens,
            kv_out=lambda v: v.attended_keys,
        ),
    }
