"""Assemble reports/: every paper cell against this repository's runs, the demo versions, paired
comparisons, figures, per-run provenance and the long-form results.csv."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.config import SWEPT_PARAMETERS, experiment_datasets, experiments
from circle_repro.data.status import DatasetStatus, data_status
from circle_repro.generations import staged_files
from circle_repro.io import write_json
from circle_repro.layout import HISTORY_FILENAME, SIMILARITIES_FILENAME
from circle_repro.losses.registry import loss_defaults, paper_loss_id
from circle_repro.provenance import git_commit
from circle_repro.report.figures import (
    FIGURES,
    gradient_maps,
    load_pair_sample,
    roc_curves,
    sensitivity,
    similarity_distributions,
    similarity_pairs,
    training_dynamics,
)
from circle_repro.report.recipes import card_blocks
from circle_repro.report.render import Block, Figure, Heading, Paragraph, Table, render_html, render_markdown
from circle_repro.report.results import (
    UNTRAINED,
    Results,
    RunResult,
    experiment_metrics,
    load_results,
    per_query_pairs,
    seed_values,
)
from circle_repro.report.stats import Interval, paired_bootstrap, t_interval
from circle_repro.report.targets import REPO_BACKBONES, load_paper_targets, repo_metric_name

#: The status of a paper cell.
STATUSES = ("within tolerance", "below", "above", "not run", "data unavailable", "substitute data", "different method")
#: How a demo experiment is titled, by the paper table it mirrors.
DEMO_STYLE = {
    "table1": "Table 1 style",
    "table2": "Tables 2–3 style",
    "table3": "Tables 2–3 style",
    "table4": "Table 4 style",
    "table5": "Table 5 style",
}
CSV_COLUMNS = (
    "kind", "table", "experiment", "row", "column", "metric", "published", "mean", "ci_low", "ci_high", "n",
    "delta", "status", "source", "mlflow_run_ids", "note",
)  # fmt: skip


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


def _fillers(params: dict[str, Any], targets: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """Per target row: the (experiment, loss row) pairs of params that reproduce it.

    An experiment fills a cell of its ``table`` when its data set is the cell's and a loss row's type
    is the cell's loss; the backbone must match too where the table has the same loss, data set and
    metric on several backbones (ResNet34 / ResNet100, ResNet50 / MGN).
    """
    by_backbone = targets.groupby(["table", "dataset", "metric", "loss"])["backbone"].transform("size") > 1
    fillers = []
    for target, needs_backbone in zip(targets.itertuples(index=False), by_backbone, strict=True):
        matches = []
        for name, spec in params["experiments"].items():
            if spec["table"] != target.table or spec["dataset"] != target.dataset:
                continue
            if needs_backbone and REPO_BACKBONES.get(target.backbone) != spec["model"]["backbone"]:
                continue
            losses = spec["losses"].items()
            matches += [(name, loss) for loss, cfg in losses if paper_loss_id(cfg["type"]) == target.loss]
        fillers.append(matches)
    return fillers


def paper_cells(
    params: dict[str, Any], results: Results, targets: pd.DataFrame, statuses: Mapping[str, DatasetStatus]
) -> list[PaperCell]:
    """Every published cell with its status (one of ``STATUSES``).

    No configured experiment: ``not run``. Configured but without results: ``data unavailable`` when
    its data set is a manual or withdrawn one that is not on disk, else ``not run``. With results: a row
    the targets file lists under ``different_method`` is ``different method`` (the reason as its note),
    the table's ``substitute_data`` makes it ``substitute data``; otherwise the mean is compared with the
    published value using params ``report.tolerance`` (percentage points).
    """
    tables = targets.attrs["tables"]
    decimals = {table: _decimals(group["value"]) for table, group in targets.groupby("table")}
    cells = []
    for target, fillers in zip(targets.itertuples(index=False), _fillers(params, targets), strict=True):
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
                for name in experiment_datasets(params["experiments"][experiment])
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
            tolerance = params["report"]["tolerance"][target.table]
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


def comparison(results: Results, params: dict[str, Any], experiment: str) -> str | None:
    """Circle against the best other loss at the experiment's headline metric, with a paired bootstrap
    interval over queries (stats.paired_bootstrap); None without a Circle row or any result."""
    spec = params["experiments"][experiment]
    metrics = experiment_metrics(results, experiment)
    circles = [name for name, cfg in spec["losses"].items() if paper_loss_id(cfg["type"]) == "circle"]
    if not metrics or not circles:
        return None
    headline = metrics[0]
    means = {
        loss: float(np.mean(list(values.values())))
        for loss in spec["losses"]
        if (values := seed_values(results, experiment, loss, headline))
    }
    circle = next((name for name in circles if name in means), None)
    others = [name for name in means if name not in circles]
    if circle is None or not others:
        missing = "no Circle loss row" if circle is None else "no other loss"
        return f"No comparison at {headline}: {missing} has results."
    best = max(others, key=means.__getitem__)
    seeds, first, second, missing = per_query_pairs(
        results.of(experiment, circle), results.of(experiment, best), headline
    )
    lead = f"{circle} minus the best other loss ({best}) at {headline}"
    if not seeds:
        return (
            f"{lead}: {100 * (means[circle] - means[best]):+.2f} points (seed means); no paired interval: "
            f"per-query results are missing for {', '.join(missing) or 'every seed'}."
        )
    settings = params["report"]["bootstrap"]
    interval = paired_bootstrap(first, second, resamples=settings["resamples"], seed=settings["seed"])
    unit = "queries" if spec["evaluation"]["protocol"] == "retrieval" else "pairs"
    per_seed = ", ".join(
        f"{100 * (a.mean() - b.mean()):+.2f} (seed {s})" for s, a, b in zip(seeds, first, second, strict=True)
    )
    if interval.contains(0.0):
        verdict = "The interval includes 0: the difference is within noise."
    else:
        direction = "better" if interval.estimate > 0 else "worse"
        verdict = f"The interval excludes 0: {circle} is {direction} than {best} beyond query-sampling noise."
    text = (
        f"{lead}: {100 * interval.estimate:+.2f} points over {len(seeds)} seed(s) × {len(first[0]):,} {unit} "
        f"(per seed: {per_seed}); 95 % paired bootstrap interval [{100 * interval.low:+.2f}, "
        f"{100 * interval.high:+.2f}] from {settings['resamples']:,} resamples of the {unit} within each seed, "
        "the same draw for both losses. "
        f"{verdict} Seed-to-seed variation is not in this interval; it shows in each cell's interval over seeds."
    )
    if missing:
        text += f" Left out for lack of per-query results: {', '.join(missing)}."
    return text


def demo_table(
    results: Results, params: dict[str, Any], experiment: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], Cell]]:
    """Rows = loss rows (+ the untrained network), columns = metrics as mean ± 95 % CI (n), source, notes;
    with the cell links and the cells by (row, metric)."""
    spec = params["experiments"][experiment]
    has_untrained = any(r.untrained for r in results.runs if r.run.experiment == experiment)
    rows = list(spec["losses"]) + ([UNTRAINED] if has_untrained else [])
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


def _figure_run_dirs(results: Results, experiment: str) -> tuple[dict[str, list[Path]], list[str]]:
    """Per loss, the folders of its evaluated runs holding the figures' inputs (lowest seed first);
    the evaluated losses without one."""
    found: dict[str, list[Path]] = {}
    for result in sorted(results.runs, key=lambda r: r.run.seed):
        run_dir = result.run_dir
        if result.run.experiment != experiment or run_dir is None or not result.metrics:
            continue
        if (run_dir / SIMILARITIES_FILENAME).is_file() and (run_dir / HISTORY_FILENAME).is_file():
            found.setdefault(result.run.loss, []).append(run_dir)
    losses = dict.fromkeys(r.run.loss for r in results.runs if r.run.experiment == experiment and r.metrics)
    return found, [loss for loss in losses if loss not in found]


def _boundary_margins(losses: Mapping[str, Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """The Circle m and the AM-Softmax (else triplet) margin of an experiment's losses, for Figs. 1/5."""
    by_type = {spec["type"]: spec for spec in losses.values()}
    circle = by_type.get("circle") or by_type.get("circle_classifier")
    circle_m = (loss_defaults(circle["type"]) | circle)["m"] if circle else None
    if "am_softmax" in by_type:
        return circle_m, (loss_defaults("am_softmax") | by_type["am_softmax"])["m"]
    return circle_m, (loss_defaults("triplet") | by_type["triplet"])["margin"] if "triplet" in by_type else None


