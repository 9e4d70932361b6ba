"""The lines of results.csv: every cell of the report in long form."""

from __future__ import annotations

import math
from typing import Any

from circle_repro.report.cells import Cell
from circle_repro.report.stats import t_interval

CSV_COLUMNS = (
    "kind", "table", "experiment", "row", "column", "metric", "published", "mean", "ci_low", "ci_high", "n",
    "delta", "status", "source", "mlflow_run_ids", "note",
)  # fmt: skip


def _csv_number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def csv_row(
    kind: str,
    table: str,
    experiment: str,
    row: str,
    column: str,
    metric: str,
    cell: Cell | None,
    *,
    status: str,
    note: str,
    published: float = math.nan,
    delta: float = math.nan,
) -> dict[str, Any]:
    """One line of results.csv (``CSV_COLUMNS``); numbers in percent, empty where there are none."""
    interval = cell.interval if cell is not None else t_interval([])
    return {
        "kind": kind,
        "table": table,
        "experiment": experiment,
        "row": row,
        "column": column,
        "metric": metric,
        "published": _csv_number(published),
        "mean": _csv_number(interval.estimate),
        "ci_low": _csv_number(interval.low),
        "ci_high": _csv_number(interval.high),
        "n": interval.n,
        "delta": _csv_number(delta),
        "status": status,
        "source": cell.source if cell is not None else "",
        "mlflow_run_ids": cell.mlflow_run_ids if cell is not None else "",
        "note": note,
    }
