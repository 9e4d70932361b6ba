"""Schedules and optimiser settings from an experiment's ``train:`` section, iteration-based
training, the resumable data iteration, model options and the --launcher flag."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from mmengine.registry import PARAM_SCHEDULERS
from torch.utils.data import DataLoader, Dataset

from circle_repro.cli import build_parser
from circle_repro.config import ConfigError, find_run, train_config, validate_params
from circle_repro.data.samplers import PKSampler
from circle_repro.engine import model as model_module
from circle_repro.engine.checkpoint import latest_checkpoint, load_run_checkpoint, trusted_work_dir
from circle_repro.engine.loop import ResumableSampler, _EpochCycler
from circle_repro.engine.optim import param_scheduler_config, total_iterations
from circle_repro.engine.runner import HARMLESS_WARNINGS
from circle_repro.engine.runner_config import (
    DEFAULT_CHECKPOINT_INTERVAL_ITERS,
    _loop_configs,
    model_config,
    runner_config,
)
from circle_repro.engine.train import train_run
from support import tiny_params


def _lrs(train, total, base_lr=0.1):
    """The lr of each of ``total`` iterations, as mmengine's schedulers set it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = [
        PARAM_SCHEDULERS.build(c, default_args=dict(optimizer=optimizer)) for c in param_scheduler_config(train, total)
    ]
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return np.array(lrs)


def test_face_recipe_divides_the_lr_by_ten_at_50_70_90_percent():
    train = {"iterations": 182_000, "lr_schedule": {"type": "multistep", "milestones": [0.5, 0.7, 0.9], "gamma": 0.1}}
    (config,) = param_scheduler_config(train, total_iterations(train, iterations_per_epoch=123))
    assert config["type"] == "MultiStepLR" and config["milestones"] == [91_000, 127_400, 163_800]
    assert config["gamma"] == 0.1 and config["by_epoch"] is False


def test_multistep_lr_per_iteration():
    lrs = _lrs({"lr_schedule": {"type": "multistep", "milestones": [0.5, 0.7, 0.9], "gamma": 0.1}}, 20)
    expected = 0.1 * 0.1 ** np.searchsorted([10, 14, 18], np.arange(20), side="right")
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_linear_warmup_then_multistep():
    lrs = _lrs(
        {"warmup": {"iterations": 4, "start_factor": 0.25}, "lr_schedule": {"type": "multistep", "milestones": [0.5]}},
        20,
    )
    np.testing.assert_allclose(lrs[:4], 0.1 * np.linspace(0.25, 1.0, 4), rtol=1e-12)
    np.testing.assert_allclose(lrs[4:10], 0.1, rtol=1e-12)
    np.testing.assert_allclose(lrs[10:], 0.01, rtol=1e-12)


def test_warmup_then_cosine_to_eta_min():
    lrs = _lrs({"warmup": {"iterations": 5}, "lr_schedule": {"type": "cosine", "eta_min": 0.001}}, 25)
    assert lrs[0] == pytest.approx(0.1 * 0.001)
    assert np.all(np.diff(lrs[:5]) > 0) and lrs[5] == pytest.approx(0.1)
    expected = 0.001 + (0.1 - 0.001) * (1 + np.cos(np.pi * np.arange(20) / 20)) / 2
    np.testing.assert_allclose(lrs[5:], expected, rtol=1e-9)


def test_no_schedule_keeps_the_lr_and_epochs_count_iterations():
    assert param_scheduler_config({}, 10) == []
    np.testing.assert_allclose(_lrs({}, 5), 0.1)
    assert total_iterations({"epochs": 3}, iterations_per_epoch=7) == 21
    assert total_iterations({"iterations": 50}, iterations_per_epoch=7) == 50


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"warmup": {"iterations": 10}}, "warmup"),
        ({"lr_schedule": {"type": "multistep", "milestones": [0.7, 0.5]}}, "increasing"),
        ({"lr_schedule": {"type": "step"}}, "multistep or cosine"),
    ],
)
def test_bad_schedules_fail_clearly(train, message):
    with pytest.raises(ValueError, match=message):
        param_scheduler_config(train, 10)


