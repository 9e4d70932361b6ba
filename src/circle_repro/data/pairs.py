"""Verification pairs saved with a prepared data set: ``pairs.parquet`` beside the manifest.

Columns: ``path_a``, ``path_b`` (manifest paths) and ``issame`` (bool). The order is the
evaluation order: the 10-fold protocol splits pairs by position, as insightface does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.data.manifest import ManifestError, read_side_table, write_side_table

PAIRS_FILENAME = "pairs.parquet"
PAIR_COLUMNS = ("path_a", "path_b", "issame")


def sample_pairs(frame: pd.DataFrame, n_pairs: int, seed: int = 0) -> pd.DataFrame:
    """``n_pairs`` pairs of distinct images of ``frame``, half matched (same label) and half
    mismatched, in random order; deterministic for a seed."""
    if n_pairs < 2 or n_pairs % 2:
        raise ValueError(f"n_pairs must be an even number >= 2, got {n_pairs}")
    rng = np.random.default_rng(seed)
    paths, labels = frame["path"].to_numpy(), frame["label"].to_numpy()
    by_label = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    eligible = [label for label, members in by_label.items() if len(members) >= 2]
    if not eligible or len(by_label) < 2:
        raise ValueError("pairs need at least one label with two images and at least two labels")
    rows = []
    for _ in range(n_pairs // 2):
        a, b = rng.choice(by_label[eligible[rng.integers(len(eligible))]], size=2, replace=False)
        rows.append((paths[a], paths[b], True))
        first, second = rng.choice(list(by_label), size=2, replace=False)
        rows.append((paths[rng.choice(by_label[first])], paths[rng.choice(by_label[second])], False))
    order = rng.permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order], columns=list(PAIR_COLUMNS))


def write_pairs(pairs: pd.DataFrame, prepared_dir: str | Path) -> Path:
    """Write the pairs file of a prepared data set atomically."""
    return write_side_table(pairs, prepared_dir, PAIRS_FILENAME)


def read_pairs(prepared_dir: str | Path, known_paths: pd.Series | None = None) -> pd.DataFrame:
    """Read and check a pairs file; ``known_paths`` (the manifest's) must contain every pair path."""
    pairs = read_side_table(
        prepared_dir, PAIRS_FILENAME, PAIR_COLUMNS, "this prepared data set has no verification pairs"
    )
    source = Path(prepared_dir) / PAIRS_FILENAME
    if not pd.api.types.is_bool_dtype(pairs["issame"]):
        raise ManifestError(f"{source}: column 'issame' must be boolean, found {pairs['issame'].dtype}")
    if known_paths is not None:
        unknown = sorted((set(pairs["path_a"]) | set(pairs["path_b"])) - set(known_paths))
        if unknown:
            raise ManifestError(f"{source}: {len(unknown)} pair path(s) not in the manifest, e.g. {unknown[0]!r}")
    return pairs
