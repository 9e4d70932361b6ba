"""A reproduced cell of the report: one metric of one loss row over seeds, and how it is labelled."""

from __future__ import annotations

from dataclasses import dataclass

from circle_repro.report.results import UNTRAINED, Results, RunResult, seed_values
from circle_repro.report.stats import Interval, t_interval


def table_label(table_id: str) -> str:
    """'table5' -> 'Table 5'."""
    return "Table " + table_id.removeprefix("table")


def provenance_anchor(experiment: str, loss: str) -> str:
    """The HTML id of a loss row's provenance section."""
    return f"provenance-{experiment}/{loss}"


def interval_text(interval: Interval) -> str:
    """'91.00 ± 12.71 (n=2)': mean ± half-width of the 95 % Student-t interval, in percent."""
    if interval.n == 0:
        return "no result"
    if not interval.has_interval:
        return f"{interval.estimate:.2f} (n=1, no CI)"
    return f"{interval.estimate:.2f} ± {interval.high - interval.estimate:.2f} (n={interval.n})"


@dataclass(frozen=True)
class Cell:
    """One metric of one loss row over seeds (percent), and the runs behind it."""

    interval: Interval
    runs: tuple[RunResult, ...]
    anchor: str | None

    @property
    def notes(self) -> str:
        return "; ".join(f"seed {r.run.seed}: {r.note}" for r in self.runs if r.note)

    @property
    def source(self) -> str:
        return " + ".join(sorted({r.source for r in self.runs if r.source})) or "none"

    @property
    def mlflow_run_ids(self) -> str:
        return ";".join(r.mlflow_run_id for r in self.runs if r.metrics and r.mlflow_run_id)


def row_cell(results: Results, experiment: str, loss: str, metric: str) -> Cell:
    """``metric`` of a loss row (or of the ``UNTRAINED`` row) over its seeds."""
    values = seed_values(results, experiment, loss, metric)
    interval = t_interval([100 * values[seed] for seed in sorted(values)])
    if loss == UNTRAINED:
        return Cell(interval, (), None)
    return Cell(interval, tuple(results.of(experiment, loss)), provenance_anchor(experiment, loss))
