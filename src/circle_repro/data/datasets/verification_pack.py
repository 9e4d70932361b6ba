"""The insightface verification packs ``lfw.bin``, ``cfp_fp.bin`` and ``agedb_30.bin`` as prepared test sets.

One implementation for the three (insightface ``recognition/arcface_torch/eval/verification.py``): each
pack is a pickle of ``(bins, issame)`` with 2 x P aligned 112 x 112 face images in pair order (``bins[2i]``,
``bins[2i + 1]`` = pair i), read with :func:`~circle_repro.data.formats.verification_bin.load_verification_bin`
(a restricted unpickler: any unexpected global is refused). LFW, CFP-FP and AgeDB-30 are evaluated on these
packs, not on the original releases, as ArcFace-style evaluations do; AgeDB-30 is an extra validation set the
paper does not report.

Raw: ``data/raw/<name>/<name>.bin``. When absent, it is copied from ``mirror`` or, failing that,
from the MS1MV2 pack folder ``data/raw/ms1mv2/faces_emore/`` that ships it.

Prepared (protocol ``verification_pairs``):

- manifest rows in pack order, ``path`` = ``images/<index>.jpg`` (``.png`` for a pack holding a
  decoded array), ``split`` = ``test``, ``pair_id`` = the pair's position, and ``label`` = a
  pseudo-identity per pair, since packs carry no identity ids: a matched pair ``p`` shares
  ``2p``, a mismatched pair gets ``2p`` and ``2p + 1``;
- ``pairs.parquet`` (:mod:`circle_repro.data.pairs`): ``path_a``, ``path_b``, ``issame`` in the
  pack's pair order, which the 10-fold protocol splits by position.

A pair with an undecodable image is left out (both images) and counted in ``skipped_images.json``;
that shifts the fold boundaries after it, so a warning says so.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from circle_repro.data.acquire import obtain
from circle_repro.data.datasets.entry import CROP_PIXELS, DatasetEntry
from circle_repro.data.datasets.ms1m import MS1MV2
from circle_repro.data.formats.verification_bin import VerificationBinError, load_verification_bin
from circle_repro.data.image_store import ImageStore, SkippedImagesWarning
from circle_repro.data.manifest import write_manifest
from circle_repro.data.pairs import write_pairs
from circle_repro.data.prepared import committed_store
from circle_repro.data.sources import Source, load_sources


def _png_images(images: np.ndarray, path: Path) -> list[bytes]:
    """A pack holding one decoded uint8 array (N x H x W or N x H x W x C, RGB): each image as PNG bytes."""
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
        raise VerificationBinError(
            f"{path}: a decoded image array must be uint8 N x H x W or N x H x W x 1|3, "
            f"got {images.dtype} {images.shape}"
        )
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image).save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    return encoded


def _discard(store: ImageStore, stored_path: str) -> None:
    """Take an image already added to ``store`` (its manifest path) out again before the commit."""
    (store.staging / Path(stored_path).relative_to(Path(stored_path).parts[0])).unlink()
    store.stored -= 1


@dataclass(frozen=True)
class VerificationPack:
    """One verification pack: its sources.yaml entry, whose one required file is ``<name>.bin``."""

    source: Source

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def file_name(self) -> str:
        return next(file.name for file in self.source.files if not file.optional)

    def fetch_raw(self, raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
        """``{<name>.bin: path}`` in ``raw_dir``, copied from ``mirror`` or the MS1MV2 pack folder if absent."""
        raw_dir = Path(raw_dir)
        ms1m_folder = raw_dir.parent / MS1MV2.name / MS1MV2.folder
        return obtain(self.source, raw_dir, [self.file_name], mirrors=(mirror, ms1m_folder))

    def prepare_raw(self, raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
        """Store the pack's images, write ``pairs.parquet`` and the manifest; return the manifest path."""
        path = Path(raw_dir) / self.file_name
        images, issame = load_verification_bin(path)
        encoded = _png_images(images, path) if isinstance(images, np.ndarray) else images
        suffix = ".png" if isinstance(images, np.ndarray) else ".jpg"
        width = max(5, len(str(len(encoded) - 1)))
        rows, pairs = [], []
        with committed_store(out_dir, resize_short_side) as store:
            for pair, same in enumerate(issame.tolist()):
                stored = [
                    store.add(f"{i:0{width}d}{suffix}", encoded[i], source=f"{path.name}: image {i}")
                    for i in (2 * pair, 2 * pair + 1)
                ]
                if None in stored:
                    for kept in filter(None, stored):
                        _discard(store, kept)
                    continue
                labels = (2 * pair, 2 * pair) if same else (2 * pair, 2 * pair + 1)
                rows += [(p, label, pair) for p, label in zip(stored, labels, strict=True)]
                pairs.append((*stored, same))
        dropped = len(issame) - len(pairs)
        if dropped:
            warnings.warn(
                f"{path}: {dropped} of {len(issame)} pairs left out (an image could not be decoded); "
                "the 10-fold boundaries after them shift",
                SkippedImagesWarning,
                stacklevel=2,
            )
        frame = pd.DataFrame(rows, columns=["path", "label", "pair_id"]).astype({"label": "int64", "pair_id": "int64"})
        write_pairs(pd.DataFrame(pairs, columns=["path_a", "path_b", "issame"]).astype({"issame": bool}), out_dir)
        return write_manifest(frame.assign(split="test")[["path", "label", "split", "pair_id"]], out_dir)

    def prepare(
        self,
        out_dir: str | Path,
        raw_dir: str | Path,
        mirror: str | Path | None = None,
        *,
        resize_short_side: int | None = None,
    ) -> Path:
        """``fetch_raw`` then ``prepare_raw``; return the manifest path."""
        self.fetch_raw(raw_dir, mirror)
        return self.prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)

    @property
    def entry(self) -> DatasetEntry:
        return DatasetEntry(
            name=self.name,
            prepare=self.prepare,
            fetch=self.fetch_raw,
            transform="face",
            in_channels=3,
            max_pixels=CROP_PIXELS,
        )


_SOURCES = load_sources()
LFW = VerificationPack(_SOURCES["lfw"])
CFP_FP = VerificationPack(_SOURCES["cfp_fp"])
AGEDB_30 = VerificationPack(_SOURCES["agedb_30"])
LFW_ENTRY = LFW.entry
CFP_FP_ENTRY = CFP_FP.entry
AGEDB_30_ENTRY = AGEDB_30.entry

__all__ = ["AGEDB_30", "AGEDB_30_ENTRY", "CFP_FP", "CFP_FP_ENTRY", "LFW", "LFW_ENTRY", "VerificationPack"]
