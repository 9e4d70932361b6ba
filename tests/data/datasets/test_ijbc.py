"""IJB-C: insightface's test suite (tar or extracted IJBC/) -> aligned faces, template manifest, pairs, scores."""

import io
import tarfile
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.ijbc_megaface import IJB_ARCHIVE, IJBC_IMAGES, IJBC_PAIRS, build_ijbc
from PIL import Image

from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError
from circle_repro.data.datasets import ijbc
from circle_repro.data.image_store import SKIPPED_FILENAME, SkippedImagesWarning
from circle_repro.data.manifest import CONTENT_HASH_FILENAME, MANIFEST_FILENAME, read_manifest
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "ijbc"


def _real_meta_dir():
    for candidate in (REAL_RAW / "IJBC" / "meta", REAL_RAW / "IJB_release" / "IJBC" / "meta"):
        if (candidate / ijbc.TEMPLATE_MEDIA_FILE).is_file():
            return candidate
    return None


def _decoded(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _nothing_written(out_dir):
    return not (out_dir / MANIFEST_FILENAME).exists() and not (out_dir / "images").exists()


@pytest.mark.parametrize("packed", [True, False], ids=["tar", "extracted"])
def test_fixture_prepares_into_templates_pairs_and_scores(tmp_path, packed):
    fixture = build_ijbc(tmp_path / "raw", packed=packed)
    manifest = ijbc.prepare(tmp_path / "prepared", tmp_path / "raw")
    out = manifest.parent
    frame = read_manifest(out)
    assert frame["path"].tolist() == [f"images/{name}" for name in IJBC_IMAGES]
    assert set(frame["split"]) == {"test"} and set(frame["label"]) == {ijbc.NO_IDENTITY}
    assert list(zip(frame["template"], frame["media"], strict=True)) == list(IJBC_IMAGES.values())
    assert frame["template"].dtype == np.int64 and frame["media"].dtype == np.int64

    pairs = ijbc.read_template_pairs(out)
    assert [tuple(row) for row in pairs[["t1", "t2", "label"]].itertuples(index=False)] == list(IJBC_PAIRS)
    assert set(pairs["label"]) == {0, 1}
    scores = ijbc.read_detector_scores(out)
    assert scores["path"].tolist() == frame["path"].tolist()
    np.testing.assert_allclose(scores["detector_score"], [fixture.scores[n] for n in IJBC_IMAGES], rtol=1e-6)
    assert not (out / SKIPPED_FILENAME).exists()
    assert not list(out.glob(".extract-*"))  # the scratch extraction is gone


def test_each_face_is_aligned_with_its_landmarks(tmp_path):
    fixture = build_ijbc(tmp_path / "raw")
    out = ijbc.prepare(tmp_path / "prepared", tmp_path / "raw").parent
    for name in ("1.jpg", "6.jpg"):
        stored = _decoded(out / "images" / name)
        assert stored.shape == (112, 112, 3)
        with Image.open(io.BytesIO(ijbc.aligned_jpeg(fixture.crops[name], fixture.landmarks[name].ravel()))) as image:
            expected = np.asarray(image).astype(int)
        np.testing.assert_array_equal(stored, expected)
        unaligned = np.asarray(Image.open(io.BytesIO(fixture.crops[name])).convert("RGB").resize((112, 112))).astype(
            int
        )
        assert np.abs(stored - expected).mean() < np.abs(stored - unaligned).mean()


def test_the_result_does_not_depend_on_the_number_of_workers(tmp_path):
    build_ijbc(tmp_path / "raw", packed=False)
    hashes = []
    for workers in (1, 3):
        out = ijbc.prepare(tmp_path / f"prepared{workers}", tmp_path / "raw", workers=workers).parent
        hashes.append((out / CONTENT_HASH_FILENAME).read_text())
    assert hashes[0] == hashes[1]
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        ijbc.prepare(tmp_path / "prepared0", tmp_path / "raw", workers=0)


def test_the_table_reader_matches_insightfaces_read_csv(tmp_path):
    build_ijbc(tmp_path / "raw", packed=False)
    meta = tmp_path / "raw" / "IJBC" / "meta"
    images, pairs = ijbc.read_meta(meta)
    reference = pd.read_csv(meta / ijbc.TEMPLATE_MEDIA_FILE, sep=" ", header=None).values  # eval_ijbc.py
    assert images["template"].tolist() == reference[:, 1].astype(int).tolist()
    assert images["media"].tolist() == reference[:, 2].astype(int).tolist()
    lines = (meta / ijbc.LANDMARKS_FILE).read_text().splitlines()
    scores = np.array([line.strip().split(" ")[-1] for line in lines]).astype(np.float32)  # eval_ijbc.py's parse
    np.testing.assert_array_equal(images["detector_score"].astype(np.float32), scores)
    assert pairs["label"].dtype == np.int8


def test_trailing_spaces_on_the_landmark_lines_are_tolerated(tmp_path):
    def trailing_space(root):
        path = root / "meta" / ijbc.LANDMARKS_FILE
        path.write_text("".join(line + " \n" for line in path.read_text().splitlines()))

    build_ijbc(tmp_path / "raw", packed=False, mutate=trailing_space)
    images, _ = ijbc.read_meta(tmp_path / "raw" / "IJBC" / "meta")
    assert len(images) == len(IJBC_IMAGES)


def test_missing_raw_data_names_the_file_the_place_and_nist(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ijbc.prepare(tmp_path / "prepared", tmp_path / "raw")
    message = str(err.value)
    assert IJB_ARCHIVE in message and "IJBC/" in message and str(tmp_path / "raw") in message and "NIST" in message


def test_the_archive_is_copied_from_a_mirror(tmp_path):
    build_ijbc(tmp_path / "mirror")
    found = ijbc.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror")
    assert found == {IJB_ARCHIVE: tmp_path / "raw" / IJB_ARCHIVE}
    assert (tmp_path / "raw" / IJB_ARCHIVE).read_bytes() == (tmp_path / "mirror" / IJB_ARCHIVE).read_bytes()


def _replace_line(file_name, number, text):
    def mutate(root):
        path = root / "meta" / file_name
        lines = path.read_text().splitlines()
        lines[number - 1] = text
        path.write_text("".join(line + "\n" for line in lines))

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _replace_line(ijbc.TEMPLATE_MEDIA_FILE, 3, "3.jpg 1"),
            r"ijbc_face_tid_mid.txt:3: expected 3 space-separated fields",
        ),
        (
            _replace_line(ijbc.TEMPLATE_MEDIA_FILE, 2, "2.jpg one 69544"),
            r"ijbc_face_tid_mid.txt:2: field 'template' is 'one'",
        ),
        (_replace_line(ijbc.TEMPLATE_MEDIA_FILE, 4, "4.jpg 2 11 9"), r"ijbc_face_tid_mid.txt:4: expected 3"),
        (
            _replace_line(ijbc.TEMPLATE_MEDIA_FILE, 5, "1.jpg 2 12"),
            r"ijbc_face_tid_mid.txt:5: image '1.jpg' is listed twice",
        ),
        (
            _replace_line(ijbc.LANDMARKS_FILE, 6, "6.jpg 1 2 3 4 5 6 7 8 9 0.9"),
            r"ijbc_name_5pts_score.txt:6: expected 12",
        ),
        (
            _replace_line(ijbc.LANDMARKS_FILE, 1, "1.jpg 1 2 3 4 5 6 7 8 9 nan 0.9"),
            r"ijbc_name_5pts_score.txt:1: field 'y5'",
        ),
        (_replace_line(ijbc.LANDMARKS_FILE, 8, "9.jpg 1 2 3 4 5 6 7 8 9 10 0.9"), r"list different images"),
        (_replace_line(ijbc.PAIRS_FILE, 2, "1 2 2"), r"ijbc_template_pair_label.txt:2: label 2 is not 0 or 1"),
        (_replace_line(ijbc.PAIRS_FILE, 3, "2 99 0"), r"ijbc_template_pair_label.txt:3: template 99 has no image"),
        (_replace_line(ijbc.PAIRS_FILE, 1, "1 11065"), r"ijbc_template_pair_label.txt:1: expected 3"),
    ],
)
def test_malformed_meta_lines_are_named_and_nothing_is_written(tmp_path, mutate, message):
    build_ijbc(tmp_path / "raw", mutate=mutate)
    with pytest.raises(ValueError, match=message):
        ijbc.prepare(tmp_path / "prepared", tmp_path / "raw")
    assert _nothing_written(tmp_path / "prepared")


