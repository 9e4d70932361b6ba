"""Outputs of several files that appear as one generation: the old set whole, or the new set whole.

:func:`staged_files` writes a step's files beside their targets under temporary names and moves them
all into place only after the last one is written, so a failure while writing any of them leaves the
previous files as they were and no temporary file behind; a completion record written last can hold
the :func:`file_digest` of the others, so that a reader tells a kill between two moves from a whole
generation. :func:`staged_folder` builds a whole folder
beside its target and swaps it in with one atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux;
elsewhere two renames, and the next preparation puts back a folder a kill left aside).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from circle_repro.io import atomic_path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextlib.contextmanager
def staged_files(targets: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path per target (beside it); on success move every one onto its target, in
    the order given (the last target can be a completion record that readers require); on failure
    remove them all and leave every target untouched."""
    with contextlib.ExitStack() as stack:
        temporary = [stack.enter_context(atomic_path(target)) for target in reversed(targets)]
        yield temporary[::-1]  # the stack unwinds in reverse: the first target is moved first


def file_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file: what a completion record stores of each file of its generation."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


def _aside(target: Path) -> Path:
    return target.with_name(f"{target.name}.previous")


def staging_path(target: str | os.PathLike[str]) -> Path:
    """Where :func:`staged_folder` builds the new ``target``: beside it, named ``<name>.staging`` (the old
    folder waits as ``<name>.previous`` where the system cannot swap two folders in one step)."""
    target = Path(target)
    return target.with_name(f"{target.name}.staging")


def recover_folder(target: str | os.PathLike[str]) -> None:
    """Clean up after a killed :func:`staged_folder`: put back a folder left aside when ``target`` is
    missing, and remove a leftover staging folder."""
    target = Path(target)
    aside = _aside(target)
    if aside.exists():
        if target.exists():
            shutil.rmtree(aside)
        else:
            aside.rename(target)
    shutil.rmtree(staging_path(target), ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` (:func:`staging_path`); when the block succeeds it replaces
    ``target`` (created if absent) as a whole, and the old folder is removed; when it fails it is removed
    and ``target`` stays as it was. One process at a time per ``target``."""
    target = Path(target).resolve() if Path(target).is_symlink() else Path(target)  # build beside the real folder
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
        if not target.exists():
            staging.rename(target)
        elif _exchange(staging, target):
            shutil.rmtree(staging)  # now the old folder
        else:
            target.rename(_aside(target))
            staging.rename(target)
            shutil.rmtree(_aside(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
