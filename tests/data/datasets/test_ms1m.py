"""MS1MV2 / MS1MV3 insightface packs: RecordIO records -> train images with their IRHeader class."""

import json

import pandas as pd
import pytest
from fixtures.face import build_faces_emore, build_rec_pack
from fixtures.formats import make_jpeg, truncate

from circle_repro.data.datasets.ms1m import MS1MV2, MS1MV2_ENTRY, MS1MV3, MS1MV3_ENTRY
from circle_repro.data.formats.recordio import RecordFile, RecordIOError, RecordIOReader, read_property
from circle_repro.data.image_reader import ImageReader
from circle_repro.data.image_store import SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from circle_repro.data.stamp import FILES_FILENAME, file_table, verify_files
from support import REPO_ROOT

REAL_MS1MV2 = REPO_ROOT / "data" / "raw" / "ms1mv2"


def _class(label):
    return int(label if isinstance(label, float) else label[0])


@pytest.fixture
def faces_emore(tmp_path):
    return build_faces_emore(tmp_path / "raw" / "ms1mv2" / "faces_emore").rec


def test_prepare_indexes_every_image_of_the_pack_with_its_header_class_as_train(tmp_path, faces_emore):
    manifest = MS1MV2.prepare(tmp_path / "out", tmp_path / "raw" / "ms1mv2")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split"]
    assert len(frame) == faces_emore.num_images == 9
    assert set(frame["split"]) == {"train"}
    expected = {f"images.rec#{key}": _class(label) for key, label in faces_emore.labels.items()}
    assert dict(zip(frame["path"], frame["label"], strict=True)) == expected
    assert sorted(frame["label"].unique()) == [0, 1, 2]
    images = ImageReader(tmp_path / "out", frame["path"])
    for index, key in enumerate(int(path.split("#")[1]) for path in frame["path"]):
        assert images.read(index) == faces_emore.images[key]  # split records (magic in the JPEG) come back whole
    assert faces_emore.split_keys


def test_prepare_links_the_pack_instead_of_copying_images(tmp_path, faces_emore):
    out = tmp_path / "out"
    MS1MV2.prepare(out, tmp_path / "raw" / "ms1mv2")
    assert sorted(p.name for p in out.iterdir()) == [
        "content.sha256",
        "files.parquet",
        "images.idx",
        "images.rec",
        "manifest.parquet",
    ]
    assert (out / "images.rec").samefile(faces_emore.rec) and (out / "images.idx").samefile(faces_emore.idx)


def test_prepare_reads_each_record_once_and_stamps_the_hashes_a_reread_gives(tmp_path, faces_emore, monkeypatch):
    reads = []
    original = RecordFile.read_at
    monkeypatch.setattr(RecordFile, "read_at", lambda self, offset: reads.append(offset) or original(self, offset))
    out = tmp_path / "out"
    MS1MV2.prepare(out, tmp_path / "raw" / "ms1mv2")
    monkeypatch.undo()
    assert len(reads) == len(set(reads))  # the .rec is read once: markers, classes and stamp hashes together
    frame = read_manifest(out)
    assert len(reads) >= len(frame)
    recorded = pd.read_parquet(out / FILES_FILENAME).set_index("path").loc[frame["path"]]
    reread = file_table(out, frame["path"].tolist()).set_index("path")
    pd.testing.assert_frame_equal(recorded, reread)
    verify_files(out, frame, "full")  # the content hash too


def test_prepare_over_a_loose_preparation_replaces_its_images(tmp_path, faces_emore):
    out = tmp_path / "out"
    MS1MV2.prepare(out, tmp_path / "raw" / "ms1mv2", resize_short_side=8)
    assert (out / "images").is_dir()
    MS1MV2.prepare(out, tmp_path / "raw" / "ms1mv2")
    assert not (out / "images").exists() and read_manifest(out)["path"].str.startswith("images.rec#").all()


def test_ms1mv3_reads_its_own_folder(tmp_path):
    build_rec_pack(tmp_path / "raw" / "ms1m-retinaface-t1", [(0.0, make_jpeg(1)), (1.0, make_jpeg(2))])
    manifest = MS1MV3.prepare(tmp_path / "out", tmp_path / "raw")
    assert read_manifest(manifest.parent)["label"].tolist() == [0, 1]
    assert MS1MV3.folder == "ms1m-retinaface-t1" and MS1MV2.folder == "faces_emore"


def test_entries_name_face_transform():
    assert (MS1MV2_ENTRY.name, MS1MV3_ENTRY.name) == ("ms1mv2", "ms1mv3")
    for entry in (MS1MV2_ENTRY, MS1MV3_ENTRY):
        assert (entry.transform, entry.in_channels) == ("face", 3)


def test_max_classes_keeps_the_first_identities(tmp_path, faces_emore):
    manifest = MS1MV2.prepare(tmp_path / "out", tmp_path / "raw" / "ms1mv2", max_classes=2)
    frame = read_manifest(manifest.parent)
    assert sorted(frame["label"].unique()) == [0, 1] and len(frame) == 5


def test_max_classes_without_identity_records_filters_by_label(tmp_path):
    records = [(0.0, make_jpeg(1)), ([2.0, 1.0], make_jpeg(2)), (1.0, make_jpeg(3)), (0.0, make_jpeg(4))]
    build_rec_pack(tmp_path / "raw" / "faces_emore", records, header=False)
    frame = read_manifest(MS1MV2.prepare(tmp_path / "out", tmp_path / "raw", max_classes=2).parent)
    assert frame["label"].tolist() == [0, 1, 0]


