"""The report's figures, each saved as a PNG; ``FIGURES`` holds the paper figure and caption of each.

Every figure function takes in-memory inputs, writes one PNG atomically and returns its path. An empty
or incomplete input is a ``ValueError`` that names what is missing. ``load_pair_sample`` reads one
run's folder for ``similarity_pairs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from circle_repro.evaluation.similarity import roc_points
from circle_repro.io import atomic_path
from circle_repro.layout import HISTORY_FILENAME, SIMILARITIES_FILENAME, evaluation_dir
from circle_repro.report import gradients
from circle_repro.report.stats import t_interval

SWEPT_PARAMETERS = ("gamma", "m")
PAPER_GAMMAS = (32, 64, 128, 256, 512, 1024)  # Fig. 3(a)'s range
PAPER_MARGINS = (-0.2, 0.3)  # Fig. 3(b)'s range
TRAJECTORY_COLOURS = LinearSegmentedColormap.from_list("trajectory", ["#a8dadc", "#1d3557"])  # early -> late


@dataclass(frozen=True)
class FigureSpec:
    """What a figure shows: the paper figure it mirrors and the caption the report prints under it."""

    paper_figure: str | None  # None: no counterpart in the paper
    caption: str


FIGURES: dict[str, FigureSpec] = {
    "similarity_distributions": FigureSpec(
        None,
        "Test-set cosine similarities of random same-class (s_p) and different-class (s_n) pairs "
        "(similarities.npz), one panel per loss. Circle loss aims at s_p > 1 - m and s_n < m.",
    ),
    "gradient_maps": FigureSpec(
        "Fig. 2",
        "Gradient magnitudes of triplet, AM-Softmax and Circle loss for one s_p and one s_n, from the "
        "closed forms (paper Fig. 2, §3.3); white dashed: the decision boundary (a line s_p - s_n = m for triplet "
        "and AM-Softmax, the circle s_n² + (s_p - 1)² = 2m² for Circle). AM-Softmax pushes s_p and s_n "
        "equally everywhere; Circle weights each by its distance from the optimum. The paper does not "
        "state its γ and m; these are params.yaml's report.gradient_maps.",
    ),
    "training_dynamics": FigureSpec(
        "Fig. 4",
        "Mean cosine similarity of same-class (s_p, solid) and different-class (s_n, dashed) pairs in each "
        "training batch over iterations (history.csv). Line: mean of the batch means over a moving window "
        "of iterations and all seeds; band: ± one standard deviation of those values. The paper expects "
        "Circle loss to end with a higher s_p and a lower s_n than AM-Softmax. Unlike the paper's "
        "class-level curves, s_p and s_n here are sample-to-sample similarities, not similarities to "
        "class weights.",
    ),
    "similarity_pairs": FigureSpec(
        "Figs. 1 and 5",
        "The (s_n, s_p) plane per loss. Green: test-set pairs after training, each dot one random "
        "anchor's cosine s_n to a random different-class item against its cosine s_p to a random "
        "same-class item (similarities.npz). Blue: the training trajectory of the batch means "
        "(s_n, s_p) (history.csv), light to dark with iteration. Solid: the Circle decision boundary "
        "s_n² + (s_p - 1)² = 2m² (Eq. 8); dashed: the AM-Softmax line s_p - s_n = m. The paper's Fig. 5 "
        "shows Circle pairs passing a narrow passage and converging more tightly than AM-Softmax.",
    ),
    "sensitivity": FigureSpec(
        "Fig. 3",
        "Sensitivity to the scale γ (left, log scale) and the margin m (right): mean over seeds with "
        "95% t-interval bars (none with one seed); every other setting is the base experiment's, whose own "
        "runs give the points at its γ and m. Right, dashed: each baseline at its best γ. The paper "
        "(MegaFace rank-1, §4.5) sweeps γ over 32 ... 1024 for Circle loss and AM-Softmax and over "
        "{32, 64, 128} for ArcFace (unstable beyond in the authors' implementation), and finds Circle loss "
        "ahead of the best AM-Softmax and the best ArcFace for m in [-0.05, 0.25] of its sweep over [-0.2, 0.3].",
    ),
    "roc_curves": FigureSpec(
        None,
        "Verification ROC from the sampled test-set pairs (similarities.npz): rate of same-class pairs "
        "accepted against rate of different-class pairs accepted (log scale) as the cosine threshold "
        "varies; dotted: chance.",
    ),
}


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


def _save(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def _require(mapping: Mapping[str, object], what: str, figure: str) -> None:
    """``mapping`` is not empty."""
    if not mapping:
        raise ValueError(f"{figure} needs {what}; got none")


def _check_samples(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], figure: str) -> None:
    """Every loss has non-empty s_p and s_n arrays."""
    _require(samples, "at least one loss's (s_p, s_n) samples", figure)
    for loss, (s_p, s_n) in samples.items():
        for name, values in (("s_p", s_p), ("s_n", s_n)):
            if np.size(values) == 0:
                raise ValueError(f"{figure}: {loss} has no {name} values")


def _check_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


def similarity_distributions(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Per loss: histograms of test s_p (same class) and s_n (different class) cosine similarities.

    Each panel has its own axes: losses spread similarities over very different ranges.
    """
    _check_samples(samples, "similarity_distributions")
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
    return _save(grid.figure, path)


