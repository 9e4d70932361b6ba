"""Synthetic raw data in each data set's real raw format, at a fraction of its real counts and at its real
image size (sources.yaml ``image_size``); one writer per data set, ``(raw_dir, source, scale) -> images``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from circle_repro.data.acquire import mark_verified
from circle_repro.data.sources import Source, load_sources
from circle_repro.rehearsal.scale import Scale
from circle_repro.rehearsal.writers.face import write_bin_set, write_ijbc, write_megaface, write_ms1m, write_ytf
from circle_repro.rehearsal.writers.reid import write_market1501, write_msmt17
from circle_repro.rehearsal.writers.retrieval import write_cars196, write_cub200, write_sop

Writer = Callable[[Path, Source, Scale], int]
WRITERS: dict[str, Writer] = {
    "cub200": write_cub200,
    "cars196": write_cars196,
    "sop": write_sop,
    "market1501": write_market1501,
    "msmt17": write_msmt17,
    "ms1mv2": write_ms1m,
    "ms1mv3": write_ms1m,
    "lfw": write_bin_set,
    "cfp_fp": write_bin_set,
    "agedb_30": write_bin_set,
    "ytf": write_ytf,
    "ijbc": write_ijbc,
    "megaface": write_megaface,
}
"""The data sets the rehearsal can write: every one the paper profile trains or evaluates on."""


def write_raw(dataset: str, raw_dir: str | Path, scale: Scale) -> int:
    """Write ``dataset``'s synthetic raw files into the new folder ``raw_dir`` and stamp its declared files as
    checked (they are synthetic: no published checksum can match); return the number of images written."""
    if dataset not in WRITERS:
        raise ValueError(f"no rehearsal writer for data set {dataset!r}; writers: {', '.join(sorted(WRITERS))}")
    raw_dir = Path(raw_dir)
    if raw_dir.exists():
        raise ValueError(f"{raw_dir}: already exists; the rehearsal writes its raw data into a new folder")
    raw_dir.mkdir(parents=True)
    source = load_sources()[dataset]
    images = WRITERS[dataset](raw_dir, source, scale)
    for file in source.files:
        path = raw_dir / file.name
        if not file.is_dir and path.is_file():
            mark_verified(path)
    return images


__all__ = ["WRITERS", "Writer", "write_raw"]
