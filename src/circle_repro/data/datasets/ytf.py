"""YouTube Faces (Wolf et al. 2011): 3,425 videos of 1,595 people, video-pair verification (paper Table 2).

Raw (placed by hand after the form on the official YouTube Faces page): ``data/raw/ytf/`` holds
``YouTubeFaces.tar.gz`` (extracted into a scratch folder with ``safe_extract``) or the already
extracted ``YouTubeFaces/`` folder, which is used as it is when present.

Frames: ``aligned_images_DB/<person>/<video>/aligned_detect_<video>.<frame>.jpg``, the database's own
loose face crops. Each is aligned with five landmarks to the 112 x 112 ArcFace template, the geometry
of the training faces (:mod:`circle_repro.data.face_alignment`), and stored as JPEG. insightface's YTF
evaluation (``src/eval/ytf.py``) feeds 112 x 112 frames to the network as they are, listed from
``aligned_images_DB`` by ``src/data/dir2lst_ytf.py``; its 5-point preprocessing
(``src/common/face_preprocess.py``) warps a face with five detected landmarks onto this template, as the
ArcFace, CosFace and SphereFace papers align their test faces (MTCNN landmarks, similarity transform).
The landmarks come from a file the user places, ``data/raw/ytf/ytf_landmarks.txt``
(:data:`LANDMARKS_FILE`), one line per frame::

    <person>/<video>/<frame file> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5

whitespace-separated; pixel coordinates in the ``aligned_images_DB`` frame of the left eye, right eye,
nose tip, left and right mouth corner as seen in the image (the order of insightface's template), e.g.
written by a 5-point detector such as MTCNN run over ``aligned_images_DB`` (MTCNN returns x1..x5 then
y1..y5: interleave them). A frame without a line (no face detected) is skipped and counted like an
undecodable one. Manifest rows (``split`` = ``test``), videos in (person name, video number) order and
frames in frame order:

- ``label``: the person's index among the sorted person names (as insightface ``dir2lst_ytf.py``);
- ``template`` and ``media``: the video's index in that video order (one media per template);
- ``path``: ``images/<person>/<video>/aligned_detect_<video>.<frame>.jpg``.

Pairs: the 5,000 video pairs of the 10 splits, in file order, written to ``video_pairs.parquet``
(:func:`write_video_pairs`): ``template_a``, ``template_b`` (manifest ``template`` values),
``issame`` (bool) and ``fold`` (the split number 1..10). They come from ``splits.txt`` (at the top
of ``YouTubeFaces/`` or in ``meta_data/``), read the way insightface ``src/eval/ytf.py`` reads it
(a text format not checked against a real copy): lines starting with ``split`` are headers, fields
are comma-separated, field 0 is the split number, fields 2 and 3 the videos ``<person>/<video>``
and the last field is-same (0/1). Without ``splits.txt``, ``meta_data/meta_and_splits.mat`` gives
the same list (``Splits[pair, column, split]``: 1-based indices into ``video_names``, then
is-same; bob.db.youtube). ``corrected_splits=True`` reads the errata ``data/raw/ytf/splits_corrected.txt``
(same text format) instead; ``YTFErrors.csv`` is not applied.

Video embedding (evaluation): the mean of the L2-normalised (flip-summed) embeddings of **all**
frames of the video, L2-normalised again, scored by cosine similarity (insightface
``src/eval/ytf.py`` ``get_feature``); this is
``evaluation.ijb.template_features(feats, template, media, norm_score=False)``.

A frame that cannot be decoded or has no landmarks is skipped and counted (``skipped_images.json``); a
pair whose video has no frame left is left out with a warning.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from circle_repro.data.acquire import first_present, missing_error
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.face_alignment import aligned_jpeg
from circle_repro.data.image_store import UNDECODABLE, SkippedImagesWarning
from circle_repro.data.manifest import ManifestError, read_side_table, write_manifest, write_side_table
from circle_repro.data.prepared import committed_store, raw_tree
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["ytf"]
ARCHIVE = "YouTubeFaces.tar.gz"
FOLDER = "YouTubeFaces/"
CORRECTED_SPLITS = "splits_corrected.txt"
SPLITS_CANDIDATES = ("splits.txt", "meta_data/splits.txt")
SPLITS_MAT = "meta_data/meta_and_splits.mat"
ALIGNED = "aligned_images_DB"
FRAME_NAME = re.compile(r"aligned_detect_(\d+)\.(\d+)\.jpg")
VIDEO_ID = re.compile(r"(?P<person>[^/]+)/(?P<video>\d+)")
N_FOLDS = 10
VIDEO_PAIRS_FILENAME = "video_pairs.parquet"
VIDEO_PAIR_COLUMNS = ("template_a", "template_b", "issame", "fold")
LANDMARKS_FILE = "ytf_landmarks.txt"
LANDMARKS_LINE = "'<person>/<video>/<frame file> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5'"
FRAME_KEY = re.compile(r"[^/\s]+/\d+/[^/\s]+")
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
ALIGN_BATCH = 1024  # frames aligned per batch: bounds the aligned bytes held in memory


class Video(NamedTuple):
    """One video folder of ``aligned_images_DB``: its frames sorted by frame number."""

    person: str
    number: int
    frames: tuple[Path, ...]

    @property
    def video_id(self) -> str:
        """``<person>/<video>``, as the split files name it."""
        return f"{self.person}/{self.number}"


class VideoPair(NamedTuple):
    """One line of a split file."""

    fold: int
    first: str
    second: str
    issame: bool


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """``{name: path}`` of the extracted folder (preferred) or the tarball in ``raw_dir`` (copied from ``mirror``)."""
    name, path = first_present(SOURCE, raw_dir, [FOLDER, ARCHIVE], mirrors=(mirror,))
    return {name: path}


def scan_videos(aligned_dir: Path) -> list[Video]:
    """Every video of ``aligned_images_DB`` in (person, video number) order; files other than ``*.jpg`` are ignored."""
    if not aligned_dir.is_dir():
        raise FileNotFoundError(
            f"{aligned_dir}: not found; is this the YouTubeFaces folder (aligned_images_DB/ inside)?"
        )
    videos = []
    for person in sorted(p for p in aligned_dir.iterdir() if p.is_dir()):
        folders = [f for f in person.iterdir() if f.is_dir()]
        for folder in folders:
            if not folder.name.isdigit():
                raise ValueError(f"{folder}: a video folder must be named by its video number")
        for folder in sorted(folders, key=lambda f: int(f.name)):
            frames = []
            for file in folder.iterdir():
                if not file.name.lower().endswith(".jpg"):
                    continue
                match = FRAME_NAME.fullmatch(file.name)
                if match is None or int(match.group(1)) != int(folder.name):
                    raise ValueError(f"{file}: frame name does not match 'aligned_detect_{folder.name}.<frame>.jpg'")
                frames.append((int(match.group(2)), file))
            videos.append(Video(person.name, int(folder.name), tuple(file for _, file in sorted(frames))))
    if not videos:
        raise ValueError(f"{aligned_dir}: no video folders <person>/<video>/ found")
    return videos


def _pair(where: str, fold: int, first: str, second: str, issame: str) -> VideoPair:
    """A checked pair; video ids are normalised to ``<person>/<video number without leading zeros>``."""
    if not 1 <= fold <= N_FOLDS:
        raise ValueError(f"{where}: split number {fold} is outside 1..{N_FOLDS}")
    videos = []
    for video in (first, second):
        match = VIDEO_ID.fullmatch(video)
        if match is None:
            raise ValueError(f"{where}: video {video!r} is not '<person>/<video number>'")
        videos.append(f"{match['person']}/{int(match['video'])}")
    if issame not in ("0", "1"):
        raise ValueError(f"{where}: is-same flag {issame!r} is not 0 or 1")
    return VideoPair(fold, *videos, issame == "1")


def read_splits_txt(path: Path) -> list[VideoPair]:
    """The pairs of a ``splits.txt``-format file, in file order."""
    pairs = []
    with open(path, encoding="utf-8-sig") as fh:
        for line_number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.lower().startswith("split"):
                continue
            fields = [field.strip() for field in line.split(",")]
            if len(fields) < 5 or not fields[0].isdigit():
                raise ValueError(
                    f"{path}:{line_number}: expected '<split>, <pair>, <person>/<video>, "
                    f"<person>/<video>, ..., <is same>', got {line!r}"
                )
            pairs.append(_pair(f"{path}:{line_number}", int(fields[0]), fields[2], fields[3], fields[-1]))
    if not pairs:
        raise ValueError(f"{path}: no pair lines found")
    return pairs


def read_splits_mat(path: Path) -> list[VideoPair]:
    """The pairs of ``meta_and_splits.mat`` in split order, then pair order within the split."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True)
    except (ValueError, OSError, TypeError) as err:
        raise ValueError(f"{path}: not a readable MATLAB file ({err})") from None
    for key in ("Splits", "video_names"):
        if key not in mat:
            raise ValueError(f"{path}: variable {key!r} not found; expected Splits and video_names")
    splits, names = np.asarray(mat["Splits"]), [str(name) for name in np.atleast_1d(mat["video_names"])]
    if splits.ndim != 3 or splits.shape[1] < 3:
        raise ValueError(f"{path}: Splits must be (pairs, >=3, splits), got shape {splits.shape}")
    pairs = []
    for fold in range(splits.shape[2]):
        for row in range(splits.shape[0]):
            first, second, same = (int(v) for v in splits[row, :3, fold])
            if not (1 <= first <= len(names) and 1 <= second <= len(names)):
                raise ValueError(f"{path}: Splits[{row}, :, {fold}] indexes a video outside 1..{len(names)}")
            pairs.append(
                _pair(f"{path}: Splits[{row}, :, {fold}]", fold + 1, names[first - 1], names[second - 1], str(same))
            )
    return pairs


