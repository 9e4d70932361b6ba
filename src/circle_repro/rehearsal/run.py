"""The rehearsal: synthetic raw data at a fraction of the real sizes, the paper DAG's jobs on it through the CLI,
each job's throughput recorded and extrapolated to scale 1 against its declared resources."""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circle_repro.config import RunSpec, Study, load_study
from circle_repro.data.sources import load_sources
from circle_repro.io import atomic_open, write_json
from circle_repro.layout import PREPARED_ROOT, RAW_ROOT, RUNS_ROOT, STEPS, evaluation_dir
from circle_repro.plan.inputs import Throughput
from circle_repro.plan.jobs import SAFETY_FACTOR
from circle_repro.plan.rates import JobRates
from circle_repro.rehearsal import steps
from circle_repro.rehearsal.extrapolate import Extrapolation, embeddings_per_image, extrapolate
from circle_repro.rehearsal.params import PROFILE, write_rehearsal_params
from circle_repro.rehearsal.scale import Scale
from circle_repro.rehearsal.writers import write_raw
from circle_repro.workflow import evaluate_resources

RECORD_JSON = "rehearsal.json"
RECORD_CSV = "rehearsal.csv"
CSV_COLUMNS = ("rule", "name", "experiment", "seconds", "images", "images_per_s", "loop_images_per_s",
               "full_images", "full_hours", "declared_runtime_min", "exceeds")  # fmt: skip


@dataclass
class Rehearsal:
    """What a rehearsal measured and where it left its files."""

    out_dir: Path
    scale: float
    results: list[Extrapolation] = field(default_factory=list)

    @property
    def exceeding(self) -> list[Extrapolation]:
        return [result for result in self.results if result.exceeds]


def select_runs(study: Study, tables: list[str] | None, every_run: bool) -> list[RunSpec]:
    """The runs of ``study`` to evaluate: of the experiments of ``tables`` (None: all), each experiment's first run
    unless ``every_run`` (its runs differ only in loss and seed, so they share one job shape)."""
    chosen, seen = [], set()
    for run in study.runs:
        if tables is not None and study.experiment(run.experiment).table not in tables:
            continue
        if every_run or run.experiment not in seen:
            chosen.append(run)
            seen.add(run.experiment)
    if not chosen:
        raise ValueError(f"no paper experiment fills the tables {tables}; tables: table1 ... table5")
    return chosen


def _floors(study: Study, runs: list[RunSpec]) -> dict[str, tuple[int, int]]:
    """Per data set of ``runs``, the P and K floors of the samplers that train on it (2 and 2 for a test set)."""
    floors: dict[str, tuple[int, int]] = {}
    for run in runs:
        for name in study.experiment(run.experiment).datasets:
            floors.setdefault(name, (2, 2))
        trainer = study.experiment(study.training_run(run).experiment)
        sampler = trainer.spec["sampler"]
        p, k = floors.get(trainer.train_dataset, (2, 2))
        floors[trainer.train_dataset] = (max(p, sampler["p"]), max(k, sampler["k"]))
    return floors


