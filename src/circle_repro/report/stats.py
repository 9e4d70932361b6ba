"""Uncertainty for the report: a Student-t interval over seeds and a paired bootstrap over queries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22  # resampled indices held at once (32 MiB of int64)


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; ``low``/``high`` are NaN where no interval exists (n < 2 seeds)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def contains(self, value: float) -> bool:
        return self.has_interval and self.low <= value <= self.high


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` with the two-sided Student-t interval (n - 1 degrees of freedom).

    One value gives the value with no interval; no values give NaN with n = 0.
    """
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half_width = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * float(data.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half_width, mean + half_width, n)


def paired_bootstrap(
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    *,
    resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Mean difference ``first - second`` with a paired percentile-bootstrap interval over queries.

    ``first[s]`` and ``second[s]`` hold one value per query (e.g. R@1 hit, AP@R, pair correctness)
    for seed ``s``, the same queries in the same order for both losses. The estimate is the mean over
    seeds of each seed's mean per-query difference. Scheme of one bootstrap replicate: within every
    seed, draw that seed's queries with replacement, use the *same* draw for both losses (paired),
    and take the mean difference; then average over seeds. Seeds are not resampled: the interval
    is the test-set (query sampling) noise of the seed-averaged difference, while seed-to-seed
    variation shows in each cell's Student-t interval. The interval is the central ``confidence``
    percentile range of ``resamples`` replicates, reproducible for a ``seed``; ``n`` is the number
    of seeds.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need the same, non-zero number of seeds for both losses, got {len(first)} and {len(second)}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    rng = np.random.default_rng(seed)
    replicates = np.zeros(resamples)
    estimate = 0.0
    for a, b in zip(first, second, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
            raise ValueError(
                f"per-query arrays of one seed must be 1-D, non-empty and of equal length, got {a.shape} and {b.shape}"
            )
        difference = a - b
        estimate += float(difference.mean())
        chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // len(difference))
        for start in range(0, resamples, chunk):
            stop = min(start + chunk, resamples)
            draws = rng.integers(0, len(difference), size=(stop - start, len(difference)))
            replicates[start:stop] += difference[draws].mean(axis=1)
    n_seeds = len(first)
    low, high = np.quantile(replicates / n_seeds, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate / n_seeds, float(low), float(high), n_seeds)
