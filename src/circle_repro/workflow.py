"""What the Snakefile and dvc.yaml need from params: targets, folders and rerun triggers.

Snakemake reruns a job when its ``params`` change, so each step gets a JSON string of exactly the
settings its result depends on: editing one loss's gamma retrains that loss's runs and nothing else,
and the bookkeeping (tracking settings, the params file's path, a data set's mirror, resources) reruns
nothing. The params file and profile reach the jobs through the shell command (:func:`params_options`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circle_repro.config import ConfigError, RunSpec, Study, name_pattern
from circle_repro.data.acquire import FETCHED_FILENAME
from circle_repro.data.sources import load_sources
from circle_repro.data.status import unavailable_reason
from circle_repro.layout import (
    DATA_ROOT,
    HISTORY_FILENAME,
    INITIAL_WEIGHTS_FILENAME,
    MANIFEST_FILENAME,
    METRICS_FILENAME,
    PREPARED_ROOT,
    RAW_ROOT,
    RUNS_ROOT,
    TRAIN_RECORD_FILENAME,
    WEIGHTS_FILENAME,
    evaluation_dir,
)

if TYPE_CHECKING:
    from circle_repro.plan.inputs import Throughput
    from circle_repro.plan.rates import JobRates

RUN_DIR_PATTERN = RUNS_ROOT / "{experiment}" / "{loss}" / "seed{seed}"
"""A run's folder in the rules' wildcards (what :meth:`RunSpec.run_dir` gives under :data:`RUNS_ROOT`)."""
NAME_WILDCARD = name_pattern().removeprefix("^").removesuffix("$")
"""The Snakefile's constraint on the experiment and loss wildcards: a params.yaml name, unanchored."""


SNAKEMAKE_CONFIG_KEYS = ("params", "profile")
"""What ``snakemake --config`` takes: every other setting lives in the params file."""
DATASET_LOCATION_KEYS = ("mirror",)
"""Options of ``datasets:`` that say where raw files come from, not what they are (checksums do)."""


