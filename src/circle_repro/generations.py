"""Outputs of several files that appear as one generation: the old set whole, or the new set whole.

:func:`staged_folder` builds a whole folder beside its target and swaps it in with one atomic exchange
(``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, and the next writer puts back a folder a
kill left aside). :func:`staged_outputs` does the same for a step that owns some entries of a folder it
shares with other files (a report folder beside a Snakemake report, say): the other files are hard-linked
into the new folder. A completion record in the folder can hold the :func:`file_digest` of the others, so
that a reader tells files copied or edited by hand from the ones the step wrote.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


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


def _foreign_entries(folder: Path, owned: Collection[str]) -> list[Path]:
    """The entries of ``folder`` not in ``owned``; ValueError naming the first that is a folder."""
    if not folder.is_dir():
        return []
    foreign = sorted(entry for entry in folder.iterdir() if entry.name not in owned)
    for entry in foreign:
        if entry.is_dir() and not entry.is_symlink():
            raise ValueError(
                f"{folder}: holds the folder {entry.name}, which this step does not write; the step replaces "
                f"{folder} as a whole (so that a kill leaves its old outputs or its new ones, never a mix), and "
                f"copies only files across. Give the step an output folder of its own, or move {entry} elsewhere."
            )
    return foreign


def _carry(entry: Path, destination: Path) -> None:
    """Put ``entry`` (a file or a symlink) at ``destination``: a hard link where possible, else a copy."""
    if entry.is_symlink():
        os.symlink(os.readlink(entry), destination)
        return
    try:
        os.link(entry, destination)
    except OSError:  # no hard links on this file system, or protected_hardlinks
        shutil.copy2(entry, destination)


def check_outputs_folder(folder: str | os.PathLike[str], owned: Collection[str]) -> None:
    """Raise the ValueError :func:`staged_outputs` would raise for ``folder``, before a long step starts."""
    _foreign_entries(Path(os.path.abspath(folder)), owned)


@contextlib.contextmanager
def staged_outputs(folder: str | os.PathLike[str], owned: Collection[str]) -> Iterator[Path]:
    """Yield an empty staging folder in which to write the entries ``owned`` (names) of ``folder``; when
    the block succeeds, ``folder`` is replaced as a whole (:func:`staged_folder`) by the staging folder
    plus the other files of the old one (hard-linked where possible), so the owned entries are all old
    or all new and the other files stay. Raises ValueError, before the block runs, when ``folder`` holds
    a folder that is not owned."""
    folder = Path(os.path.abspath(folder))  # "." has no name to build a sibling from
    _foreign_entries(folder, owned)
    with staged_folder(folder) as staging:
        yield staging
        for entry in _foreign_entries(folder, owned):
            if not (staging / entry.name).exists():
                _carry(entry, staging / entry.name)
