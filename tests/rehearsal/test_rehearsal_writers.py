"""The rehearsal's synthetic raw data goes through the real preparers (``prepare_dataset``, as ``circle-repro data
prepare`` calls it) and gives the counts worked out by hand from sources.yaml and the scale."""

from __future__ import annotations

import pytest

from circle_repro.data.datasets import prepare_dataset
from circle_repro.data.formats.recordio import read_property
from circle_repro.data.manifest import read_manifest
from circle_repro.rehearsal.scale import Scale, spread
from circle_repro.rehearsal.writers import WRITERS, write_raw

TINY = Scale(1e-5, min_classes=3, min_per_class=2)
# rows of the prepared manifest per (split, role) at TINY: most counts are floors (real count x 1e-5 < floor):
# 3 identities x 2 images per split; verification packs 20 pairs (2 per fold); Market drops its 1 junk box
# (its 1 distractor stays in the gallery); YTF 4 videos (floor) holding 6 frames (621,126 x 1e-5); IJB-C 8 crops
# (floor); MegaFace 10 distractors (1,000,000 x 1e-5).
EXPECTED = {
    "cub200": {("train", None): 6, ("test", None): 6},
    "cars196": {("train", None): 6, ("test", None): 6},
    "sop": {("train", None): 6, ("test", None): 6},
    "market1501": {("train", None): 6, ("test", "query"): 6, ("test", "gallery"): 7},
    "msmt17": {("train", None): 6, ("test", "query"): 6, ("test", "gallery"): 6},
    "ms1mv2": {("train", None): 58},  # round(5,822,653 x 1e-5) over 3 identities
    "ms1mv3": {("train", None): 52},  # round(5,179,510 x 1e-5)
    "lfw": {("test", None): 40},
    "cfp_fp": {("test", None): 40},
    "agedb_30": {("test", None): 40},
    "ytf": {("test", None): 6},
    "ijbc": {("test", None): 8},
    "megaface": {("test", "query"): 6, ("test", "gallery"): 10},
}
# class ids the class-disjoint splits start from (paper §4.1): train 1..n, test from the first test class
FIRST_TEST_CLASS = {"cub200": 101, "cars196": 99, "sop": 11319}


def _rows(frame):
    roles = frame["role"] if "role" in frame.columns else [None] * len(frame)
    counts: dict = {}
    for split, role in zip(frame["split"], roles, strict=True):
        key = (split, role if isinstance(role, str) else None)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_every_data_set_of_the_paper_profile_has_a_writer(repo_params):
    from circle_repro.config import experiment_datasets, select_profile

    paper = select_profile(repo_params, "paper")
    needed = {name for spec in paper["experiments"].values() for name in experiment_datasets(spec)}
    assert needed <= set(WRITERS)


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_writer_round_trips_through_the_real_preparer(tmp_path, dataset):
    written = write_raw(dataset, tmp_path / "raw", TINY)
    manifest = prepare_dataset(dataset, tmp_path / "prepared", tmp_path / "raw")
    frame = read_manifest(manifest.parent)
    assert _rows(frame) == EXPECTED[dataset]
    assert written == len(frame) + (1 if dataset == "market1501" else 0)  # the junk box is read, then dropped
    if dataset in FIRST_TEST_CLASS:
        labels = frame.groupby("split")["label"].unique().map(sorted).to_dict()
        first = FIRST_TEST_CLASS[dataset]
        assert labels == {"train": [1, 2, 3], "test": [first, first + 1, first + 2]}


def test_counts_follow_the_fraction_above_the_floors(tmp_path):
    """MS1MV2 at 1e-4: round(85,742 x 1e-4) = 9 identities, round(5,822,653 x 1e-4) = 582 images, 65 or 64 each."""
    write_raw("ms1mv2", tmp_path / "raw", Scale(1e-4))
    assert read_property(tmp_path / "raw" / "faces_emore" / "property") == (9, 112, 112)
    frame = read_manifest(prepare_dataset("ms1mv2", tmp_path / "prepared", tmp_path / "raw").parent)
    assert len(frame) == 582
    assert sorted(frame["label"].value_counts()) == sorted(spread(582, 9)) == [64] * 3 + [65] * 6


def test_images_have_the_real_size(tmp_path):
    from PIL import Image

    write_raw("cub200", tmp_path / "raw", TINY)
    frame = read_manifest(prepare_dataset("cub200", tmp_path / "prepared", tmp_path / "raw").parent)
    with Image.open(tmp_path / "prepared" / frame["path"].iloc[0]) as image:
        assert image.size == (500, 375)  # sources.yaml image_size [375, 500] (height, width)


def test_refuses_a_folder_that_exists_and_an_unknown_data_set(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        write_raw("cub200", tmp_path / "raw", TINY)
    with pytest.raises(ValueError, match="no rehearsal writer for data set 'mnist5k'"):
        write_raw("mnist5k", tmp_path / "other", TINY)


def test_scale_rejects_a_fraction_outside_zero_to_one():
    for fraction in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="scale must be in"):
            Scale(fraction)
