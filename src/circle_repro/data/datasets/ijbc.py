"""IJB-C 1:1 verification (IARPA Janus Benchmark C), in insightface's packaging; the paper's Table 3.

Raw (insightface ``recognition/arcface_torch/eval_ijbc.py``): gated by NIST, placed
by hand under ``data/raw/ijbc/`` as insightface's ``IJB_release.tar`` (its ``IJBC/`` folder is found up
to three folders deep) or as the extracted ``IJBC/`` folder::

    IJBC/loose_crop/<n>.jpg                   469,375 loose face crops
    IJBC/meta/ijbc_face_tid_mid.txt           "<image> <template id> <media id>"             e.g. "1.jpg 1 69544"
    IJBC/meta/ijbc_name_5pts_score.txt        "<image> x1 y1 ... x5 y5 <detector score>"    (same images)
    IJBC/meta/ijbc_template_pair_label.txt    "<template 1> <template 2> <0|1>"             15,658,489 pairs

Single spaces separate the fields (insightface reads them with ``pd.read_csv(sep=' ', header=None)``).

Prepared: each crop is aligned with its five landmarks to the 112 x 112 ArcFace template
(:mod:`circle_repro.data.face_alignment`, as insightface's ``cv2.warpAffine``) and stored as JPEG
(quality 95) under ``images/<image>``. Manifest: ``path``, ``label`` (:data:`NO_IDENTITY`: the 1:1
meta names no subject), ``split`` = test, ``template``, ``media``, in the order of
``ijbc_face_tid_mid.txt``. Beside it (written atomically before the manifest):

* ``template_pairs.parquet``: ``t1``, ``t2`` (int64), ``label`` (int8, 1 = same subject), in file
  order (pairs of a template whose images were all undecodable are dropped, with a warning);
* ``detector_scores.parquet``: ``path``, ``detector_score`` (float32, the faceness score that
  insightface's ``use_detector_score`` multiplies into the feature), one row per manifest row.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.data.acquire import first_present, obtain_declared
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.face_alignment import aligned_jpeg
from circle_repro.data.image_store import UNDECODABLE
from circle_repro.data.manifest import read_side_table, write_manifest, write_side_table
from circle_repro.data.prepared import committed_store, raw_tree
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["ijbc"]  # accepted archive/folder and instructions: data/sources.yaml
ARCHIVE_NAME = "IJB_release.tar"
ROOT_NAME = "IJBC"
TEMPLATE_MEDIA_FILE = "ijbc_face_tid_mid.txt"
LANDMARKS_FILE = "ijbc_name_5pts_score.txt"
PAIRS_FILE = "ijbc_template_pair_label.txt"
REPREPARE = "re-run `circle-repro data prepare` for ijbc"
TEMPLATE_PAIRS_FILENAME = "template_pairs.parquet"
DETECTOR_SCORES_FILENAME = "detector_scores.parquet"
NO_IDENTITY = -1
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
ALIGN_BATCH = 1024  # crops aligned per batch: bounds the aligned bytes held in memory
LANDMARK_COLUMNS = tuple(f"{axis}{i}" for i in range(1, 6) for axis in "xy")
# meta file -> (column names, dtypes, the line format for error messages)
META_FORMATS = {
    TEMPLATE_MEDIA_FILE: (
        ("name", "template", "media"),
        (str, np.int64, np.int64),
        "'<image> <template id> <media id>'",
    ),
    LANDMARKS_FILE: (
        ("name", *LANDMARK_COLUMNS, "detector_score"),
        (str, *[np.float64] * 10, np.float64),
        "'<image> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 <detector score>'",
    ),
    PAIRS_FILE: (("t1", "t2", "label"), (np.int64, np.int64, np.int64), "'<template 1> <template 2> <label 0|1>'"),
}


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """The IJB-C archive or extracted folder present in ``raw_dir`` (the archive copied from ``mirror``
    if given). FileNotFoundError says what to request from NIST and where to put it."""
    return obtain_declared(SOURCE, raw_dir, mirrors=(mirror,))


def _first_bad_line(path: Path, names: tuple[str, ...], types: tuple[type, ...], line_format: str) -> str:
    """Why the first malformed line of a meta file is malformed (``file:line: reason``), or ""."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.rstrip().split(" ")
            if len(fields) != len(names):
                return (
                    f"{path}:{number}: expected {len(names)} space-separated fields {line_format}, "
                    f"got {line.rstrip()!r}"
                )
            for name, kind, value in zip(names, types, fields, strict=True):
                if kind is str:
                    if not value:
                        return f"{path}:{number}: empty {name} field in {line.rstrip()!r} ({line_format})"
                    continue
                try:
                    number_value = (int if kind is np.int64 else float)(value)
                except ValueError:
                    number_value = None
                if number_value is None or not math.isfinite(number_value):
                    return f"{path}:{number}: field {name!r} is {value!r}, not a finite number ({line_format})"
    return ""


