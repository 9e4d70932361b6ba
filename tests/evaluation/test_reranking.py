"""reranking.re_ranking: agreement with a per-item loop written from Zhong et al.'s definition, chunking, errors."""

import numpy as np
import pytest

from circle_repro.evaluation.reranking import Reranking, re_ranking


def loop_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3, expanded=None):
    """k-reciprocal re-ranking one item at a time, in float64, exact ties ranked by lower index.

    ``expanded`` (a list) collects, per item, whether R*(i) grew beyond R(i, k1).
    """
    n_q = len(q_q)
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    d = (full / full.max(axis=0)).T  # row i: column i of the squared distances, scaled by its max
    n = len(d)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        return [j for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        r_star = set(r)
        for c in r:
            r_c = reciprocal(c, round(k1 / 2))
            if len(set(r_c) & set(r)) > 2 / 3 * len(r_c):
                r_star |= set(r_c)
        if expanded is not None:
            expanded.append(len(r_star) > len(r))
        cols = sorted(r_star)
        weights = np.exp(-d[i, cols])
        v[i, cols] = weights / weights.sum()
    if k2 != 1:
        v = np.array([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    final = np.empty((n_q, n - n_q))
    for i in range(n_q):
        for j in range(n_q, n):
            s = np.minimum(v[i], v[j]).sum()
            final[i, j - n_q] = (1 - lambda_value) * (1 - s / (2 - s)) + lambda_value * d[i, j]
    return final


def cosine_distances(seed, n_q=8, n_g=30, dim=6, n_ids=5, noise=0.6):
    """(q_g, q_q, g_g) = 1 - cos of clustered random features, float32 like fast-reid's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = centres[rng.integers(0, n_ids, n_q + n_g)] + noise * rng.normal(size=(n_q + n_g, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    dist = 1 - x @ x.T
    return dist[:n_q, n_q:], dist[:n_q, :n_q], dist[n_q:, n_q:]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (5, 3, 0.5), (4, 1, 0.0), (7, 2, 1.0)])
def test_matches_per_item_loop(seed, k1, k2, lambda_value):
    dists = cosine_distances(seed)
    expected = loop_re_ranking(*dists, k1, k2, lambda_value)
    result = re_ranking(*dists, k1, k2, lambda_value)
    assert result.shape == (8, 30)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


def test_the_expansion_step_is_exercised():
    expanded = []
    loop_re_ranking(*cosine_distances(0), 7, 3, 0.5, expanded=expanded)
    assert any(expanded) and not all(expanded)


def test_asymmetric_distances_follow_the_reference_layout():
    # Arbitrary positive matrices: row i of d is column i of the full matrix, not row i.
    rng = np.random.default_rng(3)
    q_g, q_q, g_g = rng.uniform(0.1, 2, (6, 25)), rng.uniform(0.1, 2, (6, 6)), rng.uniform(0.1, 2, (25, 25))
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, 6, 3), loop_re_ranking(q_g, q_q, g_g, 6, 3), rtol=0, atol=1e-6)


def test_exact_ties_rank_the_lower_index_first():
    # Features from a handful of distinct vectors: many exactly equal distances.
    rng = np.random.default_rng(4)
    distinct = np.eye(4)[[0, 1, 2, 3, 0, 1]] + np.eye(4)[[1, 2, 3, 0, 2, 3]]
    x = distinct[rng.integers(0, len(distinct), 38)] / np.sqrt(2)
    dist = np.round(1 - x @ x.T, 12)
    parts = dist[:8, 8:], dist[:8, :8], dist[8:, 8:]
    np.testing.assert_allclose(re_ranking(*parts, 6, 3), loop_re_ranking(*parts, 6, 3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("max_chunk_bytes", [1, 3000, 40_000])
def test_any_chunking_gives_the_same_distances(max_chunk_bytes):
    dists = cosine_distances(5, n_q=12, n_g=40)
    whole = re_ranking(*dists, 8, 4)
    np.testing.assert_allclose(re_ranking(*dists, 8, 4, max_chunk_bytes=max_chunk_bytes), whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {**d, "q_q_dist": d["q_q_dist"][:, :-1]}, "q_q_dist must be 8 x 8"),
        (lambda d: {**d, "g_g_dist": d["g_g_dist"][:-1]}, "g_g_dist must be 30 x 30"),
        (lambda d: {**d, "q_g_dist": np.where(d["q_g_dist"] > 0.5, np.nan, d["q_g_dist"])}, "q_g_dist contains NaN"),
        (lambda d: {**d, "k1": 38}, "k1=38 and k2=6 need k1 < N"),
        (lambda d: {**d, "k2": 0}, "Reranking.k2 must be a positive integer"),
        (lambda d: {**d, "lambda_value": 1.5}, "Reranking.lambda_value"),
        (lambda d: {**d, "max_chunk_bytes": 0}, "max_chunk_bytes"),
    ],
)
def test_bad_input_raises_naming_the_argument(change, message):
    names = ("q_g_dist", "q_q_dist", "g_g_dist")
    with pytest.raises(ValueError, match=message):
        re_ranking(**change(dict(zip(names, cosine_distances(0), strict=True))))


def test_options_have_the_paper_defaults():
    assert Reranking() == Reranking(k1=20, k2=6, lambda_value=0.3)
    with pytest.raises(ValueError, match=r"Reranking.k1"):
        Reranking(k1=2.5)
