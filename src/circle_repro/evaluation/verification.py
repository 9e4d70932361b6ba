"""Pair verification (LFW / CFP-FP / AgeDB-30): insightface's 10-fold accuracy, VAL@FAR and TAR@FAR.

Reference: insightface ``recognition/arcface_torch/eval/verification.py``.

* Embedding of an image: ``emb(img) + emb(flip(img))``, L2-normalised
  (:func:`flip_sum_embeddings`).
* Pair score: insightface thresholds the **squared Euclidean distance** of the two unit
  embeddings. Scores here are accepted either as cosine similarities (``score_type=
  "similarity"``, the default; for unit vectors ``dist² = 2 - 2 cos``) or as squared
  distances (``score_type="distance"``; :func:`squared_distances` computes them exactly as
  insightface does, for bit-for-bit agreement at grid points).
* Accuracy (:func:`kfold_accuracy`): ``KFold(n_splits, shuffle=False)`` over the pair index;
  for each fold the threshold with the best accuracy on the other folds is chosen (first
  maximum on an ascending grid, "same" means ``dist² < threshold``) and the accuracy on the
  held-out fold is recorded; the result is the mean and (population) std over folds.
  **Default grid: insightface's ``np.arange(0, 4, 0.01)``** on the squared distance, so numbers
  match the reference. ``thresholds="exact"`` searches every distinct training distance (plus
  +inf) instead, i.e. the best cut the training folds allow; an array gives any other grid.
  All variants count with sorted arrays and binary search, no per-threshold Python loop;
  :func:`kfold_pair_correctness` gives the per-pair decisions the fold accuracies average.
* :func:`val_at_far`: insightface's VAL@FAR (grid ``arange(0, 4, 0.001)``; the threshold
  for the target FAR is interpolated linearly on the training folds' FAR curve, or 0 when the
  target is never reached). insightface calls ``scipy.interpolate.interp1d(far_train,
  thresholds, kind="slinear")``; current SciPy refuses that call because the FAR curve has
  repeated values ("Expect x to not have duplicates", insightface issue #2152). The FAR curve
  is nondecreasing on an ascending grid, and ``np.interp`` on it is what ``slinear``
  computed on duplicates in older SciPy: linear between the *largest* threshold at the FAR
  just below the target and the *smallest* threshold at the FAR just above it.
* :func:`tar_at_far`: TAR at a FAR **through the ROC**, with sklearn's ``roc_curve``
  conventions (accept when ``score >= threshold``; every distinct score is a threshold, plus
  +inf). Rule: **TAR@FAR=x is the largest TPR over the ROC points with FPR <= x**, i.e. the TPR
  at the most permissive threshold whose FPR does not exceed x (``roc_curve(...,
  drop_intermediate=False)``). insightface's IJB rule (the ROC point *nearest* to x) is a
  different rule and lives in :func:`circle_repro.evaluation.ijb.tar_at_far_ijb`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from circle_repro.evaluation.inputs import binary_vector, to_numpy

ArrayLike = np.ndarray | Sequence[float]

INSIGHTFACE_ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
INSIGHTFACE_VAL_THRESHOLDS = np.arange(0, 4, 0.001)
SCORE_TYPES = ("similarity", "distance")


def flip_sum_embeddings(emb: ArrayLike, emb_flipped: ArrayLike) -> np.ndarray:
    """``emb + emb_flipped``, each row L2-normalised (insightface's "Accuracy-Flip" embedding)."""
    a, b = to_numpy(emb), to_numpy(emb_flipped)
    if a.ndim != 2:
        raise ValueError(f"emb must be 2-D (n × dim), got shape {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"emb_flipped must have the shape of emb {a.shape}, got {b.shape}")
    total = a.astype(np.result_type(a.dtype, b.dtype, np.float32)) + b
    if not np.isfinite(total).all():
        raise ValueError("emb / emb_flipped contain NaN or infinite values")
    norms = np.linalg.norm(total, axis=1, keepdims=True)
    return total / np.maximum(norms, np.finfo(total.dtype).tiny)


def squared_distances(emb1: ArrayLike, emb2: ArrayLike) -> np.ndarray:
    """insightface's pair distance ``sum((emb1 - emb2) ** 2, axis=1)`` (pairs are rows)."""
    a, b = to_numpy(emb1), to_numpy(emb2)
    if a.ndim != 2 or b.shape != a.shape:
        raise ValueError(f"emb1 and emb2 must be 2-D arrays of equal shape, got {a.shape} and {b.shape}")
    return np.sum(np.square(np.subtract(a, b)), 1)


def _scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    s = to_numpy(scores)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per pair), got shape {s.shape}")
    if len(s) == 0:
        raise ValueError(f"{name} is empty: at least one pair is needed")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {s.dtype}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


def _distances(scores: ArrayLike, score_type: str) -> np.ndarray:
    s = _scores(scores)
    if score_type not in SCORE_TYPES:
        raise ValueError(f"score_type must be one of {SCORE_TYPES}, got {score_type!r}")
    return 2.0 - 2.0 * s.astype(np.float64) if score_type == "similarity" else s


def _fold_bounds(n: int, n_folds: object) -> list[tuple[np.ndarray, slice]]:
    """sklearn ``KFold(n_folds, shuffle=False)`` over ``range(n)`` as (train mask, test slice).

    ``n_folds=1`` is insightface's ``LFold`` special case: train and test are all pairs.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 1:
        raise ValueError(f"n_folds must be a positive integer, got {n_folds!r}")
    if n_folds > n:
        raise ValueError(f"n_folds={n_folds} is larger than the number of pairs ({n})")
    if n_folds == 1:
        return [(np.ones(n, dtype=bool), slice(0, n))]
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    stops = np.cumsum(sizes)
    folds = []
    for start, stop in zip(stops - sizes, stops, strict=True):
        train = np.ones(n, dtype=bool)
        train[start:stop] = False
        folds.append((train, slice(int(start), int(stop))))
    return folds


def _count_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``#(value < t)`` for every threshold (insightface predicts "same" when dist < t)."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _threshold_grid(thresholds: object) -> np.ndarray | None:
    if isinstance(thresholds, str):
        if thresholds == "insightface":
            return INSIGHTFACE_ACCURACY_THRESHOLDS
        if thresholds == "exact":
            return None
        raise ValueError(f"thresholds must be 'insightface', 'exact' or an array, got {thresholds!r}")
    grid = np.asarray(thresholds, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0 or not np.all(np.isfinite(grid) | np.isposinf(grid)):
        raise ValueError("thresholds must be a non-empty 1-D array of finite values (or +inf)")
    return grid


def kfold_pair_correctness(
    scores: ArrayLike,
    issame: ArrayLike,
    n_folds: int = 10,
    *,
    thresholds: str | ArrayLike = "insightface",
    score_type: str = "similarity",
) -> np.ndarray:
    """Per pair, whether insightface's k-fold protocol decides it right: each fold is judged with the
    threshold best on the other folds (arguments as :func:`kfold_accuracy`). A boolean vector."""
    dist = _distances(scores, score_type)
    same = binary_vector(issame, "issame", len(dist), "scores")
    grid = _threshold_grid(thresholds)
    correct = np.empty(len(dist), dtype=bool)
    for train, test in _fold_bounds(len(dist), n_folds):
        d_train, y_train = dist[train], same[train]
        candidates = np.append(np.unique(d_train), np.inf) if grid is None else grid
        below_same = _count_below(np.sort(d_train[y_train]), candidates)
        below_diff = _count_below(np.sort(d_train[~y_train]), candidates)
        threshold = candidates[np.argmax(below_same + (np.count_nonzero(~y_train) - below_diff))]
        correct[test] = (dist[test] < threshold) == same[test]
    return correct


def kfold_accuracy(
    scores: ArrayLike,
    issame: ArrayLike,
    n_folds: int = 10,
    *,
    thresholds: str | ArrayLike = "insightface",
    score_type: str = "similarity",
) -> tuple[float, float]:
    """insightface's k-fold verification accuracy: ``(mean, std)`` over folds, fractions in [0, 1].

    ``scores`` has one entry per pair (cosine similarity, or squared distance with
    ``score_type="distance"``); ``issame`` is binary. ``thresholds``: ``"insightface"``
    (default, ``arange(0, 4, 0.01)`` on the squared distance), ``"exact"`` (all distinct
    training distances plus +inf: the best achievable cut), or a 1-D array of squared-distance
    thresholds used in the given order (ties in training accuracy go to the first entry, as
    ``np.argmax`` does). See the module docstring.
    """
    correct = kfold_pair_correctness(scores, issame, n_folds, thresholds=thresholds, score_type=score_type)
    accuracies = [
        np.count_nonzero(correct[test]) / len(correct[test]) for _, test in _fold_bounds(len(correct), n_folds)
    ]
    return float(np.mean(accuracies)), float(np.std(accuracies))


def val_at_far(
    scores: ArrayLike,
    issame: ArrayLike,
    far_target: float = 1e-3,
    n_folds: int = 10,
    *,
    thresholds: ArrayLike | None = None,
    score_type: str = "similarity",
) -> tuple[float, float, float]:
    """insightface's ``calculate_val``: ``(val_mean, val_std, far_mean)`` over folds.

    Per fold, FAR on the training folds is evaluated on ``thresholds`` (ascending; default
    ``arange(0, 4, 0.001)`` on the squared distance); if its maximum reaches ``far_target`` the
    threshold is ``np.interp(far_target, far_train, thresholds)`` (module docstring: the
    duplicate-tolerant form of insightface's ``interp1d(kind="slinear")``), otherwise 0.
    VAL (= TAR) and FAR are then measured on the held-out fold ("same" when ``dist² < t``).
    Every fold must contain both kinds of pair.
    """
    dist = _distances(scores, score_type)
    same = binary_vector(issame, "issame", len(dist), "scores")
    grid = INSIGHTFACE_VAL_THRESHOLDS if thresholds is None else _threshold_grid(np.asarray(thresholds))
    if np.any(np.diff(grid) <= 0):
        raise ValueError("thresholds must be strictly ascending for val_at_far")
    if not (isinstance(far_target, float | int) and 0 <= far_target <= 1):
        raise ValueError(f"far_target must be a number in [0, 1], got {far_target!r}")
    vals, fars = [], []
    for train, test in _fold_bounds(len(dist), n_folds):
        y_train = same[train]
        n_diff_train = np.count_nonzero(~y_train)
        if n_diff_train == 0:
            raise ValueError("issame: a training split has no 'different' pair, FAR is undefined")
        far_train = _count_below(np.sort(dist[train][~y_train]), grid) / float(n_diff_train)
        threshold = np.interp(far_target, far_train, grid) if np.max(far_train) >= far_target else 0.0
        d_test, y_test = dist[test], same[test]
        n_same, n_diff = np.count_nonzero(y_test), np.count_nonzero(~y_test)
        if n_same == 0 or n_diff == 0:
            raise ValueError("issame: every test fold needs both 'same' and 'different' pairs")
        accept = d_test < threshold
        vals.append(np.count_nonzero(accept & y_test) / float(n_same))
        fars.append(np.count_nonzero(accept & ~y_test) / float(n_diff))
    return float(np.mean(vals)), float(np.std(vals)), float(np.mean(fars))


def max_false_accepts(far: float, n_negative: int) -> int:
    """The largest count m of accepted negatives with ``m / n_negative <= far`` (float64 division).

    This is exactly the test ``fpr <= far`` on sklearn's ``fpr = fps / fps[-1]``.
    """
    m = min(n_negative, max(0, math.floor(far * n_negative)))
    while m < n_negative and (m + 1) / n_negative <= far:
        m += 1
    while m > 0 and m / n_negative > far:
        m -= 1
    return m


def check_fars(fars: Iterable[float], name: str = "fars") -> list[float]:
    if isinstance(fars, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers in [0, 1], got {fars!r}")
    try:
        values = [float(f) for f in fars]
    except TypeError:
        values = [float(fars)]  # a single number
    if not values or not all(0 <= f <= 1 for f in values):
        raise ValueError(f"{name} must be a non-empty sequence of numbers in [0, 1], got {fars!r}")
    return values


def tar_at_far(scores: ArrayLike, issame: ArrayLike, fars: Iterable[float]) -> dict[float, float]:
    """TAR (true accept rate) at each FAR in ``fars``, through the ROC of similarity ``scores``.

    Higher score means "same". Rule (module docstring): the largest TPR among ROC points whose
    FPR <= far, with sklearn's ``roc_curve`` points (all distinct scores plus +inf, no
    ``drop_intermediate``). Computed in O(n) per target: with m the most negatives that
    FPR <= far allows and v the (m+1)-th highest negative score, TAR = #(positive > v) / #positive.
    """
    s = _scores(scores)
    y = binary_vector(issame, "issame", len(s), "scores")
    positives, negatives = s[y], s[~y]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("issame must contain both same (1) and different (0) pairs")
    result = {}
    for far in check_fars(fars):
        m = max_false_accepts(far, len(negatives))
        if m >= len(negatives):
            result[far] = 1.0
            continue
        kth = len(negatives) - (m + 1)
        v = np.partition(negatives, kth)[kth]
        result[far] = np.count_nonzero(positives > v) / len(positives)
    return result
