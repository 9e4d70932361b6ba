"""One module per data set, each turning a raw layout into a manifest; a name -> entry registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circle_repro.data.datasets import fashion_mnist, mnist5k
from circle_repro.data.datasets.entry import DatasetEntry

DATASETS: dict[str, DatasetEntry] = {entry.name: entry for entry in (mnist5k.ENTRY, fashion_mnist.ENTRY)}


def get_dataset(name: str) -> DatasetEntry:
    """The registry entry of a data set."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; allowed: {sorted(DATASETS)}") from None


def prepare_dataset(name: str, out_dir: str | Path, **options: Any) -> Path:
    """Prepare the named data set into ``out_dir``; return the manifest path."""
    return get_dataset(name).prepare(out_dir, **options)
