"""Every example in the README runs as written: each `symcost ...` command (the main job's
included) through the CLI in a scratch folder, and the Python block.

Not run here: the setup commands themselves (CI runs them), `python -m pytest` (this suite) and
`python benchmarks/run.py` (tests/test_benchmarks_smoke.py runs it with --smoke).
"""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from symcost.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, flags=re.S)


def _benchmarks():
    """benchmarks/run.py as a module: it lists the README's commands for its cold starts too."""
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


COMMANDS = _benchmarks().readme_commands()


def test_the_readme_has_examples():
    assert len(COMMANDS) >= 12
    assert any(c.startswith("symcost plan") for c in COMMANDS[:3])  # the main job


@pytest.mark.parametrize("command", COMMANDS, ids=[c[8:60] for c in COMMANDS])
def test_command_runs(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.strip() or "--out" in argv  # something was printed (or written)


def test_python_block_runs():
    (code,) = [body for lang, body in BLOCKS if lang == "python"]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # our own README, not user input
    m = scope["m"]
    assert (
        str(m.formula("vision", "flops", "torch", named=True)) == "B*(388149837824*n_crops + 1139967033344)"
    )
