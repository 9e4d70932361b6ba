"""Loader workers change nothing a run draws: each image's augmentation is seeded by its place in the run
(ResumableSampler), so a run with a worker, interrupted and resumed mid-epoch, ends with the weights of an
uninterrupted run without workers."""

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.utils.data import DataLoader

from circle_repro.config import find_run, train_config
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.samplers import PKSampler, augmentation_seed_base
from circle_repro.engine import train as train_module
from circle_repro.engine.checkpoint import latest_checkpoint
from circle_repro.engine.loader import loader_settings
from circle_repro.engine.loop import ResumableSampler
from circle_repro.engine.train import train_run
from support import tiny_params

RUN = "demo_retrieval/CircleLoss/seed0"


def test_an_images_augmentation_depends_on_its_seed_only_and_leaves_torchs_rng_alone(prepared_mnist5k):
    dataset = ManifestDataset(prepared_mnist5k, "train", "mnist", train=True, max_images=40)
    torch.manual_seed(5)
    reference = dataset[3]["inputs"]  # drawn from torch's RNG as it stands: the reference for seed 5
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = dataset[(3, 5)]["inputs"]
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(10)  # whatever the process drew before
    assert torch.equal(dataset[(3, 5)]["inputs"], first)
    assert torch.equal(first, reference)
    assert not torch.equal(dataset[(3, 6)]["inputs"], first)  # RandomAffine: another seed, another draw


def test_seeds_follow_run_seed_epoch_rank_and_position():
    labels = np.repeat(np.arange(4), 6)
    sampler = ResumableSampler(PKSampler(labels, p=2, k=3, seed=7), seed=7, rank=0)
    sampler.set_epoch(2)
    keys = list(sampler)
    first = augmentation_seed_base(7, 2, 0)
    assert [seed for _, seed in keys] == [first + position for position in range(len(keys))]
    assert len({augmentation_seed_base(7, 2, 0), augmentation_seed_base(7, 3, 0), augmentation_seed_base(7, 2, 1)}) == 3
    sampler.skip_next(5)
    assert list(sampler) == keys[5:]


def test_worker_items_equal_main_process_items(prepared_mnist5k):
    dataset = ManifestDataset(prepared_mnist5k, "train", "mnist", train=True, max_images=40)
    labels = dataset.labels
    batches = {}
    for workers in (0, 2):
        sampler = ResumableSampler(PKSampler(labels, p=2, k=4, seed=1), seed=1)
        loader = DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
        batches[workers] = [batch["inputs"] for batch in loader]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2], strict=True))


class Killed(Exception):
    pass


@HOOKS.register_module(force=True)
class KillAfterIteration3Hook(Hook):
    priority = "LOWEST"  # after the checkpoint hook

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == 3:
            raise Killed


def _iteration_config(repo_params):
    params = tiny_params(repo_params, epochs=1, max_images=200)
    config = train_config(params, find_run(params, RUN))
    config["train"] = {**config["train"], "iterations": 6, "checkpoint_interval": 3}
    del config["train"]["epochs"]
    config["train"]["lr_schedule"] = {"type": "multistep", "milestones": [0.6]}
    return config


@pytest.mark.slow
def test_run_with_a_worker_resumed_mid_epoch_ends_with_the_weights_of_a_run_without(
    tmp_path, repo_params, prepared_mnist5k, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _iteration_config(repo_params)
    straight = torch.load(train_run(config, prepared_mnist5k, tmp_path / "a", uri), weights_only=True)
    worker = loader_settings(2, accelerator=False)  # one persistent worker
    assert worker.num_workers == 1 and worker.persistent_workers
    original = train_module.runner_config

    def with_kill(*args, **kwargs):
        runner = original(*args, **kwargs)
        runner.custom_hooks = [*runner.custom_hooks, dict(type="KillAfterIteration3Hook")]
        return runner

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "runner_config", with_kill)
        with pytest.raises(Killed):
            train_run(config, prepared_mnist5k, tmp_path / "b", uri, loader=worker)
    assert latest_checkpoint(tmp_path / "b" / "work").endswith("iter_3.pth")
    resumed = torch.load(train_run(config, prepared_mnist5k, tmp_path / "b", uri, loader=worker), weights_only=True)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()
