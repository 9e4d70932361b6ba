"""Exact resume, the scoped checkpoint loader and the non-finite guard."""

import pytest
import torch
from mlflow.tracking import MlflowClient
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from circle_repro.config import find_run, train_config
from circle_repro.engine import train as train_module
from circle_repro.engine.checkpoint import latest_checkpoint, load_run_checkpoint, trusted_work_dir
from circle_repro.engine.tracking import DEFAULT_EXPERIMENT
from circle_repro.engine.train import train_run
from circle_repro.losses import CircleLoss
from support import tiny_params


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
    return train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))


def _with_hook(monkeypatch, hook_type):
    original = train_module.runner_config

    def patched(*args, **kwargs):
        config = original(*args, **kwargs)
        config.custom_hooks = [*config.custom_hooks, dict(type=hook_type)]
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
    resumed = torch.load(train_run(_iteration_config(repo_params), prepared_mnist5k, tmp_path / "b", uri), weights_only=True)
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