def test_loop_configs():
    iters = _loop_configs({"iterations": 10_000, "optimizer": {}}, per_epoch=7)
    assert iters["train_cfg"] == {"type": "ResumableIterBasedTrainLoop", "max_iters": 10_000}
    assert (
        iters["checkpoint"]["by_epoch"] is False
        and iters["checkpoint"]["interval"] == DEFAULT_CHECKPOINT_INTERVAL_ITERS
    )
    assert _loop_configs({"iterations": 50, "optimizer": {}}, 7)["checkpoint"]["interval"] == 50
    assert _loop_configs({"iterations": 50, "checkpoint_interval": 5}, 7)["checkpoint"]["interval"] == 5
    epochs = _loop_configs({"epochs": 3, "lr_schedule": {"type": "multistep", "milestones": [0.5]}}, per_epoch=7)
    assert epochs["train_cfg"] == {"by_epoch": True, "max_epochs": 3}
    assert epochs["checkpoint"]["interval"] == 1 and epochs["checkpoint"].get("by_epoch", True)
    assert epochs["param_scheduler"][0]["milestones"] == [10]  # round(0.5 x 21 iterations)
    with pytest.raises(ValueError, match="exactly one"):
        _loop_configs({"epochs": 1, "iterations": 5}, 7)


def _with_train(repo_params, **train):
    params = copy.deepcopy(repo_params)
    params["experiments"]["demo_retrieval"]["train"] = train
    return params


@pytest.mark.parametrize(
    ("train", "error"),
    [
        ({"optimizer": {"type": "SGD", "lr": 0.1}}, "exactly one of epochs and iterations"),
        (
            {"epochs": 1, "iterations": 5, "optimizer": {"type": "SGD", "lr": 0.1}},
            "exactly one of epochs and iterations",
        ),
        ({"epochs": 1, "optimizer": {"type": "Adam", "lr": 0.1, "momentum": 0.9}}, "SGD option"),
        ({"epochs": 1, "optimizer": {"type": "SGD", "lr": 0.1}, "amp": "fp8"}, "amp"),
        (
            {
                "epochs": 1,
                "optimizer": {"type": "SGD", "lr": 0.1},
                "lr_schedule": {"type": "multistep", "milestones": [1.5]},
            },
            "milestones",
        ),
    ],
)
def test_schema_refuses_bad_train_sections(repo_params, train, error):
    with pytest.raises(ConfigError, match=error):
        validate_params(_with_train(repo_params, **train))


def test_schema_takes_the_face_recipe(repo_params):
    face = {
        "iterations": 182_000,
        "checkpoint_interval": 5000,
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
        "warmup": {"iterations": 1000},
        "lr_schedule": {"type": "multistep", "milestones": [0.5, 0.7, 0.9], "gamma": 0.1},
        "grad_clip": {"max_norm": 5.0},
        "amp": "bf16",
    }
    validate_params(_with_train(repo_params, **face))
    validate_params(
        _with_train(repo_params, iterations=10, optimizer={"type": "AdamW", "lr": 1e-3}, lr_schedule={"type": "cosine"})
    )


