"""CUB-200-2011: fixture archive -> fetch (mirror) -> verify -> extract -> manifest, and every bad input."""

from __future__ import annotations

import json

import pytest
from fixtures.formats import make_jpeg, make_png_bomb, truncate
from fixtures.retrieval import CUB_CLASSES, CUB_PER_CLASS, build_cub, cub_image_name, cub_members, fixture_source
from PIL import Image

from circle_repro.data.acquire import is_verified
from circle_repro.data.annotations import AnnotationError
from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError
from circle_repro.data.datasets import cub200
from circle_repro.data.download import ChecksumError
from circle_repro.data.image_store import SKIPPED_FILENAME, SkippedImagesWarning
from circle_repro.data.manifest import read_content_hash, read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "cub200"
ROOT = "CUB_200_2011"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder holding the fixture CUB_200_2011.tgz; cub200.SOURCE carries its digests."""
    folder = tmp_path / "mirror"
    build_cub(folder)
    monkeypatch.setattr(cub200, "SOURCE", fixture_source(cub200.SOURCE, folder))
    return folder


def _prepare_raw(tmp_path, members):
    raw = tmp_path / "raw"
    build_cub(raw, members)
    return cub200.prepare_raw(raw, tmp_path / "out")


def test_prepare_gives_the_class_disjoint_split(tmp_path, mirror):
    out = tmp_path / "out"
    manifest = cub200.prepare(out, tmp_path / "raw", mirror=mirror)
    frame = read_manifest(out)
    assert manifest == out / "manifest.parquet"
    assert list(frame.columns) == ["path", "label", "split"]
    assert len(frame) == len(CUB_CLASSES) * CUB_PER_CLASS
    by_split = frame.groupby("split")["label"].unique().map(sorted).to_dict()
    assert by_split == {"train": [1, 2, 100], "test": [101, 102, 200]}  # classes 1-100 train, 101-200 test
    assert frame["label"].dtype == "int64"
    assert frame["path"].iloc[0] == f"images/{cub_image_name(1, 0)}"
    assert all((out / p).is_file() for p in frame["path"])
    assert sorted(p.name for p in out.iterdir()) == [
        "content.sha256",
        "files.parquet",
        "images",
        "manifest.parquet",
    ]  # no scratch
    assert is_verified(tmp_path / "raw" / "CUB_200_2011.tgz")
    assert read_content_hash(out)


def test_train_test_split_txt_is_ignored(tmp_path):
    members = cub_members()
    # Every image flagged as a classification test image: the DML split must not change.
    lines = members[f"{ROOT}/train_test_split.txt"].decode().splitlines()
    members[f"{ROOT}/train_test_split.txt"] = "".join(f"{line.split()[0]} 0\n" for line in lines).encode()
    frame = read_manifest(_prepare_raw(tmp_path, members).parent)
    assert (frame["split"] == "train").sum() == 3 * CUB_PER_CLASS


def test_resize_short_side(tmp_path, mirror):
    out = tmp_path / "out"
    cub200.prepare(out, tmp_path / "raw", mirror=mirror, resize_short_side=8)
    with Image.open(out / read_manifest(out)["path"].iloc[0]) as image:
        assert min(image.size) == 8


def test_preparing_again_gives_the_same_content(tmp_path, mirror):
    out = tmp_path / "out"
    cub200.prepare(out, tmp_path / "raw", mirror=mirror)
    first = read_content_hash(out)
    cub200.prepare(out, tmp_path / "raw", mirror=mirror)
    assert read_content_hash(out) == first


@pytest.mark.parametrize("bad_bytes", [make_jpeg(9)[:30], make_png_bomb(20_000, 20_000)], ids=["truncated", "bomb"])
def test_corrupt_image_is_skipped_and_counted(tmp_path, bad_bytes):
    members = cub_members()
    bad = cub_image_name(101, 1)
    members[f"{ROOT}/images/{bad}"] = bad_bytes
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        manifest = _prepare_raw(tmp_path, members)
    frame = read_manifest(manifest.parent)
    assert len(frame) == len(CUB_CLASSES) * CUB_PER_CLASS - 1
    skipped = json.loads((manifest.parent / SKIPPED_FILENAME).read_text())
    assert len(skipped) == 1 and bad in skipped[0]["source"] and "images.txt line" in skipped[0]["source"]


def test_wrong_checksum_is_refused_and_nothing_is_kept(tmp_path):
    mirror = tmp_path / "mirror"
    build_cub(mirror)  # cub200.SOURCE keeps the published checksums, which the fixture does not have
    with pytest.raises(ChecksumError, match=r"CUB_200_2011.tgz: sha256 mismatch"):
        cub200.prepare(tmp_path / "out", tmp_path / "raw", mirror=mirror)
    assert not (tmp_path / "raw" / "CUB_200_2011.tgz").exists()
    assert not (tmp_path / "raw" / "CUB_200_2011.tgz.part").exists()
    assert not (tmp_path / "out").exists()


def test_truncated_archive(tmp_path):
    raw = tmp_path / "raw"
    truncate(build_cub(raw), 0.6)
    with pytest.raises(CorruptArchiveError, match=r"CUB_200_2011.tgz"):
        cub200.prepare_raw(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_traversal_member_is_refused(tmp_path):
    members = cub_members()
    members["../evil.txt"] = b"x"
    with pytest.raises(UnsafeArchiveError, match="escapes the destination"):
        _prepare_raw(tmp_path, members)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("missing", ["images.txt", "image_class_labels.txt", "classes.txt"])
def test_missing_annotation_file_is_named(tmp_path, missing):
    members = cub_members()
    del members[f"{ROOT}/{missing}"]
    with pytest.raises(AnnotationError, match=f"CUB_200_2011.tgz: {ROOT}/{missing} is missing"):
        _prepare_raw(tmp_path, members)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("images.txt", "3", r"images.txt line 3: expected <image_id> <image_name>, got '3'"),
        ("image_class_labels.txt", "3 bird", r"image_class_labels.txt line 3: field <class_id> must be an integer"),
        ("image_class_labels.txt", "3 7", r"image_class_labels.txt line 3: class 7 is not in CUB_200_2011/classes.txt"),
        (
            "image_class_labels.txt",
            "3 101",
            r"images.txt line 3: .* lies in folder '002.Laysan_Albatross', but "
            r"image_class_labels.txt line 3 gives class 101",
        ),
        ("images.txt", f"1 {cub_image_name(1, 0)}", r"images.txt line 3: image id 1 is already used on line 1"),
    ],
)
def test_malformed_line_is_named(tmp_path, file, line, message):
    members = cub_members()
    lines = members[f"{ROOT}/{file}"].decode().splitlines()
    lines[2] = line
    members[f"{ROOT}/{file}"] = ("\n".join(lines) + "\n").encode()
    with pytest.raises(AnnotationError, match=message):
        _prepare_raw(tmp_path, members)


def test_class_outside_1_to_200_is_refused(tmp_path):
    members = cub_members()
    members[f"{ROOT}/classes.txt"] += b"201 201.Extra_Bird\n"
    labels, images = f"{ROOT}/image_class_labels.txt", f"{ROOT}/images.txt"
    members[labels] = members[labels].replace(b"\n12 200\n", b"\n12 201\n")
    members[images] = members[images].replace(b"12 200.Common_Yellowthroat/", b"12 201.Extra_Bird/")
    with pytest.raises(AnnotationError, match=r"images.txt line 12: class 201 is outside 1..200"):
        _prepare_raw(tmp_path, members)


def test_listed_image_missing_from_the_archive(tmp_path):
    members = cub_members()
    del members[f"{ROOT}/images/{cub_image_name(2, 1)}"]
    with pytest.raises(AnnotationError, match=r"images.txt line 4: names .*which the archive does not contain"):
        _prepare_raw(tmp_path, members)
    assert not (tmp_path / "out").exists()


def test_failed_preparation_keeps_the_previous_one(tmp_path, mirror):
    out = tmp_path / "out"
    cub200.prepare(out, tmp_path / "raw", mirror=mirror)
    before = read_content_hash(out)
    members = cub_members()
    del members[f"{ROOT}/classes.txt"]
    build_cub(tmp_path / "bad", members)
    with pytest.raises(AnnotationError):
        cub200.prepare_raw(tmp_path / "bad", out)
    assert read_content_hash(out) == before and len(read_manifest(out)) == len(CUB_CLASSES) * CUB_PER_CLASS
    assert sorted(p.name for p in out.iterdir()) == ["content.sha256", "files.parquet", "images", "manifest.parquet"]


def test_entry():
    assert (cub200.ENTRY.name, cub200.ENTRY.transform, cub200.ENTRY.in_channels) == (
        "cub200",
        "retrieval",
        3,
    )


@pytest.mark.skipif(
    not (REAL_RAW / "CUB_200_2011.tgz").is_file(),
    reason=f"real CUB-200-2011 not present: place CUB_200_2011.tgz in {REAL_RAW}/",
)
def test_real_data_counts(tmp_path):
    expected = cub200.SOURCE.expected_counts
    frame = read_manifest(cub200.prepare(tmp_path / "cub200", REAL_RAW).parent)
    assert len(frame) == expected["images"] == 11788
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    assert (len(train), train["label"].nunique()) == (expected["train_images"], expected["train_classes"])
    assert (len(test), test["label"].nunique()) == (expected["test_images"], expected["test_classes"])
    assert sorted(train["label"].unique()) == list(range(1, 101))
    assert sorted(test["label"].unique()) == list(range(101, 201))
