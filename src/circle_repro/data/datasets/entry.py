"""What the rest of the pipeline needs to know about a data set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from circle_repro.data.image_store import MAX_PIXELS

CROP_PIXELS = 1_000_000
"""The pixel limit of data sets of small fixed-size images (28 x 28 digits, 112 x 112 aligned faces, 128 x 64
Market-1501 persons): 1000 x 1000, ample for them, a fraction of what a photograph may have."""


@dataclass(frozen=True)
class DatasetEntry:
    """A data set's preparer and the facts training and evaluation read from it."""

    name: str
    prepare: Callable[..., Path]  # (out_dir, **params.yaml options) -> manifest path
    transform: str  # a key of circle_repro.data.transforms.TRANSFORMS
    in_channels: int
    fetch: Callable[..., dict[str, Path]] | None = None  # (raw_dir, mirror) -> {declared name: path}; None: embedded
    max_pixels: int = MAX_PIXELS  # the pixel limit of one raw image while it is prepared (image_store.pixel_limit)
