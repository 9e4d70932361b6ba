"""The paper's Fig. 4: batch similarities over training, from the runs' history.csv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from circle_repro.report.figures import canvas


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
    canvas.require(histories, "at least one loss's training history", "training_dynamics")
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
            canvas.check_columns(frame, ("iteration", "s_p", "s_n"), f"training_dynamics: {loss}'s history")
        for column, style in (("s_p", "-"), ("s_n", "--")):
            band = moving_band(frames, column, window)
            ax.plot(band["iteration"], band["mean"], style, color=colour, label=f"{loss} {column}")
            low, high = band["mean"] - band["std"], band["mean"] + band["std"]
            ax.fill_between(band["iteration"], low, high, color=colour, alpha=0.2, linewidth=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set(xlabel="iteration", ylabel=f"batch mean cosine\n({window}-iteration moving window)")
    return canvas.save_png(figure, path)


__all__ = ["moving_band", "training_dynamics"]
