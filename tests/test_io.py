import json

import pytest

from circle_repro.io import atomic_open, atomic_path, write_json


def test_write_json_replaces_atomically(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half written")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_atomic_path_creates_nothing_on_failure(tmp_path):
    with pytest.raises(KeyError), atomic_path(tmp_path / "model.pth") as tmp:
        tmp.write_bytes(b"partial")
        raise KeyError
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_refuses_reading(tmp_path):
    with pytest.raises(ValueError, match="only writes"), atomic_open(tmp_path / "x", "r"):
        pass
