"""Assemble reports/: every paper cell against this repository's runs, the demo versions, paired
comparisons, figures, per-run provenance and the long-form results.csv."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.config import Study
from circle_repro.data.status import data_status
from circle_repro.generations import staged_outputs
from circle_repro.io import write_json
from circle_repro.provenance import git_commit
from circle_repro.report.csv_rows import CSV_COLUMNS
from circle_repro.report.recipes import card_blocks
from circle_repro.report.render import Block, Heading, Paragraph, render_html, render_markdown
from circle_repro.report.results import UNTRAINED, Results, load_results, seed_values
from circle_repro.report.sections.compute import compute_section
from circle_repro.report.sections.demo import demo_section
from circle_repro.report.sections.gradients import gradient_section
from circle_repro.report.sections.overview import overview_section
from circle_repro.report.sections.paper import paper_cells, paper_section
from circle_repro.report.sections.provenance import provenance_section
from circle_repro.report.sections.sensitivity import sensitivity_section
from circle_repro.report.targets import load_paper_targets

REPORT_FILES = ("report.md", "report.html", "results.csv", "metrics.json")
"""The files ``report`` writes into its folder, beside :data:`FIGURE_FOLDER`."""
FIGURE_FOLDER = "figures"


def build_report(
    study: Study,
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
    """Write the report of ``study``: report.md, report.html, results.csv (every cell, long form), metrics.json
    and figures/ into ``out_dir``, as one generation: a kill at any point leaves the earlier report whole or the
    new one.

    ``out_dir`` is replaced as a whole; other files in it are kept, a folder other than figures/ is
    refused (ValueError, before anything is drawn). Results come from the MLflow store at
    ``tracking_uri`` with ``metrics_files`` as the fallback (None: the files only); ``data_root`` (holding
    raw/ and prepared/) tells which data sets are on disk (None: not checked). ``throughput_file``
    (benchmarks/train_throughput.py output), ``rates_file`` (benchmarks/job_rates.yaml; None: compute
    only) and ``benchmark_root`` (the workflow's working directory, holding logs/benchmarks/) feed the
    planned-against-actual section (None: nothing estimated, nothing read). ``generated`` and ``commit``
    default to now and the checkout's HEAD (fixed in golden tests).
    """
    with staged_outputs(out_dir, (*REPORT_FILES, FIGURE_FOLDER)) as staging:
        figure_dir = staging / FIGURE_FOLDER
        figure_dir.mkdir()  # an output even when no figure is drawn
        results = load_results(study, metrics_files, tracking_uri)
        blocks, csv_rows, title = _compose(
            study,
            results,
            figure_dir,
            data_root,
            throughput_file,
            benchmark_root,
            rates_file,
            generated,
            commit,
        )
        markdown, page, table, summary = (staging / name for name in REPORT_FILES)
        markdown.write_text(render_markdown(blocks, staging), encoding="utf-8")
        page.write_text(render_html(blocks, title), encoding="utf-8")
        pd.DataFrame(csv_rows, columns=list(CSV_COLUMNS)).to_csv(table, index=False)
        write_json(summary, _summary_metrics(results))
    return [Path(out_dir) / name for name in REPORT_FILES]


def _compose(
    study: Study,
    results: Results,
    figure_dir: Path,
    data_root: str | Path | None,
    throughput_file: str | Path | None,
    benchmark_root: str | Path | None,
    rates_file: str | Path | None,
    generated: str | None,
    commit: str | None,
) -> tuple[list[Block], list[dict[str, Any]], str]:
    """The report's blocks, its results.csv rows and its title; figures are drawn into ``figure_dir``."""
    targets = load_paper_targets()
    statuses = {s.name: s for s in data_status(data_root)} if data_root is not None else {}
    sweeps = [name for name, experiment in study.experiments.items() if experiment.is_sweep]
    tables = study.without(sweeps)
    cells = paper_cells(tables, results, targets, statuses)
    filling = {cell.experiment for cell in cells if cell.experiment}
    demo = [name for name in tables.experiments if name not in filling]
    title = study.report.get("title", "Circle loss reproduction")
    if study.profile is not None:
        title += f": {study.profile} profile"
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
    blocks += overview_section(study, results, demo)
    if results.problems:
        blocks += [Heading("Problems"), *(Paragraph(problem) for problem in results.problems)]
    paper_blocks, csv_rows = paper_section(tables, results, targets, cells, statuses, demo)
    if demo:  # results first: the demo versions and the sweeps, then the paper's tables (results.csv: paper first)
        demo_blocks, demo_rows = demo_section(tables, results, demo, figure_dir)
        blocks += demo_blocks
        csv_rows += demo_rows
    for sweep in sweeps:
        sweep_blocks, sweep_rows = sensitivity_section(study, results, sweep, figure_dir)
        blocks += sweep_blocks
        csv_rows += sweep_rows
    blocks += card_blocks(study)
    blocks += paper_blocks
    blocks += gradient_section(study, figure_dir)
    blocks += compute_section(study, throughput_file, benchmark_root, data_root, rates_file)
    blocks += provenance_section(study, results)
    return blocks, csv_rows, title


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
