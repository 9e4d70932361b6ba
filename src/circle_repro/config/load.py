"""Read params.yaml, check it against its schema and the cross-field rules, and select one profile."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from circle_repro.config.expand import SWEPT_PARAMETERS, expand_sweeps, expand_trained_by, train_dataset
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
