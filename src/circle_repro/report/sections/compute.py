"""Planned against actual compute: training GPU-hours estimated by the planner against the recorded wall time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from circle_repro.config import Study
from circle_repro.report.cells import table_label
from circle_repro.report.render import Block, Heading, Paragraph, Table


def compute_section(
    study: Study,
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
    for row in planned_vs_actual(study, throughput, benchmark_root, data_root, rates):
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
