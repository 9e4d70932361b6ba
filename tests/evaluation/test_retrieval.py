"""Recall@K, MAP@R and R-precision against brute force, pytorch-metric-learning and hand cases."""

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from circle_repro.evaluation.retrieval import (
    map_at_r,
    r_precision,
    recall_at_k,
    retrieval_metrics,
    retrieval_per_query,
)


def on_circle(degrees):
    return np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


@pytest.fixture(scope="module")
def clustered():
    """About 300 float32 points: 20 classes of 2 to 30 samples plus 5 lone samples."""
    rng = np.random.default_rng(7)
    sizes = np.concatenate([rng.integers(2, 31, size=20), np.ones(5, dtype=int)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(labels)
    centres = rng.normal(size=(len(sizes), 16))
    embeddings = centres[labels] + 0.9 * rng.normal(size=(len(labels), 16))
    return embeddings.astype(np.float32), labels


def brute_force_recall(embeddings, labels, ks):
    x = embeddings.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hits = {K: [] for K in ks}
    for i in range(len(x)):
        if np.sum(labels == labels[i]) == 1:
            continue
        sim = x @ x[i]
        sim[i] = -np.inf
        order = np.argsort(-sim, kind="stable")
        for K in ks:
            hits[K].append(np.any(labels[order[:K]] == labels[i]))
    return {K: float(np.mean(h)) for K, h in hits.items()}


def pml(embeddings, labels, include, k):
    calculator = AccuracyCalculator(include=include, k=k, knn_func=CustomKNN(CosineSimilarity()))
    return calculator.get_accuracy(torch.as_tensor(embeddings), torch.as_tensor(labels))


@pytest.mark.parametrize("ks", [(1, 2, 4, 8), (1, 10, 100)])
def test_recall_matches_brute_force(clustered, ks):
    embeddings, labels = clustered
    got = recall_at_k(embeddings, labels, ks)
    expected = brute_force_recall(embeddings, labels, ks)
    assert list(got) == list(ks)
    for K in ks:
        assert got[K] == pytest.approx(expected[K], abs=1e-12)
    assert 0 < got[1] < got[ks[-1]] <= 1  # a non-trivial case


def test_recall_at_1_matches_pml_precision_at_1(clustered):
    embeddings, labels = clustered
    expected = pml(embeddings, labels, ("precision_at_1",), k=None)["precision_at_1"]
    assert recall_at_k(embeddings, labels, [1])[1] == pytest.approx(expected, abs=1e-12)


def test_map_at_r_and_r_precision_match_pml(clustered):
    embeddings, labels = clustered
    expected = pml(embeddings, labels, ("mean_average_precision_at_r", "r_precision"), k="max_bin_count")
    got = retrieval_metrics(embeddings, labels, [1])
    assert got["MAP@R"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-12)
    assert got["R-precision"] == pytest.approx(expected["r_precision"], abs=1e-12)
    assert map_at_r(embeddings, labels) == got["MAP@R"]
    assert r_precision(embeddings, labels) == got["R-precision"]
    assert 0 < got["MAP@R"] < got["R-precision"] < 1


def test_recall_hand_computed_four_points():
    # Angles 0, 20, 50, 180 degrees.
    # Neighbour orders: q0 [1,2,3], q1 [0,2,3], q2 [1,0,3], q3 [2,1,0].
    embeddings = on_circle([0, 20, 50, 180])
    labels = [0, 0, 1, 1]
    got = recall_at_k(embeddings, labels, [1, 2, 3, 10])
    assert got == {1: 0.75, 2: 0.75, 3: 1.0, 10: 1.0}


def test_map_at_r_and_r_precision_hand_computed_five_points():
    # Angles 0, 20, 55, 8, 35 degrees; labels 0, 0, 0, 1, 1 (R = 2, 2, 2, 1, 1).
    # Neighbour orders and relevance within the top R:
    #   q0 [3,1,..]: (0,1) -> AP 1/4, RP 1/2     q1 [3,4,..]: (0,0) -> 0, 0
    #   q2 [4,1,..]: (0,1) -> AP 1/4, RP 1/2     q3 [0,..]: (0) -> 0, 0     q4 [1,..]: (0) -> 0, 0
    embeddings = on_circle([0, 20, 55, 8, 35])
    labels = [0, 0, 0, 1, 1]
    assert map_at_r(embeddings, labels) == pytest.approx(0.5 / 5)
    assert r_precision(embeddings, labels) == pytest.approx(1.0 / 5)
    assert recall_at_k(embeddings, labels, [1, 2]) == pytest.approx({1: 0.0, 2: 0.4})


def test_lone_queries_are_excluded():
    # Sample 4 is the only one of its label; every other query finds its partner first.
    embeddings = on_circle([0, 10, 100, 110, 50])
    labels = np.array([0, 0, 1, 1, 2])
    got = retrieval_metrics(embeddings, labels, [1])
    assert got == {"R@1": 1.0, "MAP@R": 1.0, "R-precision": 1.0}  # counting it would give 0.8
    expected = pml(embeddings, labels, ("precision_at_1",), k=None)["precision_at_1"]
    assert got["R@1"] == pytest.approx(expected)


def test_label_types_do_not_matter(clustered):
    embeddings, labels = clustered
    as_ints = retrieval_metrics(embeddings, labels, [1, 4])
    as_strings = retrieval_metrics(embeddings, np.array([f"c{v}" for v in labels]), [1, 4])
    as_tensors = retrieval_metrics(torch.from_numpy(embeddings), torch.from_numpy(labels), [1, 4])
    assert as_ints == as_strings == as_tensors


@pytest.mark.parametrize(
    ("embeddings", "labels", "ks", "message"),
    [
        (np.zeros(4), [0, 0, 1, 1], [1], "embeddings must be 2-D"),
        (np.ones((4, 2)), [[0, 0], [1, 1]], [1], "labels must be 1-D"),
        (np.ones((4, 2)), [0, 0, 1], [1], "labels has 3 entries but embeddings has 4 rows"),
        (np.ones((4, 2)), [0, 0, 1, 1], [], "ks must not be empty"),
        (np.ones((4, 2)), [0, 0, 1, 1], [1, 0], "ks must be a positive integer"),
        (np.ones((4, 2)), [0, 0, 1, 1], [1.5], "ks must be a positive integer"),
        (np.ones((4, 2)), [0, 0, 1, 1], "12", "ks must be a sequence"),
        (np.ones((4, 2)), [0, 1, 2, 3], [1], "every label occurs once"),
    ],
)
def test_bad_inputs(embeddings, labels, ks, message):
    with pytest.raises(ValueError, match=message):
        recall_at_k(embeddings, labels, ks)


def brute_force_first_hit_ranks(embeddings, labels):
    """Per non-lone query: the position of its first same-label item in the stable descending order."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    ranks = []
    for i in range(len(x)):
        if np.sum(labels == labels[i]) == 1:
            continue
        sim = x @ x[i]
        sim[i] = -np.inf
        order = np.argsort(-sim, kind="stable")  # equal similarities: lower index first
        ranks.append(int(np.flatnonzero(labels[order] == labels[i])[0]))
    return np.array(ranks)


def _exact_unit_vectors() -> np.ndarray:
    """24 unit vectors of R^4 whose dot products are exact in any summation order: the 16 sign
    patterns of (±0.5, ±0.5, ±0.5, ±0.5) and the 8 signed axes."""
    signs = np.array(np.meshgrid(*[[-0.5, 0.5]] * 4)).reshape(4, -1).T
    return np.concatenate([signs, np.eye(4), -np.eye(4)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_hit_ranks_match_brute_force_with_ties_and_far_hits(seed):
    """Classes of two (R_max = 1) drawn from 24 exact unit vectors: exact ties everywhere and most
    first hits beyond the top R_max, so both the ranked and the counted path are checked."""
    rng = np.random.default_rng(seed)
    embeddings = _exact_unit_vectors()[rng.integers(0, 24, size=120)]
    labels = np.concatenate([np.repeat(np.arange(50), 2), np.arange(100, 120)])  # 20 lone queries
    rng.shuffle(labels)
    got = retrieval_per_query(embeddings, labels)
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    assert np.array_equal(got["ids"], np.flatnonzero(counts[codes] > 1))
    expected = brute_force_first_hit_ranks(embeddings, labels)
    assert np.array_equal(got["first_hit_rank"], expected)
    assert (expected >= 1).mean() > 0.5, "most first hits lie beyond the top R_max = 1"


def test_results_do_not_depend_on_the_chunk_budget(clustered):
    embeddings, labels = clustered
    whole = retrieval_per_query(embeddings, labels)
    tiny = retrieval_per_query(embeddings, labels, max_chunk_bytes=1)  # one query per chunk
    for key in whole:
        assert np.array_equal(whole[key], tiny[key]), key
    assert np.array_equal(whole["first_hit_rank"], brute_force_first_hit_ranks(embeddings.astype(np.float64), labels))


def test_recall_at_k_beyond_the_gallery_counts_everything(clustered):
    embeddings, labels = clustered
    assert recall_at_k(embeddings, labels, [1000])[1000] == 1.0
