"""YouTube Faces: aligned frames -> test images (person label, video template/media); video pairs in split order."""

import json

import pytest
from fixtures.face import YTF_VIDEOS, build_youtube_faces, evil_tar, write_corrected_splits, ytf_pairs
from fixtures.formats import truncate
from support import REPO_ROOT

from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError
from circle_repro.data.datasets import ytf
from circle_repro.data.image_store import SkippedImagesWarning
from circle_repro.data.manifest import read_manifest

# (person, video) in the prepared order: person name, then video number (2 before 12)
VIDEO_ORDER = ["Aaron_Eckhart/0", "Aaron_Eckhart/1", "Abdullah_Gul/1", "Abdullah_Gul/3", "Al_Gore/2", "Al_Gore/12",
               "Zico/0"]
PERSON = {"Aaron_Eckhart": 0, "Abdullah_Gul": 1, "Al_Gore": 2, "Zico": 3}
REAL_YTF = REPO_ROOT / "data" / "raw" / "ytf" / "YouTubeFaces"


def _expected_pairs(pairs):
    return [(VIDEO_ORDER.index(a), VIDEO_ORDER.index(b), same, split) for split, a, b, same in pairs]


def _pairs_of(out):
    table = ytf.read_video_pairs(out, known_templates=read_manifest(out)["template"])
    assert list(table.columns) == ["template_a", "template_b", "issame", "fold"]
    return list(table.itertuples(index=False, name=None))


def _assert_nothing_written(out):
    for name in ("manifest.parquet", ytf.VIDEO_PAIRS_FILENAME, "images", "images.partial"):
        assert not (out / name).exists(), name
    assert not out.exists() or not list(out.glob(".extract-*"))


def test_prepare_from_the_tarball(tmp_path):
    built = build_youtube_faces(tmp_path / "raw")
    manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split", "template", "media"]
    assert len(frame) == sum(YTF_VIDEOS.values()) == 14
    assert set(frame["split"]) == {"test"}
    expected_paths = [f"images/{video}/{name}" for video in VIDEO_ORDER for name, _ in built.frames[video]]
    assert frame["path"].tolist() == expected_paths  # frames 98, 99, 100 in numeric order
    assert frame["path"][0].endswith("aligned_detect_0.98.jpg")
    assert frame["path"][2].endswith("aligned_detect_0.100.jpg")
    for row in frame.itertuples():
        video = "/".join(row.path.split("/")[1:3])
        assert row.template == row.media == VIDEO_ORDER.index(video)
        assert row.label == PERSON[video.split("/")[0]]
    name, data = built.frames["Al_Gore/12"][1]
    assert (tmp_path / "out" / "images" / "Al_Gore" / "12" / name).read_bytes() == data
    pairs = _pairs_of(tmp_path / "out")
    assert pairs == _expected_pairs(ytf_pairs())
    assert [fold for *_, fold in pairs] == sorted(fold for *_, fold in pairs)  # positional folds = the 10 splits
    assert not list((tmp_path / "out").glob(".extract-*"))  # scratch extraction removed


def test_extracted_folder_is_used_as_it_is(tmp_path):
    build_youtube_faces(tmp_path / "raw", archive=False)
    assert set(ytf.fetch_raw(tmp_path / "raw")) == {"YouTubeFaces/"}
    manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    assert len(read_manifest(manifest.parent)) == 14


def test_meta_and_splits_mat_gives_the_same_pairs(tmp_path):
    build_youtube_faces(tmp_path / "raw", archive=False, splits="mat")
    assert not (tmp_path / "raw" / "YouTubeFaces" / "splits.txt").exists()
    ytf.prepare(tmp_path / "out", tmp_path / "raw")
    assert _pairs_of(tmp_path / "out") == _expected_pairs(ytf_pairs())


def test_corrected_splits_on_request(tmp_path):
    build_youtube_faces(tmp_path / "raw")
    corrected = [(split, "Zico/0", "Al_Gore/2", False) for split in range(1, 11)]
    write_corrected_splits(tmp_path / "raw", corrected)
    ytf.prepare(tmp_path / "out", tmp_path / "raw", corrected_splits=True)
    assert _pairs_of(tmp_path / "out") == _expected_pairs(corrected)


