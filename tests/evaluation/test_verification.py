"""verification: insightface's k-fold accuracy and VAL@FAR against brute-force loops, TAR@FAR against sklearn."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve
from sklearn.model_selection import KFold

from circle_repro.evaluation.verification import (
    flip_sum_embeddings,
    kfold_accuracy,
    kfold_pair_correctness,
    squared_distances,
    tar_at_far,
    val_at_far,
)


def pairs(seed, n=600, dim=32, signal=0.9):
    """Unit embeddings of n pairs, half of them "same" (correlated)."""
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    a = rng.normal(size=(n, dim))
    b = np.where(issame[:, None], signal * a, 0) + rng.normal(size=(n, dim))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a, b, issame


def brute_force_accuracy(dist, issame, n_folds, grid_of_fold):
    """insightface's calculate_roc: per-threshold loop on the training folds, accuracy on the test fold."""
    accuracies = []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        grid = grid_of_fold(dist[train])
        train_acc = [np.mean((dist[train] < t) == issame[train]) for t in grid]
        best = grid[int(np.argmax(train_acc))]
        accuracies.append(np.mean((dist[test] < best) == issame[test]))
    return np.mean(accuracies), np.std(accuracies)


@pytest.mark.parametrize("seed, n, n_folds", [(0, 600, 10), (1, 607, 10), (2, 250, 3)])
def test_kfold_accuracy_matches_insightface_loop(seed, n, n_folds):
    a, b, issame = pairs(seed, n)
    dist = squared_distances(a, b)
    expected = brute_force_accuracy(dist, issame, n_folds, lambda _: np.arange(0, 4, 0.01))
    assert kfold_accuracy(dist, issame, n_folds, score_type="distance") == pytest.approx(expected, abs=1e-15)
    # The same pairs given as cosine similarities (dist² = 2 - 2 cos): same folds, same answer.
    cosine = np.einsum("ij,ij->i", a, b)
    assert kfold_accuracy(cosine, issame, n_folds) == pytest.approx(expected, abs=1e-15)


def test_kfold_accuracy_on_a_custom_grid_and_exact_search():
    a, b, issame = pairs(3, 500, signal=0.4)
    dist = squared_distances(a, b)
    grid = np.linspace(0.5, 3.5, 37)
    expected = brute_force_accuracy(dist, issame, 10, lambda _: grid)
    assert kfold_accuracy(dist, issame, thresholds=grid, score_type="distance") == pytest.approx(expected, abs=1e-15)
    exact = brute_force_accuracy(dist, issame, 10, lambda d: np.append(np.unique(d), np.inf))
    assert kfold_accuracy(dist, issame, thresholds="exact", score_type="distance") == pytest.approx(exact, abs=1e-15)


def brute_force_decisions(dist, issame, n_folds, grid):
    """Per pair: right or wrong under the threshold the per-threshold loop picks on the other folds."""
    correct = np.empty(len(dist), dtype=bool)
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        best = grid[int(np.argmax([np.mean((dist[train] < t) == issame[train]) for t in grid]))]
        correct[test] = (dist[test] < best) == issame[test]
    return correct


@pytest.mark.parametrize("seed, n, n_folds", [(5, 200, 10), (6, 347, 10), (7, 90, 4)])
def test_per_pair_decisions_match_the_insightface_loop(seed, n, n_folds):
    a, b, issame = pairs(seed, n, signal=0.5)
    cosine = np.einsum("ij,ij->i", a, b)
    expected = brute_force_decisions(2 - 2 * cosine, issame, n_folds, np.arange(0, 4, 0.01))
    assert np.array_equal(kfold_pair_correctness(cosine, issame, n_folds), expected)


def test_kfold_accuracy_with_ties_and_one_fold():
    rng = np.random.default_rng(4)
    dist = rng.integers(0, 8, 300) * 0.5  # many exact ties, some on grid points
    issame = (dist + rng.normal(size=300) < 2).astype(int)
    expected = brute_force_accuracy(dist, issame.astype(bool), 10, lambda _: np.arange(0, 4, 0.01))
    assert kfold_accuracy(dist, issame, score_type="distance") == pytest.approx(expected, abs=1e-15)
    mean, std = kfold_accuracy(dist, issame, n_folds=1, score_type="distance")
    best = max(np.mean((dist < t) == issame) for t in np.arange(0, 4, 0.01))
    assert (mean, std) == (pytest.approx(best), 0.0)
    assert kfold_pair_correctness(dist, issame, n_folds=1, score_type="distance").mean() == pytest.approx(best)


