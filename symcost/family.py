"""What a model family declares, and the registry of families.

A family (one package under ``derivations/``) declares its inputs, options, stages and how
to build a :class:`~symcost.model.Model` for chosen options. The engine, the CLI, sweeps,
reports, plots and validation read everything from that declaration.

Families are registered as entry points of the group ``symcost.families`` (``name =
"package:FAMILY"`` in ``pyproject.toml``); adding a family is one package plus that line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from .checks import shown
from .errors import SymcostError
from .inputs import Input

if TYPE_CHECKING:
    from .tree import Node

__all__ = ["Option", "Stage", "Timing", "Serving", "Family", "families", "get_family"]


@dataclass(frozen=True)
class Option:
    """A choice made when a model is loaded (a preset, a vision mode, a runtime ...)."""

    name: str  # keyword of load(), e.g. "vision_mode"
    choices: Mapping[str, str] | range  # value -> what it means (one line); or int range
    default: str | int | None  # None: decided from other options (help says how)
    help: str
    stages: tuple[str, ...] | None = None  # the stages whose numbers it can change (None: all)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value) -> str | int:
        if isinstance(self.choices, range):
            ok = isinstance(value, int) and not isinstance(value, bool) and value in self.choices
            if not ok:
                raise SymcostError(
                    f"{self.name}: {shown(value)} is not an integer in "
                    f"[{self.choices.start}, {self.choices.stop - 1}]"
                )
            return value
        if not isinstance(value, str) or value not in self.choices:
            raise SymcostError(f"{self.name}: {shown(value)} is not one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Timing:
    """A latency made of some sub-trees of a stage: ``sum(time of paths) / per``."""

    name: str  # e.g. "ttft_s"
    paths: tuple[str, ...]  # dotted paths under the stage root
    per: Callable[[Any], Any] | None = None  # divisor from stage values (e.g. N - 1)
    help: str = ""


@dataclass(frozen=True)
class Stage:
    """One thing a model does, as a cost tree built from stage values ``v``."""

    name: str
    summary: str
    inputs: tuple[str, ...]  # names of the inputs the stage reads
    build: Callable[[Any], Node]  # stage values -> tree (closure over the setup)
    weights: tuple[str, ...]  # paths in the weights tree of the modules it runs
    kv_in: Callable[[Any], Any] = lambda v: 0  # cached tokens (all sequences) before the stage
    kv_out: Callable[[Any], Any] = lambda v: 0  # cached tokens (all sequences) after it
    timings: tuple[Timing, ...] = ()


@dataclass(frozen=True)
class Serving:
    """What ``plan`` needs: the stage of one whole request and the inputs that mean
    "requests in a batch" and "tokens generated per request"; and what ``simulate`` needs: the
    stage of one serving-engine step over a mixed batch of ``batch`` sequences, in aggregates
    (tokens run, score pairs, keys read), the stage encoding images (run once per image) and
    where a request's image block sits (``step`` None: the family cannot be simulated)."""

    stage: str
    batch: str
    new_tokens: str
    prompt_tokens: str
    first_token: str = "ttft_s"  # timing names of the request stage
    per_token: str = "tpot_s"
    step: str | None = None  # stage: one forward over a mixed batch, then each sequence's token
    step_tokens: str = ""  # its inputs: tokens run (sum over sequences of new tokens) ...
    score_pairs: str = ""  # ... sum of new tokens x keys attended ...
    attended_keys: str = ""  # ... sum of keys attended (cached + new)
    vision: str | None = None  # stage encoding ``batch`` images (None: text only)
    image_tokens: str = ""  # named quantity: the image block's length in the prompt
    image_offset: int = 0  # prompt tokens before the image block
    max_positions: int | None = None  # the longest sequence the model takes (tokens)
    # the image of vLLM's memory-profiling run: its processor's largest (None: not declared)
    profile_image: tuple[int, int] | None = None


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    inputs: tuple[Input, ...]
    options: tuple[Option, ...]
    stage_names: tuple[str, ...]  # in the order a request runs them
    load: Callable[..., Any]  # load(**options) -> symcost.Model (model.py imports this module)
    image: tuple[str, str] | None = None  # inputs set by CLI --image WxH
    serving: Serving | None = None
    default_stage: str = ""
    validation: str | None = None  # "module:function" measuring reference modules
    measurement: str = ""  # what "measured" means for this family, one line
    compare_option: str | None = None  # the option a sweep plot draws one curve per value of
    # the options the family's own pipeline sets when handed a page (a render step before the
    # processor, say): what `symcost compare` loads
    page_options: dict = field(default_factory=dict)

    def input(self, name: str) -> Input:
        for i in self.inputs:
            if i.name == name:
                return i
        raise SymcostError(f"input: {shown(name)} is not one of {', '.join(self.input_names)}")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise SymcostError(
            f"{name}: not an option of {self.name}; options: {', '.join(o.name for o in self.options)}"
        )


@cache
def _registry() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="symcost.families")}


def families() -> tuple[str, ...]:
    """Names of the registered families."""
    return tuple(sorted(_registry()))


def get_family(name: str) -> Family:
    """The declaration of a registered family."""
    registry = _registry()
    if not isinstance(name, str) or name not in registry:
        raise SymcostError(f"family: {shown(name)} is not one of {', '.join(sorted(registry))}")
    return _import(registry[name])


@cache
def _import(target: str) -> Family:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)
