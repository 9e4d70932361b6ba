"""Person re-identification: CMC, mAP and mINP with fast-reid's Market-1501 protocol.

Reference: fast-reid ``fastreid/evaluation/rank.py::eval_market1501``. For every
query:

1. the gallery is ranked by cosine distance of L2-normalised features (here: by descending
   cosine similarity, which is the same order without the float32 rounding of ``1 - cos``);
2. gallery items with the **same pid and the same camera** as the query are removed;
3. a query with no true match left is **skipped** (and counted in ``n_skipped_queries``);
4. CMC@k is 1 when the first match is within the top k (the clipped cumulative sum), averaged
   over valid queries; AP = sum_k P@k * rel_k / #rel; INP = #rel / (rank of the last match).

Identity conventions (fast-reid's ``eval_market1501``):

* pid 0 (Market-1501 "distractors") is an ordinary identity as far as this function is
  concerned: a pid-0 gallery item is a negative for every query of another pid. The data layer
  keeps them in the gallery, as fast-reid does.
* pid -1 ("junk") is dropped by the data layer at load time. If such gallery items are passed
  anyway they are **removed for every query**, exactly like the same-pid-same-camera junk
  (fast-reid's loader intent: junk never counts as a match or as a negative). A query with
  pid -1 therefore has no match and is skipped.

Ties: gallery items with exactly equal similarity are ranked by ascending gallery index (a
stable sort), as in :mod:`circle_repro.evaluation.knn`; fast-reid's ``np.argsort`` leaves that
order unspecified.

How it is computed without sorting the gallery: only the ranks of the true matches matter.
Queries are processed in chunks of rows of the query x gallery similarity matrix (bounded by
``max_chunk_bytes``). Within a chunk the matches of each query are sorted (they are few), the
matches and the junk are masked out of the row, and the rank of the j-th match is
``j + #(kept non-matches ranked before it)``, counted with one vectorised comparison per
match "slot" over all queries that have at least j matches (queries are ordered by their
number of matches, so those rows form a prefix). Cost: one matrix product plus
``#matches x #gallery`` comparisons, instead of a full argsort of every row.

Options, all off by default as in the paper and fast-reid, applied in fast-reid's
order: flip (:func:`flip_average`, before anything else), average query expansion
(:class:`QueryExpansion`, on the features), then k-reciprocal re-ranking (:class:`Reranking`,
on the distances; the ranking above then runs on the re-ranked distances).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from circle_repro.evaluation.inputs import finite_tensor, unit_rows, vector
from circle_repro.evaluation.knn import ArrayLike, _positive_int, topk_cosine
from circle_repro.evaluation.reranking import Reranking, _check_real, _segments, re_ranking

JUNK_PID = -1
_TILE_BYTES = 4 * 2**20  # boolean work space of one tile of rows x match slots x gallery


@dataclass(frozen=True, eq=False)
class ReidResult:
    """CMC curve, mAP and mINP (fractions in [0, 1]) over the valid queries.

    ``cmc[k - 1]`` is Rank-k. ``n_skipped_queries`` counts queries without any true match left
    in the gallery after junk removal; they are excluded from every average.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    n_valid_queries: int
    n_skipped_queries: int
    per_query: ReidPerQuery | None = None  # only with ``evaluate(..., per_query=True)``

    def rank(self, k: int) -> float:
        """Rank-k accuracy (CMC at k)."""
        return float(self.cmc[k - 1])


@dataclass(frozen=True, eq=False)
class ReidPerQuery:
    """Per valid query, in ascending query index: the values that :class:`ReidResult` averages.

    ``first_match_rank`` is the 1-based rank of the query's first true match among the kept
    gallery items (Rank-k hit: ``first_match_rank <= k``); ``average_precision`` and
    ``inverse_negative_penalty`` average exactly (same order) to ``mAP`` and ``mINP``.
    """

    query_indices: np.ndarray
    first_match_rank: np.ndarray
    average_precision: np.ndarray
    inverse_negative_penalty: np.ndarray

    def hits(self, k: int) -> np.ndarray:
        """1.0 where the first true match is within the top ``k``, else 0.0; its mean is Rank-k."""
        return (self.first_match_rank <= k).astype(np.float64)