def read_splits(root: Path) -> list[VideoPair]:
    """The video pairs of a ``YouTubeFaces`` folder: ``splits.txt`` if present, else ``meta_and_splits.mat``."""
    for name in SPLITS_CANDIDATES:
        if (root / name).is_file():
            return read_splits_txt(root / name)
    if (root / SPLITS_MAT).is_file():
        return read_splits_mat(root / SPLITS_MAT)
    raise FileNotFoundError(
        f"{root}: neither {' nor '.join(SPLITS_CANDIDATES)} nor {SPLITS_MAT} found; "
        "the YouTubeFaces folder is incomplete"
    )


def landmarks_missing_error(path: Path) -> FileNotFoundError:
    """The error for an absent landmark file: what it holds, how to make it and where it goes."""
    return FileNotFoundError(
        f"{path}: not found. The YTF frames are aligned to the 112 x 112 ArcFace template of the training faces, "
        "which needs five landmarks per frame. Run a 5-point face detector (insightface aligns YTF with MTCNN) "
        f"over YouTubeFaces/aligned_images_DB/ and write {path} with one line per frame: {LANDMARKS_LINE} "
        "(pixels of that frame; left eye, right eye, nose tip, left and right mouth corner as seen in the image); "
        "frames without a line are skipped"
    )


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """``{'<person>/<video>/<frame file>': 5 x 2 landmarks}`` of a landmark file (format: module docstring).

    FileNotFoundError (saying how to make it) when absent; ValueError naming the line on a malformed or
    repeated line."""
    path = Path(path)
    if not path.is_file():
        raise landmarks_missing_error(path)
    landmarks: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{number}"
            if len(fields) != 11:
                raise ValueError(
                    f"{where}: expected 11 whitespace-separated fields {LANDMARKS_LINE}, got {line.strip()!r}"
                )
            if FRAME_KEY.fullmatch(fields[0]) is None:
                raise ValueError(f"{where}: frame {fields[0]!r} is not '<person>/<video number>/<frame file>'")
            try:
                values = [float(value) for value in fields[1:]]
            except ValueError:
                values = [math.nan]
            if not all(math.isfinite(value) for value in values):
                raise ValueError(f"{where}: the ten coordinates must be finite numbers, got {' '.join(fields[1:])!r}")
            if fields[0] in landmarks:
                raise ValueError(f"{where}: frame {fields[0]!r} is listed twice")
            landmarks[fields[0]] = np.array(values).reshape(5, 2)
    if not landmarks:
        raise ValueError(f"{path}: no landmark lines; expected {LANDMARKS_LINE}")
    return landmarks


