"""Writing a prepared data set: scratch extraction inside the output folder, images, and the manifest last.

A preparer reads the raw layout (an extracted folder used as it is, or an archive extracted into a
scratch folder inside ``out_dir`` that is always removed), stores every image through
:class:`~circle_repro.data.image_store.ImageStore` and writes the manifest last. The stale manifest
of an earlier preparation is removed just before the new images replace the old ones, so a manifest
never names images of another preparation, and a preparation that fails before that point leaves
the earlier one whole.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from circle_repro.data.annotations import AnnotationError
from circle_repro.data.archive import safe_extract
from circle_repro.data.image_store import ImageStore, packs
from circle_repro.data.manifest import manifest_path, write_manifest
from circle_repro.progress import Progress

# --- scratch extraction ---------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_dir(out_dir: str | Path) -> Iterator[Path]:
    """A temporary folder inside ``out_dir`` for extracted archives, always removed afterwards; on an
    error an ``out_dir`` created here is removed too when it is left empty."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=".extract-"))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract(archive: Path, scratch: Path) -> Path:
    """Safely extract ``archive`` into its own folder under ``scratch``; return that folder."""
    dest = scratch / archive.name
    safe_extract(archive, dest)
    return dest


@contextlib.contextmanager
def raw_tree(source: Path, out_dir: str | Path) -> Iterator[Path]:
    """The folder holding a raw layout: ``source`` itself when it is an extracted folder, else the archive
    ``source`` extracted into a scratch folder inside ``out_dir`` (removed afterwards)."""
    if source.is_dir():
        yield source
        return
    with scratch_dir(out_dir) as scratch:
        yield extract(source, scratch)


# --- images and manifest --------------------------------------------------------------------------


@contextlib.contextmanager
def committed_store(
    out_dir: str | Path, resize_short_side: int | None = None, *, images: int = 0
) -> Iterator[ImageStore]:
    """An :class:`ImageStore` committed when the block succeeds (and discarded when it fails); ``images``:
    how many images the block adds, so that a large data set goes into a pack (:func:`packs`).

    The stale manifest is removed just before the commit: it must not name the new images. Write the
    extra evaluation files and then the manifest (last) after the block.
    """
    label = f"storing the images of {Path(out_dir).name}"
    with (
        Progress(label, images or None) as progress,
        ImageStore(out_dir, resize_short_side, pack=packs(images), progress=progress) as store,
    ):
        yield store
        if store.stored:  # commit() refuses an empty store, which must not cost the earlier manifest
            manifest_path(out_dir).unlink(missing_ok=True)
        store.commit()


@dataclass(frozen=True)
class Sample:
    """One image to store: its raw file, its path under ``images/``, label, split, where it is listed (for
    errors and the skip list), and any optional manifest columns (``camera``, ``role``, ...)."""

    file: Path
    relative: str
    label: int
    split: str
    listed_in: str  # e.g. "CUB_200_2011/images.txt line 3"
    columns: Mapping[str, Any] = field(default_factory=dict)


def _check_listing(samples: Sequence[Sample]) -> None:
    listed: dict[str, str] = {}
    for sample in samples:
        relative = PurePosixPath(sample.relative)
        if relative.is_absolute() or ".." in relative.parts:
            raise AnnotationError(f"{sample.listed_in}: image path {sample.relative!r} must stay inside the data set")
        if sample.relative in listed:
            raise AnnotationError(
                f"{sample.listed_in}: image {sample.relative!r} is already listed in {listed[sample.relative]}"
            )
        listed[sample.relative] = sample.listed_in
    absent = [s for s in samples if not s.file.is_file()]
    if absent:
        first = absent[0]
        raise AnnotationError(
            f"{first.listed_in}: names {first.relative!r}, which the archive does not contain "
            f"({len(absent)} listed image(s) missing); the images and annotations do not match"
        )


def write_prepared(samples: Sequence[Sample], out_dir: str | Path, resize_short_side: int | None = None) -> Path:
    """Check the listing, store every sample's image (undecodable ones are skipped and counted) and write the
    manifest (``path``, ``label``, ``split``, then the samples' optional columns) last; return its path."""
    _check_listing(samples)
    optional = list(samples[0].columns) if samples else []
    rows = []
    with committed_store(out_dir, resize_short_side, images=len(samples)) as store:
        for sample in samples:
            stored = store.add(sample.relative, sample.file.read_bytes(), f"{sample.listed_in} ({sample.relative})")
            if stored is not None:
                rows.append({"path": stored, "label": sample.label, "split": sample.split, **sample.columns})
    frame = pd.DataFrame(rows, columns=["path", "label", "split", *optional]).astype({"label": "int64"})
    return write_manifest(frame, out_dir)


__all__ = ["Sample", "committed_store", "extract", "raw_tree", "scratch_dir", "write_prepared"]
