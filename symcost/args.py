"""Command-line arguments built from a family's declaration: every flag says its choices,
its default and what it means; values are parsed by exact patterns, never evaluated."""

from __future__ import annotations

import argparse
import math
import re

from .conventions import CONVENTIONS
from .dtypes import DTYPE_BYTES
from .errors import SymcostError
from .family import Family
from .hardware import HARDWARE
from .inputs import Input

__all__ = [
    "Parser",
    "choice",
    "int_in",
    "real_in",
    "fraction",
    "NUMBERS",
    "parse_image",
    "add_model_options",
    "add_inputs",
    "add_precision",
    "add_convention",
    "add_hardware",
    "add_stage",
    "hardware_settings",
    "load_model",
    "given_inputs",
    "check_stage_reads",
    "single",
]

# One number syntax for every flag: ASCII digits only (no sign, no "_" separators, no other
# scripts' digits); an integer is digits, a real number digits with an optional fraction and
# exponent (1000, 0.5, 1e12). Leading zeros are matched apart and never converted: int() of a
# string over 4,300 digits raises; the significant digits are bounded, so no huge number is
# built or echoed.
NUMBERS = (
    "numbers: ASCII digits only, no sign and no '_' (integers: 1000; reals: 1000, 0.5, 1e12); "
    "a flag given twice and an abbreviated flag are errors"
)
_DIGITS = re.compile(r"0*([0-9]{1,18})")
_REAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_IMAGE = re.compile(r"0*([0-9]{1,5})[xX]0*([0-9]{1,5})")


class _Once(argparse.Action):
    """A single-value flag: given twice is an error, not "the last one wins"."""

    def __init__(self, option_strings, dest, nargs=None, const=None, **kw):
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given", set())
        if self.dest in seen:
            raise argparse.ArgumentError(self, "given twice; give it once")
        seen.add(self.dest)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


class _OnceTrue(_Once):
    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(
            option_strings, dest, nargs=0, const=True, default=default, required=required, help=help
        )


class Parser(argparse.ArgumentParser):
    """argparse with one rule for every flag: no abbreviations, a single-value flag once."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **{**kw, "allow_abbrev": False})
        self.register("action", None, _Once)
        self.register("action", "store", _Once)
        self.register("action", "store_true", _OnceTrue)

    def parse_args(self, *args, **kw):
        namespace = super().parse_args(*args, **kw)
        namespace.__dict__.pop("_given", None)
        return namespace

    def error(self, message):  # one line naming the flag, exit 2 (not argparse's usage + exit)
        raise SymcostError(message.removeprefix("argument "))


def _echo(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def choice(allowed):
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is not one of {', '.join(allowed)}")
        return text

    return parse


def int_in(lo: int, hi: int):
    def parse(text: str) -> int:
        m = _DIGITS.fullmatch(text)
        if not m or not lo <= int(m.group(1)) <= hi:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is not an integer in [{lo}, {hi}]")
        return int(m.group(1))

    return parse


def real_in(lo: float, hi: float, unit: str = ""):
    """A real number in ``[lo, hi]`` (``unit``: what it counts, for the message)."""
    of = f" of {unit}" if unit else ""

    def parse(text: str) -> float:
        value = float(text) if _REAL.fullmatch(text) else math.nan
        if not lo <= value <= hi:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{_echo(text)} is not a number{of} in [{lo:g}, {hi:g}]")
        return value

    return parse


def fraction(text: str) -> float:
    from .checks import MIN_FRACTION

    return real_in(MIN_FRACTION, 1)(text)


def parse_image(text: str, width: Input, height: Input) -> tuple[int, int]:
    m = _IMAGE.fullmatch(text)
    w, h = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not (m and width.lo <= w <= width.hi and height.lo <= h <= height.hi):
        raise SymcostError(
            f"--image: {_echo(text)} is not WxH with integers in "
            f"[{width.lo}, {width.hi}] x [{height.lo}, {height.hi}]"
        )
    return w, h


def _choices_help(option) -> str:
    if isinstance(option.choices, range):
        return f"integer in [{option.choices.start}, {option.choices.stop - 1}]"
    return "; ".join(f"{k}: {v}" for k, v in option.choices.items())


def add_model_options(p: argparse.ArgumentParser, family: Family, repeatable: bool = False):
    """The family's load() options: one flag each (repeatable to compare side by side)."""
    g = p.add_argument_group(f"{family.name} options")
    for o in family.options:
        kind = (
            int_in(o.choices.start, o.choices.stop - 1)
            if isinstance(o.choices, range)
            else choice(tuple(o.choices))
        )
        default = "decided by other options (see above)" if o.default is None else o.default
        g.add_argument(
            o.flag,
            dest=o.name,
            type=kind,
            default=None,
            action="append" if repeatable else "store",
            help=f"{o.help}. Choices: {_choices_help(o)}. Default: {default}"
            + (". Repeat to compare side by side" if repeatable else ""),
        )


def add_stage(p: argparse.ArgumentParser, family: Family, stages=None):
    stages = stages or family.stage_names
    model = _default_model(family)
    p.add_argument(
        "--stage",
        type=choice(stages),
        default=None,
        help="what to cost. Choices: "
        + "; ".join(f"{s}: {model.stage(s).summary}" for s in stages)
        + f". Default: {family.default_stage}",
    )