def gradient_maps(settings: Mapping[str, Mapping[str, float]], path: str | Path, resolution: int = 201) -> Path:
    """The paper's Fig. 2: |dL/ds_p| and |dL/ds_n| of triplet, AM-Softmax and Circle over the
    (s_n, s_p) plane, each with its decision boundary (white dashed)."""
    missing = [name for name in ("triplet", "am_softmax", "circle") if name not in settings]
    if missing:
        raise ValueError(f"gradient_maps needs settings for {missing}; got {sorted(settings)}")
    axis = np.linspace(0, 1, resolution)
    s_n, s_p = np.meshgrid(axis, axis)
    panels = [
        ("triplet", gradients.triplet(s_n, s_p, **settings["triplet"]), gradients.line_boundary, settings["triplet"]),
        (
            "AM-Softmax",
            gradients.am_softmax(s_n, s_p, **settings["am_softmax"]),
            gradients.line_boundary,
            settings["am_softmax"],
        ),
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
    return _save(figure, path, dpi=100)


def moving_band(frames: Sequence[pd.DataFrame], column: str, window: int) -> pd.DataFrame:
    """Per iteration: mean and standard deviation of ``column`` over the last ``window`` logged iterations of
    all ``frames`` pooled (NaN batches skipped); columns ``iteration``, ``mean``, ``std``, ``n``."""
    wide = pd.concat([frame.set_index("iteration")[column] for frame in frames], axis=1).sort_index()

    def pooled_sum(values: pd.DataFrame) -> pd.Series:
        return values.rolling(window, min_periods=1).sum().sum(axis=1)

    count = pooled_sum(wide.notna().astype(float))
    total, squares = pooled_sum(wide.fillna(0.0)), pooled_sum(wide.fillna(0.0) ** 2)
    mean = total / count.where(count > 0)
    std = np.sqrt(np.maximum(squares / count.where(count > 0) - mean**2, 0.0))
    return pd.DataFrame(
        {"iteration": wide.index, "mean": mean.to_numpy(), "std": std.to_numpy(), "n": count.to_numpy()}
    )


def training_dynamics(
    histories: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]], path: str | Path, window: int = 5
) -> Path:
    """The paper's Fig. 4: batch mean s_p and s_n over training iterations, per loss.

    ``histories`` maps a loss to its history.csv frame, or to one frame per seed; the line is the
    mean over a ``window``-iteration moving window and all seeds, the band ± one standard deviation.
    """
    _require(histories, "at least one loss's training history", "training_dynamics")
    if window < 1:
        raise ValueError(f"window must be >= 1; got {window}")
    sns.set_theme(style="whitegrid", context="notebook")
    figure, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    colours = sns.color_palette(n_colors=len(histories))
    for colour, (loss, history) in zip(colours, histories.items(), strict=True):
        frames = [history] if isinstance(history, pd.DataFrame) else list(history)
        if not frames or all(frame.empty for frame in frames):
            raise ValueError(f"training_dynamics: {loss} has an empty training history")
        for frame in frames:
            _check_columns(frame, ("iteration", "s_p", "s_n"), f"training_dynamics: {loss}'s history")
        for column, style in (("s_p", "-"), ("s_n", "--")):
            band = moving_band(frames, column, window)
            ax.plot(band["iteration"], band["mean"], style, color=colour, label=f"{loss} {column}")
            low, high = band["mean"] - band["std"], band["mean"] + band["std"]
            ax.fill_between(band["iteration"], low, high, color=colour, alpha=0.2, linewidth=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set(xlabel="iteration", ylabel=f"batch mean cosine\n({window}-iteration moving window)")
    return _save(figure, path)


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
    _require(samples, "at least one loss's pair sample", "similarity_pairs")
    if circle_m is None and line_m is None:
        raise ValueError("similarity_pairs needs circle_m or line_m: a decision boundary to draw")
    for loss, sample in samples.items():
        for name in ("s_n", "s_p"):
            if np.size(getattr(sample, name)) == 0:
                raise ValueError(f"similarity_pairs: {loss} has no test-set {name} values")
        if len(sample.s_n) != len(sample.s_p):
            raise ValueError(f"similarity_pairs: {loss} has {len(sample.s_n)} s_n but {len(sample.s_p)} s_p values")
        _check_columns(sample.trajectory, ("iteration", "s_n", "s_p"), f"similarity_pairs: {loss}'s trajectory")
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
    return _save(figure, path)


def mean_ci(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (loss, parameter, value): mean of ``metric`` over seeds with its 95% Student-t interval
    (``low``, ``high``; NaN with one seed) and the seed count ``n``. ``loss`` is optional in ``frame``."""
    keys = [key for key in ("loss", "parameter", "value") if key in frame.columns]
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        interval = t_interval(group["metric"].to_numpy())
        rows.append(
            dict(zip(keys, key, strict=True))
            | {"mean": interval.estimate, "low": interval.low, "high": interval.high, "n": interval.n}
        )
    return pd.DataFrame(rows)


def sensitivity(frame: pd.DataFrame, path: str | Path, metric_label: str = "metric") -> Path:
    """:func:`sensitivity_figure` saved as a PNG at ``path``."""
    return _save(sensitivity_figure(frame, metric_label), path)


def sensitivity_figure(frame: pd.DataFrame, metric_label: str = "metric") -> Figure:
    """The paper's Fig. 3: the metric against γ (log scale) and against m, mean ± 95% CI over seeds.

    ``frame`` is long-form with columns ``parameter`` ("gamma" or "m"), ``value`` (the parameter's
    value), ``metric`` (the score of one run), ``seed`` and, optionally, ``loss`` (one line each).
    Only the parameters present get a panel. In the m panel, a loss with γ values but no m values (a
    baseline) is a dashed horizontal line at its best mean over γ, as the paper compares the m sweep
    with the best AM-Softmax and ArcFace.
    """
    if frame.empty:
        raise ValueError("sensitivity needs at least one swept run; got an empty frame")
    _check_columns(frame, ("parameter", "value", "metric", "seed"), "sensitivity's frame")
    unknown = sorted(set(frame["parameter"]) - set(SWEPT_PARAMETERS))
    if unknown:
        raise ValueError(f"sensitivity: unknown parameter(s) {unknown}; allowed: {list(SWEPT_PARAMETERS)}")
    run_keys = [key for key in ("loss", "parameter", "value", "seed") if key in frame.columns]
    repeated = frame[frame.duplicated(run_keys, keep=False)]
    if not repeated.empty:
        raise ValueError(f"sensitivity: more than one row per run ({', '.join(run_keys)}):\n{repeated[run_keys]}")
    summary = mean_ci(frame)
    if "loss" not in summary.columns:
        summary["loss"] = "swept loss"
    swept = [name for name in SWEPT_PARAMETERS if name in set(summary["parameter"])]
    sns.set_theme(style="whitegrid", context="notebook")
    figure, axes = plt.subplots(
        1, len(swept), figsize=(5.2 * len(swept), 4), squeeze=False, sharey=True, constrained_layout=True
    )
    colours = dict(zip(summary["loss"].unique(), sns.color_palette(n_colors=summary["loss"].nunique()), strict=True))
    for ax, parameter in zip(axes.flat, swept, strict=True):
        part = summary[summary["parameter"] == parameter]
        for loss, line in part.groupby("loss", sort=False):
            below, above = (line["mean"] - line["low"]).fillna(0.0), (line["high"] - line["mean"]).fillna(0.0)
            ax.errorbar(
                line["value"],
                line["mean"],
                yerr=[below, above],
                marker="o",
                capsize=3,
                color=colours[loss],
                label=loss,
            )
        if parameter == "m":
            _best_baselines(ax, summary, set(part["loss"]), colours)
        values = part["value"].to_numpy(dtype=float)
        if parameter == "gamma":
            ax.set_xscale("log", base=2)
            ticks = sorted(set(PAPER_GAMMAS) | set(values.tolist()))
            ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            ax.set_xlim(min(PAPER_GAMMAS[0], values.min()) / 1.25, max(PAPER_GAMMAS[-1], values.max()) * 1.25)
            ax.set_xlabel("scale γ")
        else:
            ax.set_xlim(min(PAPER_MARGINS[0], values.min()) - 0.025, max(PAPER_MARGINS[1], values.max()) + 0.025)
            ax.set_xlabel("margin m")
        ax.set_ylabel(metric_label)
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    figure.legend(handles.values(), handles.keys(), loc="outside right upper", frameon=False)
    return figure


def best_over_gamma(summary: pd.DataFrame) -> pd.DataFrame:
    """Per loss of a :func:`mean_ci` summary: the γ row with the highest mean (``loss``, ``value``, ``mean``)."""
    gamma = summary[summary["parameter"] == "gamma"]
    best = gamma.loc[gamma.groupby("loss", sort=False)["mean"].idxmax()]
    return best[["loss", "value", "mean"]].reset_index(drop=True)


def _best_baselines(ax: plt.Axes, summary: pd.DataFrame, swept: set[str], colours: Mapping[str, object]) -> None:
    """Dashed lines at the best mean over γ of each loss not swept over m."""
    for row in best_over_gamma(summary[~summary["loss"].isin(swept)]).itertuples():
        ax.axhline(row.mean, linestyle="--", color=colours[row.loss], label=f"best {row.loss} (γ={row.value:g})")


ROC_FIGURE_POINTS = 400
"""Points per ROC line of the figure, evenly spaced on its log FAR axis."""


def roc_curves(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Verification ROC per loss from sampled same-class (s_p) and different-class (s_n) cosines."""
    _check_samples(samples, "roc_curves")
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
    return _save(figure, path)
