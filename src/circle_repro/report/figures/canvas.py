"""What every figure module shares: the one place a figure is written (a PNG, atomically) and the checks
of its inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from circle_repro.io import atomic_path


def save_png(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def require(mapping: Mapping[str, object], what: str, figure: str) -> None:
    """``mapping`` is not empty."""
    if not mapping:
        raise ValueError(f"{figure} needs {what}; got none")


def check_samples(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], figure: str) -> None:
    """Every loss has non-empty s_p and s_n arrays."""
    require(samples, "at least one loss's (s_p, s_n) samples", figure)
    for loss, (s_p, s_n) in samples.items():
        for name, values in (("s_p", s_p), ("s_n", s_n)):
            if np.size(values) == 0:
                raise ValueError(f"{figure}: {loss} has no {name} values")


def check_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


__all__ = ["check_columns", "check_samples", "require", "save_png"]
