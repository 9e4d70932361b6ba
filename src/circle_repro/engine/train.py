"""Train one run with mmengine's Runner and export its weights."""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import barrier, broadcast, get_dist_info, init_dist, is_main_process
from mmengine.registry import DATA_SAMPLERS, LOOPS
from mmengine.runner import IterBasedTrainLoop, Runner
from torch.utils.data import DataLoader, Sampler

from circle_repro.config import config_hash
from circle_repro.data.datasets import get_dataset
from circle_repro.data.manifest import read_content_hash, read_manifest, verify_prepared
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.samplers import PKSampler, augmentation_seed_base
from circle_repro.engine import hooks as _hooks  # noqa: F401  (registers the circle-repro hooks)
from circle_repro.engine import optim as _optim  # noqa: F401  (registers MixedPrecisionOptimWrapper)
from circle_repro.engine import registrations as _registrations  # noqa: F401
from circle_repro.engine.attempt import (
    MLFLOW_BACKEND,
    TRACKED_CONFIG_KEYS,
    begin_attempt,
    ending_mlflow_run,
    record_attempt,
)
from circle_repro.engine.checkpoint import full_model_state, trusted_work_dir, unwrap_model
from circle_repro.engine.loader import LoaderSettings, train_loader_settings
from circle_repro.engine.optim import optim_wrapper_config, param_scheduler_config, total_iterations
from circle_repro.engine.tracking import (
    DEFAULT_EXPERIMENT,
    artifact_location,
    artifact_uri,
    ensure_experiment,
    log_to_run,
)
from circle_repro.io import atomic_open, atomic_path, write_json
from circle_repro.layout import (
    CHECKPOINTS_KEPT,
    HISTORY_FILENAME,
    INITIAL_WEIGHTS_FILENAME,
    TRAIN_RECORD_FILENAME,
    WEIGHTS_FILENAME,
)
from circle_repro.losses.proxy import is_class_level
from circle_repro.provenance import git_commit, library_versions
from circle_repro.workflow import TRAIN_RESOURCE_DEFAULTS

HISTORY_COLUMNS = ("loss", "s_p", "s_n")
LAUNCHERS = ("none", "pytorch", "slurm")
"""``--launcher``: none (one process), pytorch (torchrun's RANK/WORLD_SIZE/MASTER_ADDR/... variables),
slurm (srun's SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST/...)."""
DEFAULT_CHECKPOINT_INTERVAL_ITERS = 2000
"""Checkpoint interval of iteration-based runs without ``train.checkpoint_interval`` (capped at the run's length)."""
MODEL_KEYS = ("backbone", "embedding_dim", "pretrained", "image_size")
"""Keys of an experiment's ``model:`` read by the engine; every other key is a backbone option."""


def model_config(run_config: dict[str, Any], num_classes: int, load_pretrained: bool = True) -> dict[str, Any]:
    """The mmengine model config of a run (what ``EmbeddingModel`` is built from).

    ``model.pretrained`` becomes the backbone's ``weights`` (left out with ``load_pretrained=False``:
    the train record's copy, which evaluation rebuilds before loading the trained weights),
    ``model.image_size`` goes to the model (it picks the input transform), and every other
    ``model:`` key besides backbone / embedding_dim is passed to the backbone.
    A sharded class-level loss gets the run's seed for its class sampling unless it sets one.
    """
    entry = get_dataset(run_config["dataset"])
    model = run_config["model"]
    loss = dict(run_config["loss"])
    if loss.get("sharded") and "seed" not in loss:
        loss["seed"] = run_config["seed"]
    config: dict[str, Any] = {
        "type": "EmbeddingModel",
        "backbone": model["backbone"],
        "in_channels": entry.in_channels,
        "embedding_dim": model["embedding_dim"],
        "num_classes": num_classes,
        "loss": loss,
    }
    if model.get("image_size") is not None:
        config["image_size"] = list(model["image_size"])
    options = {key: value for key, value in model.items() if key not in MODEL_KEYS}
    if options:
        config["backbone_options"] = options
    if load_pretrained and model.get("pretrained") is not None:
        config["pretrained"] = str(model["pretrained"])
    return config


