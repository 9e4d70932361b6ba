"""Train one run with mmengine's Runner and export its weights."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mmengine.config import Config
from mmengine.dist import get_dist_info
from mmengine.runner import Runner

from circle_repro.config import config_hash
from circle_repro.data.datasets import get_dataset
from circle_repro.data.manifest import read_content_hash, read_manifest
from circle_repro.engine import hooks as _hooks  # noqa: F401  (registers the circle-repro hooks)
from circle_repro.engine import registrations as _registrations  # noqa: F401
from circle_repro.engine.checkpoint import latest_checkpoint, trusted_work_dir
from circle_repro.engine.tracking import artifact_location, ensure_experiment, log_to_run
from circle_repro.io import atomic_open, atomic_path, write_json
from circle_repro.layout import HISTORY_FILENAME, INITIAL_WEIGHTS_FILENAME, TRAIN_RECORD_FILENAME, WEIGHTS_FILENAME
from circle_repro.provenance import git_commit, library_versions

HISTORY_COLUMNS = ("loss", "s_p", "s_n")
RESUME_STATE_FILENAME = "resume.json"  # in the work folder: the config hash and MLflow run a resume continues


def model_config(run_config: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The mmengine model config of a run (what ``EmbeddingModel`` is built from)."""
    entry = get_dataset(run_config["dataset"])
    return {
        "type": "EmbeddingModel",
        "backbone": run_config["model"]["backbone"],
        "in_channels": entry.in_channels,
        "embedding_dim": run_config["model"]["embedding_dim"],
        "num_classes": num_classes,
        "loss": dict(run_config["loss"]),
    }


def runner_config(
    run_config: dict[str, Any],
    data_root: Path,
    work_dir: Path,
    tracking_uri: str,
    num_classes: int,
    provenance: dict[str, str],
) -> Config:
    """The full mmengine config of one training run; ``provenance`` becomes MLflow tags."""
    entry = get_dataset(run_config["dataset"])
    sampler, train = run_config["sampler"], run_config["train"]
    seed = run_config["seed"]
    tags = {key: str(run_config[key]) for key in ("run_id", "experiment", "loss_name", "seed", "table", "dataset")}
    tags["config_hash"] = config_hash(run_config)
    tags.update(provenance)
    return Config(
        dict(
            work_dir=str(work_dir),
            experiment_name=run_config["run_id"].replace("/", "_"),
            circle_repro=run_config,
            model=model_config(run_config, num_classes),
            train_dataloader=dict(
                dataset=dict(
                    type="ManifestDataset",
                    data_root=str(data_root),
                    split="train",
                    transform=entry.transform,
                    train=True,
                    max_images=train.get("max_images"),
                    seed=seed,
                ),
                sampler=dict(type="PKSampler", p=sampler["p"], k=sampler["k"]),
                batch_size=sampler["p"] * sampler["k"],
                num_workers=0,
                collate_fn=dict(type="default_collate"),
            ),
            train_cfg=dict(by_epoch=True, max_epochs=train["epochs"]),
            optim_wrapper=dict(optimizer=dict(train["optimizer"])),
            default_hooks=dict(
                logger=dict(type="LoggerHook", interval=10),
                checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1),
            ),
            custom_hooks=[dict(type="RngStateHook"), dict(type="NonFiniteGuardHook"), dict(type="ThroughputHook")],
            visualizer=dict(
                type="Visualizer",
                vis_backends=[
                    dict(type="LocalVisBackend"),
                    dict(
                        type="MLflowVisBackend",
                        save_dir=str(work_dir / "mlflow"),
                        exp_name=run_config["tracking"]["experiment"],
                        run_name=run_config["run_id"],
                        tags=tags,
                        tracking_uri=tracking_uri,
                        artifact_location=artifact_location(tracking_uri),
                    ),
                ],
            ),
            randomness=dict(seed=seed, deterministic=False),
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl" if torch.cuda.is_available() else "gloo")),
            launcher="none",
            log_level="INFO",
        )
    )


