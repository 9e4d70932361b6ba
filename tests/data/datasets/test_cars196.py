"""Cars196: packaging A (car_ims.tgz + cars_annos.mat) and B (devkit) -> class-split manifest; bad inputs."""

from __future__ import annotations

import pytest
from fixtures.formats import truncate
from fixtures.retrieval import CARS_CLASSES, CARS_PER_CLASS, build_cars_a, build_cars_b, devkit_annos, fixture_source

from circle_repro.data.acquire import is_verified
from circle_repro.data.annotations import AnnotationError
from circle_repro.data.archive import CorruptArchiveError
from circle_repro.data.datasets import cars196
from circle_repro.data.download import ChecksumError
from circle_repro.data.formats.cars_mat import CarsMatError
from circle_repro.data.manifest import read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "cars196"
N_IMAGES = len(CARS_CLASSES) * CARS_PER_CLASS
SPLIT = {"train": [1, 2, 98], "test": [99, 100, 196]}  # classes 1-98 train, 99-196 test


def _labels_by_split(frame):
    return frame.groupby("split")["label"].unique().map(sorted).to_dict()


@pytest.fixture
def placed(tmp_path, monkeypatch):
    """Return a function placing packaging A and/or B in a folder, with cars196.SOURCE carrying their digests."""

    def place(folder, *packagings):
        for packaging in packagings:
            {"A": build_cars_a, "B": build_cars_b}[packaging](folder)
        monkeypatch.setattr(cars196, "SOURCE", fixture_source(cars196.SOURCE, folder))
        return folder

    return place


def test_packaging_a_split_on_class_not_on_the_test_flag(tmp_path, placed):
    raw = placed(tmp_path / "raw", "A")
    out = tmp_path / "out"
    cars196.prepare(out, raw)
    frame = read_manifest(out)
    assert list(frame.columns) == ["path", "label", "split"] and len(frame) == N_IMAGES
    assert _labels_by_split(frame) == SPLIT
    # the fixture's `test` flag alternates within every class; the split ignores it
    assert frame.groupby("label")["split"].nunique().eq(1).all()
    assert frame["path"].iloc[0] == "images/car_ims/000001.jpg"
    assert all((out / p).is_file() for p in frame["path"])
    assert is_verified(raw / "car_ims.tgz") and is_verified(raw / "cars_annos.mat")


def test_packaging_b_pools_train_and_test(tmp_path, placed):
    raw = placed(tmp_path / "raw", "B")
    out = tmp_path / "out"
    cars196.prepare(out, raw)
    frame = read_manifest(out)
    assert len(frame) == N_IMAGES and _labels_by_split(frame) == SPLIT
    assert frame["label"].value_counts().eq(CARS_PER_CLASS).all()
    assert {p.split("/")[1] for p in frame["path"]} == {"cars_train", "cars_test"}
    assert "images/cars_test/00001.jpg" in set(frame["path"])


def test_files_are_copied_from_a_mirror(tmp_path, placed):
    mirror = placed(tmp_path / "mirror", "A")
    cars196.prepare(tmp_path / "out", tmp_path / "raw", mirror=mirror)
    assert (tmp_path / "raw" / "cars_annos.mat").is_file() and len(read_manifest(tmp_path / "out")) == N_IMAGES


def test_packaging_a_is_preferred(tmp_path, placed):
    raw = placed(tmp_path / "raw", "A", "B")
    frame = read_manifest(cars196.prepare(tmp_path / "out", raw).parent)
    assert frame["path"].str.startswith("images/car_ims/").all()


