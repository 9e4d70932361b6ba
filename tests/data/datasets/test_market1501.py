"""Market-1501: the fixture archive through fetch_raw -> prepare_raw, the paper's split, and every bad input."""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile

import numpy as np
import pytest
from fixtures.formats import truncate
from fixtures.reid import MARKET_ARCHIVE, MARKET_ROOT, build_market1501, market_name
from PIL import Image

from circle_repro.data.acquire import stamp_path
from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError, list_members
from circle_repro.data.datasets import market1501, prepare_dataset
from circle_repro.data.datasets.entry import CROP_PIXELS
from circle_repro.data.download import ChecksumError
from circle_repro.data.image_store import SKIPPED_FILENAME, SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "market1501"


def _accept(monkeypatch, md5: str) -> None:
    """Make the module's declared md5 the fixture archive's (the real one is in sources.yaml)."""
    archive = dataclasses.replace(market1501.SOURCE.files[0], md5=md5)
    monkeypatch.setattr(market1501, "SOURCE", dataclasses.replace(market1501.SOURCE, files=(archive,)))


def _assert_clean(out_dir) -> None:
    """Nothing half-written: no manifest, no images, no scratch folders."""
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.fixture
def raw(tmp_path, monkeypatch):
    fixture = build_market1501(tmp_path / "raw")
    _accept(monkeypatch, fixture.md5)
    return fixture


def test_prepare_gives_the_paper_split_with_reid_columns(tmp_path, raw):
    manifest = market1501.prepare(tmp_path / "out", tmp_path / "raw")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split", "camera", "role"]
    assert frame["label"].dtype == np.int64 and frame["camera"].dtype == np.int64
    train = frame[frame["split"] == "train"]
    query = frame[frame["role"] == "query"]
    gallery = frame[frame["role"] == "gallery"]
    assert len(train) == raw.count("train") == 5 and sorted(train["label"].unique()) == [2, 7]
    assert train["role"].isna().all()
    assert len(query) == raw.count("test", "query") == 3 and set(query["split"]) == {"test"}
    assert len(gallery) == raw.count("test", "gallery") == 6 and set(gallery["split"]) == {"test"}
    assert (gallery["label"] == 0).sum() == 2  # distractors kept in the gallery
    assert (frame["label"] != -1).all()  # junk dropped
    assert not frame["path"].str.contains("gt_bbox|gt_query").any()
    for row in frame.itertuples():
        pid, camera, split, role, data = raw.images[row.path.removeprefix("images/")]
        stored_role = row.role if isinstance(row.role, str) else None  # parquet reads a missing role as NaN
        assert (row.label, row.camera, row.split, stored_role) == (pid, camera, split, role)
        assert (manifest.parent / row.path).read_bytes() == data  # stored untouched
    assert stamp_path(tmp_path / "raw" / MARKET_ARCHIVE).is_file()  # verified for `data status`
    assert not list((tmp_path / "out").glob(".extract-*"))


def test_manifest_feeds_the_reid_protocol_with_same_camera_removal(tmp_path, raw):
    from circle_repro.evaluation.reid import evaluate

    frame = read_manifest(market1501.prepare(tmp_path / "out", tmp_path / "raw").parent, split="test")
    q, g = frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]
    same_camera = g[(g["label"] == 1) & (g["camera"] == 1)]
    assert len(same_camera) == 1 and ((q["label"] == 1) & (q["camera"] == 1)).any()
    # Every image is its own direction, plus a shared component per pid: exact matches rank first.
    rng = np.random.default_rng(0)
    base = {pid: rng.normal(size=8) for pid in frame["label"].unique()}
    feats = lambda part: np.stack([base[p] + 0.01 * rng.normal(size=8) for p in part["label"]])  # noqa: E731
    result = evaluate(
        feats(q), q["label"].to_numpy(), q["camera"].to_numpy(), feats(g), g["label"].to_numpy(), g["camera"].to_numpy()
    )
    assert result.n_valid_queries == 3 and result.rank(1) == 1.0


def test_read_layout_works_on_member_names_alone(tmp_path):
    build_market1501(tmp_path)
    rows = market1501.read_layout(list_members(tmp_path / MARKET_ARCHIVE))
    assert rows["path"].str.split("/").str[0].drop_duplicates().tolist() == [
        "bounding_box_train",
        "query",
        "bounding_box_test",
    ]
    assert rows["member"].str.startswith(f"{MARKET_ROOT}/").all()
    assert len(rows) == 14


def test_resize_short_side(tmp_path, raw):
    frame = read_manifest(market1501.prepare(tmp_path / "out", tmp_path / "raw", resize_short_side=8).parent)
    for path in frame["path"]:
        with Image.open(tmp_path / "out" / path) as image:
            assert min(image.size) == 8


def test_missing_archive_says_what_to_place_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        market1501.prepare(tmp_path / "out", tmp_path / "raw")
    message = str(err.value)
    assert MARKET_ARCHIVE in message and str(tmp_path / "raw") in message and "Google" in message
    _assert_clean(tmp_path / "out")


