"""Figures of a run's sampled test similarities: their distributions, the (s_n, s_p) plane with the training
trajectory (Figs. 1 and 5), and the verification ROC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap

from circle_repro.evaluation.similarity import roc_points
from circle_repro.layout import HISTORY_FILENAME, SIMILARITIES_FILENAME, evaluation_dir
from circle_repro.report import gradients
from circle_repro.report.figures import canvas

TRAJECTORY_COLOURS = LinearSegmentedColormap.from_list("trajectory", ["#a8dadc", "#1d3557"])  # early -> late


@dataclass(frozen=True)
class PairSample:
    """One run's points in the (s_n, s_p) plane: test-set cosines and the training trajectory.

    ``s_n[i]`` and ``s_p[i]`` are one anchor's negative and positive cosine (or, for older runs, independent draws).
    ``trajectory`` has columns ``iteration``, ``s_n``, ``s_p``: the batch means of each iteration.
    """

    s_n: np.ndarray
    s_p: np.ndarray
    trajectory: pd.DataFrame


def load_pair_sample(run_dir: str | Path) -> PairSample:
    """The ``PairSample`` of one run folder, from its evaluation's similarities.npz and its history.csv.

    Per-anchor pairs (``anchor_s_n``/``anchor_s_p``: one anchor's negative and positive) are used when
    the file has them; otherwise independent positive and negative draws are paired by index.
    """
    run_dir = Path(run_dir)
    similarities = evaluation_dir(run_dir) / SIMILARITIES_FILENAME
    for path in (similarities, run_dir / HISTORY_FILENAME):
        if not path.is_file():
            raise ValueError(f"{run_dir} has no {path.relative_to(run_dir)}: train and evaluate the run first")
    with np.load(similarities) as data:
        keys = ("anchor_s_n", "anchor_s_p") if {"anchor_s_n", "anchor_s_p"} <= set(data.files) else ("s_n", "s_p")
        missing = set(keys) - set(data.files)
        if missing:
            raise ValueError(f"{similarities} lacks {sorted(missing)}")
        s_n, s_p = data[keys[0]], data[keys[1]]
    count = min(len(s_n), len(s_p))
    return PairSample(s_n[:count], s_p[:count], pd.read_csv(run_dir / HISTORY_FILENAME))


def similarity_distributions(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Per loss: histograms of test s_p (same class) and s_n (different class) cosine similarities.

    Each panel has its own axes: losses spread similarities over very different ranges.
    """
    canvas.check_samples(samples, "similarity_distributions")
    frame = pd.concat(
        [
            pd.DataFrame({"loss": loss, "pair": kind, "cosine similarity": values})
            for loss, (s_p, s_n) in samples.items()
            for kind, values in (("positive (s_p)", s_p), ("negative (s_n)", s_n))
        ],
        ignore_index=True,
    )
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.displot(
        frame,
        x="cosine similarity",
        hue="pair",
        col="loss",
        col_wrap=min(3, len(samples)),
        kind="hist",
        stat="density",
        common_norm=False,
        element="step",
        bins=60,
        height=3.2,
        aspect=1.3,
        facet_kws={"sharex": False, "sharey": False},
        palette={"positive (s_p)": "#2a9d8f", "negative (s_n)": "#e76f51"},
    )
    grid.set_titles("{col_name}")
    grid.figure.subplots_adjust(wspace=0.25)
    return canvas.save_png(grid.figure, path)


def similarity_pairs(
    samples: Mapping[str, PairSample],
    path: str | Path,
    *,
    circle_m: float | None = None,
    line_m: float | None = None,
    max_points: int = 4000,
) -> Path:
    """The paper's Figs. 1 and 5: per loss, its (s_n, s_p) points after training and its training
    trajectory, with the Circle boundary of margin ``circle_m`` and the line s_p - s_n = ``line_m``.

    At most ``max_points`` test-set points per loss are drawn (a fixed random subset).
    """
    canvas.require(samples, "at least one loss's pair sample", "similarity_pairs")
    if circle_m is None and line_m is None:
        raise ValueError("similarity_pairs needs circle_m or line_m: a decision boundary to draw")
    for loss, sample in samples.items():
        for name in ("s_n", "s_p"):
            if np.size(getattr(sample, name)) == 0:
                raise ValueError(f"similarity_pairs: {loss} has no test-set {name} values")
        if len(sample.s_n) != len(sample.s_p):
            raise ValueError(f"similarity_pairs: {loss} has {len(sample.s_n)} s_n but {len(sample.s_p)} s_p values")
        canvas.check_columns(sample.trajectory, ("iteration", "s_n", "s_p"), f"similarity_pairs: {loss}'s trajectory")
    every_value = np.concatenate(
        [np.r_[s.s_n, s.s_p, s.trajectory["s_n"].to_numpy(), s.trajectory["s_p"].to_numpy()] for s in samples.values()]
    )
    low = min(0.0, float(np.nanquantile(every_value, 0.005))) - 0.02
    columns = min(3, len(samples))
    rows = -(-len(samples) // columns)
    sns.set_theme(style="whitegrid", context="notebook")
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False, constrained_layout=True
    )
    rng = np.random.default_rng(0)
    for ax, (loss, sample) in zip(axes.flat, samples.items(), strict=False):  # spare grid axes: hidden below
        keep = rng.permutation(len(sample.s_n))[:max_points]
        ax.scatter(
            sample.s_n[keep],
            sample.s_p[keep],
            s=3,
            alpha=0.25,
            color="#2a9d8f",
            linewidths=0,
            label="test pairs after training",
        )
        trajectory = sample.trajectory.dropna(subset=["s_n", "s_p"])
        ax.plot(trajectory["s_n"], trajectory["s_p"], color="#1d3557", linewidth=0.6, alpha=0.5)
        ax.scatter(
            trajectory["s_n"],
            trajectory["s_p"],
            c=trajectory["iteration"],
            cmap=TRAJECTORY_COLOURS,
            s=12,
            edgecolors="#1d3557",
            linewidths=0.3,
            label="training batch means",
            zorder=3,
        )
        if circle_m is not None:
            ax.plot(*gradients.circle_arc(circle_m), "k-", linewidth=1.5, label=f"Circle boundary, m={circle_m:g}")
        if line_m is not None:
            line_s_n = np.linspace(low, 1 - line_m, 2)
            line_s_p = gradients.line_boundary(line_s_n, line_m)
            ax.plot(line_s_n, line_s_p, "k--", linewidth=1.5, label=f"s_p - s_n = {line_m:g}")
        ax.set(xlim=(low, 1), ylim=(low, 1), aspect="equal", xlabel="s_n", ylabel="s_p", title=loss)
    for ax in axes.flat[len(samples) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False, markerscale=2)
    return canvas.save_png(figure, path)


ROC_FIGURE_POINTS = 400
"""Points per ROC line of the figure, evenly spaced on its log FAR axis."""


def roc_curves(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Verification ROC per loss from sampled same-class (s_p) and different-class (s_n) cosines."""
    canvas.check_samples(samples, "roc_curves")
    sns.set_theme(style="whitegrid", context="notebook")
    figure, ax = plt.subplots(figsize=(5.5, 4.5), constrained_layout=True)
    smallest = 1.0
    for loss, (s_p, s_n) in samples.items():
        points = roc_points(s_p, s_n, n_points=ROC_FIGURE_POINTS)
        accepted = points["far"] > 0  # the log axis has no zero
        ax.plot(points["far"][accepted], points["tar"][accepted], label=loss)
        smallest = min(smallest, 1 / np.size(s_n))
    chance = np.geomspace(smallest, 1, 50)
    ax.plot(chance, chance, "k:", linewidth=1)
    ax.set(
        xscale="log",
        xlim=(smallest, 1),
        ylim=(0, 1.01),
        xlabel="false accept rate (s_n above threshold)",
        ylabel="true accept rate (s_p above threshold)",
    )
    ax.legend(frameon=False, loc="lower right")
    return canvas.save_png(figure, path)


__all__ = [
    "ROC_FIGURE_POINTS",
    "PairSample",
    "load_pair_sample",
    "roc_curves",
    "similarity_distributions",
    "similarity_pairs",
]
