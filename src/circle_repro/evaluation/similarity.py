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
