"""Exact resume after kills, SIGTERM, a kill mid-checkpoint, a moved folder and a truncated checkpoint; the
scoped checkpoint loader; the CLI's one-paragraph errors; the non-finite guard."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import circle_repro
from circle_repro.cli import main
from circle_repro.config import config_hash as hash_of
from circle_repro.config import find_run, load_params, train_config
from circle_repro.engine import train as train_module
from circle_repro.engine.checkpoint import (
    checkpoint_files,
    latest_checkpoint,
    load_run_checkpoint,
    partial_name,
    trusted_work_dir,
)
from circle_repro.engine.errors import Terminated
from circle_repro.engine.tracking import DEFAULT_EXPERIMENT
from circle_repro.engine.train import train_run
from circle_repro.losses import CircleLoss
from support import tiny_params, write_params

RUN = "demo_retrieval/CircleLoss/seed0"


class Killed(Exception):
    pass


@HOOKS.register_module(force=True)
class KillAfterFirstCheckpointHook(Hook):
    """Ends the process's training right after the epoch-1 checkpoint is on disk, like a SIGKILL would."""

    priority = "LOWEST"  # after CheckpointHook

    def after_train_epoch(self, runner):
        raise Killed


def _config(repo_params, epochs=2):
    params = tiny_params(repo_params, epochs=epochs, max_images=300)
    return train_config(params, find_run(params, RUN))


def _with_hook(monkeypatch, hook):
    """Add a hook (a registered type name, or a config dict) to the runs started while patched."""
    original = train_module.runner_config

    def patched(*args, **kwargs):
        config = original(*args, **kwargs)
        config.custom_hooks = [*config.custom_hooks, hook if isinstance(hook, dict) else dict(type=hook)]
        return config

    monkeypatch.setattr(train_module, "runner_config", patched)


def test_killed_run_resumes_to_bit_identical_weights_in_the_same_mlflow_run(
    tmp_path, repo_params, prepared_mnist5k, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    straight = torch.load(train_run(_config(repo_params), prepared_mnist5k, tmp_path / "a", uri), weights_only=True)

    with monkeypatch.context() as patch:
        _with_hook(patch, "KillAfterFirstCheckpointHook")
        with pytest.raises(Killed):
            train_run(_config(repo_params), prepared_mnist5k, tmp_path / "b", uri)
    assert latest_checkpoint(tmp_path / "b" / "work").endswith("epoch_1.pth")
    first_mlflow_run = (tmp_path / "b" / "work" / "resume.json").read_text()

    resumed = torch.load(train_run(_config(repo_params), prepared_mnist5k, tmp_path / "b", uri), weights_only=True)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert (tmp_path / "b" / "work" / "resume.json").read_text() == first_mlflow_run
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id]
    )
    assert len(runs) == 2, "the resumed run continued its MLflow run instead of opening a third"


@HOOKS.register_module(force=True)
class KillAfterIteration4Hook(Hook):
    """Ends training right after iteration 4 and its checkpoint (mid-epoch: 3 batches per epoch)."""

    priority = "LOWEST"  # after CheckpointHook

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == 4:
            raise Killed


def _iteration_config(repo_params):
    config = _config(repo_params)
    config["train"] = {**config["train"], "iterations": 8, "checkpoint_interval": 2, "amp": "bf16"}
    del config["train"]["epochs"]
    config["train"]["lr_schedule"] = {"type": "multistep", "milestones": [0.6]}
    return config


