"""What of each data set is on disk: missing, downloaded, verified or prepared.

Layout under a data root::

    raw/<data set>/<file>            the declared files of sources.yaml (a name ending in '/' is a folder)
    raw/<data set>/<file>.verified   stamp written by circle_repro.data.acquire once the file passed its checks
    prepared/<data set>/manifest.parquet

States: ``missing`` (a required file is absent), ``downloaded`` (every required file present),
``verified`` (every present declared file carries a valid stamp), ``prepared`` (the manifest exists);
an ``embedded`` data set (shipped in a Python package) is ``available (embedded)`` until prepared.
A stamp records the file's size and mtime, so a replaced file loses its verified state.

Standard library + PyYAML only (no torch): the status must come back in well under a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from circle_repro.data.acquire import check_file, is_verified, stamp_path
from circle_repro.data.sources import Source, SourceFile, load_sources
from circle_repro.layout import MANIFEST_FILENAME, prepared_dir, raw_dir
from circle_repro.names import unknown_name

STATES = ("missing", "downloaded", "verified", "prepared", "available (embedded)")


@dataclass(frozen=True)
class DatasetStatus:
    """The on-disk state of one data set (``detail`` explains a state that is short of the next one)."""

    name: str
    title: str
    access: str
    state: str
    size_bytes: int
    licence: str
    tables: tuple[str, ...]
    files_present: int
    files_required: int
    unverifiable: tuple[str, ...] = ()
    detail: str = ""
    unavailable: str | None = None  # why it cannot be prepared here (:func:`unavailable_reason`), None if it can


def _file_path(data_root: str | Path, name: str, file: SourceFile) -> Path:
    return raw_dir(data_root, name) / file.name.rstrip("/")


def verify_raw(name: str, data_root: str | Path, sources: dict[str, Source] | None = None) -> dict[str, str]:
    """Verify the present declared files of ``name`` and stamp each one that passes.

    Returns ``{file name: "verified" | "missing" | "no checksum declared"}``. A mismatch raises
    :class:`~circle_repro.data.download.ChecksumError` naming the file, and writes no stamp for it
    (:func:`circle_repro.data.acquire.check_file`).
    """
    sources = load_sources() if sources is None else sources
    try:
        source = sources[name]
    except KeyError:
        raise ValueError(unknown_name("data set", name, sources)) from None
    results = {}
    for file in source.files:
        path = _file_path(data_root, name, file)
        if not path.exists():
            results[file.name] = "missing"
        elif file.is_dir or not file.has_checksum:
            results[file.name] = "no checksum declared"
        else:
            stamp_path(path).unlink(missing_ok=True)
            check_file(path, file)
            results[file.name] = "verified"
    return results


def _tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when absent); links are not followed."""
    total = 0
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += _tree_size(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


UNAVAILABLE_ACCESS = ("manual", "withdrawn")


def unavailable_reason(source: Source, data_root: str | Path) -> str | None:
    """Why a manual or withdrawn data set cannot be prepared here (its required raw files are not
    all placed and it is not prepared), or None when it can. Cheap: looks at paths only."""
    name = source.name
    if source.access not in UNAVAILABLE_ACCESS or (prepared_dir(data_root, name) / MANIFEST_FILENAME).is_file():
        return None
    required = [f for f in source.files if not f.optional] or list(source.files)
    paths = [_file_path(data_root, name, f) for f in required]
    placed = (
        all(p.exists() for p in paths) if any(not f.optional for f in source.files) else any(p.exists() for p in paths)
    )
    if placed:
        return None
    where = ", ".join(str(p) for p in paths) if len(paths) < 4 else f"{raw_dir(data_root, name)}/"
    return f"{source.title} ({name}) is {source.access} and not placed: put {where} in place (circle-repro data status; instructions in sources.yaml)"


def dataset_status(source: Source, data_root: str | Path) -> DatasetStatus:
    """The state of one data set under ``data_root``."""
    name = source.name
    required = [f for f in source.files if not f.optional]
    present = [f for f in source.files if _file_path(data_root, name, f).exists()]
    present_required = [f for f in required if f in present]
    unverifiable = tuple(f.name for f in present if f.is_dir or not f.has_checksum)
    size = _tree_size(raw_dir(data_root, name)) + _tree_size(prepared_dir(data_root, name))
    manifest = prepared_dir(data_root, name) / MANIFEST_FILENAME
    detail = ""
    if manifest.is_file():
        state = "prepared"
    elif source.access == "embedded":
        state = "available (embedded)"
        detail = "shipped in a Python package; run `circle-repro data prepare`"
    elif len(present_required) < len(required) or not present:
        state = "missing"
        if present:
            detail = f"{len(present_required)} of {len(required)} required files present"
        elif source.access == "download":
            detail = "downloadable"
        else:
            detail = f"{source.access}: see instructions in sources.yaml"
    else:
        stamped = [f for f in present if f.name not in unverifiable and is_verified(_file_path(data_root, name, f))]
        if not unverifiable and len(stamped) == len(present):
            state = "verified"
        else:
            state = "downloaded"
            if unverifiable:
                detail = f"cannot be verified: no checksum declared for {', '.join(unverifiable)}"
            else:
                detail = "run verify_raw to check checksums"
    return DatasetStatus(
        name=name,
        title=source.title,
        access=source.access,
        state=state,
        size_bytes=size,
        licence=source.licence,
        tables=source.tables,
        files_present=len(present),
        files_required=len(required),
        unverifiable=unverifiable,
        detail=detail,
        unavailable=unavailable_reason(source, data_root),
    )


def data_status(data_root: str | Path, sources: dict[str, Source] | None = None) -> list[DatasetStatus]:
    """The state of every declared data set under ``data_root``, in the order of the sources file."""
    sources = load_sources() if sources is None else sources
    return [dataset_status(source, data_root) for source in sources.values()]


def format_size(size: int) -> str:
    """Bytes in a short human form: ``0 B``, ``512 B``, ``1.5 KiB``, ``1.1 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_status_table(statuses: list[DatasetStatus], licence_width: int = 40) -> str:
    """An aligned plain-text table: data set, access, state, size, licence, tables (and a note)."""
    header = ("data set", "access", "state", "size", "licence", "tables", "note")
    rows = [header]
    for status in statuses:
        licence = (
            status.licence if len(status.licence) <= licence_width else status.licence[: licence_width - 3] + "..."
        )
        rows.append(
            (
                status.name,
                status.access,
                status.state,
                format_size(status.size_bytes),
                licence,
                ",".join(status.tables) or "-",
                status.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        cells[3] = row[3].rjust(widths[3])  # sizes right-aligned
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    return "\n".join(lines)


__all__ = [
    "STATES",
    "DatasetStatus",
    "data_status",
    "dataset_status",
    "format_size",
    "format_status_table",
    "verify_raw",
]
