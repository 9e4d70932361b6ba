"""The paper's tables in their printed shape: every published cell with what this repository reproduced of it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from circle_repro.config import Study
from circle_repro.data.status import DatasetStatus
from circle_repro.losses.registry import paper_loss_id
from circle_repro.report.cells import Cell, interval_text, row_cell, table_label
from circle_repro.report.comparison import comparison
from circle_repro.report.csv_rows import csv_row
from circle_repro.report.render import Block, Heading, Paragraph, Table
from circle_repro.report.results import Results
from circle_repro.report.targets import REPO_BACKBONES, repo_metric_name

#: The status of a paper cell.
STATUSES = ("within tolerance", "below", "above", "not run", "data unavailable", "substitute data", "different method")


@dataclass(frozen=True)
class PaperCell:
    """A published cell, and what this repository reproduced of it."""

    table: str
    row: str
    column: str
    metric: str
    published: float
    decimals: int
    status: str
    experiment: str  # the experiment that fills the cell; "" when none is configured
    cell: Cell | None
    note: str

    @property
    def delta(self) -> float:
        if self.cell is None or self.cell.interval.n == 0:
            return math.nan
        return self.cell.interval.estimate - self.published

    @property
    def text(self) -> str:
        published = f"{self.published:.{self.decimals}f}"
        if math.isnan(self.delta):
            return f"{published} · {self.status}"
        assert self.cell is not None
        return f"{published} → {interval_text(self.cell.interval)} · Δ {self.delta:+.2f} · {self.status}"


def _decimals(values: pd.Series) -> int:
    """The number of decimals a table prints (its most precise value)."""
    return max(len(repr(float(v)).split(".")[1]) for v in values)


def _fillers(study: Study, targets: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """Per target row: the (experiment, loss row) pairs of the study that reproduce it.

    An experiment fills a cell of its ``table`` when its data set is the cell's and a loss row's type
    is the cell's loss; the backbone must match too where the table has the same loss, data set and
    metric on several backbones (ResNet34 / ResNet100, ResNet50 / MGN).
    """
    by_backbone = targets.groupby(["table", "dataset", "metric", "loss"])["backbone"].transform("size") > 1
    fillers = []
    for target, needs_backbone in zip(targets.itertuples(index=False), by_backbone, strict=True):
        matches = []
        for name, spec in study.experiments.items():
            if spec.table != target.table or spec.dataset != target.dataset:
                continue
            if needs_backbone and REPO_BACKBONES.get(target.backbone) != spec.model["backbone"]:
                continue
            matches += [(name, row) for row, loss in spec.losses.items() if paper_loss_id(loss.type) == target.loss]
        fillers.append(matches)
    return fillers


def paper_cells(
    study: Study, results: Results, targets: pd.DataFrame, statuses: Mapping[str, DatasetStatus]
) -> list[PaperCell]:
    """Every published cell with its status (one of ``STATUSES``).

    No configured experiment: ``not run``. Configured but without results: ``data unavailable`` when
    its data set is a manual or withdrawn one that is not on disk, else ``not run``. With results: a row
    the targets file lists under ``different_method`` is ``different method`` (the reason as its note),
    the table's ``substitute_data`` makes it ``substitute data``; otherwise the mean is compared with the
    published value using params.yaml's ``report.tolerance`` (percentage points).
    """
    tables = targets.attrs["tables"]
    decimals = {table: _decimals(group["value"]) for table, group in targets.groupby("table")}
    cells = []
    for target, fillers in zip(targets.itertuples(index=False), _fillers(study, targets), strict=True):
        metric = repo_metric_name(target.metric)
        common = dict(table=target.table, row=target.row, column=target.column, metric=metric,
                      published=target.value, decimals=decimals[target.table])  # fmt: skip
        if not fillers:
            cells.append(PaperCell(**common, status="not run", experiment="", cell=None, note=""))
            continue
        experiment, loss = fillers[0]
        notes = [f"also configured: {', '.join(f'{e}/{name}' for e, name in fillers[1:])}"] if len(fillers) > 1 else []
        cell = row_cell(results, experiment, loss, metric)
        if cell.interval.n == 0:
            missing = [
                name
                for name in study.experiment(experiment).datasets
                if name in statuses and statuses[name].unavailable
            ]
            if missing:
                status = "data unavailable"
                notes += [
                    f"{name} ({statuses[name].access}) is not on disk; see `circle-repro data status`"
                    for name in missing
                ]
            else:
                status = "not run"
                evaluated = any(r.metrics for r in cell.runs)
                notes.append(f"{experiment} does not report {metric}" if evaluated else cell.notes)
        elif target.row in tables[target.table]["different_method"]:
            status = "different method"
            notes.append(tables[target.table]["different_method"][target.row])
        elif tables[target.table]["substitute_data"]:
            status = "substitute data"
        else:
            tolerance = study.report["tolerance"][target.table]
            delta = cell.interval.estimate - target.value
            status = "within tolerance" if abs(delta) <= tolerance else ("below" if delta < 0 else "above")
        if cell.interval.n and cell.notes:
            notes.append(cell.notes)
        note = "; ".join(n for n in notes if n)
        cells.append(PaperCell(**common, status=status, experiment=experiment, cell=cell, note=note))
    return cells


def _paper_table(cells: Sequence[PaperCell], meta: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table in its printed shape (cell texts, '-' where the paper prints none) and its cell links."""
    index = pd.Index(meta["rows"], name="Loss")
    frame = pd.DataFrame("-", index=index, columns=meta["columns"], dtype=object)
    links = pd.DataFrame(None, index=index, columns=meta["columns"], dtype=object)
    for cell in cells:
        frame.loc[cell.row, cell.column] = cell.text
        if cell.cell is not None:
            links.loc[cell.row, cell.column] = cell.cell.anchor
    return frame, links


