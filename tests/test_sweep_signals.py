"""Sweeps with worker processes under signals: exit 130, one line, nothing left behind (no
output, no temporary file, no worker process) whatever is signalled and however often; workers
die with their parent; a temporary file a killed parent could not remove is removed by the next
write in that folder, which says so. Every wait polls a condition with a deadline."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")

BIG = ("--width", "1:4000", "--height", "1:4000")  # 16e6 points: minutes, never done before a signal
SMALL = ("sweep", "deepseek-ocr", "--width", "1:3", "--height", "1", "--out", "small.csv")
DEADLINE_S = 120  # generous: the machine may be loaded; a hang still fails


def _state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a live process, None once gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] in "ZX" else (int(fields[1]), fields[0])


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            s = _state(int(d.name))
            if s is not None and s[0] == pid:
                out.append(int(d.name))
    return out


def _wait(condition, what: str, proc=None, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None:
            assert proc.poll() is None, f"exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def _part_files(folder: Path) -> list[Path]:
    return list(folder.glob(".symcost-*"))


def _sweep(folder: Path, *extra) -> subprocess.Popen:
    """A big CSV sweep in its own process group (as a shell job is), SIGINT not ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "symcost.cli", "sweep", "deepseek-ocr", *BIG, "--out", "big.csv", *extra],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _writing(folder: Path, proc, jobs: int) -> list[int]:
    """Wait until the temp file holds rows and ``jobs`` workers run; their pids."""
    _wait(lambda: any(p.stat().st_size > 0 for p in _part_files(folder)), "rows in a temp file", proc)
    _wait(lambda: len(_children(proc.pid)) >= jobs, f"{jobs} workers", proc)
    return _children(proc.pid)


def _finish(proc) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a hang: fail, but leave nothing running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("hung after the signal") from None
    return proc.returncode, out, err


def _no_workers_left(pids):
    _wait(lambda: all(_state(p) is None for p in pids), "exit of every worker", timeout=30)


def _term_to_the_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)


def _two_ctrl_c_30_ms_apart(proc) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the foreground group
    time.sleep(0.03)
    os.killpg(proc.pid, signal.SIGINT)


@pytest.mark.parametrize(
    "jobs,send",
    [(4, _term_to_the_group), (2, _two_ctrl_c_30_ms_apart)],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_an_interrupt_leaves_nothing(tmp_path, jobs, send):
    proc = _sweep(tmp_path, "--jobs", str(jobs))
    workers = _writing(tmp_path, proc, jobs)
    send(proc)
    assert _finish(proc) == (130, "", "symcost: interrupted\n")
    _no_workers_left(workers)
    assert list(tmp_path.iterdir()) == []


def test_workers_die_with_a_killed_parent_and_the_next_write_cleans_up(tmp_path):
    proc = _sweep(tmp_path, "--jobs", "2")
    workers = _writing(tmp_path, proc, 2)
    proc.kill()  # SIGKILL: no cleanup can run in the parent
    proc.communicate(timeout=DEADLINE_S)
    _no_workers_left(workers)
    (left,) = _part_files(tmp_path)  # what a killed process leaves
    small = [sys.executable, "-m", "symcost.cli", *SMALL]
    done = subprocess.run(small, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"removed {left.name}" in done.stderr and "interrupted" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv"]


def test_a_live_writers_temp_file_is_not_removed(tmp_path):
    """The next write removes only a temp file no process holds: a running sweep keeps its own."""
    proc = _sweep(tmp_path, "--jobs", "1")
    try:
        _wait(lambda: any(p.stat().st_size > 0 for p in _part_files(tmp_path)), "rows in a temp file", proc)
        small = [sys.executable, "-m", "symcost.cli", *SMALL]
        done = subprocess.run(small, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and "removed" not in done.stderr, done.stderr
        assert len(_part_files(tmp_path)) == 1 and proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    assert _finish(proc)[0] == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv"]
