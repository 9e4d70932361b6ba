import io
import pickle
import pickletools
import struct

import numpy as np
import pytest
from fixtures.formats import build_verification_bin, evil_pickle, py2_pickle
from PIL import Image

from circle_repro.data.formats.verification_bin import (
    ALLOWED_GLOBALS,
    UnsafePickleError,
    VerificationBinError,
    load_verification_bin,
)


@pytest.mark.parametrize("kind", ["bytes", "bytes-p2", "numpy", "numpy-p2", "py2", "py2-numpy"])
def test_pack_variants_load_as_jpeg_bytes(tmp_path, kind):
    path = tmp_path / f"{kind}.bin"
    expected_images, expected_issame = build_verification_bin(path, n_pairs=3, kind=kind)
    images, issame = load_verification_bin(path)
    assert images == expected_images
    assert all(type(image) is bytes for image in images)
    assert issame.dtype == np.bool_ and issame.tolist() == expected_issame
    assert Image.open(io.BytesIO(images[0])).format == "JPEG"


def test_py2_fixture_really_mimics_python2(tmp_path):
    blob = py2_pickle([b"\xff\xd8\xff\xe0jpeg"], [])
    opcodes = {op.name for op, _, _ in pickletools.genops(blob)}
    assert "SHORT_BINSTRING" in opcodes and "BINUNICODE" not in opcodes
    with pytest.raises(UnicodeDecodeError):  # what insightface's load_bin catches before retrying
        pickle.loads(blob)
    path = tmp_path / "lfw.bin"
    path.write_bytes(py2_pickle([b"\xff\xd8a", b"\xff\xd8b"], [True]))
    images, issame = load_verification_bin(path)
    assert images == [b"\xff\xd8a", b"\xff\xd8b"] and issame.tolist() == [True]


def test_decoded_array_pack_is_returned_as_array(tmp_path):
    path = tmp_path / "arr.bin"
    build_verification_bin(path, n_pairs=2, kind="ndarray")
    images, issame = load_verification_bin(path)
    assert isinstance(images, np.ndarray) and images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    assert issame.tolist() == [True, False]


@pytest.mark.parametrize(
    "module, name",
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("__builtin__", "eval"),
        ("subprocess", "Popen"),
        ("builtins", "getattr"),
    ],
)
def test_restricted_unpickler_refuses_foreign_globals(tmp_path, module, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    argument = f"open({str(marker)!r}, 'w')" if name == "eval" else f"touch {marker}"
    path.write_bytes(evil_pickle(module, name, argument))
    with pytest.raises(UnsafePickleError) as info:
        load_verification_bin(path)
    message = str(info.value)
    assert str(path) in message and f"{module}.{name}" in message
    assert not marker.exists()


def test_allow_list_is_explicit_and_small():
    assert set(ALLOWED_GLOBALS) == {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }


def test_codecs_encode_only_round_trips_latin1(tmp_path):
    path = tmp_path / "codec.bin"

    def text(value):
        return b"X" + struct.pack("<I", len(value)) + value

    path.write_bytes(b"\x80\x02]c_codecs\nencode\n" + text(b"abc") + text(b"rot13") + b"\x86Ra]\x88a\x86.")
    with pytest.raises(VerificationBinError, match="latin-1"):
        load_verification_bin(path)


def test_image_count_must_be_twice_the_pair_count(tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4))
    with pytest.raises(VerificationBinError, match="3 images for 1 pairs"):
        load_verification_bin(path)


def test_structure_errors_name_the_file(tmp_path):
    path = tmp_path / "weird.bin"
    path.write_bytes(pickle.dumps({"bins": []}, protocol=4))
    with pytest.raises(VerificationBinError, match=r"weird.bin"):
        load_verification_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], ["yes"]), protocol=4))
    with pytest.raises(VerificationBinError, match="booleans"):
        load_verification_bin(path)
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(VerificationBinError, match=r"weird.bin"):
        load_verification_bin(path)
