"""Files: outputs written whole or not at all, inputs read only when small and regular.

Outputs go to a temporary file (``.symcost-*.part``) in the same folder, then are linked into
place: the link fails if the target appeared meanwhile (``--force`` replaces instead), so two
writers never silently overwrite each other. Interrupt signals (Ctrl-C, SIGTERM, SIGHUP,
SIGQUIT) become one KeyboardInterrupt while a file is written; the first one ignores the
others, so cleanup runs to its end and no temporary file stays behind. A writer holds a lock
on its temporary file or folder for as long as it (or a process it forked) lives; one that no
process holds was left by a killed writer, and the next write in that folder removes it and
says so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from .errors import SymcostError

try:
    import fcntl
except ImportError:  # not a POSIX system: no locks, so leftovers are never removed
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "atomic_write",
    "check_target",
    "read_small_file",
    "interrupts_as_keyboard",
    "shielded",
    "raise_once",
    "handle",
    "restore",
    "locked_temp",
    "remove_leftovers",
    "umask",
    "INTERRUPTS",
]

INTERRUPTS = tuple(
    getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n)
)
TEMP_PREFIX, TEMP_SUFFIX = ".symcost-", ".part"
_TEMP = re.compile(r"\.symcost-[A-Za-z0-9_]{1,64}\.part")


def check_target(path: str, *, force: bool = False, param: str = "--out", extensions=None) -> str:
    """Refuse an output path before any work: bad extension, existing file (unless ``force``),
    something not a regular file in its place, a missing folder, a name the file system will
    not take. Returns the extension."""
    if not isinstance(path, str) or not path:
        raise SymcostError(f"{param}: {path!r} is not a file name")
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if extensions is not None and ext not in extensions:
        raise SymcostError(f"{param}: {path[:200]!r} must end in one of .{', .'.join(extensions)}")
    if os.path.lexists(path) and not os.path.isfile(path):  # a folder, device, broken link
        raise SymcostError(f"{param}: {path[:200]!r} exists and is not a regular file")
    if os.path.lexists(path) and not force:
        raise SymcostError(f"{param}: {path[:200]!r} exists; pass --force to overwrite")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SymcostError(f"{param}: folder {folder[:200]!r} does not exist")
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(os.path.basename(path))) > limit - len(".symcost-XXXXXXXX.part"):
        raise SymcostError(f"{param}: file name longer than {limit - 23} bytes")
    return ext


def raise_once(signum, frame):
    """Signal handler: ignore every interrupt signal from now on, then raise KeyboardInterrupt
    (a second Ctrl-C 30 ms later cannot interrupt the cleanup the first one started)."""
    for s in INTERRUPTS:
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt


def handle(handler) -> list:
    """Install ``handler`` for every interrupt signal; what to restore (nothing outside the
    main thread, where signals cannot be caught)."""
    try:
        return [(s, signal.signal(s, handler)) for s in INTERRUPTS]
    except ValueError:
        return []


def restore(saved: list) -> None:
    for s, old in saved:
        signal.signal(s, old)


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """Within the block every interrupt signal raises KeyboardInterrupt once (cleanup runs);
    a no-op when an outer caller (the CLI) has installed the same handler."""
    if signal.getsignal(signal.SIGTERM) is raise_once:
        yield
        return
    saved = handle(raise_once)
    try:
        yield
    finally:
        restore(saved)


@contextmanager
def shielded() -> Iterator[None]:
    """Interrupt signals ignored within the block: cleanup is never cut short."""
    saved = handle(signal.SIG_IGN)
    try:
        yield
    finally:
        restore(saved)


def _lock(fd: int, wait: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _same(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def locked_temp(folder: str, directory: bool = False) -> tuple[int, str]:
    """A new ``.symcost-*.part`` file or folder in ``folder`` and a descriptor holding its lock
    (a file's is open for writing; close it after the temporary is renamed or removed).
    Forked processes share the lock."""
    while True:
        if directory:
            path = tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
        else:
            fd, path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
            os.close(fd)
        lock = os.open(path, os.O_RDONLY if directory else os.O_RDWR)
        _lock(lock, wait=True)
        if _same(lock, path):  # else a cleaner took it between creation and lock: retry
            return lock, path
        os.close(lock)


def remove_leftovers(folder: str) -> list[str]:
    """Remove the ``.symcost-*.part`` files and folders in ``folder`` that no process holds
    (left by a writer killed with SIGKILL, or a machine that went down), saying so on stderr;
    their names. A live writer's lock keeps its temporary."""
    removed: list[str] = []
    try:
        entries = [e for e in os.scandir(folder) if _TEMP.fullmatch(e.name)]
    except OSError:
        return removed
    for e in entries:
        try:
            fd = os.open(e.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if fcntl is None or not _lock(fd, wait=False) or not _same(fd, e.path):
                continue
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(e.name)
        except OSError:
            continue
        finally:
            os.close(fd)
    for name in removed:
        print(
            f"symcost: removed {name} in {folder[:200]!r}, a temporary file of an interrupted "
            "write that no process holds",
            file=sys.stderr,
        )
    return removed


def atomic_write(
    path: str, write: Callable[[IO], None], *, binary: bool = False, force: bool = False, param: str = "--out"
) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then put it in place.

    An error or interrupt leaves no new file and any old file intact. Without ``force`` the
    final step links the file into place, which fails if ``path`` exists by then.
    """
    check_target(path, force=force, param=param)
    folder = os.path.dirname(os.path.abspath(path))
    with interrupts_as_keyboard():
        remove_leftovers(folder)
        try:
            lock, tmp = locked_temp(folder)
        except OSError as e:
            raise SymcostError(f"{param}: cannot write in {folder[:200]!r} ({e.strerror})") from None
        try:
            fd = os.dup(lock)  # closing the file keeps the lock: ``lock`` still holds it
            with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                write(f)
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual mode
            if force:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails with EEXIST: never replaces without --force
                except FileExistsError:
                    raise SymcostError(
                        f"{param}: {path[:200]!r} appeared while writing; pass --force to overwrite"
                    ) from None
                os.unlink(tmp)
        except BaseException as e:  # error or interrupt: no partial file stays behind
            with shielded():
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            if isinstance(e, OSError):  # disk full, permissions, a folder in the way
                raise SymcostError(f"{param}: cannot write {path[:200]!r} ({e.strerror or e})") from None
            raise
        finally:
            os.close(lock)


def umask() -> int:
    """The process's umask (read without changing it for longer than two calls)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_small_file(path: str, param: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; FIFOs, devices and folders
    are refused without blocking."""
    if not isinstance(path, str) or not path:
        raise SymcostError(f"{param}: {path!r} is not a file name")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise SymcostError(f"{param}: cannot read {path[:200]!r} ({type(e).__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SymcostError(f"{param}: {path[:200]!r} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise SymcostError(f"{param}: cannot read {path[:200]!r} ({type(e).__name__})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SymcostError(f"{param}: {path[:200]!r} is larger than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SymcostError(f"{param}: {path[:200]!r} is not UTF-8 text") from None


def read_json_keys(path: str, param: str, max_bytes: int, keys: dict[str, str]) -> dict:
    """A small JSON object holding exactly ``keys`` (name -> what it holds, for the message):
    bad JSON, a repeated key, an unknown or a missing key are one-line errors naming ``param``."""
    import json

    def no_duplicates(pairs):
        names = [k for k, _ in pairs]
        dup = next((k for k in names if names.count(k) > 1), None)
        if dup is not None:  # json would silently keep the last one
            raise SymcostError(f"{param} file: key {dup[:40]!r} appears twice")
        return dict(pairs)

    text = read_small_file(path, param, max_bytes)
    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except SymcostError:
        raise
    except (ValueError, RecursionError) as e:  # bad JSON, integers over 4,300 digits, deep nesting
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise SymcostError(
            f"{param}: cannot read {path[:200]!r} as JSON ({e.__class__.__name__}{where})"
        ) from None
    if not isinstance(data, dict):
        raise SymcostError(f"{param} file: expected a JSON object")
    unknown = sorted(set(data) - set(keys))
    missing = sorted(set(keys) - set(data))
    if unknown or missing:
        which = f"unknown key {unknown[0][:40]!r}" if unknown else f"missing key {missing[0]!r}"
        text = ", ".join(f"{k} ({u})" for k, u in keys.items())
        raise SymcostError(f"{param} file: {which}; keys are {text}")
    return data
