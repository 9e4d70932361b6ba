"""Every run the params define, with its evaluation result read from MLflow or its metrics.json.

MLflow is asked first: the newest run of the tracking experiment tagged with the run's ``run_id``
and its current ``config_hash``, whose ``metrics.json`` (and ``per_query.npz``) artifacts hold the
result. The run's own metrics.json file is the fallback. A missing store, a run without metrics, a
half-written, malformed or stale file each leave the run without metrics and with a ``note`` that
says why, so the report can print it where the run's numbers would stand; no run is dropped.

Each run's metrics of its initial, untrained weights stand for the pseudo-loss ``UNTRAINED``, one
per (experiment, seed): runs that share a seed share their initial weights.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from circle_repro.config import RunSpec, Study, config_hash
from circle_repro.engine.errors import TrackingStoreUnreachable
from circle_repro.engine.tracking import PROBE_TIMEOUT_S, SQLITE_PREFIX, check_tracking_store
from circle_repro.generations import file_digest
from circle_repro.layout import (
    EVALUATION_DIRNAME,
    METRICS_FILENAME,
    PER_QUERY_FILENAME,
    headline_metrics,
    run_dir_of,
)
from circle_repro.records import MetricsRecord, RecordError

UNTRAINED = "untrained network"
PROVENANCE_KEYS = ("git_commit", "config_hash", "data_hash", "device")


@dataclass(frozen=True)
class RunResult:
    """One run and what the report could read of it; ``metrics`` is empty when nothing usable was found."""

    run: RunSpec
    metrics: Mapping[str, float] = field(default_factory=dict)
    untrained: Mapping[str, float] = field(default_factory=dict)
    source: str = ""  # "MLflow" or "metrics.json"; "" without metrics
    mlflow_run_id: str = ""
    weights_uri: str = ""  # where the trained weights are logged (the training run's model.pth artifact)
    provenance: Mapping[str, str] = field(default_factory=dict)  # PROVENANCE_KEYS, "" where unknown
    per_query: Mapping[str, np.ndarray] | None = None  # ids + per-query arrays (layout.PER_QUERY_FILENAME)
    run_dir: Path | None = None  # the run folder above its metrics.json's evaluation folder, for the figures' inputs
    note: str = ""  # why metrics are missing, or where they came from when MLflow had none
    trivial: tuple[str, ...] = ()  # why its metrics are trivial for its test input (metrics.json "trivial")


@dataclass(frozen=True)
class Results:
    """All runs of the study in :attr:`~circle_repro.config.Study.runs` order, where they were read from, and
    report-wide problems."""

    runs: list[RunResult]
    source: str
    problems: list[str]

    def of(self, experiment: str, loss: str) -> list[RunResult]:
        """The runs of one loss row, in seed order."""
        return [r for r in self.runs if r.run.experiment == experiment and r.run.loss == loss]


class StoreUnavailable(Exception):
    """The MLflow tracking store cannot be read; the message says why."""


def load_results(study: Study, metrics_files: Iterable[str | Path], tracking_uri: str | None = None) -> Results:
    """Read the result of every run of ``study``: MLflow at ``tracking_uri`` first (None: files only)."""
    runs = study.runs
    files, problems = _files_by_run(metrics_files, {run.run_id for run in runs})
    store: _Store | None = None
    store_note = ""
    if tracking_uri is None:
        source = "Results are read from the runs' metrics.json files (no MLflow store given)."
    else:
        try:
            store = _Store(tracking_uri, study.tracking_experiment)
            source = (
                f"Results are read from the MLflow store {tracking_uri} (experiment "
                f"{study.tracking_experiment!r}, runs found by their run_id and config_hash tags), "
                "with the runs' metrics.json files as the fallback."
            )
        except StoreUnavailable as exc:
            store_note = str(exc)
            source = f"{exc}: results are read from the runs' metrics.json files instead."
    results = []
    for run in runs:
        expected_hash = config_hash(study.train_config(run))
        path = files.get(run.run_id)
        notes = [store_note]
        result = None
        if store is not None:
            result, why = store.result(run, expected_hash)
            notes.append(why)
        if result is None:
            result, why = _from_file(run, path, expected_hash) if path else (None, "no metrics.json given")
            notes.append(why)
        note = "; ".join(n for n in notes if n)
        results.append(replace(result or RunResult(run), note=note, run_dir=run_dir_of(path) if path else None))
    problems += [f"{r.run.run_id}: trivial metrics: {reason}" for r in results for reason in r.trivial]
    return Results(results, source, problems)


def _run_of_path(path: Path) -> str | None:
    """``experiment/loss/seedN`` from a path ending in ``<experiment>/<loss>/seed<N>/evaluation/metrics.json``."""
    parts = path.parts
    if len(parts) >= 5 and parts[-2:] == (EVALUATION_DIRNAME, METRICS_FILENAME) and re.fullmatch(r"seed\d+", parts[-3]):
        return "/".join(parts[-5:-2])
    return None


def _files_by_run(metrics_files: Iterable[str | Path], known: set[str]) -> tuple[dict[str, Path], list[str]]:
    """Map each metrics file to its run id (from its content, else its path); list the files that fit no run."""
    files, problems = {}, []
    for name in metrics_files:
        path = Path(name)
        record = _read_json(path)
        run_id = record.get("run_id") if isinstance(record, dict) else None
        run_id = run_id if isinstance(run_id, str) and run_id in known else _run_of_path(path)
        if run_id not in known:
            problems.append(f"{path}: belongs to no run of the params; ignored")
        elif run_id in files:
            problems.append(f"{path}: a second metrics file for run {run_id} (first: {files[run_id]}); ignored")
        else:
            files[run_id] = path
    return files, problems


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _parse_record(data: Any, where: str, expected_hash: str) -> tuple[MetricsRecord | None, str]:
    """The record of a parsed metrics.json if it can serve as the run's result, else why not."""
    try:
        record = MetricsRecord.from_json(data, where)
    except RecordError as exc:
        return None, str(exc)
    if record.config_hash != expected_hash:
        return None, (
            f"{where} is stale: trained with config hash {record.config_hash}, the params now give "
            f"{expected_hash}; re-run train and evaluate"
        )
    return record, ""


