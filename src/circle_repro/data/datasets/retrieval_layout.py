"""Steps shared by the retrieval data sets (CUB-200-2011, Cars196, SOP): obtain and verify the raw
files, extract archives into a scratch folder, parse whitespace annotation tables, and store the
images with a class-disjoint manifest (``path``, ``label``, ``split``; query = gallery = test split).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from circle_repro.data.archive import safe_extract
from circle_repro.data.download import ChecksumError, fetch, verify
from circle_repro.data.image_store import ImageStore
from circle_repro.data.manifest import write_manifest
from circle_repro.data.sources import Source, SourceFile
from circle_repro.data.status import is_verified, mark_verified


class AnnotationError(ValueError):
    """A raw layout that does not match the data set's published format (file, line and fix named)."""


@dataclass(frozen=True)
class Sample:
    """One image to store: its extracted file, its path under ``images/``, class, split and provenance."""

    file: Path
    relative: str
    label: int
    split: str
    listed_in: str  # e.g. "CUB_200_2011/images.txt line 3"


# --- raw files ----------------------------------------------------------------------------------


def access_help(source: Source) -> str:
    """The instructions and substitutes of ``sources.yaml`` as one sentence block."""
    parts = [source.instructions or ""]
    if source.substitutes:
        parts.append("Substitutes: " + "; ".join(source.substitutes) + ".")
    return " ".join(p for p in parts if p)


def _declared(source: Source, name: str) -> SourceFile:
    for file in source.files:
        if file.name == name:
            return file
    raise KeyError(f"{source.name}: {name!r} is not declared in sources.yaml")


def _check_file(path: Path, file: SourceFile, verified_by_fetch: bool) -> None:
    """Size (where declared) and digests (unless ``fetch`` just checked them); stamp it verified."""
    size = path.stat().st_size
    fix = f"The file is corrupt, truncated or a different version: replace {path} with the original."
    if file.size_bytes is not None and size != file.size_bytes:
        raise ChecksumError(path, "size in bytes", str(file.size_bytes), str(size), fix)
    digests = {k: v for k, v in (("md5", file.md5), ("sha256", file.sha256)) if v}
    if digests and not verified_by_fetch:
        try:
            verify(path, sha256=file.sha256, md5=file.md5)
        except ChecksumError as err:
            raise ChecksumError(path, err.algorithm, err.expected, err.actual, fix) from None
    mark_verified(path, digests)


def present_in(raw_dir: Path, mirror: str | Path | None, names: Sequence[str]) -> bool:
    """Whether each of ``names`` is in ``raw_dir`` or in the local folder ``mirror``."""
    return all((raw_dir / n).is_file() or (mirror is not None and (Path(mirror) / n).is_file()) for n in names)


def obtain(source: Source, raw_dir: str | Path, names: Sequence[str],
           mirror: str | Path | None = None) -> dict[str, Path]:
    """The declared files ``names`` under ``raw_dir``, fetched (``access: download``) or copied from a local
    ``mirror`` folder when absent, and checked against sources.yaml; raise FileNotFoundError naming what
    to place where when a manual/withdrawn file is missing."""
    raw_dir = Path(raw_dir)
    paths: dict[str, Path] = {}
    missing = []
    for name in names:
        file = _declared(source, name)
        path = raw_dir / name
        if path.is_file() and is_verified(path):
            paths[name] = path
            continue
        fetched = False
        if source.access == "download" and file.url is not None:
            fetch(file.url, path, sha256=file.sha256, md5=file.md5, mirror=mirror)
            fetched = True
        elif not path.is_file() and mirror is not None and (Path(mirror) / name).is_file():
            fetch(str(Path(mirror) / name), path, sha256=file.sha256, md5=file.md5)
            fetched = True
        if not path.is_file():
            missing.append(name)
            continue
        _check_file(path, file, verified_by_fetch=fetched)
        paths[name] = path
    if missing:
        raise FileNotFoundError(f"{source.title}: missing {', '.join(missing)} in {raw_dir}/; place the file(s) "
                                f"there. {access_help(source)}")
    return paths


# --- extraction and annotation tables -----------------------------------------------------------


