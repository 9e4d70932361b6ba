"""Runs of loaded params: their ids and folders, and the configs their training and evaluation depend on
(the rerun triggers and the config hash)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circle_repro.config.expand import train_dataset
from circle_repro.config.load import ConfigError
from circle_repro.layout import RUNS_ROOT
from circle_repro.names import unknown_name

TRAIN_RESOURCE_DEFAULTS: dict[str, Any] = {
    "gpus": 0,  # the demo and mini experiments train on the CPU
    "cpus_per_gpu": 1,  # per GPU; a CPU job (gpus: 0) gets this many for its one process
    "mem_mb_per_gpu": 4000,  # likewise per GPU, or for the one process of a CPU job
    "runtime_min": 60,
    "partition": None,  # no partition of its own: see circle_repro.workflow.train_rule_resources
}
"""What a training job asks for when its experiment's ``resources`` leave a key out."""


def resources_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment block's ``resources`` with the defaults filled in."""
    return TRAIN_RESOURCE_DEFAULTS | spec.get("resources", {})


@dataclass(frozen=True, order=True)
class RunSpec:
    """One training run: an experiment's loss row at one seed."""

    experiment: str
    loss: str
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.experiment}/{self.loss}/seed{self.seed}"

    def run_dir(self, root: str | Path = RUNS_ROOT) -> Path:
        return Path(root) / self.experiment / self.loss / f"seed{self.seed}"


def find_run(params: dict[str, Any], run_id: str) -> RunSpec:
    """The run of ``params`` whose id is ``run_id`` (``experiment/loss/seedN``)."""
    runs = {run.run_id: run for run in expand_runs(params)}
    if run_id not in runs:
        raise ConfigError(unknown_name("run", run_id, runs, "circle-repro runs --params ... --profile ..."))
    return runs[run_id]


def expand_runs(params: dict[str, Any]) -> list[RunSpec]:
    """Every run the params ask for: experiments x losses x seeds, in a stable order."""
    return sorted(
        RunSpec(exp_name, loss_name, seed)
        for exp_name, exp in params["experiments"].items()
        for loss_name in exp["losses"]
        for seed in exp["seeds"]
    )


def training_run(params: dict[str, Any], run: RunSpec) -> RunSpec:
    """The run that trains ``run``'s weights: its trainer's run (``trained_by``), else ``run`` itself."""
    trainer = params["experiments"][run.experiment].get("trained_by", run.experiment)
    return RunSpec(trainer, run.loss, run.seed)


def _identity(run: RunSpec) -> dict[str, Any]:
    """Which run a config belongs to."""
    return {"run_id": run.run_id, "experiment": run.experiment, "loss_name": run.loss, "seed": run.seed}


def train_config(params: dict[str, Any], run: RunSpec) -> dict[str, Any]:
    """Everything the training of ``run``'s weights depends on, and nothing else (a rerun trigger and
    the config hash): no tracking settings, no paths of the params file, no resources or launcher.

    A ``trained_by`` run gets its trainer's config: the same weights, the same config hash.
    """
    run = training_run(params, run)
    exp = params["experiments"][run.experiment]
    return _identity(run) | {
        "dataset": train_dataset(exp),
        "model": exp["model"],
        "sampler": exp["sampler"],
        "train": exp["train"],
        "loss": exp["losses"][run.loss],
    }


def eval_config(params: dict[str, Any], run: RunSpec) -> dict[str, Any]:
    """Everything one run's evaluation depends on beyond its checkpoint, and the table its metrics
    fill; ``trained_by`` names the run whose weights it evaluates (itself, unless the experiment has
    ``trained_by``)."""
    exp = params["experiments"][run.experiment]
    return _identity(run) | {
        "table": exp["table"],
        "trained_by": training_run(params, run).run_id,
        "dataset": exp["dataset"],
        "evaluation": exp["evaluation"],
    }


def tracking_experiment(params: dict[str, Any]) -> str:
    """The MLflow experiment of the params' profile: ``<tracking.experiment>-<profile>``, one per profile."""
    return f"{params['tracking']['experiment']}-{params['profile']}"


def config_hash(config: Any) -> str:
    """A short, stable content hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
