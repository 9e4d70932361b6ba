"""The mmengine config of one training run: model, data loader, loop, schedules, hooks and MLflow logging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.dist import get_dist_info

from circle_repro.config import TRAIN_RESOURCE_DEFAULTS, config_hash
from circle_repro.data.datasets import get_dataset
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.samplers import PKSampler
from circle_repro.engine import hooks as _hooks  # noqa: F401  (registers the circle-repro hooks)
from circle_repro.engine import loop as _loop  # noqa: F401  (registers ResumableSampler and the resumable loop)
from circle_repro.engine import optim as _optim  # noqa: F401  (registers MixedPrecisionOptimWrapper)
from circle_repro.engine import registrations as _registrations  # noqa: F401
from circle_repro.engine.attempt import MLFLOW_BACKEND, TRACKED_CONFIG_KEYS
from circle_repro.engine.distributed import LAUNCHERS
from circle_repro.engine.loader import LoaderSettings, train_loader_settings
from circle_repro.engine.optim import optim_wrapper_config, param_scheduler_config, total_iterations
from circle_repro.engine.tracking import DEFAULT_EXPERIMENT, artifact_location
from circle_repro.layout import CHECKPOINTS_KEPT, MANIFEST_FILENAME

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


def validation_sets(train: dict[str, Any], validation_root: Path) -> list[Path]:
    """The prepared folders of the sets of a ``train.validation`` section (none without one);
    FileNotFoundError naming those that are not prepared."""
    sets = train.get("validation", {}).get("sets", {})
    missing = [name for name in sets if not (validation_root / name / MANIFEST_FILENAME).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{validation_root}: no prepared {', '.join(missing)} for train.validation; "
            f"run `circle-repro data prepare {missing[0]}` (or snakemake data) first"
        )
    return [validation_root / name for name in sets]


def _validation_hooks(train: dict[str, Any], validation_root: Path) -> list[dict[str, Any]]:
    """The validation hook of a ``train.validation`` section (none without one)."""
    validation = train.get("validation")
    if validation is None:
        return []
    validation_sets(train, validation_root)
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
    :data:`circle_repro.config.TRAIN_RESOURCE_DEFAULTS`).
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
