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

from circle_repro.evaluation.inputs import vector
from circle_repro.evaluation.knn import ArrayLike, _positive_int, topk_cosine


def _check_ks(ks: Sequence[int]) -> list[int]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence | np.ndarray):
        raise ValueError(f"ks must be a sequence of positive integers, got {ks!r}")
    if len(ks) == 0:
        raise ValueError("ks must not be empty")
    return [_positive_int(K, "every entry of ks") for K in ks]


def retrieval_metrics(
    embeddings: ArrayLike, labels: ArrayLike, ks: Sequence[int]
) -> dict[str, float]:
    """Recall@K for each K in ``ks``, MAP@R and R-precision, from one k-NN pass.

    Keys: ``"R@<K>"``, ``"MAP@R"``, ``"R-precision"``; values are fractions in [0, 1].
    R@K is the fraction of queries with at least one same-label item among their K
    nearest neighbours (a K at or above the gallery size counts the whole gallery).
    For a query with R = (#same label) - 1, MAP@R = (1/R) * sum_{i<=R} P(i) * rel(i) and
    R-precision = (#same label in top R) / R. Lone queries are excluded (module docstring);
    ValueError if every query is lone.
    """
    emb = torch.as_tensor(embeddings)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n × dim), got shape {tuple(emb.shape)}")
    label_array = vector(labels, "labels", emb.shape[0], "embeddings")
    ks = _check_ks(ks)
    _, codes, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    n_relevant = torch.from_numpy(counts[codes] - 1)
    not_lone = n_relevant > 0
    if not bool(not_lone.any()):
        raise ValueError("labels: every label occurs once, so no query has anything to retrieve")

    n_neighbours = min(len(label_array) - 1, max(max(ks), int(n_relevant.max())))
    _, neighbours = topk_cosine(emb, emb, n_neighbours, exclude_self=True)
    codes_t = torch.from_numpy(codes).to(neighbours.device)
    hits = (codes_t[neighbours] == codes_t[:, None])[not_lone.to(neighbours.device)].cpu()
    r = n_relevant[not_lone]

    metrics = {f"R@{K}": hits[:, :K].any(dim=1).double().mean().item() for K in ks}
    ranks = torch.arange(1, n_neighbours + 1)
    relevant_in_top_r = hits & (ranks <= r[:, None])
    precision_at_i = relevant_in_top_r.cumsum(dim=1).double() / ranks
    metrics["MAP@R"] = ((precision_at_i * relevant_in_top_r).sum(dim=1) / r).mean().item()
    metrics["R-precision"] = (relevant_in_top_r.sum(dim=1).double() / r).mean().item()
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
