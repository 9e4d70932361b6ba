"""Load and validate params.yaml, and expand experiments into runs."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from circle_repro.names import unknown_name
from circle_repro.schema import schema_problems

SCHEMA_RESOURCE = "params.schema.yaml"


class ConfigError(ValueError):
    """params.yaml is missing, malformed or holds a value outside the allowed set."""


@cache
def params_schema() -> dict[str, Any]:
    """The JSON schema of params.yaml (packaged with circle_repro.config); its loss entries are those the
    registered loss classes declare."""
    from circle_repro.losses.registry import loss_schema

    text = resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema = yaml.safe_load(text)
    schema["$defs"]["loss"] = {**schema["$defs"]["loss"], **loss_schema()}
    return schema


def name_pattern() -> str:
    """The regular expression (anchored) that every name in params.yaml matches: profile, experiment, loss."""
    return params_schema()["$defs"]["name"]["pattern"]


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> dict[str, Any]:
    """Read and validate a params file, keeping one profile's experiments (see :func:`select_profile`).

    Raises ConfigError naming the file and key on bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; run from the repository root or pass --params")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    validate_params(params, source=str(path))
    return select_profile(params, profile, source=str(path))


SWEPT_PARAMETERS = ("gamma", "m")


def sweep_loss_name(loss: str, parameter: str, value: float) -> str:
    """The loss row name of one swept value, e.g. ``CircleLoss-gamma128`` or ``CircleLoss-m-0.2``."""
    return f"{loss}-{parameter}{value:g}"


