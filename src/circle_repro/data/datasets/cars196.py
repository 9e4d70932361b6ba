"""Cars196 (Stanford Cars): 16,185 images of 196 car models, Table 5 retrieval.

The official host is gone (``access: withdrawn`` in data/sources.yaml): the files are placed by hand,
or copied from a local ``mirror`` folder. Two packagings are accepted:

- A (the metric-learning one, preferred; lenscloth/RKD ``dataset/cars196.py``): ``car_ims.tgz``
  (``car_ims/NNNNNN.jpg``) + ``cars_annos.mat``;
- B (the classification devkit; torchvision ``stanford_cars.py``): ``cars_train.tgz``, ``cars_test.tgz``,
  ``car_devkit.tgz`` (``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``, ...) +
  ``cars_test_annos_withlabels.mat``; train and test are pooled.

Either way the split is on class, ignoring the classification split (the ``test`` flag, the devkit's
train/test): classes 1-98 train (8,054 images), 99-196 test (8,131). Labels are the class ids 1..196.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from circle_repro.data.acquire import access_help, obtain
from circle_repro.data.annotations import class_split, require
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.formats.cars_mat import read_cars_annos, read_devkit_annos, read_devkit_class_count
from circle_repro.data.prepared import Sample, extract, scratch_dir, write_prepared
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["cars196"]  # checksums, sizes, instructions, substitutes: data/sources.yaml
PACKAGING_A = ("car_ims.tgz", "cars_annos.mat")
PACKAGING_B = ("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat")
TRAIN_CLASSES = range(1, 99)
TEST_CLASSES = range(99, 197)


def _complete(files: Sequence[str], *folders: str | Path | None) -> bool:
    """Whether each of ``files`` is in one of ``folders`` (None: no such folder)."""
    return all(any(folder is not None and (Path(folder) / name).is_file() for folder in folders) for name in files)


def _missing_message(raw_dir: Path) -> str:
    def listing(files: tuple[str, ...]) -> str:
        missing = [name for name in files if not (raw_dir / name).is_file()]
        return f"{', '.join(files)} (missing: {', '.join(missing)})"

    return (
        f"{SOURCE.title}: no complete packaging in {raw_dir}/. Place there either packaging A: "
        f"{listing(PACKAGING_A)}, or packaging B: {listing(PACKAGING_B)}. {access_help(SOURCE)}"
    )


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """Check (and copy from the folder ``mirror`` when absent) packaging A, else B, in ``raw_dir``."""
    raw_dir = Path(raw_dir)
    for files in (PACKAGING_A, PACKAGING_B):
        if _complete(files, raw_dir, mirror):
            return obtain(SOURCE, raw_dir, files, mirrors=(mirror,))
    raise FileNotFoundError(_missing_message(raw_dir))


def samples_a(extracted: Path, annos: Path) -> list[Sample]:
    """Packaging A: every annotated image of ``cars_annos.mat``, in file order."""
    samples = []
    for index, record in enumerate(read_cars_annos(annos)):
        where = f"cars_annos.mat annotations[{index}]"
        split = class_split(record.class_id, TRAIN_CLASSES, TEST_CLASSES, where)
        samples.append(
            Sample(extracted / record.relative_im_path, record.relative_im_path, record.class_id, split, where)
        )
    return samples


def samples_b(train: Path, test: Path, devkit: Path, test_annos: Path) -> list[Sample]:
    """Packaging B: the devkit's train images, then the labelled test images (extracted folders given)."""
    meta = require(devkit, "devkit/cars_meta.mat", "car_devkit.tgz")
    num_classes = read_devkit_class_count(meta, "car_devkit.tgz: devkit/cars_meta.mat")
    train_annos = require(devkit, "devkit/cars_train_annos.mat", "car_devkit.tgz")
    samples = []
    for folder, extracted, annos, display in (
        ("cars_train", train, train_annos, "devkit/cars_train_annos.mat"),
        ("cars_test", test, test_annos, "cars_test_annos_withlabels.mat"),
    ):
        for index, (fname, class_id) in enumerate(read_devkit_annos(annos, display, num_classes)):
            where = f"{display} annotations[{index}]"
            relative = f"{folder}/{fname}"
            split = class_split(class_id, TRAIN_CLASSES, TEST_CLASSES, where)
            samples.append(Sample(extracted / relative, relative, class_id, split, where))
    return samples


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
    """Extract packaging A (or else B) from ``raw_dir`` and write images + manifest into ``out_dir``."""
    raw_dir = Path(raw_dir)
    if _complete(PACKAGING_A, raw_dir):
        packaging = PACKAGING_A
    elif _complete(PACKAGING_B, raw_dir):
        packaging = PACKAGING_B
    else:
        raise FileNotFoundError(_missing_message(raw_dir))
    with scratch_dir(out_dir) as scratch:
        if packaging is PACKAGING_A:
            samples = samples_a(extract(raw_dir / "car_ims.tgz", scratch), raw_dir / "cars_annos.mat")
        else:
            train, test, devkit = (extract(raw_dir / name, scratch) for name in PACKAGING_B[:3])
            samples = samples_b(train, test, devkit, raw_dir / "cars_test_annos_withlabels.mat")
        return write_prepared(samples, out_dir, resize_short_side)


def prepare(
    out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *, resize_short_side: int | None = None
) -> Path:
    """Check the placed files (packaging A or B) and prepare Cars196; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)


ENTRY = DatasetEntry(name="cars196", prepare=prepare, fetch=fetch_raw, transform="retrieval", in_channels=3)
