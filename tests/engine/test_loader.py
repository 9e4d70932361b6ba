"""DataLoader settings come from the resources a process was given, never from a constant in engine/."""

import ast
import copy

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from circle_repro.cli import main
from circle_repro.config import TRAIN_RESOURCE_DEFAULTS, find_run, train_config
from circle_repro.engine import loader as loader_module
from circle_repro.engine.loader import (
    LoaderSettings,
    loader_settings,
    train_loader_settings,
)
from circle_repro.engine.runner_config import runner_config
from support import REPO_ROOT, tiny_params

ENGINE = REPO_ROOT / "src" / "circle_repro" / "engine"
LOADER_KEYWORDS = {"num_workers", "pin_memory", "persistent_workers", "prefetch_factor"}


def test_one_cpu_decodes_in_the_process_itself():
    settings = loader_settings(1, accelerator=False)
    assert settings == LoaderSettings(num_workers=0, pin_memory=False, persistent_workers=False, prefetch_factor=None)
    assert "prefetch_factor" not in settings.dataloader_kwargs()  # DataLoader refuses it without workers
    DataLoader(range(4), **settings.dataloader_kwargs())


def test_further_cpus_become_persistent_prefetching_workers_pinned_for_a_gpu():
    settings = loader_settings(8, accelerator=True)
    assert settings.dataloader_kwargs() == {
        "num_workers": 7,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": loader_module.PREFETCH_BATCHES_PER_WORKER,
    }
    assert not loader_settings(3, accelerator=False).pin_memory
    with pytest.raises(ValueError, match="at least one CPU"):
        loader_settings(0, accelerator=False)


def test_train_settings_follow_cpus_per_gpu_within_the_cpus_of_the_process(monkeypatch):
    monkeypatch.setattr(loader_module, "process_cpus", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    settings = train_loader_settings({"gpus": 4, "cpus_per_gpu": 6})
    assert (settings.num_workers, settings.pin_memory, settings.persistent_workers) == (5, True, True)
    monkeypatch.setattr(loader_module, "process_cpus", lambda: 3)  # a laptop running a cluster profile's params
    assert train_loader_settings({"gpus": 4, "cpus_per_gpu": 6}).num_workers == 2
    assert not train_loader_settings({"gpus": 0, "cpus_per_gpu": 6}).pin_memory  # a CPU job pins nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not train_loader_settings({"gpus": 1, "cpus_per_gpu": 6}).pin_memory  # no GPU present


def test_process_cpus_are_shared_among_local_ranks(monkeypatch):
    monkeypatch.setattr(loader_module.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_module.process_cpus() == 4


def test_runner_config_takes_the_loader_settings(repo_params, prepared_mnist5k, tmp_path):
    params = tiny_params(repo_params)
    config = train_config(params, find_run(params, "demo_retrieval/CircleLoss/seed0"))
    settings = loader_settings(5, accelerator=True)
    dataloader = runner_config(
        config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, per_epoch=3, loader=settings
    ).train_dataloader
    assert {key: dataloader[key] for key in LOADER_KEYWORDS} == settings.dataloader_kwargs()
    default = runner_config(config, prepared_mnist5k, tmp_path, "sqlite:///x.db", 5, {}, per_epoch=3).train_dataloader
    expected = train_loader_settings(TRAIN_RESOURCE_DEFAULTS).dataloader_kwargs()
    assert {key: default[key] for key in LOADER_KEYWORDS if key in default} == expected


def test_train_command_derives_the_settings_from_the_experiments_resources(repo_params, monkeypatch, tmp_path):
    import circle_repro.engine.train as train_module

    params = copy.deepcopy(repo_params)
    params["experiments"]["demo_retrieval"]["resources"] = {"gpus": 0, "cpus_per_gpu": 3}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    seen = {}
    monkeypatch.setattr(loader_module, "process_cpus", lambda: 64)
    monkeypatch.setattr(train_module, "train_run", lambda *args, **kwargs: seen.update(kwargs) or tmp_path)
    run = "demo_retrieval/CircleLoss/seed0"
    assert (
        main(["train", "--params", str(params_file), "--run", run, "--data", str(tmp_path), "--out", str(tmp_path)])
        == 0
    )
    assert seen["loader"] == loader_settings(3, accelerator=False)


def _engine_sources():
    return [(path, ast.parse(path.read_text())) for path in sorted(ENGINE.glob("*.py")) if path.name != "loader.py"]


def test_no_dataloader_in_engine_hard_codes_its_workers():
    offenders = []
    for path, tree in _engine_sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            named = {keyword.arg for keyword in node.keywords}
            if named & LOADER_KEYWORDS:  # e.g. DataLoader(..., num_workers=0) or dict(num_workers=4)
                offenders.append(f"{path.name}:{node.lineno} sets {sorted(named & LOADER_KEYWORDS)}")
            func = node.func
            if getattr(func, "id", getattr(func, "attr", None)) == "DataLoader" and None not in named:
                offenders.append(f"{path.name}:{node.lineno} DataLoader without **LoaderSettings.dataloader_kwargs()")
    assert offenders == []
    assert any("DataLoader(" in path.read_text() for path, _ in _engine_sources())  # the check has something to see
