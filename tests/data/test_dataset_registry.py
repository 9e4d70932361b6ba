"""The data set registry: one entry per declared source, each naming a known transform."""

from __future__ import annotations

import pytest

from circle_repro.data.datasets import DATASETS, get_dataset, prepare_dataset
from circle_repro.data.sources import load_sources
from circle_repro.data.transforms import TRANSFORMS


def test_every_declared_data_set_has_a_preparer():
    assert set(DATASETS) == set(load_sources())


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_entry_names_a_known_transform(name):
    entry = get_dataset(name)
    assert entry.name == name
    assert entry.transform in TRANSFORMS
    assert entry.in_channels in (1, 3)


def test_raw_data_sets_need_a_raw_folder(tmp_path):
    with pytest.raises(ValueError, match=r"give raw_dir .*data/raw/cub200"):
        prepare_dataset("cub200", tmp_path / "out")


def test_unknown_data_set_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown data set 'imagenet'; allowed: .*cub200"):
        get_dataset("imagenet")
