"""Samples of within-class (s_p) and between-class (s_n) cosine similarities, for the report's figures."""

from __future__ import annotations

import numpy as np


def sample_pair_similarities(
    embeddings: np.ndarray, labels: np.ndarray, n_pairs: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of up to ``n_pairs`` random positive and ``n_pairs`` random negative pairs.

    Pairs are drawn uniformly with replacement among ordered pairs (i, j), i != j; self pairs never count.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (n, d) with n = len(labels); got {embeddings.shape} and {labels.shape}")
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    positives, negatives = [], []
    # Oversample candidate pairs in rounds until both kinds are filled or the draw budget is spent.
    for _ in range(20):
        first = rng.integers(0, len(labels), size=4 * n_pairs)
        second = rng.integers(0, len(labels), size=4 * n_pairs)
        keep = first != second
        first, second = first[keep], second[keep]
        similarity = np.einsum("ij,ij->i", unit[first], unit[second])
        same = labels[first] == labels[second]
        positives.append(similarity[same])
        negatives.append(similarity[~same])
        if sum(map(len, positives)) >= n_pairs and sum(map(len, negatives)) >= n_pairs:
            break
    return np.concatenate(positives)[:n_pairs], np.concatenate(negatives)[:n_pairs]


def sample_anchor_pairs(
    embeddings: np.ndarray, labels: np.ndarray, n_anchors: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(s_n, s_p) of ``n_anchors`` random anchors (drawn with replacement among those having a positive
    and a negative): each anchor's cosine to one random different-class item and to one random
    same-class item other than itself. The paper's Fig. 5 plots such per-anchor pairs."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (n, d) with n = len(labels); got {embeddings.shape} and {labels.shape}")
    _classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero((counts[inverse] >= 2) & (counts[inverse] < len(labels)))
    if len(eligible) == 0:
        raise ValueError("no item has both a same-class and a different-class partner")
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    order = np.argsort(inverse, kind="stable")  # items grouped by class
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rng = np.random.default_rng(seed)
    anchors = rng.choice(eligible, size=n_anchors)
    cls = inverse[anchors]
    # A same-class partner other than the anchor: a random slot among the class's other members.
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    rank_in_class[order] = np.arange(len(labels)) - np.repeat(starts, counts)
    slot = rng.integers(0, counts[cls] - 1)
    slot += slot >= rank_in_class[anchors]
    positives = order[starts[cls] + slot]
    # A different-class partner: a random position outside the anchor's class block of ``order``.
    slot = rng.integers(0, len(labels) - counts[cls])
    slot += np.where(slot >= starts[cls], counts[cls], 0)
    negatives = order[slot]
    s_p = np.einsum("ij,ij->i", unit[anchors], unit[positives])
    s_n = np.einsum("ij,ij->i", unit[anchors], unit[negatives])
    return s_n, s_p


def roc_points(s_p: np.ndarray, s_n: np.ndarray, n_points: int = 100) -> dict[str, np.ndarray]:
    """Points of the verification ROC of positive (s_p) and negative (s_n) pair similarities, a pair accepted
    when its similarity reaches ``threshold``: ``far`` (share of s_n accepted), ``tar`` (share of s_p
    accepted) and ``threshold``, at most ``n_points`` + 1 of them, spaced evenly on a log FAR axis from
    1 / len(s_n) to 1, with the highest TAR at FAR 0 first."""
    s_p, s_n = np.ravel(s_p), np.ravel(s_n)
    if not len(s_p) or not len(s_n):
        raise ValueError(f"roc_points: needs positive and negative pairs, got {len(s_p)} and {len(s_n)}")
    scores = np.r_[s_p, s_n]
    order = np.argsort(-scores, kind="stable")
    ranked, positive = scores[order], np.r_[np.ones(len(s_p), bool), np.zeros(len(s_n), bool)][order]
    last_of_threshold = np.r_[ranked[1:] != ranked[:-1], True]  # accepting a threshold accepts all its ties
    tar = np.r_[0, np.cumsum(positive)[last_of_threshold]] / len(s_p)
    far = np.r_[0, np.cumsum(~positive)[last_of_threshold]] / len(s_n)
    threshold = np.r_[np.inf, ranked[last_of_threshold]]
    grid = np.r_[0, np.geomspace(1 / len(s_n), 1, n_points)]
    chosen = np.unique(np.searchsorted(far, grid, side="right") - 1)  # per grid FAR: the last point not above it
    return {"far": far[chosen], "tar": tar[chosen], "threshold": threshold[chosen]}
