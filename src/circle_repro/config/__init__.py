"""Load and validate params.yaml, and expand experiments into runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_RESOURCE = "params.schema.yaml"


class ConfigError(ValueError):
    """params.yaml is missing, malformed or holds a value outside the allowed set."""


@cache
def params_schema() -> dict[str, Any]:
    """The JSON schema of params.yaml (packaged with circle_repro.config)."""
    text = resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


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


def select_profile(params: dict[str, Any], profile: str | None = None, source: str = "params.yaml") -> dict[str, Any]:
    """``params`` with only the experiments of ``profile`` (default: the file's ``profile`` key).

    ``profile`` in the result names the selected profile; data sets and the other sections are kept.
    """
    name = params["profile"] if profile is None else profile
    if name not in params["profiles"]:
        raise ConfigError(f"{source}: unknown profile {name!r}; defined profiles: {sorted(params['profiles'])}")
    experiments = {exp: params["experiments"][exp] for exp in params["profiles"][name]["experiments"]}
    return {**params, "profile": name, "experiments": experiments}


def _key_path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


_BOUND_WORDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _describe(error: jsonschema.ValidationError) -> str:
    message = f"{_key_path(error.absolute_path)}: {error.message}"
    if error.validator in _BOUND_WORDS:
        message += f"; allowed: {_BOUND_WORDS[error.validator]} {error.validator_value}"
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    return message + (f" ({hint})" if hint else "")


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Check params against the schema and the cross-field rules; raise ConfigError listing every problem."""
    validator = jsonschema.Draft202012Validator(params_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(error) for error in errors]
    if not problems:
        problems = _cross_field_problems(params)
    if problems:
        raise ConfigError(f"{source}: invalid parameters:\n  - " + "\n  - ".join(problems))


def _cross_field_problems(params: dict[str, Any]) -> list[str]:
    problems = []
    if params["profile"] not in params["profiles"]:
        problems.append(f"profile: {params['profile']!r} is not defined under profiles; allowed: {sorted(params['profiles'])}")
    for name, profile in params["profiles"].items():
        unknown = [exp for exp in profile["experiments"] if exp not in params["experiments"]]
        if unknown:
            problems.append(
                f"profiles.{name}.experiments: {unknown} not defined under experiments; allowed: {sorted(params['experiments'])}"
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
        n_train = len(params["datasets"].get(exp["dataset"], {}).get("train_classes", ()))
        if n_train and exp["sampler"]["p"] > n_train:
            problems.append(
                f"experiments.{name}.sampler.p: {exp['sampler']['p']} classes per batch, but "
                f"{exp['dataset']} has only {n_train} training classes; allowed: 2..{n_train}"
            )
    return problems


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
        raise ConfigError(f"run {run_id!r} is not defined by the params; defined runs: {sorted(runs)}")
    return runs[run_id]


def expand_runs(params: dict[str, Any]) -> list[RunSpec]:
    """Every run the params ask for: experiments x losses x seeds, in a stable order."""
    return sorted(
        RunSpec(exp_name, loss_name, seed)
        for exp_name, exp in params["experiments"].items()
        for loss_name in exp["losses"]
        for seed in exp["seeds"]
    )


def train_config(params: dict[str, Any], run: RunSpec) -> dict[str, Any]:
    """Everything one run's training depends on, and nothing else (a rerun trigger)."""
    exp = params["experiments"][run.experiment]
    return {
        "run_id": run.run_id,
        "experiment": run.experiment,
        "loss_name": run.loss,
        "seed": run.seed,
        "table": exp["table"],
        "dataset": exp["dataset"],
        "model": exp["model"],
        "sampler": exp["sampler"],
        "train": exp["train"],
        "loss": exp["losses"][run.loss],
        "tracking": params["tracking"],
    }


def eval_config(params: dict[str, Any], run: RunSpec) -> dict[str, Any]:
    """Everything one run's evaluation depends on beyond its checkpoint."""
    exp = params["experiments"][run.experiment]
    return {"run_id": run.run_id, "dataset": exp["dataset"], "evaluation": exp["evaluation"]}


def config_hash(config: Any) -> str:
    """A short, stable content hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