def test_corrected_splits_missing_is_named(tmp_path):
    build_youtube_faces(tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match="splits_corrected.txt"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw", corrected_splits=True)


def test_entry():
    assert (ytf.ENTRY.name, ytf.ENTRY.transform, ytf.ENTRY.protocol) == ("ytf", "face", "verification_pairs")


def test_missing_raw_data_names_both_forms(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ytf.fetch_raw(tmp_path / "raw")
    message = str(err.value)
    assert f"one of {tmp_path / 'raw' / 'YouTubeFaces.tar.gz'}, {tmp_path / 'raw' / 'YouTubeFaces'}/" in message
    assert "form on the official page" in message


def test_mirror_copy_of_the_tarball(tmp_path):
    build_youtube_faces(tmp_path / "mirror")
    assert ytf.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror") == {
        "YouTubeFaces.tar.gz": tmp_path / "raw" / "YouTubeFaces.tar.gz"}


@pytest.mark.parametrize(("line", "message"), [
    ("1, 1, Aaron_Eckhart/0, 1", "expected '<split>, <pair>"),
    ("11, 1, Aaron_Eckhart/0, Zico/0, 1", "split number 11 is outside 1..10"),
    ("1, 1, Aaron_Eckhart, Zico/0, 1", "video 'Aaron_Eckhart' is not '<person>/<video number>'"),
    ("1, 1, Aaron_Eckhart/0, Zico/0, yes", "is-same flag 'yes' is not 0 or 1"),
])
def test_malformed_split_line_is_named(tmp_path, line, message):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    splits = built.path / "splits.txt"
    splits.write_text(splits.read_text() + line + "\n")
    with pytest.raises(ValueError, match=rf"splits.txt:22: {message}"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_pair_naming_an_unknown_video_is_refused(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    (built.path / "splits.txt").write_text("split number, pair number, first name, second name, is same\n"
                                           "1, 1, Aaron_Eckhart/0, Nobody/4, 0\n")
    with pytest.raises(ValueError, match=r"names video 'Nobody/4', which has no folder"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_mat_without_splits_is_named(tmp_path):
    from scipy.io import savemat

    built = build_youtube_faces(tmp_path / "raw", archive=False, splits="mat")
    savemat(built.path / "meta_data" / "meta_and_splits.mat", {"video_names": ["Zico/0"]})
    with pytest.raises(ValueError, match=r"meta_and_splits.mat: variable 'Splits' not found"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")


def test_frame_name_breaking_the_convention_is_named(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    (built.path / "aligned_images_DB" / "Zico" / "0" / "frame_7.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"Zico/0/frame_7.jpg: frame name does not match 'aligned_detect_0"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")


def test_truncated_tarball_is_refused_and_leaves_nothing(tmp_path):
    build_youtube_faces(tmp_path / "raw")
    truncate(tmp_path / "raw" / "YouTubeFaces.tar.gz", 0.5)
    with pytest.raises(CorruptArchiveError, match="YouTubeFaces.tar.gz"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_link_in_the_tarball_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    evil_tar(tmp_path / "raw" / "YouTubeFaces.tar.gz")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_corrupt_frame_is_skipped_and_an_empty_video_drops_its_pairs(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    aligned = built.path / "aligned_images_DB"
    (aligned / "Aaron_Eckhart" / "0" / "aligned_detect_0.99.jpg").write_bytes(b"\xff\xd8broken")
    (aligned / "Al_Gore" / "2" / "aligned_detect_2.98.jpg").write_bytes(b"\xff\xd8broken")  # its only frame
    with pytest.warns(SkippedImagesWarning) as record:
        manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    assert any("video pairs left out" in str(w.message) for w in record)
    frame = read_manifest(manifest.parent)
    assert len(frame) == 12 and VIDEO_ORDER.index("Al_Gore/2") not in set(frame["template"])
    skipped = json.loads((tmp_path / "out" / "skipped_images.json").read_text())
    assert [s["source"] for s in skipped] == ["aligned_images_DB/Aaron_Eckhart/0/aligned_detect_0.99.jpg",
                                              "aligned_images_DB/Al_Gore/2/aligned_detect_2.98.jpg"]
    kept = [p for p in ytf_pairs() if "Al_Gore/2" not in p[1:3]]
    assert _pairs_of(tmp_path / "out") == _expected_pairs(kept)


@pytest.mark.skipif(not (REAL_YTF / "aligned_images_DB").is_dir(),
                    reason="real YTF not extracted at data/raw/ytf/YouTubeFaces/ (see sources.yaml; extracting the "
                           "tarball inside a test would take too long)")
def test_real_ytf_counts():
    expected = ytf.SOURCE.expected_counts
    videos = ytf.scan_videos(REAL_YTF / "aligned_images_DB")
    assert len(videos) == expected["videos"]
    assert len({video.person for video in videos}) == expected["identities"]
    assert sum(len(video.frames) for video in videos) == expected["frames"]
    pairs = ytf.read_splits(REAL_YTF)
    assert len(pairs) == expected["pairs"] and {pair.fold for pair in pairs} == set(range(1, expected["folds"] + 1))
    known = {video.video_id for video in videos}
    assert all(pair.first in known and pair.second in known for pair in pairs)
