import hashlib

import pandas as pd
import pytest

from circle_repro.data.manifest import (
    ManifestError,
    manifest_path,
    read_content_hash,
    read_manifest,
    write_manifest,
)
from circle_repro.data.stamp import FILES_FILENAME


def _frame(**overrides):
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [0, 0, 1], "split": ["train", "train", "test"]})
    return frame.assign(**overrides)


def _files(folder, frame):
    for path in frame["path"]:
        (folder / path).write_bytes(path.encode())


def test_roundtrip_and_split_filter(tmp_path):
    _files(tmp_path, _frame())
    written = write_manifest(_frame(camera=[1, 2, 3]), tmp_path)
    assert written == manifest_path(tmp_path)
    assert read_manifest(tmp_path).equals(_frame(camera=[1, 2, 3]))
    test = read_manifest(tmp_path, split="test")
    assert test["path"].tolist() == ["c.png"] and test.index.tolist() == [0]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (_frame().drop(columns="split"), "missing column(s) ['split']"),
        (_frame(colour=["r", "g", "b"]), "unknown column(s) ['colour']"),
        (_frame(label=["0", "0", "1"]), "column 'label' must hold integers"),
        (_frame(split=["train", "val", "test"]), "column 'split' holds ['val']; allowed values: ['train', 'test']"),
        (_frame(role=["query", "probe", None]), "column 'role' holds ['probe']"),
        (_frame(path=["a.png", "a.png", "c.png"]), "column 'path' must be unique"),
        (_frame(path=["/abs/a.png", "b.png", "c.png"]), "relative to the manifest's folder"),
        (_frame(path=["../a.png", "b.png", "c.png"]), "relative to the manifest's folder"),
        (_frame().iloc[:0], "no rows"),
    ],
)
def test_bad_manifests_are_refused_naming_file_and_column(tmp_path, frame, expected):
    with pytest.raises(ManifestError) as info:
        write_manifest(frame, tmp_path)
    assert expected in str(info.value)
    assert str(manifest_path(tmp_path)) in str(info.value)
    assert not manifest_path(tmp_path).exists()


def test_reading_a_broken_manifest_names_it(tmp_path):
    _frame().drop(columns="label").to_parquet(manifest_path(tmp_path))
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="circle-repro data prepare"):
        read_manifest(tmp_path / "elsewhere")


def _reference_hash(frame, folder):
    """sha256 over each row (tab-joined, sorted by path, newline) and then the sha256 digest of its file."""
    digest = hashlib.sha256()
    for _, row in frame.sort_values("path").iterrows():
        digest.update(("\t".join(str(value) for value in row) + "\n").encode())
        digest.update(hashlib.sha256((folder / row["path"]).read_bytes()).digest())
    return digest.hexdigest()


def test_content_hash_covers_rows_and_file_bytes(tmp_path):
    _files(tmp_path, _frame())
    write_manifest(_frame().iloc[::-1], tmp_path)
    recorded = read_content_hash(tmp_path)
    assert recorded == _reference_hash(_frame(), tmp_path)
    assert _reference_hash(_frame(label=[0, 1, 1]), tmp_path) != recorded
    files = pd.read_parquet(tmp_path / FILES_FILENAME).set_index("path")
    assert files.loc["b.png", "bytes"] == len((tmp_path / "b.png").read_bytes())
    assert files.loc["b.png", "sha256"] == hashlib.sha256((tmp_path / "b.png").read_bytes()).hexdigest()
    with pytest.raises(ManifestError, match=r"content.sha256: not found"):
        read_content_hash(tmp_path / "elsewhere")
