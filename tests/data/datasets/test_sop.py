"""Stanford Online Products: fixture zip -> fetch (mirror) -> verify -> extract -> manifest; bad inputs."""

from __future__ import annotations

import pytest
from fixtures.formats import make_jpeg, truncate
from fixtures.retrieval import SOP_TEST, SOP_TRAIN, build_sop, fixture_source, sop_members

from circle_repro.data.annotations import AnnotationError
from circle_repro.data.archive import CorruptArchiveError
from circle_repro.data.datasets import sop
from circle_repro.data.download import ChecksumError
from circle_repro.data.image_store import SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "sop"
ROOT = "Stanford_Online_Products"


def _count(products):
    return sum(p[-1] for p in products)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder holding the fixture Stanford_Online_Products.zip; sop.SOURCE carries its digests."""
    folder = tmp_path / "mirror"
    build_sop(folder)
    monkeypatch.setattr(sop, "SOURCE", fixture_source(sop.SOURCE, folder))
    return folder


def _prepare_raw(tmp_path, members):
    raw = tmp_path / "raw"
    build_sop(raw, members)
    return sop.prepare_raw(raw, tmp_path / "out")


def _edit_line(members, name, index, text):
    lines = members[f"{ROOT}/{name}"].decode().splitlines()
    lines[index] = text
    members[f"{ROOT}/{name}"] = ("\n".join(lines) + "\n").encode()
    return members


def test_prepare_splits_by_the_ebay_lists(tmp_path, mirror):
    out = tmp_path / "out"
    sop.prepare(out, tmp_path / "raw", mirror=mirror)
    frame = read_manifest(out)
    assert list(frame.columns) == ["path", "label", "split"]
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    assert len(train) == _count(SOP_TRAIN) and len(test) == _count(SOP_TEST)
    assert sorted(train["label"].unique()) == [p[0] for p in SOP_TRAIN]  # global class ids kept
    assert sorted(test["label"].unique()) == [p[0] for p in SOP_TEST]
    assert not set(train["label"]) & set(test["label"])
    assert frame["path"].iloc[0] == "images/bicycle_final/111085122871_0.JPG"
    assert all((out / p).is_file() for p in frame["path"])
    assert sorted(p.name for p in out.iterdir()) == ["content.sha256", "files.parquet", "images", "manifest.parquet"]


def test_header_of_any_text_is_skipped(tmp_path):
    # the TFDS dummy data writes the header without "image_id"
    members = _edit_line(sop_members(), "Ebay_test.txt", 0, " class_id super_class_id path")
    assert len(read_manifest(_prepare_raw(tmp_path, members).parent)) == _count(SOP_TRAIN) + _count(SOP_TEST)


def test_missing_header_is_refused(tmp_path):
    members = sop_members()
    text = members[f"{ROOT}/Ebay_train.txt"].decode()
    members[f"{ROOT}/Ebay_train.txt"] = text.split("\n", 1)[1].encode()
    with pytest.raises(AnnotationError, match=r"Ebay_train.txt line 1: expected a header line"):
        _prepare_raw(tmp_path, members)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3 1 1", r"Ebay_train.txt line 3: expected <image_id> <class_id> <super_class_id> <path>, got '3 1 1'"),
        ("3 one 1 bicycle_final/111085122871_1.JPG", r"Ebay_train.txt line 3: field <class_id> must be an integer"),
        (
            "3 1 1 bicycle_final/111085122871_0.JPG",
            r"Ebay_train.txt line 3: image 'bicycle_final/111085122871_0.JPG' "
            r"is already listed in .*Ebay_train.txt line 2",
        ),
        ("3 1 1 ../../escape.JPG", r"Ebay_train.txt line 3: image path '../../escape.JPG' must stay inside"),
    ],
)
def test_malformed_line_is_named(tmp_path, line, message):
    with pytest.raises(AnnotationError, match=message):
        _prepare_raw(tmp_path, _edit_line(sop_members(), "Ebay_train.txt", 2, line))
    assert not (tmp_path / "out").exists()


def test_class_in_both_splits_is_refused(tmp_path):
    members = _edit_line(sop_members(), "Ebay_test.txt", 1, "8 2 1 bicycle_final/251173823112_0.JPG")
    message = r"class 2 appears in .*Ebay_train.txt line 4 and in .*Ebay_test.txt line 2"
    with pytest.raises(AnnotationError, match=message):
        _prepare_raw(tmp_path, members)


@pytest.mark.parametrize("missing", ["Ebay_train.txt", "Ebay_test.txt"])
def test_missing_list_is_named(tmp_path, missing):
    members = sop_members()
    del members[f"{ROOT}/{missing}"]
    with pytest.raises(AnnotationError, match=f"Stanford_Online_Products.zip: {ROOT}/{missing} is missing"):
        _prepare_raw(tmp_path, members)


def test_listed_image_missing_from_the_archive(tmp_path):
    members = sop_members()
    del members[f"{ROOT}/toaster_final/131115298233_2.JPG"]
    with pytest.raises(AnnotationError, match=r"Ebay_test.txt line 8: names 'toaster_final/131115298233_2.JPG'"):
        _prepare_raw(tmp_path, members)


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    members = sop_members()
    members[f"{ROOT}/cabinet_final/110997645478_1.JPG"] = make_jpeg(1)[:25]
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        frame = read_manifest(_prepare_raw(tmp_path, members).parent)
    assert len(frame) == _count(SOP_TRAIN) + _count(SOP_TEST) - 1


def test_wrong_checksum_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    build_sop(mirror)  # sop.SOURCE keeps the published checksums
    with pytest.raises(ChecksumError, match=r"Stanford_Online_Products.zip: sha256 mismatch"):
        sop.prepare(tmp_path / "out", tmp_path / "raw", mirror=mirror)
    assert not (tmp_path / "raw" / "Stanford_Online_Products.zip").exists()
    assert not (tmp_path / "out").exists()


def test_truncated_zip(tmp_path):
    raw = tmp_path / "raw"
    truncate(build_sop(raw), 0.5)
    with pytest.raises(CorruptArchiveError, match=r"Stanford_Online_Products.zip"):
        sop.prepare_raw(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_entry():
    assert (sop.ENTRY.name, sop.ENTRY.transform, sop.ENTRY.in_channels) == (
        "sop",
        "retrieval",
        3,
    )


@pytest.mark.skipif(
    not (REAL_RAW / "Stanford_Online_Products.zip").is_file(),
    reason=f"real SOP not present: place Stanford_Online_Products.zip in {REAL_RAW}/",
)
def test_real_data_counts(tmp_path):
    expected = sop.SOURCE.expected_counts
    frame = read_manifest(sop.prepare(tmp_path / "sop", REAL_RAW).parent)
    assert len(frame) == expected["images"] == 120053
    assert frame["label"].nunique() == expected["classes"]
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    assert (len(train), train["label"].nunique()) == (expected["train_images"], expected["train_classes"])
    assert (len(test), test["label"].nunique()) == (expected["test_images"], expected["test_classes"])
    assert not set(train["label"]) & set(test["label"])
