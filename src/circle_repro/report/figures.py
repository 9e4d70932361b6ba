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
