"""The demo versions: experiments on other data than the paper's, each in the style of the paper table it mirrors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from circle_repro.config import Study
from circle_repro.report.cells import Cell, interval_text, row_cell, table_label
from circle_repro.report.comparison import comparison
from circle_repro.report.csv_rows import csv_row
from circle_repro.report.render import Block, Heading, Paragraph, Table
from circle_repro.report.results import UNTRAINED, Results, experiment_metrics
from circle_repro.report.sections.demo_figures import demo_figures

#: How a demo experiment is titled, by the paper table it mirrors.
DEMO_STYLE = {
    "table1": "Table 1 style",
    "table2": "Tables 2–3 style",
    "table3": "Tables 2–3 style",
    "table4": "Table 4 style",
    "table5": "Table 5 style",
}


def demo_table(
    results: Results, study: Study, experiment: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], Cell]]:
    """Rows = loss rows (+ the untrained network), columns = metrics as mean ± 95 % CI (n), source, notes;
    with the cell links and the cells by (row, metric)."""
    has_untrained = any(r.untrained for r in results.runs if r.run.experiment == experiment)
    rows = list(study.experiment(experiment).losses) + ([UNTRAINED] if has_untrained else [])
    columns = experiment_metrics(results, experiment) or ["result"]
    index = pd.Index(rows, name="Loss")
    frame = pd.DataFrame("", index=index, columns=[*columns, "source", "notes"], dtype=object)
    links = pd.DataFrame(None, index=index, columns=frame.columns, dtype=object)
    cells = {(loss, metric): row_cell(results, experiment, loss, metric) for loss in rows for metric in columns}
    for loss in rows:
        row = [cells[loss, metric] for metric in columns]
        frame.loc[loss, columns] = [interval_text(cell.interval) for cell in row]
        links.loc[loss, columns] = [cell.anchor for cell in row]
        if loss == UNTRAINED:
            frame.loc[loss, ["source", "notes"]] = ["initial weights of the runs above", "-"]
        else:
            frame.loc[loss, ["source", "notes"]] = [row[0].source, row[0].notes or "-"]
    return frame, links, cells


_NO_CAMERA_IDS = (
    "Not applicable: no camera ids. The re-ID protocol of Table 4 drops, for every query, the gallery images of its "
    "identity taken by its own camera; the demo data sets carry no camera ids, so no demo version of Table 4 is run."
)


def demo_section(
    study: Study, results: Results, demo: Sequence[str], figure_dir: Path
) -> tuple[list[Block], list[dict[str, Any]]]:
    """The experiments on other data than the paper's, each in the style of the table it mirrors."""
    blocks: list[Block] = [Heading("Demo versions (other data: not comparable with the published numbers)")]
    rows = []
    for experiment in demo:
        spec = study.experiment(experiment)
        label = table_label(spec.table)
        frame, links, cells = demo_table(results, study, experiment)
        blocks += [
            Heading(f"{DEMO_STYLE[spec.table]} (demo version): {experiment}", 3),
            Paragraph(
                f"{spec.description}. Data: {spec.dataset} test split "
                f"({spec.evaluation['protocol']} protocol); mirrors paper {label}."
            ),
            Table(
                frame,
                f"Demo version of paper {label} on {spec.dataset}: mean ± 95 % CI over seeds (n)",
                "demo version",
                links=links,
            ),
        ]
        text = comparison(results, study, experiment)
        blocks += [Paragraph(text)] if text else []
        if UNTRAINED in frame.index:
            blocks.append(
                Paragraph(
                    f"The '{UNTRAINED}' row evaluates each seed's initial weights, before any training: "
                    "what the architecture alone gives on these data."
                )
            )
        blocks += demo_figures(results, study, experiment, figure_dir)
        rows += [
            csv_row(
                "demo",
                spec.table,
                experiment,
                loss,
                metric,
                metric,
                cell,
                status="demo" if cell.interval.n else "not run",
                note=cell.notes,
            )
            for (loss, metric), cell in cells.items()
        ]
    if not any(study.experiment(name).table == "table4" for name in demo):
        blocks += [Heading("Table 4 style (demo version): not applicable: no camera ids", 3), Paragraph(_NO_CAMERA_IDS)]
    return blocks, rows
