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


# what needs an optional extra (pyproject's [project.optional-dependencies]) -> the extra
NEEDS = {"--plot": "plot", "symcost validate": "validation", ".parquet": "parquet", "--engine dask": "dask"}
NEEDS |= {"--measure ": "validation", "benchmarks/run.py": "validation"}


def _examples(text: str):
    """(command, its comments: on its line and the comment lines just above) of every bash block."""
    out = []
    for body in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        above: list[str] = []
        for line in body.replace("\\\n", " ").splitlines():
            if line.lstrip().startswith("#"):
                above.append(line)
                continue
            command, _, comment = line.partition(" #")
            out.append((command, " ".join(above + [comment])))
            above = []
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/sweeps.md"])
def test_examples_that_need_an_extra_say_so(doc):
    text = (Path(__file__).resolve().parents[1] / doc).read_text()
    checked = 0
    for command, comment in _examples(text):
        if "pip install" in command:  # the setup commands install what they use
            continue
        said = {e for group in re.findall(r"\.\[([a-z,]+)\]", comment) for e in group.split(",")}
        needed = {extra for feature, extra in NEEDS.items() if feature in command}
        needed -= {"parquet"} if "dask" in needed else set()  # the dask extra brings pyarrow
        assert needed <= said, f"{doc}: {command.strip()[:80]} needs {sorted(needed - said)}"
        checked += bool(needed)
    assert checked >= 3


def test_the_clone_folder_shadowing_the_package_is_explained(tmp_path):
    """A script run next to a clone named ``symcost`` imports the folder (a namespace package)
    instead of the installed package: the README says so, quoting the very error."""
    import subprocess
    import sys

    (tmp_path / "symcost").symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
    (tmp_path / "script.py").write_text('import symcost\nsymcost.load("deepseek-ocr")\n')
    run = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True)
    python = README[README.index("## Python") : README.index("## Validation")]
    assert "clone named `symcost`" in python and "from any folder but the one that holds" in python
    if run.returncode:  # an editable install (the README's): the folder wins
        quoted = re.search(r"`(AttributeError: [^`]+)`", python)
        assert quoted and run.stderr.rstrip().endswith(quoted.group(1)), run.stderr
