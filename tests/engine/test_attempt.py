"""What a start of a run resumes, and how its MLflow run ends (the end-to-end restarts are in test_resume.py)."""

import os
import shutil
import signal
import time

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from circle_repro.engine.attempt import RESUME_STATE_FILENAME, Attempt, begin_attempt, ending_mlflow_run, record_attempt
from circle_repro.engine.errors import Terminated
from circle_repro.engine.tracking import ensure_experiment


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    ensure_experiment(uri, "attempts")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("attempts")
    return uri


def _status(uri, run_id):
    return MlflowClient(tracking_uri=uri).get_run(run_id).info.status


def test_the_mlflow_run_ends_finished_killed_or_failed_with_the_attempt(store):
    handler = signal.getsignal(signal.SIGTERM)
    with ending_mlflow_run():
        finished = mlflow.start_run().info.run_id
    with pytest.raises(Terminated), ending_mlflow_run():
        killed = mlflow.start_run().info.run_id
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises at the next bytecode; never reached
    with pytest.raises(RuntimeError), ending_mlflow_run():
        failed = mlflow.start_run().info.run_id
        raise RuntimeError("a bug")
    assert mlflow.active_run() is None
    assert signal.getsignal(signal.SIGTERM) is handler
    assert [_status(store, run) for run in (finished, killed, failed)] == ["FINISHED", "KILLED", "FAILED"]


def _running_run(uri):
    client = MlflowClient(tracking_uri=uri)
    return client.create_run(client.get_experiment_by_name("attempts").experiment_id).info.run_id


def _checkpoint(work, step):
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"iter": step}, "state_dict": {}}, work / f"iter_{step}.pth")


def test_a_start_continues_the_recorded_mlflow_run_from_the_newest_checkpoint(tmp_path, store):
    earlier = _running_run(store)
    _checkpoint(tmp_path / "work", 2)
    record_attempt(tmp_path / "work", "hash", earlier)
    attempt = begin_attempt(tmp_path / "work", "hash", store)
    assert attempt.checkpoint.endswith("work/iter_2.pth") and attempt.mlflow_run_id == earlier
    assert _status(store, earlier) == "RUNNING"


def test_an_earlier_run_that_is_not_continued_is_marked_failed(tmp_path, store, caplog):
    before_first_checkpoint = _running_run(store)  # its process was SIGKILLed: nobody ended it
    record_attempt(tmp_path / "a" / "work", "hash", before_first_checkpoint)
    assert begin_attempt(tmp_path / "a" / "work", "hash", store) == Attempt(None, None)
    assert "no checkpoint yet" in caplog.text
    assert _status(store, before_first_checkpoint) == "FAILED"

    other_settings = _running_run(store)
    _checkpoint(tmp_path / "b" / "work", 2)
    record_attempt(tmp_path / "b" / "work", "old hash", other_settings)
    assert begin_attempt(tmp_path / "b" / "work", "new hash", store) == Attempt(None, None)
    assert not (tmp_path / "b" / "work").exists()
    assert _status(store, other_settings) == "FAILED"
    assert "abandoned" in MlflowClient(tracking_uri=store).get_run(other_settings).data.tags


def test_a_run_folder_brought_to_another_store_resumes_into_a_new_mlflow_run(tmp_path, store, caplog):
    _checkpoint(tmp_path / "work", 2)
    record_attempt(tmp_path / "work", "hash", "f" * 32)
    attempt = begin_attempt(tmp_path / "work", "hash", store)
    assert attempt.checkpoint.endswith("iter_2.pth") and attempt.mlflow_run_id is None
    assert "is not in" in caplog.text
    assert (tmp_path / "work" / RESUME_STATE_FILENAME).is_file()


def test_a_copied_run_folder_resumes_into_a_new_mlflow_run_and_leaves_the_original_alone(tmp_path, store, caplog):
    original = _running_run(store)
    _checkpoint(tmp_path / "a" / "work", 2)
    record_attempt(tmp_path / "a" / "work", "hash", original)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    attempt = begin_attempt(tmp_path / "b" / "work", "hash", store)
    assert attempt.checkpoint.endswith("b/work/iter_2.pth")
    assert (attempt.mlflow_run_id, attempt.copy_of) == (None, original)
    assert f"a copy of {(tmp_path / 'a' / 'work').resolve()}" in caplog.text
    assert begin_attempt(tmp_path / "a" / "work", "hash", store).mlflow_run_id == original  # the original goes on
    assert _status(store, original) == "RUNNING"

    # copied before its first checkpoint, or started with other settings: the original's run is not ended
    (tmp_path / "a" / "work" / "iter_2.pth").unlink()
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    assert begin_attempt(tmp_path / "c" / "work", "hash", store) == Attempt(None, None, copy_of=original)
    shutil.copytree(tmp_path / "a", tmp_path / "d")
    assert begin_attempt(tmp_path / "d" / "work", "other hash", store) == Attempt(None, None)
    assert _status(store, original) == "RUNNING"


def test_a_moved_folder_or_one_reached_through_a_link_continues_its_mlflow_run(tmp_path, store):
    earlier = _running_run(store)
    _checkpoint(tmp_path / "a" / "work", 2)
    record_attempt(tmp_path / "a" / "work", "hash", earlier)
    (tmp_path / "a").rename(tmp_path / "moved")
    assert begin_attempt(tmp_path / "moved" / "work", "hash", store).mlflow_run_id == earlier
    record_attempt(tmp_path / "moved" / "work", "hash", earlier)
    (tmp_path / "link").symlink_to(tmp_path / "moved")
    attempt = begin_attempt(tmp_path / "link" / "work", "hash", store)
    assert (attempt.mlflow_run_id, attempt.copy_of) == (earlier, None)
