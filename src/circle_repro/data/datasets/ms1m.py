"""MS1MV2 (insightface ``faces_emore``) and MS1MV3 (``ms1m-retinaface-t1``): the face training sets.

Public stand-ins for the paper's own cleaned MS-Celeb-1M (3.6M images / 79.9K ids, paper
§4.1; never released); Microsoft withdrew MS-Celeb-1M in 2019 and insightface's re-packagings are for
non-commercial research only (insightface README). MS1MV2 is the default stand-in (Tables 1-3).

Raw (placed by hand, see sources.yaml): ``data/raw/ms1mv2/faces_emore/`` or
``data/raw/ms1mv3/ms1m-retinaface-t1/`` holding ``train.rec``, ``train.idx`` and ``property``
(the verification packs beside them are prepared by :mod:`.verification_pack`).

Reading follows insightface ``MXFaceDataset``: record 0's IRHeader label ``[N + 1, N + 1 + C]``
gives the image keys ``1..N`` (a pack without that header: every key of the .idx); an image's
class is its IRHeader label (``label[0]`` of a vector), which must be an integer below the
``property`` class count and is kept as the manifest label. Images are aligned 112 x 112 JPEGs.

The pack is the prepared data: preparation links ``train.rec`` and ``train.idx`` into the prepared
folder as ``images.rec`` / ``images.idx`` (a hard link where the file system allows, else a symbolic
link; no image is copied) and indexes it into the manifest, reading every record once: to check its
framing, its class and its image (its start and end markers; images are not decoded) and to hash the
image for the stamp (:mod:`circle_repro.data.stamp`). With ``resize_short_side`` the images are
re-encoded instead, through the image store (a pack for a large set).

Manifest: ``path`` (``images.rec#<key>``; ``images/<label>/<key>.jpg`` or ``images.rec#<n>`` when
resized), ``label``, ``split`` (``train`` for every image). No extra files.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.data.acquire import obtain
from circle_repro.data.datasets.entry import CROP_PIXELS, DatasetEntry
from circle_repro.data.formats.recordio import (
    IRHeader,
    RecordIOError,
    RecordIOReader,
    read_property,
)
from circle_repro.data.image_reader import pack_member
from circle_repro.data.image_store import (
    IMAGES_DIRNAME,
    PACK_FILENAME,
    PACK_INDEX_FILENAME,
    SKIPPED_FILENAME,
    SkippedImagesWarning,
)
from circle_repro.data.manifest import manifest_path, write_manifest
from circle_repro.data.prepared import committed_store
from circle_repro.data.sources import Source, load_sources
from circle_repro.data.stamp import image_row, image_table
from circle_repro.io import write_json

PACK_FILES = ("train.rec", "train.idx", "property")
JPEG_START = b"\xff\xd8\xff"  # SOI, then the first segment's marker
JPEG_END = b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _image_problem(image: bytes) -> str | None:
    """Why a record's image is unusable, or None: it must start and end as a JPEG (SOI ... EOI) or a PNG
    (signature ... IEND), which catches records that are not images and images cut short (not decoded)."""
    tail = image[-16:]
    if image.startswith(JPEG_START):
        return None if JPEG_END in tail else "JPEG without its end marker (cut short)"
    if image.startswith(PNG_START):
        return None if PNG_END in tail else "PNG without its IEND chunk (cut short)"
    return f"neither a JPEG nor a PNG (starts with {image[:8]!r})"


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a symbolic link across file systems), replacing what was there."""
    staged = target.with_name(f".{target.name}.partial")
    staged.unlink(missing_ok=True)
    try:
        os.link(source, staged)
    except OSError:
        staged.symlink_to(source.resolve())
    staged.replace(target)


def _class_of(header: IRHeader, where: str) -> int:
    """The integer class of an image record (``label[0]`` when the label is a vector)."""
    value = float(np.asarray(header.label).ravel()[0]) if header.flag > 0 else float(header.label)
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise RecordIOError(f"{where}: label {value!r} is not a non-negative integer class id")
    return int(value)