def _data_line(datasets: Sequence[str], statuses: Mapping[str, DatasetStatus]) -> str:
    if not statuses:
        return ""
    parts = [
        f"{name}: {statuses[name].access}, {statuses[name].state}" if name in statuses else f"{name}: not declared"
        for name in datasets
    ]
    return " Data sets here: " + "; ".join(parts) + "."


_STATUS_LEGEND = (
    "Each cell: published → reproduced · Δ · status. Status: within tolerance / below / above (|Δ| against "
    "params.yaml report.tolerance), substitute data (the paper's training data was never released), not run (no "
    "experiment of this profile fills the cell, or it has no results yet), data unavailable (the data set must be "
    "obtained by hand and is not on disk), different method (the row cites another variant or setting of the loss "
    "than the one run here; the note says how, and the cell is not judged)."
)


def paper_section(
    study: Study,
    results: Results,
    targets: pd.DataFrame,
    cells: Sequence[PaperCell],
    statuses: Mapping[str, DatasetStatus],
    demo: Sequence[str],
) -> tuple[list[Block], list[dict[str, Any]]]:
    """Every paper table in its printed shape, cell by cell, with the comparisons of the experiments filling it."""
    blocks: list[Block] = [Heading("The paper's tables, cell by cell"), Paragraph(_STATUS_LEGEND)]
    rows = []
    for table_id, meta in targets.attrs["tables"].items():
        table_cells = [cell for cell in cells if cell.table == table_id]
        counts = pd.Series([cell.status for cell in table_cells]).value_counts()
        if any(cell.cell is not None and cell.cell.interval.n for cell in table_cells):
            badge = "paper vs reproduced"
        elif any(study.experiment(name).table == table_id for name in demo):
            badge = "paper, different data"
        else:
            badge = "paper, not run"
        intro = f"Paper training data: {meta['training_data']}."
        if meta["substitute_data"]:
            intro += f" Substitute data: {meta['substitute_data']}"
        intro += _data_line(list(dict.fromkeys(targets.loc[targets["table"] == table_id, "dataset"])), statuses)
        intro += f" Tolerance: ±{study.report['tolerance'][table_id]:g} points. Cells: "
        intro += ", ".join(f"{count} {status}" for status, count in counts.items()) + "."
        frame, links = _paper_table(table_cells, meta)
        blocks += [
            Heading(f"Paper {table_label(table_id)}: {meta['title']}", 3),
            Paragraph(intro),
            Table(frame, f"Paper {table_label(table_id)}: published vs reproduced", badge, reference=True, links=links),
        ]
        noted = [f"{cell.row} / {cell.column}: {cell.note}" for cell in table_cells if cell.note]
        if noted:
            blocks.append(Paragraph("Notes. " + " | ".join(noted)))
        for experiment in dict.fromkeys(cell.experiment for cell in table_cells if cell.experiment):
            text = comparison(results, study, experiment)
            blocks += [Paragraph(f"{experiment}: {text}")] if text else []
        rows += [
            csv_row(
                "paper",
                table_id,
                cell.experiment,
                cell.row,
                cell.column,
                cell.metric,
                cell.cell,
                status=cell.status,
                note=cell.note,
                published=cell.published,
                delta=cell.delta,
            )
            for cell in table_cells
        ]
    return blocks, rows
