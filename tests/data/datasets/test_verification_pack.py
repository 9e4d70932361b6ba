"""lfw.bin / cfp_fp.bin / agedb_30.bin: pack images -> test images + pairs.parquet in the pack's pair order."""

import io
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from fixtures.face import build_faces_emore
from fixtures.formats import build_verification_bin, evil_pickle, make_jpeg, truncate
from PIL import Image

from circle_repro.data.datasets.verification_pack import (
    AGEDB_30,
    AGEDB_30_ENTRY,
    CFP_FP,
    CFP_FP_ENTRY,
    LFW,
    LFW_ENTRY,
)
from circle_repro.data.formats.verification_bin import UnsafePickleError, VerificationBinError
from circle_repro.data.image_store import SkippedImagesWarning
from circle_repro.data.manifest import read_manifest
from circle_repro.data.pairs import read_pairs
from support import REPO_ROOT

PACKS = {"lfw": LFW, "cfp_fp": CFP_FP, "agedb_30": AGEDB_30}


def _bin(path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    return build_verification_bin(path, **kwargs)


def _assert_nothing_written(out):
    for name in ("manifest.parquet", "pairs.parquet", "images", "images.partial"):
        assert not (out / name).exists(), name


@pytest.mark.parametrize("kind", ["bytes", "bytes-p2", "numpy", "numpy-p2", "py2", "py2-numpy"])
def test_encoded_pack_becomes_images_and_pairs_in_pack_order(tmp_path, kind):
    images, issame = _bin(tmp_path / "raw" / "lfw.bin", n_pairs=4, kind=kind)
    manifest = LFW.prepare_raw(tmp_path / "raw", tmp_path / "out")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split", "pair_id"]
    assert frame["path"].tolist() == [f"images/{i:05d}.jpg" for i in range(8)]
    assert set(frame["split"]) == {"test"}
    assert frame["pair_id"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # pseudo-identities: a matched pair shares 2p, a mismatched pair gets 2p and 2p + 1
    assert issame == [True, False, True, False]
    assert frame["label"].tolist() == [0, 0, 2, 3, 4, 4, 6, 7]
    for i, image in enumerate(images):
        assert (tmp_path / "out" / "images" / f"{i:05d}.jpg").read_bytes() == image
    pairs = read_pairs(tmp_path / "out", known_paths=frame["path"])
    assert pairs["path_a"].tolist() == [f"images/{2 * p:05d}.jpg" for p in range(4)]
    assert pairs["path_b"].tolist() == [f"images/{2 * p + 1:05d}.jpg" for p in range(4)]
    assert pairs["issame"].tolist() == issame


def test_decoded_array_pack_is_stored_losslessly_as_png(tmp_path):
    images, _ = _bin(tmp_path / "raw" / "cfp_fp.bin", n_pairs=2, kind="ndarray")
    frame = read_manifest(CFP_FP.prepare_raw(tmp_path / "raw", tmp_path / "out").parent)
    assert frame["path"].tolist() == [f"images/{i:05d}.png" for i in range(4)]
    original = Image.open(io.BytesIO(images[3])).convert("RGB")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "images" / "00003.png")), np.asarray(original))


def test_the_three_packs_come_from_the_ms1mv2_folder(tmp_path):
    pack = build_faces_emore(tmp_path / "raw" / "ms1mv2" / "faces_emore", n_pairs=3)
    for name, entry in (("lfw", LFW_ENTRY), ("cfp_fp", CFP_FP_ENTRY), ("agedb_30", AGEDB_30_ENTRY)):
        assert (entry.name, entry.transform) == (name, "face")
        manifest = entry.prepare(tmp_path / "out" / name, tmp_path / "raw" / name)
        assert (tmp_path / "raw" / name / f"{name}.bin").is_file()
        frame = read_manifest(manifest.parent)
        assert len(frame) == 6
        assert read_pairs(manifest.parent)["issame"].tolist() == pack.bins[name][1]
        first = (tmp_path / "out" / name / "images" / "00000.jpg").read_bytes()
        assert first == pack.bins[name][0][0]


