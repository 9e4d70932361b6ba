"""Typed views of loaded params: experiments, their loss rows, sweeps and runs, which the workflow, the
planner, the engine and the report read instead of the params mapping."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circle_repro.config.expand import experiment_datasets, train_dataset, validation_datasets
from circle_repro.config.load import ConfigError, load_params
from circle_repro.config.runs import (
    RunSpec,
    eval_config,
    expand_runs,
    find_run,
    resources_of,
    tracking_experiment,
    train_config,
    training_run,
)
from circle_repro.names import unknown_name

Run = RunSpec
"""One training run: an experiment's loss row at one seed."""


@dataclass(frozen=True)
class LossSpec:
    """One loss row of an experiment: its row name, its registered ``type`` and its constructor arguments."""

    name: str
    type: str
    arguments: Mapping[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The params.yaml entry (what :func:`circle_repro.losses.build_loss` takes)."""
        return {"type": self.type, **self.arguments}


@dataclass(frozen=True)
class Sweep:
    """A Fig. 3 sweep: one parameter of ``loss`` varied over the runs of ``base`` (see :func:`expand_sweeps`)."""

    base: str
    loss: str
    metric: str
    points: Mapping[str, Mapping[str, Any]]
    baselines: tuple[str, ...]
    base_values: Mapping[str, Mapping[str, float]]
    declared: Mapping[str, Any]  # its entry under params.yaml's ``sweeps``, as written


@dataclass(frozen=True)
class Experiment:
    """One experiment of the selected profile (``trained_by`` completed, sweeps expanded)."""

    name: str
    description: str  # params.yaml's description, else the name
    table: str | None
    dataset: str
    train_dataset: str
    seeds: tuple[int, ...]
    losses: Mapping[str, LossSpec]
    trained_by: str | None
    sweep: Sweep | None
    evaluation: Mapping[str, Any]  # the test protocol and its settings
    model: Mapping[str, Any]  # the trainer's, for a ``trained_by`` experiment
    resources: Mapping[str, Any]  # what one training job asks for, defaults filled in
    spec: Mapping[str, Any]  # the params.yaml block, for what the fields above do not cover

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> Experiment:
        """The typed view of one (expanded) experiment block."""
        sweep = spec.get("sweep")
        return cls(
            name=name,
            description=spec.get("description", name),
            table=spec.get("table"),
            dataset=spec["dataset"],
            train_dataset=train_dataset(spec),  # type: ignore[arg-type]
            seeds=tuple(spec["seeds"]),
            losses={
                row: LossSpec(row, cfg["type"], {k: v for k, v in cfg.items() if k != "type"})
                for row, cfg in spec["losses"].items()
            },
            trained_by=spec.get("trained_by"),
            sweep=None
            if sweep is None
            else Sweep(
                base=sweep["base"],
                loss=sweep["loss"],
                metric=sweep["metric"],
                points=sweep["points"],
                baselines=tuple(sweep["baselines"]),
                base_values=sweep["base_values"],
                declared=sweep["declared"],
            ),
            evaluation=spec["evaluation"],
            model=spec["model"],
            resources=resources_of(spec),
            spec=spec,
        )

    @property
    def is_sweep(self) -> bool:
        """Whether the experiment is a Fig. 3 sweep (it fills a figure, not a table)."""
        return self.sweep is not None

    @property
    def datasets(self) -> list[str]:
        """The data sets it needs: test, training and validation sets."""
        return experiment_datasets(self.spec)  # type: ignore[arg-type]

    @property
    def validation_datasets(self) -> list[str]:
        """The data sets its training validates on."""
        return validation_datasets(self.spec)  # type: ignore[arg-type]

    @property
    def batch_images(self) -> int:
        """Images of one rank's training batch: the sampler's P classes x K images."""
        return int(self.spec["sampler"]["p"]) * int(self.spec["sampler"]["k"])

    @property
    def runs(self) -> list[Run]:
        """Its runs: loss rows x seeds, in a stable order."""
        return sorted(Run(self.name, loss, seed) for loss in self.losses for seed in self.seeds)


def experiments(params: Mapping[str, Any]) -> dict[str, Experiment]:
    """The typed experiments of loaded params (:func:`load_params`), in the profile's order."""
    return {name: Experiment.from_spec(name, spec) for name, spec in params["experiments"].items()}


@dataclass(frozen=True)
class Study:
    """Loaded params (:func:`load_study`: one profile, expanded) as typed views: what the workflow, the planner,
    the engine's CLI and the report read. ``params`` is the validated mapping the views are built from, for
    the config functions that compute run configs from it (:mod:`.runs`)."""

    profile: str
    experiments: Mapping[str, Experiment]  # in the profile's order
    report: Mapping[str, Any]  # params.yaml's ``report`` block: tolerance, bootstrap, gradient_maps, title
    params: Mapping[str, Any]

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Study:
        """The typed view of loaded params (:func:`~circle_repro.config.load_params`)."""
        return cls(params["profile"], experiments(params), params["report"], params)

    def experiment(self, name: str) -> Experiment:
        """One experiment; ConfigError suggesting the nearest names for an unknown one."""
        if name not in self.experiments:
            raise ConfigError(unknown_name("experiment", name, self.experiments))
        return self.experiments[name]

    def without(self, names: Collection[str]) -> Study:
        """The study minus the named experiments."""
        return self.only(name for name in self.experiments if name not in names)

    def only(self, names: Iterable[str]) -> Study:
        """The study with only the named experiments, in the profile's order."""
        kept = set(names)
        specs = {name: spec for name, spec in self.params["experiments"].items() if name in kept}
        return Study.of({**self.params, "experiments": specs})

    @property
    def runs(self) -> list[Run]:
        """Every run: experiments x loss rows x seeds, in a stable order."""
        return expand_runs(self.params)  # type: ignore[arg-type]

    @property
    def dataset_names(self) -> list[str]:
        """Every data set the experiments train, validate or evaluate on, sorted."""
        return sorted({name for exp in self.experiments.values() for name in exp.datasets})

    def dataset_options(self, dataset: str) -> Mapping[str, Any]:
        """params.yaml's ``datasets:`` options of one data set (``mirror``, ``train_classes``, ...); empty if none."""
        return self.params["datasets"].get(dataset, {})

    @property
    def tracking(self) -> Mapping[str, Any]:
        """params.yaml's ``tracking`` block: the MLflow URI and experiment name."""
        return self.params["tracking"]

    @property
    def tracking_experiment(self) -> str:
        """The MLflow experiment of the profile (:func:`~circle_repro.config.tracking_experiment`)."""
        return tracking_experiment(self.params)  # type: ignore[arg-type]

    def find_run(self, run_id: str) -> Run:
        """The run whose id is ``run_id``; ConfigError suggesting the nearest ids for an unknown one."""
        return find_run(self.params, run_id)  # type: ignore[arg-type]

    def training_run(self, run: Run) -> Run:
        """The run that trains ``run``'s weights: its trainer's run (``trained_by``), else ``run`` itself."""
        return training_run(self.params, run)  # type: ignore[arg-type]

    def train_config(self, run: Run) -> dict[str, Any]:
        """Everything the training of ``run``'s weights depends on (:func:`~circle_repro.config.train_config`)."""
        return train_config(self.params, run)  # type: ignore[arg-type]

    def eval_config(self, run: Run) -> dict[str, Any]:
        """Everything ``run``'s evaluation depends on (:func:`~circle_repro.config.eval_config`)."""
        return eval_config(self.params, run)  # type: ignore[arg-type]


def load_study(path: str | Path = "params.yaml", profile: str | None = None) -> Study:
    """Read and validate a params file and select one profile (:func:`load_params`), as a :class:`Study`."""
    return Study.of(load_params(path, profile))
