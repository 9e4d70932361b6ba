import json
import os
import stat

import pytest

from circle_repro.io import atomic_open, atomic_path, current_umask, write_json


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


@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(0o022)``), restoring it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_every_atomic_writer_gives_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    write_json(tmp_path / "metrics.json", {})
    with atomic_open(tmp_path / "report.md") as fh:
        fh.write("# report")
    with atomic_path(tmp_path / "model.pth") as tmp:
        import torch

        torch.save({"w": torch.zeros(1)}, tmp)  # torch.save opens the existing temporary file
    for name in ("metrics.json", "report.md", "model.pth"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
