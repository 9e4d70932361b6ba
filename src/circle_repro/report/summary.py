"""The few lines that close a study's log: the headline results of a built report and where it is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from circle_repro.report.csv_rows import CSV_COLUMNS

REPORT_FILES = ("report.html", "report.md", "results.csv")


def _value(row: pd.Series) -> str:
    """'92.00 ± 4.97 (n=3)' from a results.csv line (numbers in percent)."""
    if pd.isna(row["ci_high"]):
        return f"{row['mean']:.2f} (n={row['n']})"
    return f"{row['mean']:.2f} ± {row['ci_high'] - row['mean']:.2f} (n={row['n']})"


def _experiment_line(experiment: str, rows: pd.DataFrame) -> str:
    """The experiment's loss rows at its first metric, best first."""
    metric = rows["column"].iloc[0]
    scored = rows[(rows["column"] == metric) & (rows["n"] > 0)].sort_values("mean", ascending=False, kind="stable")
    if scored.empty:
        return f"{experiment}: no result yet"
    table = rows["table"].iloc[0].removeprefix("table")
    values = ", ".join(f"{row['row']} {_value(row)}" for _, row in scored.iterrows())
    return f"{experiment} (demo version of Table {table}), {metric}: {values}"


def headline_summary(report_dir: str | Path) -> str:
    """Where the report is; per demo experiment its loss rows at its headline metric, best first; the paper's
    cells by status, per table; the sweeps' points with results. Read from the report's results.csv."""
    report_dir = Path(report_dir)
    csv = report_dir / "results.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv}: no report there; build it with `circle-repro report --out {report_dir}`")
    cells = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    missing = [column for column in CSV_COLUMNS if column not in cells.columns]
    if missing:
        raise ValueError(f"{csv}: not a results.csv of `circle-repro report` (no {', '.join(missing)} column)")
    lines = [f"Report: {(report_dir / REPORT_FILES[0]).resolve()} (also {', '.join(REPORT_FILES[1:])} beside it)"]
    demo = cells[cells["kind"] == "demo"]
    for experiment, rows in demo.groupby("experiment", sort=False):
        lines.append("  " + _experiment_line(str(experiment), rows))
    sweeps = cells[cells["kind"] == "sweep"]
    for experiment, rows in sweeps.groupby("experiment", sort=False):
        lines.append(
            f"  {experiment} (sensitivity, Fig. 3): {int((rows['n'] > 0).sum())} of {len(rows)} points have results"
        )
    paper = cells[cells["kind"] == "paper"]
    for table, rows in paper.groupby("table", sort=False):
        counts = rows["status"].value_counts(sort=False)
        text = ", ".join(f"{count} {status}" for status, count in counts.items())
        lines.append(f"  Paper Table {str(table).removeprefix('table')}: {text}")
    return "\n".join(lines)
