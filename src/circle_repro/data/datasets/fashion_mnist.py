"""Fashion-MNIST (Zalando Research, MIT licence): 70,000 28 x 28 grey images of 10 clothing classes.

Not a paper data set: the `mini` profile's small real set, fetched through the real download path.
Debian's package ``dataset-fashion-mnist`` installs the same four files under
``/usr/share/datasets/fashion-mnist/``; use it with ``mirror=DEBIAN_MIRROR``. Its gzip bytes are
re-compressed, so an archive is accepted when its .gz MD5 is the official one OR its decompressed
content has the sha256 declared in data/sources.yaml (measured on Debian's copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from circle_repro.data.acquire import obtain
from circle_repro.data.datasets.entry import CROP_PIXELS, DatasetEntry
from circle_repro.data.datasets.image_arrays import class_disjoint_split, prepare_arrays
from circle_repro.data.formats.idx import read_idx
from circle_repro.data.sources import load_sources

DEBIAN_MIRROR = Path("/usr/share/datasets/fashion-mnist")
SOURCE = load_sources()["fashion_mnist"]  # URLs and checksums: data/sources.yaml
# file -> (official MD5 of the .gz, sha256 of the decompressed IDX bytes): either one is accepted
FILES = {file.name: (file.md5, file.content_sha256) for file in SOURCE.files}


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """Download (or copy from ``mirror``) the four IDX archives into ``raw_dir`` and check them against ``FILES``;
    one that matches neither digest is deleted again."""
    files = tuple(
        dataclasses.replace(file, md5=FILES[file.name][0], content_sha256=FILES[file.name][1]) for file in SOURCE.files
    )
    return obtain(dataclasses.replace(SOURCE, files=files), raw_dir, list(FILES), mirrors=(mirror,))


def load_raw(raw: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """All images (uint8, N x 28 x 28; 70,000 in the real set) and labels, training file first."""
    images = np.concatenate([read_idx(raw["train-images-idx3-ubyte.gz"]), read_idx(raw["t10k-images-idx3-ubyte.gz"])])
    labels = np.concatenate([read_idx(raw["train-labels-idx1-ubyte.gz"]), read_idx(raw["t10k-labels-idx1-ubyte.gz"])])
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"Fashion-MNIST: expected N images of 28 x 28 and N labels, got {images.shape} and {labels.shape}"
        )
    return images, labels.astype(np.int64)


def prepare(
    out_dir: str | Path,
    raw_dir: str | Path,
    mirror: str | Path | None = None,
    train_classes: Sequence[int] = (0, 1, 2, 3, 4),
    test_classes: Sequence[int] = (5, 6, 7, 8, 9),
    per_class: int | None = None,
    verification_pairs: int | None = None,
) -> Path:
    """Fetch and verify the archives into ``raw_dir``, then prepare the class-disjoint split into ``out_dir``.

    All 70,000 images are pooled per class; ``per_class`` keeps the first N of each class (in file
    order). ``verification_pairs`` saves that many matched/mismatched test pairs (seed 0).
    """
    split_of = class_disjoint_split(train_classes, test_classes)
    images, labels = load_raw(fetch_raw(raw_dir, mirror=mirror))
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
        keep.sort()
        images, labels = images[keep], labels[keep]
    return prepare_arrays(images, labels, split_of, out_dir, verification_pairs)


ENTRY = DatasetEntry(
    name="fashion_mnist",
    prepare=prepare,
    fetch=fetch_raw,
    transform="mnist",
    in_channels=1,
    max_pixels=CROP_PIXELS,
)
