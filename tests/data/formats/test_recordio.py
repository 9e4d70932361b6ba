import io
import pickle
import struct

import numpy as np
import pytest
from fixtures.formats import build_ms1m_rec, jpeg_with_magic
from PIL import Image

from circle_repro.data.formats.recordio import (
    IR_SIZE,
    MAGIC_BYTES,
    IRHeader,
    RecordIOError,
    RecordIOReader,
    RecordIOWriter,
    encode_record,
    iter_parts,
    pack,
    read_property,
    scan_offsets,
    unpack,
)


def lrec(cflag, length):
    return struct.pack("<I", (cflag << 29) | length)


def test_magic_is_0xced7230a_little_endian():
    assert bytes.fromhex("0a23d7ce") == MAGIC_BYTES
    assert IR_SIZE == 24


def test_whole_record_bytes_are_exact():
    assert encode_record(b"abcde") == MAGIC_BYTES + lrec(0, 5) + b"abcde" + b"\0\0\0"
    assert encode_record(b"abcd") == MAGIC_BYTES + lrec(0, 4) + b"abcd"
    assert encode_record(b"") == MAGIC_BYTES + lrec(0, 0)


def test_payload_with_aligned_magic_is_split_like_dmlc():
    payload = b"AAAA" + MAGIC_BYTES + b"BBBBBB"
    expected = MAGIC_BYTES + lrec(1, 4) + b"AAAA" + MAGIC_BYTES + lrec(3, 6) + b"BBBBBB" + b"\0\0"
    assert encode_record(payload) == expected


def test_unaligned_magic_is_not_split():
    payload = b"AA" + MAGIC_BYTES + b"BB"
    assert list(iter_parts(encode_record(payload))) == [(0, 8)]


@pytest.mark.parametrize(
    "payload, flags",
    [
        (MAGIC_BYTES + b"rest", [1, 3]),  # magic first: empty first part
        (b"head" + MAGIC_BYTES, [1, 3]),  # magic last: empty last part
        (b"x" * 8 + MAGIC_BYTES * 3 + b"yz", [1, 2, 2, 3]),  # back-to-back: empty middle parts
        (MAGIC_BYTES, [1, 3]),
    ],
)
def test_split_edge_cases_round_trip(tmp_path, payload, flags):
    assert [cflag for cflag, _ in iter_parts(encode_record(payload))] == flags
    with RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx") as writer:
        writer.write(7, payload)
        writer.write(8, b"after")
    reader = RecordIOReader(tmp_path / "t.rec", tmp_path / "t.idx")
    assert reader.read(7) == payload
    assert reader.read(8) == b"after"


def test_idx_is_tab_separated_key_offset(tmp_path):
    with RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx") as writer:
        writer.write(0, b"abcde")
        writer.write(5, b"xy")
    assert (tmp_path / "t.idx").read_text() == "0\t0\n5\t16\n"


def test_irheader_pack_matches_mxnet_layout():
    scalar = pack(IRHeader(0, 3.0, 42, 0), b"IMG")
    assert scalar == struct.pack("<IfQQ", 0, 3.0, 42, 0) + b"IMG"
    vector = pack(IRHeader(0, [1.0, 2.0, 3.0], 7, 1), b"IMG")
    assert vector == struct.pack("<IfQQ", 3, 0.0, 7, 1) + struct.pack("<3f", 1, 2, 3) + b"IMG"
    header, image = unpack(vector)
    assert header.flag == 3 and header.id == 7 and header.id2 == 1 and image == b"IMG"
    np.testing.assert_array_equal(header.label, [1.0, 2.0, 3.0])
    assert unpack(scalar) == (IRHeader(0, 3.0, 42, 0), b"IMG")


def test_unpack_rejects_short_label_vector():
    with pytest.raises(RecordIOError, match="announces 4 labels"):
        unpack(struct.pack("<IfQQ", 4, 0.0, 0, 0) + b"\0" * 8)


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory):
    return build_ms1m_rec(tmp_path_factory.mktemp("faces_emore"))


