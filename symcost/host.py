"""The host's share of an engine step: CPU seconds from the step's shape, overlapped with the GPU
or serial (``--host PROFILE``), and what ``symcost calibrate host`` measures on this machine.

A step running ``seqs`` sequences, ``tokens`` tokens and sampling ``sampled`` of them costs the
host ``per_step_s + per_sequence_s x seqs + per_token_s x tokens + per_sampled_s x sampled``
seconds (scheduling, input preparation, sampling and detokenisation, logits processors).
``overlaps``: the GPU runs meanwhile (a step takes the longer of the two, as vLLM's async
scheduling and SGLang's overlap scheduler do) or waits (the sum, as vLLM 0.8's V0 engine, which
runs per-request ``logits_processors`` in its sampler between forwards: published vLLM scripts
of document models use it, ``VLLM_USE_V1=0``).

Every figure carries its source; a profile file (JSON) is validated key by key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

from .checks import check_positive, shown
from .errors import SymcostError
from .files import read_json_keys

__all__ = ["HostProfile", "HOSTS", "get_host", "load_host", "no_repeat_ngram_banned", "calibrate_host"]

_SECONDS = (0.0, 1.0)  # a host cost per step, sequence or token above 1 s is a typo
_FILE_MAX_BYTES = 1 << 16


@dataclass(frozen=True)
class HostProfile:
    name: str
    per_step_s: float  # scheduling and input preparation, once per step
    per_sequence_s: float  # per running sequence per step (its metadata, its sampled token)
    per_token_s: float  # per token the step runs (input ids, positions, slot mapping)
    per_sampled_s: float  # per sampled token: logits processors (e.g. no-repeat n-gram)
    overlaps: bool  # the GPU runs while the host works (async scheduling)
    sources: tuple[tuple[str, str], ...] = ()  # figure -> where it comes from

    def seconds(self, seqs: int, tokens: int, sampled: int) -> float:
        """Host seconds of one step of this shape (the simulator's ``HostModel``)."""
        return (
            self.per_step_s
            + self.per_sequence_s * seqs
            + self.per_token_s * tokens
            + self.per_sampled_s * sampled
        )

    @property
    def free(self) -> bool:
        return not (self.per_step_s or self.per_sequence_s or self.per_token_s or self.per_sampled_s)

    def describe(self) -> str:
        if self.free:
            return f"host {self.name}: no host time per step"
        us = lambda s: f"{s * 1e6:,.2f} us"  # noqa: E731
        return (
            f"host {self.name}: {us(self.per_step_s)} per step + {us(self.per_sequence_s)} per sequence + "
            f"{us(self.per_token_s)} per token + {us(self.per_sampled_s)} per sampled token, "
            + (
                "overlapped with the GPU (a step takes the longer)"
                if self.overlaps
                else "serial (added to each step)"
            )
        )

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return out | {"sources": dict(self.sources)}


HOSTS = {
    "none": HostProfile("none", 0.0, 0.0, 0.0, 0.0, True, (("all", "no host time (the default)"),)),
}

_KEYS = {
    "name": "a non-empty string",
    "per_step_s": "s",
    "per_sequence_s": "s",
    "per_token_s": "s",
    "per_sampled_s": "s",
    "overlaps": "true or false",
    "sources": "{figure: source}",
}


def load_host(path: str) -> HostProfile:
    """A host profile from a JSON file (as ``symcost calibrate host`` writes it), key by key."""
    data = read_json_keys(path, "host", _FILE_MAX_BYTES, _KEYS)
    name = data["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise SymcostError("host file: name must be a non-empty string of at most 100 characters")
    if not isinstance(data["overlaps"], bool):
        raise SymcostError(f"host file: overlaps must be true or false, not {shown(data['overlaps'])}")
    sources = data["sources"]
    if not isinstance(sources, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 500 for k, v in sources.items()
    ):
        raise SymcostError("host file: sources must map figure names to strings")
    costs = [
        check_positive(f"host file: {k}", data[k], "s", *_SECONDS)
        for k in ("per_step_s", "per_sequence_s", "per_token_s", "per_sampled_s")
    ]
    step, seq, token, sampled = costs
    return HostProfile(name, step, seq, token, sampled, data["overlaps"], tuple(sources.items()))


def get_host(name_or_path) -> HostProfile:
    """A preset by name or a JSON file by path (anything ending in ``.json``)."""
    if isinstance(name_or_path, str) and name_or_path.endswith(".json"):
        return load_host(name_or_path)
    if not isinstance(name_or_path, str) or name_or_path not in HOSTS:
        raise SymcostError(f"host: {shown(name_or_path)} is not one of {', '.join(HOSTS)} or a .json file")
    return HOSTS[name_or_path]


# --------------------------------------------------------------------------- calibration


def no_repeat_ngram_banned(
    tokens: list[int], ngram: int, window: int, allowed: frozenset = frozenset()
) -> set:
    """The tokens a no-repeat n-gram processor bans next, as its authors describe it: among the
    last ``window`` tokens, every n-gram whose first ``ngram - 1`` tokens equal the last
    ``ngram - 1`` generated bans its last token (``allowed`` tokens are never banned)."""
    if len(tokens) < ngram:
        return set()
    prefix = tokens[len(tokens) - ngram + 1 :]
    start = max(0, len(tokens) - window)
    banned = {
        tokens[i + ngram - 1]
        for i in range(start, len(tokens) - ngram + 1)
        if tokens[i : i + ngram - 1] == prefix
    }
    return banned - allowed


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate host`` measures: the processor's n-gram and window, and repeats."""

    ngram: int = 20  # published NoRepeatNGramLogitsProcessor(ngram_size=20, window_size=50)
    window: int = 50
    vocab: int = 1 << 17  # the logits row it writes -inf into (its cost is the scan, not the row)
    sequence_tokens: int = 1_000  # generated tokens per sequence when it runs
    repeats: int = 2_000


def calibrate_host(cal: Calibration = Calibration()) -> HostProfile:
    """Times, on this CPU, the no-repeat n-gram logits processor on one sequence (the median of
    ``repeats`` calls, each ending in the write of its bans into a float32 logits row). vLLM is
    not imported here: its per-step bookkeeping is not measured (0, said in ``sources``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    # a page's tokens with repeats (tables, lists): draws from a small alphabet so n-grams recur
    tokens = rng.integers(0, 64, cal.sequence_tokens).tolist()
    logits = np.zeros(cal.vocab, dtype=np.float32)
    times = []
    for _ in range(cal.repeats):
        t0 = time.perf_counter()
        banned = no_repeat_ngram_banned(tokens, cal.ngram, cal.window)
        if banned:
            logits[list(banned)] = -np.inf
        times.append(time.perf_counter() - t0)
    per_sampled = float(np.median(times))
    try:
        import vllm  # noqa: F401

        bookkeeping = "vLLM is importable but its scheduler is not timed here yet: 0"
    except ImportError:
        bookkeeping = "not measured: vLLM is not importable on this machine; 0"
    return HostProfile(
        "calibrated",
        0.0,
        0.0,
        0.0,
        per_sampled,
        False,
        (
            (
                "per_sampled_s",
                f"measured here: no-repeat n-gram processor, n-gram {cal.ngram}, window {cal.window}, "
                f"{cal.sequence_tokens} tokens generated, median of {cal.repeats} calls",
            ),
            ("per_step_s", bookkeeping),
            ("per_sequence_s", bookkeeping),
            ("per_token_s", bookkeeping),
            ("overlaps", "false: vLLM 0.8 V0 runs per-request logits processors in its sampler, serially"),
        ),
    )