def test_mirror_takes_precedence_over_the_ms1mv2_folder(tmp_path):
    build_faces_emore(tmp_path / "raw" / "ms1mv2" / "faces_emore", n_pairs=3)
    _bin(tmp_path / "mirror" / "agedb_30.bin", n_pairs=5)
    manifest = AGEDB_30.prepare(tmp_path / "out", tmp_path / "raw" / "agedb_30", mirror=tmp_path / "mirror")
    assert len(read_manifest(manifest.parent)) == 10


@pytest.mark.parametrize("name", sorted(PACKS))
def test_missing_pack_says_where_to_place_it(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        PACKS[name].fetch_raw(tmp_path / "raw" / name)
    message = str(err.value)
    assert str(tmp_path / "raw" / name / f"{name}.bin") in message
    assert "data/raw/ms1mv2/faces_emore/" in message


def test_resize_short_side(tmp_path):
    _bin(tmp_path / "raw" / "lfw.bin", n_pairs=1)
    LFW.prepare_raw(tmp_path / "raw", tmp_path / "out", resize_short_side=8)
    assert Image.open(tmp_path / "out" / "images" / "00001.jpg").size == (8, 8)


def test_unexpected_pickle_global_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "lfw.bin").write_bytes(evil_pickle("os", "system", "echo pwned"))
    with pytest.raises(UnsafePickleError, match=r"lfw.bin: refusing to load global os.system"):
        LFW.prepare(tmp_path / "out", tmp_path / "raw")
    _assert_nothing_written(tmp_path / "out")


def test_truncated_pack_is_refused(tmp_path):
    _bin(tmp_path / "raw" / "lfw.bin", n_pairs=3)
    truncate(tmp_path / "raw" / "lfw.bin", 0.5)
    with pytest.raises(VerificationBinError, match=r"lfw.bin: not a readable pickle"):
        LFW.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_pack_with_an_odd_image_count_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "lfw.bin").write_bytes(pickle.dumps(([make_jpeg(1)] * 3, [True, False])))
    with pytest.raises(VerificationBinError, match="3 images for 2 pairs"):
        LFW.prepare_raw(tmp_path / "raw", tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_bad_decoded_array_is_named(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "lfw.bin").write_bytes(pickle.dumps((np.zeros((2, 3, 4, 4), np.float32), [True])))
    with pytest.raises(VerificationBinError, match="must be uint8"):
        LFW.prepare_raw(tmp_path / "raw", tmp_path / "out")


def test_pair_with_a_corrupt_image_is_left_out_with_a_warning(tmp_path):
    images = [make_jpeg(i) for i in range(6)]
    images[3] = b"\xff\xd8broken"
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "lfw.bin").write_bytes(pickle.dumps((images, [True, False, True])))
    with pytest.warns(SkippedImagesWarning) as record:
        manifest = LFW.prepare_raw(tmp_path / "raw", tmp_path / "out")
    assert any("1 of 3 pairs left out" in str(w.message) for w in record)
    frame = read_manifest(manifest.parent)
    assert frame["pair_id"].tolist() == [0, 0, 2, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "00000.jpg",
        "00001.jpg",
        "00004.jpg",
        "00005.jpg",
    ]
    assert read_pairs(manifest.parent, known_paths=frame["path"])["issame"].tolist() == [True, True]
    assert json.loads((tmp_path / "out" / "skipped_images.json").read_text())[0]["source"] == "lfw.bin: image 3"


def _real_pack(name):
    for folder in (REPO_ROOT / "data" / "raw" / name, REPO_ROOT / "data" / "raw" / "ms1mv2" / "faces_emore"):
        if (folder / f"{name}.bin").is_file():
            return folder / f"{name}.bin"
    return None


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                _real_pack(name) is None,
                reason=(
                    f"real {name}.bin not present under data/raw/{name}/ or data/raw/ms1mv2/faces_emore/ (see sources.yaml)"
                ),
            ),
        )
        for name in sorted(PACKS)
    ],
)
def test_real_pack_counts(tmp_path, name):
    pack = PACKS[name]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / f"{name}.bin").symlink_to(_real_pack(name))
    frame = pd.read_parquet(pack.prepare_raw(tmp_path / "raw", tmp_path / "out"))
    expected = pack.source.expected_counts
    assert len(frame) == expected["bin_images"]
    pairs = read_pairs(tmp_path / "out", known_paths=frame["path"])
    assert len(pairs) == expected["pairs"] == expected["bin_images"] // 2
    assert pairs["issame"].sum() == expected["pairs"] // 2
