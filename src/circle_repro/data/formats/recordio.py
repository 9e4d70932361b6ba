"""Pure-Python reader (and a minimal writer) for MXNet/dmlc RecordIO ``.rec`` + ``.idx`` files.

Layout (dmlc-core ``include/dmlc/recordio.h`` + ``src/recordio.cc``; mxnet ``python/mxnet/recordio.py``):

- ``.idx``: text, one line per record, ``"<key>\\t<byte offset>\\n"``.
- ``.rec``: a sequence of little-endian parts ``uint32 magic 0xCED7230A``, ``uint32 lrec`` with
  ``cflag = lrec >> 29`` and ``length = lrec & (2**29 - 1)``, ``length`` payload bytes, zero padding
  to a multiple of 4. The writer splits a payload wherever the magic occurs at a 4-byte-aligned
  offset: cflag 1 (first part), 2 (middle), 3 (last); cflag 0 is a whole record. The reader joins
  the parts, putting the 4 magic bytes back between them.
- An image record's payload starts with an IRHeader, ``struct '<IfQQ'`` = (flag, label, id, id2),
  24 bytes. ``flag > 0`` means ``flag`` float32 labels follow (and the header's ``label`` is 0),
  then the encoded image.
- insightface training packs (``train.rec``): record 0 has flag 2 and label ``[N + 1, N + 1 + C]``
  (image keys are ``1..N``, identity records ``N+1..N+C`` hold ``[first_key, end_key)``); a
  ``property`` text file holds ``"<num_classes>,<H>,<W>"``.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from circle_repro.io import atomic_path

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
MAX_PAYLOAD = 1 << LENGTH_BITS
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
CFLAG_FULL, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3


class RecordIOError(ValueError):
    """A malformed .rec/.idx/property file."""


class IRHeader(NamedTuple):
    """MXNet image-record header; ``label`` is a float, or a float32 vector when ``flag > 0``."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


# --- record payloads (IRHeader + image) ---------------------------------------------------------


def pack(header: IRHeader | Sequence[Any], image: bytes) -> bytes:
    """IRHeader + labels + image bytes, as ``mxnet.recordio.pack`` lays them out.

    A scalar label goes into the header (flag 0); a sequence sets ``flag = len(label)``, writes
    ``label = 0`` in the header and puts the float32 vector right after it.
    """
    _flag, label, rec_id, id2 = header
    if isinstance(label, numbers.Number):
        return struct.pack(IR_FORMAT, 0, float(label), rec_id, id2) + bytes(image)
    vector = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(IR_FORMAT, vector.size, 0.0, rec_id, id2) + vector.tobytes() + bytes(image)