def test_wrong_checksum_is_refused(tmp_path):
    build_market1501(tmp_path / "raw")  # the declared md5 is the real archive's
    real_md5 = market1501.SOURCE.files[0].md5
    with pytest.raises(ChecksumError, match=rf"{MARKET_ARCHIVE}: md5 mismatch: expected {real_md5}"):
        market1501.prepare(tmp_path / "out", tmp_path / "raw")
    assert not stamp_path(tmp_path / "raw" / MARKET_ARCHIVE).exists()
    _assert_clean(tmp_path / "out")


def test_archive_is_copied_from_a_mirror_and_verified(tmp_path, monkeypatch):
    fixture = build_market1501(tmp_path / "mirror")
    _accept(monkeypatch, fixture.md5)
    paths = market1501.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror")
    assert paths[MARKET_ARCHIVE].read_bytes() == fixture.raw.read_bytes()


def test_truncated_archive_leaves_nothing(tmp_path):
    truncate(build_market1501(tmp_path / "raw").raw, 0.6)
    with pytest.raises(CorruptArchiveError, match=MARKET_ARCHIVE):
        market1501.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_clean(tmp_path / "out")


def test_unsafe_member_is_refused(tmp_path):
    archive = build_market1501(tmp_path / "raw").raw
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../evil.jpg", b"x")
    with pytest.raises(UnsafeArchiveError, match="evil"):
        market1501.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_clean(tmp_path / "out")
    assert not (tmp_path / "evil.jpg").exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("0001_c1_001051_00.jpg", "does not match"),
        ("1502_c1s1_001051_00.jpg", "pid 1502"),
        ("0001_c7s1_001051_00.jpg", "camera 7"),
    ],
)
def test_malformed_file_name_names_the_member(tmp_path, name, problem):
    build_market1501(tmp_path / "raw", mutate=lambda root: (root / "query" / name).write_bytes(b""))
    with pytest.raises(ValueError) as err:
        market1501.prepare_raw(tmp_path / "raw", tmp_path / "out")
    assert f"{MARKET_ROOT}/query/{name}" in str(err.value) and problem in str(err.value)
    _assert_clean(tmp_path / "out")


def test_missing_protocol_folder_is_named(tmp_path):
    def drop_query(root):
        for path in (root / "query").iterdir():
            path.unlink()
        (root / "query").rmdir()

    build_market1501(tmp_path / "raw", mutate=drop_query)
    with pytest.raises(ValueError, match="no images under query/"):
        market1501.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_clean(tmp_path / "out")


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    name = market_name(3, 6, 1, 2401, 1)
    build_market1501(
        tmp_path / "raw", mutate=lambda root: (root / "bounding_box_test" / name).write_bytes(b"\xff\xd8 cut")
    )
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        manifest = market1501.prepare_raw(tmp_path / "raw", tmp_path / "out")
    frame = read_manifest(manifest.parent)
    assert (frame["role"] == "gallery").sum() == 5
    assert name in (tmp_path / "out" / SKIPPED_FILENAME).read_text()


def test_an_image_over_the_data_sets_pixel_limit_is_skipped_and_counted(tmp_path, monkeypatch):
    name = market_name(3, 6, 1, 2401, 1)
    large = io.BytesIO()
    Image.new("RGB", (1001, 1000)).save(large, format="JPEG")  # one pixel row over 1000 x 1000
    fixture = build_market1501(
        tmp_path / "raw", mutate=lambda root: (root / "bounding_box_test" / name).write_bytes(large.getvalue())
    )
    _accept(monkeypatch, fixture.md5)
    process_limit = Image.MAX_IMAGE_PIXELS
    with pytest.warns(SkippedImagesWarning, match=re.escape("1001 x 1000 pixels is over the limit of 1000000")):
        prepare_dataset("market1501", tmp_path / "out", tmp_path / "raw")
    assert process_limit == Image.MAX_IMAGE_PIXELS  # the data set's limit holds while it is prepared, no longer
    assert market1501.ENTRY.max_pixels == CROP_PIXELS == 1_000_000
    assert (read_manifest(tmp_path / "out")["role"] == "gallery").sum() == 5


def test_entry():
    entry = market1501.ENTRY
    assert (entry.name, entry.transform, entry.in_channels) == ("market1501", "reid", 3)


@pytest.mark.skipif(
    not (REAL_RAW / MARKET_ARCHIVE).is_file(),
    reason=f"real Market-1501 not present: place {MARKET_ARCHIVE} under {REAL_RAW}",
)
def test_real_archive_has_the_published_counts():
    expected = market1501.SOURCE.expected_counts
    market1501.fetch_raw(REAL_RAW)  # md5
    rows = market1501.read_layout(list_members(REAL_RAW / MARKET_ARCHIVE))
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    gallery = test[test["role"] == "gallery"]
    assert (len(train), train["label"].nunique()) == (expected["train_images"], expected["train_identities"])
    assert (test["role"] == "query").sum() == expected["query_images"]
    assert len(gallery) == expected["gallery_images_without_junk"]
    assert (gallery["label"] == 0).sum() == expected["distractors"]
    assert test.loc[test["label"] > 0, "label"].nunique() == expected["test_identities"]
    assert rows["camera"].nunique() == expected["cameras"]
    assert train["label"].nunique() + test.loc[test["label"] > 0, "label"].nunique() == expected["identities"]
