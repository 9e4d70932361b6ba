"""Evaluated runs as one long table: a row per (run, metric).

Each run's metrics of its initial, untrained weights become rows of the pseudo-loss
``UNTRAINED``, one per (experiment, seed): runs that share a seed share their initial weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

UNTRAINED = "untrained network"
RESULT_COLUMNS = ("experiment", "table", "dataset", "loss", "seed", "metric", "value", "run_id", "mlflow_run_id", "config_hash")


def load_results(metrics_files: Iterable[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """Read metrics.json files into the long results table (values as fractions; ``source`` = the file).

    A missing, half-written or malformed file does not stop the report: it is skipped and
    described in the returned list of problems, which the report prints.
    """
    rows, problems = [], []
    for path in metrics_files:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{path}: not a readable metrics.json ({exc}); re-run `circle-repro evaluate`")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            problems.append(f"{path}: no 'metrics' mapping in this metrics.json; re-run `circle-repro evaluate`")
            continue
        base = {key: record.get(key) for key in RESULT_COLUMNS} | {"source": str(path)}
        for metric, value in record["metrics"].items():
            rows.append(base | {"metric": metric, "value": value})
        for metric, value in record.get("untrained_metrics", {}).items():
            rows.append(base | {"loss": UNTRAINED, "metric": metric, "value": value})
    frame = pd.DataFrame(rows, columns=[*RESULT_COLUMNS, "source"])
    return frame.drop_duplicates(["experiment", "loss", "seed", "metric"], ignore_index=True), problems


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and count over seeds per (experiment, loss, metric)."""
    grouped = results.groupby(["experiment", "loss", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()
