"""ijb: media pooling, bounded pair scoring, and insightface's nearest-FPR TAR rule against sklearn."""

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from circle_repro.evaluation import ijb
from circle_repro.evaluation.ijb import IJB_FARS, score_pairs, tar_at_far_ijb, template_features


def insightface_rule(scores, labels, fars):
    """eval_ijbc.py: roc_curve (default drop_intermediate), flipud, nearest FPR (ties: smaller flipped index)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    result = {}
    for far in fars:
        _, index = min(zip(abs(fpr - far), range(len(fpr)), strict=True))
        result[far] = float(tpr[index])
    return result


def test_template_pooling_hand_case():
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, -5.0], [0.0, 0.0]])
    template_ids = [20, 20, 20, 10, 30]
    media_ids = [1, 1, 2, 1, 4]
    templates, pooled = template_features(feats, template_ids, media_ids)
    # Template 20: media 1 averages to (2, 0), media 2 is (0, 2); sum (2, 2) -> (1, 1)/sqrt(2).
    # Template 10: (0, -5) -> (0, -1). Template 30: a zero feature stays zero.
    np.testing.assert_array_equal(templates, [10, 20, 30])
    np.testing.assert_allclose(pooled, [[0, -1], [2**-0.5, 2**-0.5], [0, 0]], atol=1e-15)


def test_template_pooling_flip_detector_and_norm_options():
    feats = np.array([[3.0, 0.0], [0.0, 1.0]])
    flipped = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = np.array([0.5, 2.0])
    # insightface defaults: flip-sum (4, 0), (0, 2); no normalisation; detector weights: (2, 0), (0, 4).
    _, pooled = template_features(feats, [1, 1], [1, 2], flipped_feats=flipped, detector_scores=scores)
    np.testing.assert_allclose(pooled, [[2 / 20**0.5, 4 / 20**0.5]])
    # use_norm_score=False: unit image features (1, 0), (0, 1), then weights: (0.5, 0), (0, 2).
    _, pooled = template_features(
        feats, [1, 1], [1, 2], flipped_feats=flipped, detector_scores=scores, norm_score=False
    )
    np.testing.assert_allclose(pooled, [[0.5 / 4.25**0.5, 2 / 4.25**0.5]])
    # One media: the two images are averaged before the (single-media) sum.
    _, pooled = template_features(feats, [1, 1], [7, 7])
    np.testing.assert_allclose(pooled, [[3 / 10**0.5, 1 / 10**0.5]])


def test_template_pooling_matches_insightface_loop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 6)).astype(np.float32)
    template_ids, media_ids = rng.integers(0, 40, 400), rng.integers(0, 15, 400)
    expected = []
    for t in np.unique(template_ids):
        in_t = template_ids == t
        media = [feats[in_t][media_ids[in_t] == m].astype(np.float64).mean(axis=0) for m in np.unique(media_ids[in_t])]
        total = np.sum(media, axis=0)
        expected.append(total / np.linalg.norm(total))
    templates, pooled = template_features(feats, template_ids, media_ids)
    np.testing.assert_array_equal(templates, np.unique(template_ids))
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, atol=1e-6)


def random_templates(seed, n=300, dim=16, ids=None):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return (np.arange(n) * 3 + 5 if ids is None else ids), feats, rng


@pytest.mark.parametrize("method", ["auto", "dense", "gather"])
@pytest.mark.parametrize("id_kind", ["small ints", "huge ints", "strings"])
def test_score_pairs_matches_direct_dot_products(method, id_kind):
    n = 120
    ids = {
        "small ints": None,
        "huge ints": np.arange(n) * 10**12 - 7,
        "strings": np.array([f"t{i:04d}" for i in range(n)]),
    }[id_kind]
    templates, feats, rng = random_templates(1, n=n, ids=ids)
    perm = rng.permutation(n)  # templates need not be sorted
    templates, feats = templates[perm], feats[perm]
    i1, i2 = rng.integers(0, 40, 5000), rng.integers(40, n, 5000)
    scores = score_pairs(templates, feats, templates[i1], templates[i2], method=method, max_chunk_bytes=4096)
    np.testing.assert_allclose(scores, np.sum(feats[i1] * feats[i2], axis=1), rtol=0, atol=1e-12)


def test_score_pairs_blocks_stay_within_the_budget(monkeypatch):
    templates, feats, rng = random_templates(2, n=1000, dim=32)
    i1, i2 = rng.integers(0, 400, 20_000), rng.integers(400, 1000, 20_000)
    shapes = []
    original = ijb._block_product

    def recording(a, b):
        shapes.append((a.shape[0], b.shape[0]))
        return original(a, b)

    budget = 8192
    t1, t2 = templates[i1], templates[i2]
    score_pairs(templates, feats, t1, t2, max_chunk_bytes=budget)  # warm-up: lazy imports, caches
    monkeypatch.setattr(ijb, "_block_product", recording)
    tracemalloc.start()
    scores = score_pairs(templates, feats, t1, t2, max_chunk_bytes=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(shapes) > 10 and all(rows * cols * 8 <= budget for rows, cols in shapes)
    full_matrix = 400 * 600 * 8
    # scores (160 kB) + the smaller side's features (102 kB) + block ids (40 kB) + small buffers
    assert peak < scores.nbytes + 400 * 32 * 8 + 2 * 20_000 + 40 * budget + 100_000 < full_matrix
    np.testing.assert_allclose(scores, np.sum(feats[i1] * feats[i2], axis=1), atol=1e-12)


def test_score_pairs_rejects_unknown_ids():
    templates, feats, _ = random_templates(3, n=10)
    with pytest.raises(ValueError, match="pairs_t2"):
        score_pairs(templates, feats, templates[:3], np.array([templates[0], 999, templates[1]]))
    with pytest.raises(ValueError, match="pairs_t2"):
        score_pairs(templates, feats, templates[:3], templates[:2])
    with pytest.raises(ValueError, match="template_feats"):
        score_pairs(templates, feats[:5], templates[:3], templates[:3])


@pytest.mark.parametrize("seed", range(8))
def test_fast_tar_equals_sklearn_rule_exactly_with_ties(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    if seed < 3:
        scores = np.round(rng.normal(size=n) + 2.0 * labels, int(rng.integers(0, 2)))  # heavy ties
    else:  # many tiny tie groups: collinear ROC runs that drop_intermediate removes
        scores = rng.integers(0, max(2, n // 3), n) + labels * rng.integers(0, 3, n)
    scores = scores.astype(np.float32 if seed % 2 else np.float64)
    fars = (*IJB_FARS, 0.25, 0.5, 1.0, 3 / n)
    monkeypatch.setattr(ijb, "_STREAM_BLOCK", int(rng.integers(1, 40)))  # many blocks, ties across them
    assert tar_at_far_ijb(scores, labels, fars) == insightface_rule(scores, labels, fars)


def test_drop_intermediate_is_reproduced():
    # Three thresholds, each with one genuine and one impostor pair: the ROC runs diagonally
    # (0,0) (1/3,1/3) (2/3,2/3) (1,1), and roc_curve drops the collinear (2/3,2/3). FAR 0.6 is
    # then nearest to 1/3 (TAR 1/3), not to the dropped 2/3.
    scores = np.array([3.0, 3.0, 2.0, 2.0, 1.0, 1.0])
    labels = np.array([1, 0, 1, 0, 1, 0])
    assert insightface_rule(scores, labels, [0.6]) == {0.6: 1 / 3}
    assert tar_at_far_ijb(scores, labels, [0.6]) == {0.6: 1 / 3}


def test_nearest_rule_differs_from_at_most_rule_where_it_should():
    # One genuine pair and nine impostors in a line of ties: the ROC after drop_intermediate is
    # (0, 0), (0.5, 0), (1, 1)... with FAR 0.4 the nearest point is FPR 0.5, which exceeds the target.
    scores = np.array([0.9] * 5 + [0.1] * 5 + [0.1])
    labels = np.array([0] * 10 + [1])
    assert tar_at_far_ijb(scores, labels, [0.4]) == insightface_rule(scores, labels, [0.4]) == {0.4: 0.0}
    assert tar_at_far_ijb(scores, labels, [0.9]) == insightface_rule(scores, labels, [0.9]) == {0.9: 1.0}


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.array([0.1, 0.2]), np.array([0, 1, 1]), "labels"),
        (np.array([0.1, np.nan]), np.array([0, 1]), "scores"),
        (np.array([0.1, 0.2]), np.array([0, 2]), "labels"),
        (np.array([]), np.array([]), "scores"),
        (np.array([0.1, 0.2]), np.array([1, 1]), "labels"),
    ],
)
def test_tar_bad_input(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        tar_at_far_ijb(scores, labels)


def test_template_features_bad_input():
    with pytest.raises(ValueError, match="media_ids"):
        template_features(np.ones((3, 2)), [1, 1, 2], [1, 1])
    with pytest.raises(ValueError, match="feats"):
        template_features(np.array([[1.0, np.nan]]), [1], [1])
    with pytest.raises(ValueError, match="detector_scores"):
        template_features(np.ones((2, 2)), [1, 1], [1, 2], detector_scores=[1.0])