def _similarity_block(queries: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
    """One chunk of the cosine similarity matrix (rows already unit-norm), as a writable array."""
    return (queries @ gallery.T).numpy()


def _count_true(flags: np.ndarray) -> np.ndarray:
    """Number of True entries along the last axis (uint16 partial sums: exact and fast)."""
    as_bytes = flags.view(np.uint8)
    width = as_bytes.shape[-1]
    if width <= np.iinfo(np.uint16).max:
        return as_bytes.sum(axis=-1, dtype=np.uint16)
    total = np.zeros(as_bytes.shape[:-1], dtype=np.int64)
    for start in range(0, width, np.iinfo(np.uint16).max):
        total += as_bytes[..., start : start + np.iinfo(np.uint16).max].sum(axis=-1, dtype=np.uint16)
    return total


# ---------------------------------------------------------------------------------------------
# Options (fast-reid's TEST.FLIP, TEST.AQE and TEST.RERANK; all off by default)


@dataclass(frozen=True)
class QueryExpansion:
    """Average query expansion as fast-reid's ``aqe`` (``TEST.AQE``; alpha-QE), with its defaults.

    Every query and gallery feature is replaced by the mean, over its ``k`` nearest neighbours by
    cosine among the queries and the gallery together (itself included), of the neighbour's
    feature times (cosine similarity) ** ``alpha``; this is repeated ``times`` times.
    """

    k: int = 5
    alpha: float = 3.0
    times: int = 1

    def __post_init__(self) -> None:
        _positive_int(self.k, "QueryExpansion.k")
        _positive_int(self.times, "QueryExpansion.times")
        _check_real(self.alpha, "QueryExpansion.alpha", 0.0)


def flip_average(
    feats: ArrayLike, flipped_feats: ArrayLike, *, names: tuple[str, str] = ("feats", "flipped_feats")
) -> torch.Tensor:
    """fast-reid's flip test: the mean of each image's features and those of its horizontal flip.

    (insightface sums them instead; after L2 normalisation the two are the same.) ``names`` are
    the argument names used in error messages.
    """
    x = finite_tensor(feats, names[0])
    flipped = finite_tensor(flipped_feats, names[1])
    if flipped.shape != x.shape:
        raise ValueError(
            f"{names[1]} must have the shape of {names[0]}, got {tuple(flipped.shape)} and {tuple(x.shape)}"
        )
    dtype = torch.promote_types(x.dtype, flipped.dtype)
    return (x.to(dtype) + flipped.to(device=x.device, dtype=dtype)) / 2


def average_query_expansion(
    q_feats: ArrayLike, g_feats: ArrayLike, k: int = 5, alpha: float = 3.0, times: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The expanded (not normalised) query and gallery features; see :class:`QueryExpansion`.

    Neighbours come from :func:`~circle_repro.evaluation.knn.topk_cosine` (exact ties: lower
    index first, queries before gallery); fast-reid's ``argpartition`` leaves that order open.
    """
    options = QueryExpansion(k, alpha, times)
    q = finite_tensor(q_feats, "q_feats")
    g = finite_tensor(g_feats, "g_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats must have the same dimension, got {q.shape[1]} and {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    feats = torch.cat([q.to(dtype), g.to(device=q.device, dtype=dtype)])
    if options.k > len(feats):
        raise ValueError(f"QueryExpansion.k={options.k} is larger than the {len(feats)} query and gallery items")
    for _ in range(options.times):
        similarities, neighbours = topk_cosine(feats, feats, options.k)
        weights = similarities.pow(options.alpha)
        if not bool(torch.isfinite(weights).all()):
            raise ValueError(
                f"QueryExpansion.alpha={options.alpha} is not an integer and a neighbour has a negative "
                "similarity, so its weight is undefined; use an integer alpha"
            )
        expanded = torch.zeros_like(feats)
        for slot in range(options.k):
            expanded += weights[:, slot, None] * feats[neighbours[:, slot]]
        feats = expanded / options.k
    return feats[: len(q)], feats[len(q) :]


def evaluate(
    q_feats: ArrayLike,
    q_pids: ArrayLike,
    q_cams: ArrayLike,
    g_feats: ArrayLike,
    g_pids: ArrayLike,
    g_cams: ArrayLike,
    max_rank: int = 50,
    *,
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 * 2**20,
    q_flipped_feats: ArrayLike | None = None,
    g_flipped_feats: ArrayLike | None = None,
    query_expansion: QueryExpansion | None = None,
    reranking: Reranking | None = None,
    per_query: bool = False,
) -> ReidResult:
    """CMC (Rank-1..``max_rank``), mAP and mINP of a query set against a gallery.

    See the module docstring for the protocol. ``cmc`` has ``min(max_rank, n_gallery)``
    entries. Queries with at least one true match are processed ``chunk_size`` at a time
    (default: as many as keep their similarity block within ``max_chunk_bytes``, at least one);
    the only other buffer of note is a 4 MiB boolean tile (more only for a query with over
    4 MiB / n_gallery matches). Results do not depend on the chunking. Raises ValueError on
    malformed input and when no query has a true match.

    Options, off by default: ``q_flipped_feats`` and ``g_flipped_feats`` (together) are the
    features of the horizontally flipped images, averaged in by :func:`flip_average`;
    ``query_expansion`` expands both feature sets (:func:`average_query_expansion`);
    ``reranking`` ranks by :func:`re_ranking` of the cosine distances 1 - cos, which holds
    the (n_q + n_g)^2 distances and an n_q x n_g float64 result in memory at once.

    ``per_query=True`` also returns every valid query's first-match rank, AP and INP
    (:class:`ReidPerQuery`), for paired comparisons over queries.
    """
    if (q_flipped_feats is None) != (g_flipped_feats is None):
        raise ValueError("q_flipped_feats and g_flipped_feats go together: pass both or neither")
    if q_flipped_feats is not None:
        q_feats = flip_average(q_feats, q_flipped_feats, names=("q_feats", "q_flipped_feats"))
        g_feats = flip_average(g_feats, g_flipped_feats, names=("g_feats", "g_flipped_feats"))
    if query_expansion is not None:
        q_feats, g_feats = average_query_expansion(
            q_feats, g_feats, query_expansion.k, query_expansion.alpha, query_expansion.times
        )
    q = unit_rows(q_feats, "q_feats").cpu()
    g = unit_rows(g_feats, "g_feats").cpu()
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats must have the same dimension, got {q.shape[1]} and {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    n_q, n_g = q.shape[0], g.shape[0]
    q_pids = vector(q_pids, "q_pids", n_q, "q_feats")
    q_cams = vector(q_cams, "q_cams", n_q, "q_feats")
    g_pids = vector(g_pids, "g_pids", n_g, "g_feats")
    g_cams = vector(g_cams, "g_cams", n_g, "g_feats")
    for name, pids in (("q_pids", q_pids), ("g_pids", g_pids)):
        if not np.issubdtype(pids.dtype, np.integer):
            raise ValueError(f"{name} must hold integer person ids, got dtype {pids.dtype}")
    max_rank = min(_positive_int(max_rank, "max_rank"), n_g)
    scores: Callable[[np.ndarray], np.ndarray]  # writable rows of the ranking score (higher: nearer)
    if reranking is None:
        row_bytes = n_g * q.element_size()

        def scores(queries: np.ndarray) -> np.ndarray:
            return _similarity_block(q[torch.from_numpy(queries)], g)

    else:
        distance = re_ranking(
            (1 - q @ g.T).numpy(),
            (1 - q @ q.T).numpy(),
            (1 - g @ g.T).numpy(),
            reranking.k1,
            reranking.k2,
            reranking.lambda_value,
            max_chunk_bytes=max_chunk_bytes,
        )
        row_bytes = n_g * distance.itemsize

        def scores(queries: np.ndarray) -> np.ndarray:
            return -distance[queries]

    if chunk_size is None:
        rows_per_chunk = max(1, _positive_int(max_chunk_bytes, "max_chunk_bytes") // row_bytes)
    else:
        rows_per_chunk = _positive_int(chunk_size, "chunk_size")

    # Every (query, gallery) pair of equal pid, grouped by query: few per query.
    g_order = np.argsort(g_pids, kind="stable")
    g_sorted = g_pids[g_order]
    lo = np.searchsorted(g_sorted, q_pids, side="left")
    same_pid_counts = np.searchsorted(g_sorted, q_pids, side="right") - lo
    pair_start = np.cumsum(same_pid_counts) - same_pid_counts
    pair_query = np.repeat(np.arange(n_q), same_pid_counts)
    pair_gallery = g_order[_segments(lo, same_pid_counts)]
    junk_columns = np.flatnonzero(g_pids == JUNK_PID)
    pair_is_match = (g_cams[pair_gallery] != q_cams[pair_query]) & (g_pids[pair_gallery] != JUNK_PID)
    n_matches = np.bincount(pair_query[pair_is_match], minlength=n_q)

    valid = np.flatnonzero(n_matches > 0)
    n_valid = len(valid)
    if n_valid == 0:
        raise ValueError("q_pids: no query has a true match in the gallery (after same-camera and junk removal)")
    # Most matches first, so that in every chunk the queries with > j matches are a prefix.
    valid = valid[np.argsort(-n_matches[valid], kind="stable")]

    first_rank_hist = np.zeros(max_rank + 2, dtype=np.int64)
    average_precision = np.empty(n_q)
    inverse_negative_penalty = np.empty(n_q)
    first_match_rank = np.empty(n_q, dtype=np.int64)
    for start in range(0, n_valid, rows_per_chunk):
        queries = valid[start : start + rows_per_chunk]
        n_rows = len(queries)
        sim = scores(queries)
        # This chunk's same-pid pairs, with local row numbers.
        pairs = _segments(pair_start[queries], same_pid_counts[queries])
        rows = np.repeat(np.arange(n_rows), same_pid_counts[queries])
        cols = pair_gallery[pairs]
        match = pair_is_match[pairs]
        m_rows, m_cols = rows[match], cols[match]
        m_vals = sim[m_rows, m_cols]
        # Matches leave the row (their mutual order is their slot j); junk leaves it for good.
        sim[rows, cols] = -np.inf
        if len(junk_columns):
            sim[:, junk_columns] = -np.inf
        order = np.lexsort((m_cols, -m_vals, m_rows))
        m_rows, m_cols, m_vals = m_rows[order], m_cols[order], m_vals[order]
        counts = n_matches[queries]
        slot = np.arange(len(m_rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        r_max = int(counts[0])
        values = np.full((n_rows, r_max), np.nan, dtype=sim.dtype)
        columns = np.zeros((n_rows, r_max), dtype=np.int64)
        values[m_rows, slot] = m_vals
        columns[m_rows, slot] = m_cols
        before = np.zeros((n_rows, r_max), dtype=np.int64)
        tile_buffer = np.empty(max(_TILE_BYTES, r_max * n_g), dtype=bool)
        top = 0
        while top < n_rows:
            # A tile of rows (similar match counts, as rows are sorted) against all of its slots.
            width = int(counts[top])
            bottom = min(n_rows, top + max(1, _TILE_BYTES // (width * n_g)))
            rows_tile = sim[top:bottom, None, :]
            thresholds = values[top:bottom, :width, None]
            flags = tile_buffer[: (bottom - top) * width * n_g].reshape(bottom - top, width, n_g)
            np.greater(rows_tile, thresholds, out=flags)
            before[top:bottom, :width] = _count_true(flags)
            np.equal(rows_tile, thresholds, out=flags)
            for r, j in zip(*np.nonzero(_count_true(flags)), strict=True):
                # Exact ties with a match (rare): only lower gallery indices rank before it.
                row = top + int(r)
                before[row, j] += np.count_nonzero(sim[row, : columns[row, j]] == values[row, j])
            top = bottom
        del sim
        ranks = before + np.arange(1, r_max + 1)  # 1-based rank among the kept gallery items
        in_slot = np.arange(r_max) < counts[:, None]
        precision = np.where(in_slot, np.arange(1, r_max + 1) / ranks, 0.0)
        average_precision[queries] = precision.sum(axis=1) / counts
        inverse_negative_penalty[queries] = counts / ranks[np.arange(n_rows), counts - 1]
        first_match_rank[queries] = ranks[:, 0]
        first_rank_hist += np.bincount(np.minimum(ranks[:, 0], max_rank + 1), minlength=max_rank + 2)

    cmc = np.cumsum(first_rank_hist[1 : max_rank + 1]) / n_valid
    in_query_order = np.sort(valid)  # sums in a fixed order: identical for any chunking
    details = None
    if per_query:
        details = ReidPerQuery(
            query_indices=in_query_order,
            first_match_rank=first_match_rank[in_query_order],
            average_precision=average_precision[in_query_order],
            inverse_negative_penalty=inverse_negative_penalty[in_query_order],
        )
    return ReidResult(
        cmc=cmc,
        mAP=float(average_precision[in_query_order].mean()),
        mINP=float(inverse_negative_penalty[in_query_order].mean()),
        n_valid_queries=n_valid,
        n_skipped_queries=n_q - n_valid,
        per_query=details,
    )
