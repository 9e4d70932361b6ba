"""Getting a data set's raw files into ``data/raw/<name>/`` and checking them against ``sources.yaml``.

A declared file (or folder, a name ending in ``/``) that is absent from the raw folder is copied from
the first *mirror* holding it under its declared name (a local folder, or a base URL for files), or,
for an ``access: download`` data set given no mirror, fetched from its URL
(:func:`~circle_repro.data.download.fetch`: resumable, checksummed, atomic). A present file is then
checked once against what ``sources.yaml`` declares (:func:`check_file`: size, file digests or the
digest of a re-compressed .gz's content) and stamped ``<file>.verified``, the stamp ``data status``
reads; a stamp records size and mtime, so a replaced file loses it. What is still missing raises the
FileNotFoundError of :func:`missing_error`: which file(s) to place where, how to obtain them, and the
substitutes.

Standard library + PyYAML only (``data status`` imports the stamps from here and must stay fast).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from circle_repro.data.download import CHUNK_SIZE, ChecksumError, DownloadError, fetch, verify
from circle_repro.data.sources import Source, SourceFile

STAMP_SUFFIX = ".verified"
FETCHED_FILENAME = "fetched.json"
"""In a data set's raw folder: the files a fetch found there (``circle-repro data fetch``, the workflow's download step)."""
Mirrors = Sequence[str | os.PathLike[str] | None]


# --- verification stamps --------------------------------------------------------------------------


def stamp_path(path: str | Path) -> Path:
    """``<path>.verified``."""
    path = Path(path)
    return path.with_name(path.name + STAMP_SUFFIX)


def mark_verified(path: str | Path, digests: dict[str, str] | None = None) -> Path:
    """Write ``<path>.verified`` recording the file's size, mtime and the digests it was checked against."""
    path = Path(path)
    info = path.stat()
    stamp = stamp_path(path)
    record = {"file": path.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "digests": digests or {}}
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, stamp)
    return stamp


def is_verified(path: str | Path) -> bool:
    """True when ``path`` exists and its stamp matches its current size and mtime."""
    path = Path(path)
    try:
        info = path.stat()
        record = json.loads(stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict) and record.get("size") == info.st_size and record.get("mtime_ns") == info.st_mtime_ns
    )


# --- checking a file against its declaration ------------------------------------------------------


def _content_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_SIZE):
                hasher.update(chunk)
    except (OSError, EOFError, zlib.error) as err:
        return f"unreadable gzip data ({err})"
    return hasher.hexdigest()


def check_file(path: str | Path, file: SourceFile, *, digests_checked: bool = False) -> dict[str, str]:
    """Check a present raw file against its declaration, stamp it, and return the digests it matched.

    The size must match where one is declared; then the file digests (md5/sha256) or, failing them,
    the sha256 of a .gz's decompressed content (``content_sha256``: a re-compressed copy is accepted).
    ``digests_checked``: ``fetch`` has just verified the file digests. A mismatch raises ChecksumError
    naming the file (no stamp is written). A file with nothing declared to check is not stamped.
    """
    path = Path(path)
    fix = f"The file is corrupt, truncated or a different version: replace {path} with the original."
    size = path.stat().st_size
    if file.size_bytes is not None and size != file.size_bytes:
        raise ChecksumError(path, "size in bytes", str(file.size_bytes), str(size), fix)
    matched = {key: value for key, value in (("md5", file.md5), ("sha256", file.sha256)) if value}
    if matched and not digests_checked:
        try:
            verify(path, sha256=file.sha256, md5=file.md5)
        except ChecksumError as err:
            if not file.content_sha256:
                raise ChecksumError(path, err.algorithm, err.expected, err.actual, fix) from None
            matched = {}
    if file.content_sha256 and not matched:
        actual = _content_sha256(path)
        if actual != file.content_sha256:
            raise ChecksumError(path, "sha256 of the decompressed content", file.content_sha256, actual, fix)
        matched = {"content_sha256": file.content_sha256}
    if matched or file.size_bytes is not None:
        mark_verified(path, matched)
    return matched


# --- what to place where --------------------------------------------------------------------------


def access_help(source: Source) -> str:
    """The instructions and substitutes of ``sources.yaml`` as one block of sentences."""
    parts = [source.instructions or ""]
    if source.substitutes:
        parts.append("Substitutes: " + "; ".join(source.substitutes) + ".")
    return " ".join(part for part in parts if part)


def missing_error(
    source: Source,
    raw_dir: str | Path,
    names: Sequence[str],
    *,
    one_of: bool = False,
    mirror_errors: Sequence[str] = (),
) -> FileNotFoundError:
    """The error for absent raw files: what to place where (``one_of``: alternatives), how to obtain it, the
    substitutes, and why the mirrors could not supply it."""
    targets = [str(Path(raw_dir) / name) + ("/" if name.endswith("/") else "") for name in names]
    wanted = ("one of " if one_of else "") + ", ".join(targets)
    message = f"{source.title} ({source.name}): raw data not found; place {wanted}. {access_help(source)}".strip()
    if mirror_errors:
        message += " Mirror: " + "; ".join(mirror_errors)
    return FileNotFoundError(message)


# --- obtaining ------------------------------------------------------------------------------------