def add_inputs(p: argparse.ArgumentParser, family: Family, image: bool = True):
    """One flag per input (the image as --image WxH, repeatable)."""
    g = p.add_argument_group("inputs (an input the stage does not read is an error)")
    if image and family.image:
        w, h = (family.input(n) for n in family.image)
        readers = ", ".join(
            s for s in family.stage_names if set(family.image) <= set(_stage_inputs(family, s))
        )
        g.add_argument(
            "--image",
            action="append",
            default=None,
            metavar="WxH",
            help=f"image size in px, W in [{w.lo}, {w.hi}], H in [{h.lo}, {h.hi}]; "
            f"repeatable. Default: none, required by the stages that read it: "
            f"{readers}",
        )
    for i in family.inputs:
        if family.image and i.name in family.image:
            continue
        readers = ", ".join(s for s in family.stage_names if i.name in _stage_inputs(family, s))
        g.add_argument(
            i.flag,
            dest=i.name,
            type=int_in(i.lo, i.hi),
            default=None,
            help=f"{i.help} ({i.unit}); integer in [{i.lo}, {i.hi}]; default {i.default}; read by: {readers}",
        )


def _stage_inputs(family: Family, stage: str) -> tuple[str, ...]:
    return _default_model(family).stage(stage).inputs


_DEFAULT_MODELS: dict = {}


def _default_model(family: Family):
    if family.name not in _DEFAULT_MODELS:
        _DEFAULT_MODELS[family.name] = family.load(**{o.name: o.default for o in family.options})
    return _DEFAULT_MODELS[family.name]


def add_convention(p: argparse.ArgumentParser):
    p.add_argument(
        "--convention",
        type=choice(tuple(CONVENTIONS)),
        default="torch",
        help="how FLOPs are counted. Choices: "
        + "; ".join(f"{k}: {c.summary}" for k, c in CONVENTIONS.items())
        + ". Default: torch",
    )


def add_precision(p: argparse.ArgumentParser):
    dtypes = tuple(DTYPE_BYTES)
    p.add_argument(
        "--dtype",
        type=choice(dtypes),
        default="bf16",
        help=f"weight dtype (activations too, except fp8: bf16). Choices: {', '.join(dtypes)}. Default: bf16",
    )
    p.add_argument(
        "--kv-dtype",
        type=choice(dtypes),
        default=None,
        help=f"KV-cache dtype. Choices: {', '.join(dtypes)}. Default: --dtype",
    )


def add_hardware(
    p: argparse.ArgumentParser, repeatable: bool = False, required: bool = False, note: str = ""
):
    p.add_argument(
        "--hardware",
        action="append" if repeatable else "store",
        default=None,
        required=required,
        help=f"accelerator for times: a preset ({', '.join(HARDWARE)}) or a .json "
        "file (see README)"
        + ("; repeatable" if repeatable else "")
        + (f"; {note}" if note else "")
        + ("" if required else ". Default: none (no times)"),
    )
    p.add_argument(
        "--compute-efficiency",
        type=fraction,
        default=None,
        help="fraction of the datasheet matmul and vector peaks reached, in "
        "[1e-6, 1]. Default: 1 (with --hardware only)",
    )
    p.add_argument(
        "--bandwidth-efficiency",
        type=fraction,
        default=None,
        help="fraction of the datasheet memory bandwidth reached, in [1e-6, 1]. "
        "Default: 1 (with --hardware only)",
    )


def hardware_settings(args) -> dict:
    """``compute_efficiency``/``bandwidth_efficiency`` keyword arguments; refused without hardware."""
    given = {
        k: getattr(args, k)
        for k in ("compute_efficiency", "bandwidth_efficiency")
        if getattr(args, k, None) is not None
    }
    if given and not args.hardware:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise SymcostError(f"{flag}: applies only with --hardware")
    return given


def single(args, family: Family) -> dict:
    """Family options as single values (a repeated flag is an error here)."""
    out = {}
    for o in family.options:
        value = getattr(args, o.name, None)
        if isinstance(value, list):
            if len(value) > 1:
                raise SymcostError(f"{o.flag}: give one value for this command")
            value = value[0]
        if value is not None:
            out[o.name] = value
    return out


def load_model(family: Family, options: dict):
    import symcost

    return symcost.load(family.name, **options)


def check_stage_reads(model, stage: str, given: dict, image: bool = False) -> None:
    """An input flag (or ``--image``) the stage does not read is an error naming the stages that do."""
    family = model.family
    names = list(given) + (list(family.image) if image and family.image else [])
    for name in names:
        if name not in model.stage(stage).inputs:
            readers = ", ".join(s for s in family.stage_names if name in model.stage(s).inputs)
            flag = "--image" if family.image and name in family.image else family.input(name).flag
            raise SymcostError(
                f"{flag}: stage {stage} does not read it; stages that do: "
                f"{readers or 'none'} (choose one with --stage)"
            )


def given_inputs(args, family: Family) -> dict:
    """Inputs the user gave (not defaults), by name."""
    return {i.name: getattr(args, i.name) for i in family.inputs if getattr(args, i.name, None) is not None}
