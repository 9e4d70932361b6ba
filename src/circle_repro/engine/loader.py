"""How a DataLoader feeds one training or evaluation process, from the CPUs its job was given.

One CPU runs the process's own loop (the model's forward and backward, or launching them on the
GPU); every further CPU runs one decoding worker process. Workers stay alive between epochs and each
keeps a few batches ready, and batches go to page-locked memory when a GPU consumes them, so the copy
to the GPU overlaps the step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

PREFETCH_BATCHES_PER_WORKER = 4
"""Batches each worker keeps decoded ahead of the step (torch's default is 2): slack for slow images."""


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader keyword arguments that depend on the process's resources, not on the data."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None

    def dataloader_kwargs(self) -> dict[str, Any]:
        """The settings as ``torch.utils.data.DataLoader`` (or an mmengine ``*_dataloader`` config) takes them."""
        kwargs: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }
        if self.prefetch_factor is not None:
            kwargs["prefetch_factor"] = self.prefetch_factor
        return kwargs


def loader_settings(cpus: int, accelerator: bool) -> LoaderSettings:
    """Settings for a process that owns ``cpus`` CPUs and feeds a GPU (``accelerator``) or the CPU itself."""
    if cpus < 1:
        raise ValueError(f"a process needs at least one CPU, got {cpus}")
    workers = cpus - 1
    return LoaderSettings(
        num_workers=workers,
        pin_memory=accelerator,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )


def process_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: what SLURM or taskset gave it), shared among the
    local ranks of a torchrun launch."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(available // int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def job_loader_settings(cpus: int, accelerator: bool) -> LoaderSettings:
    """Settings for a process declared ``cpus`` CPUs, never more than it may use (:func:`process_cpus`)."""
    return loader_settings(min(cpus, process_cpus()), accelerator=accelerator)


def train_loader_settings(resources: Mapping[str, Any]) -> LoaderSettings:
    """Settings of one training process from its experiment's ``resources`` (defaults filled in, as
    :attr:`circle_repro.config.Experiment.resources` gives them): ``cpus_per_gpu`` CPUs per process,
    never more than the process may use, and pinned memory when it trains on a GPU that is present."""
    return job_loader_settings(int(resources["cpus_per_gpu"]), resources["gpus"] > 0 and torch.cuda.is_available())


def process_loader_settings(device: torch.device) -> LoaderSettings:
    """Settings for a process that uses every CPU it may run on (an evaluation job) and runs on ``device``."""
    return loader_settings(process_cpus(), accelerator=device.type == "cuda")


__all__ = [
    "PREFETCH_BATCHES_PER_WORKER",
    "LoaderSettings",
    "job_loader_settings",
    "loader_settings",
    "process_cpus",
    "process_loader_settings",
    "train_loader_settings",
]
