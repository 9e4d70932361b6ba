import numpy as np
import pytest
from sklearn.metrics import roc_curve

from circle_repro.evaluation.similarity import roc_points, sample_anchor_pairs, sample_pair_similarities


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


def test_roc_points_by_hand():
    # accept at >= 0.9: 1 of 2 positives, no negative; >= 0.7: + one negative; >= 0.5: every positive; >= 0.1: all
    points = roc_points(np.array([0.9, 0.5]), np.array([0.7, 0.1]), n_points=2)  # grid FAR 0, 0.5, 1
    assert {name: values.tolist() for name, values in points.items()} == {
        "far": [0.0, 0.5, 1.0],
        "tar": [0.5, 1.0, 1.0],
        "threshold": [0.9, 0.5, 0.1],
    }
    tied = roc_points(np.array([0.5]), np.array([0.5]))  # one threshold accepts both pairs at once
    assert tied["far"].tolist() == [0.0, 1.0] and tied["tar"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="needs positive and negative pairs"):
        roc_points(np.array([]), np.array([0.5]))


def test_roc_points_lie_on_the_full_roc_and_keep_its_best_tar_per_far():
    rng = np.random.default_rng(3)
    s_p, s_n = np.round(rng.normal(0.5, 0.2, 3000), 3), np.round(rng.normal(0.1, 0.2, 5000), 3)  # with ties
    points = roc_points(s_p, s_n, n_points=50)
    issame = np.r_[np.ones(len(s_p), bool), np.zeros(len(s_n), bool)]
    far, tar, thresholds = roc_curve(issame, np.r_[s_p, s_n], drop_intermediate=False)  # the independent reference
    for point_far, point_tar, threshold in zip(points["far"], points["tar"], points["threshold"], strict=True):
        assert point_tar == tar[far <= point_far].max()  # the best TAR at no more than this FAR
        if np.isfinite(threshold):
            at = thresholds == threshold
            assert (far[at], tar[at]) == (pytest.approx(point_far), pytest.approx(point_tar))
    assert points["far"][0] == 0 and points["far"][-1] == 1 and len(points["far"]) <= 51
    assert np.all(np.diff(points["far"]) > 0) and np.all(np.diff(points["tar"]) >= 0)
