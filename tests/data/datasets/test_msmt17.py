"""MSMT17: V1/V2 archives and folders through fetch_raw -> prepare_raw, the train(+val) split, and every bad input."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from fixtures.formats import truncate
from fixtures.reid import MSMT_GALLERY, MSMT_QUERY, MSMT_TRAIN, MSMT_VAL, build_msmt17

from circle_repro.data.archive import CorruptArchiveError
from circle_repro.data.datasets import msmt17
from circle_repro.data.image_store import SKIPPED_FILENAME, SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "msmt17"
REAL_INPUTS = [REAL_RAW / name for name in ("MSMT17_V1", "MSMT17_V1.zip", "MSMT17_V2", "MSMT17_V2.zip")]


def _assert_clean(out_dir) -> None:
    """Nothing half-written: no manifest, no images, no scratch folders."""
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def _rewrite(list_name: str, line_number: int, new_line: str):
    """A mutation replacing one (1-based) line of a list file."""

    def mutate(root):
        lines = (root / list_name).read_text().splitlines()
        lines[line_number - 1] = new_line
        (root / list_name).write_text("\n".join(lines) + "\n")

    return mutate


@pytest.mark.parametrize(("version", "packed"), [("MSMT17_V1", True), ("MSMT17_V2", True), ("MSMT17_V1", False)])
def test_prepare_gives_train_plus_val_and_query_gallery(tmp_path, version, packed):
    raw = build_msmt17(tmp_path / "raw", version, packed=packed)
    assert msmt17.fetch_raw(tmp_path / "raw") == {raw.raw.name + ("" if packed else "/"): raw.raw}
    manifest = msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split", "camera", "role"]
    assert frame["label"].dtype == np.int64 and frame["camera"].dtype == np.int64
    train = frame[frame["split"] == "train"]
    assert len(train) == len(MSMT_TRAIN) + len(MSMT_VAL) and train["role"].isna().all()
    assert (frame["role"] == "query").sum() == len(MSMT_QUERY)
    assert (frame["role"] == "gallery").sum() == len(MSMT_GALLERY)
    test = frame[frame["split"] == "test"]
    assert sorted(test["label"].unique()) == [0, 1, 2]  # test pids restart at 0, kept as they are
    assert 15 in set(frame["camera"])  # two-digit camera field parsed as 1..15
    train_dir, test_dir = msmt17.VERSIONS[version]
    assert train["path"].str.startswith(f"images/{train_dir}/").all()
    assert test["path"].str.startswith(f"images/{test_dir}/").all()
    for row in frame.itertuples():
        pid, camera, split, role, data = raw.images[row.path.removeprefix("images/")]
        stored_role = row.role if isinstance(row.role, str) else None
        assert (row.label, row.camera, row.split, stored_role) == (pid, camera, split, role)
        assert (manifest.parent / row.path).read_bytes() == data
    assert not list((tmp_path / "out").glob(".extract-*"))


def test_include_val_false_is_list_train_alone(tmp_path):
    build_msmt17(tmp_path / "raw")
    frame = read_manifest(msmt17.prepare(tmp_path / "out", tmp_path / "raw", include_val=False).parent, "train")
    assert len(frame) == len(MSMT_TRAIN)


def test_version_choice(tmp_path):
    build_msmt17(tmp_path / "raw", "MSMT17_V2")
    build_msmt17(tmp_path / "raw", "MSMT17_V1", packed=False)
    v1 = read_manifest(msmt17.prepare_raw(tmp_path / "raw", tmp_path / "v1").parent)
    assert v1["path"].str.match(r"images/(train|test)/").all()  # V1 first, as torchreid
    v2 = read_manifest(msmt17.prepare_raw(tmp_path / "raw", tmp_path / "v2", version="MSMT17_V2").parent)
    assert v2["path"].str.match(r"images/mask_(train|test)_v2/").all()
    with pytest.raises(ValueError, match="version must be one of"):
        msmt17.prepare_raw(tmp_path / "raw", tmp_path / "v3", version="MSMT17_V3")


def test_parse_lists_on_texts():
    texts = {
        "list_train.txt": "0000/0000_000_01_0303morning_0015_0.jpg 0\n",
        "list_val.txt": "0000/0000_001_02_0303morning_0016_0.jpg 0\r\n\n",
        "list_query.txt": "0005/0005_000_15_0113noon_0001_1.jpg 5\n",
        "list_gallery.txt": "0005/0005_001_14_0113noon_0002_1.jpg 5",
    }
    rows = msmt17.parse_lists(texts, "MSMT17_V1")
    assert rows["path"].tolist() == [
        "train/0000/0000_000_01_0303morning_0015_0.jpg",
        "train/0000/0000_001_02_0303morning_0016_0.jpg",
        "test/0005/0005_000_15_0113noon_0001_1.jpg",
        "test/0005/0005_001_14_0113noon_0002_1.jpg",
    ]
    assert rows["camera"].tolist() == [1, 2, 15, 14] and rows["label"].tolist() == [0, 0, 5, 5]
    assert rows["source"].iloc[1] == "MSMT17_V1/list_val.txt:1"


def test_no_raw_data_says_what_to_request_and_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    message = str(err.value)
    assert str(tmp_path / "raw") in message and "MSMT17_V1.zip" in message and "MSMT17_V2/" in message
    assert "agreement" in message
    _assert_clean(tmp_path / "out")


def test_archive_is_copied_from_a_mirror(tmp_path):
    fixture = build_msmt17(tmp_path / "mirror", "MSMT17_V2")
    paths = msmt17.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror")
    assert paths == {"MSMT17_V2.zip": tmp_path / "raw" / "MSMT17_V2.zip"}
    assert paths["MSMT17_V2.zip"].read_bytes() == fixture.raw.read_bytes()


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            _rewrite("list_query.txt", 2, "0001/0001_000_15_0114noon_0002_2.jpg"),
            ValueError,
            r"list_query.txt:2: expected '<pid4>/",
        ),
        (
            _rewrite("list_query.txt", 2, "0001/0001_000_15_0114noon_0002_2.jpg one"),
            ValueError,
            r"list_query.txt:2: pid 'one'",
        ),
        (
            _rewrite("list_train.txt", 1, "0000/0000_000_01_0113morning_0001_0.jpg 3"),
            ValueError,
            r"list_train.txt:1: folder and file name .* pid 3",
        ),
        (
            _rewrite("list_gallery.txt", 3, "0001/0001_009_16_0114noon_0002_2.jpg 1"),
            ValueError,
            r"list_gallery.txt:3: no camera 01..15",
        ),
        (_rewrite("list_gallery.txt", 3, "../0001/x.jpg 1"), ValueError, r"list_gallery.txt:3: image path"),
        (
            _rewrite("list_gallery.txt", 3, "0001/0001_009_02_0114noon_0002_2.jpg 1"),
            FileNotFoundError,
            r"list_gallery.txt:3: image .* not found",
        ),
        (lambda root: (root / "list_val.txt").unlink(), FileNotFoundError, r"missing list_val.txt"),
    ],
)
def test_bad_lists_name_the_file_and_line(tmp_path, mutate, error, message):
    build_msmt17(tmp_path / "raw", mutate=mutate)
    with pytest.raises(error, match=message):
        msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_clean(tmp_path / "out")


def test_an_image_listed_twice_is_refused(tmp_path):
    def duplicate(root):
        first = (root / "list_train.txt").read_text().splitlines()[0]
        (root / "list_val.txt").write_text((root / "list_val.txt").read_text() + first + "\n")

    build_msmt17(tmp_path / "raw", mutate=duplicate)
    with pytest.raises(ValueError, match=r"listed twice \(MSMT17_V1/list_train.txt:1, MSMT17_V1/list_val.txt:3\)"):
        msmt17.prepare(tmp_path / "out", tmp_path / "raw")


def test_truncated_archive_leaves_nothing(tmp_path):
    truncate(build_msmt17(tmp_path / "raw").raw, 0.5)
    with pytest.raises(CorruptArchiveError, match=r"MSMT17_V1.zip"):
        msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_clean(tmp_path / "out")


def test_archive_without_the_layout_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    with zipfile.ZipFile(tmp_path / "raw" / "MSMT17_V1.zip", "w") as zf:
        zf.writestr("something/else.txt", "x")
    with pytest.raises(FileNotFoundError, match=r"no MSMT17_V1/list_train.txt"):
        msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_clean(tmp_path / "out")


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    def corrupt(root):
        relative = (root / "list_gallery.txt").read_text().splitlines()[0].split()[0]
        (root / "test" / relative).write_bytes(b"not a jpeg")

    build_msmt17(tmp_path / "raw", mutate=corrupt)
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        manifest = msmt17.prepare(tmp_path / "out", tmp_path / "raw")
    assert (read_manifest(manifest.parent)["role"] == "gallery").sum() == len(MSMT_GALLERY) - 1
    assert (tmp_path / "out" / SKIPPED_FILENAME).is_file()


def test_entry():
    entry = msmt17.ENTRY
    assert (entry.name, entry.transform, entry.in_channels) == ("msmt17", "reid", 3)


def _real_list_texts() -> tuple[str, dict[str, str]]:
    """(version, list file texts) of the first real MSMT17 input present, read without extracting images."""
    for path in REAL_INPUTS:
        version = path.name.removesuffix(".zip")
        if path.is_dir():
            root = path / version if (path / version / "list_train.txt").is_file() else path
            return version, {name: (root / name).read_text() for name in msmt17.LISTS}
        if path.is_file():
            with zipfile.ZipFile(path) as zf:
                members = {m.rsplit("/", 1)[-1]: m for m in zf.namelist()}
                return version, {name: zf.read(members[name]).decode() for name in msmt17.LISTS}
    raise AssertionError("unreachable: the test is skipped without real data")


@pytest.mark.skipif(
    not any(p.exists() for p in REAL_INPUTS),
    reason=f"real MSMT17 not present: place MSMT17_V1.zip / _V2.zip (or a folder) under {REAL_RAW}",
)
def test_real_lists_have_the_published_counts():
    expected = msmt17.SOURCE.expected_counts
    rows = msmt17.parse_lists(*_real_list_texts())
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    assert (len(train), train["label"].nunique()) == (expected["train_images"], expected["train_identities"])
    assert (test["role"] == "query").sum() == expected["query_images"]
    assert (test["role"] == "gallery").sum() == expected["gallery_images"]
    assert test["label"].nunique() == expected["test_identities"]
    assert train["label"].nunique() + test["label"].nunique() == expected["identities"]
    assert len(rows) == expected["images"] and rows["camera"].nunique() == expected["cameras"]