def test_iteration_based_run_resumes_mid_epoch_to_bit_identical_weights(
    tmp_path, repo_params, prepared_mnist5k, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    straight_path = train_run(_iteration_config(repo_params), prepared_mnist5k, tmp_path / "a", uri)
    straight = torch.load(straight_path, weights_only=True)
    with monkeypatch.context() as patch:
        _with_hook(patch, "KillAfterIteration4Hook")
        with pytest.raises(Killed):
            train_run(_iteration_config(repo_params), prepared_mnist5k, tmp_path / "b", uri)
    assert latest_checkpoint(tmp_path / "b" / "work").endswith("iter_4.pth")
    resumed = torch.load(
        train_run(_iteration_config(repo_params), prepared_mnist5k, tmp_path / "b", uri), weights_only=True
    )
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    history_a = (tmp_path / "a" / "history.csv").read_text()
    assert history_a == (tmp_path / "b" / "history.csv").read_text()
    assert len(history_a.splitlines()) == 9


def test_changed_settings_never_resume_old_checkpoints(tmp_path, repo_params, prepared_mnist5k):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_run(_config(repo_params, epochs=1), prepared_mnist5k, tmp_path, uri)
    changed = _config(repo_params, epochs=1)
    changed["loss"] = {**changed["loss"], "gamma": 64}
    fresh = torch.load(train_run(changed, prepared_mnist5k, tmp_path / "fresh", uri), weights_only=True)
    rerun = torch.load(train_run(changed, prepared_mnist5k, tmp_path, uri), weights_only=True)
    assert all(torch.equal(fresh[name], rerun[name]) for name in fresh)


def test_scoped_loader_refuses_files_outside_the_resuming_run(tmp_path):
    evil = tmp_path / "elsewhere" / "epoch_1.pth"
    evil.parent.mkdir()
    torch.save({"state_dict": {}}, evil)
    with pytest.raises(PermissionError, match="not a checkpoint of the run being resumed"):
        load_run_checkpoint(f"run-checkpoint://{evil}")
    with trusted_work_dir(tmp_path / "elsewhere"):
        assert load_run_checkpoint(f"run-checkpoint://{evil}") == {"state_dict": {}}
    with pytest.raises(PermissionError):
        load_run_checkpoint(f"run-checkpoint://{evil}")


def test_non_finite_loss_stops_training_naming_the_iteration(tmp_path, repo_params, prepared_mnist5k, monkeypatch):
    calls = []
    original = CircleLoss.forward

    def diverging(self, *args, **kwargs):  # the third batch's loss is NaN, as a diverging run's would be
        calls.append(1)
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(CircleLoss, "forward", diverging)
    with pytest.raises(FloatingPointError, match=r"iteration 3 \(epoch 1\) gave loss = nan"):
        train_run(_config(repo_params, epochs=1), prepared_mnist5k, tmp_path, f"sqlite:///{tmp_path / 'm.db'}")


# -- Interrupted again and again ----------------------------------------------------------------


@HOOKS.register_module(force=True)
class InterruptAfterIterationHook(Hook):
    """Ends training right after iteration ``at`` and its checkpoint: with an exception, or by SIGTERM to
    this process (as SLURM's preemption sends it)."""

    priority = "LOWEST"  # after CheckpointHook

    def __init__(self, at, sigterm=False):
        self.at, self.sigterm = at, sigterm

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.at:
            return
        if self.sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises first
        raise Killed


def _six_iterations(repo_params):
    """Six iterations, a checkpoint every two (iter_2, iter_4, iter_6), a step schedule (its milestones
    are a Counter in the checkpoint)."""
    config = _config(repo_params)
    config["train"] = {**config["train"], "iterations": 6, "checkpoint_interval": 2}
    del config["train"]["epochs"]
    config["train"]["lr_schedule"] = {"type": "multistep", "milestones": [0.5]}
    return config


@pytest.fixture(scope="module")
def straight_six(tmp_path_factory, repo_params, prepared_mnist5k):
    """Weights and history.csv of the six-iteration run trained without interruption."""
    out = tmp_path_factory.mktemp("straight")
    weights = train_run(_six_iterations(repo_params), prepared_mnist5k, out, f"sqlite:///{out / 'mlflow.db'}")
    return torch.load(weights, weights_only=True), (out / "history.csv").read_text()


def _start(monkeypatch, config, data, out, uri, **interrupt):
    with monkeypatch.context() as patch:
        if interrupt:
            _with_hook(patch, dict(type="InterruptAfterIterationHook", **interrupt))
        return train_run(config, data, out, uri)


def _mlflow_runs(uri):
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])


def _assert_same(weights_path, straight, history_path):
    weights, history = straight
    resumed = torch.load(weights_path, weights_only=True)
    assert resumed.keys() == weights.keys() and all(torch.equal(weights[name], resumed[name]) for name in weights)
    assert history_path.read_text() == history