def check_snakemake_config(config: Mapping[str, Any]) -> None:
    """ConfigError when Snakemake's config holds more than ``params`` and ``profile``: a params file given
    with ``--configfile`` (or a key under ``--config``) would otherwise be silently ignored."""
    unknown = sorted(set(config) - set(SNAKEMAKE_CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"the workflow reads no config keys {unknown}: name the params file with `--config params=path/to/params.yaml` "
            "(and a profile with `--config profile=NAME`), not with --configfile"
        )


def params_options(params_file: str | Path, profile: str) -> str:
    """The ``--params FILE --profile NAME`` options of every ``circle-repro`` call, shell-quoted."""
    return f"--params {shlex.quote(str(params_file))} --profile {shlex.quote(profile)}"


def _as_trigger(config: Any) -> str:
    return json.dumps(config, sort_keys=True)


def run_from_wildcards(experiment: str, loss: str, seed: str | int) -> RunSpec:
    """The run named by a rule's wildcards."""
    return RunSpec(experiment, loss, int(seed))


def manifest_path(dataset: str) -> Path:
    """A prepared data set's manifest, the file that stands for the whole prepared set in the rules."""
    return PREPARED_ROOT / dataset / MANIFEST_FILENAME


def train_inputs(study: Study, experiment: str) -> dict[str, str]:
    """The train rule's inputs: the training set's manifest and those of its validation sets (beside it)."""
    exp = study.experiment(experiment)
    inputs = {"manifest": manifest_path(exp.train_dataset).as_posix()}
    return inputs | {f"validation_{name}": manifest_path(name).as_posix() for name in exp.validation_datasets}


def evaluate_inputs(study: Study, experiment: str, loss: str, seed: str | int) -> dict[str, str]:
    """The evaluate rule's inputs for one run: its test set's manifest, and the weights, initial weights
    and train record of the run that trained them (itself, or its trainer's run for ``trained_by``)."""
    weights_dir = study.training_run(run_from_wildcards(experiment, loss, seed)).run_dir(RUNS_ROOT)
    return {
        "manifest": manifest_path(study.experiment(experiment).dataset).as_posix(),
        "weights": (weights_dir / WEIGHTS_FILENAME).as_posix(),
        "initial_weights": (weights_dir / INITIAL_WEIGHTS_FILENAME).as_posix(),
        "record": (weights_dir / TRAIN_RECORD_FILENAME).as_posix(),
    }


def fetch_targets(dataset: str) -> list[str]:
    """The download step's output a data set's preparation waits for (none for an embedded data set)."""
    if load_sources()[dataset].access == "embedded":
        return []
    return [(RAW_ROOT / dataset / FETCHED_FILENAME).as_posix()]


def dataset_trigger(study: Study, dataset: str) -> str:
    """The settings a data set's preparation depends on (not where its raw files were copied from)."""
    options = study.dataset_options(dataset)
    return _as_trigger({key: value for key, value in options.items() if key not in DATASET_LOCATION_KEYS})


def train_trigger(study: Study, run: RunSpec) -> str:
    """The settings one run's training depends on."""
    return _as_trigger(study.train_config(run))


def eval_trigger(study: Study, run: RunSpec) -> str:
    """The settings one run's evaluation depends on."""
    return _as_trigger(study.eval_config(run))


def report_trigger(study: Study) -> str:
    """The settings the report depends on beyond the metrics files."""
    layout = {
        name: {key: exp.spec.get(key) for key in ("description", "table", "dataset")} | {"losses": list(exp.losses)}
        for name, exp in study.experiments.items()
    }
    return _as_trigger({"report": study.report, "experiments": layout})


TABLES = ("table1", "table2", "table3", "table4", "table5")


def blocked_experiments(study: Study, data_root: str | Path = DATA_ROOT) -> dict[str, str]:
    """Experiments whose data set is manual or withdrawn and not placed: name -> what to place where.

    They are left out of the default targets (the report marks their cells "data unavailable");
    asking for their table explicitly fails with the reason (:func:`table_targets`).
    """
    sources = load_sources()
    needed = {name: exp.datasets for name, exp in study.experiments.items()}
    reasons = {name: unavailable_reason(sources[name], data_root) for names in needed.values() for name in names}
    blocked = {exp: "; ".join(reasons[name] for name in names if reasons[name]) for exp, names in needed.items()}
    return {exp: reason for exp, reason in blocked.items() if reason}


def table_targets(study: Study, table: str, blocked: dict[str, str]) -> list[str]:
    """The metrics files of every run that fills a paper table; ValueError saying why when none can."""
    experiments = [name for name, exp in study.experiments.items() if exp.table == table and not exp.is_sweep]
    if not experiments:
        raise ValueError(f"{table}: profile {study.profile!r} has no experiment for it (see params.yaml profiles)")
    reasons = [f"{name}: {blocked[name]}" for name in experiments if name in blocked]
    if reasons:
        raise ValueError(f"{table} cannot run: " + "; ".join(reasons))
    return metrics_targets(study.only(experiments))


def data_targets(study: Study) -> list[str]:
    """The manifest of every data set the study's experiments train or evaluate on."""
    return [manifest_path(name).as_posix() for name in study.dataset_names]


def run_file(filename: str) -> str:
    """A file of the run folder as a rule's output pattern (layout's file names under :data:`RUN_DIR_PATTERN`)."""
    return (RUN_DIR_PATTERN / filename).as_posix()


def evaluation_file(filename: str) -> str:
    """A file of the run's evaluation folder as a rule's output pattern."""
    return (evaluation_dir(RUN_DIR_PATTERN) / filename).as_posix()


def metrics_targets(study: Study) -> list[str]:
    """Every run's metrics.json: what the report reads."""
    return [(evaluation_dir(run.run_dir(RUNS_ROOT)) / METRICS_FILENAME).as_posix() for run in study.runs]


def history_targets(study: Study) -> list[str]:
    """The training history of every run that trains: what the report's dynamics figure reads."""
    runs = {study.training_run(run) for run in study.runs}
    return [(run.run_dir(RUNS_ROOT) / HISTORY_FILENAME).as_posix() for run in sorted(runs)]


# --- Cluster resources (profiles/slurm) ----------------------------------------------------------
# An experiment's `resources` in params.yaml say what one of its training jobs needs; the functions
# below turn that into the resource names of snakemake-executor-plugin-slurm (2.8): slurm_partition,
# runtime (minutes), mem_mb, cpus_per_task, gpu (sbatch --gpus=N) and nodes. An evaluate job takes
# its GPU and CPUs from its experiment's `resources`, and evaluate and prepare_data jobs take their
# runtime and memory from the plan's estimate (circle_repro.plan.jobs). Local runs (profiles/default)
# ignore them: Snakemake constrains only --cores and what --resources names.

STEP_RESOURCES: dict[str, dict[str, int]] = {
    "prepare_data": {"runtime": 60, "mem_mb": 4000, "cpus_per_task": 1},
    "evaluate": {"runtime": 30, "mem_mb": 8000, "cpus_per_task": 1},
    "report": {"runtime": 30, "mem_mb": 4000, "cpus_per_task": 1},
}
"""The resources of the steps besides training, by rule name: the report's as they are; for prepare_data
and evaluate the floor under the runtime and memory derived from the plan (:func:`prepare_resources`,
:func:`evaluate_resources`), and what they get where nothing could be estimated."""


def train_resources(
    study: Study, experiment: str, throughput: Throughput | None = None, rates: JobRates | None = None
) -> dict[str, Any]:
    """The Snakemake resources of one training job of ``experiment``, in the slurm plugin's names.

    A training job is one task on one node: ``torchrun`` (more than one GPU) starts one process per
    GPU itself, so the job asks for ``gpus x cpus_per_gpu`` CPUs and ``gpus x mem_mb_per_gpu``
    memory for that task, and sets no ``tasks`` (the plugin would turn it into ``--ntasks-per-gpu``).
    ``slurm_partition`` is present only when the experiment names one. A GPU experiment that declares
    no ``runtime_min`` gets the plan's estimate of one run (:func:`circle_repro.plan.jobs.estimate_training`,
    from ``throughput`` and ``rates``) times the safety factor, the default ``runtime_min`` at least.
    """
    exp = study.experiment(experiment)
    request = exp.resources
    workers = max(request["gpus"], 1)
    resources: dict[str, Any] = {
        "runtime": request["runtime_min"],
        "mem_mb": request["mem_mb_per_gpu"] * workers,
        "cpus_per_task": request["cpus_per_gpu"] * workers,
        "nodes": 1,
    }
    if request["gpus"] > 0:
        resources["gpu"] = request["gpus"]
    if request["partition"] is not None:
        resources["slurm_partition"] = request["partition"]
    declares_runtime = "runtime_min" in exp.spec.get("resources", {})
    if request["gpus"] > 0 and not declares_runtime and throughput is not None:
        from circle_repro.plan.jobs import derived_runtime_min, estimate_training, run_schedule

        sources = load_sources()
        images = run_schedule(study, experiment, sources).images
        estimate = estimate_training(study, experiment, images, throughput, rates, sources, resources)
        resources["runtime"] = derived_runtime_min(estimate.hours, request["runtime_min"])
    return resources


def train_rule_resources(
    study: Study, throughput: Throughput | None = None, rates: JobRates | None = None
) -> dict[str, Any]:
    """The train rule's ``resources:``: one function of the wildcards per resource name.

    Names are the union over the study's experiments; an experiment without a name (a CPU job's
    ``gpu``, an unset ``slurm_partition``) gets None, which Snakemake drops. A name no experiment
    uses is not declared at all, so the profile's default-resources still apply to it. Hence a
    ``partition: null`` job goes to the profile's default ``slurm_partition`` when no experiment of
    the run names a partition, and to the cluster's default partition when another one does.
    """
    return _per_wildcard(
        "train", "experiment", study.experiments, lambda name: train_resources(study, name, throughput, rates)
    )


def step_resources(rule: str) -> dict[str, int]:
    """The fixed resources of a step (``prepare_data``, ``evaluate``, ``report``)."""
    return dict(STEP_RESOURCES[rule])


def evaluate_resources(
    study: Study, experiment: str, throughput: Throughput | None, rates: JobRates | None
) -> dict[str, Any]:
    """The Snakemake resources of one evaluate job of ``experiment``, in the slurm plugin's names.

    An experiment whose training uses GPUs evaluates on one GPU with its ``cpus_per_gpu`` CPUs (loader
    workers) in its partition; otherwise on one CPU. Runtime and memory: the plan's estimate of the job
    (:func:`circle_repro.plan.jobs.estimate_evaluation`, from the test set's size) times the safety factor,
    ``STEP_RESOURCES["evaluate"]`` at least. ``throughput``/``rates`` None: not estimated, the floor.
    """
    from circle_repro.plan.jobs import derived_mem_mb, derived_runtime_min, estimate_evaluation

    request = study.experiment(experiment).resources
    resources: dict[str, Any] = step_resources("evaluate")
    if request["gpus"] > 0:
        resources |= {"cpus_per_task": request["cpus_per_gpu"], "gpu": 1}
        if request["partition"] is not None:
            resources["slurm_partition"] = request["partition"]
    estimate = estimate_evaluation(study, experiment, throughput, rates, load_sources(), resources)
    resources["runtime"] = derived_runtime_min(estimate.hours, resources["runtime"])
    resources["mem_mb"] = derived_mem_mb(estimate.mem_mb, resources["mem_mb"])
    return resources


def prepare_resources(dataset: str, rates: JobRates | None) -> dict[str, Any]:
    """The Snakemake resources of ``dataset``'s prepare_data job: one CPU, the runtime the plan estimates
    from its image count (:func:`circle_repro.plan.jobs.estimate_preparation`) times the safety factor,
    ``STEP_RESOURCES["prepare_data"]`` at least."""
    from circle_repro.plan.jobs import derived_runtime_min, estimate_preparation

    resources: dict[str, Any] = step_resources("prepare_data")
    estimate = estimate_preparation(dataset, load_sources()[dataset], rates, resources)
    resources["runtime"] = derived_runtime_min(estimate.hours, resources["runtime"])
    return resources


def _per_wildcard(
    rule: str, key: str, values: Iterable[str], resources_of: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """One function of the wildcards per resource name that ``resources_of`` gives some of ``values``
    (the wildcard ``key``'s values); a job without a name gets None, which Snakemake drops."""
    resources_of = cache(resources_of)
    names = sorted({name for value in values for name in resources_of(value)})

    def resource(name: str) -> Any:
        def value(wildcards: Any) -> Any:
            return resources_of(getattr(wildcards, key)).get(name)

        value.__name__ = f"{rule}_{name}"
        return value

    return {name: resource(name) for name in names}


def job_rates(throughput_file: str | Path, rates_file: str | Path) -> tuple[Throughput | None, JobRates | None]:
    """The measured throughput and job rates the derived resources use; None for a file that is absent."""
    from circle_repro.plan.inputs import load_throughput
    from circle_repro.plan.rates import load_rates

    throughput = load_throughput(throughput_file) if Path(throughput_file).is_file() else None
    return throughput, load_rates(rates_file) if Path(rates_file).is_file() else None


def evaluate_rule_resources(study: Study, throughput: Throughput | None, rates: JobRates | None) -> dict[str, Any]:
    """The evaluate rule's ``resources:``, per experiment (:func:`evaluate_resources`)."""
    return _per_wildcard(
        "evaluate",
        "experiment",
        study.experiments,
        lambda name: evaluate_resources(study, name, throughput, rates),
    )


def prepare_rule_resources(study: Study, rates: JobRates | None) -> dict[str, Any]:
    """The prepare_data rule's ``resources:``, per data set of the study (:func:`prepare_resources`)."""
    return _per_wildcard("prepare_data", "dataset", study.dataset_names, lambda name: prepare_resources(name, rates))


def evaluate_threads(study: Study, experiment: str) -> int:
    """Threads of an evaluate job: the CPUs it asks for (the metric runs after the embedding)."""
    request = study.experiment(experiment).resources
    return request["cpus_per_gpu"] if request["gpus"] > 0 else STEP_RESOURCES["evaluate"]["cpus_per_task"]


def train_launch_prefix(study: Study, experiment: str) -> str:
    """The command that, followed by ``train ...``, starts a training job of ``experiment``.

    More than one GPU: ``torchrun`` on one node, one process per GPU, each running the CLI module;
    otherwise the plain ``circle-repro`` entry point.
    """
    gpus = study.experiment(experiment).resources["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m circle_repro.cli"
    return "circle-repro"


def train_launcher_args(study: Study, experiment: str) -> str:
    """The options that tell ``circle-repro train`` how it was launched (empty for one process)."""
    return "--launcher pytorch" if study.experiment(experiment).resources["gpus"] > 1 else ""
