"""DDP on 2 CPU processes (gloo) equals one process holding the global batch.

* Model level: ``EmbeddingModel`` (small CNN, float64) wrapped in torch's DistributedDataParallel,
  3 SGD steps (momentum, weight decay) on fixed batches; each rank gets half of every global
  batch. The losses and the weights after the steps equal one process's on the whole batches,
  for (a) the pair-wise Circle loss with ``all_gather: true`` and (b) the sharded class-level
  Circle head (7 classes: uneven shards of 4 and 3 proxies, ignored by DDP), with and without
  negative-class sampling. BatchNorm layers are kept in eval mode: batch statistics are
  per-rank by design (mmengine's DDP does not sync them), everything else must agree.
* Runner level (slow): ``train_run(..., launcher="pytorch")`` in 2 processes with torchrun's
  environment variables, 2 iterations of the sharded head: both ranks finish, the sampler of
  each rank knows its rank, the seed agrees, and only rank 0 writes the outputs and MLflow;
  checkpoints and model.pth hold the full proxy matrix, and a restart resumes every rank's shard.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from circle_repro.engine.checkpoint import full_model_state, gather_sharded_state, shard_checkpoint
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.tracking import DEFAULT_EXPERIMENT
from support import spawn_ranks

WORLD_SIZE = 2
LOCAL_BATCH = 8
STEPS = 3
NUM_CLASSES = 7
CASES = {
    "pair_all_gather": {"type": "circle", "m": 0.25, "gamma": 32, "all_gather": True},
    "sharded_head": {"type": "circle_classifier", "m": 0.25, "gamma": 32, "sharded": True},
    "sharded_head_sampled": {
        "type": "circle_classifier",
        "m": 0.25,
        "gamma": 32,
        "sharded": True,
        "sample_rate": 0.5,
        "seed": 3,
    },
    "sharded_softmax_raw_features": {"type": "softmax", "sharded": True},
}


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """STEPS global batches of W·B images; every class appears on both ranks."""
    gen = torch.Generator().manual_seed(7)
    batches = []
    for step in range(STEPS):
        images = torch.randn(WORLD_SIZE * LOCAL_BATCH, 1, 28, 28, generator=gen, dtype=torch.float64)
        labels = (torch.arange(WORLD_SIZE * LOCAL_BATCH) + step) % NUM_CLASSES
        batches.append((images, labels[torch.randperm(len(labels), generator=gen)]))
    return batches


def _model(loss: dict) -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel("small_cnn", in_channels=1, embedding_dim=8, num_classes=NUM_CLASSES, loss=loss).double()


def _train(model: nn.Module, batches, local: slice | None = None) -> tuple[list[float], torch.optim.Optimizer]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    losses = []
    for images, labels in batches:
        model.train()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        if local is not None:
            images, labels = images[local], labels[local]
        loss = model(images, labels, mode="loss")["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, optimizer


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        results = {}
        for name, loss in CASES.items():
            model = _model(loss)
            ddp = DistributedDataParallel(model)
            losses, optimizer = _train(ddp, _batches(), slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH))
            result = {"losses": losses, "state": full_model_state(ddp), "ignored": sorted(ddp.parameters_to_ignore)}
            if loss.get("sharded"):
                result["local_shape"] = tuple(model.loss.head.weight.shape)
                gathered = gather_sharded_state(ddp, optimizer)
                result["gathered_momentum"] = next(iter(gathered["optimizer"].values()))["momentum_buffer"]
                # A checkpoint holding the full state is cut back to this rank's rows on loading.
                index = next(iter(gathered["optimizer"]))
                checkpoint = {
                    "state_dict": dict(gathered["state_dict"]),
                    "optimizer": {
                        "state": {index: {"momentum_buffer": gathered["optimizer"][index]["momentum_buffer"]}}
                    },
                }
                shard_checkpoint(checkpoint, model, optimizer)
                result["resharded_equal"] = torch.equal(
                    checkpoint["state_dict"]["loss.head.weight"], model.loss.head.weight.detach()
                ) and torch.equal(
                    checkpoint["optimizer"]["state"][index]["momentum_buffer"],
                    optimizer.state[model.loss.head.weight]["momentum_buffer"],
                )
            results[name] = result
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return spawn_ranks(_worker, tmp, WORLD_SIZE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ddp_steps_equal_one_process_on_the_global_batch(rank_results, name):
    model = _model(CASES[name])
    losses, optimizer = _train(model, _batches())
    expected = model.state_dict()
    for rank, results in enumerate(rank_results):
        got = results[name]
        assert got["losses"] == pytest.approx(losses, rel=1e-9)
        assert set(got["state"]) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-9, atol=1e-12, msg=f"{key} on rank {rank}")
        # The steps really moved the weights (the equality is not that of untouched copies).
        assert not torch.equal(
            expected["backbone.embedding.weight"], _model(CASES[name]).state_dict()["backbone.embedding.weight"]
        )
        if CASES[name].get("sharded"):
            assert got["ignored"] == sorted(f"loss.{name}" for name in model.loss.rank_local_state_names())
            assert "loss.head.weight" in got["ignored"]
            assert got["local_shape"] == ((4, 8) if rank == 0 else (3, 8))
            torch.testing.assert_close(
                got["gathered_momentum"],
                optimizer.state[model.loss.head.weight]["momentum_buffer"],
                rtol=1e-9,
                atol=1e-12,
            )
            assert got["resharded_equal"]
        else:
            assert got["ignored"] == []


def test_without_all_gather_the_ranks_would_disagree_with_one_process(rank_results):
    """The control: the same DDP run with per-rank pair losses is not the single-process run."""
    local = _model({"type": "circle", "m": 0.25, "gamma": 32})
    losses, _ = _train(local, [(images[:LOCAL_BATCH], labels[:LOCAL_BATCH]) for images, labels in _batches()])
    assert losses[0] != pytest.approx(rank_results[0]["pair_all_gather"]["losses"][0], rel=1e-3)


# -- The Runner with launcher="pytorch" ---------------------------------------------------------


@HOOKS.register_module(force=True)
class RecordRankHook(Hook):
    """Writes what each rank's Runner sees to the test's record folder (not the run folder)."""

    def __init__(self, record_dir: str) -> None:
        self.record_dir = record_dir

    def before_train(self, runner) -> None:
        sampler = runner.train_dataloader.sampler.sampler  # ResumableSampler -> PKSampler
        self.seen = {
            "rank": runner.rank,
            "world_size": runner.world_size,
            "seed": runner.seed,
            "sampler": [sampler.rank, sampler.world_size],
            "first_batch": sampler.batches()[0].tolist(),
            "wrapped": type(runner.model).__name__,
            "ignored": sorted(getattr(runner.model, "parameters_to_ignore", [])),
            "local_proxies": list(runner.model.module.loss.head.weight.shape),
        }

    def after_train(self, runner) -> None:
        from circle_repro.engine.attempt import MLFLOW_BACKEND

        backend = runner.visualizer.get_backend(MLFLOW_BACKEND)
        self.seen["mlflow_opened"] = bool(getattr(backend, "_env_initialized", False))
        self.seen["iterations"] = runner.iter
        Path(self.record_dir, f"hook{runner.rank}.json").write_text(json.dumps(self.seen))


def _runner_worker(rank: int, port: int, data_root: str, out_dir: str, record_dir: str, params_file: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from circle_repro import records as records_module
    from circle_repro.config import find_run, train_config
    from circle_repro.engine import attempt as attempt_module
    from circle_repro.engine import train as train_module
    from support import tiny_params

    written: list[str] = []

    def recording(function):
        def wrapper(path, *args, **kwargs):
            written.append(Path(path).name)
            return function(path, *args, **kwargs)

        return wrapper

    for module, name in ((train_module, "atomic_path"), (train_module, "atomic_open"), (records_module, "write_json"),
                         (attempt_module, "write_json")):  # fmt: skip
        setattr(module, name, recording(getattr(module, name)))
    original = train_module.runner_config

    def with_record_hook(*args, **kwargs):
        config = original(*args, **kwargs)
        config.custom_hooks = [*config.custom_hooks, dict(type="RecordRankHook", record_dir=record_dir)]
        return config

    train_module.runner_config = with_record_hook
    params = tiny_params(yaml.safe_load(Path(params_file).read_text()), max_images=400)
    config = train_config(params, find_run(params, "demo_verification/CircleLoss/seed0"))
    config["loss"] = {**config["loss"], "sharded": True}
    config["train"] = {
        "iterations": 2,
        "checkpoint_interval": 1,
        "max_images": 400,
        "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
    }
    uri = f"sqlite:///{Path(out_dir) / 'mlflow.db'}"
    weights = train_module.train_run(config, data_root, out_dir, uri, launcher="pytorch")
    record = {"written": list(written), "weights": str(weights)}
    trained = torch.load(weights, weights_only=True)
    # Started again with the same settings: every rank resumes from rank 0's (full) checkpoint, cuts
    # its own proxy rows out of it, has nothing left to train, and exports the same model.
    written.clear()
    train_module.train_run(config, data_root, out_dir, uri, launcher="pytorch")
    resumed = torch.load(weights, weights_only=True)
    record["resumed_written"] = list(written)
    record["resumed_equal"] = all(torch.equal(trained[key], resumed[key]) for key in trained)
    Path(record_dir, f"rank{rank}.json").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_runner_with_pytorch_launcher_on_two_processes(tmp_path, prepared_mnist5k):
    from mlflow.tracking import MlflowClient

    from support import REPO_ROOT

    out_dir, record_dir = tmp_path / "run", tmp_path / "records"
    record_dir.mkdir()
    mp.spawn(
        _runner_worker,
        args=(_free_port(), str(prepared_mnist5k), str(out_dir), str(record_dir), str(REPO_ROOT / "params.yaml")),
        nprocs=WORLD_SIZE,
        join=True,
    )
    ranks = [json.loads((record_dir / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    hooks = [json.loads((record_dir / f"hook{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [h["rank"] for h in hooks] == [0, 1] and {h["world_size"] for h in hooks} == {2}
    assert [h["sampler"] for h in hooks] == [[0, 2], [1, 2]], "each rank's PKSampler knows its rank"
    assert hooks[0]["seed"] == hooks[1]["seed"], "all ranks agree on the seed"
    assert not set(hooks[0]["first_batch"]) & set(hooks[1]["first_batch"]), "ranks get different images"
    assert {h["wrapped"] for h in hooks} == {"MMDistributedDataParallel"}
    assert [h["ignored"] for h in hooks] == [["loss.head.weight"]] * 2
    assert [h["local_proxies"] for h in hooks] == [[3, 64], [2, 64]]  # 5 training digits over 2 ranks
    assert [h["iterations"] for h in hooks] == [2, 2]
    assert [h["mlflow_opened"] for h in hooks] == [True, False]
    # Only rank 0 wrote the outputs; both ranks returned the weights' path.
    assert sorted(ranks[0]["written"]) == sorted(
        ["resume.json", "model_init.pth", "model.pth", "history.csv", "train.json"]
    )
    assert ranks[1]["written"] == []
    assert {r["weights"] for r in ranks} == {str(out_dir / "model.pth")}
    record = json.loads((out_dir / "train.json").read_text())
    assert record["world_size"] == 2 and record["launcher"] == "pytorch" and record["global_batch_size"] == 160
    assert record["iterations"] == 2
    weights = torch.load(out_dir / "model.pth", weights_only=True)
    assert weights["loss.head.weight"].shape == (5, 64), "model.pth holds the full proxy matrix"
    checkpoint = torch.load(out_dir / "work" / "iter_2.pth", weights_only=False)
    assert checkpoint["state_dict"]["loss.head.weight"].shape == (5, 64), "so does the checkpoint ..."
    momentum = [state["momentum_buffer"].shape for state in checkpoint["optimizer"]["state"].values()]
    assert (5, 64) in momentum, "... with the proxies' full optimizer state"
    assert [r["resumed_equal"] for r in ranks] == [True, True]
    assert ranks[1]["resumed_written"] == [] and "model.pth" in ranks[0]["resumed_written"]
    client = MlflowClient(tracking_uri=f"sqlite:///{out_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 1
