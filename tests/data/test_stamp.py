"""The prepared data's stamp: every file's size and hash recorded at preparation, checked before a step."""

import hashlib

import pandas as pd
import pytest

from circle_repro.data.manifest import read_content_hash, verify_prepared, write_manifest
from circle_repro.data.stamp import FILES_FILENAME, DataStampError, verify_files


@pytest.fixture
def prepared(tmp_path):
    frame = pd.DataFrame({"path": [f"images/{i}.png" for i in range(4)], "label": [0, 0, 1, 1], "split": ["train"] * 4})
    (tmp_path / "images").mkdir()
    for i, path in enumerate(frame["path"]):
        (tmp_path / path).write_bytes(bytes([i]) * (100 + i))
    write_manifest(frame, tmp_path)
    return tmp_path


def test_the_stamp_records_every_files_size_and_hash(prepared):
    files = pd.read_parquet(prepared / FILES_FILENAME)
    assert files["path"].tolist() == [f"images/{i}.png" for i in range(4)]
    assert files["bytes"].tolist() == [100, 101, 102, 103]
    assert files["sha256"].tolist() == [hashlib.sha256(bytes([i]) * (100 + i)).hexdigest() for i in range(4)]
    for level in ("sizes", "full", "none"):
        verify_prepared(prepared, level)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.unlink(), "images/2.png is missing"),
        (lambda f: f.write_bytes(b""), "images/2.png has 0 bytes, 102 when prepared"),
        (lambda f: f.write_bytes(f.read_bytes()[:50]), "images/2.png has 50 bytes, 102 when prepared"),
        (lambda f: f.write_bytes(b"another image" * 20), "images/2.png has 260 bytes, 102 when prepared"),
    ],
    ids=["missing", "zero-byte", "truncated", "swapped"],
)
def test_a_missing_emptied_truncated_or_swapped_file_is_named_by_the_cheap_check(prepared, damage, message):
    damage(prepared / "images/2.png")
    with pytest.raises(DataStampError, match=message) as info:
        verify_prepared(prepared)
    assert "Re-run `circle-repro data prepare`" in str(info.value)
    verify_prepared(prepared, "none")  # the check can be skipped on request


def test_a_same_size_swap_passes_the_size_check_and_is_named_by_the_full_check(prepared):
    (prepared / "images/1.png").write_bytes(b"\xff" * 101)
    verify_prepared(prepared, "sizes")
    with pytest.raises(DataStampError, match=r"images/1.png has other bytes than when prepared"):
        verify_prepared(prepared, "full")


def test_an_edited_manifest_fails_the_full_check(prepared):
    frame = pd.read_parquet(prepared / "manifest.parquet")
    frame.loc[0, "label"] = 1
    frame.to_parquet(prepared / "manifest.parquet", index=False)
    verify_prepared(prepared, "sizes")
    with pytest.raises(DataStampError, match=r"content.sha256: missing or not the hash of the manifest"):
        verify_prepared(prepared, "full")
    assert read_content_hash(prepared)  # the recorded hash is left as it was


def test_a_set_prepared_without_a_stamp_asks_for_a_new_preparation(prepared):
    (prepared / FILES_FILENAME).unlink()
    with pytest.raises(DataStampError, match=r"files.parquet: not found.*re-run `circle-repro data prepare`"):
        verify_prepared(prepared)


def test_an_unknown_level_is_refused(prepared):
    with pytest.raises(ValueError, match=r"one of \['sizes', 'full', 'none'\]"):
        verify_files(prepared, pd.read_parquet(prepared / "manifest.parquet"), "some")
