"""The data set registry: one entry per declared source, each naming a known transform."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from circle_repro.data.acquire import FETCHED_FILENAME
from circle_repro.data.datasets import (
    cars196,
    cub200,
    fashion_mnist,
    ijbc,
    market1501,
    megaface,
    mnist5k,
    ms1m,
    msmt17,
    sop,
    verification_pack,
    ytf,
)
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.image_store import pixel_limit
from circle_repro.data.sources import load_sources
from circle_repro.generations import staged_folder
from circle_repro.io import write_json
from circle_repro.names import unknown_name

DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        cub200.ENTRY,
        cars196.ENTRY,
        sop.ENTRY,
        market1501.ENTRY,
        msmt17.ENTRY,
        ms1m.MS1MV2_ENTRY,
        ms1m.MS1MV3_ENTRY,
        verification_pack.LFW_ENTRY,
        verification_pack.CFP_FP_ENTRY,
        verification_pack.AGEDB_30_ENTRY,
        ytf.ENTRY,
        ijbc.ENTRY,
        megaface.ENTRY,
        mnist5k.ENTRY,
        fashion_mnist.ENTRY,
    )
}


def get_dataset(name: str) -> DatasetEntry:
    """The registry entry of a data set."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(unknown_name("data set", name, DATASETS)) from None


def prepare_dataset(name: str, out_dir: str | Path, raw_dir: str | Path | None = None, **options: Any) -> Path:
    """Prepare the named data set into ``out_dir`` from its raw files in ``raw_dir``; return the manifest path.

    Embedded data sets (``access: embedded`` in sources.yaml) have no raw folder and ignore ``raw_dir``.
    The new set is built beside ``out_dir`` and replaces it whole (:func:`~circle_repro.generations.staged_folder`):
    a failed or killed preparation leaves the earlier one as it was. While it is prepared, the process's
    pixel limit is the data set's (``max_pixels`` of its entry): a larger raw image is skipped and counted.
    """
    entry = get_dataset(name)
    embedded = load_sources()[name].access == "embedded"
    if raw_dir is None and not embedded:
        raise ValueError(
            f"data set {name!r} is prepared from raw files: give raw_dir (the CLI default is data/raw/{name})"
        )
    target, staging = Path(out_dir), Path(out_dir)
    caught: list[warnings.WarningMessage] = []
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            staged_folder(target) as staging,
            pixel_limit(entry.max_pixels),
        ):
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # skipped and counted instead
            manifest = entry.prepare(staging, **options) if embedded else entry.prepare(staging, raw_dir, **options)
    finally:
        for warning in caught:  # they name files of the staging folder: the files now in out_dir
            message = str(warning.message).replace(str(staging), str(target))
            warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)
    return target / Path(manifest).relative_to(staging)


def fetch_dataset(name: str, raw_dir: str | Path, mirror: str | Path | None = None) -> Path:
    """Download (or copy from ``mirror``) and verify a data set's raw files into ``raw_dir``; nothing else.

    Writes ``raw_dir/fetched.json`` (each file's name and size; null for a folder) and returns its path; the file is left
    untouched when it already says the same, so a repeated fetch does not make the preparation look stale.
    Raises ValueError for an embedded data set, FileNotFoundError saying what to place for a manual one.
    """
    entry = get_dataset(name)
    if entry.fetch is None:
        raise ValueError(
            f"data set {name!r} is embedded in an installed package: nothing to fetch; prepare it directly"
        )
    files = entry.fetch(raw_dir, mirror)
    sizes = {file: path.stat().st_size if path.is_file() else None for file, path in sorted(files.items())}
    record = {"dataset": name, "files": sizes}
    target = Path(raw_dir) / FETCHED_FILENAME
    try:
        unchanged = json.loads(target.read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:
        write_json(target, record)
    return target
