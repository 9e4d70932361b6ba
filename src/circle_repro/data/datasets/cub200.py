"""CUB-200-2011 (Caltech-UCSD Birds): 11,788 images of 200 bird species, Table 5 retrieval.

Raw: ``CUB_200_2011.tgz`` (data/sources.yaml) holding ``CUB_200_2011/`` (``images/NNN.Name/*.jpg``,
``images.txt``, ``image_class_labels.txt``, ``classes.txt``, ...; the release's README) and a top-level
``attributes.txt``. The metric-learning split (paper §4.1), not ``train_test_split.txt``: classes 1-100 train
(5,864 images), 101-200 test (5,924). Labels are the original class ids; query = gallery = test split.
"""

from __future__ import annotations

from pathlib import Path

from circle_repro.data.acquire import obtain
from circle_repro.data.annotations import AnnotationError, class_split, read_table, require
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.prepared import Sample, extract, scratch_dir, write_prepared
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["cub200"]  # URL, checksums, expected counts: data/sources.yaml
ARCHIVE = "CUB_200_2011.tgz"
ROOT = "CUB_200_2011"
TRAIN_CLASSES = range(1, 101)
TEST_CLASSES = range(101, 201)


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """Download (or copy from the folder ``mirror``) and verify ``CUB_200_2011.tgz`` into ``raw_dir``."""
    return obtain(SOURCE, raw_dir, [ARCHIVE], mirrors=(mirror,))


def read_samples(extracted: Path) -> list[Sample]:
    """The images listed by an extracted archive, in ``images.txt`` order, with class ids and split."""
    root = require(extracted, ROOT, ARCHIVE)
    tables = {
        name: require(extracted, f"{ROOT}/{name}", ARCHIVE)
        for name in ("images.txt", "image_class_labels.txt", "classes.txt")
    }
    images = read_table(tables["images.txt"], ("image_id", "image_name"), f"{ROOT}/images.txt", ints=["image_id"])
    labels = read_table(
        tables["image_class_labels.txt"],
        ("image_id", "class_id"),
        f"{ROOT}/image_class_labels.txt",
        ints=["image_id", "class_id"],
    )
    classes = read_table(tables["classes.txt"], ("class_id", "class_name"), f"{ROOT}/classes.txt", ints=["class_id"])
    class_names = {row["class_id"]: str(row["class_name"]) for _, row in classes}
    label_of: dict[int, tuple[int, int]] = {}  # image id -> (class id, line)
    for number, row in labels:
        where = f"{ROOT}/image_class_labels.txt line {number}"
        image_id, class_id = int(row["image_id"]), int(row["class_id"])
        if image_id in label_of:
            raise AnnotationError(f"{where}: image {image_id} already has a class on line {label_of[image_id][1]}")
        if class_id not in class_names:
            raise AnnotationError(f"{where}: class {class_id} is not in {ROOT}/classes.txt")
        label_of[image_id] = (class_id, number)
    samples = []
    first_line: dict[int, int] = {}
    for number, row in images:
        where = f"{ROOT}/images.txt line {number}"
        image_id, name = int(row["image_id"]), str(row["image_name"])
        if image_id in first_line:
            raise AnnotationError(f"{where}: image id {image_id} is already used on line {first_line[image_id]}")
        first_line[image_id] = number
        if image_id not in label_of:
            raise AnnotationError(f"{where}: image {image_id} ({name}) has no line in {ROOT}/image_class_labels.txt")
        class_id, label_line = label_of.pop(image_id)
        folder = name.split("/", 1)[0]
        if folder != class_names[class_id]:
            raise AnnotationError(
                f"{where}: {name} lies in folder {folder!r}, but image_class_labels.txt line "
                f"{label_line} gives class {class_id} ({class_names[class_id]})"
            )
        split = class_split(class_id, TRAIN_CLASSES, TEST_CLASSES, where)
        samples.append(Sample(root / "images" / name, name, class_id, split, where))
    if label_of:
        image_id, (_, number) = next(iter(label_of.items()))
        raise AnnotationError(
            f"{ROOT}/image_class_labels.txt line {number}: image {image_id} is not in "
            f"{ROOT}/images.txt ({len(label_of)} such line(s))"
        )
    return samples


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
    """Extract ``CUB_200_2011.tgz`` from ``raw_dir`` and write images + manifest into ``out_dir``."""
    with scratch_dir(out_dir) as scratch:
        samples = read_samples(extract(Path(raw_dir) / ARCHIVE, scratch))
        return write_prepared(samples, out_dir, resize_short_side)


def prepare(
    out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *, resize_short_side: int | None = None
) -> Path:
    """Fetch, verify and prepare CUB-200-2011; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)


ENTRY = DatasetEntry(name="cub200", prepare=prepare, fetch=fetch_raw, transform="retrieval", in_channels=3)
