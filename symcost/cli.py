"""The ``symcost`` command line: ``symcost COMMAND FAMILY [options]``, or ``symcost compare
[options]`` across families.

Every bad input ends in one line on stderr naming the parameter (the flag, when one was
given), and exit code 2; Ctrl-C, SIGTERM, SIGHUP and SIGQUIT end in ``symcost: interrupted``
and exit 130, imports included. Output reaches stdout only when the command succeeds; a stdout
that cannot take it (closed, disk full) is an error too. An internal error is one line and exit
70; ``SYMCOST_DEBUG=1`` re-raises it with its traceback.
This module imports nothing heavy at import time, so signals are handled from the start.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys

__all__ = ["main", "build_parser"]


def build_parser(argv=None):
    """The parser of every command and family; with ``argv`` naming a command and a family
    (``COMMAND FAMILY ...``), of that pair only: start-up does not grow with their number."""
    from importlib import import_module

    from .args import NUMBERS, Parser
    from .commands import COMMANDS, FIELD
    from .family import families, get_family

    names = families()
    pair = list(argv[:2]) if argv is not None else []
    if pair[:1] and pair[0] in FIELD:
        pair = pair[:1]
    elif not (len(pair) == 2 and pair[0] in COMMANDS and pair[1] in names):
        pair = []
    parser = Parser(
        prog="symcost",
        description="Exact closed-form costs of models: FLOPs, "
        "bytes, memory, time, capacity. Families: " + ", ".join(names) + ".",
        epilog=f"Run `symcost COMMAND FAMILY --help` for a command's options. Flags: {NUMBERS}.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    for name in pair[:1] or COMMANDS + FIELD:
        mod = import_module(f".commands.{name}", __package__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if name in FIELD:  # across families: no family argument
            mod.add_arguments(p)
            p.set_defaults(run=mod.run, family_spec=None)
            continue
        targets = getattr(mod, "TARGETS", None)  # a command about this machine, not a family
        fams = p.add_subparsers(
            dest="family", parser_class=Parser, metavar="target" if targets else "family", required=True
        )
        for target, summary in (targets or {}).items():
            tp = fams.add_parser(target, help=summary, description=f"{mod.HELP}: {summary}.")
            mod.add_arguments(tp, target)
            tp.set_defaults(run=mod.run, family_spec=target)
        for fname in () if targets else pair[1:] or names:
            fam = get_family(fname)
            fp = fams.add_parser(fname, help=fam.summary, description=f"{mod.HELP}. {fam.summary}.")
            mod.add_arguments(fp, fam)
            fp.set_defaults(run=mod.run, family_spec=fam)
    return parser


def main(argv=None) -> int:
    saved: list = []
    interrupted = False
    # Output is kept until the command succeeds: an error leaves stdout empty, and a stdout that
    # cannot take it (closed, full disk) is reported once, at the one place it is written.
    stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        from .files import handle, raise_once

        saved = handle(raise_once)
        from .errors import SymcostError

        try:
            parser = build_parser(sys.argv[1:] if argv is None else argv)
            args = parser.parse_args(argv)
            if args.command is None:  # `symcost` alone: the commands and families
                parser.print_help()
                code = 0
            else:
                code = args.run(args) if args.family_spec is None else args.run(args, args.family_spec)
        except SystemExit as e:  # --help: argparse printed it and exits 0
            code = e.code if isinstance(e.code, int) else 0
        except SymcostError as e:
            _print_error(f"symcost: error: {_one_line(_as_flag(str(e), argv))}")
            return 2
        text, sys.stdout = sys.stdout.getvalue(), stdout
        return _write_stdout(text, code)
    except KeyboardInterrupt:
        interrupted = True  # the process is ending: signals stay ignored (a second Ctrl-C
        _print_error("symcost: interrupted")  # must not turn this line into a traceback)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, no traceback
        if os.environ.get("SYMCOST_DEBUG") == "1":
            raise
        _print_error(
            f"symcost: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
            "(please report it; SYMCOST_DEBUG=1 shows the traceback)"
        )
        return 70
    finally:
        sys.stdout = stdout
        for s, old in saved if not interrupted else ():
            signal.signal(s, old)


def _write_stdout(text: str, code: int) -> int:
    if not text:
        return code
    try:
        if sys.stdout is None:  # the shell closed it (`>&-`): Python has no stdout at all
            raise OSError(errno.EBADF, "stdout is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        _silence_stdout()
        _print_error(f"symcost: error: stdout: cannot write ({e.strerror or e})")
        return 2
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _print_error(text: str) -> None:
    if sys.stderr is None:  # closed as well: the exit code still tells
        return
    try:
        print(text, file=sys.stderr)
    except OSError:
        pass


def _as_flag(message: str, argv) -> str:
    """The API names a parameter (``max_crops: ...``); the command line names the flag given."""
    name, sep, rest = message.partition(": ")
    flag = "--" + name.replace("_", "-")
    given = sys.argv[1:] if argv is None else argv
    if sep and name.isidentifier() and any(a == flag or a.startswith(flag + "=") for a in given):
        return f"{flag}: {rest}"
    return message


def _one_line(text: str) -> str:
    """Non-printable characters escaped (argparse echoes raw arguments), at most 500 characters."""
    from .checks import printable

    text = printable(text)
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