@pytest.mark.slow
def test_run_interrupted_twice_completes_on_the_third_start_in_one_finished_mlflow_run(
    tmp_path, repo_params, prepared_mnist5k, straight_six, monkeypatch
):
    uri, out, config = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run", _six_iterations(repo_params)
    with pytest.raises(Killed):
        _start(monkeypatch, config, prepared_mnist5k, out, uri, at=2)
    (first,) = _mlflow_runs(uri)
    assert first.info.status == "FAILED"
    with pytest.raises(Terminated):
        _start(monkeypatch, config, prepared_mnist5k, out, uri, at=4, sigterm=True)
    (second,) = _mlflow_runs(uri)
    assert second.info.run_id == first.info.run_id and second.info.status == "KILLED"
    assert [path.name for path in checkpoint_files(out / "work")] == ["iter_4.pth", "iter_2.pth"]

    _assert_same(_start(monkeypatch, config, prepared_mnist5k, out, uri), straight_six, out / "history.csv")
    (third,) = _mlflow_runs(uri)
    assert third.info.run_id == first.info.run_id and third.info.status == "FINISHED"
    assert not any(key.startswith(("load_from", "resume", "work_dir")) for key in third.data.params)

    # a finished run started again (a forced rerun) resumes its last checkpoint into the same run
    (out / "model.pth").unlink()
    _assert_same(_start(monkeypatch, config, prepared_mnist5k, out, uri), straight_six, out / "history.csv")
    assert [(run.info.run_id, run.info.status) for run in _mlflow_runs(uri)] == [(first.info.run_id, "FINISHED")]


@pytest.mark.slow
def test_a_copied_run_folder_trains_on_in_a_new_mlflow_run_and_the_original_in_its_own(
    tmp_path, repo_params, prepared_mnist5k, straight_six, monkeypatch
):
    uri, out, config = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run", _six_iterations(repo_params)
    with pytest.raises(Killed):
        _start(monkeypatch, config, prepared_mnist5k, out, uri, at=4)
    (original,) = _mlflow_runs(uri)
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(out, copy)
    _assert_same(_start(monkeypatch, config, prepared_mnist5k, copy, uri), straight_six, copy / "history.csv")
    (copied,) = [run for run in _mlflow_runs(uri) if run.info.run_id != original.info.run_id]
    assert copied.info.status == "FINISHED" and copied.data.tags["copy_of_mlflow_run"] == original.info.run_id
    assert MlflowClient(tracking_uri=uri).get_run(original.info.run_id).info.status == "FAILED"  # left alone

    _assert_same(_start(monkeypatch, config, prepared_mnist5k, out, uri), straight_six, out / "history.csv")
    assert sorted((run.info.run_id, run.info.status) for run in _mlflow_runs(uri)) == sorted(
        [(original.info.run_id, "FINISHED"), (copied.info.run_id, "FINISHED")]
    )


_KILLED_WHILE_PUBLISHING = """
import json, os, signal, sys
from circle_repro.engine import hooks
from circle_repro.engine.train import train_run

config, data, out, uri = json.loads(sys.argv[1])
publish = hooks.publish_checkpoint

def killed_at_iter_4(work_dir, name):
    if name == "iter_4.pth":  # written under its temporary name, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return publish(work_dir, name)

hooks.publish_checkpoint = killed_at_iter_4
train_run(config, data, out, uri)
"""


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_a_moved_folder_resumes_the_last_complete_one(
    tmp_path, repo_params, prepared_mnist5k, straight_six, monkeypatch
):
    uri, out, config = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "scratch" / "run", _six_iterations(repo_params)
    env = {**os.environ, "PYTHONPATH": str(Path(circle_repro.__file__).parents[1])}
    arguments = json.dumps([config, str(prepared_mnist5k), str(out), uri])
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_PUBLISHING, arguments], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert [path.name for path in checkpoint_files(out / "work")] == ["iter_2.pth"]
    assert (out / "work" / partial_name("iter_4.pth")).is_file()
    (abandoned,) = _mlflow_runs(uri)
    assert abandoned.info.status == "RUNNING"  # nobody could end it

    moved = tmp_path / "results" / "run"
    shutil.move(out, moved)
    _assert_same(_start(monkeypatch, config, prepared_mnist5k, moved, uri), straight_six, moved / "history.csv")
    assert [(run.info.run_id, run.info.status) for run in _mlflow_runs(uri)] == [(abandoned.info.run_id, "FINISHED")]
    assert [path.name for path in checkpoint_files(moved / "work")] == ["iter_6.pth", "iter_4.pth"]


