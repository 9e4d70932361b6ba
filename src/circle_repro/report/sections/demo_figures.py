"""The figures of one demo experiment (similarity distributions, training dynamics, pairs, ROC) and its collapse note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.config import Study
from circle_repro.layout import HISTORY_FILENAME, SIMILARITIES_FILENAME, evaluation_dir
from circle_repro.losses.registry import loss_defaults
from circle_repro.report.figures import (
    FIGURES,
    load_pair_sample,
    roc_curves,
    similarity_distributions,
    similarity_pairs,
    training_dynamics,
)
from circle_repro.report.render import Block, Figure, Paragraph
from circle_repro.report.results import Results


def _figure_run_dirs(results: Results, experiment: str) -> tuple[dict[str, list[Path]], list[str]]:
    """Per loss, the folders of its evaluated runs holding the figures' inputs (lowest seed first);
    the evaluated losses without one."""
    found: dict[str, list[Path]] = {}
    for result in sorted(results.runs, key=lambda r: r.run.seed):
        run_dir = result.run_dir
        if result.run.experiment != experiment or run_dir is None or not result.metrics:
            continue
        if (evaluation_dir(run_dir) / SIMILARITIES_FILENAME).is_file() and (run_dir / HISTORY_FILENAME).is_file():
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


def demo_figures(results: Results, study: Study, experiment: str, figure_dir: Path) -> list[Block]:
    run_dirs, lacking = _figure_run_dirs(results, experiment)
    if not run_dirs:
        return []
    samples = {}
    for loss, dirs in run_dirs.items():
        with np.load(evaluation_dir(dirs[0]) / SIMILARITIES_FILENAME) as data:
            samples[loss] = (data["s_p"], data["s_n"])
    histories = {loss: [pd.read_csv(d / HISTORY_FILENAME) for d in dirs] for loss, dirs in run_dirs.items()}
    spec = study.experiment(experiment)
    losses = {name: loss.config for name, loss in spec.losses.items()}
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
    collapsed = collapse_note(histories, losses)
    blocks += [Paragraph(collapsed)] if collapsed else []
    circle_m, line_m = _boundary_margins(losses)
    if circle_m is not None or line_m is not None:
        pairs = {loss: load_pair_sample(dirs[0]) for loss, dirs in run_dirs.items()}
        blocks.append(
            Figure(
                similarity_pairs(pairs, figure_dir / f"{experiment}_pairs.png", circle_m=circle_m, line_m=line_m),
                f"{experiment}, Figs. 1 and 5 style, lowest seed per loss (Circle m = {circle_m}, line margin "
                f"{line_m}). {FIGURES['similarity_pairs'].caption}",
            )
        )
    if spec.evaluation["protocol"] == "verification_pairs":
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
