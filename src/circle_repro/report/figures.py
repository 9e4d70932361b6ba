"""The report's figures, each saved as a PNG with its caption."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from circle_repro.io import atomic_path  # noqa: E402
from circle_repro.report import gradients  # noqa: E402


def similarity_distributions(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Per loss: histograms of test s_p (same class) and s_n (different class) cosine similarities.

    Each panel has its own axes: losses spread similarities over very different ranges.
    """
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
    with atomic_path(path) as tmp:
        grid.savefig(tmp, dpi=110, format="png")
    plt.close(grid.figure)
    return Path(path)


def gradient_maps(settings: Mapping[str, Mapping[str, float]], path: str | Path, resolution: int = 201) -> Path:
    """The paper's Fig. 2: |dL/ds_p| and |dL/ds_n| of triplet, AM-Softmax and Circle over the
    (s_n, s_p) plane, each with its decision boundary (white dashed)."""
    axis = np.linspace(0, 1, resolution)
    s_n, s_p = np.meshgrid(axis, axis)
    panels = [
        ("triplet", gradients.triplet(s_n, s_p, **settings["triplet"]), gradients.line_boundary, settings["triplet"]),
        ("AM-Softmax", gradients.am_softmax(s_n, s_p, **settings["am_softmax"]), gradients.line_boundary, settings["am_softmax"]),
        ("Circle", gradients.circle(s_n, s_p, **settings["circle"]), gradients.circle_boundary, settings["circle"]),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(11, 7), constrained_layout=True)
    for column, (name, (grad_n, grad_p), boundary, params) in enumerate(panels):
        label = ", ".join(f"{'γ' if key == 'gamma' else key}={value:g}" for key, value in params.items())
        for row, (grad, which) in enumerate(((grad_p, "s_p"), (grad_n, "s_n"))):
            ax = axes[row, column]
            image = ax.imshow(grad, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", aspect="equal")
            ax.plot(axis, boundary(axis, params["m"]), "w--", linewidth=1.5)
            title = f"{name} ({label})\n|∂L/∂{which}|" if row == 0 else f"|∂L/∂{which}|"
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="s_n", ylabel="s_p", title=title)
            figure.colorbar(image, ax=ax, shrink=0.8)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def training_dynamics(histories: Mapping[str, pd.DataFrame], path: str | Path, window: int = 5) -> Path:
    """The paper's Fig. 4 analogue: batch mean s_p and s_n over training iterations, per loss."""
    frame = pd.concat(
        [
            history.assign(**{name: history[name].rolling(window, min_periods=1).mean() for name in ("s_p", "s_n")})
            .melt(id_vars="iteration", value_vars=["s_p", "s_n"], var_name="similarity", value_name="cosine")
            .assign(loss=loss)
            for loss, history in histories.items()
        ],
        ignore_index=True,
    )
    sns.set_theme(style="whitegrid", context="notebook")
    figure, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    sns.lineplot(frame, x="iteration", y="cosine", hue="loss", style="similarity", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set(ylabel=f"batch mean cosine\n({window}-iteration moving average)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return Path(path)
