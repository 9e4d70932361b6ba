"""What the person re-ID preparers (Market-1501, MSMT17) share: manual raw files, scratch extraction, image storing.

Both data sets are obtained by hand (``access: manual`` in sources.yaml), come as a zip (or, for
MSMT17, possibly an already extracted folder) and become a manifest with the re-ID columns
``path``, ``label`` (person id), ``split``, ``camera`` (integer camera id) and ``role``
(``query``/``gallery`` on test rows, empty on train rows).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from circle_repro.data.archive import safe_extract
from circle_repro.data.download import DownloadError, fetch, verify
from circle_repro.data.image_store import ImageStore
from circle_repro.data.manifest import manifest_path, write_manifest
from circle_repro.data.sources import Source
from circle_repro.data.status import is_verified, mark_verified

REID_COLUMNS = ("path", "label", "split", "camera", "role")


def _missing_message(source: Source, raw_dir: Path, mirror_errors: list[str]) -> str:
    required = [f.name for f in source.files if not f.optional]
    if required:
        wanted = "place " + " and ".join(required)
    else:
        wanted = "place one of " + ", ".join(f.name for f in source.files)
    message = f"{source.title}: raw data not found; {wanted} under {raw_dir}/. {source.instructions}"
    if mirror_errors:
        message += " Mirror: " + "; ".join(mirror_errors)
    return message


def fetch_manual(source: Source, raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """The present raw files of a manually obtained data set, checksum-verified where one is declared.

    A file absent from ``raw_dir`` is copied from ``mirror`` (a folder or base URL holding it
    under its own name) when given. Raises FileNotFoundError naming what to place where when a
    required file (or, if all are optional, every file) is absent; ChecksumError on a mismatch.
    Verified files get the ``.verified`` stamp of ``data status``.
    """
    raw_dir = Path(raw_dir)
    present: dict[str, Path] = {}
    mirror_errors: list[str] = []
    for file in source.files:
        path = raw_dir / file.name.rstrip("/")
        if not path.exists() and mirror is not None and not file.is_dir:
            try:
                fetch(file.name, path, md5=file.md5, sha256=file.sha256, mirror=mirror)
            except DownloadError as err:
                mirror_errors.append(str(err))
        if not path.exists():
            continue
        if file.has_checksum and not is_verified(path):
            verify(path, sha256=file.sha256, md5=file.md5)
            mark_verified(path, {k: v for k, v in (("md5", file.md5), ("sha256", file.sha256)) if v})
        present[file.name] = path
    required = {f.name for f in source.files if not f.optional}
    if not present or not required <= set(present):
        raise FileNotFoundError(_missing_message(source, raw_dir, mirror_errors))
    return present


@contextlib.contextmanager
def extracted(archive: Path, out_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """Safely extract ``archive`` into a scratch folder inside ``out_dir`` (removed afterwards).

    Yields the folder and the extracted files' paths relative to it (POSIX form).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".extract-") as scratch:
        folder = Path(scratch) / "content"
        files = safe_extract(archive, folder)
        yield folder, [file.relative_to(folder).as_posix() for file in files]


def store_images(rows: pd.DataFrame, files: list[Path], out_dir: Path, resize_short_side: int | None) -> Path:
    """Decode and store ``files[i]`` as ``images/<rows.path[i]>``, then write the manifest; return its path.

    ``rows`` holds the re-ID columns with ``path`` relative to ``images/``. Undecodable images are
    skipped and counted (``skipped_images.json``); the manifest is written last.
    """
    kept = []
    with ImageStore(out_dir, resize_short_side) as store:
        for row, file in zip(rows[list(REID_COLUMNS)].itertuples(index=False), files, strict=True):
            stored = store.add(row.path, file.read_bytes(), source=str(file))
            if stored is not None:
                kept.append(row._replace(path=stored))
        manifest_path(out_dir).unlink(missing_ok=True)  # an old manifest must not name the new images
        store.commit()
    frame = pd.DataFrame(kept, columns=list(REID_COLUMNS))
    frame = frame.astype({"label": "int64", "camera": "int64"})
    return write_manifest(frame, out_dir)