def brute_force_val(dist, issame, far_target, n_folds=10):
    """insightface's calculate_val, with the FAR curve interpolated between the largest threshold
    at the FAR just below the target and the smallest threshold at the FAR just above it."""
    grid = np.arange(0, 4, 0.001)
    vals, fars = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        diff = ~issame[train]
        # every threshold against every training pair (a broadcast per-threshold loop)
        far_train = np.sum((dist[train][None, :] < grid[:, None]) & diff, axis=1) / diff.sum()
        if far_train.max() >= far_target:
            below = np.flatnonzero(far_train <= far_target)[-1]
            if far_train[below] == far_target or below == len(grid) - 1:
                threshold = grid[below]
            else:
                x0, x1 = far_train[below], far_train[below + 1]
                threshold = grid[below] + (far_target - x0) / (x1 - x0) * (grid[below + 1] - grid[below])
        else:
            threshold = 0.0
        accept, same = dist[test] < threshold, issame[test]
        vals.append(np.sum(accept & same) / same.sum())
        fars.append(np.sum(accept & ~same) / (~same).sum())
    return np.mean(vals), np.std(vals), np.mean(fars)


@pytest.mark.parametrize("far_target", [1e-3, 0.05, 0.2])
def test_val_at_far_matches_insightface_loop(far_target):
    a, b, issame = pairs(5, 1200, signal=0.3)
    dist = squared_distances(a, b)
    expected = brute_force_val(dist, issame, far_target)
    assert val_at_far(dist, issame, far_target, score_type="distance") == pytest.approx(expected, abs=1e-12)


def tar_from_sklearn(scores, issame, far):
    fpr, tpr, _ = roc_curve(issame, scores, drop_intermediate=False)
    return tpr[fpr <= far].max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tar_at_far_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    issame = rng.random(n) < 0.3
    scores = np.round(rng.normal(size=n) + 1.5 * issame, 1)  # coarse: many ties across classes
    fars = [0.0, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0, 1 / 2100, 3 / (n - issame.sum())]
    result = tar_at_far(scores, issame, fars)
    assert list(result) == fars
    for far in fars:
        assert result[far] == tar_from_sklearn(scores, issame, far), far


def test_tar_at_far_hand_case():
    # Negatives 0.9, 0.5, 0.1; positives 0.8, 0.6, 0.4. FAR 1/3 allows one false accept:
    # threshold just above 0.5 accepts 0.8 and 0.6 -> TAR 2/3.
    scores = [0.9, 0.5, 0.1, 0.8, 0.6, 0.4]
    issame = [0, 0, 0, 1, 1, 1]
    assert tar_at_far(scores, issame, [0.0, 1 / 3, 2 / 3]) == {0.0: 0.0, 1 / 3: 2 / 3, 2 / 3: 1.0}


def test_flip_sum_embeddings():
    rng = np.random.default_rng(0)
    e, f = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    out = flip_sum_embeddings(e, f)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    np.testing.assert_allclose(out, (e + f) / np.linalg.norm(e + f, axis=1, keepdims=True))
    np.testing.assert_allclose(squared_distances(out[:3], out[2:]), 2 - 2 * np.sum(out[:3] * out[2:], 1), atol=1e-12)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, y: kfold_accuracy(s, y[:-1]), "issame"),
        (lambda s, y: kfold_accuracy(s, np.where(y, 2, 0)), "issame"),
        (lambda s, y: tar_at_far(s, y.astype(float) * 0.5 + 0.25, [1e-3]), "issame"),
        (lambda s, y: kfold_accuracy(np.where(np.arange(len(s)) == 7, np.nan, s), y), "scores"),
        (lambda s, y: tar_at_far(s[:0], y[:0], [1e-3]), "scores"),
        (lambda s, y: kfold_accuracy(s[:5], y[:5], n_folds=10), "n_folds"),
        (lambda s, y: kfold_accuracy(s, y, thresholds="grid"), "thresholds"),
        (lambda s, y: kfold_accuracy(s, y, score_type="cosine"), "score_type"),
        (lambda s, y: tar_at_far(s, y, [1.5]), "fars"),
        (lambda s, y: tar_at_far(s, np.ones_like(y), [1e-3]), "issame"),
        (lambda s, y: flip_sum_embeddings(np.ones((3, 4)), np.ones((3, 5))), "emb_flipped"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, message):
    a, b, issame = pairs(0, 100)
    with pytest.raises(ValueError, match=message):
        call(np.einsum("ij,ij->i", a, b), issame)