def test_a_missing_meta_file_or_crop_is_named(tmp_path):
    build_ijbc(tmp_path / "raw", packed=False, mutate=lambda root: (root / "loose_crop" / "7.jpg").unlink())
    with pytest.raises(FileNotFoundError, match=r"loose_crop: 1 image\(s\) .* not found, e.g. \['7.jpg'\]"):
        ijbc.prepare(tmp_path / "prepared", tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match=r"ijbc_template_pair_label.txt: IJB-C meta file not found"):
        (tmp_path / "raw" / "IJBC" / "meta" / ijbc.PAIRS_FILE).unlink()
        ijbc.read_meta(tmp_path / "raw" / "IJBC" / "meta")
    assert _nothing_written(tmp_path / "prepared")


def test_truncated_archive_is_refused_and_nothing_is_written(tmp_path):
    build_ijbc(tmp_path / "raw")
    archive = tmp_path / "raw" / IJB_ARCHIVE
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CorruptArchiveError, match=r"IJB_release.tar"):
        ijbc.prepare(tmp_path / "prepared", tmp_path / "raw")
    assert _nothing_written(tmp_path / "prepared") and not list((tmp_path / "prepared").glob(".extract-*"))


def test_archive_escaping_its_folder_is_refused(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with tarfile.open(raw / IJB_ARCHIVE, "w") as tar:
        info = tarfile.TarInfo("../IJBC/meta/ijbc_face_tid_mid.txt")
        info.size = 8
        tar.addfile(info, io.BytesIO(b"1.jpg 1 1"[:8]))
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        ijbc.prepare(tmp_path / "prepared", raw)
    assert not (tmp_path / "IJBC").exists() and _nothing_written(tmp_path / "prepared")


def test_an_archive_without_the_suite_is_named(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with tarfile.open(raw / IJB_ARCHIVE, "w") as tar:
        info = tarfile.TarInfo("IJB_release/README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(FileNotFoundError, match=r"holds no IJBC/meta/ijbc_face_tid_mid.txt"):
        ijbc.prepare(tmp_path / "prepared", raw)


def test_undecodable_crops_are_skipped_counted_and_empty_templates_lose_their_pairs(tmp_path):
    def corrupt(root):
        (root / "loose_crop" / "2.jpg").write_bytes(b"not a jpeg")  # template 1 keeps images 1 and 3
        (root / "loose_crop" / "6.jpg").write_bytes(b"\xff\xd8 truncated")  # template 11065's only image

    build_ijbc(tmp_path / "raw", mutate=corrupt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ijbc.prepare(tmp_path / "prepared", tmp_path / "raw").parent
    assert any(issubclass(w.category, SkippedImagesWarning) for w in caught)
    assert any("3 template pair(s) dropped" in str(w.message) for w in caught)
    frame = read_manifest(out)
    assert "images/2.jpg" not in set(frame["path"]) and "images/6.jpg" not in set(frame["path"])
    assert len(frame) == len(IJBC_IMAGES) - 2
    skipped = pd.read_json(out / SKIPPED_FILENAME)
    assert len(skipped) == 2 and skipped["source"].str.endswith(("2.jpg", "6.jpg")).all()
    pairs = ijbc.read_template_pairs(out)
    assert 11065 not in set(pairs["t1"]) | set(pairs["t2"]) and len(pairs) == len(IJBC_PAIRS) - 3
    assert ijbc.read_detector_scores(out)["path"].tolist() == frame["path"].tolist()


def test_side_file_readers_name_what_is_missing(tmp_path):
    from circle_repro.data.manifest import ManifestError

    with pytest.raises(ManifestError, match=r"template_pairs.parquet: not found"):
        ijbc.read_template_pairs(tmp_path)
    pd.DataFrame({"t1": [1]}).to_parquet(tmp_path / ijbc.TEMPLATE_PAIRS_FILENAME)
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['t2', 'label'\]"):
        ijbc.read_template_pairs(tmp_path)


def test_entry_names_the_ijb_protocol():
    assert (ijbc.ENTRY.name, ijbc.ENTRY.transform, ijbc.ENTRY.in_channels) == (
        "ijbc",
        "face",
        3,
    )


@pytest.mark.skipif(
    _real_meta_dir() is None, reason=f"real IJB-C meta files not under {REAL_RAW} (gated: NIST licence)"
)
def test_real_meta_files_have_the_published_counts():
    expected = ijbc.SOURCE.expected_counts
    images, pairs = ijbc.read_meta(_real_meta_dir())
    assert len(images) == expected["images"] == 469_375
    assert len(pairs) == expected["template_pairs"] == 15_658_489
    assert int(pairs["label"].sum()) == expected["genuine_pairs"] == 19_557
    assert int((pairs["label"] == 0).sum()) == expected["impostor_pairs"]
