"""What was run: per experiment, where its results stand in the report, its data, loss rows, seeds and
its best loss row at its headline metric."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from circle_repro.config import Experiment, Study
from circle_repro.report.cells import interval_text, row_cell, table_label
from circle_repro.report.render import Block, Heading, Paragraph, Table
from circle_repro.report.results import Results, experiment_metrics


def _placement(experiment: Experiment, demo: Sequence[str]) -> str:
    if experiment.is_sweep:
        return "sensitivity (paper Fig. 3)"
    if experiment.name in demo:
        return f"demo version of paper {table_label(experiment.table)}"
    return f"paper {table_label(experiment.table)}"


def headline(results: Results, study: Study, experiment: str) -> str:
    """The loss row with the highest mean at the experiment's first metric, e.g. 'R@1: CircleLoss 92.00 ± 4.97
    (n=3)'; 'no result' when no run has one."""
    metrics = experiment_metrics(results, experiment)
    if not metrics:
        return "no result"
    cells = {loss: row_cell(results, experiment, loss, metrics[0]) for loss in study.experiment(experiment).losses}
    scored = {loss: cell for loss, cell in cells.items() if cell.interval.n}
    if not scored:
        return "no result"
    best = max(scored, key=lambda loss: scored[loss].interval.estimate)
    return f"{metrics[0]}: {best} {interval_text(scored[best].interval)}"


def overview_section(study: Study, results: Results, demo: Sequence[str]) -> list[Block]:
    """One row per experiment of the profile: where its results are, its data and protocol, its loss rows and
    seeds, how many of its runs have results, and its best loss row at its headline metric."""
    rows = {}
    for name, experiment in study.experiments.items():
        runs = [r for r in results.runs if r.run.experiment == name]
        rows[name] = {
            "results in": _placement(experiment, demo),
            "data set": experiment.dataset,
            "protocol": experiment.evaluation["protocol"],
            "loss rows": len(experiment.losses),
            "seeds": ", ".join(str(seed) for seed in experiment.seeds),
            "runs with results": f"{sum(1 for r in runs if r.metrics)} of {len(runs)}",
            "best loss row": headline(results, study, name),
        }
    parts = ["the demo versions"] if demo else []
    parts += ["the sensitivity sweeps"] if any(experiment.is_sweep for experiment in study.experiments.values()) else []
    order = ", then ".join([*parts, "the recipe cards and the paper's tables cell by cell"])
    return [
        Heading("What was run"),
        Paragraph(
            f"{len(rows)} experiment(s) of this profile, each trained once per loss row and seed, then evaluated on "
            f"its test split. Below: {order}; then the gradient maps, the planned "
            "against actual compute and every run's provenance."
        ),
        Table(
            pd.DataFrame.from_dict(rows, orient="index").rename_axis("Experiment"),
            "Experiments of this profile; best loss row: the highest mean at the experiment's first metric",
        ),
    ]
