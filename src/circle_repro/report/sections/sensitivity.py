"""Sensitivity to γ and m (paper Fig. 3) from a sweep experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from circle_repro.config import SWEPT_PARAMETERS, Study, Sweep
from circle_repro.report.cells import Cell, interval_text, provenance_anchor
from circle_repro.report.csv_rows import csv_row
from circle_repro.report.figures import FIGURES, sensitivity
from circle_repro.report.render import Block, Figure, Heading, Paragraph, Table
from circle_repro.report.results import Results, seed_values
from circle_repro.report.stats import t_interval


def _sweep_points(sweep: Sweep) -> list[tuple[str | None, str, str, str, float]]:
    """Every point of a sweep's curves as (experiment, loss row, loss, parameter, value): the swept rows,
    then the base experiment's rows at their own gamma and m (the swept loss in both panels, a baseline
    in the gamma panel)."""
    points = [(None, row, p["loss"], p["parameter"], p["value"]) for row, p in sweep.points.items()]
    for loss, own in sweep.base_values.items():
        parameters = SWEPT_PARAMETERS if loss == sweep.loss else ("gamma",)
        points += [(sweep.base, loss, loss, parameter, own[parameter]) for parameter in parameters if parameter in own]
    return points


def sensitivity_section(
    study: Study, results: Results, experiment: str, figure_dir: Path
) -> tuple[list[Block], list[dict[str, Any]]]:
    """Fig. 3 from a sweep experiment: its metric against each swept value, mean ± 95 % CI over seeds, with
    the base experiment's runs (at the sweep's seeds) at the base rows' own gamma and m."""
    spec = study.experiment(experiment)
    sweep = spec.sweep
    if sweep is None:
        raise ValueError(f"{experiment} is not a sweep experiment")
    metric = sweep.metric
    rows, csv_rows, frame_rows = [], [], []
    for source, row, loss, parameter, value in _sweep_points(sweep):
        run_experiment = source or experiment
        values = seed_values(results, run_experiment, row, metric)
        values = {seed: values[seed] for seed in spec.seeds if seed in values}
        cell = Cell(
            t_interval([100 * values[seed] for seed in sorted(values)]),
            tuple(r for r in results.of(run_experiment, row) if r.run.seed in spec.seeds),
            provenance_anchor(run_experiment, row),
        )
        label = row if source is None else f"{row} ({source})"
        rows.append({"row": label, "parameter": parameter, "value": f"{value:g}", metric: interval_text(cell.interval)})
        frame_rows += [
            {"parameter": parameter, "value": value, "metric": 100 * score, "seed": seed, "loss": loss}
            for seed, score in values.items()
        ]
        csv_rows.append(
            csv_row(
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
    settings = ", ".join(f"{k}={v}" for k, v in sweep.base_values[sweep.loss].items())
    compared = (
        f" Baselines: {', '.join(sweep.baselines)} (against γ; in the m panel at their best γ)."
        if sweep.baselines
        else ""
    )
    blocks: list[Block] = [
        Heading(f"Sensitivity to γ and m (paper Fig. 3): {experiment}", 2),
        Paragraph(
            f"{spec.description}. One run per value and seed ({len(spec.seeds)} seed(s)); every other setting "
            f"is {sweep.base}'s, whose own runs at the same seeds give the points at its settings ({sweep.loss}: "
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