def _aligned_or_reason(file: Path, landmarks: np.ndarray | None) -> tuple[bytes | None, str]:
    """The aligned JPEG of one frame, or None and why it could not be aligned."""
    if landmarks is None:
        return None, f"no landmarks in {LANDMARKS_FILE}"
    try:
        return aligned_jpeg(file.read_bytes(), landmarks), ""
    except UNDECODABLE as err:
        return None, f"{type(err).__name__}: {err}"


def write_video_pairs(pairs: pd.DataFrame, prepared_dir: str | Path) -> Path:
    """Write ``video_pairs.parquet`` of a prepared data set atomically."""
    return write_side_table(pairs[list(VIDEO_PAIR_COLUMNS)], prepared_dir, VIDEO_PAIRS_FILENAME)


def read_video_pairs(prepared_dir: str | Path, known_templates: pd.Series | None = None) -> pd.DataFrame:
    """Read and check ``video_pairs.parquet``; ``known_templates`` (the manifest's) must hold every pair's videos."""
    source = Path(prepared_dir) / VIDEO_PAIRS_FILENAME
    pairs = read_side_table(prepared_dir, VIDEO_PAIRS_FILENAME, VIDEO_PAIR_COLUMNS, "prepare the ytf data set first")
    if known_templates is not None:
        unknown = sorted((set(pairs["template_a"]) | set(pairs["template_b"])) - set(known_templates))
        if unknown:
            raise ManifestError(f"{source}: {len(unknown)} template(s) not in the manifest, e.g. {unknown[0]!r}")
    return pairs


