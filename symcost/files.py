"""Output files: written whole or not at all (temp file in the same folder, then rename)."""
from __future__ import annotations

import os
import tempfile
from typing import Callable, IO

from .errors import SymcostError

__all__ = ["atomic_write", "check_target"]


def check_target(path: str, *, force: bool = False, param: str = "--out", extensions=None) -> str:
    """Refuse an output path before any work: bad extension, existing file (unless ``force``),
    something not a regular file in its place, or a missing folder. Returns the extension."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if extensions is not None and ext not in extensions:
        raise SymcostError(f"{param}: {path!r} must end in one of .{', .'.join(extensions)}")
    if os.path.lexists(path) and not os.path.isfile(path):  # a folder, device, broken link
        raise SymcostError(f"{param}: {path!r} exists and is not a regular file")
    if os.path.lexists(path) and not force:
        raise SymcostError(f"{param}: {path!r} exists; pass --force to overwrite")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SymcostError(f"{param}: folder {folder!r} does not exist")
    return ext


def atomic_write(path: str, write: Callable[[IO], None], *, binary: bool = False,
                 force: bool = False, param: str = "--out") -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it over ``path``.

    An error or interrupt leaves no new file and any old file intact. An existing ``path`` is
    refused unless ``force``.
    """
    check_target(path, force=force, param=param)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".symcost-", suffix=".part", dir=folder)
    except OSError as e:
        raise SymcostError(f"{param}: cannot write in {folder!r} ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as e:  # error or interrupt: no partial file stays behind
        os.unlink(tmp)
        if isinstance(e, OSError):  # disk full, permissions, a folder in the way
            raise SymcostError(f"{param}: cannot write {path!r} ({e.strerror or e})") from None
        raise