COLLAPSED_S_N = 0.99
"""A training batch whose mean different-class cosine s_n reaches this is collapsed: its images all
point about one way, whatever their class."""


def collapse_note(
    histories: Mapping[str, Sequence[pd.DataFrame]], losses: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Which losses trained through collapsed batches (:data:`COLLAPSED_S_N`), and when; None if none did.

    ``histories``: per loss, its history.csv frames, one per seed (lowest seed first).
    """
    spans = {}
    for loss, frames in histories.items():
        seeds = [frame.loc[frame["s_n"] >= COLLAPSED_S_N, "iteration"] for frame in frames]
        hit = [f"{int(its.min())}–{int(its.max())}" for its in seeds if len(its)]
        if hit:
            spans[loss] = f"{loss} at iterations {', '.join(hit)} ({len(hit)} of {len(frames)} seeds)"
    if not spans:
        return None
    text = f"Collapsed training batches (batch mean s_n ≥ {COLLAPSED_S_N}): {'; '.join(spans.values())}."
    if any(losses[loss]["type"] == "triplet" for loss in spans):
        text += (
            " Batch-hard triplet mining is known to collapse the embedding early in training (Schroff et al., "
            "FaceNet, CVPR 2015, §3.2): when the initial embeddings are nearly collinear, every anchor's hardest "
            "negative is about as close as its hardest positive, the loss stays near its margin and the gradient "
            "through the unit-norm embeddings shrinks with their spread. The test metrics above show how much ranking the "
            "remaining spread keeps."
        )
    return text


def _figures(results: Results, params: Mapping[str, Any], experiment: str, figure_dir: Path) -> list[Block]:
    run_dirs, lacking = _figure_run_dirs(results, experiment)
    if not run_dirs:
        return []
    samples = {}
    for loss, dirs in run_dirs.items():
        with np.load(dirs[0] / SIMILARITIES_FILENAME) as data:
            samples[loss] = (data["s_p"], data["s_n"])
    histories = {loss: [pd.read_csv(d / HISTORY_FILENAME) for d in dirs] for loss, dirs in run_dirs.items()}
    spec = params["experiments"][experiment]
    blocks: list[Block] = [
        Figure(
            similarity_distributions(samples, figure_dir / f"{experiment}_similarities.png"),
            f"{experiment}, lowest seed per loss. {FIGURES['similarity_distributions'].caption}",
        ),
        Figure(
            training_dynamics(histories, figure_dir / f"{experiment}_dynamics.png"),
            f"{experiment}, Fig. 4 style. {FIGURES['training_dynamics'].caption}",
        ),
    ]
    collapsed = collapse_note(histories, spec["losses"])
    blocks += [Paragraph(collapsed)] if collapsed else []
    circle_m, line_m = _boundary_margins(spec["losses"])
    if circle_m is not None or line_m is not None:
        pairs = {loss: load_pair_sample(dirs[0]) for loss, dirs in run_dirs.items()}
        blocks.append(
            Figure(
                similarity_pairs(pairs, figure_dir / f"{experiment}_pairs.png", circle_m=circle_m, line_m=line_m),
                f"{experiment}, Figs. 1 and 5 style, lowest seed per loss (Circle m = {circle_m}, line margin "
                f"{line_m}). {FIGURES['similarity_pairs'].caption}",
            )
        )
    if spec["evaluation"]["protocol"] == "verification_pairs":
        blocks.append(
            Figure(
                roc_curves(samples, figure_dir / f"{experiment}_roc.png"),
                f"{experiment}, lowest seed per loss. {FIGURES['roc_curves'].caption}",
            )
        )
    if lacking:
        blocks.append(
            Paragraph(
                f"Not in these figures (no {SIMILARITIES_FILENAME} and {HISTORY_FILENAME}): {', '.join(lacking)}."
            )
        )
    return blocks


def _provenance(results: Results, experiment: str, loss: str) -> list[Block]:
    """A loss row's details section (the target of its cells' links): every seed's run and its origin."""
    runs = results.of(experiment, loss)
    frame = pd.DataFrame(
        {
            "source": [r.source or "none" for r in runs],
            "MLflow run": [r.mlflow_run_id or "-" for r in runs],
            "weights": [r.weights_uri or "-" for r in runs],
            "git commit": [r.provenance.get("git_commit") or "-" for r in runs],
            "config hash": [r.provenance.get("config_hash") or "-" for r in runs],
            "data hash": [r.provenance.get("data_hash") or "-" for r in runs],
            "device": [r.provenance.get("device") or "-" for r in runs],
            "note": [r.note or "-" for r in runs],
        },
        index=pd.Index([r.run.run_id for r in runs], name="Run"),
    )
    return [
        Heading(f"{experiment} / {loss}", 3, anchor=provenance_anchor(experiment, loss)),
        Table(frame, caption=f"Runs of {experiment} / {loss}, one per seed"),
    ]


