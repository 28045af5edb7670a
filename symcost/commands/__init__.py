"""The ``symcost`` commands: each module has ``HELP``, ``add_arguments(parser, family)`` and
``run(args, family) -> exit code``; a command across families (``FIELD``) has
``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

COMMANDS = ("formulas", "eval", "params", "sweep", "plan", "simulate", "validate", "calibrate")
FIELD = ("compare",)
