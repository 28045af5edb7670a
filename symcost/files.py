"""Files: outputs written whole or not at all, inputs read only when small and regular.

Outputs go to a temporary file in the same folder, then are linked into place: the link fails
if the target appeared meanwhile (``--force`` replaces instead), so two writers never
silently overwrite each other. SIGTERM, SIGHUP and SIGQUIT are turned into the same interrupt
as Ctrl-C while a file is written, so no ``.symcost-*.part`` stays behind.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from .errors import SymcostError

__all__ = ["atomic_write", "check_target", "read_small_file", "interrupts_as_keyboard"]

_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))


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


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP/SIGQUIT raise KeyboardInterrupt (cleanup runs)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        saved = [(s, signal.signal(s, handler)) for s in _SIGNALS]
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        for s, old in saved:
            signal.signal(s, old)


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
        try:
            fd, tmp = tempfile.mkstemp(prefix=".symcost-", suffix=".part", dir=folder)
        except OSError as e:
            raise SymcostError(f"{param}: cannot write in {folder[:200]!r} ({e.strerror})") from None
        try:
            with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                write(f)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
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
            if os.path.lexists(tmp):
                os.unlink(tmp)
            if isinstance(e, OSError):  # disk full, permissions, a folder in the way
                raise SymcostError(f"{param}: cannot write {path[:200]!r} ({e.strerror or e})") from None
            raise


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