@contextlib.contextmanager
def scratch_dir(out_dir: str | Path) -> Iterator[Path]:
    """A temporary folder inside ``out_dir`` for extracted archives, always removed afterwards; on an
    error an ``out_dir`` created here is removed too when it is left empty."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=".extract-"))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract(archive: Path, scratch: Path) -> Path:
    """Safely extract ``archive`` into its own folder under ``scratch``; return that folder."""
    dest = scratch / archive.name
    safe_extract(archive, dest)
    return dest


def require(extracted: Path, member: str, archive: str) -> Path:
    """``extracted/member`` (``member`` as named inside ``archive``), or an AnnotationError saying it is missing."""
    path = extracted / member
    if not path.exists():
        raise AnnotationError(f"{archive}: {member} is missing from the archive; is this the original {archive}? "
                              "Replace it with the published file.")
    return path


def read_table(path: Path, fields: Sequence[str], display: str, *, header: bool = False,
               ints: Iterable[str] = ()) -> list[tuple[int, dict[str, str | int]]]:
    """Rows of a whitespace-separated text table as ``(line number, {field: value})``.

    The last field takes the rest of the line; ``ints`` fields must be integers; ``header`` skips
    (and checks) line 1. Errors name ``display``, the line and the expected fields.
    """
    ints = set(ints)
    expected = " ".join(f"<{f}>" for f in fields)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{display}: not UTF-8 text ({err}); the file is not in the published format") from None
    if header:
        if not lines or _is_row(lines[0], fields, ints):
            raise AnnotationError(f"{display} line 1: expected a header line ({' '.join(fields)}), got "
                                  f"{lines[0] if lines else ''!r}; the file is not in the published format")
        lines = lines[1:]
    rows = []
    for number, line in enumerate(lines, start=2 if header else 1):
        if not line.strip():
            continue
        values = line.split(maxsplit=len(fields) - 1)
        if len(values) != len(fields):
            raise AnnotationError(f"{display} line {number}: expected {expected}, got {line!r}")
        row: dict[str, str | int] = dict(zip(fields, values, strict=True))
        for field in ints:
            try:
                row[field] = int(values[fields.index(field)])
            except ValueError:
                raise AnnotationError(f"{display} line {number}: field <{field}> must be an integer, got "
                                      f"{values[fields.index(field)]!r} in {line!r}") from None
        rows.append((number, row))
    if not rows:
        raise AnnotationError(f"{display}: no rows; expected lines of {expected}")
    return rows


def _is_row(line: str, fields: Sequence[str], ints: set[str]) -> bool:
    values = line.split(maxsplit=len(fields) - 1)
    if len(values) != len(fields):
        return False
    return all(values[fields.index(f)].lstrip("-").isdigit() for f in ints)


def class_split(label: int, train_classes: range, test_classes: range, where: str) -> str:
    """``train``/``test`` for the class-disjoint split; an AnnotationError for a class in neither range."""
    if label in train_classes:
        return "train"
    if label in test_classes:
        return "test"
    raise AnnotationError(f"{where}: class {label} is outside {train_classes.start}..{test_classes.stop - 1}")


# --- images and manifest ------------------------------------------------------------------------


def write_prepared(samples: Sequence[Sample], out_dir: str | Path, resize_short_side: int | None = None) -> Path:
    """Store every sample's image (undecodable ones are skipped and counted) and write the manifest last."""
    listed: dict[str, str] = {}
    for sample in samples:
        relative = PurePosixPath(sample.relative)
        if relative.is_absolute() or ".." in relative.parts:
            raise AnnotationError(f"{sample.listed_in}: image path {sample.relative!r} must stay inside the data set")
        if sample.relative in listed:
            raise AnnotationError(f"{sample.listed_in}: image {sample.relative!r} is already listed in "
                                  f"{listed[sample.relative]}")
        listed[sample.relative] = sample.listed_in
    absent = [s for s in samples if not s.file.is_file()]
    if absent:
        first = absent[0]
        raise AnnotationError(f"{first.listed_in}: names {first.relative!r}, which the archive does not contain "
                              f"({len(absent)} listed image(s) missing); the images and annotations do not match")
    rows = []
    with ImageStore(out_dir, resize_short_side) as store:
        for sample in samples:
            stored = store.add(sample.relative, sample.file.read_bytes(), f"{sample.listed_in} ({sample.relative})")
            if stored is not None:
                rows.append({"path": stored, "label": sample.label, "split": sample.split})
        store.commit()
    frame = pd.DataFrame(rows, columns=["path", "label", "split"]).astype({"label": "int64"})
    return write_manifest(frame, out_dir)


__all__ = [
    "AnnotationError", "Sample", "access_help", "class_split", "extract", "obtain", "present_in", "read_table",
    "require", "scratch_dir", "write_prepared",
]
