"""Stanford Online Products: 120,053 eBay product photos of 22,634 products, Table 5 retrieval.

Raw: ``Stanford_Online_Products.zip`` (data/sources.yaml) holding ``Stanford_Online_Products/``
with ``Ebay_train.txt`` / ``Ebay_test.txt`` (a header line, then ``image_id class_id super_class_id
path``) and the images ``<super>_final/<item>_<n>.JPG`` (lenscloth/RKD ``dataset/stanford.py``). The split
is the one of those two files: 59,551 train images of 11,318 classes, 60,502 test images of 11,316 disjoint
classes.
Labels are the global class ids; query = gallery = test split.
"""

from __future__ import annotations

from pathlib import Path

from circle_repro.data.acquire import obtain
from circle_repro.data.annotations import AnnotationError, read_table, require
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.prepared import Sample, extract, scratch_dir, write_prepared
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["sop"]  # URL, checksums, expected counts: data/sources.yaml
ARCHIVE = "Stanford_Online_Products.zip"
ROOT = "Stanford_Online_Products"
LISTS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
FIELDS = ("image_id", "class_id", "super_class_id", "path")


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """Download (or copy from the folder ``mirror``) and verify ``Stanford_Online_Products.zip``."""
    return obtain(SOURCE, raw_dir, [ARCHIVE], mirrors=(mirror,))


def read_samples(extracted: Path) -> list[Sample]:
    """The images of ``Ebay_train.txt`` then ``Ebay_test.txt``; refuses a class present in both."""
    root = require(extracted, ROOT, ARCHIVE)
    samples = []
    first_seen: dict[str, dict[int, str]] = {}  # split -> class id -> where it first appears
    for split, name in LISTS.items():
        display = f"{ROOT}/{name}"
        rows = read_table(require(extracted, display, ARCHIVE), FIELDS, display, header=True, ints=FIELDS[:3])
        seen = first_seen.setdefault(split, {})
        for number, row in rows:
            where = f"{display} line {number}"
            class_id, path = int(row["class_id"]), str(row["path"])
            seen.setdefault(class_id, where)
            samples.append(Sample(root / path, path, class_id, split, where))
    shared = sorted(first_seen["train"].keys() & first_seen["test"].keys())
    if shared:
        raise AnnotationError(
            f"class {shared[0]} appears in {first_seen['train'][shared[0]]} and in {first_seen['test'][shared[0]]} "
            f"({len(shared)} shared class(es)); the train and test classes of SOP must be disjoint"
        )
    return samples


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
    """Extract ``Stanford_Online_Products.zip`` from ``raw_dir`` and write images + manifest into ``out_dir``."""
    with scratch_dir(out_dir) as scratch:
        samples = read_samples(extract(Path(raw_dir) / ARCHIVE, scratch))
        return write_prepared(samples, out_dir, resize_short_side)


def prepare(
    out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *, resize_short_side: int | None = None
) -> Path:
    """Fetch, verify and prepare Stanford Online Products; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)


ENTRY = DatasetEntry(name="sop", prepare=prepare, fetch=fetch_raw, transform="retrieval", in_channels=3)
