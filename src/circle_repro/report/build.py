"""Assemble reports/: the demo tables beside the published ones, figures, provenance, long-form results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.io import atomic_open, write_json
from circle_repro.layout import HISTORY_FILENAME, SIMILARITIES_FILENAME
from circle_repro.provenance import git_commit
from circle_repro.report.figures import gradient_maps, similarity_distributions, training_dynamics
from circle_repro.report.render import Block, Figure, Heading, Paragraph, Table, render_html, render_markdown
from circle_repro.report.results import UNTRAINED, load_results, summarise
from circle_repro.report.targets import load_paper_targets, paper_table

def _mean_std(mean: float, std: float, n: int) -> str:
    spread = "n/a" if n < 2 or np.isnan(std) else f"{100 * std:.2f}"
    return f"{100 * mean:.2f} ± {spread}"


def table_metrics(summary: pd.DataFrame, experiment: str) -> list[str]:
    """An experiment's metrics in the order its evaluation reports them; the first is its headline.

    Per-fold spreads (``*_std``) are left to results.csv: the tables show the spread over seeds.
    """
    metrics = summary.loc[summary["experiment"] == experiment, "metric"]
    return [m for m in dict.fromkeys(metrics) if not m.endswith("_std")]


def reproduced_table(summary: pd.DataFrame, experiment: str, losses: Sequence[str]) -> pd.DataFrame:
    """Rows = losses (params order), columns = metrics; cells 'mean ± std' in percent, plus the seed count."""
    part = summary[summary["experiment"] == experiment]
    columns = table_metrics(summary, experiment)
    if not columns:
        return pd.DataFrame({"status": "not run"}, index=pd.Index(list(losses), name="Loss"))
    table = pd.DataFrame(index=pd.Index(list(losses), name="Loss"), columns=[*columns, "seeds"], dtype=object)
    for loss in losses:
        rows = part[part["loss"] == loss].set_index("metric")
        if rows.empty:
            table.loc[loss] = ["not run"] * len(columns) + [0]
            continue
        table.loc[loss] = [_mean_std(*rows.loc[c, ["mean", "std", "n"]]) for c in columns] + [int(rows["n"].max())]
    return table


def table_label(table_id: str) -> str:
    """'table5' -> 'Table 5'."""
    return "Table " + table_id.removeprefix("table")


def published_table(table_id: str, targets: pd.DataFrame) -> pd.DataFrame:
    """A paper table as printed: the table's own number of decimals, '-' where the paper has none."""
    table = paper_table(table_id, targets)
    table.index.name = "Loss"
    decimals = max(len(repr(float(v)).split(".")[1]) for v in targets.loc[targets["table"] == table_id, "value"])
    return table.map(lambda v: "-" if pd.isna(v) else f"{v:.{decimals}f}")


def _comparison(summary: pd.DataFrame, experiment: str, losses: Sequence[str]) -> str | None:
    metrics = table_metrics(summary, experiment)
    if not metrics:
        return None
    headline = metrics[0]
    r1 = summary[(summary["experiment"] == experiment) & (summary["metric"] == headline)].set_index("loss")
    circle = [name for name in losses if name.lower().startswith("circle") and name in r1.index]
    others = [name for name in losses if name not in circle and name != UNTRAINED and name in r1.index]
    if not circle or not others:
        return None
    best = max(others, key=lambda name: r1.loc[name, "mean"])
    delta = 100 * (r1.loc[circle[0], "mean"] - r1.loc[best, "mean"])
    spread = 100 * max(r1.loc[circle[0], "std"], r1.loc[best, "std"])
    verdict = "within" if abs(delta) <= 2 * spread else "beyond"
    return (
        f"{circle[0]} minus the best other loss ({best}) at {headline}: {delta:+.2f} points; the larger seed "
        f"standard deviation is {spread:.2f} points, so the difference is {verdict} twice the seed spread. "
        "This is a rough reading over few seeds, not a significance test."
    )


