"""Market-1501 (Zheng et al. 2015): 1,501 pedestrians, 6 cameras; the paper's Table 4 re-ID set.

Raw: ``Market-1501-v15.09.15.zip`` from the Market-1501 project page, placed by hand under ``data/raw/market1501/``.
Split (torchreid/fast-reid ``market1501.py``): ``bounding_box_train/`` is the train split (751 ids,
12,936 images); ``query/`` (3,368 images, role ``query``) and ``bounding_box_test/`` (role
``gallery``) are the test split. Junk boxes (pid -1, ``-1_c1s1_...``) are dropped everywhere;
distractors (pid 0, ``0000_...``) stay in the gallery, where they never match, leaving 15,913
gallery images. ``gt_bbox/`` (hand-drawn boxes) and ``gt_query/`` (MATLAB good/junk lists) are
not part of the protocol and are not prepared.

Manifest: ``path``, ``label`` (the original person id), ``split``, ``camera`` (1..6, from
``c<k>`` in the file name), ``role`` (test rows only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pandas as pd

from circle_repro.data.acquire import obtain_declared
from circle_repro.data.datasets.entry import CROP_PIXELS, DatasetEntry
from circle_repro.data.manifest import REID_COLUMNS
from circle_repro.data.prepared import Sample, raw_tree, write_prepared
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["market1501"]  # archive name, md5, instructions: data/sources.yaml
ARCHIVE = SOURCE.files[0].name  # Market-1501-v15.09.15.zip
# folder -> (split, role)
FOLDERS = {"bounding_box_train": ("train", None), "query": ("test", "query"), "bounding_box_test": ("test", "gallery")}
# pid (4 digits, or -1 for junk), camera, sequence, frame, DPM box index (the Market-1501 readme)
FILE_NAME = re.compile(r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
JUNK_PID = -1
MAX_PID = 1501
CAMERAS = range(1, 7)


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """The md5-verified archive in ``raw_dir`` (copied from ``mirror`` if given).

    FileNotFoundError says where to put it; ChecksumError on a wrong archive.
    """
    return obtain_declared(SOURCE, raw_dir, mirrors=(mirror,))


def _parse(member: str) -> tuple[int, int]:
    """(pid, camera) of an image file name; ValueError naming the member if it breaks the convention."""
    name = PurePosixPath(member).name
    match = FILE_NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"{ARCHIVE}: member {member!r}: file name does not match "
            f"'<pid>_c<cam>s<seq>_<frame6>_<box2>.jpg' ({FILE_NAME.pattern}); "
            "is this the Market-1501 archive?"
        )
    pid, camera = int(match.group(1)), int(match.group(2))
    if not (pid == JUNK_PID or 0 <= pid <= MAX_PID) or camera not in CAMERAS:
        raise ValueError(
            f"{ARCHIVE}: member {member!r}: pid {pid} / camera {camera} outside "
            f"0..{MAX_PID} (or -1) / {CAMERAS.start}..{CAMERAS.stop - 1}"
        )
    return pid, camera


def read_layout(members: Iterable[str]) -> pd.DataFrame:
    """Manifest rows from the archive's member names, junk dropped; column ``member`` names the source.

    ``path`` is ``<folder>/<file name>``; rows are sorted by folder then name. Files outside the
    three protocol folders, non-JPEG files and ``__MACOSX/`` entries are ignored.
    """
    rows = []
    roots = set()
    for member in members:
        parts = PurePosixPath(member).parts
        if member.endswith("/") or len(parts) < 2 or parts[-2] not in FOLDERS or "__MACOSX" in parts:
            continue
        if not parts[-1].lower().endswith(".jpg"):
            continue  # readme, Thumbs.db
        roots.add(parts[:-2])
        pid, camera = _parse(member)
        split, role = FOLDERS[parts[-2]]
        rows.append(
            {
                "path": f"{parts[-2]}/{parts[-1]}",
                "label": pid,
                "split": split,
                "camera": camera,
                "role": role,
                "member": member,
            }
        )
    if len(roots) > 1:
        raise ValueError(
            f"{ARCHIVE}: image folders under several roots {sorted('/'.join(r) or '.' for r in roots)}; "
            "expected one Market-1501-v15.09.15/ folder"
        )
    frame = pd.DataFrame(rows, columns=[*REID_COLUMNS, "member"])
    folder = frame["path"].map(lambda path: path.split("/")[0])
    empty = [name for name in FOLDERS if not (folder == name).any()]
    if empty:
        raise ValueError(
            f"{ARCHIVE}: no images under {', '.join(f + '/' for f in empty)}; expected the folders "
            f"{', '.join(FOLDERS)} of Market-1501-v15.09.15"
        )
    order = folder.map(list(FOLDERS).index)
    frame = frame.assign(_order=order)[frame["label"] != JUNK_PID]
    return frame.sort_values(["_order", "path"]).drop(columns="_order").reset_index(drop=True)


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
    """Extract the archive, store the train/query/gallery images and write the manifest; return its path.

    ``resize_short_side`` rescales every image so that its shorter side has that many pixels.
    """
    with raw_tree(Path(raw_dir) / ARCHIVE, out_dir) as folder:
        members = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
        samples = [
            Sample(
                folder / row.member,
                row.path,
                row.label,
                row.split,
                f"{ARCHIVE}: {row.member}",
                {"camera": row.camera, "role": row.role},
            )
            for row in read_layout(members).itertuples(index=False)
        ]
        return write_prepared(samples, out_dir, resize_short_side)


def prepare(
    out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *, resize_short_side: int | None = None
) -> Path:
    """Check the raw archive (``fetch_raw``), then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)


ENTRY = DatasetEntry(
    name="market1501",
    prepare=prepare,
    fetch=fetch_raw,
    transform="reid",
    in_channels=3,
    max_pixels=CROP_PIXELS,
)