def test_nothing_placed_explains_what_to_put_where(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(FileNotFoundError) as info:
        cars196.prepare(tmp_path / "out", raw)
    message = str(info.value)
    assert str(raw) in message
    for name in (
        "car_ims.tgz",
        "cars_annos.mat",
        "cars_train.tgz",
        "cars_test.tgz",
        "car_devkit.tgz",
        "cars_test_annos_withlabels.mat",
    ):
        assert name in message
    assert "404" in message and "Kaggle" in message  # instructions and substitutes from sources.yaml
    assert not (tmp_path / "out").exists()


def test_incomplete_packaging_names_the_missing_file(tmp_path, placed):
    raw = placed(tmp_path / "raw", "B")
    (raw / "cars_test.tgz").unlink()
    with pytest.raises(FileNotFoundError, match=r"packaging B: .*\(missing: cars_test.tgz\)"):
        cars196.fetch_raw(raw)


def test_wrong_md5_is_refused_and_the_placed_file_kept(tmp_path):
    raw = tmp_path / "raw"
    build_cars_a(raw)  # cars196.SOURCE keeps the published md5s
    with pytest.raises(ChecksumError, match=r"car_ims.tgz: md5 mismatch.*replace"):
        cars196.prepare(tmp_path / "out", raw)
    assert (raw / "car_ims.tgz").is_file() and not is_verified(raw / "car_ims.tgz")
    assert not (tmp_path / "out").exists()


def test_packaging_b_wrong_size_is_refused(tmp_path):
    raw = tmp_path / "raw"
    build_cars_b(raw)  # the published sizes are ~1 GB
    with pytest.raises(ChecksumError, match=r"size in bytes mismatch: expected 979269282"):
        cars196.fetch_raw(raw)


def test_annotation_field_missing(tmp_path, placed):
    raw = tmp_path / "raw"
    build_cars_a(raw, drop_field="class")
    placed(raw)
    with pytest.raises(CarsMatError, match=r"lack the field\(s\) \['class'\]"):
        cars196.prepare(tmp_path / "out", raw)
    assert not (tmp_path / "out").exists()


def test_unlabelled_test_annotations_are_refused(tmp_path, placed):
    raw = tmp_path / "raw"
    build_cars_b(raw, labelled_test=False)
    placed(raw)
    with pytest.raises(AnnotationError, match=r"cars_test_annos_withlabels.mat: annotations lack the field"):
        cars196.prepare(tmp_path / "out", raw)


def test_devkit_class_outside_the_class_names(tmp_path):
    raw = tmp_path / "raw"
    build_cars_b(raw)
    (raw / "cars_test_annos_withlabels.mat").write_bytes(devkit_annos([("00001.jpg", 197)]))
    with pytest.raises(AnnotationError, match=r"annotations\[0\] \(00001.jpg\) has class 197, outside 1..196"):
        cars196.prepare_raw(raw, tmp_path / "out")


def test_unreadable_mat(tmp_path):
    raw = tmp_path / "raw"
    build_cars_b(raw)
    (raw / "cars_test_annos_withlabels.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(AnnotationError, match=r"cars_test_annos_withlabels.mat: not a readable MATLAB file"):
        cars196.prepare_raw(raw, tmp_path / "out")


def test_annotated_image_missing_from_the_archive(tmp_path, placed):
    raw = tmp_path / "raw"
    build_cars_a(raw, drop_image="car_ims/000003.jpg")
    placed(raw)
    with pytest.raises(AnnotationError, match=r"cars_annos.mat annotations\[2\]: names 'car_ims/000003.jpg'"):
        cars196.prepare(tmp_path / "out", raw)


def test_truncated_image_archive(tmp_path):
    raw = tmp_path / "raw"
    build_cars_a(raw)
    truncate(raw / "car_ims.tgz", 0.5)
    with pytest.raises(CorruptArchiveError, match=r"car_ims.tgz"):
        cars196.prepare_raw(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_entry():
    entry = cars196.ENTRY
    assert (entry.name, entry.transform, entry.in_channels) == ("cars196", "retrieval", 3)


def _real_present() -> bool:
    return any(all((REAL_RAW / n).is_file() for n in files) for files in (cars196.PACKAGING_A, cars196.PACKAGING_B))


@pytest.mark.skipif(
    not _real_present(),
    reason=f"real Cars196 not present: place car_ims.tgz + cars_annos.mat (or the four devkit files) in {REAL_RAW}/",
)
def test_real_data_counts(tmp_path):
    expected = cars196.SOURCE.expected_counts
    frame = read_manifest(cars196.prepare(tmp_path / "cars196", REAL_RAW).parent)
    assert len(frame) == expected["images"] == 16185
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    assert (len(train), train["label"].nunique()) == (expected["train_images"], expected["train_classes"])
    assert (len(test), test["label"].nunique()) == (expected["test_images"], expected["test_classes"])
    assert sorted(train["label"].unique()) == list(range(1, 99))
    assert sorted(test["label"].unique()) == list(range(99, 197))
