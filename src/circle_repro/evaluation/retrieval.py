"""Retrieval metrics on class-disjoint test sets: Recall@K, MAP@R and R-precision.

Protocol (Oh Song et al.; pytorch-metric-learning's AccuracyCalculator for MAP@R):
every sample is a query, the gallery is all *other* samples, ranking is by cosine
similarity, and exact similarity ties rank the lower sample index first.
Lone queries, whose label occurs only once, have nothing to retrieve and are left out
of every average, as pytorch-metric-learning does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from circle_repro.evaluation.inputs import unit_rows, vector
from circle_repro.evaluation.knn import ArrayLike, _chunk_topk, _positive_int


def _check_ks(ks: Sequence[int]) -> list[int]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence | np.ndarray):
        raise ValueError(f"ks must be a sequence of positive integers, got {ks!r}")
    if len(ks) == 0:
        raise ValueError("ks must not be empty")
    return [_positive_int(K, "every entry of ks") for K in ks]


def _class_members(codes: np.ndarray, counts: np.ndarray) -> torch.Tensor:
    """(n_classes, max class size) item indices of each class, ascending, padded with -1."""
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    slot = np.arange(len(codes)) - np.repeat(starts, counts)
    members = np.full((len(counts), int(counts.max())), -1, dtype=np.int64)
    members[codes[order], slot] = order
    return torch.from_numpy(members)


def _first_hit_rank_by_count(sim: torch.Tensor, queries: torch.Tensor, members: torch.Tensor) -> np.ndarray:
    """0-based rank of each row's best same-class item under the tie rule, counted over the whole row.

    ``sim`` (rows x n) has the query's own column at -inf; ``members`` (rows x s) lists each query's
    class (-1 padded). The best item is the most similar one, the lowest index among equals; it is
    preceded by every item more similar and by the equally similar items of lower index. (numpy
    counts booleans several times faster than torch here.)
    """
    positives = torch.where(members < 0, queries[:, None], members)  # padding -> the query itself (-inf)
    pos_sim = sim.gather(1, positives)
    best = pos_sim.max(dim=1, keepdim=True).values
    best_index = torch.where(pos_sim == best, positives, sim.shape[1]).min(dim=1).values.numpy()
    block, threshold = sim.numpy(), best.numpy()
    rank = np.count_nonzero(block > threshold, axis=1)
    # Equally similar items rank first when their index is lower: only rows where a non-positive
    # item ties the best positive need the index-aware count.
    tied_positives = (pos_sim == best).sum(dim=1).numpy()
    ties = np.count_nonzero(block == threshold, axis=1)
    for row in np.flatnonzero(ties > tied_positives):
        rank[row] += np.count_nonzero(block[row, : best_index[row]] == threshold[row, 0])
    return rank


def retrieval_per_query(
    embeddings: ArrayLike, labels: ArrayLike, max_chunk_bytes: int = 256 * 2**20
) -> dict[str, np.ndarray]:
    """Per query that is not lone (``ids``: its row): the 0-based rank of its first same-label item
    (``first_hit_rank``), its ``AP@R`` and ``R-precision`` (module docstring for the protocol).

    Queries are processed in chunks whose similarity block stays within ``max_chunk_bytes``. Only the
    top R_max neighbours are ranked (R_max: the largest number of same-label items); a query whose
    first hit lies beyond them gets its rank by counting the more similar items, so no K of Recall@K
    ever needs a top-K search. ValueError if every query is lone.
    """
    emb = unit_rows(embeddings, "embeddings")
    label_array = vector(labels, "labels", emb.shape[0], "embeddings")
    _, codes, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    n_relevant = counts[codes] - 1
    ids = np.flatnonzero(n_relevant > 0)
    if len(ids) == 0:
        raise ValueError("labels: every label occurs once, so no query has anything to retrieve")
    n = emb.shape[0]
    r_max = int(n_relevant.max())
    codes_t = torch.from_numpy(codes).to(emb.device)
    members = _class_members(codes, counts).to(emb.device)
    rows = max(1, _positive_int(max_chunk_bytes, "max_chunk_bytes") // (emb.element_size() * n))
    first_hit = np.empty(len(ids), dtype=np.int64)
    average_precision = np.empty(len(ids))
    r_precision = np.empty(len(ids))
    ranks = torch.arange(1, r_max + 1, device=emb.device)
    for start in range(0, len(ids), rows):
        queries = torch.from_numpy(ids[start : start + rows]).to(emb.device)
        sim = emb[queries] @ emb.T
        sim[torch.arange(len(queries), device=emb.device), queries] = -torch.inf
        _, neighbours = _chunk_topk(sim, r_max)
        hits = codes_t[neighbours] == codes_t[queries, None]
        found = hits.any(dim=1)
        rank = hits.to(torch.int8).argmax(dim=1).cpu().numpy()
        missing = (~found).nonzero().squeeze(1)
        if missing.numel():
            rank[missing.cpu().numpy()] = _first_hit_rank_by_count(
                sim[missing].cpu(), queries[missing].cpu(), members[codes_t[queries[missing]]].cpu()
            )
        r = torch.from_numpy(n_relevant[ids[start : start + rows]]).to(emb.device)
        relevant_in_top_r = hits & (ranks <= r[:, None])
        precision_at_i = relevant_in_top_r.cumsum(dim=1).double() / ranks
        chunk = slice(start, start + len(queries))
        first_hit[chunk] = rank
        average_precision[chunk] = ((precision_at_i * relevant_in_top_r).sum(dim=1) / r).cpu().numpy()
        r_precision[chunk] = (relevant_in_top_r.sum(dim=1).double() / r).cpu().numpy()
    return {"ids": ids, "first_hit_rank": first_hit, "AP@R": average_precision, "R-precision": r_precision}


def retrieval_metrics(
    embeddings: ArrayLike, labels: ArrayLike, ks: Sequence[int], max_chunk_bytes: int = 256 * 2**20
) -> dict[str, float]:
    """Recall@K for each K in ``ks``, MAP@R and R-precision (fractions in [0, 1]).

    Keys: ``"R@<K>"``, ``"MAP@R"``, ``"R-precision"``. R@K is the fraction of queries with at least
    one same-label item among their K nearest neighbours (a K at or above the gallery size counts the
    whole gallery). For a query with R = (#same label) - 1, MAP@R = (1/R) * sum_{i<=R} P(i) * rel(i)
    and R-precision = (#same label in top R) / R. Lone queries are excluded (module docstring);
    ValueError if every query is lone. Memory: see :func:`retrieval_per_query`.
    """
    ks = _check_ks(ks)
    per_query = retrieval_per_query(embeddings, labels, max_chunk_bytes)
    metrics = {f"R@{K}": float(np.mean(per_query["first_hit_rank"] < K)) for K in ks}
    metrics["MAP@R"] = float(per_query["AP@R"].mean())
    metrics["R-precision"] = float(per_query["R-precision"].mean())
    return metrics


def recall_at_k(embeddings: ArrayLike, labels: ArrayLike, ks: Sequence[int]) -> dict[int, float]:
    """Recall@K (fraction in [0, 1]) for each K in ``ks``; see ``retrieval_metrics``."""
    metrics = retrieval_metrics(embeddings, labels, ks)
    return {K: metrics[f"R@{K}"] for K in _check_ks(ks)}


def map_at_r(embeddings: ArrayLike, labels: ArrayLike) -> float:
    """pytorch-metric-learning's MAP@R (fraction in [0, 1]); see ``retrieval_metrics``."""
    return retrieval_metrics(embeddings, labels, ks=(1,))["MAP@R"]


def r_precision(embeddings: ArrayLike, labels: ArrayLike) -> float:
    """pytorch-metric-learning's R-precision (fraction in [0, 1]); see ``retrieval_metrics``."""
    return retrieval_metrics(embeddings, labels, ks=(1,))["R-precision"]