def _provenance(results: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run: its headline metric, MLflow run id and config hash."""
    trained = results[results["loss"] != UNTRAINED]
    headline = trained.drop_duplicates("run_id").sort_values("run_id")
    return pd.DataFrame(
        {
            "headline metric": headline["metric"].to_numpy(),
            "value (%)": (100 * headline["value"]).map(lambda v: f"{v:.2f}").to_numpy(),
            "MLflow run": headline["mlflow_run_id"].to_numpy(),
            "config hash": headline["config_hash"].to_numpy(),
        },
        index=pd.Index(headline["run_id"].to_numpy(), name="Run"),
    )


def _lowest_seed_run_dirs(results: pd.DataFrame) -> dict[str, Path]:
    """Per trained loss, the folder of its lowest-seed run."""
    trained = results[results["loss"] != UNTRAINED]
    first_runs = trained.drop_duplicates("run_id").sort_values("seed").drop_duplicates("loss")
    return {loss: Path(source).parent for loss, source in zip(first_runs["loss"], first_runs["source"], strict=True)}


def _similarity_samples(run_dirs: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    samples = {}
    for loss, run_dir in run_dirs.items():
        with np.load(run_dir / SIMILARITIES_FILENAME) as data:
            samples[loss] = (data["s_p"], data["s_n"])
    return samples


def build_report(
    params: dict[str, Any],
    metrics_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    generated: str | None = None,
    commit: str | None = None,
) -> list[Path]:
    """Write report.md, report.html, results.csv and metrics.json (per-loss means) into ``out_dir``.

    ``generated`` and ``commit`` default to now and the checkout's HEAD (fixed in golden tests).
    """
    out_dir = Path(out_dir)
    results, problems = load_results(metrics_files)
    summary = summarise(results)
    targets = load_paper_targets()
    title = params["report"].get("title", "Circle loss reproduction")
    generated = generated or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = commit or git_commit()
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(
            f"{results['run_id'].nunique()} runs evaluated; generated {generated} from commit {commit}. "
            "Cells are mean ± standard deviation over seeds, in percent. Every run is an MLflow run "
            f"(store: {params['tracking']['uri']}, experiment: {params['tracking']['experiment']}); "
            "see the provenance table for run ids."
        ),
    ]
    if problems:
        blocks += [Heading("Problems"), *(Paragraph(problem) for problem in problems)]
    figure_dir = out_dir / "figures"
    for experiment, spec in params["experiments"].items():
        part = results[results["experiment"] == experiment]
        rows = list(spec["losses"]) + ([UNTRAINED] if (part["loss"] == UNTRAINED).any() else [])
        blocks.append(Heading(f"{experiment}: {spec.get('description', '')}".rstrip(": ")))
        blocks.append(
            Table(
                reproduced_table(summary, experiment, rows),
                caption=f"Reproduced, {spec['dataset']} test classes (shape of paper {table_label(spec['table'])})",
                label="this repository",
            )
        )
        comparison = _comparison(summary, experiment, list(spec["losses"]))
        if comparison:
            blocks.append(Paragraph(comparison))
        if UNTRAINED in rows:
            blocks.append(
                Paragraph(
                    f"The '{UNTRAINED}' row evaluates each seed's initial weights, before any training: "
                    "what the architecture alone gives on these data."
                )
            )
        table_meta = targets.attrs["tables"][spec["table"]]
        blocks.append(
            Table(
                published_table(spec["table"], targets),
                caption=f"Paper {table_label(spec['table'])} as published: {table_meta['title']}",
                label="paper, different data",
                reference=True,
            )
        )
        if not part.empty:
            run_dirs = _lowest_seed_run_dirs(part)
            figure = similarity_distributions(_similarity_samples(run_dirs), figure_dir / f"{experiment}_similarities.png")
            blocks.append(
                Figure(
                    figure,
                    f"{experiment}: test-set cosine similarities of same-class (s_p) and different-class (s_n) "
                    "pairs, 20,000 random pairs each, lowest seed per loss. Circle loss aims at s_p > 1 - m "
                    "and s_n < m.",
                )
            )
            histories = {loss: pd.read_csv(run_dir / HISTORY_FILENAME) for loss, run_dir in run_dirs.items()}
            blocks.append(
                Figure(
                    training_dynamics(histories, figure_dir / f"{experiment}_dynamics.png"),
                    f"{experiment}: mean s_p (same class) and s_n (different class) of each training batch over "
                    "iterations, lowest seed per loss (the paper's Fig. 4 compares Circle with AM-Softmax this way).",
                )
            )
    if "gradient_maps" in params["report"]:
        settings = params["report"]["gradient_maps"]
        blocks += [
            Heading("Gradients of the binary losses (paper Fig. 2)"),
            Figure(
                gradient_maps(settings, figure_dir / "gradient_maps.png"),
                "Gradient magnitudes of triplet, AM-Softmax and Circle loss for one s_p and one s_n, from the "
                "closed forms (spec §4); white dashed: the decision boundary (a line s_p - s_n = m for triplet "
                "and AM-Softmax, the circle s_n² + (s_p - 1)² = 2m² for Circle). AM-Softmax pushes s_p and s_n "
                "equally everywhere; Circle weights each by its distance from the optimum. The paper does not "
                "state its γ and m; these are params.yaml's report.gradient_maps.",
            ),
        ]
    if not results.empty:
        blocks += [Heading("Provenance"), Table(_provenance(results), caption="Every evaluated run")]
    not_run = sorted(set(targets["table"]) - {spec["table"] for spec in params["experiments"].values()})
    if not_run:
        blocks.append(
            Paragraph(
                "Not run in this profile: paper "
                + ", ".join(table_label(t) for t in not_run)
                + " (face recognition and person re-ID need data sets and GPUs outside the demo)."
            )
        )
    outputs = [out_dir / "report.md", out_dir / "report.html", out_dir / "results.csv", out_dir / "metrics.json"]
    with atomic_open(outputs[0]) as fh:
        fh.write(render_markdown(blocks, out_dir))
    with atomic_open(outputs[1]) as fh:
        fh.write(render_html(blocks, title))
    with atomic_open(outputs[2]) as fh:
        results.drop(columns="source").to_csv(fh, index=False)
    write_json(outputs[3], _summary_metrics(summary))
    return outputs


def _summary_metrics(summary: pd.DataFrame) -> dict[str, Any]:
    """{experiment: {loss: {metric: {mean, std, n}}}}, the file `dvc metrics show` reads."""
    nested: dict[str, Any] = {}
    for row in summary.itertuples(index=False):
        std = None if np.isnan(row.std) else round(float(row.std), 6)
        nested.setdefault(row.experiment, {}).setdefault(row.loss, {})[row.metric] = {
            "mean": round(float(row.mean), 6),
            "std": std,
            "n": int(row.n),
        }
    return nested
