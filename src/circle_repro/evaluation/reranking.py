"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of query-gallery distances, fast-reid's ``TEST.RERANK``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from circle_repro.evaluation.inputs import finite_matrix
from circle_repro.evaluation.knn import ArrayLike, _chunk_topk, _positive_int


def _segments(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


def _check_real(value: object, name: str, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        interval = f"[{low}, {high}]" if high < math.inf else f">= {low}"
        raise ValueError(f"{name} must be a real number {interval}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Reranking:
    """k-reciprocal re-ranking (:func:`re_ranking`) with the paper's parameters as defaults."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        _positive_int(self.k1, "Reranking.k1")
        _positive_int(self.k2, "Reranking.k2")
        _check_real(self.lambda_value, "Reranking.lambda_value", 0.0, 1.0)


def _original_distance(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the scaled squared distance d of :func:`re_ranking` (float64)."""
    n_q = len(q_q)
    columns = []  # row i of d comes from column i of the full distance matrix
    if start < n_q:
        a, b = start, min(stop, n_q)
        columns.append(np.hstack([q_q[:, a:b].T, q_g[a:b]]))
    if stop > n_q:
        a, b = max(start, n_q) - n_q, stop - n_q
        columns.append(np.hstack([q_g[:, a:b].T, g_g[:, a:b].T]))
    squared = np.square(np.vstack(columns), dtype=np.float64)
    peak = squared.max(axis=1, keepdims=True)
    if not (peak > 0).all():
        raise ValueError("re_ranking: an item is at distance 0 from every item; its distances cannot be scaled")
    squared /= peak
    return squared


def _reciprocal(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(near, mask)``: the k + 1 nearest of every item, and whether each has the item among its own."""
    near = ranks[:, : k + 1]
    return near, (near[near] == np.arange(len(near))[:, None, None]).any(axis=2)


def _expansion_sets(ranks: np.ndarray, k1: int, max_chunk_bytes: int) -> np.ndarray:
    """Sorted keys ``i * N + j`` of the j in R*(i) (see :func:`re_ranking`), for every item i."""
    n = len(ranks)
    near, reciprocal = _reciprocal(ranks, k1)
    near_half, reciprocal_half = _reciprocal(ranks, round(k1 / 2))
    half_sizes = reciprocal_half.sum(axis=1)
    width, half_width = near.shape[1], near_half.shape[1]
    rows = max(1, max_chunk_bytes // (width * half_width * (width + 16)))
    keys = []
    for start in range(0, n, rows):
        cand, cand_ok = near[start : start + rows], reciprocal[start : start + rows]
        members, members_ok = near_half[cand], reciprocal_half[cand]  # R(c, k1/2) of each candidate
        in_set = ((members[..., None] == cand[:, None, None, :]) & cand_ok[:, None, None, :]).any(axis=3)
        overlap = (members_ok & in_set).sum(axis=2)
        grows = cand_ok & (3 * overlap > 2 * half_sizes[cand])  # |R(c) ∩ R(i)| > 2/3 |R(c)|
        own = np.arange(start, start + len(cand))[:, None]
        chunk_keys = np.r_[
            (own * n + cand)[cand_ok],
            (own[:, :, None] * n + members)[grows[:, :, None] & members_ok],
        ]
        keys.append(np.unique(chunk_keys))
    return np.concatenate(keys)


def _sum_duplicates(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and the sum of the values of each."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=values, minlength=len(unique))


def re_ranking(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    max_chunk_bytes: int = 256 * 2**20,
) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017): the re-ranked (n_q, n_g) distances.

    The ``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)`` of the paper's code,
    open-reid, torchreid and fast-reid's ``evaluation/rerank.py``. Over all N = n_q + n_g items,
    with D = [[q_q_dist, q_g_dist], [q_g_dist^T, g_g_dist]]:

    1. d(i, j) = D[j, i]^2 / max_r D[r, i]^2 (squared, scaled so that each item's farthest is 1);
    2. N(i, k) = the k + 1 nearest items of i by d (itself included; exact ties: lower index
       first), and R(i, k) = {j in N(i, k) : i in N(j, k)};
    3. R*(i) = R(i, k1) united with every R(c, round(k1 / 2)), c in R(i, k1), that shares more
       than 2/3 of its items with R(i, k1);
    4. V[i, j] = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j')) for j in R*(i), else 0;
    5. if k2 != 1, V[i] becomes the mean of V[j] over the k2 nearest j of i (itself included);
    6. with s = sum_m min(V[i, m], V[j, m]), the Jaccard distance is 1 - s / (2 - s), and the
       result is (1 - lambda_value) * Jaccard + lambda_value * d, for query rows i and gallery
       columns j.

    Computed in float64 (the reference code uses float32) with V kept sparse and d rebuilt in
    row blocks of about ``max_chunk_bytes``: the inputs and the result are the only dense
    (n, n) arrays.
    """
    q_g = finite_matrix(q_g_dist, "q_g_dist")
    q_q = finite_matrix(q_q_dist, "q_q_dist")
    g_g = finite_matrix(g_g_dist, "g_g_dist")
    n_q, n_g = q_g.shape
    for name, matrix, shape in (("q_q_dist", q_q, (n_q, n_q)), ("g_g_dist", g_g, (n_g, n_g))):
        if matrix.shape != shape:
            raise ValueError(
                f"{name} must be {shape[0]} x {shape[1]} to match q_g_dist {q_g.shape}, got {matrix.shape}"
            )
    options = Reranking(k1, k2, lambda_value)
    n = n_q + n_g
    if options.k1 >= n or options.k2 > n:
        raise ValueError(
            f"k1={options.k1} and k2={options.k2} need k1 < N and k2 <= N for the N={n} query and gallery items"
        )
    budget = _positive_int(max_chunk_bytes, "max_chunk_bytes")
    rows = max(1, budget // (24 * n))  # d's rows plus the temporaries that build them

    # Pass 1: the nearest items of every item.
    ranks = np.empty((n, max(options.k1 + 1, options.k2)), dtype=np.int64)
    for start in range(0, n, rows):
        d = _original_distance(q_g, q_q, g_g, start, min(start + rows, n))
        ranks[start : start + len(d)] = _chunk_topk(torch.from_numpy(-d), ranks.shape[1])[1].numpy()

    # Pass 2: V on R*(i), as sorted (row, column) entries, and d on queries x gallery.
    keys = _expansion_sets(ranks, options.k1, budget)
    entry_rows, entry_cols = np.divmod(keys, n)
    values = np.empty(len(keys))
    result = np.empty((n_q, n_g))
    for start in range(0, n, rows):
        d = _original_distance(q_g, q_q, g_g, start, min(start + rows, n))
        lo, hi = np.searchsorted(entry_rows, [start, start + len(d)])
        local = entry_rows[lo:hi] - start
        weights = np.exp(-d[local, entry_cols[lo:hi]])
        values[lo:hi] = weights / np.bincount(local, weights=weights, minlength=len(d))[local]
        if start < n_q:
            result[start : start + len(d)] = options.lambda_value * d[: n_q - start, n_q:]

    if options.k2 != 1:  # local query expansion: the mean of the rows of the k2 nearest items
        row_start = np.searchsorted(entry_rows, np.arange(n + 1))
        sources = ranks[:, : options.k2].ravel()
        counts = row_start[sources + 1] - row_start[sources]
        taken = _segments(row_start[sources], counts)
        targets = np.repeat(np.repeat(np.arange(n), options.k2), counts)
        keys, values = _sum_duplicates(targets * n + entry_cols[taken], values[taken] / options.k2)
        entry_rows, entry_cols = np.divmod(keys, n)

    # Jaccard: sum_m min(V[i, m], V[j, m]) over the columns m shared by query i and gallery j.
    first_gallery = np.searchsorted(entry_rows, n_q)
    by_column = first_gallery + np.argsort(entry_cols[first_gallery:], kind="stable")
    g_cols, g_rows, g_values = entry_cols[by_column], entry_rows[by_column] - n_q, values[by_column]
    column_start = np.searchsorted(g_cols, np.arange(n))
    column_count = np.searchsorted(g_cols, np.arange(n), side="right") - column_start
    q_rows, q_cols, q_values = entry_rows[:first_gallery], entry_cols[:first_gallery], values[:first_gallery]
    pairs_per_query = np.bincount(q_rows, weights=column_count[q_cols], minlength=n_q)
    max_pairs = max(1, budget // 48)
    start = 0
    while start < n_q:
        # As many queries as keep both the pair list and their block of the result within budget.
        cumulative = np.cumsum(pairs_per_query[start:])
        stop = start + max(1, min(int(np.searchsorted(cumulative, max_pairs, side="right")), budget // (8 * n_g)))
        lo, hi = np.searchsorted(q_rows, [start, stop])
        counts = column_count[q_cols[lo:hi]]
        partners = _segments(column_start[q_cols[lo:hi]], counts)
        owners = np.repeat(np.arange(lo, hi), counts)
        shared = np.bincount(
            (q_rows[owners] - start) * n_g + g_rows[partners],
            weights=np.minimum(q_values[owners], g_values[partners]),
            minlength=(stop - start) * n_g,
        ).reshape(stop - start, n_g)
        result[start:stop] += (1 - options.lambda_value) * (1 - shared / (2 - shared))
        start = stop
    return result
