"""Fashion-MNIST through the real fetch -> verify -> prepare path, on a fixture mirror and on Debian's copy."""

import gzip
import hashlib
import json

import numpy as np
import pytest

from circle_repro.data import acquire
from circle_repro.data.acquire import FETCHED_FILENAME, is_verified
from circle_repro.data.datasets import fashion_mnist, fetch_dataset, prepare_dataset
from circle_repro.data.download import ChecksumError
from circle_repro.data.formats.idx import write_idx
from circle_repro.data.manifest import read_manifest
from circle_repro.data.pairs import read_pairs

SIZES = {"train": 60, "t10k": 10}


@pytest.fixture
def fixture_mirror(tmp_path, monkeypatch):
    """A miniature mirror in the official file names; FILES is patched to its content hashes."""
    mirror = tmp_path / "mirror"
    rng = np.random.default_rng(0)
    digests = {}
    for prefix, n in SIZES.items():
        labels = np.tile(np.arange(10, dtype=np.uint8), n // 10)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte.gz"
            path = write_idx(mirror / name, array, compress=True)
            digests[name] = ("0" * 32, hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest())
    monkeypatch.setattr(fashion_mnist, "FILES", digests)
    return mirror


def test_prepare_through_a_mirror_accepts_recompressed_content(tmp_path, fixture_mirror):
    manifest = prepare_dataset(
        "fashion_mnist", tmp_path / "prepared", tmp_path / "raw", mirror=fixture_mirror, verification_pairs=20
    )
    frame = read_manifest(manifest.parent)
    assert len(frame) == 70
    assert sorted(frame.loc[frame["split"] == "train", "label"].unique()) == [0, 1, 2, 3, 4]
    assert sorted(frame.loc[frame["split"] == "test", "label"].unique()) == [5, 6, 7, 8, 9]
    assert (tmp_path / "raw" / "train-images-idx3-ubyte.gz").is_file()
    pairs = read_pairs(manifest.parent, frame["path"])
    assert len(pairs) == 20 and pairs["issame"].sum() == 10


def test_content_that_matches_neither_checksum_is_refused_and_deleted(tmp_path, fixture_mirror, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    monkeypatch.setitem(fashion_mnist.FILES, name, ("0" * 32, "f" * 64))
    with pytest.raises(ChecksumError, match=rf"{name}: sha256 of the decompressed content mismatch"):
        fashion_mnist.prepare(tmp_path / "prepared", tmp_path / "raw", mirror=fixture_mirror)
    assert not (tmp_path / "raw" / name).exists()
    assert not (tmp_path / "prepared" / "manifest.parquet").exists()


@pytest.mark.skipif(
    not (fashion_mnist.DEBIAN_MIRROR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_debian_copy_end_to_end(tmp_path):
    raw = fashion_mnist.fetch_raw(tmp_path / "raw", mirror=fashion_mnist.DEBIAN_MIRROR)
    images, labels = fashion_mnist.load_raw(raw)
    assert images.shape == (70_000, 28, 28) and np.bincount(labels).tolist() == [7_000] * 10
    manifest = fashion_mnist.prepare(
        tmp_path / "prepared", tmp_path / "raw", mirror=fashion_mnist.DEBIAN_MIRROR, per_class=30
    )
    frame = read_manifest(manifest.parent)
    assert frame.groupby("label").size().tolist() == [30] * 10
    assert set(frame.loc[frame["label"] < 5, "split"]) == {"train"}


def test_fetch_downloads_and_verifies_only_and_preparation_then_needs_no_network(tmp_path, fixture_mirror, monkeypatch):
    raw = tmp_path / "raw"
    record = fetch_dataset("fashion_mnist", raw, mirror=fixture_mirror)
    assert record == raw / FETCHED_FILENAME and not (tmp_path / "prepared").exists()
    fetched = json.loads(record.read_text())
    assert fetched["dataset"] == "fashion_mnist"
    assert fetched["files"] == {name: (raw / name).stat().st_size for name in sorted(fashion_mnist.FILES)}
    assert all(is_verified(raw / name) for name in fashion_mnist.FILES)
    # a repeated fetch leaves the record alone: the workflow's preparation does not look stale
    written = record.stat().st_mtime_ns
    fetch_dataset("fashion_mnist", raw, mirror=fixture_mirror)
    assert record.stat().st_mtime_ns == written

    def no_network(*args, **kwargs):
        raise AssertionError(f"preparation transferred a file: {args}")

    monkeypatch.setattr(acquire, "fetch", no_network)
    manifest = prepare_dataset("fashion_mnist", tmp_path / "prepared", raw)  # no mirror: the URLs, were it to fetch
    assert len(read_manifest(manifest.parent)) == 70


def test_an_embedded_data_set_has_nothing_to_fetch(tmp_path):
    with pytest.raises(ValueError, match="'mnist5k' is embedded in an installed package: nothing to fetch"):
        fetch_dataset("mnist5k", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
