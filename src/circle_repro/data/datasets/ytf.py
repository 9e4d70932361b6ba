"""YouTube Faces (Wolf et al. 2011): 3,425 videos of 1,595 people, video-pair verification (paper Table 2).

Raw (placed by hand after the form on the official page, datasets.md §10): ``data/raw/ytf/`` holds
``YouTubeFaces.tar.gz`` (extracted into a scratch folder with ``safe_extract``) or the already
extracted ``YouTubeFaces/`` folder, which is used as it is when present.

Frames: ``aligned_images_DB/<person>/<video>/aligned_detect_<video>.<frame>.jpg``. Manifest rows
(``split`` = ``test``), videos in (person name, video number) order and frames in frame order:

- ``label``: the person's index among the sorted person names (as insightface ``dir2lst_ytf.py``);
- ``template`` and ``media``: the video's index in that video order (one media per template);
- ``path``: ``images/<person>/<video>/aligned_detect_<video>.<frame>.jpg``.

Pairs: the 5,000 video pairs of the 10 splits, in file order, written to ``video_pairs.parquet``
(:func:`write_video_pairs`): ``template_a``, ``template_b`` (manifest ``template`` values),
``issame`` (bool) and ``fold`` (the split number 1..10). They come from ``splits.txt`` (at the top
of ``YouTubeFaces/`` or in ``meta_data/``), read the way insightface ``src/eval/ytf.py`` reads it
(datasets.md marks the text format unverified): lines starting with ``split`` are headers, fields
are comma-separated, field 0 is the split number, fields 2 and 3 the videos ``<person>/<video>``
and the last field is-same (0/1). Without ``splits.txt``, ``meta_data/meta_and_splits.mat`` gives
the same list (``Splits[pair, column, split]``: 1-based indices into ``video_names``, then
is-same; bob.db.youtube). ``corrected_splits=True`` reads the errata ``data/raw/ytf/splits_corrected.txt``
(same text format) instead; ``YTFErrors.csv`` is not applied.

Video embedding (evaluation): the mean of the L2-normalised (flip-summed) embeddings of **all**
frames of the video, L2-normalised again, scored by cosine similarity (datasets.md §10; insightface
``src/eval/ytf.py`` ``get_feature``); this is
``evaluation.ijb.template_features(feats, template, media, norm_score=False)``.

A frame that cannot be decoded is skipped and counted (``skipped_images.json``); a pair whose video
has no frame left is left out with a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from circle_repro.data.acquire import first_present, missing_error
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.image_store import SkippedImagesWarning
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
        raise FileNotFoundError(f"{aligned_dir}: not found; is this the YouTubeFaces folder "
                                "(aligned_images_DB/ inside)?")
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
                raise ValueError(f"{path}:{line_number}: expected '<split>, <pair>, <person>/<video>, "
                                 f"<person>/<video>, ..., <is same>', got {line!r}")
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
            pairs.append(_pair(f"{path}: Splits[{row}, :, {fold}]", fold + 1, names[first - 1], names[second - 1],
                               str(same)))
    return pairs


def read_splits(root: Path) -> list[VideoPair]:
    """The video pairs of a ``YouTubeFaces`` folder: ``splits.txt`` if present, else ``meta_and_splits.mat``."""
    for name in SPLITS_CANDIDATES:
        if (root / name).is_file():
            return read_splits_txt(root / name)
    if (root / SPLITS_MAT).is_file():
        return read_splits_mat(root / SPLITS_MAT)
    raise FileNotFoundError(f"{root}: neither {' nor '.join(SPLITS_CANDIDATES)} nor {SPLITS_MAT} found; "
                            "the YouTubeFaces folder is incomplete")


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


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None,
                corrected_splits: bool = False) -> Path:
    """Store every aligned frame, write ``video_pairs.parquet`` and the manifest; return the manifest path."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    corrected = raw_dir / CORRECTED_SPLITS
    if corrected_splits and not corrected.is_file():
        raise missing_error(SOURCE, raw_dir, [CORRECTED_SPLITS])
    _, source = first_present(SOURCE, raw_dir, [FOLDER, ARCHIVE])
    with raw_tree(source, out_dir) as tree:
        root = tree / FOLDER if (tree / FOLDER).is_dir() else tree
        pairs = read_splits_txt(corrected) if corrected_splits else read_splits(root)
        videos = scan_videos(root / ALIGNED)
        template_of = {video.video_id: index for index, video in enumerate(videos)}
        for pair in pairs:
            for video in (pair.first, pair.second):
                if video not in template_of:
                    raise ValueError(f"the pair ({pair.first}, {pair.second}) of split {pair.fold} names video "
                                     f"{video!r}, which has no folder {root / ALIGNED / video}; the split file "
                                     "does not match the frames")
        label_of = {person: index for index, person in enumerate(sorted({video.person for video in videos}))}
        rows = []
        with committed_store(out_dir, resize_short_side) as store:
            for template, video in enumerate(videos):
                for frame in video.frames:
                    path = store.add(f"{video.video_id}/{frame.name}", frame.read_bytes(),
                                     source=f"{ALIGNED}/{video.video_id}/{frame.name}")
                    if path is not None:
                        rows.append((path, label_of[video.person], template))
    frame = pd.DataFrame(rows, columns=["path", "label", "template"]).astype({"label": "int64", "template": "int64"})
    frame = frame.assign(split="test", media=frame["template"])[["path", "label", "split", "template", "media"]]
    present = set(frame["template"])
    table = pd.DataFrame([(template_of[p.first], template_of[p.second], p.issame, p.fold) for p in pairs],
                         columns=list(VIDEO_PAIR_COLUMNS)).astype({"issame": bool})
    kept = table["template_a"].isin(present) & table["template_b"].isin(present)
    if not kept.all():
        warnings.warn(f"{out_dir}: {int((~kept).sum())} of {len(table)} video pairs left out (a video has no "
                      "decodable frame); the 10-fold boundaries after them shift", SkippedImagesWarning, stacklevel=2)
    write_video_pairs(table[kept], out_dir)
    return write_manifest(frame, out_dir)


def prepare(out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *,
            resize_short_side: int | None = None, corrected_splits: bool = False) -> Path:
    """``fetch_raw`` then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side, corrected_splits=corrected_splits)


ENTRY = DatasetEntry(name="ytf", prepare=prepare, fetch=fetch_raw, transform="face", in_channels=3, protocol="verification_pairs")

__all__ = [
    "ENTRY", "SOURCE", "VIDEO_PAIRS_FILENAME", "Video", "VideoPair", "fetch_raw", "prepare", "prepare_raw",
    "read_splits", "read_splits_mat", "read_splits_txt", "read_video_pairs", "scan_videos", "write_video_pairs",
]
