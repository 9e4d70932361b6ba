import numpy as np
import pytest

from circle_repro.evaluation.similarity import sample_pair_similarities


def test_samples_are_true_pair_cosines():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 4)
    embeddings = rng.normal(size=(12, 5)) * rng.uniform(0.5, 3, size=(12, 1))
    positives, negatives = sample_pair_similarities(embeddings, labels, n_pairs=200, seed=1)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sim = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(12, dtype=bool)
    allowed_pos = sim[same & off_diagonal]
    allowed_neg = sim[~same]
    assert len(positives) == len(negatives) == 200
    assert all(np.isclose(allowed_pos, v).any() for v in positives)
    assert all(np.isclose(allowed_neg, v).any() for v in negatives)
    assert not np.isclose(positives, 1.0).all(), "self pairs are never sampled"


def test_deterministic_and_validated():
    embeddings, labels = np.eye(4), np.array([0, 0, 1, 1])
    a = sample_pair_similarities(embeddings, labels, 10, seed=3)
    b = sample_pair_similarities(embeddings, labels, 10, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="embeddings must be"):
        sample_pair_similarities(embeddings, labels[:3], 10)