def test_resize_short_side_rescales(tmp_path, faces_emore):
    from PIL import Image

    MS1MV2.prepare(tmp_path / "out", tmp_path / "raw" / "ms1mv2", resize_short_side=8)
    path = next((tmp_path / "out" / "images").rglob("*.jpg"))
    assert Image.open(path).size == (8, 8)


def test_missing_pack_names_the_folder_instructions_and_substitutes(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        MS1MV2.fetch_raw(tmp_path / "raw")
    message = str(err.value)
    assert str(tmp_path / "raw" / "faces_emore") + "/" in message
    assert "faces_ms1m-refine-v2_112x112.zip" in message and "Substitutes: MS1MV3" in message


def test_folder_without_the_index_is_refused(tmp_path, faces_emore):
    faces_emore.idx.unlink()
    with pytest.raises(FileNotFoundError, match=r"faces_emore: missing train.idx"):
        MS1MV2.fetch_raw(tmp_path / "raw" / "ms1mv2")


def test_mirror_copy(tmp_path):
    build_faces_emore(tmp_path / "mirror" / "faces_emore")
    paths = MS1MV2.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror")
    assert paths["train.rec"] == tmp_path / "raw" / "faces_emore" / "train.rec"
    assert (tmp_path / "raw" / "faces_emore" / "lfw.bin").is_file()
    assert not (tmp_path / "raw" / "faces_emore.partial").exists()


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    records = [(0.0, make_jpeg(1)), (0.0, b"\xff\xd8not a jpeg"), (1.0, make_jpeg(3))]
    build_rec_pack(tmp_path / "raw" / "faces_emore", records)
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        manifest = MS1MV2.prepare_raw(tmp_path / "raw", tmp_path / "out")
    assert read_manifest(manifest.parent)["path"].tolist() == ["images.rec#1", "images.rec#3"]
    skipped = json.loads((tmp_path / "out" / "skipped_images.json").read_text())
    assert skipped[0]["source"] == "train.rec: key 2"


def _assert_nothing_written(out):
    assert not (out / "manifest.parquet").exists()
    assert not (out / "images").exists() and not (out / "images.partial").exists()
    assert not (out / "images.rec").exists()


def test_index_missing_an_announced_key_is_named(tmp_path, faces_emore):
    lines = faces_emore.idx.read_text().splitlines()
    faces_emore.idx.write_text("\n".join(line for line in lines if not line.startswith("4\t")) + "\n")
    with pytest.raises(RecordIOError, match=r"train.idx: image key 4 \(announced by record 0"):
        MS1MV2.prepare_raw(tmp_path / "raw" / "ms1mv2", tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_truncated_rec_is_refused_and_leaves_nothing(tmp_path, faces_emore):
    truncate(faces_emore.rec, 0.6)
    with pytest.raises(RecordIOError, match=r"train.rec"):
        MS1MV2.prepare_raw(tmp_path / "raw" / "ms1mv2", tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("label", [2.5, -1.0, float("nan")])
def test_non_integer_class_is_named(tmp_path, label):
    build_rec_pack(tmp_path / "raw" / "faces_emore", [(0.0, make_jpeg(1)), (label, make_jpeg(2))], num_classes=3)
    with pytest.raises(RecordIOError, match=r"train.rec: key 2: label .* is not a non-negative integer class id"):
        MS1MV2.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_class_beyond_property_is_named(tmp_path):
    build_rec_pack(tmp_path / "raw" / "faces_emore", [(0.0, make_jpeg(1)), (5.0, make_jpeg(2))], num_classes=2)
    with pytest.raises(RecordIOError, match=r"key 2: class 5 is not below the 2 classes of .*property"):
        MS1MV2.prepare_raw(tmp_path / "raw", tmp_path / "out")


def test_malformed_property_is_named(tmp_path, faces_emore):
    faces_emore.property.write_text("85742,112\n")
    with pytest.raises(RecordIOError, match=r"property: expected '<num_classes>,<H>,<W>'"):
        MS1MV2.prepare_raw(tmp_path / "raw" / "ms1mv2", tmp_path / "out")


def test_bad_max_classes(tmp_path, faces_emore):
    with pytest.raises(ValueError, match="max_classes must be a positive"):
        MS1MV2.prepare_raw(tmp_path / "raw" / "ms1mv2", tmp_path / "out", max_classes=0)


@pytest.mark.skipif(
    not (REAL_MS1MV2 / "faces_emore" / "train.rec").is_file(),
    reason="real MS1MV2 not present: place the pack at data/raw/ms1mv2/faces_emore/ (see sources.yaml)",
)
def test_real_ms1mv2_counts(tmp_path):
    expected = MS1MV2.source.expected_counts
    paths = MS1MV2.fetch_raw(REAL_MS1MV2)
    assert read_property(paths["property"])[0] == expected["classes"]
    with RecordIOReader(paths["train.rec"], paths["train.idx"]) as reader:
        first, end = reader.identity_range()
    assert (first - 1, end - first) == (expected["images"], expected["classes"])
    frame = pd.read_parquet(MS1MV2.prepare(tmp_path, REAL_MS1MV2, max_classes=3))
    assert sorted(frame["label"].unique()) == [0, 1, 2] and set(frame["split"]) == {"train"}