class ResumableSampler(Sampler[tuple[int, int]]):
    """Wraps a sampler: yields each of its indices with the seed of that image's random augmentation,
    ``(index, seed)`` (:meth:`~circle_repro.data.manifest_dataset.ManifestDataset.__getitem__`), and can start
    its next pass part-way without loading what it skips (:class:`ResumableIterBasedTrainLoop` resumes
    mid-epoch with it). ``set_epoch`` passes through.

    The seed depends only on the run's ``seed``, the epoch, the ``rank`` and the image's position in the
    epoch (:func:`~circle_repro.data.samplers.augmentation_seed_base`), never on which loader worker loads
    the image or on what that worker drew before: a run draws the same augmentations with any number of
    workers, and a resumed run those of an uninterrupted one.
    """

    def __init__(self, sampler: Sampler[int], seed: int = 0, rank: int = 0) -> None:
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip_next(self, n_indices: int) -> None:
        """Leave out the first ``n_indices`` indices of the next pass only."""
        self._skip = n_indices

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self._skip = self._skip, 0
        first = augmentation_seed_base(self.seed, self.epoch, self.rank)
        for position, index in itertools.islice(enumerate(self.sampler), skip, None):
            yield int(index), (first + position) % 2**63

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


@DATA_SAMPLERS.register_module(name="ResumableSampler")
def build_resumable_sampler(dataset: Any, sampler: dict[str, Any], seed: int | None = None) -> ResumableSampler:
    """A :class:`ResumableSampler` around the sampler that ``sampler`` configures, with the run's seed and rank."""
    seed = 0 if seed is None else seed
    inner = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=seed))
    return ResumableSampler(inner, seed=seed, rank=get_dist_info()[0])