def _csv_number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _csv_row(
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


_STATUS_LEGEND = (
    "Each cell: published → reproduced · Δ · status. Status: within tolerance / below / above (|Δ| against "
    "params.yaml report.tolerance), substitute data (the paper's training data was never released), not run (no "
    "experiment of this profile fills the cell, or it has no results yet), data unavailable (the data set must be "
    "obtained by hand and is not on disk), different method (the row cites another variant or setting of the loss "
    "than the one run here; the note says how, and the cell is not judged)."
)


def _paper_section(
    params: dict[str, Any],
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
        elif any(params["experiments"][name]["table"] == table_id for name in demo):
            badge = "paper, different data"
        else:
            badge = "paper, not run"
        intro = f"Paper training data: {meta['training_data']}."
        if meta["substitute_data"]:
            intro += f" Substitute data: {meta['substitute_data']}"
        intro += _data_line(list(dict.fromkeys(targets.loc[targets["table"] == table_id, "dataset"])), statuses)
        intro += f" Tolerance: ±{params['report']['tolerance'][table_id]:g} points. Cells: "
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
            text = comparison(results, params, experiment)
            blocks += [Paragraph(f"{experiment}: {text}")] if text else []
        rows += [
            _csv_row(
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


_NO_CAMERA_IDS = (
    "Not applicable: no camera ids. The re-ID protocol of Table 4 drops, for every query, the gallery images of its "
    "identity taken by its own camera; the demo data sets carry no camera ids, so no demo version of Table 4 is run."
)


def _demo_section(
    params: dict[str, Any], results: Results, demo: Sequence[str], figure_dir: Path
) -> tuple[list[Block], list[dict[str, Any]]]:
    """The experiments on other data than the paper's, each in the style of the table it mirrors."""
    blocks: list[Block] = [Heading("Demo versions (other data: not comparable with the published numbers)")]
    rows = []
    for experiment in demo:
        spec = params["experiments"][experiment]
        label = table_label(spec["table"])
        frame, links, cells = demo_table(results, params, experiment)
        blocks += [
            Heading(f"{DEMO_STYLE[spec['table']]} (demo version): {experiment}", 3),
            Paragraph(
                f"{spec.get('description', experiment)}. Data: {spec['dataset']} test split "
                f"({spec['evaluation']['protocol']} protocol); mirrors paper {label}."
            ),
            Table(
                frame,
                f"Demo version of paper {label} on {spec['dataset']}: mean ± 95 % CI over seeds (n)",
                "demo version",
                links=links,
            ),
        ]
        text = comparison(results, params, experiment)
        blocks += [Paragraph(text)] if text else []
        if UNTRAINED in frame.index:
            blocks.append(
                Paragraph(
                    f"The '{UNTRAINED}' row evaluates each seed's initial weights, before any training: "
                    "what the architecture alone gives on these data."
                )
            )
        blocks += _figures(results, params, experiment, figure_dir)
        rows += [
            _csv_row(
                "demo",
                spec["table"],
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
    if not any(params["experiments"][name]["table"] == "table4" for name in demo):
        blocks += [Heading("Table 4 style (demo version): not applicable: no camera ids", 3), Paragraph(_NO_CAMERA_IDS)]
    return blocks, rows


def _sweep_points(spec: dict[str, Any]) -> list[tuple[str | None, str, str, str, float]]:
    """Every point of a sweep's curves as (experiment, loss row, loss, parameter, value): the swept rows,
    then the base experiment's rows at their own gamma and m (the swept loss in both panels, a baseline
    in the gamma panel)."""
    sweep = spec["sweep"]
    points = [(None, row, p["loss"], p["parameter"], p["value"]) for row, p in sweep["points"].items()]
    for loss, own in sweep["base_values"].items():
        parameters = SWEPT_PARAMETERS if loss == sweep["loss"] else ("gamma",)
        points += [
            (sweep["base"], loss, loss, parameter, own[parameter]) for parameter in parameters if parameter in own
        ]
    return points


def _sensitivity_section(
    params: dict[str, Any], results: Results, experiment: str, figure_dir: Path
) -> tuple[list[Block], list[dict[str, Any]]]:
    """Fig. 3 from a sweep experiment: its metric against each swept value, mean ± 95 % CI over seeds, with
    the base experiment's runs (at the sweep's seeds) at the base rows' own gamma and m."""
    spec = params["experiments"][experiment]
    sweep = spec["sweep"]
    metric = sweep["metric"]
    rows, csv_rows, frame_rows = [], [], []
    for source, row, loss, parameter, value in _sweep_points(spec):
        run_experiment = source or experiment
        values = seed_values(results, run_experiment, row, metric)
        values = {seed: values[seed] for seed in spec["seeds"] if seed in values}
        cell = Cell(
            t_interval([100 * values[seed] for seed in sorted(values)]),
            tuple(r for r in results.of(run_experiment, row) if r.run.seed in spec["seeds"]),
            provenance_anchor(run_experiment, row),
        )
        label = row if source is None else f"{row} ({source})"
        rows.append({"row": label, "parameter": parameter, "value": f"{value:g}", metric: interval_text(cell.interval)})
        frame_rows += [
            {"parameter": parameter, "value": value, "metric": 100 * score, "seed": seed, "loss": loss}
            for seed, score in values.items()
        ]
        csv_rows.append(
            _csv_row(
                "sweep",
                "figure3",
                experiment,
                label,
                f"{parameter}={value:g}",
                metric,
                cell,
                status="sweep" if cell.interval.n else "not run",
                note=cell.notes,
            )
        )
    base = sweep["base"]
    settings = ", ".join(f"{k}={v}" for k, v in sweep["base_values"][sweep["loss"]].items())
    compared = (
        f" Baselines: {', '.join(sweep['baselines'])} (against γ; in the m panel at their best γ)."
        if sweep["baselines"]
        else ""
    )
    blocks: list[Block] = [
        Heading(f"Sensitivity to γ and m (paper Fig. 3): {experiment}", 2),
        Paragraph(
            f"{spec['description']}. One run per value and seed ({len(spec['seeds'])} seed(s)); every other setting "
            f"is {base}'s, whose own runs at the same seeds give the points at its settings ({sweep['loss']}: "
            f"{settings}).{compared}"
        ),
        Table(
            pd.DataFrame(rows).set_index("row"),
            f"{experiment}: {metric} (%) per swept value, mean ± 95 % CI over seeds (n)",
        ),
    ]
    if frame_rows:
        figure = sensitivity(
            pd.DataFrame(frame_rows), figure_dir / f"{experiment}_sensitivity.png", metric_label=f"{metric} (%)"
        )
        blocks.append(Figure(figure, f"{experiment}. {FIGURES['sensitivity'].caption}"))
    else:
        blocks.append(Paragraph(f"No run of {experiment} has a result yet: not run."))
    return blocks, csv_rows


_GRADIENT_CAPTION = (
    "Gradient magnitudes of triplet, AM-Softmax and Circle loss for one s_p and one s_n, from the closed forms "
    "(paper Fig. 2, §3.3); white dashed: the decision boundary (a line s_p - s_n = m for triplet and AM-Softmax, the circle "
    "s_n² + (s_p - 1)² = 2m² for Circle). AM-Softmax pushes s_p and s_n equally everywhere; Circle weights each by "
    "its distance from the optimum. The paper does not state its γ and m; these are params.yaml's "
    "report.gradient_maps."
)


def _compute_section(
    params: dict[str, Any],
    throughput_file: str | Path | None,
    benchmark_root: str | Path | None,
    data_root: str | Path | None,
    rates_file: str | Path | None = None,
) -> list[Block]:
    """Per table: training GPU-hours planned from measured throughput and data rates (circle_repro.plan)
    against the hours the Snakemake benchmark files of its jobs recorded; "not run" where none of its runs
    has one."""
    from circle_repro.layout import BENCHMARK_DIR
    from circle_repro.plan import load_rates, load_throughput, planned_vs_actual

    rates = load_rates(rates_file) if rates_file is not None and Path(rates_file).is_file() else None
    loading = (
        f"with data loading at the decode rates of {rates.source} and validation"
        if rates is not None
        else "compute only: forward, loss, backward and optimizer step, without data loading"
    )

    throughput = None
    if throughput_file is None:
        source = "no throughput file given: nothing estimated"
    elif not Path(throughput_file).is_file():
        source = f"{throughput_file} not found: nothing estimated"
    else:
        throughput = load_throughput(throughput_file)
        source = f"{throughput.device}, amp {throughput.amp}, batch {throughput.batch}, {throughput.source}; {loading}"
    where = (
        f"under {Path(benchmark_root, BENCHMARK_DIR)}/"
        if benchmark_root is not None
        else "(no folder given: none read)"
    )
    rows, notes = {}, []
    for row in planned_vs_actual(params, throughput, benchmark_root, data_root, rates):
        actual, measured = row.actual, row.actual.runs_measured > 0
        walls = (actual.train_hours, actual.evaluate_hours, actual.data_hours)
        planned = f"{row.planned_gpu_hours:.2f}" + (
            f" + {len(row.not_estimated)} not estimated" if row.not_estimated else ""
        )
        label = table_label(row.table) if row.table.startswith("table") else "Figures (sweeps)"
        rows[label] = {
            "runs": actual.runs,
            "planned GPU-h (training)": planned if actual.runs else "no experiment",
            "actual GPU-h (training)": f"{actual.train_gpu_hours:.2f}" if measured else "not run",
            "actual wall time h:mm:ss (train / evaluate / data)": (
                " / ".join(str(dt.timedelta(seconds=round(3600 * hours))) for hours in walls) if measured else "not run"
            ),
            "runs with a benchmark file": f"{actual.runs_measured} of {actual.runs}",
        }
        notes += [f"{name}: {text}" for name, text in row.notes.items()]
        notes += [f"unreadable benchmark file: {path}" for path in actual.unreadable]
    blocks: list[Block] = [
        Heading("Planned against actual compute"),
        Paragraph(
            f"Planned: the training GPU-hours `circle-repro plan` estimates from measured throughput ({source}). "
            f"Actual: the Snakemake benchmark files of the train, evaluate and prepare_data jobs {where} (wall-clock "
            "time; GPU-hours = a training job's wall time × its experiment's GPUs; a resubmitted job keeps only its "
            "last attempt's file; a data set several tables use counts in each)."
        ),
        Table(
            pd.DataFrame.from_dict(rows, orient="index").rename_axis("Table"), "Planned against actual hours per table"
        ),
    ]
    if notes:
        blocks.append(Paragraph("Notes. " + " | ".join(notes)))
    return blocks


def build_report(
    params: dict[str, Any],
    metrics_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    data_root: str | Path | None = None,
    throughput_file: str | Path | None = None,
    benchmark_root: str | Path | None = None,
    rates_file: str | Path | None = None,
    generated: str | None = None,
    commit: str | None = None,
) -> list[Path]:
    """Write report.md, report.html, results.csv (every cell, long form) and metrics.json into ``out_dir``.

    Results come from the MLflow store at ``tracking_uri`` with ``metrics_files`` as the fallback (None:
    the files only); ``data_root`` (holding raw/ and prepared/) tells which data sets are on disk (None:
    not checked). ``throughput_file`` (benchmarks/train_throughput.py output), ``rates_file``
    (benchmarks/job_rates.yaml; None: compute only) and ``benchmark_root`` (the
    workflow's working directory, holding logs/benchmarks/) feed the planned-against-actual section (None:
    nothing estimated, nothing read). ``generated`` and ``commit`` default to now and the checkout's HEAD
    (fixed in golden tests).
    """
    out_dir = Path(out_dir)
    figure_dir = out_dir / "figures"
    results = load_results(params, metrics_files, tracking_uri)
    targets = load_paper_targets()
    statuses = {s.name: s for s in data_status(data_root)} if data_root is not None else {}
    sweeps = [name for name, experiment in experiments(params).items() if experiment.is_sweep]
    tables_params = {**params, "experiments": {k: v for k, v in params["experiments"].items() if k not in sweeps}}
    cells = paper_cells(tables_params, results, targets, statuses)
    filling = {cell.experiment for cell in cells if cell.experiment}
    demo = [name for name in tables_params["experiments"] if name not in filling]
    title = params["report"].get("title", "Circle loss reproduction")
    if "profile" in params:
        title += f": {params['profile']} profile"
    generated = generated or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    evaluated = sum(1 for r in results.runs if r.metrics)
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(
            f"{evaluated} of {len(results.runs)} runs have results; generated {generated} from commit "
            f"{commit or git_commit()}. {results.source} A reproduced number is the mean over seeds ± the "
            "half-width of its 95 % Student-t interval, with n = the number of seeds (n=1: no interval), in "
            "percent; Δ = reproduced − published, in percentage points. In the HTML report every reproduced "
            "cell links to the runs behind it."
        ),
    ]
    if results.problems:
        blocks += [Heading("Problems"), *(Paragraph(problem) for problem in results.problems)]
    blocks += card_blocks(params)
    paper_blocks, csv_rows = _paper_section(tables_params, results, targets, cells, statuses, demo)
    blocks += paper_blocks
    if demo:
        demo_blocks, demo_rows = _demo_section(tables_params, results, demo, figure_dir)
        blocks += demo_blocks
        csv_rows += demo_rows
    for sweep in sweeps:
        sweep_blocks, sweep_rows = _sensitivity_section(params, results, sweep, figure_dir)
        blocks += sweep_blocks
        csv_rows += sweep_rows
    if "gradient_maps" in params["report"]:
        figure = gradient_maps(params["report"]["gradient_maps"], figure_dir / "gradient_maps.png")
        blocks += [Heading("Gradients of the binary losses (paper Fig. 2)"), Figure(figure, _GRADIENT_CAPTION)]
    blocks += _compute_section(params, throughput_file, benchmark_root, data_root, rates_file)
    blocks += [
        Heading("Provenance"),
        Paragraph(
            "Per loss row, every seed's run: where its result was read, its MLflow run, the code commit, the "
            "hash of its training config, the content hash of its prepared data and the device it trained on."
        ),
    ]
    for experiment, spec in params["experiments"].items():
        for loss in spec["losses"]:
            blocks += _provenance(results, experiment, loss)

    outputs = [out_dir / "report.md", out_dir / "report.html", out_dir / "results.csv", out_dir / "metrics.json"]
    with staged_files(outputs) as staged:  # one generation: all four written before any is replaced
        staged[0].write_text(render_markdown(blocks, out_dir), encoding="utf-8")
        staged[1].write_text(render_html(blocks, title), encoding="utf-8")
        pd.DataFrame(csv_rows, columns=list(CSV_COLUMNS)).to_csv(staged[2], index=False)
        write_json(staged[3], _summary_metrics(results))
    return outputs


def _summary_metrics(results: Results) -> dict[str, Any]:
    """{experiment: {loss: {metric: {mean, std, n}}}} as fractions, the file `dvc metrics show` reads."""
    nested: dict[str, Any] = {}
    for result in results.runs:
        experiment, loss = result.run.experiment, result.run.loss
        for row, names in ((loss, result.metrics), (UNTRAINED, result.untrained)):
            for metric in names:
                values = list(seed_values(results, experiment, row, metric).values())
                std = round(float(np.std(values, ddof=1)), 6) if len(values) > 1 else None
                nested.setdefault(experiment, {}).setdefault(row, {})[metric] = {
                    "mean": round(float(np.mean(values)), 6),
                    "std": std,
                    "n": len(values),
                }
    return nested
