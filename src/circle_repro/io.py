"""Atomic file output: a killed job never leaves a half-written result behind, and what it writes gets
the permissions of an ordinary file (0666 less the umask), so a team's colleagues can read it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask: from /proc on Linux, else by setting it and setting it back (which, for an
    instant, would give a file another thread creates the restrictive mask 0077)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the umask: what ``open`` (files, 0o666) or ``mkdir`` (folders, 0o777) would give."""
    return mode & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file gets the mode a plain ``open`` would give (mkstemp makes it 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` atomically when closed."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open only writes; got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically, keeping the key order it was built in."""
    with atomic_open(path) as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