@dataclass(frozen=True)
class RecordPack:
    """One insightface training pack: its sources.yaml entry, whose single declared file is the pack folder."""

    source: Source

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def folder(self) -> str:
        """The pack's folder under the raw folder, e.g. ``faces_emore``."""
        return self.source.files[0].name.rstrip("/")

    def fetch_raw(self, raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
        """``{train.rec, train.idx, property: path}`` under ``raw_dir/<folder>/``.

        The folder is copied from ``mirror/<folder>/`` when absent and a mirror is given; a missing
        folder or file raises FileNotFoundError saying what to place where.
        """
        folder = obtain(self.source, raw_dir, [self.source.files[0].name], mirrors=(mirror,))[self.source.files[0].name]
        missing = [name for name in PACK_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder}: missing {', '.join(missing)}; the folder must hold {', '.join(PACK_FILES)} as extracted "
                f"from the download. {self.source.instructions}"
            )
        return {name: folder / name for name in PACK_FILES}

    def prepare_raw(
        self,
        raw_dir: str | Path,
        out_dir: str | Path,
        *,
        resize_short_side: int | None = None,
        max_classes: int | None = None,
    ) -> Path:
        """Index the pack into ``out_dir``'s manifest (or, with ``resize_short_side``, re-encode its images);
        return the manifest path.

        ``max_classes`` keeps the classes ``0..max_classes-1`` only (found through the identity
        records, as the pack lists class ``c`` in record ``N + 1 + c``; each image's own label is
        still checked). Unusable images are skipped and counted (``skipped_images.json``).
        """
        if max_classes is not None and max_classes < 1:
            raise ValueError(f"max_classes must be a positive number of classes, got {max_classes}")
        folder = Path(raw_dir) / self.folder
        num_classes, _, _ = read_property(folder / "property")
        out_dir = Path(out_dir)
        files = None  # the images' stamp rows, where they are hashed here
        with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
            identities = reader.identities() if max_classes is not None else {}
            keys = (
                [key for first, end in list(identities.values())[:max_classes] for key in range(first, end)]
                if identities
                else reader.image_keys()
            )
            records = self._records(reader, keys, num_classes, max_classes, bool(identities), folder)
            if resize_short_side is not None:
                rows = []
                with committed_store(out_dir, resize_short_side, images=len(keys)) as store:
                    for key, label, image in records:
                        path = store.add(f"{label}/{key}.jpg", image, source=f"{reader.rec_path.name}: key {key}")
                        if path is not None:
                            rows.append((path, label))
            else:
                rows, skipped, hashed = [], [], []
                for key, label, image in records:
                    problem = _image_problem(image)
                    if problem is None:
                        rows.append((pack_member(PACK_FILENAME, key), label))
                        hashed.append(image_row(rows[-1][0], image))  # the stamp's hash, from this one read
                    else:
                        skipped.append({"source": f"{reader.rec_path.name}: key {key}", "reason": problem})
                self._link_pack(reader, out_dir, skipped, bool(rows))
                files = image_table(hashed)
        frame = pd.DataFrame(rows, columns=["path", "label"]).astype({"label": "int64"}).assign(split="train")
        return write_manifest(frame, out_dir, files)

    @staticmethod
    def _records(
        reader: RecordIOReader,
        keys: list[int],
        num_classes: int,
        max_classes: int | None,
        by_identity: bool,
        folder: Path,
    ) -> Iterator[tuple[int, int, bytes]]:
        """``(key, class, image bytes)`` of every image record kept, each record's framing and class checked."""
        for key in keys:
            if key not in reader:
                raise RecordIOError(
                    f"{reader.idx_path}: image key {key} (announced by record 0 of "
                    f"{reader.rec_path}) is missing; the .idx is truncated or belongs to "
                    "another .rec"
                )
            header, image = reader.read_record(key)
            label = _class_of(header, f"{reader.rec_path}: key {key}")
            if label >= num_classes:
                raise RecordIOError(
                    f"{reader.rec_path}: key {key}: class {label} is not below the {num_classes} "
                    f"classes of {folder / 'property'}; the files are from different packs"
                )
            if max_classes is not None and label >= max_classes:
                if by_identity:
                    raise RecordIOError(
                        f"{reader.rec_path}: key {key} has class {label}, but the identity records "
                        f"list it among classes 0..{max_classes - 1}"
                    )
                continue
            yield key, label, image

    @staticmethod
    def _link_pack(reader: RecordIOReader, out_dir: Path, skipped: list[dict[str, str]], any_image: bool) -> None:
        """Put the pack in place as ``images.rec``/``images.idx`` (replacing an earlier preparation's images)
        and record the skipped images; the manifest is written after this."""
        if not any_image:
            raise ValueError(
                f"{reader.rec_path}: no image could be read ({len(skipped)} skipped); "
                "check that the pack is an insightface training pack"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path(out_dir).unlink(missing_ok=True)  # must not name the images being replaced
        shutil.rmtree(out_dir / IMAGES_DIRNAME, ignore_errors=True)
        _link(reader.rec_path, out_dir / PACK_FILENAME)
        _link(reader.idx_path, out_dir / PACK_INDEX_FILENAME)
        skipped_file = out_dir / SKIPPED_FILENAME
        if skipped:
            write_json(skipped_file, skipped)
            warnings.warn(
                f"{out_dir}: {len(skipped)} image(s) could not be read and were left out "
                f"(first: {skipped[0]['source']}: {skipped[0]['reason']}); list in {skipped_file}",
                SkippedImagesWarning,
                stacklevel=3,
            )
        else:
            skipped_file.unlink(missing_ok=True)

    def prepare(
        self,
        out_dir: str | Path,
        raw_dir: str | Path,
        mirror: str | Path | None = None,
        *,
        resize_short_side: int | None = None,
        max_classes: int | None = None,
    ) -> Path:
        """``fetch_raw`` then ``prepare_raw``; return the manifest path."""
        self.fetch_raw(raw_dir, mirror)
        return self.prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side, max_classes=max_classes)

    @property
    def entry(self) -> DatasetEntry:
        return DatasetEntry(
            name=self.name,
            prepare=self.prepare,
            fetch=self.fetch_raw,
            transform="face",
            in_channels=3,
            max_pixels=CROP_PIXELS,
        )


_SOURCES = load_sources()
MS1MV2 = RecordPack(_SOURCES["ms1mv2"])
MS1MV3 = RecordPack(_SOURCES["ms1mv3"])
MS1MV2_ENTRY = MS1MV2.entry
MS1MV3_ENTRY = MS1MV3.entry

__all__ = ["MS1MV2", "MS1MV2_ENTRY", "MS1MV3", "MS1MV3_ENTRY", "PACK_FILES", "RecordPack"]