def _save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save a state dict of plain CPU tensors (loadable with ``weights_only=True``), atomically."""
    with atomic_path(path) as tmp:
        torch.save({name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}, tmp)
    return path


def run_provenance(data_root: Path) -> dict[str, str]:
    """Code commit, data content hash, library versions, device and world size of a run."""
    _, world_size = get_dist_info()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "git_commit": git_commit(),
        "data_hash": read_content_hash(data_root),
        "device": device,
        "world_size": str(world_size),
    } | {f"version.{name}": version for name, version in library_versions().items()}


def _save_history(runner: Runner, path: Path) -> None:
    """Per-iteration training loss and batch mean s_p / s_n, as the Runner's message hub recorded them."""
    columns = {name: runner.message_hub.get_scalar(f"train/{name}").data[0] for name in HISTORY_COLUMNS}
    frame = pd.DataFrame(columns)
    frame.insert(0, "iteration", np.arange(1, len(frame) + 1))
    with atomic_open(path) as fh:
        frame.to_csv(fh, index=False)


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """Set (or leave unset, for None) one environment variable while inside."""
    previous = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def train_run(run_config: dict[str, Any], data_root: str | Path, out_dir: str | Path, tracking_uri: str) -> Path:
    """Train one run; write ``model_init.pth``, ``model.pth`` (weights only), ``history.csv`` and
    ``train.json`` into ``out_dir``.

    A run started again (after a crash, a kill or a SLURM requeue) resumes from its latest
    checkpoint in ``out_dir/work`` and continues the same MLflow run.
    """
    out_dir, data_root = Path(out_dir), Path(data_root)
    work_dir = out_dir / "work"
    # Read the training split first: missing or broken data fails before any run is opened.
    num_classes = read_manifest(data_root, split="train")["label"].nunique()
    ensure_experiment(tracking_uri, run_config["tracking"]["experiment"])
    started = time.time()
    provenance = run_provenance(data_root)
    config = runner_config(run_config, data_root, work_dir, tracking_uri, num_classes, provenance)
    state_file = work_dir / RESUME_STATE_FILENAME
    previous = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if previous.get("config_hash") != config_hash(run_config):
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints of other settings must not be resumed
        previous = {}
    resume_from = latest_checkpoint(work_dir)
    if resume_from:
        config.merge_from_dict({"resume": True, "load_from": resume_from})
    with _environment("MLFLOW_RUN_ID", previous.get("mlflow_run_id") if resume_from else None):
        runner = Runner.from_cfg(config)
        mlflow_run_id = runner.visualizer.get_backend("MLflowVisBackend").experiment.active_run().info.run_id
    write_json(state_file, {"config_hash": config_hash(run_config), "mlflow_run_id": mlflow_run_id})
    model = getattr(runner.model, "module", runner.model)
    _save_weights(model, out_dir / INITIAL_WEIGHTS_FILENAME)
    try:
        with trusted_work_dir(work_dir):
            runner.train()
    except BaseException as exc:
        # mmengine closes its MLflow run only after a complete training: mark this one as ended so that
        # neither a later run in this process nor the MLflow UI takes it for a live run.
        mlflow = runner.visualizer.get_backend("MLflowVisBackend").experiment
        mlflow.end_run(status="KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    weights = _save_weights(model, out_dir / WEIGHTS_FILENAME)
    _save_history(runner, out_dir / HISTORY_FILENAME)
    throughput = runner.message_hub.get_info("throughput_images_per_s")
    log_to_run(tracking_uri, mlflow_run_id, {"throughput_images_per_s": throughput})
    write_json(
        out_dir / TRAIN_RECORD_FILENAME,
        {
            "run_id": run_config["run_id"],
            "mlflow_run_id": mlflow_run_id,
            "tracking_uri": tracking_uri,
            "config": run_config,
            "config_hash": config_hash(run_config),
            "model": model_config(run_config, num_classes),
            "iterations": runner.iter,
            "wall_time_s": round(time.time() - started, 2),
            "throughput_images_per_s": round(throughput, 1),
            "provenance": provenance,
        },
    )
    return weights
