"""The paper's Fig. 3: a metric against the swept γ and m, mean and 95 % interval over seeds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from circle_repro.report.figures import canvas
from circle_repro.report.stats import t_interval

SWEPT_PARAMETERS = ("gamma", "m")
PAPER_GAMMAS = (32, 64, 128, 256, 512, 1024)  # Fig. 3(a)'s range
PAPER_MARGINS = (-0.2, 0.3)  # Fig. 3(b)'s range


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
    return canvas.save_png(sensitivity_figure(frame, metric_label), path)


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
    canvas.check_columns(frame, ("parameter", "value", "metric", "seed"), "sensitivity's frame")
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


__all__ = ["PAPER_GAMMAS", "PAPER_MARGINS", "SWEPT_PARAMETERS", "best_over_gamma", "mean_ci", "sensitivity",
           "sensitivity_figure"]  # fmt: skip
