"""The manifest: the one contract between prepared data and training/evaluation.

A prepared data set is a folder holding ``manifest.parquet`` and the files it names. Each row is one
image: ``path`` (relative to the folder: a loose file, or ``<pack>.rec#<key>`` for record ``key`` of a pack in
the folder, see :mod:`circle_repro.data.image_reader`), integer ``label`` and ``split`` (train/test), plus the
optional evaluation columns ``camera``, ``role`` (query/gallery), ``template``, ``media``, ``pair_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from circle_repro.data.stamp import CONTENT_HASH_FILENAME, verify_files, write_stamp
from circle_repro.io import atomic_path
from circle_repro.layout import MANIFEST_FILENAME

REQUIRED_COLUMNS = ("path", "label", "split")
OPTIONAL_COLUMNS = ("camera", "role", "template", "media", "pair_id")
REID_COLUMNS = (*REQUIRED_COLUMNS, "camera", "role")  # a re-ID manifest: camera id; role on test rows only
SPLITS = ("train", "test")
ROLES = ("query", "gallery")


class ManifestError(ValueError):
    """A manifest breaks the contract; the message names the file, the column and the fix."""


def manifest_path(prepared_dir: str | Path) -> Path:
    """Where the manifest of a prepared data set lives."""
    return Path(prepared_dir) / MANIFEST_FILENAME


def validate_manifest(frame: pd.DataFrame, source: str | Path) -> None:
    """Raise ManifestError if ``frame`` breaks the manifest contract."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {missing}; a manifest needs {list(REQUIRED_COLUMNS)}. "
            "Re-run `circle-repro data prepare` for this data set."
        )
    unknown = sorted(set(frame.columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise ManifestError(
            f"{source}: unknown column(s) {unknown}; allowed optional columns: {list(OPTIONAL_COLUMNS)}"
        )
    if frame.empty:
        raise ManifestError(f"{source}: the manifest has no rows; re-run `circle-repro data prepare`")
    if not pd.api.types.is_integer_dtype(frame["label"]):
        raise ManifestError(f"{source}: column 'label' must hold integers, found dtype {frame['label'].dtype}")
    bad_splits = sorted(set(frame["split"]) - set(SPLITS))
    if bad_splits:
        raise ManifestError(f"{source}: column 'split' holds {bad_splits}; allowed values: {list(SPLITS)}")
    if "role" in frame.columns:
        bad_roles = sorted(set(frame["role"].dropna()) - set(ROLES))
        if bad_roles:
            raise ManifestError(f"{source}: column 'role' holds {bad_roles}; allowed values: {list(ROLES)}")
    if frame["path"].isna().any() or frame["path"].duplicated().any():
        raise ManifestError(f"{source}: column 'path' must be unique and non-empty")
    if (frame["path"].str.startswith("/") | frame["path"].str.contains(r"(?:^|/)\.\.(?:/|$)")).any():
        raise ManifestError(f"{source}: column 'path' must hold paths relative to the manifest's folder")


def write_manifest(frame: pd.DataFrame, prepared_dir: str | Path, files: pd.DataFrame | None = None) -> Path:
    """Validate a manifest, record its stamp (:func:`~circle_repro.data.stamp.write_stamp`: every file's
    size and hash, the content hash; ``files``: the images' rows where the preparer hashed them already),
    then write it atomically (last); return its path."""
    target = manifest_path(prepared_dir)
    validate_manifest(frame, target)
    frame = frame.reset_index(drop=True)
    write_stamp(frame, prepared_dir, files)
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def write_side_table(frame: pd.DataFrame, prepared_dir: str | Path, filename: str) -> Path:
    """Write an evaluation table beside the manifest (pairs, template pairs, noise lists) atomically."""
    target = Path(prepared_dir) / filename
    with atomic_path(target) as tmp:
        frame.reset_index(drop=True).to_parquet(tmp, index=False)
    return target


def read_side_table(prepared_dir: str | Path, filename: str, columns: Sequence[str], if_missing: str) -> pd.DataFrame:
    """Read an evaluation table beside the manifest; ManifestError when it or one of ``columns`` is absent
    (``if_missing``: what the user should do about a missing file)."""
    source = Path(prepared_dir) / filename
    if not source.is_file():
        raise ManifestError(f"{source}: not found; {if_missing}")
    frame = pd.read_parquet(source)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ManifestError(f"{source}: missing column(s) {missing}; expected {list(columns)}")
    return frame


def read_content_hash(prepared_dir: str | Path) -> str:
    """The content hash recorded when the data set was prepared."""
    source = Path(prepared_dir) / CONTENT_HASH_FILENAME
    if not source.is_file():
        raise ManifestError(f"{source}: not found; re-run `circle-repro data prepare` for this data set")
    return source.read_text().strip()


def read_manifest(prepared_dir: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read and validate a prepared data set's manifest, optionally one split only."""
    source = manifest_path(prepared_dir)
    if not source.is_file():
        raise ManifestError(f"{source}: not found; run `circle-repro data prepare` for this data set first")
    frame = pd.read_parquet(source)
    validate_manifest(frame, source)
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def verify_prepared(prepared_dir: str | Path, level: str = "sizes") -> None:
    """Check a prepared data set's files against the stamp recorded when it was prepared, before a step uses
    it (``level``: ``sizes``, ``full`` or ``none``; :func:`~circle_repro.data.stamp.verify_files`)."""
    verify_files(prepared_dir, read_manifest(prepared_dir), level)