class _Keys(Dataset):
    """Items are the sampler's keys themselves, ``[index, augmentation seed]``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        return torch.tensor(key)


def _pk_loader(world_size=1, rank=0):
    labels = np.repeat(np.arange(6), 9)
    sampler = ResumableSampler(PKSampler(labels, p=3, k=3, seed=1, rank=rank, world_size=world_size), seed=1, rank=rank)
    return DataLoader(_Keys(len(labels)), batch_size=9, sampler=sampler)


@pytest.mark.parametrize("start", [0, 1, 5, 6, 7, 13])
def test_resumed_iteration_continues_with_the_same_batches_and_augmentation_seeds(start):
    straight = _EpochCycler(_pk_loader(), start=0)
    expected = [next(straight).tolist() for _ in range(start + 8)][start:]
    loader = _pk_loader()
    per_epoch = len(loader)
    assert per_epoch == 6
    resumed = _EpochCycler(loader, start=start)
    fetched = [next(resumed).tolist() for _ in range(8)]
    assert fetched == expected
    assert resumed.epoch == (start + 7) // per_epoch


def test_skipped_batches_are_not_loaded():
    loaded = []

    class Recording(_Keys):
        def __getitem__(self, key):
            loaded.append(key)
            return super().__getitem__(key)

    labels = np.repeat(np.arange(6), 9)
    sampler = ResumableSampler(PKSampler(labels, p=3, k=3, seed=1))
    loader = DataLoader(Recording(len(labels)), batch_size=9, sampler=sampler)
    next(_EpochCycler(loader, start=4))
    assert len(loaded) == 9, "only the batch returned was loaded"


def test_model_options_and_pretrained_reach_the_backbone(repo_params, monkeypatch):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    assert "backbone_options" not in model_config(config, 5) and "pretrained" not in model_config(config, 5)
    config["model"] = {**config["model"], "pretrained": "weights/resnet50-0676ba61.pth", "width": 0.5, "last_stride": 1}
    built = model_config(config, 5)
    assert built["pretrained"] == "weights/resnet50-0676ba61.pth"
    assert built["backbone_options"] == {"width": 0.5, "last_stride": 1}
    assert "pretrained" not in model_config(config, 5, load_pretrained=False)
    calls = []
    monkeypatch.setattr(
        model_module, "build_backbone", lambda *args, **kwargs: calls.append((args, kwargs)) or torch.nn.Linear(1, 64)
    )
    model_module.EmbeddingModel(**{k: v for k, v in built.items() if k != "type"})
    assert calls == [
        (
            ("small_cnn",),
            {
                "in_channels": 1,
                "embedding_dim": 64,
                "width": 0.5,
                "last_stride": 1,
                "weights": "weights/resnet50-0676ba61.pth",
            },
        )
    ]


def test_small_cnn_refuses_options_it_does_not_take(repo_params):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    config["model"] = {**config["model"], "width": 0.5}
    with pytest.raises(ValueError, match="width"):
        model_module.EmbeddingModel(**{k: v for k, v in model_config(config, 5).items() if k != "type"})


def test_sharded_loss_gets_the_run_seed(repo_params):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_verification/CircleLoss/seed0"))
    config["loss"] = {**config["loss"], "sharded": True, "sample_rate": 0.5}
    assert model_config(config, 5)["loss"]["seed"] == config["seed"]
    assert "seed" not in model_config({**config, "loss": {"type": "circle_classifier"}}, 5)["loss"]


def test_launcher_flag():
    args = ["train", "--run", "r", "--data", "d", "--out", "o"]
    assert build_parser().parse_args(args).launcher == "none"
    assert build_parser().parse_args([*args, "--launcher", "pytorch"]).launcher == "pytorch"
    assert build_parser().parse_args([*args, "--launcher", "slurm"]).launcher == "slurm"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--launcher", "mpi"])


def test_runner_config_for_ddp(repo_params, prepared_mnist5k, tmp_path):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    single = runner_config(config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, per_epoch=3)
    assert single.launcher == "none" and "model_wrapper_cfg" not in single
    ddp = runner_config(config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, launcher="pytorch", per_epoch=3)
    assert ddp.launcher == "pytorch" and ddp.randomness.seed == config["seed"] and not ddp.randomness.diff_rank_seed
    assert ddp.model_wrapper_cfg.type == "MMDistributedDataParallel"
    assert ddp.train_dataloader.batch_size == config["sampler"]["p"] * config["sampler"]["k"]  # per rank
    with pytest.raises(ValueError, match="launcher"):
        runner_config(config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, launcher="mpi", per_epoch=3)


def test_iteration_based_run_with_schedule_checkpoints_every_n_iterations(
    repo_params, prepared_mnist5k, tmp_path, capfd
):
    params = tiny_params(repo_params, max_images=300)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    config["train"] = {
        "iterations": 5,
        "checkpoint_interval": 2,
        "max_images": 300,
        "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
        "warmup": {"iterations": 2},
        "lr_schedule": {"type": "multistep", "milestones": [0.6]},
        "grad_clip": {"max_norm": 1.0},
    }
    train_run(config, prepared_mnist5k, tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    log = capfd.readouterr().out
    assert "mmengine - INFO - Checkpoints will be saved to" in log
    assert not [message for message in HARMLESS_WARNINGS if message in log], "known harmless warnings stay out"
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["iterations"] == 5 and record["iterations_per_epoch"] == 3 and record["world_size"] == 1
    assert sorted(p.name for p in (tmp_path / "work").glob("*.pth")) == ["iter_4.pth", "iter_5.pth"]  # saved at 2, 4, 5
    with trusted_work_dir(tmp_path / "work"):
        checkpoint = load_run_checkpoint(latest_checkpoint(tmp_path / "work"))
    assert checkpoint["meta"]["iter"] == 5
    [_warmup, multistep] = checkpoint["param_schedulers"]
    assert multistep["milestones"] == {3: 1}
    lrs = checkpoint["message_hub"]["log_scalars"]["train/lr"].data[0]
    np.testing.assert_allclose(lrs, [0.05 * 0.001, 0.05, 0.05, 0.005, 0.005], rtol=1e-9)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 6
