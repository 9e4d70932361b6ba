"""Images by manifest path: loose files and pack records give the same rows and pixels; broken packs are named."""

import io
import os

import numpy as np
import pytest
import torch
from fixtures.face import build_faces_emore
from fixtures.formats import make_jpeg, truncate
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2.functional import pil_to_tensor

from circle_repro.cli import main
from circle_repro.data import image_store
from circle_repro.data.datasets.ms1m import MS1MV2
from circle_repro.data.image_decode import decode_image
from circle_repro.data.image_reader import (
    ImageReader,
    PackError,
    pack_member,
    split_pack_member,
)
from circle_repro.data.manifest import read_manifest
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.prepared import Sample, write_prepared
from circle_repro.data.stamp import DataStampError, file_table, stamp_hash, verify_files
from circle_repro.data.transforms import IMAGE_MODES, build_transform
from circle_repro.engine.batch_transfer import NetworkInput
from support import REPO_ROOT


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """A photograph-like JPEG (smooth colour field plus noise) of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(coarse, dtype=np.int16) + rng.normal(0, 6, (size[1], size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _prepare_both_ways(tmp_path, monkeypatch, images: list[bytes]):
    raw = tmp_path / "raw"
    raw.mkdir()
    samples = []
    for i, data in enumerate(images):
        (raw / f"{i}.jpg").write_bytes(data)
        samples.append(Sample(raw / f"{i}.jpg", f"{i % 3}/{i}.jpg", i % 3, "train" if i % 4 else "test", f"image {i}"))
    write_prepared(samples, tmp_path / "loose")
    monkeypatch.setattr(image_store, "PACK_THRESHOLD", 0)
    write_prepared(samples, tmp_path / "packed")
    return tmp_path / "loose", tmp_path / "packed"


def test_member_paths_round_trip_and_loose_paths_are_not_members():
    assert split_pack_member(pack_member("images.rec", 17)) == ("images.rec", 17)
    for loose in ("images/3/17.jpg", "images/a#1.jpg", "images.rec#x", "images.rec"):
        assert split_pack_member(loose) is None


def test_a_packed_data_set_has_the_loose_ones_rows_and_pixels(tmp_path, monkeypatch):
    images = [_jpeg(seed, (40 + seed, 30)) for seed in range(8)]
    loose, packed = _prepare_both_ways(tmp_path, monkeypatch, images)
    assert (packed / "images.rec").is_file() and not (packed / "images").exists()
    loose_rows, packed_rows = read_manifest(loose), read_manifest(packed)
    assert packed_rows["path"].tolist() == [f"images.rec#{i}" for i in range(8)]
    assert loose_rows.drop(columns="path").equals(packed_rows.drop(columns="path"))
    by_loose, by_pack = ImageReader(loose, loose_rows["path"]), ImageReader(packed, packed_rows["path"])
    assert [by_pack.read(i) for i in range(8)] == [by_loose.read(i) for i in range(8)] == images
    for split in ("train", "test"):
        first = ManifestDataset(loose, split, "retrieval", train=False)
        second = ManifestDataset(packed, split, "retrieval", train=False)
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a["inputs"], b["inputs"]) and a["labels"] == b["labels"]
    # the content hash covers the pack's images, and the stamp checks the pack itself
    files = file_table(packed, packed_rows["path"].tolist())
    assert stamp_hash(packed_rows, files) == (packed / "content.sha256").read_text().strip()
    verify_files(packed, packed_rows, "full")
    with (packed / "images.rec").open("r+b") as fh:
        fh.truncate((packed / "images.rec").stat().st_size - 1)
    with pytest.raises(DataStampError, match=r"images\.rec has \d+ bytes"):
        verify_files(packed, packed_rows, "sizes")


def test_the_ms1m_pack_has_the_rows_and_pixels_of_its_images_as_loose_files(tmp_path):
    pack = build_faces_emore(tmp_path / "raw" / "faces_emore").rec
    indexed = read_manifest(MS1MV2.prepare_raw(tmp_path / "raw", tmp_path / "indexed").parent)
    files = tmp_path / "extracted"
    files.mkdir()
    samples = []
    for key, image in pack.images.items():
        (files / f"{key}.jpg").write_bytes(image)
        label = int(np.asarray(pack.labels[key]).ravel()[0])
        samples.append(Sample(files / f"{key}.jpg", f"{label}/{key}.jpg", label, "train", f"key {key}"))
    loose = read_manifest(write_prepared(samples, tmp_path / "loose").parent)
    assert indexed.drop(columns="path").equals(loose.drop(columns="path"))
    first = ManifestDataset(tmp_path / "indexed", "train", "face", train=False)
    second = ManifestDataset(tmp_path / "loose", "train", "face", train=False)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["inputs"], b["inputs"]) and a["labels"] == b["labels"]


def test_workers_read_a_pack_as_the_process_itself_does(tmp_path, monkeypatch):
    _, packed = _prepare_both_ways(tmp_path, monkeypatch, [_jpeg(seed, (24, 24)) for seed in range(6)])
    dataset = ManifestDataset(packed, "train", "face", train=False)
    dataset.images.read(0)  # the parent has the pack open; a forked worker must open its own descriptor
    batches = [list(DataLoader(dataset, batch_size=2, num_workers=workers)) for workers in (0, 2)]
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["labels"], b["labels"])


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_decoded_pixels_are_pils(mode):
    for data in (_jpeg(3, (37, 21)), make_jpeg(5, 16)):
        with Image.open(io.BytesIO(data)) as image:
            expected = pil_to_tensor(image.convert(mode))
        assert torch.equal(decode_image(data, mode), expected)
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buffer, format="PNG")
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert torch.equal(decode_image(buffer.getvalue(), mode), pil_to_tensor(image.convert(mode)))


@pytest.mark.parametrize(
    ("style", "size"),
    [
        ("face", (112, 112)),
        ("face", (120, 100)),
        ("reid", (128, 256)),
        ("reid", (100, 200)),
        ("retrieval", (500, 375)),
        ("mnist", (28, 28)),
    ],
)
def test_dataset_items_are_the_transform_of_the_pil_image(tmp_path, monkeypatch, style, size):
    """Items normalised on the device give build_transform's values on the PIL image: to float32 rounding where
    nothing is resized, else within the difference between torchvision's and PIL's antialiased bilinear resize
    (a level or two of 255)."""
    loose, _ = _prepare_both_ways(tmp_path, monkeypatch, [_jpeg(seed, size) for seed in range(4)])
    dataset = ManifestDataset(loose, "train", style, train=False)
    network_input = NetworkInput.of(dataset.pipeline)
    transform = build_transform(style, train=False)
    resized = {"face": (112, 112), "reid": (128, 256), "mnist": (28, 28)}.get(style) != size
    for index in range(len(dataset)):
        with Image.open(loose / dataset.frame["path"][index]) as image:
            expected = transform(image.convert(IMAGE_MODES[style]))
        item = dataset[index]["inputs"]
        assert item.dtype == torch.uint8
        got = network_input(item[None])[0]
        assert got.shape == expected.shape
        if resized:
            assert (got - expected).abs().max() < 3 / 255 / 0.224  # 3 grey levels after ImageNet's std
            assert (got - expected).abs().mean() < 0.5 / 255 / 0.224
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


# --- broken packs ---------------------------------------------------------------------------------


@pytest.fixture
def prepared_pack(tmp_path):
    build_faces_emore(tmp_path / "raw" / "faces_emore")
    MS1MV2.prepare_raw(tmp_path / "raw", tmp_path / "prepared")
    return tmp_path / "prepared"


def test_a_pack_cut_short_after_preparation_is_named_with_the_fix(prepared_pack):
    truncate(prepared_pack / "images.rec", 0.6)
    with pytest.raises(PackError, match=r"images.rec: record \d+ starts at byte \d+, past the end") as err:
        ManifestDataset(prepared_pack, "train", "face", train=False)
    assert "re-run `circle-repro data prepare`" in str(err.value)


def test_a_last_record_cut_short_is_named_when_read(prepared_pack):
    frame = read_manifest(prepared_pack)
    reader = ImageReader(prepared_pack, frame["path"])
    last = int(np.argmax(reader._offsets))
    os.truncate(prepared_pack / "images.rec", int(reader._offsets[last]) + 20)
    with pytest.raises(
        PackError, match=r"images.rec: record at byte \d+ is truncated.*re-run `circle-repro data prepare`"
    ):
        ImageReader(prepared_pack, frame["path"]).read(last)


def test_a_corrupt_record_is_named_when_read(prepared_pack):
    frame = read_manifest(prepared_pack)
    reader = ImageReader(prepared_pack, frame["path"])
    with open(prepared_pack / "images.rec", "r+b") as fh:
        fh.seek(int(reader._offsets[0]))
        fh.write(b"\0" * 8)
    with pytest.raises(PackError, match=r"images.rec: bad magic .*images.idx.*re-run `circle-repro data prepare`"):
        reader.read(0)


def test_an_index_missing_a_manifest_key_is_named(prepared_pack):
    lines = (prepared_pack / "images.idx").read_text().splitlines()
    (prepared_pack / "images.idx").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(PackError, match=r"images.idx: has no record \d+"):
        ManifestDataset(prepared_pack, "train", "face", train=False)


def test_the_cli_exits_2_naming_a_truncated_pack(tmp_path, capsys):
    pack = build_faces_emore(tmp_path / "raw" / "faces_emore").rec
    truncate(pack.rec, 0.6)
    argv = [
        "data",
        "prepare",
        "ms1mv2",
        "--raw",
        str(tmp_path / "raw"),
        "--out",
        str(tmp_path / "out"),
        "--params",
        str(REPO_ROOT / "params.yaml"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.rec" in err and "Traceback" not in err
