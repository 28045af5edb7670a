"""Output files: written whole or not at all (temp file in the same folder, then rename)."""
from __future__ import annotations

import os
import tempfile
from typing import Callable, IO

from .errors import SymcostError

__all__ = ["atomic_write"]


def atomic_write(path: str, write: Callable[[IO], None], *, binary: bool = False,
                 force: bool = False, param: str = "--out") -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it over ``path``.

    An error or interrupt leaves no new file and any old file intact. An existing ``path`` is
    refused unless ``force``.
    """
    if os.path.exists(path) and not force:
        raise SymcostError(f"{param}: {path!r} exists; pass --force to overwrite")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SymcostError(f"{param}: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".symcost-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
