"""What the rest of the pipeline needs to know about a data set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetEntry:
    """A data set's preparer and the facts training and evaluation read from it."""

    name: str
    prepare: Callable[..., Path]  # (out_dir, **params.yaml options) -> manifest path
    transform: str  # a key of circle_repro.data.transforms.TRANSFORMS
    in_channels: int
    fetch: Callable[..., dict[str, Path]] | None = None  # (raw_dir, mirror) -> {declared name: path}; None: embedded
