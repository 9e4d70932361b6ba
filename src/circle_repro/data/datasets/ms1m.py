"""MS1MV2 (insightface ``faces_emore``) and MS1MV3 (``ms1m-retinaface-t1``): the face training sets.

Public stand-ins for the paper's own cleaned MS-Celeb-1M (3.6M images / 79.9K ids, never
released); Microsoft withdrew MS-Celeb-1M in 2019 and insightface's re-packagings are for
non-commercial research only (datasets.md §0, §6). MS1MV2 is the default stand-in (Tables 1-3).

Raw (placed by hand, see sources.yaml): ``data/raw/ms1mv2/faces_emore/`` or
``data/raw/ms1mv3/ms1m-retinaface-t1/`` holding ``train.rec``, ``train.idx`` and ``property``
(the verification packs beside them are prepared by :mod:`.verification_pack`).

Reading follows insightface ``MXFaceDataset``: record 0's IRHeader label ``[N + 1, N + 1 + C]``
gives the image keys ``1..N`` (a pack without that header: every key of the .idx); an image's
class is its IRHeader label (``label[0]`` of a vector), which must be an integer below the
``property`` class count and is kept as the manifest label. Images are aligned 112 x 112 JPEGs,
stored as they are unless ``resize_short_side`` is given.

Manifest: ``path`` (``images/<label>/<key>.jpg``), ``label``, ``split`` (``train`` for every
image). No extra files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.data.acquire import obtain
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.formats.recordio import IRHeader, RecordIOError, RecordIOReader, read_property
from circle_repro.data.manifest import write_manifest
from circle_repro.data.prepared import committed_store
from circle_repro.data.sources import Source, load_sources

PACK_FILES = ("train.rec", "train.idx", "property")


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

    def prepare_raw(self, raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None,
                    max_classes: int | None = None) -> Path:
        """Decode every image record into ``out_dir/images/`` and write the manifest; return its path.

        ``max_classes`` keeps the classes ``0..max_classes-1`` only (found through the identity
        records, as the pack lists class ``c`` in record ``N + 1 + c``; each image's own label is
        still checked). Undecodable images are skipped and counted (``skipped_images.json``).
        """
        if max_classes is not None and max_classes < 1:
            raise ValueError(f"max_classes must be a positive number of classes, got {max_classes}")
        folder = Path(raw_dir) / self.folder
        num_classes, _, _ = read_property(folder / "property")
        rows = []
        with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader, \
                committed_store(out_dir, resize_short_side) as store:
            identities = reader.identities() if max_classes is not None else {}
            keys = ([key for first, end in list(identities.values())[:max_classes] for key in range(first, end)]
                    if identities else reader.image_keys())
            for key in keys:
                if key not in reader:
                    raise RecordIOError(f"{reader.idx_path}: image key {key} (announced by record 0 of "
                                        f"{reader.rec_path}) is missing; the .idx is truncated or belongs to "
                                        "another .rec")
                header, image = reader.read_record(key)
                label = _class_of(header, f"{reader.rec_path}: key {key}")
                if label >= num_classes:
                    raise RecordIOError(f"{reader.rec_path}: key {key}: class {label} is not below the {num_classes} "
                                        f"classes of {folder / 'property'}; the files are from different packs")
                if max_classes is not None and label >= max_classes:
                    if identities:
                        raise RecordIOError(f"{reader.rec_path}: key {key} has class {label}, but the identity records "
                                            f"list it among classes 0..{max_classes - 1}")
                    continue
                path = store.add(f"{label}/{key}.jpg", image, source=f"{reader.rec_path.name}: key {key}")
                if path is not None:
                    rows.append((path, label))
        frame = pd.DataFrame(rows, columns=["path", "label"]).astype({"label": "int64"}).assign(split="train")
        return write_manifest(frame, out_dir)

    def prepare(self, out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *,
                resize_short_side: int | None = None, max_classes: int | None = None) -> Path:
        """``fetch_raw`` then ``prepare_raw``; return the manifest path."""
        self.fetch_raw(raw_dir, mirror)
        return self.prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side, max_classes=max_classes)

    @property
    def entry(self) -> DatasetEntry:
        return DatasetEntry(name=self.name, prepare=self.prepare, fetch=self.fetch_raw, transform="face", in_channels=3,
                            protocol="verification_pairs")


_SOURCES = load_sources()
MS1MV2 = RecordPack(_SOURCES["ms1mv2"])
MS1MV3 = RecordPack(_SOURCES["ms1mv3"])
MS1MV2_ENTRY = MS1MV2.entry
MS1MV3_ENTRY = MS1MV3.entry

__all__ = ["MS1MV2", "MS1MV2_ENTRY", "MS1MV3", "MS1MV3_ENTRY", "PACK_FILES", "RecordPack"]
