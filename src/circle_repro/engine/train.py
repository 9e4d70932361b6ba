"""Train one run with mmengine's Runner and export its weights."""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mmengine.dist import barrier, get_dist_info, is_main_process
from mmengine.runner import Runner

from circle_repro.config import config_hash
from circle_repro.data.manifest import read_content_hash, read_manifest, verify_prepared
from circle_repro.engine.attempt import MLFLOW_BACKEND, begin_attempt, ending_mlflow_run, record_attempt
from circle_repro.engine.checkpoint import full_model_state, trusted_work_dir
from circle_repro.engine.distributed import init_distributed
from circle_repro.engine.loader import LoaderSettings
from circle_repro.engine.runner import TrainRunner
from circle_repro.engine.runner_config import iterations_per_epoch, model_config, runner_config, validation_sets
from circle_repro.engine.tracking import DEFAULT_EXPERIMENT, artifact_uri, ensure_experiment, log_to_run
from circle_repro.io import atomic_open, atomic_path
from circle_repro.layout import HISTORY_FILENAME, INITIAL_WEIGHTS_FILENAME, TRAIN_RECORD_FILENAME, WEIGHTS_FILENAME
from circle_repro.losses.proxy import is_class_level
from circle_repro.provenance import environment_lock, git_commit, library_versions
from circle_repro.records import TrainRecord

HISTORY_COLUMNS = ("loss", "s_p", "s_n")


def _save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save a state dict of plain CPU tensors (loadable with ``weights_only=True``), atomically, on
    rank 0. The full model: sharded heads' proxies are gathered from all ranks (every rank must call)."""
    state = full_model_state(model)
    if is_main_process():
        with atomic_path(path) as tmp:
            torch.save({name: tensor.detach().cpu().clone() for name, tensor in state.items()}, tmp)
    return path


def run_provenance(data_root: Path) -> dict[str, str]:
    """Code commit, data content hash, environment lock, library versions, device and world size of a run."""
    _, world_size = get_dist_info()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return (
        {
            "git_commit": git_commit(),
            "data_hash": read_content_hash(data_root),
            "device": device,
            "world_size": str(world_size),
        }
        | environment_lock()
        | {f"version.{name}": version for name, version in library_versions().items()}
    )


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


def train_run(
    run_config: dict[str, Any],
    data_root: str | Path,
    out_dir: str | Path,
    tracking_uri: str,
    launcher: str = "none",
    validation_root: str | Path | None = None,
    loader: LoaderSettings | None = None,
    verify_data: str = "sizes",
    experiment: str = DEFAULT_EXPERIMENT,
) -> Path:
    """Train one run; write ``model_init.pth``, ``model.pth`` (weights only), ``history.csv`` and
    ``train.json`` into ``out_dir``, and log to the MLflow ``experiment`` at ``tracking_uri`` (``model.pth``
    as an artifact of the run). ``validation_root``: where the ``train.validation`` sets are prepared
    (default: beside ``data_root``). ``loader``: the DataLoader settings from the experiment's
    resources (:func:`circle_repro.engine.loader.train_loader_settings`; default: the default resources).
    ``verify_data``: how the training set and the validation sets are checked against their stamps
    before anything starts (``sizes``, ``full``, ``none``).

    A run started again (after a crash, a kill or a SLURM requeue) resumes from its latest
    checkpoint in ``out_dir/work`` and continues the same MLflow run.

    ``launcher`` ``pytorch`` / ``slurm``: this process is one rank of a data-parallel run (DDP);
    the P x K batch of the params is per rank. Only rank 0 writes the outputs above and logs to
    MLflow; every rank returns the path of ``model.pth``.
    """
    out_dir, data_root = Path(out_dir), Path(data_root)
    work_dir = out_dir / "work"
    init_distributed(launcher)
    main = is_main_process()
    # Read the training split first: missing or broken data fails before any run is opened.
    num_classes = read_manifest(data_root, split="train")["label"].nunique()
    verify_prepared(data_root, verify_data)  # the data is what its recorded hash says (stamp.VERIFY_LEVELS)
    validation_root = data_root.parent if validation_root is None else Path(validation_root)
    for validation_set in validation_sets(run_config["train"], validation_root):
        verify_prepared(validation_set, verify_data)  # the sets evaluated during training, likewise
    if main:
        ensure_experiment(tracking_uri, experiment)
    started = time.time()
    provenance = run_provenance(data_root)
    world_size = get_dist_info()[1]
    loss = run_config["loss"]
    if main and world_size > 1 and not is_class_level(loss) and not loss.get("all_gather", False):
        warnings.warn(
            f"{run_config['run_id']}: pair-wise loss {loss['type']!r} on {world_size} ranks without all_gather: true "
            "sees only each rank's own P x K batch (set all_gather: true for the loss of the whole batch)",
            stacklevel=2,
        )
    per_epoch = iterations_per_epoch(run_config, data_root, world_size)
    config = runner_config(
        run_config, data_root, work_dir, tracking_uri, num_classes, provenance, launcher, per_epoch,
        validation_root, loader, experiment,
    )  # fmt: skip
    attempt = begin_attempt(work_dir, config_hash(run_config), tracking_uri)
    if attempt.checkpoint:
        config.merge_from_dict({"resume": True, "load_from": attempt.checkpoint})
    with ending_mlflow_run():
        with _environment("MLFLOW_RUN_ID", attempt.mlflow_run_id):
            runner = TrainRunner.from_cfg(config)
            mlflow = runner.visualizer.get_backend(MLFLOW_BACKEND).experiment if main else None
            mlflow_run_id = mlflow.active_run().info.run_id if main else None
        if main:
            if attempt.copy_of:
                mlflow.set_tag("copy_of_mlflow_run", attempt.copy_of)
            record_attempt(work_dir, config_hash(run_config), mlflow_run_id)
        _save_weights(runner.model, out_dir / INITIAL_WEIGHTS_FILENAME)
        with trusted_work_dir(work_dir):
            runner.train()
        weights = _save_weights(runner.model, out_dir / WEIGHTS_FILENAME)
        if main:
            _save_history(runner, out_dir / HISTORY_FILENAME)
            throughput = runner.message_hub.get_info("throughput_images_per_s")
            log_to_run(tracking_uri, mlflow_run_id, {"throughput_images_per_s": throughput}, artifacts=(weights,))
            sampler = run_config["sampler"]
            TrainRecord(
                run_id=run_config["run_id"],
                mlflow_run_id=mlflow_run_id,
                tracking_uri=tracking_uri,
                weights_uri=artifact_uri(tracking_uri, mlflow_run_id, WEIGHTS_FILENAME),
                config=run_config,
                config_hash=config_hash(run_config),
                model=model_config(run_config, num_classes, load_pretrained=False),
                iterations=runner.iter,
                iterations_per_epoch=per_epoch,
                launcher=launcher,
                world_size=world_size,
                global_batch_size=sampler["p"] * sampler["k"] * world_size,
                wall_time_s=round(time.time() - started, 2),
                throughput_images_per_s=round(throughput, 1),
                provenance=provenance,
            ).write(out_dir / TRAIN_RECORD_FILENAME)
    barrier()
    return weights
