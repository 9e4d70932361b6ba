import numpy as np
import pytest

from circle_repro.evaluation.similarity import sample_anchor_pairs, sample_pair_similarities


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
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="embeddings must be"):
        sample_pair_similarities(embeddings, labels[:3], 10)


def _pair_lookup(sim: np.ndarray) -> dict[float, set[tuple[int, int]]]:
    lookup: dict[float, set[tuple[int, int]]] = {}
    for i in range(len(sim)):
        for j in range(len(sim)):
            if i != j:
                lookup.setdefault(round(float(sim[i, j]), 12), set()).add((i, j))
    return lookup


def test_anchor_pairs_share_their_anchor_and_cover_every_partner():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # class 3 is a singleton: never an anchor
    embeddings = rng.normal(size=(10, 6))
    s_n, s_p = sample_anchor_pairs(embeddings, labels, n_anchors=4000, seed=2)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    lookup = _pair_lookup(unit @ unit.T)
    seen_pos, seen_neg = set(), set()
    for neg, pos in zip(s_n, s_p, strict=True):
        pos_pairs = {p for p in lookup[round(float(pos), 12)] if labels[p[0]] == labels[p[1]]}
        neg_pairs = {p for p in lookup[round(float(neg), 12)] if labels[p[0]] != labels[p[1]]}
        anchors = {i for i, _ in pos_pairs} & {i for i, _ in neg_pairs}
        assert anchors, "the positive and the negative share one anchor"
        seen_pos |= {p for p in pos_pairs if p[0] in anchors}
        seen_neg |= {p for p in neg_pairs if p[0] in anchors}
    eligible = [i for i in range(10) if labels[i] != 3]
    assert seen_pos == {(i, j) for i in eligible for j in range(10) if i != j and labels[i] == labels[j]}
    assert seen_neg == {(i, j) for i in eligible for j in range(10) if labels[i] != labels[j]}


def test_anchor_pairs_need_an_eligible_anchor():
    with pytest.raises(ValueError, match="both a same-class and a different-class partner"):
        sample_anchor_pairs(np.eye(3), np.array([0, 1, 2]), 5)
    with pytest.raises(ValueError, match="embeddings must be"):
        sample_anchor_pairs(np.eye(3), np.array([0, 0]), 5)
