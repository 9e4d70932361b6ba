"""Evaluated runs as one long table: a row per (run, metric)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

RESULT_COLUMNS = ("experiment", "table", "dataset", "loss", "seed", "metric", "value", "run_id", "mlflow_run_id", "config_hash")


def load_results(metrics_files: Iterable[str | Path]) -> pd.DataFrame:
    """Read metrics.json files into the long results table (values as fractions; ``source`` = the file)."""
    rows = []
    for path in metrics_files:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable metrics.json ({exc}); re-run `circle-repro evaluate`") from exc
        for metric, value in record["metrics"].items():
            base = {key: record.get(key) for key in RESULT_COLUMNS}
            rows.append(base | {"metric": metric, "value": value, "source": str(path)})
    return pd.DataFrame(rows, columns=[*RESULT_COLUMNS, "source"])


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and count over seeds per (experiment, loss, metric)."""
    grouped = results.groupby(["experiment", "loss", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()
