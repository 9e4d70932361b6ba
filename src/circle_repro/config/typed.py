"""Typed views of loaded params: experiments, their loss rows, sweeps and runs, which the workflow, the
planner, the engine and the report read instead of the params mapping."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from circle_repro.config.expand import experiment_datasets, train_dataset
from circle_repro.config.load import ConfigError
from circle_repro.config.runs import RunSpec, resources_of
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
    def runs(self) -> list[Run]:
        """Its runs: loss rows x seeds, in a stable order."""
        return sorted(Run(self.name, loss, seed) for loss in self.losses for seed in self.seeds)


def experiments(params: Mapping[str, Any]) -> dict[str, Experiment]:
    """The typed experiments of loaded params (:func:`load_params`), in the profile's order."""
    return {name: Experiment.from_spec(name, spec) for name, spec in params["experiments"].items()}


def experiment(params: Mapping[str, Any], name: str) -> Experiment:
    """One typed experiment of loaded params."""
    if name not in params["experiments"]:
        raise ConfigError(unknown_name("experiment", name, params["experiments"]))
    return Experiment.from_spec(name, params["experiments"][name])


@dataclass(frozen=True)
class Study:
    """Loaded params (:func:`~circle_repro.config.load_params`: one profile, expanded) as typed views: what the
    report reads. ``params`` is the mapping itself, for the functions that still take it (planner, recipe
    cards, result loading)."""

    profile: str | None
    experiments: Mapping[str, Experiment]  # in the profile's order
    report: Mapping[str, Any]  # params.yaml's ``report`` block: tolerance, bootstrap, gradient_maps, title
    params: Mapping[str, Any]

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Study:
        """The typed view of loaded params."""
        return cls(params.get("profile"), experiments(params), params["report"], params)

    def experiment(self, name: str) -> Experiment:
        """One experiment; ConfigError suggesting the nearest names for an unknown one."""
        if name not in self.experiments:
            raise ConfigError(unknown_name("experiment", name, self.experiments))
        return self.experiments[name]

    def without(self, names: Collection[str]) -> Study:
        """The study minus the named experiments."""
        kept = {name: spec for name, spec in self.params["experiments"].items() if name not in names}
        return Study.of({**self.params, "experiments": kept})