def prepare_raw(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    resize_short_side: int | None = None,
    corrected_splits: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """Align (``workers`` threads) and store every frame, write ``video_pairs.parquet`` and the manifest;
    return the manifest path. ``resize_short_side`` rescales the aligned 112 x 112 frames (None keeps them)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    corrected = raw_dir / CORRECTED_SPLITS
    if corrected_splits and not corrected.is_file():
        raise missing_error(SOURCE, raw_dir, [CORRECTED_SPLITS])
    _, source = first_present(SOURCE, raw_dir, [FOLDER, ARCHIVE])
    landmarks = read_landmarks(raw_dir / LANDMARKS_FILE)
    with raw_tree(source, out_dir) as tree:
        root = tree / FOLDER if (tree / FOLDER).is_dir() else tree
        pairs = read_splits_txt(corrected) if corrected_splits else read_splits(root)
        videos = scan_videos(root / ALIGNED)
        template_of = {video.video_id: index for index, video in enumerate(videos)}
        for pair in pairs:
            for video in (pair.first, pair.second):
                if video not in template_of:
                    raise ValueError(
                        f"the pair ({pair.first}, {pair.second}) of split {pair.fold} names video "
                        f"{video!r}, which has no folder {root / ALIGNED / video}; the split file "
                        "does not match the frames"
                    )
        label_of = {person: index for index, person in enumerate(sorted({video.person for video in videos}))}
        frames = [
            (f"{video.video_id}/{file.name}", file, label_of[video.person], template)
            for template, video in enumerate(videos)
            for file in video.frames
        ]
        unknown = sorted(set(landmarks) - {key for key, *_ in frames})
        if unknown:
            raise ValueError(
                f"{raw_dir / LANDMARKS_FILE}: {len(unknown)} line(s) name a frame that is not in "
                f"{ALIGNED}/, e.g. {unknown[:3]}; the landmark file does not belong to these frames"
            )
        rows = []
        with (
            committed_store(out_dir, resize_short_side, images=len(frames)) as store,
            ThreadPoolExecutor(workers) as pool,
        ):
            for start in range(0, len(frames), ALIGN_BATCH):
                batch = frames[start : start + ALIGN_BATCH]
                aligned = pool.map(
                    _aligned_or_reason, [file for _, file, *_ in batch], [landmarks.get(key) for key, *_ in batch]
                )
                for (key, _, label, template), (data, reason) in zip(batch, aligned, strict=True):
                    if data is None:
                        store.skipped.append({"source": f"{ALIGNED}/{key}", "reason": reason})
                        continue
                    path = store.add(key, data, source=f"{ALIGNED}/{key}")
                    if path is not None:
                        rows.append((path, label, template))
    frame = pd.DataFrame(rows, columns=["path", "label", "template"]).astype({"label": "int64", "template": "int64"})
    frame = frame.assign(split="test", media=frame["template"])[["path", "label", "split", "template", "media"]]
    present = set(frame["template"])
    table = pd.DataFrame(
        [(template_of[p.first], template_of[p.second], p.issame, p.fold) for p in pairs],
        columns=list(VIDEO_PAIR_COLUMNS),
    ).astype({"issame": bool})
    kept = table["template_a"].isin(present) & table["template_b"].isin(present)
    if not kept.all():
        warnings.warn(
            f"{out_dir}: {int((~kept).sum())} of {len(table)} video pairs left out (a video has no "
            "decodable frame); the 10-fold boundaries after them shift",
            SkippedImagesWarning,
            stacklevel=2,
        )
    write_video_pairs(table[kept], out_dir)
    return write_manifest(frame, out_dir)


def prepare(
    out_dir: str | Path,
    raw_dir: str | Path,
    mirror: str | Path | None = None,
    *,
    resize_short_side: int | None = None,
    corrected_splits: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """``fetch_raw`` then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(
        raw_dir, out_dir, resize_short_side=resize_short_side, corrected_splits=corrected_splits, workers=workers
    )


ENTRY = DatasetEntry(name="ytf", prepare=prepare, fetch=fetch_raw, transform="face", in_channels=3)

__all__ = [
    "ENTRY",
    "LANDMARKS_FILE",
    "SOURCE",
    "VIDEO_PAIRS_FILENAME",
    "Video",
    "VideoPair",
    "fetch_raw",
    "prepare",
    "prepare_raw",
    "read_landmarks",
    "read_splits",
    "read_splits_mat",
    "read_splits_txt",
    "read_video_pairs",
    "scan_videos",
    "write_video_pairs",
]
