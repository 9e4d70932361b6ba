"""The stamp of a prepared data set: what its files were when it was prepared, and the check against it.

Preparation records, beside the manifest, ``files.parquet`` (per image the manifest names: ``path``,
``bytes``, ``sha256``; per pack those images lie in, ``images.rec`` say: ``path`` and ``bytes`` with an
empty ``sha256``) and ``content.sha256`` (sha256 over the manifest rows and their images). Training and
evaluation check the folder against the stamp before they start (:func:`verify_files`): ``sizes`` (the
default) compares the image count and the size of every loose image and every pack, which finds a
missing, emptied, truncated or swapped file for the cost of one ``stat`` per file; ``full`` also
rehashes every image, which finds a same-size swap too; ``none`` skips the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from circle_repro.data.image_reader import ImageReader, split_pack_member
from circle_repro.io import atomic_open, atomic_path

FILES_FILENAME = "files.parquet"  # path, bytes, sha256 of every file the manifest names
CONTENT_HASH_FILENAME = "content.sha256"  # sha256 over the manifest rows and the bytes of every file they name
VERIFY_LEVELS = ("sizes", "full", "none")


class DataStampError(ValueError):
    """A prepared data set no longer matches what was recorded when it was prepared."""


def file_table(prepared_dir: str | Path, paths: Sequence[str]) -> pd.DataFrame:
    """``path``, ``bytes`` and ``sha256`` of each image of ``paths`` (relative to ``prepared_dir``: a
    loose file or a pack member), read once."""
    images = ImageReader(prepared_dir, list(paths))
    return image_table([image_row(path, images.read(index)) for index, path in enumerate(paths)])


def image_table(rows: Sequence[dict[str, object]]) -> pd.DataFrame:
    """``files.parquet`` rows of images (:func:`image_row`) as a table."""
    return pd.DataFrame(list(rows), columns=["path", "bytes", "sha256"]).astype({"bytes": "int64"})


def _packs(paths: Sequence[str]) -> list[str]:
    """The packs (``images.rec``, relative paths) that pack members among ``paths`` lie in."""
    return sorted({member[0] for member in map(split_pack_member, paths) if member is not None})


def _pack_table(prepared_dir: str | Path, packs: Sequence[str]) -> pd.DataFrame:
    root = Path(prepared_dir)
    rows = [{"path": pack, "bytes": (root / pack).stat().st_size, "sha256": ""} for pack in packs]
    return pd.DataFrame(rows, columns=["path", "bytes", "sha256"]).astype({"bytes": "int64"})


def stamp_hash(frame: pd.DataFrame, files: pd.DataFrame) -> str:
    """The content hash of a manifest ``frame`` whose files are ``files``: sha256 over each row (all
    columns, sorted by path) followed by the sha256 digest of the file it names."""
    digest_of = dict(zip(files["path"], files["sha256"], strict=True))
    digest = hashlib.sha256()
    for row in frame.sort_values("path").itertuples(index=False):
        digest.update("\t".join(map(str, row)).encode() + b"\n")
        digest.update(bytes.fromhex(digest_of[row.path]))
    return digest.hexdigest()


def image_row(path: str, data: bytes) -> dict[str, object]:
    """The ``files.parquet`` row of one image: its manifest ``path``, ``bytes`` and ``sha256``."""
    return {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_stamp(frame: pd.DataFrame, prepared_dir: str | Path, files: pd.DataFrame | None = None) -> str:
    """Record ``files.parquet`` and ``content.sha256`` of a manifest ``frame`` (atomically); return the hash.

    ``files``: the images' rows (:func:`image_row`) where the preparer hashed them while writing or checking
    them, so that they are not read again; it must name exactly the manifest's paths. Default: read them.
    """
    paths = frame["path"].tolist()
    if files is None:
        files = file_table(prepared_dir, paths)
    elif len(files) != len(paths) or set(files["path"]) != set(paths):
        raise ValueError(
            f"{prepared_dir}: the hashed images are not the manifest's ({len(files)} vs {len(paths)} rows)"
        )
    content = stamp_hash(frame, files)
    packs = _pack_table(prepared_dir, _packs(paths))
    with atomic_path(Path(prepared_dir) / FILES_FILENAME) as tmp:
        pd.concat([files, packs], ignore_index=True).to_parquet(tmp, index=False)
    with atomic_open(Path(prepared_dir) / CONTENT_HASH_FILENAME) as fh:
        fh.write(content + "\n")
    return content


def _problem(source: Path, first: str, count: int, what: str) -> DataStampError:
    more = f" ({count} file(s) in all)" if count > 1 else ""
    return DataStampError(
        f"{source}: {first} {what}{more}; the prepared data no longer is what it was when prepared (its "
        f"{CONTENT_HASH_FILENAME} would be wrong). Re-run `circle-repro data prepare` for this data set"
    )


def verify_files(prepared_dir: str | Path, frame: pd.DataFrame, level: str = "sizes") -> None:
    """Check the files of a manifest ``frame`` against the stamp in ``prepared_dir`` at ``level``
    (``sizes``, ``full`` or ``none``; see the module docstring); DataStampError naming the first bad file."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"data verification level must be one of {list(VERIFY_LEVELS)}, got {level!r}")
    if level == "none":
        return
    root = Path(prepared_dir)
    source = root / FILES_FILENAME
    if not source.is_file():
        raise DataStampError(
            f"{source}: not found: this prepared data set has no record of its files to check them against; "
            "re-run `circle-repro data prepare` for it (or skip the check with --verify-data none)"
        )
    recorded = pd.read_parquet(source)
    unrecorded = sorted(set(frame["path"]) - set(recorded["path"]))
    if unrecorded:
        raise _problem(root, unrecorded[0], len(unrecorded), f"is named by the manifest but not in {FILES_FILENAME}")
    packs = _packs(frame["path"].tolist())
    unrecorded_packs = sorted(set(packs) - set(recorded["path"]))
    if unrecorded_packs:
        raise _problem(root, unrecorded_packs[0], len(unrecorded_packs), f"holds images but is not in {FILES_FILENAME}")
    recorded = recorded.set_index("path")
    sized = recorded.loc[[path for path in frame["path"] if split_pack_member(path) is None] + packs]
    recorded = recorded.loc[frame["path"]]
    sizes = {}
    for path in sized.index:
        try:
            sizes[path] = (root / path).stat().st_size
        except FileNotFoundError:
            sizes[path] = -1
    actual = pd.Series(sizes, dtype="int64").reindex(sized.index)
    missing = actual.index[actual < 0]
    if len(missing):
        raise _problem(root, missing[0], len(missing), "is missing")
    resized = actual.index[actual != sized["bytes"]]
    if len(resized):
        path = resized[0]
        raise _problem(root, path, len(resized), f"has {actual[path]} bytes, {sized.at[path, 'bytes']} when prepared")
    if level == "full":
        rehashed = file_table(root, list(recorded.index)).set_index("path")["sha256"]
        changed = rehashed.index[rehashed != recorded["sha256"]]
        if len(changed):
            raise _problem(root, changed[0], len(changed), "has other bytes than when prepared (sha256 differs)")
        hash_file = root / CONTENT_HASH_FILENAME
        recorded_hash = hash_file.read_text().strip() if hash_file.is_file() else None
        if recorded_hash != stamp_hash(frame, recorded.reset_index()):
            raise DataStampError(
                f"{hash_file}: missing or not the hash of the manifest and its files (manifest rows edited?); "
                "re-run `circle-repro data prepare` for this data set"
            )
