import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fixtures.formats import build_idx_pair, truncate

from circle_repro.data.formats.idx import IdxFormatError, read_idx, write_idx

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST as data/sources.yaml declares it: sha256 of the decompressed IDX files (measured on Debian's
# copy), shape, label counts
FASHION_MNIST = {
    "train-images-idx3-ubyte.gz": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", (60000,)),
    "t10k-images-idx3-ubyte.gz": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", (10000,)),
}


def test_header_bytes_are_exact(tmp_path):
    path = write_idx(tmp_path / "a-idx2-ubyte", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert path.read_bytes() == bytes.fromhex("000008020000000200000003") + bytes(range(6))
    labels = write_idx(tmp_path / "l-idx1-ubyte", np.array([7, 1], dtype=np.uint8))
    assert labels.read_bytes()[:4] == bytes.fromhex("00000801")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_style_round_trip(tmp_path, gz):
    image_path, label_path, images, labels = build_idx_pair(tmp_path, gz=gz)
    assert (image_path.read_bytes()[:2] == b"\x1f\x8b") == gz
    got_images, got_labels = read_idx(image_path), read_idx(label_path)
    assert got_images.dtype == np.uint8 and got_images.shape == (12, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # writable


@pytest.mark.parametrize("dtype, code", [("i1", 0x09), ("i2", 0x0B), ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)])
def test_multibyte_types_are_big_endian(tmp_path, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / "x.idx", array)
    raw = path.read_bytes()
    assert raw[2] == code and raw[3] == 3
    assert raw[16:] == array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    "header, message",
    [
        (bytes.fromhex("01000801"), "bad IDX magic 0x01000801"),
        (bytes.fromhex("00000a01"), "bad IDX magic 0x00000a01"),
        (bytes.fromhex("00000800"), "bad IDX magic"),
        (b"\x00\x00", "2 bytes is too short"),
    ],
)
def test_bad_magic_names_the_file(tmp_path, header, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(header + (bytes.fromhex("00000002") + b"\x01\x02" if len(header) == 4 else b""))
    with pytest.raises(IdxFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_and_oversized_data(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte", np.zeros((4, 5, 5), np.uint8))
    truncate(path, 16 + 99)
    with pytest.raises(IdxFormatError, match=r"images-idx3-ubyte: IDX data truncated: .* needs 100 bytes .* found 99"):
        read_idx(path)
    path.write_bytes(bytes.fromhex("00000803") + b"\x00\x00\x00\x04")
    with pytest.raises(IdxFormatError, match="truncated IDX header"):
        read_idx(path)
    write_idx(path, np.zeros(3, np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        read_idx(path)


def test_truncated_gzip_is_reported(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte.gz", np.arange(5000, dtype=np.int32))
    truncate(path, 0.5)
    with pytest.raises(IdxFormatError, match=r"labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_gzip_output_is_deterministic(tmp_path):
    a = write_idx(tmp_path / "a.gz", np.arange(10, dtype=np.uint8)).read_bytes()
    b = write_idx(tmp_path / "b.gz", np.arange(10, dtype=np.uint8)).read_bytes()
    assert a == b


def test_debian_fashion_mnist_files():
    missing = [name for name in FASHION_MNIST if not (FASHION_MNIST_DIR / name).is_file()]
    if missing:
        pytest.skip(
            f"Debian package dataset-fashion-mnist not installed: {FASHION_MNIST_DIR}/{missing[0]} absent "
            "(apt-get install dataset-fashion-mnist to run this check)"
        )
    for name, (sha256, shape) in FASHION_MNIST.items():
        path = FASHION_MNIST_DIR / name
        assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == sha256, name
        array = read_idx(path)
        assert array.shape == shape and array.dtype == np.uint8
        if array.ndim == 1:
            counts = np.bincount(array, minlength=10)
            assert counts.tolist() == [shape[0] // 10] * 10
