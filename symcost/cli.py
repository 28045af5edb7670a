"""The ``symcost`` command line: ``symcost COMMAND FAMILY [options]``.

Every bad input ends in one line on stderr naming the parameter, and exit code 2; Ctrl-C,
SIGTERM, SIGHUP and SIGQUIT end in ``symcost: interrupted`` and exit 130, imports included.
``SYMCOST_DEBUG=1`` re-raises internal errors with their traceback.
This module imports nothing heavy at import time, so signals are handled from the start.
"""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["main", "build_parser"]

_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))


def build_parser():
    from importlib import import_module

    from .args import Parser
    from .commands import COMMANDS
    from .family import families, get_family

    names = families()
    parser = Parser(prog="symcost", description="Exact closed-form costs of models: FLOPs, "
                    "bytes, memory, time, capacity. Families: " + ", ".join(names) + ".",
                    epilog="Run `symcost COMMAND FAMILY --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    for name in COMMANDS:
        mod = import_module(f".commands.{name}", __package__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        fams = p.add_subparsers(dest="family", parser_class=Parser, metavar="family",
                                required=True)
        for fname in names:
            fam = get_family(fname)
            fp = fams.add_parser(fname, help=fam.summary, description=f"{mod.HELP}. {fam.summary}.")
            mod.add_arguments(fp, fam)
            fp.set_defaults(run=mod.run, family_spec=fam)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    for s in _SIGNALS:
        signal.signal(s, _interrupt)
    try:
        from .errors import SymcostError
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:  # `symcost` alone: the commands and families
                parser.print_help()
                code = 0
            else:
                code = args.run(args, args.family_spec)
            sys.stdout.flush()
            return code
        except SystemExit as e:  # --help: argparse printed it and exits 0
            return e.code if isinstance(e.code, int) else 0
        except SymcostError as e:
            _print_error(f"symcost: error: {_one_line(str(e))}")
            return 2
        except OSError as e:  # stdout closed or full: say so, do not claim success
            if e.errno is None or getattr(e, "filename", None) is not None:
                raise
            _silence_stdout()
            _print_error(f"symcost: error: stdout: cannot write ({e.strerror or e})")
            return 2
    except KeyboardInterrupt:
        _silence_stdout()
        _print_error("symcost: interrupted")
        return 130
    except Exception as e:  # a bug, not bad input: still one line, no traceback
        if os.environ.get("SYMCOST_DEBUG") == "1":
            raise
        _print_error(f"symcost: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
                     "(please report it; SYMCOST_DEBUG=1 shows the traceback)")
        return 70


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _print_error(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except OSError:
        pass


def _one_line(text: str) -> str:
    """Non-printable characters escaped (argparse echoes raw arguments), at most 500 characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
