"""IDX arrays (MNIST, Fashion-MNIST), plain or gzipped.

Layout (LeCun's MNIST page; Fashion-MNIST README): a big-endian 4-byte magic ``00 00 TT NN`` where
``TT`` is the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64) and ``NN`` the number of dimensions; then ``NN`` big-endian uint32 sizes; then the
elements, big-endian, in C order. Images are ``0x00000803`` (N x 28 x 28), labels ``0x00000801``.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from circle_repro.io import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[np.dtype, int] = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX array."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({err}); fetch the file again") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (gzip detected from its magic bytes), in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack_from(">HBB", raw)
    if zero != 0 or code not in DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{path}: bad IDX magic 0x{raw[:4].hex()} (expected 0x0000TTNN with type TT in "
            f"{{{', '.join(f'0x{c:02x}' for c in DTYPES)}}} and NN >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: IDX data {what}: shape {shape} of {dtype.name} needs {expected} bytes "
            f"after the header, found {actual}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def idx_header(shape: tuple[int, ...], dtype: np.dtype | str) -> bytes:
    """The magic + dimension bytes of an IDX array of ``shape`` and ``dtype``."""
    native = np.dtype(dtype).newbyteorder("=")
    if native not in CODES:
        raise ValueError(f"IDX cannot store dtype {np.dtype(dtype)}; allowed: {sorted(d.name for d in CODES)}")
    if not 1 <= len(shape) <= 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got shape {shape}")
    return struct.pack(">HBB", 0, CODES[native], len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, atomically; gzip it (deterministically, mtime 0) when ``compress`` or a .gz name."""
    path = Path(path)
    array = np.asarray(array)
    code = CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    blob = idx_header(array.shape, array.dtype) + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        blob = gzip.compress(blob, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return path


__all__ = ["IdxFormatError", "idx_header", "read_idx", "write_idx"]