def test_insightface_pack_round_trip(pack_dir):
    reader = RecordIOReader(pack_dir.rec, pack_dir.idx)
    n, c = pack_dir.num_images, pack_dir.num_classes
    assert len(reader) == 1 + n + c
    assert reader.keys() == list(range(1 + n + c))
    header0 = reader.header0()
    assert header0.flag == 2
    np.testing.assert_array_equal(header0.label, [n + 1, n + 1 + c])
    assert reader.identity_range() == (n + 1, n + 1 + c)
    assert reader.image_keys() == list(range(1, n + 1))
    assert reader.identities() == pack_dir.identities
    for key in reader.image_keys():
        header, image = reader.read_record(key)
        assert image == pack_dir.images[key]
        expected = pack_dir.labels[key]
        if isinstance(expected, list):
            assert header.flag == 2
            np.testing.assert_array_equal(header.label, expected)
        else:
            assert header.flag == 0 and header.label == expected
        assert header.id == key
        assert Image.open(io.BytesIO(image)).size == (16, 16)
    assert read_property(pack_dir.property) == (c, 112, 112)


def test_fixture_really_contains_split_records(pack_dir):
    blob = pack_dir.rec.read_bytes()
    flags = [cflag for cflag, _ in iter_parts(blob)]
    assert flags.count(1) == len(pack_dir.split_keys) == 2
    assert 2 in flags and 3 in flags
    reader = RecordIOReader(pack_dir.rec, pack_dir.idx)
    for key in pack_dir.split_keys:
        raw = reader.read(key)
        assert MAGIC_BYTES in raw
        assert raw[IR_SIZE:] == pack_dir.images[key] or raw[IR_SIZE + 8 :] == pack_dir.images[key]


def test_scan_offsets_rebuilds_the_index(pack_dir):
    reader = RecordIOReader(pack_dir.rec, pack_dir.idx)
    assert scan_offsets(pack_dir.rec) == [reader.offset(k) for k in reader.keys()]  # noqa: SIM118 (the reader is not iterable)


def test_reader_survives_pickling_for_dataloader_workers(pack_dir):
    reader = RecordIOReader(pack_dir.rec, pack_dir.idx)
    reader.read(1)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.read_record(2)[1] == pack_dir.images[2]


def test_missing_key_and_wrong_index(tmp_path, pack_dir):
    reader = RecordIOReader(pack_dir.rec, pack_dir.idx)
    with pytest.raises(KeyError, match="999"):
        reader.read(999)
    bad_idx = tmp_path / "bad.idx"
    bad_idx.write_text(f"0\t{reader.offset(1) + 8}\n")
    with pytest.raises(RecordIOError, match=r"bad magic .* at byte"):
        RecordIOReader(pack_dir.rec, bad_idx).read(0)
    (tmp_path / "garbled.idx").write_text("0 0\n")
    with pytest.raises(RecordIOError, match=r"garbled.idx:1"):
        RecordIOReader(pack_dir.rec, tmp_path / "garbled.idx")
    (tmp_path / "far.idx").write_text("0\t99999996\n")
    with pytest.raises(RecordIOError, match="not a record start"):
        RecordIOReader(pack_dir.rec, tmp_path / "far.idx")


def test_truncated_rec_is_reported(tmp_path):
    payload = b"\x01" * 40
    with RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx") as writer:
        writer.write(0, b"ok")
        writer.write(1, payload)
    blob = (tmp_path / "t.rec").read_bytes()
    (tmp_path / "t.rec").write_bytes(blob[:-10])
    reader = RecordIOReader(tmp_path / "t.rec", tmp_path / "t.idx")
    assert reader.read(0) == b"ok"
    with pytest.raises(RecordIOError, match=r"t.rec: record at byte 12 is truncated"):
        reader.read(1)
    with pytest.raises(RecordIOError, match="truncated"):
        scan_offsets(tmp_path / "t.rec")


def test_split_record_missing_its_end_part_is_reported(tmp_path):
    (tmp_path / "t.rec").write_bytes(MAGIC_BYTES + lrec(1, 4) + b"AAAA" + MAGIC_BYTES + lrec(0, 0))
    (tmp_path / "t.idx").write_text("0\t0\n")
    with pytest.raises(RecordIOError, match="unexpected continuation flag 0"):
        RecordIOReader(tmp_path / "t.rec", tmp_path / "t.idx").read(0)


def test_writer_failure_leaves_no_files(tmp_path):
    with pytest.raises(RuntimeError), RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx") as writer:
        writer.write(0, jpeg_with_magic(1))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
