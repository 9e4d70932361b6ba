"""What a profile costs before it runs: preparation, training and evaluation hours, disk and missing data per table.

Training hours of a run = its images / (its GPUs x min(the backbone's measured training images/s on one
GPU, the data set's decode rate per core x CPUs per GPU)) + its validations (:mod:`circle_repro.plan.jobs`).
The images come from the ``train:`` schedule (``iterations``, or ``epochs`` x iterations per epoch) times
the P x K batch of each of its ``resources.gpus`` ranks; an epoch of a P x K sampler is about (train
images) / (P x K) batches per rank. The train-set size is the prepared manifest's train split where the
data set is prepared, else the count ``data/sources.yaml`` documents. The GPU rate is a
``benchmarks/train_throughput.py --out`` file (forward + loss + backward + step on an in-memory batch);
the CPU rates are ``benchmarks/job_rates.yaml``. An experiment with ``trained_by`` trains nothing: its
trainer's hours and checkpoints are counted once, at the trainer. Every run has an evaluate job, and every
data set a prepare_data job (counted in each table that uses it).

Each job's estimate is checked against the resources its rule declares: a training job's from
params.yaml, an evaluate or prepare_data job's derived from this estimate (``workflow.evaluate_resources``,
``workflow.prepare_resources``). :attr:`Plan.exceeding` lists the jobs whose declared runtime or memory
does not cover the estimate times ``jobs.SAFETY_FACTOR``.

Disk: each data set's declared download size (``size_bytes`` of its required files in sources.yaml),
and per run the files training keeps: ``model_init.pth`` and ``model.pth`` (the state dict each) plus
``CHECKPOINTS_KEPT`` mmengine checkpoints (the state dict and the optimizer's per-parameter state).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from circle_repro.config import Study
from circle_repro.data.sources import Source, load_sources
from circle_repro.data.status import dataset_status, format_size, unavailable_reason
from circle_repro.io import write_json
from circle_repro.layout import DATA_ROOT, STEPS
from circle_repro.plan.actual import FIGURES, GROUPS, ActualHours, actual_hours, experiment_group
from circle_repro.plan.inputs import Throughput, download_bytes, run_disk_bytes, train_class_count, training_input
from circle_repro.plan.jobs import (
    SAFETY_FACTOR,
    JobEstimate,
    estimate_evaluation,
    estimate_preparation,
    estimate_training,
    run_schedule,
)
from circle_repro.plan.rates import JobRates
from circle_repro.workflow import evaluate_resources, prepare_resources, train_resources


@dataclass(frozen=True)
class ExperimentPlan:
    """One experiment's runs, schedule, training and evaluate jobs, GPU-hours and checkpoint disk (None: not
    estimated). ``images_per_s`` is one GPU's training rate with data loading; ``compute_images_per_s`` its
    measured compute rate."""

    name: str
    group: str
    train_dataset: str
    trained_by: str | None
    backbone: str
    losses: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: int
    gpus: int
    batch_per_gpu: int
    train_images: int | None
    train_images_from: str
    iterations_per_run: int | None
    images_per_run: int | None
    compute_images_per_s: float | None
    images_per_s: float | None
    gpu_hours_per_run: float | None
    gpu_hours: float | None
    runtime_limit_min: int
    checkpoint_bytes: int | None
    train: JobEstimate | None
    evaluate: JobEstimate
    notes: tuple[str, ...]


@dataclass(frozen=True)
class DatasetPlan:
    """One data set a table needs: its state under the data root, why it is missing, its prepare_data job."""

    name: str
    title: str
    access: str
    state: str
    download_bytes: int | None
    on_disk_bytes: int
    missing: str | None
    prepare: JobEstimate


def _total(jobs: list[JobEstimate], attribute: str) -> tuple[float, tuple[str, ...]]:
    values = [(job.name, getattr(job, attribute)) for job in jobs]
    return sum(v for _, v in values if v is not None), tuple(name for name, v in values if v is None)


@dataclass(frozen=True)
class TablePlan:
    """One paper table (or the figures' sweeps) of a profile: its experiments, data and totals."""

    table: str
    experiments: tuple[ExperimentPlan, ...]
    datasets: tuple[DatasetPlan, ...]
    runs: int
    gpu_hours: float
    not_estimated: tuple[str, ...]
    data_bytes: int
    data_size_unknown: tuple[str, ...]
    checkpoint_bytes: int | None

    @property
    def jobs(self) -> list[JobEstimate]:
        """Every job estimate of the table: its data sets' preparations, its trainings and evaluations."""
        trains = [e.train for e in self.experiments if e.train is not None]
        return [d.prepare for d in self.datasets] + trains + [e.evaluate for e in self.experiments]

    def hours(self, rule: str) -> tuple[float, tuple[str, ...]]:
        """Wall hours of the table's jobs of ``rule`` (all runs), and the jobs not estimated."""
        return _total([job for job in self.jobs if job.rule == rule], "total_hours")

    def step_gpu_hours(self, rule: str) -> tuple[float, tuple[str, ...]]:
        """GPU-hours of the table's jobs of ``rule``, and the jobs not estimated."""
        return _total([job for job in self.jobs if job.rule == rule], "gpu_hours")


@dataclass(frozen=True)
class Plan:
    """The cost of a profile, table by table."""

    profile: str
    throughput: Throughput | None
    rates: JobRates | None
    tables: tuple[TablePlan, ...]

    @property
    def runs(self) -> int:
        return sum(table.runs for table in self.tables)

    @property
    def trained_runs(self) -> int:
        """Runs that train (the others evaluate a ``trained_by`` experiment's weights)."""
        return sum(e.runs for table in self.tables for e in table.experiments if e.trained_by is None)

    @property
    def gpu_hours(self) -> float:
        """Training GPU-hours (with data loading and validation) of the profile."""
        return sum(table.gpu_hours for table in self.tables)

    @property
    def exceeding(self) -> dict[str, str]:
        """``rule name`` -> why, for each job whose declared resources do not cover its estimate x the
        safety factor (a data set several tables use is listed once)."""
        found = {f"{job.rule} {job.name}": job.exceeds for table in self.tables for job in table.jobs}
        return {job: why for job, why in found.items() if why is not None}

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, with the profile's totals."""
        totals = {"runs": self.runs, "trained_runs": self.trained_runs, "gpu_hours": round(self.gpu_hours, 4)}
        data = totals | {"safety_factor": SAFETY_FACTOR, "exceeding": self.exceeding, **asdict(self)}
        for table, written in zip(self.tables, data["tables"], strict=True):
            written["hours"] = {rule: round(table.hours(rule)[0], 4) for rule in STEPS}
        return data


def plan_experiment(
    study: Study,
    name: str,
    throughput: Throughput | None,
    rates: JobRates | None = None,
    *,
    data_root: Path | None = None,
    sources: dict[str, Source] | None = None,
    checkpoints: bool = True,
) -> ExperimentPlan:
    """The plan of one experiment of ``study``; ``checkpoints=False`` skips building its models.

    An experiment with ``trained_by`` trains nothing: its GPU-hours and checkpoints are its trainer's.
    ``rates`` None: the training rate is the GPU compute rate alone and nothing else is estimated.
    """
    sources = load_sources() if sources is None else sources
    exp = study.experiment(name)
    dataset, train, backbone = exp.train_dataset, exp.spec["train"], exp.model["backbone"]
    declared = train_resources(study, name, throughput, rates)
    gpus, batch = exp.resources["gpus"], exp.batch_images
    runs = exp.runs
    schedule = run_schedule(study, name, sources, data_root)
    evaluate = estimate_evaluation(
        study, name, throughput, rates, sources, evaluate_resources(study, name, throughput, rates), data_root
    )
    common = dict(
        name=name, group=experiment_group(exp), train_dataset=dataset, trained_by=exp.trained_by,
        backbone=backbone, losses=tuple(exp.losses), seeds=exp.seeds, runs=len(runs), gpus=gpus,
        batch_per_gpu=batch, train_images=schedule.train_images, train_images_from=schedule.train_images_from,
        runtime_limit_min=declared["runtime"], evaluate=evaluate,
    )  # fmt: skip
    if exp.trained_by is not None:
        note = f"evaluates the weights of {exp.trained_by}: its training hours and checkpoints are counted there"
        return ExperimentPlan(
            **common, iterations_per_run=None, images_per_run=None, compute_images_per_s=None, images_per_s=None,
            gpu_hours_per_run=0.0, gpu_hours=0.0, checkpoint_bytes=0, train=None, notes=(note,),
        )  # fmt: skip

    notes: list[str] = []
    iterations, images_per_run = schedule.iterations, schedule.images
    if iterations is None:
        notes.append(f"train images unknown: {schedule.train_images_from}")
    compute = throughput.images_per_s.get(backbone) if throughput is not None else None
    job = estimate_training(study, name, images_per_run, throughput, rates, sources, declared)
    hours_per_run: float | None = job.hours * gpus if job.hours is not None else None
    if gpus == 0:
        hours_per_run = 0.0
    notes += job.notes
    if compute is not None and images_per_run is not None and gpus > 0:
        measured = throughput.inputs[backbone]  # type: ignore[union-attr]
        trains_at = training_input(dataset, measured, exp.model.get("image_size"))
        if trains_at != measured:
            shape = "x".join(map(str, measured))
            notes.append(f"throughput measured at {shape} input; trains at {'x'.join(map(str, trains_at))}")
        if train.get("amp", "none") != throughput.amp:  # type: ignore[union-attr]
            notes.append(f"throughput measured with amp {throughput.amp}; trains with amp {train.get('amp', 'none')}")  # type: ignore[union-attr]
        if job.bound is not None and job.bound.startswith("decode"):
            notes.append(
                f"data-bound: {job.bound} give {job.images_per_s / gpus:,.0f} img/s per GPU, the GPU {compute:,.0f}"
            )  # type: ignore[operator]

    checkpoint_bytes = None
    if checkpoints:
        classes = train_class_count(study, dataset, sources[dataset])
        if classes is None:
            notes.append(f"checkpoint size unknown: no training class count for {dataset}")
        else:
            checkpoint_bytes = sum(run_disk_bytes(study, run, classes) for run in runs)
    return ExperimentPlan(
        **common, iterations_per_run=iterations, images_per_run=images_per_run, compute_images_per_s=compute,
        images_per_s=job.images_per_s / gpus if job.images_per_s is not None and gpus else None,
        gpu_hours_per_run=hours_per_run, gpu_hours=hours_per_run * len(runs) if hours_per_run is not None else None,
        checkpoint_bytes=checkpoint_bytes, train=job, notes=tuple(notes),
    )  # fmt: skip


def plan_dataset(source: Source, data_root: Path, rates: JobRates | None = None) -> DatasetPlan:
    """A data set's state under ``data_root``, its download size, why it is missing (None: it is not) and
    its prepare_data job."""
    status = dataset_status(source, data_root)
    missing = unavailable_reason(source, data_root)
    if missing is None and status.state == "missing" and source.access == "download":
        size = download_bytes(source)
        missing = (
            f"not downloaded: the prepare_data job fetches it ({format_size(size) if size else 'size not declared'})"
        )
    prepare = estimate_preparation(source.name, source, rates, prepare_resources(source.name, rates))
    return DatasetPlan(
        source.name,
        source.title,
        source.access,
        status.state,
        download_bytes(source),
        status.size_bytes,
        missing,
        prepare,
    )


def make_plan(
    study: Study,
    throughput: Throughput | None,
    data_root: str | Path = DATA_ROOT,
    *,
    rates: JobRates | None = None,
    sources: dict[str, Source] | None = None,
    checkpoints: bool = True,
) -> Plan:
    """The plan of every table of the study's profile (tables without an experiment included, empty)."""
    sources = load_sources() if sources is None else sources
    data_root = Path(data_root)
    experiments = [
        plan_experiment(study, name, throughput, rates, data_root=data_root, sources=sources, checkpoints=checkpoints)
        for name in study.experiments
    ]
    tables = []
    for group in GROUPS:
        members = tuple(e for e in experiments if e.group == group)
        if group == FIGURES and not members:
            continue
        names = [d for e in members for d in study.experiments[e.name].datasets]
        datasets = tuple(plan_dataset(sources[name], data_root, rates) for name in dict.fromkeys(names))
        disk = [e.checkpoint_bytes for e in members]
        tables.append(
            TablePlan(
                table=group,
                experiments=members,
                datasets=datasets,
                runs=sum(e.runs for e in members),
                gpu_hours=sum(e.gpu_hours for e in members if e.gpu_hours is not None),
                not_estimated=tuple(e.name for e in members if e.gpu_hours is None),
                data_bytes=sum(d.download_bytes for d in datasets if d.download_bytes is not None),
                data_size_unknown=tuple(d.name for d in datasets if d.download_bytes is None),
                checkpoint_bytes=None if None in disk else sum(disk),  # type: ignore[arg-type]
            )
        )
    return Plan(study.profile, throughput, rates, tuple(tables))


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan as JSON, atomically."""
    write_json(path, plan.as_dict())
    return Path(path)


@dataclass(frozen=True)
class PlannedVsActual:
    """One table's planned GPU-hours (over the experiments not in ``not_estimated``), the notes of its
    experiments' estimates, and its actual hours."""

    table: str
    planned_gpu_hours: float
    not_estimated: tuple[str, ...]
    notes: dict[str, str]
    actual: ActualHours


def planned_vs_actual(
    study: Study,
    throughput: Throughput | None,
    benchmark_root: str | Path | None = ".",
    data_root: str | Path | None = None,
    rates: JobRates | None = None,
) -> list[PlannedVsActual]:
    """Per table of :func:`actual_hours`, the planned training GPU-hours beside the actual ones (no models built)."""
    data_root = Path(data_root) if data_root is not None else None
    plans = [
        plan_experiment(study, name, throughput, rates, data_root=data_root, checkpoints=False)
        for name in study.experiments
    ]
    rows = []
    for table, actual in actual_hours(study, benchmark_root).items():
        members = [e for e in plans if e.group == table]
        rows.append(
            PlannedVsActual(
                table=table,
                planned_gpu_hours=sum(e.gpu_hours for e in members if e.gpu_hours is not None),
                not_estimated=tuple(e.name for e in members if e.gpu_hours is None),
                notes={e.name: "; ".join(e.notes) for e in members if e.notes},
                actual=actual,
            )
        )
    return rows


__all__ = [
    "DatasetPlan",
    "ExperimentPlan",
    "Plan",
    "PlannedVsActual",
    "TablePlan",
    "make_plan",
    "plan_dataset",
    "plan_experiment",
    "planned_vs_actual",
    "write_plan",
]
