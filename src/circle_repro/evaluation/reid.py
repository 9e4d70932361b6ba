"""Person re-identification: CMC, mAP and mINP with fast-reid's Market-1501 protocol.

Reference: fast-reid ``fastreid/evaluation/rank.py::eval_market1501`` (spec §5.1). For every
query:

1. the gallery is ranked by cosine distance of L2-normalised features (here: by descending
   cosine similarity, which is the same order without the float32 rounding of ``1 - cos``);
2. gallery items with the **same pid and the same camera** as the query are removed;
3. a query with no true match left is **skipped** (and counted in ``n_skipped_queries``);
4. CMC@k is 1 when the first match is within the top k (the clipped cumulative sum), averaged
   over valid queries; AP = sum_k P@k * rel_k / #rel; INP = #rel / (rank of the last match).

Identity conventions (spec §5.1):

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from circle_repro.evaluation.inputs import vector
from circle_repro.evaluation.knn import ArrayLike, _normalised_rows, _positive_int

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

    def rank(self, k: int) -> float:
        """Rank-k accuracy (CMC at k)."""
        return float(self.cmc[k - 1])


def _features(feats: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(feats)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n × dim), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one {'query' if name.startswith('q') else 'gallery item'} is needed")
    t = t.detach().cpu()
    if t.is_floating_point() and not np.isfinite(t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return _normalised_rows(t, name)


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


def _segments(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


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
) -> ReidResult:
    """CMC (Rank-1..``max_rank``), mAP and mINP of a query set against a gallery.

    See the module docstring for the protocol. ``cmc`` has ``min(max_rank, n_gallery)``
    entries. Queries with at least one true match are processed ``chunk_size`` at a time
    (default: as many as keep their similarity block within ``max_chunk_bytes``, at least one);
    the only other buffer of note is a 4 MiB boolean tile (more only for a query with over
    4 MiB / n_gallery matches). Results do not depend on the chunking. Raises ValueError on
    malformed input and when no query has a true match.
    """
    q = _features(q_feats, "q_feats")
    g = _features(g_feats, "g_feats")
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
    row_bytes = n_g * q.element_size()
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
    for start in range(0, n_valid, rows_per_chunk):
        queries = valid[start : start + rows_per_chunk]
        n_rows = len(queries)
        sim = _similarity_block(q[torch.from_numpy(queries)], g)
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
            for r, j in zip(*np.nonzero(_count_true(flags))):
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
        first_rank_hist += np.bincount(np.minimum(ranks[:, 0], max_rank + 1), minlength=max_rank + 2)

    cmc = np.cumsum(first_rank_hist[1 : max_rank + 1]) / n_valid
    in_query_order = np.sort(valid)  # sums in a fixed order: identical for any chunking
    return ReidResult(
        cmc=cmc,
        mAP=float(average_precision[in_query_order].mean()),
        mINP=float(inverse_negative_penalty[in_query_order].mean()),
        n_valid_queries=n_valid,
        n_skipped_queries=n_q - n_valid,
    )
