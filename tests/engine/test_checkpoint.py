"""A run's own checkpoints: safe loading, a planted pickle refused, fallback past unreadable files, atomic
publishing (the end-to-end kills and restarts are in test_resume.py)."""

import builtins
import collections
import logging
import pickle
import random

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from circle_repro.engine.checkpoint import (
    checkpoint_files,
    latest_checkpoint,
    load_run_checkpoint,
    partial_name,
    prune_checkpoints,
    publish_checkpoint,
    to_saved_layout,
    trusted_work_dir,
)
from circle_repro.engine.errors import CheckpointError


def _checkpoint(step: int) -> dict:
    """A checkpoint as the Runner and the circle-repro hooks fill it, before saving."""
    return {
        "meta": {"iter": step, "epoch": 0},
        "state_dict": {"weight": torch.full((3,), float(step))},
        "message_hub": {
            "log_scalars": collections.OrderedDict(loss=HistoryBuffer([0.5, 0.25], [1, 1])),
            "runtime_info": {"eta": np.float64(1.5), "iter": step},
        },
        "param_schedulers": [{"milestones": collections.Counter({4: 1})}],
        "rng_state": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }


def _save(work, step):
    checkpoint = _checkpoint(step)
    to_saved_layout(checkpoint)
    work.mkdir(exist_ok=True)
    torch.save(checkpoint, work / f"iter_{step}.pth")
    return work / f"iter_{step}.pth"


def test_checkpoints_load_with_weights_only_and_rebuild_the_message_hub(tmp_path):
    path = _save(tmp_path / "work", 2)
    with trusted_work_dir(tmp_path / "work"):
        loaded = load_run_checkpoint(latest_checkpoint(tmp_path / "work"))
    buffer = loaded["message_hub"]["log_scalars"]["loss"]
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.25 and buffer.data[1].tolist() == [1, 1]
    assert loaded["param_schedulers"][0]["milestones"] == collections.Counter({4: 1})
    assert np.array_equal(loaded["rng_state"]["numpy"][1], np.random.get_state()[1])
    # the reason for the plain layout: a HistoryBuffer pickles bound methods, which weights_only refuses
    torch.save(_checkpoint(2), path)
    with pytest.raises(CheckpointError, match=r"builtins.getattr"):
        latest_checkpoint(tmp_path / "work")


class _Payload:
    """Unpickling this creates ``marker``: the code a planted pickle would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_planted_pickle_is_refused_without_running(tmp_path, writer):
    work = tmp_path / "work"
    _save(work, 2)
    marker = tmp_path / "payload_ran"
    planted = work / "iter_4.pth"
    if writer == "torch.save":
        torch.save({"meta": {}, "state_dict": {}, "x": _Payload(marker)}, planted)
    else:
        planted.write_bytes(pickle.dumps(_Payload(marker)))

    refusal = r"iter_4\.pth: refusing to load this checkpoint: it asks to import io\.open"
    with pytest.raises(CheckpointError, match=refusal) as error:
        latest_checkpoint(work)
    assert "Remove the file" in str(error.value) and f"delete {work}" in str(error.value)
    with trusted_work_dir(work), pytest.raises(CheckpointError, match="refusing"):
        load_run_checkpoint(f"run-checkpoint://{planted}")
    assert not marker.exists()

    with open(planted, "rb") as fh:  # the payload is live: unrestricted unpickling runs it
        pickle.load(fh) if writer == "pickle.dump" else torch.load(fh, weights_only=False)
    assert marker.exists()


def test_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    work = tmp_path / "work"
    _save(work, 2)
    newest = _save(work, 4)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a full disk or a lost node cut it short
    (work / "last_checkpoint").write_text("/elsewhere/work/iter_4.pth")  # a stale pointer is not followed

    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(work) == f"run-checkpoint://{(work / 'iter_2.pth').resolve()}"
    assert "iter_4.pth is unreadable" in caplog.text and "resuming from iter_2.pth" in caplog.text


def test_no_usable_checkpoint_is_an_error_naming_each_file_and_the_fix(tmp_path):
    work = tmp_path / "work"
    _save(work, 2).write_bytes(b"")
    newest = _save(work, 4)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no usable checkpoint") as error:
        latest_checkpoint(work)
    message = str(error.value)
    assert "iter_4.pth is unreadable" in message and "iter_2.pth is not a PyTorch checkpoint" in message
    assert f"delete {work} to train the run from scratch" in message
    assert latest_checkpoint(tmp_path / "never_started") is None


def test_checkpoints_order_by_step_and_prune_only_older_ones(tmp_path):
    for step in (9, 10, 2, 11):
        (tmp_path / f"iter_{step}.pth").write_bytes(b"x")
    (tmp_path / partial_name("iter_12.pth")).write_bytes(b"x")
    assert [p.name for p in checkpoint_files(tmp_path)] == ["iter_11.pth", "iter_10.pth", "iter_9.pth", "iter_2.pth"]
    prune_checkpoints(tmp_path, step=10, keep=1)  # room for iter_10 beside the newest before it: iter_9
    assert [p.name for p in checkpoint_files(tmp_path)] == ["iter_11.pth", "iter_10.pth", "iter_9.pth"]
    assert publish_checkpoint(tmp_path, "iter_12.pth") == tmp_path / "iter_12.pth"
    assert not (tmp_path / partial_name("iter_12.pth")).exists()
    assert checkpoint_files(tmp_path)[0].name == "iter_12.pth"
