"""YouTube Faces: aligned frames -> test images (person label, video template/media); video pairs in split order."""

import io
import json
import re

import numpy as np
import pytest
from fixtures.face import (
    YTF_VIDEOS,
    build_youtube_faces,
    evil_tar,
    write_corrected_splits,
    write_ytf_landmarks,
    ytf_pairs,
)
from fixtures.formats import make_png_bomb, truncate
from PIL import Image
from scipy import ndimage

from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError
from circle_repro.data.datasets import ytf
from circle_repro.data.face_alignment import ALIGNED_SIZE, ARCFACE_DST, aligned_jpeg
from circle_repro.data.image_store import SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from support import REPO_ROOT

# (person, video) in the prepared order: person name, then video number (2 before 12)
VIDEO_ORDER = [
    "Aaron_Eckhart/0",
    "Aaron_Eckhart/1",
    "Abdullah_Gul/1",
    "Abdullah_Gul/3",
    "Al_Gore/2",
    "Al_Gore/12",
    "Zico/0",
]
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
    stored = (tmp_path / "out" / "images" / "Al_Gore" / "12" / name).read_bytes()
    assert stored == aligned_jpeg(data, built.landmarks[f"Al_Gore/12/{name}"])
    for path in frame["path"]:
        with Image.open(tmp_path / "out" / path) as image:
            assert (image.size, image.mode) == ((ALIGNED_SIZE, ALIGNED_SIZE), "RGB")
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
    with pytest.raises(FileNotFoundError, match=r"splits_corrected.txt"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw", corrected_splits=True)


def test_entry():
    assert (ytf.ENTRY.name, ytf.ENTRY.transform) == ("ytf", "face")


def test_missing_raw_data_names_both_forms(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ytf.fetch_raw(tmp_path / "raw")
    message = str(err.value)
    assert f"one of {tmp_path / 'raw' / 'YouTubeFaces.tar.gz'}, {tmp_path / 'raw' / 'YouTubeFaces'}/" in message
    assert "form on the official page" in message


def test_mirror_copy_of_the_tarball(tmp_path):
    build_youtube_faces(tmp_path / "mirror")
    assert ytf.fetch_raw(tmp_path / "raw", mirror=tmp_path / "mirror") == {
        "YouTubeFaces.tar.gz": tmp_path / "raw" / "YouTubeFaces.tar.gz"
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1, 1, Aaron_Eckhart/0, 1", "expected '<split>, <pair>"),
        ("11, 1, Aaron_Eckhart/0, Zico/0, 1", "split number 11 is outside 1..10"),
        ("1, 1, Aaron_Eckhart, Zico/0, 1", "video 'Aaron_Eckhart' is not '<person>/<video number>'"),
        ("1, 1, Aaron_Eckhart/0, Zico/0, yes", "is-same flag 'yes' is not 0 or 1"),
    ],
)
def test_malformed_split_line_is_named(tmp_path, line, message):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    splits = built.path / "splits.txt"
    splits.write_text(splits.read_text() + line + "\n")
    with pytest.raises(ValueError, match=rf"splits.txt:22: {message}"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_pair_naming_an_unknown_video_is_refused(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    (built.path / "splits.txt").write_text(
        "split number, pair number, first name, second name, is same\n1, 1, Aaron_Eckhart/0, Nobody/4, 0\n"
    )
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
    with pytest.raises(CorruptArchiveError, match=r"YouTubeFaces.tar.gz"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_link_in_the_tarball_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    evil_tar(tmp_path / "raw" / "YouTubeFaces.tar.gz")
    write_ytf_landmarks(tmp_path / "raw", {"Zico/0/aligned_detect_0.98.jpg": np.ones((5, 2))})
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
    assert [s["source"] for s in skipped] == [
        "aligned_images_DB/Aaron_Eckhart/0/aligned_detect_0.99.jpg",
        "aligned_images_DB/Al_Gore/2/aligned_detect_2.98.jpg",
    ]
    kept = [p for p in ytf_pairs() if "Al_Gore/2" not in p[1:3]]
    assert _pairs_of(tmp_path / "out") == _expected_pairs(kept)


@pytest.mark.parametrize("side", [12_000, 20_000])  # under and over Pillow's own error limit (2 x 89.5 M pixels)
def test_a_decompression_bomb_among_the_frames_is_skipped_and_counted(tmp_path, side):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    bomb = "Aaron_Eckhart/0/aligned_detect_0.99.jpg"
    (built.path / "aligned_images_DB" / bomb).write_bytes(make_png_bomb(side, side))
    with pytest.warns(SkippedImagesWarning, match="1 image"):
        manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    assert len(read_manifest(manifest.parent)) == 13
    [skipped] = json.loads((tmp_path / "out" / "skipped_images.json").read_text())
    assert skipped["source"] == f"aligned_images_DB/{bomb}" and skipped["reason"].startswith("DecompressionBombError")


@pytest.mark.skipif(
    not (REAL_YTF / "aligned_images_DB").is_dir(),
    reason="real YTF not extracted at data/raw/ytf/YouTubeFaces/ (see sources.yaml; extracting the "
    "tarball inside a test would take too long)",
)
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


def _dots(points: np.ndarray, size: tuple[int, int], sigma: float) -> bytes:
    """A black JPEG frame (width, height) with a bright Gaussian dot centred on each (x, y) point."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(float)
    pixels = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points)
    grey = np.clip(255 * pixels, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _dot_centres(image: np.ndarray) -> np.ndarray:
    """The (x, y) intensity centroid of each bright blob of a greyscale image."""
    blobs, count = ndimage.label(image > 60)
    centres = ndimage.center_of_mass(image.astype(float), blobs, range(1, count + 1))
    return np.array([(x, y) for y, x in centres]).reshape(-1, 2)


def test_frames_come_out_in_the_training_crop_geometry(tmp_path):
    """Landmarks at known places of a frame (the template turned 12 degrees, scaled 1.3, shifted) land on the
    ArcFace 112 x 112 template within a pixel after preparation."""
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    angle, scale = np.deg2rad(12), 1.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = scale * (ARCFACE_DST - ARCFACE_DST.mean(axis=0)) @ rotation.T + [83.4, 61.7]
    key = "Zico/0/aligned_detect_0.98.jpg"
    (built.path / "aligned_images_DB" / key).write_bytes(_dots(points, (160, 120), sigma=2.0))
    write_ytf_landmarks(tmp_path / "raw", built.landmarks | {key: points})
    manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    with Image.open(manifest.parent / "images" / key) as image:
        assert image.size == (ALIGNED_SIZE, ALIGNED_SIZE)
        centres = _dot_centres(np.asarray(image.convert("L")))
    assert len(centres) == 5
    distances = np.linalg.norm(centres[:, None, :] - ARCFACE_DST[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    assert sorted(nearest.tolist()) == [0, 1, 2, 3, 4], "each dot on its own template point"
    assert distances.min(axis=1).max() < 1.0, distances.min(axis=1)


def test_missing_landmark_file_names_the_file_and_how_to_make_it(tmp_path):
    build_youtube_faces(tmp_path / "raw")
    (tmp_path / "raw" / "ytf_landmarks.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    message = str(err.value)
    assert f"{tmp_path / 'raw' / 'ytf_landmarks.txt'}: not found" in message
    assert "5-point face detector" in message and "x1 y1 x2 y2 x3 y3 x4 y4 x5 y5" in message
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Zico/0/aligned_detect_0.98.jpg 1 2 3", "expected 11 whitespace-separated fields"),
        (
            "Zico/aligned_detect_0.98.jpg 1 2 3 4 5 6 7 8 9 10",
            "frame 'Zico/aligned_detect_0.98.jpg' is not '<person>/<video number>/<frame file>'",
        ),
        ("Zico/0/aligned_detect_0.98.jpg 1 2 3 4 5 6 7 8 9 nan", "the ten coordinates must be finite numbers"),
        ("Zico/0/aligned_detect_0.98.jpg 1 2 3 4 5 6 7 8 9 x", "the ten coordinates must be finite numbers"),
        (
            "Zico/0/aligned_detect_0.99.jpg 1 2 3 4 5 6 7 8 9 10",
            "frame 'Zico/0/aligned_detect_0.99.jpg' is listed twice",
        ),
    ],
)
def test_malformed_landmark_line_is_named(tmp_path, line, message):
    build_youtube_faces(tmp_path / "raw", archive=False)
    path = tmp_path / "raw" / "ytf_landmarks.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(ValueError, match=rf"ytf_landmarks.txt:{len(lines) + 1}: {re.escape(message)}"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_landmarks_of_an_unknown_frame_are_refused(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    write_ytf_landmarks(tmp_path / "raw", built.landmarks | {"Nobody/4/aligned_detect_4.1.jpg": np.ones((5, 2))})
    with pytest.raises(ValueError, match=r"1 line\(s\) name a frame that is not in aligned_images_DB/"):
        ytf.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_a_frame_without_landmarks_is_skipped_and_counted(tmp_path):
    built = build_youtube_faces(tmp_path / "raw", archive=False)
    missing = "Aaron_Eckhart/0/aligned_detect_0.99.jpg"
    write_ytf_landmarks(tmp_path / "raw", {k: v for k, v in built.landmarks.items() if k != missing})
    with pytest.warns(SkippedImagesWarning):
        manifest = ytf.prepare(tmp_path / "out", tmp_path / "raw")
    assert len(read_manifest(manifest.parent)) == 13
    skipped = json.loads((tmp_path / "out" / "skipped_images.json").read_text())
    assert skipped == [{"source": f"aligned_images_DB/{missing}", "reason": "no landmarks in ytf_landmarks.txt"}]


def test_the_result_does_not_depend_on_the_number_of_workers(tmp_path):
    build_youtube_faces(tmp_path / "raw", archive=False)
    one = ytf.prepare(tmp_path / "one", tmp_path / "raw", workers=1).parent
    three = ytf.prepare(tmp_path / "three", tmp_path / "raw", workers=3).parent
    assert read_manifest(one).equals(read_manifest(three))
    for path in read_manifest(one)["path"]:
        assert (one / path).read_bytes() == (three / path).read_bytes()
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        ytf.prepare(tmp_path / "bad", tmp_path / "raw", workers=0)