@pytest.mark.slow
def test_truncated_newest_checkpoint_resumes_from_the_one_before(
    tmp_path, repo_params, prepared_mnist5k, straight_six, monkeypatch, caplog
):
    uri, out, config = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run", _six_iterations(repo_params)
    with pytest.raises(Killed):
        _start(monkeypatch, config, prepared_mnist5k, out, uri, at=4)
    newest = out / "work" / "iter_4.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    _assert_same(_start(monkeypatch, config, prepared_mnist5k, out, uri), straight_six, out / "history.csv")
    assert "iter_4.pth is unreadable" in caplog.text and "resuming from iter_2.pth" in caplog.text


# -- What the CLI says --------------------------------------------------------------------------


def _cli_params(tmp_path, repo_params):
    """A params file of the tiny settings, and its train command for a run folder ``run``."""
    params_file = write_params(tiny_params(repo_params, epochs=2, max_images=300), tmp_path / "params.yaml")
    return params_file, lambda data, run: [
        "train", "--run", RUN, "--data", str(data), "--out", str(run), "--params", str(params_file)
    ]  # fmt: skip


def _work_of(params_file, run, checkpoint_bytes: dict[str, bytes]) -> Path:
    """Give ``run`` a work/ that belongs to the settings of ``params_file`` and holds ``checkpoint_bytes``."""
    params = load_params(params_file)
    work = run / "work"
    work.mkdir(parents=True)
    (work / "resume.json").write_text(json.dumps({"config_hash": hash_of(train_config(params, find_run(params, RUN)))}))
    for name, content in checkpoint_bytes.items():
        (work / name).write_bytes(content)
    return work


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_cli_train_refuses_a_planted_pickle_and_a_folder_without_usable_checkpoints(
    tmp_path, repo_params, prepared_mnist5k, capsys
):
    marker = tmp_path / "payload_ran"
    planted = tmp_path / "planted.pth"
    torch.save({"meta": {}, "state_dict": {}, "x": _Payload(marker)}, planted)
    params_file, train_argv = _cli_params(tmp_path, repo_params)

    work = _work_of(params_file, tmp_path / "a", {"epoch_1.pth": planted.read_bytes()})
    assert main(train_argv(prepared_mnist5k, tmp_path / "a")) == 2
    error = capsys.readouterr().err
    assert f"{work / 'epoch_1.pth'}: refusing to load this checkpoint" in error and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("circle-repro train: error: ") and not marker.exists()

    work = _work_of(params_file, tmp_path / "b", {"epoch_1.pth": planted.read_bytes()[:64]})
    assert main(train_argv(prepared_mnist5k, tmp_path / "b")) == 2
    error = capsys.readouterr().err
    assert "no usable checkpoint to resume from: epoch_1.pth is unreadable" in error
    assert f"delete {work} to train the run from scratch" in error
    assert (work / "epoch_1.pth").is_file(), "nothing is deleted or restarted silently"


def test_cli_train_with_an_unreachable_tracking_server_exits_2_within_seconds(
    tmp_path, repo_params, prepared_mnist5k, capsys
):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    params = tiny_params(repo_params, epochs=1, max_images=300)
    params["tracking"] = {**params["tracking"], "uri": uri}
    params_file = write_params(params, tmp_path / "params.yaml")
    started = time.monotonic()
    argv = ["train", "--run", RUN, "--data", str(prepared_mnist5k), "--out", str(tmp_path / "run")]
    assert main([*argv, "--params", str(params_file)]) == 2
    assert time.monotonic() - started < 30
    error = capsys.readouterr().err
    assert f"tracking store {uri} does not answer" in error and "Traceback" not in error


def test_cli_train_stopped_by_sigterm_exits_143_with_one_line(tmp_path, monkeypatch, capsys):
    from support import REPO_ROOT

    def preempted(*args, **kwargs):
        raise Terminated("SIGTERM received")

    monkeypatch.setattr(train_module, "train_run", preempted)
    argv = ["train", "--run", RUN, "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--params", str(REPO_ROOT / "params.yaml")]) == 128 + signal.SIGTERM
    error = capsys.readouterr().err.strip()
    assert error == "circle-repro train: terminated (SIGTERM); started again, the run resumes from its last checkpoint"