def expand_sweeps(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each sweep turned into an experiment: the base experiment with one loss row per
    swept value (of the swept loss and of each baseline), the sweep's seeds, and a ``sweep`` entry naming
    each row's loss, parameter and value (``points``), the baselines and the base rows' own gamma and m
    (``base_values``: the runs of the base experiment that complete each curve)."""
    experiments = dict(params["experiments"])
    for name, sweep in params.get("sweeps", {}).items():
        base = params["experiments"][sweep["base"]]
        swept = {sweep["loss"]: sweep, **sweep.get("baselines", {})}
        losses, points = {}, {}
        for loss, values in swept.items():
            for parameter in SWEPT_PARAMETERS:
                for value in values.get(parameter, ()):
                    row = sweep_loss_name(loss, parameter, value)
                    losses[row] = {**base["losses"][loss], parameter: value}
                    points[row] = {"loss": loss, "parameter": parameter, "value": value}
        base_values = {
            loss: {key: base["losses"][loss][key] for key in SWEPT_PARAMETERS if key in base["losses"][loss]}
            for loss in swept
        }
        experiments[name] = {
            **copy.deepcopy(base),
            "description": sweep["description"],
            "seeds": list(sweep["seeds"]),
            "losses": losses,
            "sweep": {
                "base": sweep["base"],
                "loss": sweep["loss"],
                "metric": sweep["metric"],
                "points": points,
                "baselines": list(sweep.get("baselines", {})),
                "base_values": base_values,
            },
        }
    return {**params, "experiments": experiments}


#: What an experiment with ``trained_by`` takes from the experiment that trains its weights.
INHERITED_FROM_TRAINER = ("seeds", "model", "sampler", "train", "losses", "resources")


def train_dataset(experiment: dict[str, Any]) -> str:
    """The data set an experiment's runs train on: ``train_dataset``, else its ``dataset``."""
    return experiment.get("train_dataset", experiment["dataset"])


def validation_datasets(experiment: dict[str, Any]) -> list[str]:
    """The data sets an experiment's training validates on (``train.validation.sets``)."""
    return list(experiment["train"].get("validation", {}).get("sets", {}))


def experiment_datasets(experiment: dict[str, Any]) -> list[str]:
    """The data sets an experiment needs: its test set, its training set and its validation sets."""
    return list(dict.fromkeys([experiment["dataset"], train_dataset(experiment), *validation_datasets(experiment)]))


def expand_trained_by(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each ``trained_by`` experiment completed from its trainer: the trainer's seeds,
    model, sampler, train settings, losses and resources, and its training data as ``train_dataset``.

    Such an experiment evaluates the trainer's weights on its own test set (``dataset``, ``evaluation``)
    for its own ``table``: one face training, five face test sets (Tables 1-3).
    """
    experiments = dict(params["experiments"])
    for name, spec in params["experiments"].items():
        if "trained_by" not in spec:
            continue
        trainer = params["experiments"][spec["trained_by"]]
        inherited = {key: copy.deepcopy(trainer[key]) for key in INHERITED_FROM_TRAINER if key in trainer}
        experiments[name] = {**inherited, "train_dataset": train_dataset(trainer), **spec}
    return {**params, "experiments": experiments}


def select_profile(params: dict[str, Any], profile: str | None = None, source: str = "params.yaml") -> dict[str, Any]:
    """``params`` with only the experiments of ``profile`` (default: the file's ``profile`` key), its
    ``trained_by`` experiments completed (:func:`expand_trained_by`) and its sweeps expanded into
    experiments (:func:`expand_sweeps`).

    ``profile`` in the result names the selected profile; data sets and the other sections are kept.
    """
    params = expand_sweeps(expand_trained_by(params))
    name = params["profile"] if profile is None else profile
    if name not in params["profiles"]:
        raise ConfigError(f"{source}: unknown profile {name!r}; defined profiles: {sorted(params['profiles'])}")
    experiments = {exp: params["experiments"][exp] for exp in params["profiles"][name]["experiments"]}
    return {**params, "profile": name, "experiments": experiments}


def _sweep_loss_problems(name: str, sweep: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What is wrong with a sweep's loss and baselines, given its base experiment."""
    from circle_repro.losses.registry import sweepable_parameters

    problems = []
    losses = base["losses"]
    if not sweepable_parameters(losses[sweep["loss"]]["type"]):
        problems.append(
            f"sweeps.{name}.loss: {sweep['loss']!r} has no gamma and m to sweep (type {losses[sweep['loss']]['type']})"
        )
    for baseline in sweep.get("baselines", {}):
        where = f"sweeps.{name}.baselines.{baseline}"
        if baseline == sweep["loss"]:
            problems.append(f"{where}: the swept loss itself; a baseline is another loss row of {sweep['base']}")
        elif baseline not in losses:
            problems.append(f"{where}: not a loss of {sweep['base']}; allowed: {sorted(set(losses) - {sweep['loss']})}")
        elif not sweepable_parameters(losses[baseline]["type"]):
            problems.append(f"{where}: {baseline!r} has no gamma to sweep (type {losses[baseline]['type']})")
    for loss, values in {sweep["loss"]: sweep, **sweep.get("baselines", {})}.items():
        for parameter in SWEPT_PARAMETERS:
            own = losses.get(loss, {}).get(parameter)
            if own is not None and own in values.get(parameter, ()):
                where = f"sweeps.{name}" + ("" if loss == sweep["loss"] else f".baselines.{loss}")
                problems.append(
                    f"{where}.{parameter}: {own:g} is {sweep['base']}'s own {loss} setting, whose runs "
                    "the sweep reuses; leave it out"
                )
    return problems


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Check params against the schema and the cross-field rules; raise ConfigError listing every problem."""
    problems = schema_problems(params, params_schema())
    if not problems:
        problems = _cross_field_problems(params)
    if problems:
        raise ConfigError(f"{source}: invalid parameters:\n  - " + "\n  - ".join(problems))


#: The largest P x K batch one rank may ask for (its pair matrix alone is 8192² floats: 256 MiB).
MAX_BATCH_IMAGES = 8192


def _cross_field_problems(params: dict[str, Any]) -> list[str]:
    problems = []
    if params["profile"] not in params["profiles"]:
        problems.append(
            f"profile: {params['profile']!r} is not defined under profiles; allowed: {sorted(params['profiles'])}"
        )
    sweeps = params.get("sweeps", {})
    runnable = sorted({*params["experiments"], *sweeps})
    for name, profile in params["profiles"].items():
        unknown = [exp for exp in profile["experiments"] if exp not in runnable]
        if unknown:
            problems.append(
                f"profiles.{name}.experiments: {unknown} not defined under experiments or sweeps; allowed: {runnable}"
            )
    experiments = params["experiments"]
    for name, spec in experiments.items():
        trainer = spec.get("trained_by")
        if trainer is None:
            continue
        if trainer not in experiments:
            problems.append(
                f"experiments.{name}.trained_by: {trainer!r} is not an experiment; allowed: {sorted(experiments)}"
            )
        elif "trained_by" in experiments[trainer]:
            problems.append(
                f"experiments.{name}.trained_by: {trainer!r} does not train (it has trained_by "
                f"{experiments[trainer]['trained_by']!r}); name the experiment that trains the weights"
            )
        for profile_name, profile in params["profiles"].items():
            if name in profile["experiments"] and trainer not in profile["experiments"]:
                problems.append(
                    f"profiles.{profile_name}.experiments: {name} evaluates the weights of {trainer}, "
                    f"which the profile does not list; add {trainer}"
                )
    for name, sweep in sweeps.items():
        if name in params["experiments"]:
            problems.append(f"sweeps.{name}: an experiment has the same name; rename one of them")
        base = params["experiments"].get(sweep["base"])
        if base is None:
            problems.append(
                f"sweeps.{name}.base: {sweep['base']!r} is not an experiment; allowed: {sorted(params['experiments'])}"
            )
        elif "trained_by" in base:
            problems.append(
                f"sweeps.{name}.base: {sweep['base']!r} trains nothing (trained_by); sweep {base['trained_by']!r} instead"
            )
        elif sweep["loss"] not in base["losses"]:
            problems.append(
                f"sweeps.{name}.loss: {sweep['loss']!r} is not a loss of {sweep['base']}; allowed: {sorted(base['losses'])}"
            )
        else:
            problems += _sweep_loss_problems(name, sweep, base)
        for profile_name, profile in params["profiles"].items():
            if name in profile["experiments"] and sweep["base"] not in profile["experiments"]:
                problems.append(
                    f"profiles.{profile_name}.experiments: {name} draws the runs of its base {sweep['base']} "
                    f"at the base settings, which the profile does not list; add {sweep['base']}"
                )
    for name, spec in params["datasets"].items():
        if "train_classes" not in spec:
            continue
        overlap = set(spec["train_classes"]) & set(spec["test_classes"])
        if overlap:
            problems.append(
                f"datasets.{name}: train_classes and test_classes share {sorted(overlap)}; "
                "the retrieval protocol needs class-disjoint splits"
            )
    for name, exp in params["experiments"].items():
        if "trained_by" in exp:
            continue
        batch = exp["sampler"]["p"] * exp["sampler"]["k"]
        if batch > MAX_BATCH_IMAGES:
            problems.append(
                f"experiments.{name}.sampler: p x k = {batch} images per batch; allowed: <= {MAX_BATCH_IMAGES} "
                "(lower p or k; a larger global batch comes from more ranks)"
            )
        n_train = len(params["datasets"].get(train_dataset(exp), {}).get("train_classes", ()))
        if n_train and exp["sampler"]["p"] > n_train:
            problems.append(
                f"experiments.{name}.sampler.p: {exp['sampler']['p']} classes per batch, but "
                f"{train_dataset(exp)} has only {n_train} training classes; allowed: 2..{n_train}"
            )
    return problems


TRAIN_RESOURCE_DEFAULTS: dict[str, Any] = {
    "gpus": 0,  # the demo and mini experiments train on the CPU
    "cpus_per_gpu": 1,  # per GPU; a CPU job (gpus: 0) gets this many for its one process
    "mem_mb_per_gpu": 4000,  # likewise per GPU, or for the one process of a CPU job
    "runtime_min": 60,
    "partition": None,  # no partition of its own: see circle_repro.workflow.train_rule_resources
}
"""What a training job asks for when its experiment's ``resources`` leave a key out."""


def train_resource_request(params: dict[str, Any], experiment: str) -> dict[str, Any]:
    """An experiment's ``resources`` from params.yaml with the defaults filled in."""
    return resources_of(params["experiments"][experiment])


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

    def run_dir(self, root: str | Path = "runs") -> Path:
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


# --- Typed views of the params ----------------------------------------------------------------------
# The workflow, the planner, the engine and the report read experiments through these objects; the
# functions above that take a params mapping remain for the call sites that still do.

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
    table: str | None
    dataset: str
    train_dataset: str
    seeds: tuple[int, ...]
    losses: Mapping[str, LossSpec]
    trained_by: str | None
    sweep: Sweep | None
    resources: Mapping[str, Any]
    spec: Mapping[str, Any]  # the params.yaml block, for what the fields above do not cover

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> Experiment:
        """The typed view of one (expanded) experiment block."""
        sweep = spec.get("sweep")
        return cls(
            name=name,
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