class _EpochCycler:
    """Batches of a data loader epoch after epoch (``sampler.set_epoch(e)`` before each, as
    mmengine's infinite iterator), starting at overall batch ``start``: the epochs and batches
    before it are skipped by index, not loaded, so neither time nor the RNG is spent on them."""

    def __init__(self, dataloader: DataLoader, start: int) -> None:
        self.dataloader = dataloader
        per_epoch = len(dataloader)
        if per_epoch == 0:
            raise ValueError("the training data yields no batch: too few images or classes for the P x K sampler")
        self.epoch, skip = divmod(start, per_epoch)
        self._iterator = self._begin(skip)

    def _begin(self, skip_batches: int) -> Iterator[Any]:
        sampler = self.dataloader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if skip_batches and isinstance(sampler, ResumableSampler):
            sampler.skip_next(skip_batches * (self.dataloader.batch_size or 1))
            skip_batches = 0
        iterator = iter(self.dataloader)
        for _ in range(skip_batches):  # another sampler: skip by loading, as mmengine does
            next(iterator)
        return iterator

    def __iter__(self) -> _EpochCycler:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._iterator = self._begin(0)
            return next(self._iterator)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's IterBasedTrainLoop, except that a resumed run starts at its next batch directly.

    mmengine resumes an iteration-based run by loading and discarding every batch already trained
    on, after the checkpoint's RNG state has been restored: slow for long runs, and the discarded
    batches' random augmentations move the RNG on, so the resumed run differs from an
    uninterrupted one. Here the skipped batches are skipped by index (:class:`_EpochCycler`), and a
    run resumed from a checkpoint is bit-identical to an uninterrupted one, with any number of loader
    workers (:class:`ResumableSampler` seeds each image's augmentation; the loader's own seed draws come
    from its own generator, :class:`~circle_repro.engine.hooks.RngStateHook`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataloader_iterator = None  # made in run(), once the resumed iteration is known

    def run(self) -> torch.nn.Module:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        self.dataloader_iterator = _EpochCycler(self.dataloader, start=self._iter)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


class TrainRunner(Runner):
    """mmengine's Runner, except that rank-local state is not broadcast from rank 0 at start.

    After ``init_weights`` the Runner broadcasts every parameter and buffer from rank 0, so that all
    ranks start alike. A sharded class-level head's proxies differ between ranks by design (each
    holds its own class shard, drawn from the same RNG as the full matrix): those are the names the
    model registered with DDP as ignored, and they are left alone here too.
    """

    def _init_model_weights(self) -> None:
        model = unwrap_model(self.model)
        if hasattr(model, "init_weights"):
            model.init_weights()
            rank_local = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
            for name, tensor in model.state_dict().items():
                if name not in rank_local:
                    broadcast(tensor)


def _train_dataset(run_config: dict[str, Any], data_root: Path) -> dict[str, Any]:
    entry = get_dataset(run_config["dataset"])
    return dict(
        type="ManifestDataset",
        data_root=str(data_root),
        split="train",
        transform=entry.transform,
        train=True,
        max_images=run_config["train"].get("max_images"),
        seed=run_config["seed"],
        backbone=run_config["model"]["backbone"],
        image_size=run_config["model"].get("image_size"),
    )


def _data_preprocessor(run_config: dict[str, Any]) -> dict[str, Any]:
    """The model's data preprocessor: the device half of the training dataset's pipeline."""
    dataset = _train_dataset(run_config, Path())
    return dict(
        type="ImageBatchPreprocessor",
        transform=dataset["transform"],
        backbone=dataset["backbone"],
        image_size=dataset["image_size"],
    )


def iterations_per_epoch(run_config: dict[str, Any], data_root: Path, world_size: int = 1) -> int:
    """P x K batches per epoch on each rank (what one epoch of the run's sampler yields)."""
    dataset_cfg = {k: v for k, v in _train_dataset(run_config, data_root).items() if k != "type"}
    labels = ManifestDataset(**dataset_cfg).labels
    p, k = run_config["sampler"]["p"], run_config["sampler"]["k"]
    return len(PKSampler(labels, p=p, k=k, seed=run_config["seed"], rank=0, world_size=world_size)) // (p * k)


def _loop_configs(train: dict[str, Any], per_epoch: int) -> dict[str, Any]:
    """train_cfg, the checkpoint hook, the log processor and the param schedulers of a ``train:`` section."""
    if ("epochs" in train) == ("iterations" in train):
        raise ValueError("train: give exactly one of epochs and iterations")
    total = total_iterations(train, per_epoch)
    schedulers = param_scheduler_config(train, total)
    if "iterations" in train:
        interval = int(train.get("checkpoint_interval", min(total, DEFAULT_CHECKPOINT_INTERVAL_ITERS)))
        return dict(
            train_cfg=dict(type="ResumableIterBasedTrainLoop", max_iters=total),
            checkpoint=dict(
                type="FullStateCheckpointHook", by_epoch=False, interval=interval, max_keep_ckpts=CHECKPOINTS_KEPT
            ),
            log_processor=dict(by_epoch=False),
            param_scheduler=schedulers,
        )
    return dict(
        train_cfg=dict(by_epoch=True, max_epochs=train["epochs"]),
        checkpoint=dict(
            type="FullStateCheckpointHook",
            interval=int(train.get("checkpoint_interval", 1)),
            max_keep_ckpts=CHECKPOINTS_KEPT,
        ),
        log_processor=dict(by_epoch=True),
        param_scheduler=schedulers,
    )


def _model_wrapper_config(launcher: str) -> dict[str, Any] | None:
    """DDP settings: mmengine's defaults (no buffer broadcast), on CPU without device ids."""
    if launcher == "none":
        return None
    config: dict[str, Any] = dict(
        type="MMDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=False
    )
    if not torch.cuda.is_available():
        config["device_ids"] = None
    return config


def _validation_hooks(train: dict[str, Any], validation_root: Path) -> list[dict[str, Any]]:
    """The validation hook of a ``train.validation`` section (none without one)."""
    validation = train.get("validation")
    if validation is None:
        return []
    missing = [name for name in validation["sets"] if not (validation_root / name / "manifest.parquet").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{validation_root}: no prepared {', '.join(missing)} for train.validation; "
            f"run `circle-repro data prepare {missing[0]}` (or snakemake data) first"
        )
    return [dict(type="PeriodicValidationHook", prepared_root=str(validation_root), sets=validation["sets"],
                 interval=validation["interval"])]  # fmt: skip


def runner_config(
    run_config: dict[str, Any],
    data_root: Path,
    work_dir: Path,
    tracking_uri: str,
    num_classes: int,
    provenance: dict[str, str],
    launcher: str = "none",
    per_epoch: int | None = None,
    validation_root: Path | None = None,
    loader: LoaderSettings | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> Config:
    """The full mmengine config of one training run, logging to the MLflow ``experiment``;
    ``provenance`` becomes MLflow tags.

    ``validation_root`` holds the prepared data sets of ``train.validation`` (default: beside
    ``data_root``, as under data/prepared/).

    ``per_epoch`` (P x K batches per epoch and rank) places the lr milestones of epoch-based
    runs; it is computed from the data when not given. ``launcher`` is mmengine's. ``loader``: the
    DataLoader's workers, pinning and prefetch (default: from the default ``resources`` of an experiment,
    :data:`circle_repro.workflow.TRAIN_RESOURCE_DEFAULTS`).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; allowed: {list(LAUNCHERS)}")
    sampler, train = run_config["sampler"], run_config["train"]
    seed = run_config["seed"]
    if per_epoch is None:
        per_epoch = iterations_per_epoch(run_config, data_root, get_dist_info()[1])
    loops = _loop_configs(train, per_epoch)
    validation_root = Path(data_root).parent if validation_root is None else Path(validation_root)
    pk_sampler = dict(type="PKSampler", p=sampler["p"], k=sampler["k"])
    tags = {key: str(run_config[key]) for key in ("run_id", "experiment", "loss_name", "seed", "dataset")}
    tags["config_hash"] = config_hash(run_config)
    tags.update(provenance)
    config = dict(
        work_dir=str(work_dir),
        experiment_name=run_config["run_id"].replace("/", "_"),
        circle_repro=run_config,
        model=model_config(run_config, num_classes),
        # uint8 batches from the loader become the network's input on its device (engine/batch_transfer.py).
        data_preprocessor=_data_preprocessor(run_config),
        train_dataloader=dict(
            dataset=_train_dataset(run_config, data_root),
            # The P x K batch is per rank; the PKSampler deals disjoint batches to the ranks.
            sampler=dict(type="ResumableSampler", sampler=pk_sampler),
            batch_size=sampler["p"] * sampler["k"],
            **(loader or train_loader_settings(TRAIN_RESOURCE_DEFAULTS)).dataloader_kwargs(),
            collate_fn=dict(type="default_collate"),
        ),
        train_cfg=loops["train_cfg"],
        optim_wrapper=optim_wrapper_config(train),
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=10),
            checkpoint=loops["checkpoint"],
        ),
        log_processor=loops["log_processor"],
        custom_hooks=[
            dict(type="RngStateHook"),
            dict(type="NonFiniteGuardHook"),
            dict(type="ThroughputHook"),
            *_validation_hooks(train, validation_root),
        ],
        visualizer=dict(
            type="Visualizer",
            vis_backends=[
                dict(type="LocalVisBackend"),
                dict(
                    type=MLFLOW_BACKEND,
                    save_dir=str(work_dir / "mlflow"),
                    exp_name=experiment,
                    run_name=run_config["run_id"],
                    tags=tags,
                    tracking_uri=tracking_uri,
                    artifact_location=artifact_location(tracking_uri),
                    tracked_config_keys=TRACKED_CONFIG_KEYS,
                ),
            ],
        ),
        # One seed on every rank (diff_rank_seed off): the same initial weights, sampler order and
        # negative-class draws everywhere; the sampler gives each rank different batches.
        randomness=dict(seed=seed, deterministic=False, diff_rank_seed=False),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl" if torch.cuda.is_available() else "gloo")),
        launcher=launcher,
        log_level="INFO",
    )
    if loops["param_scheduler"]:
        config["param_scheduler"] = loops["param_scheduler"]
    wrapper = _model_wrapper_config(launcher)
    if wrapper is not None:
        config["model_wrapper_cfg"] = wrapper
    return Config(config)


def _slurm_environment() -> None:
    """torchrun's variables from SLURM's (as mmengine's slurm launcher sets them)."""
    try:
        proc_id, ntasks, node_list = (os.environ[v] for v in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"))
    except KeyError as missing:
        raise ValueError(f"--launcher slurm needs {missing} in the environment: start the job step with srun") from None
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:
        if shutil.which("scontrol"):
            hosts = subprocess.run(
                ["scontrol", "show", "hostname", node_list], capture_output=True, text=True, check=True
            ).stdout.split()
            os.environ["MASTER_ADDR"] = hosts[0]
        else:
            os.environ["MASTER_ADDR"] = node_list.split(",")[0]
    os.environ["WORLD_SIZE"] = ntasks
    os.environ["RANK"] = proc_id
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def init_distributed(launcher: str) -> None:
    """Join the process group of a ``pytorch`` (torchrun) or ``slurm`` launch; nothing for ``none``.

    On GPUs this is mmengine's ``init_dist`` (NCCL, one device per local rank). mmengine's
    launchers call ``torch.cuda.set_device`` unconditionally, so on CPU-only machines the gloo
    group is joined here from the same environment variables. Called before the Runner is
    built, so the Runner finds the group ready (and the ranks can coordinate before that).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; allowed: {list(LAUNCHERS)}")
    if launcher == "none" or (dist.is_available() and dist.is_initialized()):
        return
    if torch.cuda.is_available():
        init_dist(launcher, backend="nccl")
        return
    if launcher == "slurm":
        _slurm_environment()
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValueError(f"--launcher {launcher} needs {missing} in the environment: start the processes with torchrun")
    os.environ.setdefault("LOCAL_RANK", "0")
    dist.init_process_group(backend="gloo")


def _save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save a state dict of plain CPU tensors (loadable with ``weights_only=True``), atomically, on
    rank 0. The full model: sharded heads' proxies are gathered from all ranks (every rank must call)."""
    state = full_model_state(model)
    if is_main_process():
        with atomic_path(path) as tmp:
            torch.save({name: tensor.detach().cpu().clone() for name, tensor in state.items()}, tmp)
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
        None if validation_root is None else Path(validation_root), loader, experiment,
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
            write_json(
                out_dir / TRAIN_RECORD_FILENAME,
                {
                    "run_id": run_config["run_id"],
                    "mlflow_run_id": mlflow_run_id,
                    "tracking_uri": tracking_uri,
                    "weights_uri": artifact_uri(tracking_uri, mlflow_run_id, WEIGHTS_FILENAME),
                    "config": run_config,
                    "config_hash": config_hash(run_config),
                    "model": model_config(run_config, num_classes, load_pretrained=False),
                    "iterations": runner.iter,
                    "iterations_per_epoch": per_epoch,
                    "launcher": launcher,
                    "world_size": world_size,
                    "global_batch_size": sampler["p"] * sampler["k"] * world_size,
                    "wall_time_s": round(time.time() - started, 2),
                    "throughput_images_per_s": round(throughput, 1),
                    "provenance": provenance,
                },
            )
    barrier()
    return weights