def _result(run: RunSpec, record: MetricsRecord, **where: Any) -> RunResult:
    """The run's result from its metrics record; ``where`` says where it was read (source, provenance, ...)."""
    return RunResult(
        run,
        metrics=record.metrics,
        untrained=record.untrained_metrics,
        mlflow_run_id=record.mlflow_run_id,
        weights_uri=record.weights_uri,
        trivial=record.trivial,
        **where,
    )


def _from_file(run: RunSpec, path: Path, expected_hash: str) -> tuple[RunResult | None, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, f"no metrics.json at {path} (not evaluated)"
    except OSError as exc:
        return None, f"{path} cannot be read ({exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"{path} is half-written or not JSON ({exc}); re-run `circle-repro evaluate`"
    record, problem = _parse_record(data, str(path), expected_hash)
    if record is None or (problem := _check_arrays(record, path.parent)):
        return None, problem
    provenance = {key: str(record.provenance.get(key, "")) for key in PROVENANCE_KEYS}
    provenance["config_hash"] = record.config_hash
    per_query = load_per_query(path.parent / PER_QUERY_FILENAME)
    return _result(run, record, source="metrics.json", provenance=provenance, per_query=per_query), ""


def _check_arrays(record: MetricsRecord, folder: Path) -> str:
    """Why the array files beside a metrics.json are not the ones it was written with ("" when they are)."""
    for name, digest in record.arrays.items():
        path = folder / name
        if not path.is_file() or file_digest(path) != digest:
            return (
                f"{path} is not the file {METRICS_FILENAME} was written with (replaced or edited after the "
                "evaluation); re-run `circle-repro evaluate` for this run"
            )
    return ""


def load_per_query(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a per_query.npz, or None when it is absent or unreadable."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


class _Store:
    """The runs of one MLflow experiment, grouped by their ``run_id`` tag, newest first."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        from sqlalchemy.exc import SQLAlchemyError

        if uri.startswith(SQLITE_PREFIX) and not Path(uri[len(SQLITE_PREFIX) :]).is_file():
            raise StoreUnavailable(f"MLflow store {uri} not found")
        try:
            check_tracking_store(uri)  # a server that is down is said within seconds, not after minutes of retries
        except TrackingStoreUnreachable as exc:
            raise StoreUnavailable(f"MLflow store {uri} does not answer within {PROBE_TIMEOUT_S:g} s") from exc
        self._errors = (MlflowException, OSError, SQLAlchemyError)
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise StoreUnavailable(f"MLflow store {uri} has no experiment {experiment!r}")
            runs, token = [], None
            while True:
                page = self.client.search_runs(
                    [found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000, page_token=token
                )
                runs += list(page)
                token = page.token
                if not token:
                    break
        except self._errors as exc:
            raise StoreUnavailable(f"MLflow store {uri} cannot be read ({exc})") from exc
        self.by_run_id: dict[str, list[Any]] = {}
        for mlflow_run in runs:
            self.by_run_id.setdefault(mlflow_run.data.tags.get("run_id", ""), []).append(mlflow_run)

    def _artifact(self, mlflow_run_id: str, name: str, folder: str) -> Path | None:
        try:
            return Path(self.client.download_artifacts(mlflow_run_id, name, folder))
        except self._errors:
            return None

    def result(self, run: RunSpec, expected_hash: str) -> tuple[RunResult | None, str]:
        """The newest MLflow run of ``run`` with the current settings that holds a metrics.json, or why none."""
        candidates = self.by_run_id.get(run.run_id, [])
        if not candidates:
            return None, "no MLflow run"
        current = [c for c in candidates if c.data.tags.get("config_hash") == expected_hash]
        if not current:
            hashes = sorted({c.data.tags.get("config_hash", "?") for c in candidates})
            return None, f"MLflow has this run only with other settings (config hash {', '.join(hashes)})"
        problem = ""
        for mlflow_run in current:
            run_id = mlflow_run.info.run_id
            with tempfile.TemporaryDirectory() as folder:
                path = self._artifact(run_id, METRICS_FILENAME, folder)
                if path is None:
                    problem = problem or f"MLflow run {run_id} has no evaluation metrics (no {METRICS_FILENAME})"
                    continue
                record, problem = _parse_record(
                    _read_json(path), f"{METRICS_FILENAME} of MLflow run {run_id}", expected_hash
                )
                if record is None:
                    continue
                per_query_path = self._artifact(run_id, PER_QUERY_FILENAME, folder)
                per_query = load_per_query(per_query_path) if per_query_path else None
            tags = mlflow_run.data.tags
            provenance = {key: tags.get(key, "") for key in PROVENANCE_KEYS}
            record = replace(record, mlflow_run_id=run_id)
            return _result(run, record, source="MLflow", provenance=provenance, per_query=per_query), ""
        return None, problem


def seed_values(results: Results, experiment: str, loss: str, metric: str) -> dict[int, float]:
    """``{seed: value}`` of one metric of a loss row (the ``UNTRAINED`` row: the first loss with that seed)."""
    values: dict[int, float] = {}
    for result in results.runs:
        if result.run.experiment != experiment:
            continue
        if loss == UNTRAINED:
            if metric in result.untrained:
                values.setdefault(result.run.seed, float(result.untrained[metric]))
        elif result.run.loss == loss and metric in result.metrics:
            values[result.run.seed] = float(result.metrics[metric])
    return values


def experiment_metrics(results: Results, experiment: str) -> list[str]:
    """An experiment's metrics in evaluation order (the first is its headline), without per-fold spreads."""
    names: dict[str, None] = {}
    for result in results.runs:
        if result.run.experiment == experiment:
            names.update(dict.fromkeys(headline_metrics(result.metrics)))
    return list(names)


def per_query_pairs(
    first: Sequence[RunResult], second: Sequence[RunResult], metric: str
) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[str]]:
    """Per-query arrays of ``metric`` for the seeds both rows have, paired by query id; and what was missing."""
    by_seed = {r.run.seed: r for r in second}
    seeds, a_arrays, b_arrays, missing = [], [], [], []
    for a in first:
        b = by_seed.get(a.run.seed)
        if b is None or not a.metrics or not b.metrics:
            continue
        unusable = [r for r in (a, b) if r.per_query is None or metric not in r.per_query or "ids" not in r.per_query]
        if unusable:
            missing += [f"{r.run.run_id} (no per-query {metric})" for r in unusable]
            continue
        assert a.per_query is not None and b.per_query is not None
        if not np.array_equal(a.per_query["ids"], b.per_query["ids"]):
            missing.append(f"seed {a.run.seed} (the two runs were scored on different queries)")
            continue
        seeds.append(a.run.seed)
        a_arrays.append(np.asarray(a.per_query[metric], dtype=np.float64))
        b_arrays.append(np.asarray(b.per_query[metric], dtype=np.float64))
    return seeds, a_arrays, b_arrays, missing