def read_meta_file(path: str | Path) -> pd.DataFrame:
    """One of the three meta files as a table (columns of :data:`META_FORMATS`); ValueError naming the
    file, the line and the fault on a malformed line, FileNotFoundError when it is absent."""
    path = Path(path)
    names, types, line_format = META_FORMATS[path.name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: IJB-C meta file not found; the {ROOT_NAME}/meta/ folder of {ARCHIVE_NAME} holds it"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file; expected lines {line_format}")
    try:
        frame = pd.read_csv(path, sep=" ", header=None, dtype=dict(enumerate(types)), keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(
            _first_bad_line(path, names, types, line_format) or f"{path}: cannot be read as lines {line_format}: {err}"
        ) from None
    if frame.shape[1] == len(names) + 1 and (frame[len(names)].astype(str) == "").all():
        frame = frame.drop(columns=len(names))  # a trailing space on every line
    if frame.shape[1] != len(names):
        raise ValueError(
            _first_bad_line(path, names, types, line_format)
            or f"{path}: {frame.shape[1]} fields per line; expected {len(names)}: {line_format}"
        )
    frame.columns = list(names)
    return frame


def _check_names(frame: pd.DataFrame, path: Path) -> None:
    """Image names are non-empty and listed once."""
    empty = frame["name"] == ""
    if empty.any():
        raise ValueError(f"{path}:{int(np.flatnonzero(empty)[0]) + 1}: empty image name")
    duplicated = frame["name"].duplicated()
    if duplicated.any():
        line = int(np.flatnonzero(duplicated)[0]) + 1
        raise ValueError(f"{path}:{line}: image {frame['name'][line - 1]!r} is listed twice")


def read_meta(meta_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(images, pairs)`` of an ``IJBC/meta`` folder, cross-checked.

    ``images``: one row per crop in ``ijbc_face_tid_mid.txt`` order with ``name``, ``template``,
    ``media``, the ten landmark coordinates and ``detector_score``. ``pairs``: ``t1``, ``t2``,
    ``label`` (int8). Raises ValueError when the two image lists differ, a pair label is not 0/1, or
    a pair names a template without images.
    """
    meta_dir = Path(meta_dir)
    media = read_meta_file(meta_dir / TEMPLATE_MEDIA_FILE)
    landmarks = read_meta_file(meta_dir / LANDMARKS_FILE)
    pairs = read_meta_file(meta_dir / PAIRS_FILE)
    _check_names(media, meta_dir / TEMPLATE_MEDIA_FILE)
    _check_names(landmarks, meta_dir / LANDMARKS_FILE)
    only_media = sorted(set(media["name"]) - set(landmarks["name"]))
    only_landmarks = sorted(set(landmarks["name"]) - set(media["name"]))
    if only_media or only_landmarks:
        raise ValueError(
            f"{meta_dir}: {TEMPLATE_MEDIA_FILE} and {LANDMARKS_FILE} list different images "
            f"({len(only_media)} only in the first, e.g. {only_media[:3]}; {len(only_landmarks)} only in the second, "
            f"e.g. {only_landmarks[:3]}); both must come from the same insightface release"
        )
    bad_label = ~pairs["label"].isin([0, 1])
    if bad_label.any():
        line = int(np.flatnonzero(bad_label)[0]) + 1
        raise ValueError(f"{meta_dir / PAIRS_FILE}:{line}: label {pairs['label'][line - 1]} is not 0 or 1")
    known = pd.Index(media["template"].unique())
    for column in ("t1", "t2"):
        unknown = ~pairs[column].isin(known)
        if unknown.any():
            line = int(np.flatnonzero(unknown)[0]) + 1
            raise ValueError(
                f"{meta_dir / PAIRS_FILE}:{line}: template {pairs[column][line - 1]} has no image in "
                f"{TEMPLATE_MEDIA_FILE}; the meta files do not belong together"
            )
    images = media.merge(landmarks, on="name", how="left", validate="one_to_one")
    return images, pairs.astype({"label": np.int8})


def _find_root(tree: Path) -> Path | None:
    """The ``IJBC`` folder (holding ``meta/ijbc_face_tid_mid.txt``): ``tree`` itself or a folder named so at
    most three levels down."""
    candidates = [tree] + [c for depth in range(4) for c in sorted(tree.glob("/".join(["*"] * depth + [ROOT_NAME])))]
    return next((c for c in candidates if c.name == ROOT_NAME and (c / "meta" / TEMPLATE_MEDIA_FILE).is_file()), None)


@contextlib.contextmanager
def _ijbc_root(raw_dir: Path, out_dir: Path) -> Iterator[Path]:
    """The ``IJBC`` folder: ``raw_dir/IJBC`` itself, else found in a scratch extraction of the archive."""
    _, source = first_present(SOURCE, raw_dir, [f"{ROOT_NAME}/", ARCHIVE_NAME])
    with raw_tree(source, out_dir) as tree:
        root = _find_root(tree)
        if root is None:
            raise FileNotFoundError(
                f"{source}: holds no {ROOT_NAME}/meta/{TEMPLATE_MEDIA_FILE}; is it insightface's IJB test suite?"
            )
        yield root


def _aligned_or_reason(file: Path, landmarks: np.ndarray) -> tuple[bytes | None, str]:
    """The aligned JPEG of one crop, or None and why it could not be decoded or aligned."""
    raw = file.read_bytes()
    try:
        return aligned_jpeg(raw, landmarks), ""
    except UNDECODABLE as err:
        return None, f"{type(err).__name__}: {err}"


def _store_aligned(
    images: pd.DataFrame, crops: Path, out_dir: Path, resize_short_side: int | None, workers: int
) -> pd.DataFrame:
    """Align (``workers`` threads, in batches) and store every crop; return the rows kept, ``path`` set
    to the stored path. Undecodable crops and degenerate landmarks are skipped and counted."""
    files = [crops / name for name in images["name"]]
    coordinates = images[list(LANDMARK_COLUMNS)].to_numpy()
    stored_paths: list[str | None] = []
    with committed_store(out_dir, resize_short_side, images=len(files)) as store, ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(files), ALIGN_BATCH):
            batch = slice(start, start + ALIGN_BATCH)
            for name, file, (data, reason) in zip(
                images["name"][batch],
                files[batch],
                pool.map(_aligned_or_reason, files[batch], coordinates[batch]),
                strict=True,
            ):
                if data is None:
                    store.skipped.append({"source": str(file), "reason": reason})
                    stored_paths.append(None)
                else:
                    stored_paths.append(store.add(name, data, str(file)))
    kept = images.assign(path=stored_paths)
    return kept[kept["path"].notna()].reset_index(drop=True)


def prepare_raw(
    raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None, workers: int = DEFAULT_WORKERS
) -> Path:
    """Read and check the meta files, align and store the crops, write the template pairs, the
    detector scores and (last) the manifest; return the manifest path.

    ``resize_short_side`` rescales the aligned 112 x 112 faces (None keeps them); ``workers`` threads
    decode and align crops (the result does not depend on it).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    with _ijbc_root(raw_dir, out_dir) as root:
        images, pairs = read_meta(root / "meta")
        crops = root / "loose_crop"
        missing = [name for name in images["name"] if not (crops / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{crops}: {len(missing)} image(s) of {TEMPLATE_MEDIA_FILE} not found, e.g. "
                f"{missing[:3]}; the crops and the meta files do not belong together"
            )
        kept = _store_aligned(images, crops, out_dir, resize_short_side, workers)
    lost = ~(pairs["t1"].isin(kept["template"]) & pairs["t2"].isin(kept["template"]))
    if lost.any():
        warnings.warn(
            f"{out_dir}: {int(lost.sum())} template pair(s) dropped: a template lost all its images "
            "(undecodable crops, see skipped_images.json)",
            stacklevel=2,
        )
    write_side_table(pairs[~lost].reset_index(drop=True), out_dir, TEMPLATE_PAIRS_FILENAME)
    scores = kept[["path", "detector_score"]].astype({"detector_score": np.float32})
    write_side_table(scores, out_dir, DETECTOR_SCORES_FILENAME)
    frame = pd.DataFrame(
        {
            "path": kept["path"],
            "label": np.full(len(kept), NO_IDENTITY, dtype=np.int64),
            "split": "test",
            "template": kept["template"].astype(np.int64),
            "media": kept["media"].astype(np.int64),
        }
    )
    return write_manifest(frame, out_dir)


def prepare(
    out_dir: str | Path,
    raw_dir: str | Path,
    mirror: str | Path | None = None,
    *,
    resize_short_side: int | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """Check the raw inputs (``fetch_raw``), then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side, workers=workers)


def read_template_pairs(prepared_dir: str | Path) -> pd.DataFrame:
    """The template pairs of a prepared IJB-C: ``t1``, ``t2``, ``label`` (1 = genuine), in file order."""
    return read_side_table(prepared_dir, TEMPLATE_PAIRS_FILENAME, ("t1", "t2", "label"), REPREPARE)


def read_detector_scores(prepared_dir: str | Path) -> pd.DataFrame:
    """The detector (faceness) score of each prepared image: ``path``, ``detector_score``."""
    return read_side_table(prepared_dir, DETECTOR_SCORES_FILENAME, ("path", "detector_score"), REPREPARE)


ENTRY = DatasetEntry(name="ijbc", prepare=prepare, fetch=fetch_raw, transform="face", in_channels=3)