def declared_file(source: Source, name: str) -> SourceFile:
    """The ``sources.yaml`` entry of one of the data set's files."""
    for file in source.files:
        if file.name == name:
            return file
    raise KeyError(f"{source.name}: {name!r} is not declared in sources.yaml")


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a folder file by file (resumable) into ``<target>.partial``, renamed onto ``target`` when complete."""
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        fetch(str(file), partial / file.relative_to(source), progress=False)
    partial.rename(target)


def _transfer(source: Source, file: SourceFile, path: Path, mirrors: Mirrors) -> tuple[bool, list[str]]:
    """Bring ``file`` to ``path`` from the first mirror that has it (or from its URL when no mirror is given and
    the set is downloadable). Return whether ``fetch`` checked the file digests (it keeps an existing ``path``
    that passes them) and the errors of the URL mirrors that could not supply it."""
    name = file.name.rstrip("/")
    # A .gz accepted by its content digest may be a re-compression: only check_file can judge it.
    digests = {} if file.content_sha256 else {"sha256": file.sha256, "md5": file.md5}
    checked = bool(file.sha256 or file.md5) and not file.content_sha256
    given = [os.fspath(mirror) for mirror in mirrors if mirror is not None]
    if not given and source.access == "download" and file.url is not None and not file.is_dir:
        fetch(file.url, path, **digests)
        return checked, []
    errors = []
    for mirror in given:
        if "://" in mirror:
            if file.is_dir:
                continue
            try:
                fetch(name, path, mirror=mirror, **digests)
                return checked, []
            except DownloadError as err:
                errors.append(str(err))
        elif file.is_dir and (Path(mirror) / name).is_dir():
            _copy_folder(Path(mirror) / name, path)
            return False, []
        elif not file.is_dir and (Path(mirror) / name).is_file():
            fetch(str(Path(mirror) / name), path, **digests)
            return checked, []
    return False, errors


def _locate(source: Source, raw_dir: Path, file: SourceFile, mirrors: Mirrors) -> tuple[Path | None, list[str]]:
    path = raw_dir / file.name.rstrip("/")
    if file.is_dir:
        errors = [] if path.is_dir() else _transfer(source, file, path, mirrors)[1]
        return (path if path.is_dir() else None), errors
    if path.is_file() and is_verified(path):
        return path, []
    placed = path.is_file()  # a file in place is checked, never replaced: no download for what is there
    checked, errors = _transfer(source, file, path, mirrors) if not placed else (False, [])
    if not path.is_file():
        return None, errors
    try:
        check_file(path, file, digests_checked=checked)
    except ChecksumError as err:
        if placed:
            raise
        path.unlink()  # brought here just now: a copy that fails its check is not kept
        fix = (
            "The copy just made was deleted: its source is corrupt or a different version; check it against "
            "the published checksum."
        )
        raise ChecksumError(path, err.algorithm, err.expected, err.actual, fix) from None
    return path, errors


def locate(source: Source, raw_dir: str | Path, name: str, mirrors: Mirrors = ()) -> Path | None:
    """``raw_dir/<name>`` (a trailing ``/`` names a folder), brought from a mirror (or its URL) when absent and
    checked once against its declaration (ChecksumError on a mismatch); None when nothing has it."""
    return _locate(source, Path(raw_dir), declared_file(source, name), mirrors)[0]


def obtain(source: Source, raw_dir: str | Path, names: Sequence[str], mirrors: Mirrors = ()) -> dict[str, Path]:
    """``{name: path}`` of every declared file in ``names`` (see :func:`locate`); the FileNotFoundError of
    :func:`missing_error` lists the absent ones."""
    raw_dir = Path(raw_dir)
    found, missing, errors = {}, [], []
    for name in names:
        path, mirror_errors = _locate(source, raw_dir, declared_file(source, name), mirrors)
        errors += mirror_errors
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise missing_error(source, raw_dir, missing, mirror_errors=errors)
    return found


def obtain_declared(source: Source, raw_dir: str | Path, mirrors: Mirrors = ()) -> dict[str, Path]:
    """``{name: path}`` of the declared files present (absent ones brought from the mirrors): every required
    one, and the optional ones that are there. When all are optional, at least one must be there (they are
    alternatives, e.g. an archive or its extracted folder); FileNotFoundError otherwise."""
    raw_dir = Path(raw_dir)
    found, errors = {}, []
    for file in source.files:
        path, mirror_errors = _locate(source, raw_dir, file, mirrors)
        errors += mirror_errors
        if path is not None:
            found[file.name] = path
    required = [file.name for file in source.files if not file.optional]
    missing = [name for name in required if name not in found]
    if missing:
        raise missing_error(source, raw_dir, missing, mirror_errors=errors)
    if not found:
        raise missing_error(source, raw_dir, [file.name for file in source.files], one_of=True, mirror_errors=errors)
    return found


def first_present(source: Source, raw_dir: str | Path, names: Sequence[str], mirrors: Mirrors = ()) -> tuple[str, Path]:
    """``(name, path)`` of the first of the alternative inputs ``names`` that is there (or brought from a mirror),
    e.g. an extracted folder before its archive; otherwise the FileNotFoundError of :func:`missing_error`, which
    lists them in the order of ``sources.yaml``."""
    for name in names:
        path = locate(source, raw_dir, name, mirrors)
        if path is not None:
            return name, path
    raise missing_error(source, raw_dir, [file.name for file in source.files if file.name in names], one_of=True)


__all__ = [
    "FETCHED_FILENAME",
    "STAMP_SUFFIX",
    "access_help",
    "check_file",
    "declared_file",
    "first_present",
    "is_verified",
    "locate",
    "mark_verified",
    "missing_error",
    "obtain",
    "obtain_declared",
    "stamp_path",
]