def machine() -> dict[str, Any]:
    """The machine the rates were measured on."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"host": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}


def rehearse(
    params_file: str | Path,
    out_dir: str | Path,
    fraction: float,
    *,
    tables: list[str] | None = None,
    iterations: int = 2,
    max_p: int | None = None,
    every_run: bool = False,
    until: str = STEPS[-1],
    throughput: Throughput | None = None,
    rates: JobRates | None = None,
    log: Any = print,
) -> Rehearsal:
    """Rehearse the paper profile of ``params_file`` in the new folder ``out_dir`` at scale ``fraction``, its
    steps up to ``until`` (``prepare_data``, ``train`` or ``evaluate``); write ``rehearsal.json`` and
    ``rehearsal.csv`` there (module docstring), also when a job fails (RehearsalError): then they hold the jobs
    before it and the failure (``settings.failed``)."""
    if until not in STEPS:
        raise ValueError(f"until: {until!r} is not a step of the DAG; one of {', '.join(STEPS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir}: not empty; give the rehearsal a new folder (--out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paper = load_study(params_file, PROFILE)
    params_path = out_dir / "params.yaml"
    study = write_rehearsal_params(params_file, params_path, iterations=iterations, max_p=max_p)
    options = ["--params", str(params_path), "--profile", PROFILE]
    runs = select_runs(study, tables, every_run)
    sources = load_sources()
    rehearsal = Rehearsal(out_dir, fraction)

    def record(step: steps.Step) -> None:
        result = extrapolate(step, paper, sources, throughput, rates)
        rehearsal.results.append(result)
        log(f"{step.rule} {step.name}: {step.images} images in {step.seconds:.1f} s ({step.images_per_s:.1f}/s)")

    settings = {"iterations": iterations, "max_p": max_p, "tables": tables, "every_run": every_run, "until": until}
    steps_run = STEPS[: STEPS.index(until) + 1]
    trainers = sorted({study.training_run(run) for run in runs}) if "train" in steps_run else []
    evaluated = runs if "evaluate" in steps_run else []
    try:
        prepared = out_dir / PREPARED_ROOT
        for dataset, (p, k) in sorted(_floors(study, runs).items()):
            raw = out_dir / RAW_ROOT / dataset
            written = write_raw(dataset, raw, Scale(fraction, min_classes=p, min_per_class=k))
            record(steps.prepare(dataset, raw, prepared / dataset, options, written))
        runs_root = out_dir / RUNS_ROOT
        for trainer in trainers:
            dataset = study.experiment(trainer.experiment).train_dataset
            record(
                steps.train(trainer.run_id, trainer.experiment, prepared / dataset, trainer.run_dir(runs_root), options)
            )
        for run in evaluated:
            dataset = study.experiment(run.experiment).dataset
            cpus = evaluate_resources(paper, run.experiment, None, None)["cpus_per_task"]
            record(
                steps.evaluate(
                    run.run_id, run.experiment, prepared / dataset, study.training_run(run).run_dir(runs_root),
                    evaluation_dir(run.run_dir(runs_root)), options, embeddings_per_image=embeddings_per_image(study, run.experiment),
                    cpus=cpus,
                )
            )  # fmt: skip
    except steps.RehearsalError as exc:  # the jobs measured so far are kept, with the failure
        write_record(rehearsal, settings | {"failed": str(exc)})
        raise
    write_record(rehearsal, settings)
    return rehearsal


def write_record(rehearsal: Rehearsal, settings: dict[str, Any]) -> tuple[Path, Path]:
    """``rehearsal.json`` (settings, machine, every step with its extrapolation) and ``rehearsal.csv`` (one row
    per step) in the rehearsal's folder."""
    results = [result.as_dict() for result in rehearsal.results]
    record = {"scale": rehearsal.scale, "safety_factor": SAFETY_FACTOR, "settings": settings,
              "machine": machine(), "steps": results}  # fmt: skip
    json_path = rehearsal.out_dir / RECORD_JSON
    write_json(json_path, record)
    csv_path = rehearsal.out_dir / RECORD_CSV
    with atomic_open(csv_path) as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in results:
            writer.writerow(row | {"declared_runtime_min": row["declared"].get("runtime")})
    return json_path, csv_path


def format_rehearsal(rehearsal: Rehearsal) -> str:
    """The measured steps and their extrapolation to scale 1 as a text table."""
    header = (f"{'rule':<13} {'job':<40} {'images':>8} {'s':>8} {'img/s':>8} {'images@1':>11} "
              f"{'hours@1':>9} {'declared':>22}  verdict")  # fmt: skip
    lines = [f"rehearsal at scale {rehearsal.scale:g} on {machine()['device']} ({os.cpu_count()} CPUs)", header]
    for result in rehearsal.results:
        step, declared = result.step, result.declared
        shape = f"{declared['runtime']} min, {declared['cpus_per_task']} CPU" + (
            f", {declared['gpu']} GPU" if declared.get("gpu") else ""
        )
        full = "?" if result.full_images is None else f"{result.full_images:,}"
        hours = "?" if result.hours is None else f"{result.hours:.2f}"
        verdict = f"EXCEEDS: {result.exceeds}" if result.exceeds else "fits"
        lines.append(
            f"{step.rule:<13} {step.name:<40} {step.images:>8} {step.seconds:>8.1f} {step.images_per_s:>8.1f} "
            f"{full:>11} {hours:>9} {shape:>22}  {verdict}"
        )
    lines.append(
        f"{len(rehearsal.exceeding)} of {len(rehearsal.results)} jobs would exceed their declared runtime "
        f"(x {SAFETY_FACTOR}) at the rates measured here"
    )
    return "\n".join(lines)


__all__ = ["RECORD_CSV", "RECORD_JSON", "Rehearsal", "format_rehearsal", "rehearse", "select_runs", "write_record"]
