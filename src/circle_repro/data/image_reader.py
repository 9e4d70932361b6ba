"""A prepared data set's images by manifest path: their encoded bytes (decoding: :mod:`.image_decode`).

A manifest ``path`` names either a loose file under the prepared folder (``images/3/17.jpg``) or record
``<key>`` of a RecordIO pack in that folder: ``<pack>.rec#<key>``, with the pack's index ``<pack>.idx``
beside it. A record holds an MXNet IRHeader before the image (insightface's ``train.rec`` layout), so
an MS1M pack is read as it was downloaded. Packs are opened lazily in each process and kept open
(one descriptor per pack and process), so a reader is safe to hand to DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.data.formats.recordio import RecordFile, RecordIOError, unpack

PACK_SUFFIX = ".rec"
INDEX_SUFFIX = ".idx"
KEY_SEPARATOR = "#"


class PackError(RecordIOError):
    """A pack (or its index) does not match what the manifest names; the message names the file and the fix."""


def pack_member(pack: str, key: int) -> str:
    """The manifest path of record ``key`` of pack ``pack`` (a path relative to the prepared folder)."""
    return f"{pack}{KEY_SEPARATOR}{int(key)}"


def split_pack_member(path: str) -> tuple[str, int] | None:
    """``(pack, key)`` of a manifest path naming a pack record, else None (a loose file)."""
    pack, separator, key = path.rpartition(KEY_SEPARATOR)
    if not separator or not pack.endswith(PACK_SUFFIX) or not key.isdigit():
        return None
    return pack, int(key)


def _refresh_hint(rec_path: Path) -> str:
    return (
        f"the pack is truncated, corrupt or was replaced after preparation; copy {rec_path.name} and its "
        f"{INDEX_SUFFIX} again from the download and re-run `circle-repro data prepare` for this data set"
    )


def read_pack_index(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, offsets)`` of a ``.idx`` file (``<key>\\t<offset>`` lines), as int64 arrays in file order."""
    try:
        table = pd.read_csv(idx_path, sep="\t", header=None, names=["key", "offset"], dtype=np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{idx_path}: pack index not found; re-run `circle-repro data prepare` for this data set"
        ) from None
    except (ValueError, pd.errors.ParserError) as err:
        raise PackError(f"{idx_path}: not a '<key>\\t<offset>' index ({err}); {_refresh_hint(idx_path)}") from None
    return table["key"].to_numpy(), table["offset"].to_numpy()


def pack_offsets(rec_path: Path, keys: np.ndarray) -> np.ndarray:
    """Byte offsets in ``rec_path`` of records ``keys``, from the ``.idx`` beside it; PackError when the index
    lacks a key or points past the end of the ``.rec``."""
    if not rec_path.is_file():
        raise FileNotFoundError(f"{rec_path}: pack not found; re-run `circle-repro data prepare` for this data set")
    idx_path = rec_path.with_suffix(INDEX_SUFFIX)
    index_keys, index_offsets = read_pack_index(idx_path)
    order = np.argsort(index_keys, kind="stable")
    sorted_keys = index_keys[order]
    position = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
    found = (sorted_keys[position] == keys) if len(sorted_keys) else np.zeros(len(keys), dtype=bool)
    if not found.all():
        raise PackError(
            f"{idx_path}: has no record {int(keys[~found][0])} ({int((~found).sum())} key(s) of the "
            f"manifest missing); {_refresh_hint(rec_path)}"
        )
    offsets = index_offsets[order][position]
    size = rec_path.stat().st_size
    beyond = offsets + 8 > size
    if beyond.any():
        raise PackError(
            f"{rec_path}: record {int(keys[beyond][0])} starts at byte {int(offsets[beyond][0])}, past the "
            f"end of the file ({size} bytes); {_refresh_hint(rec_path)}"
        )
    return offsets


class ImageReader:
    """Encoded bytes of the images that ``paths`` (manifest paths) name under ``root``, by position."""

    def __init__(self, root: str | Path, paths: Sequence[str] | np.ndarray) -> None:
        self.root = Path(root)
        paths = pd.Series(np.asarray(paths, dtype=object), dtype=object)
        members = paths.str.extract(rf"^(.+\{PACK_SUFFIX}){KEY_SEPARATOR}(\d+)$")
        packed = members[0].notna().to_numpy()
        # numpy arrays, not Python lists: DataLoader workers read them without copying pages (no refcounts).
        self._pack_of = np.full(len(paths), -1, dtype=np.int32)
        self._offsets = np.zeros(len(paths), dtype=np.int64)
        self._packs: list[RecordFile] = []
        for number, pack in enumerate(pd.unique(members[0][packed])):
            rows = (members[0] == pack).to_numpy()
            rec_path = self.root / pack
            self._offsets[rows] = pack_offsets(rec_path, members[1][rows].astype(np.int64).to_numpy())
            self._pack_of[rows] = number
            self._packs.append(RecordFile(rec_path, rec_path.with_suffix(INDEX_SUFFIX)))
        self._loose = np.asarray(
            [str(self.root / p) if not is_packed else "" for p, is_packed in zip(paths, packed, strict=True)], dtype=str
        )

    def __len__(self) -> int:
        return len(self._pack_of)

    def read(self, index: int) -> bytes:
        """The encoded image of the ``index``-th path."""
        pack = self._pack_of[index]
        if pack < 0:
            with open(self._loose[index], "rb") as fh:
                return fh.read()
        record = self._packs[pack]
        try:
            return unpack(record.read_at(int(self._offsets[index])))[1]
        except RecordIOError as err:
            raise PackError(f"{err}; {_refresh_hint(record.rec_path)}") from None


__all__ = ["ImageReader", "PackError", "pack_member", "pack_offsets", "read_pack_index", "split_pack_member"]