def unpack(payload: bytes) -> tuple[IRHeader, bytes]:
    """Split a record payload into (IRHeader, image bytes); labels become a float32 vector if flag > 0."""
    if len(payload) < IR_SIZE:
        raise RecordIOError(f"record of {len(payload)} bytes is shorter than the {IR_SIZE}-byte IRHeader")
    flag, label, rec_id, id2 = struct.unpack_from(IR_FORMAT, payload)
    rest = payload[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise RecordIOError(f"IRHeader announces {flag} labels but only {len(rest)} bytes follow")
        vector = np.frombuffer(rest, dtype="<f4", count=flag).astype(np.float32)
        return IRHeader(flag, vector, rec_id, id2), bytes(rest[4 * flag :])
    return IRHeader(flag, float(label), rec_id, id2), bytes(rest)


# --- framing ------------------------------------------------------------------------------------


def _part(cflag: int, data: bytes) -> bytes:
    return MAGIC_BYTES + struct.pack("<I", (cflag << LENGTH_BITS) | len(data)) + data


def encode_record(payload: bytes) -> bytes:
    """The bytes dmlc's ``RecordIOWriter::WriteRecord`` emits for one payload (split + padding)."""
    payload = bytes(payload)
    size = len(payload)
    if size >= MAX_PAYLOAD:
        raise RecordIOError(f"RecordIO records must be shorter than 2**29 bytes, got {size}")
    out = bytearray()
    start = 0
    for i in range(0, size - size % 4, 4):
        if payload[i : i + 4] == MAGIC_BYTES:
            out += _part(CFLAG_START if start == 0 else CFLAG_MIDDLE, payload[start:i])
            start = i + 4
    out += _part(CFLAG_END if start != 0 else CFLAG_FULL, payload[start:])
    out += b"\0" * (-size % 4)
    return bytes(out)


def _padded(length: int) -> int:
    return (length + 3) & ~3


class RecordFile:
    """Reads records of one ``.rec`` by byte offset; safe in forked/spawned data-loader workers.

    Reads use ``os.pread`` on a descriptor opened lazily in each process and kept open, so there is no
    shared seek position; pickling drops the descriptor. ``index`` names the .idx the offsets come from
    (for error messages).
    """

    def __init__(self, rec_path: str | os.PathLike[str], index: str | os.PathLike[str] | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.index = None if index is None else Path(index)
        self._fd: int | None = None
        self._pid: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def read_at(self, offset: int) -> bytes:
        """The payload of the record starting at byte ``offset``, split parts reassembled."""
        fd = self._descriptor()
        parts: list[bytes] = []
        position = offset
        while True:
            head = os.pread(fd, 8, position)
            if len(head) < 8:
                raise RecordIOError(f"{self.rec_path}: truncated record header at byte {position}")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                of_index = f"; is {self.index} the index of this file?" if self.index is not None else ""
                raise RecordIOError(
                    f"{self.rec_path}: bad magic 0x{magic:08x} at byte {position} (expected 0x{MAGIC:08x}){of_index}"
                )
            cflag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
            expected = (CFLAG_FULL, CFLAG_START) if not parts else (CFLAG_MIDDLE, CFLAG_END)
            if cflag not in expected:
                raise RecordIOError(
                    f"{self.rec_path}: unexpected continuation flag {cflag} at byte {position} "
                    f"(expected one of {expected})"
                )
            data = os.pread(fd, length, position + 8) if length else b""
            if len(data) < length:
                raise RecordIOError(
                    f"{self.rec_path}: record at byte {offset} is truncated "
                    f"({len(data)} of {length} bytes at byte {position + 8})"
                )
            parts.append(data)
            position += 8 + _padded(length)
            if cflag in (CFLAG_FULL, CFLAG_END):
                return MAGIC_BYTES.join(parts)


class RecordIOReader:
    """Random access to an indexed RecordIO pair, safe to use from forked/spawned data-loader workers
    (see :class:`RecordFile`)."""

    def __init__(self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"{self.rec_path}: no such RecordIO file")
        self._offsets = read_index(self.idx_path)
        self._size = self.rec_path.stat().st_size
        for key, offset in self._offsets.items():
            if offset % 4 or offset + 8 > self._size:
                raise RecordIOError(
                    f"{self.idx_path}: offset {offset} of key {key} is not a record start in "
                    f"{self.rec_path} ({self._size} bytes)"
                )
        self._file = RecordFile(self.rec_path, self.idx_path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # mapping-like access
    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, key: object) -> bool:
        return key in self._offsets

    def keys(self) -> list[int]:
        """Record keys in .idx order."""
        return list(self._offsets)

    def offset(self, key: int) -> int:
        try:
            return self._offsets[key]
        except KeyError:
            raise KeyError(f"key {key!r} is not in {self.idx_path}") from None

    def read(self, key: int) -> bytes:
        """The payload of record ``key``, split parts reassembled."""
        return self.read_at(self.offset(key))

    def read_at(self, offset: int) -> bytes:
        """The payload of the record starting at byte ``offset``."""
        return self._file.read_at(offset)

    def read_record(self, key: int) -> tuple[IRHeader, bytes]:
        """(IRHeader, image bytes) of record ``key``."""
        try:
            return unpack(self.read(key))
        except RecordIOError as err:
            raise RecordIOError(f"{self.rec_path}: key {key}: {err}") from None

    # insightface conventions
    def header0(self) -> IRHeader:
        return self.read_record(0)[0]

    def identity_range(self) -> tuple[int, int] | None:
        """``(N + 1, N + 1 + C)`` from record 0 of an insightface pack, or None if it has no such header."""
        if 0 not in self._offsets:
            return None
        header = self.header0()
        if header.flag < 2:
            return None
        first, end = (int(v) for v in np.asarray(header.label)[:2])
        return first, end

    def image_keys(self) -> list[int]:
        """Keys of the image records: ``1..N`` for an insightface pack (as MXFaceDataset), else all keys."""
        bounds = self.identity_range()
        if bounds is None:
            return self.keys()
        return list(range(1, bounds[0]))

    def identities(self) -> dict[int, tuple[int, int]]:
        """Identity record key -> ``[first_image_key, end_image_key)`` of an insightface pack."""
        bounds = self.identity_range()
        if bounds is None:
            return {}
        out = {}
        for key in range(bounds[0], bounds[1]):
            header = self.read_record(key)[0]
            label = np.asarray(header.label).ravel()
            if label.size < 2:
                raise RecordIOError(f"{self.rec_path}: identity record {key} has no [first, end) label")
            out[key] = (int(label[0]), int(label[1]))
        return out


def read_index(idx_path: str | os.PathLike[str]) -> dict[int, int]:
    """``{key: byte offset}`` from a .idx file, in file order."""
    idx_path = Path(idx_path)
    offsets: dict[int, int] = {}
    with open(idx_path, encoding="ascii") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.strip().split("\t")
            try:
                if len(fields) != 2:
                    raise ValueError
                key, offset = int(fields[0]), int(fields[1])
            except ValueError:
                raise RecordIOError(
                    f"{idx_path}:{number}: expected '<key>\\t<offset>', got {line.rstrip()!r}"
                ) from None
            if key in offsets:
                raise RecordIOError(f"{idx_path}:{number}: duplicate key {key}")
            offsets[key] = offset
    return offsets


def scan_offsets(rec_path: str | os.PathLike[str]) -> list[int]:
    """Start offsets of all records of a .rec file, read sequentially (rebuilds a lost .idx)."""
    rec_path = Path(rec_path)
    starts = []
    with open(rec_path, "rb") as fh:
        position = 0
        in_record = False
        while head := fh.read(8):
            if len(head) < 8:
                raise RecordIOError(f"{rec_path}: truncated record header at byte {position}")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise RecordIOError(f"{rec_path}: bad magic 0x{magic:08x} at byte {position}")
            cflag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
            if cflag in (CFLAG_FULL, CFLAG_START) and not in_record:
                starts.append(position)
            in_record = cflag in (CFLAG_START, CFLAG_MIDDLE)
            fh.seek(_padded(length), os.SEEK_CUR)
            position += 8 + _padded(length)
        if position > rec_path.stat().st_size:
            raise RecordIOError(f"{rec_path}: last record is truncated")
    return starts


def read_property(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(num_classes, height, width)`` from an insightface ``property`` file."""
    path = Path(path)
    fields = path.read_text(encoding="ascii").strip().split(",")
    try:
        if len(fields) != 3:
            raise ValueError
        num_classes, height, width = (int(f) for f in fields)
    except ValueError:
        raise RecordIOError(f"{path}: expected '<num_classes>,<H>,<W>', got {','.join(fields)!r}") from None
    return num_classes, height, width


# --- writer (fixtures, small exports) ------------------------------------------------------------


class RecordIOWriter:
    """Write an indexed .rec/.idx pair; both files land atomically when the ``with`` block succeeds."""

    def __init__(self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        self._stack: contextlib.ExitStack | None = None
        self._rec = None
        self._idx = None
        self._position = 0
        self._keys: set[int] = set()

    def __enter__(self) -> RecordIOWriter:
        stack = contextlib.ExitStack()
        with stack:
            rec_tmp = stack.enter_context(atomic_path(self.rec_path))
            idx_tmp = stack.enter_context(atomic_path(self.idx_path))
            self._rec = stack.enter_context(open(rec_tmp, "wb"))
            self._idx = stack.enter_context(open(idx_tmp, "w", encoding="ascii", newline="\n"))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return stack.__exit__(*exc)

    def tell(self) -> int:
        return self._position

    def write(self, key: int, payload: bytes) -> int:
        """Append one raw payload under ``key``; return its offset."""
        if self._rec is None or self._stack is None:
            raise RuntimeError("use RecordIOWriter inside a 'with' block")
        key = int(key)
        if key in self._keys:
            raise RecordIOError(f"{self.idx_path}: duplicate key {key}")
        offset = self._position
        blob = encode_record(payload)
        self._rec.write(blob)
        self._idx.write(f"{key}\t{offset}\n")
        self._position += len(blob)
        self._keys.add(key)
        return offset

    def write_record(self, key: int, header: IRHeader | Sequence[Any], image: bytes = b"") -> int:
        """Append ``pack(header, image)`` under ``key``; return its offset."""
        return self.write(key, pack(header, image))


def write_record(fh: Any, payload: bytes) -> int:
    """Write one framed record to an open binary file; return the number of bytes written."""
    blob = encode_record(payload)
    fh.write(blob)
    return len(blob)


def write_property(path: str | os.PathLike[str], num_classes: int, height: int = 112, width: int = 112) -> Path:
    """Write an insightface ``property`` file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(f"{num_classes},{height},{width}\n", encoding="ascii")
    return Path(path)


def iter_parts(blob: bytes) -> Iterator[tuple[int, int]]:
    """``(cflag, length)`` of each framed part in ``blob`` (inspection helper for tests/debugging)."""
    position = 0
    while position < len(blob):
        magic, lrec = struct.unpack_from("<II", blob, position)
        if magic != MAGIC:
            raise RecordIOError(f"bad magic at byte {position}")
        length = lrec & LENGTH_MASK
        yield lrec >> LENGTH_BITS, length
        position += 8 + _padded(length)


__all__ = [
    "IR_FORMAT",
    "IR_SIZE",
    "MAGIC",
    "MAGIC_BYTES",
    "IRHeader",
    "RecordFile",
    "RecordIOError",
    "RecordIOReader",
    "RecordIOWriter",
    "encode_record",
    "iter_parts",
    "pack",
    "read_index",
    "read_property",
    "scan_offsets",
    "unpack",
    "write_property",
    "write_record",
]
