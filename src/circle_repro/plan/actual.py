"""What a profile's jobs took: wall hours from the Snakemake ``benchmark:`` files of its jobs.

The train, evaluate and prepare_data rules write them to ``*_BENCHMARK`` (the paths in :mod:`circle_repro.layout`;
``workflow/rules/*.smk``); they are read where they lie, not as inputs of the report job. A job that
was killed and resubmitted keeps only its last attempt's file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circle_repro.config import Experiment, Study
from circle_repro.layout import DATA_BENCHMARK, EVALUATE_BENCHMARK, TRAIN_BENCHMARK
from circle_repro.workflow import TABLES

FIGURES = "figures"
"""The group of sweep experiments (Fig. 3), which fill no table."""
GROUPS = (*TABLES, FIGURES)


def experiment_group(experiment: Experiment) -> str:
    """The table an experiment fills, or ``FIGURES`` for a sweep."""
    return FIGURES if experiment.is_sweep else str(experiment.table)


@dataclass(frozen=True)
class Benchmark:
    """One Snakemake benchmark file: wall seconds (all its rows, i.e. repeats, summed) and peak RSS."""

    path: str
    seconds: float
    max_rss_mb: float | None


def read_benchmark(path: str | Path) -> Benchmark:
    """Parse a Snakemake benchmark TSV (columns ``s``, ``h:m:s``, ``max_rss``, ...; one row per repeat)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no rows or no 's' column)")
    try:
        seconds = sum(float(row["s"]) for row in rows)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column 's' holds a value that is not a number") from None
    rss = [_number(row.get("max_rss")) for row in rows]
    known = [value for value in rss if value is not None]
    return Benchmark(str(path), seconds, max(known) if known else None)


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ActualHours:
    """What one table's jobs took, from their benchmark files (wall hours; GPU-hours = train wall x GPUs)."""

    table: str
    runs: int
    runs_measured: int
    train_hours: float
    train_gpu_hours: float
    evaluate_hours: float
    data_hours: float
    unreadable: tuple[str, ...]


def actual_hours(study: Study, root: str | Path | None = ".") -> dict[str, ActualHours]:
    """Per table (and ``FIGURES``) of the study: the benchmark files under ``root`` of its runs' train and
    evaluate jobs and of its data sets' prepare_data jobs, summed (a data set several tables use counts in
    each). A run counts as measured once a file of its own jobs exists (a ``trained_by`` run has no train
    job); unreadable files are listed, not counted. ``root`` None: no file is looked for."""
    totals = {group: dict(runs=0, measured=0, train=0.0, gpu=0.0, evaluate=0.0, data=0.0) for group in GROUPS}
    unreadable: dict[str, list[str]] = {group: [] for group in GROUPS}

    def hours(pattern: str, group: str, **names: Any) -> float | None:
        path = Path(root, pattern.format(**names)) if root is not None else None
        if path is None or not path.is_file():
            return None
        try:
            return read_benchmark(path).seconds / 3600
        except (OSError, ValueError, UnicodeDecodeError):
            unreadable[group].append(str(path))
            return None

    typed = study.experiments
    for run in study.runs:
        experiment = typed[run.experiment]
        group, names = experiment_group(experiment), dict(experiment=run.experiment, loss=run.loss, seed=run.seed)
        found = totals[group]
        found["runs"] += 1
        train = None if experiment.trained_by else hours(TRAIN_BENCHMARK, group, **names)
        evaluate = hours(EVALUATE_BENCHMARK, group, **names)
        found["measured"] += train is not None or evaluate is not None
        found["train"] += train or 0.0
        found["gpu"] += (train or 0.0) * experiment.resources["gpus"]
        found["evaluate"] += evaluate or 0.0
    for group in GROUPS:
        members = [experiment for experiment in typed.values() if experiment_group(experiment) == group]
        datasets = dict.fromkeys(name for experiment in members for name in experiment.datasets)
        totals[group]["data"] = sum(hours(DATA_BENCHMARK, group, dataset=name) or 0.0 for name in datasets)
    return {
        group: ActualHours(
            group,
            int(t["runs"]),
            int(t["measured"]),
            t["train"],
            t["gpu"],
            t["evaluate"],
            t["data"],
            tuple(unreadable[group]),
        )
        for group, t in totals.items()
        if t["runs"] or group != FIGURES
    }
