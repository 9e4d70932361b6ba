"""reid.evaluate: agreement with a per-query loop of fast-reid's eval_market1501, chunking, junk, options, errors."""

import numpy as np
import pytest
import torch

from circle_repro.evaluation import reid
from circle_repro.evaluation.reid import (
    QueryExpansion,
    ReidResult,
    average_query_expansion,
    evaluate,
    flip_average,
)
from circle_repro.evaluation.reranking import Reranking, re_ranking


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(q_feats, q_pids, q_cams, g_feats, g_pids, g_cams, max_rank=50):
    """fast-reid's eval_market1501 on cosine similarity; see ``reference_from_scores``."""
    return reference_from_scores(unit(q_feats) @ unit(g_feats).T, q_pids, q_cams, g_pids, g_cams, max_rank)


def reference_from_scores(sim, q_pids, q_cams, g_pids, g_cams, max_rank=50):
    """fast-reid's eval_market1501, one query at a time (higher ``sim`` ranks first, stable order for exact ties, -1 = junk)."""
    max_rank = min(max_rank, len(g_pids))
    all_cmc, all_ap, all_inp, skipped = [], [], [], 0
    for i in range(len(q_pids)):
        order = np.argsort(-sim[i], kind="stable")
        remove = ((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])) | (g_pids[order] == -1)
        raw = (g_pids[order] == q_pids[i])[~remove].astype(np.int64)
        if not raw.any():
            skipped += 1
            continue
        cmc = raw.cumsum()
        last = np.flatnonzero(raw)[-1]
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        cmc = np.r_[cmc, np.ones(max(0, max_rank - len(cmc)), dtype=np.int64)]  # only for galleries < max_rank
        all_cmc.append(cmc[:max_rank])
        precision = raw.cumsum() / np.arange(1, len(raw) + 1)
        all_ap.append((precision * raw).sum() / raw.sum())
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp), len(all_ap), skipped


def assert_same(result: ReidResult, expected):
    cmc, m_ap, m_inp, n_valid, n_skipped = expected
    assert (result.n_valid_queries, result.n_skipped_queries) == (n_valid, n_skipped)
    tol = 1e-12  # summation order only: one rank off moves mAP by far more
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=tol)
    assert result.mAP == pytest.approx(m_ap, abs=tol)
    assert result.mINP == pytest.approx(m_inp, abs=tol)


def market_like(seed, n_q=60, n_g=300, n_ids=25, n_cams=4, dim=16, n_distractors=40):
    """Random features; pid 0 distractors in the gallery, query ids absent from it, same-camera-only ids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids + 3, dim))
    q_pids = rng.integers(1, n_ids + 3, n_q)  # ids n_ids+1, n_ids+2 never appear in the gallery
    g_pids = np.r_[rng.integers(1, n_ids + 1, n_g - n_distractors), np.zeros(n_distractors, dtype=np.int64)]
    q_cams, g_cams = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    g_cams[g_pids == 1] = 0  # id 1 is only ever seen by camera 0 in the gallery
    q_cams[q_pids == 1] = 0  # ... so its queries (camera 0) have nothing left: skipped
    q_feats = centres[q_pids] + rng.normal(size=(n_q, dim)) * 1.5
    g_feats = np.where(g_pids[:, None] > 0, centres[g_pids], 0) + rng.normal(size=(n_g, dim)) * 1.5
    return q_feats, q_pids, q_cams, g_feats, g_pids, g_cams


def tie_heavy(seed, n_q=40, n_g=200, dim=8):
    """±1 vectors with four non-zeros: every cosine is a multiple of 1/4, computed exactly."""
    rng = np.random.default_rng(seed)

    def vectors(n):
        x = np.zeros((n, dim))
        for row in x:
            cols = rng.choice(dim, 4, replace=False)
            row[cols] = rng.choice([-1.0, 1.0], 4)
        return x

    q_pids, g_pids = rng.integers(0, 6, n_q), rng.integers(0, 6, n_g)
    return vectors(n_q), q_pids, rng.integers(0, 3, n_q), vectors(n_g), g_pids, rng.integers(0, 3, n_g)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_matches_per_query_loop(seed, chunk_size):
    data = market_like(seed)
    assert_same(evaluate(*data, chunk_size=chunk_size), reference(*data))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_exact_ties_rank_lower_gallery_index_first(seed, chunk_size):
    data = tie_heavy(seed)
    q = data[0] / 2.0
    g = data[3] / 2.0
    assert len(np.unique(np.round(q @ g.T, 12))) <= 9  # the data really is full of ties
    assert_same(evaluate(*data, chunk_size=chunk_size), reference(*data))


def test_any_chunking_gives_identical_results():
    data = market_like(5, n_q=50, n_g=250)
    one = evaluate(*data, chunk_size=10_000)
    for kwargs in ({"chunk_size": 1}, {"chunk_size": 13}, {"max_chunk_bytes": 3 * 250 * 8}):
        many = evaluate(*data, **kwargs)
        np.testing.assert_array_equal(many.cmc, one.cmc)
        assert (many.mAP, many.mINP, many.n_valid_queries) == (one.mAP, one.mINP, one.n_valid_queries)


def test_hand_computed_query():
    # Gallery cosines to the query: g0 .9 (pid 0 distractor), g1 .8 (match, other cam),
    # g2 .7 (same pid, same cam: junk), g3 .6 (other pid), g4 .5 (match, other cam).
    angles = np.arccos([0.9, 0.8, 0.7, 0.6, 0.5])
    g_feats = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    result = evaluate(np.array([[1.0, 0.0]]), [7], [1], g_feats, [0, 7, 7, 3, 7], [2, 2, 1, 1, 3], max_rank=4)
    # Kept ranking: g0, g1 (match at 2), g3, g4 (match at 4).
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.mINP == pytest.approx(2 / 4)
    assert result.rank(2) == 1.0
    assert (result.n_valid_queries, result.n_skipped_queries) == (1, 0)


def test_pid_zero_distractors_are_only_negatives():
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = market_like(3)
    plain = evaluate(q_feats, q_pids, q_cams, g_feats, g_pids, g_cams)
    # Exact copies of each query, labelled pid 0: rank 1 for every query, never a match.
    g2 = np.r_[q_feats, g_feats]
    p2, c2 = np.r_[np.zeros(len(q_pids), dtype=np.int64), g_pids], np.r_[q_cams, g_cams]
    shifted = evaluate(q_feats, q_pids, q_cams, g2, p2, c2)
    assert shifted.cmc[0] == 0.0
    assert shifted.n_valid_queries == plain.n_valid_queries
    assert shifted.mAP < plain.mAP
    assert_same(shifted, reference(q_feats, q_pids, q_cams, g2, p2, c2))


def test_minus_one_gallery_items_are_removed_as_junk():
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = market_like(4)
    rng = np.random.default_rng(0)
    junk = rng.normal(size=(30, g_feats.shape[1])) + q_feats[:30]  # close to queries
    with_junk = evaluate(
        np.r_[q_feats, q_feats[:2]],
        np.r_[q_pids, [-1, -1]],
        np.r_[q_cams, [0, 1]],
        np.r_[junk, g_feats],
        np.r_[np.full(30, -1), g_pids],
        np.r_[np.zeros(30, dtype=np.int64), g_cams],
    )
    without = evaluate(q_feats, q_pids, q_cams, g_feats, g_pids, g_cams)
    np.testing.assert_array_equal(with_junk.cmc, without.cmc)
    assert with_junk.mAP == pytest.approx(without.mAP, abs=1e-15)
    assert with_junk.mINP == pytest.approx(without.mINP, abs=1e-15)
    assert with_junk.n_skipped_queries == without.n_skipped_queries + 2  # the pid -1 queries


def test_skipped_queries_are_counted():
    data = market_like(0)
    result = evaluate(*data)
    expected = reference(*data)
    assert result.n_skipped_queries == expected[4] > 0
    assert result.n_valid_queries + result.n_skipped_queries == len(data[1])


def test_small_gallery_caps_max_rank_and_accepts_tensors():
    data = market_like(1, n_q=10, n_g=12, n_ids=3, n_distractors=2)
    tensors = [torch.as_tensor(x) for x in data]
    result = evaluate(*tensors, max_rank=50)
    assert len(result.cmc) == 12
    assert_same(result, reference(*data, max_rank=50))


def test_similarity_blocks_stay_within_the_byte_budget(monkeypatch):
    data = market_like(2, n_q=64, n_g=200)
    shapes = []
    original = reid._similarity_block

    def recording(queries, gallery):
        block = original(queries, gallery)
        shapes.append(block.shape)
        return block

    monkeypatch.setattr(reid, "_similarity_block", recording)
    budget = 10 * 200 * 8  # ten float64 rows
    limited = evaluate(*data, max_chunk_bytes=budget)
    assert len(shapes) > 1
    assert all(rows * cols * 8 <= budget for rows, cols in shapes)
    assert sum(rows for rows, _ in shapes) == limited.n_valid_queries  # skipped queries are never scored
    assert_same(limited, reference(*data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: {**d, "q_pids": d["q_pids"][:-1]}, "q_pids"),
        (lambda d: {**d, "g_cams": d["g_cams"][:-1]}, "g_cams"),
        (
            lambda d: {**d, "g_feats": np.where(np.arange(len(d["g_feats"]))[:, None] == 3, np.nan, d["g_feats"])},
            "g_feats",
        ),
        (lambda d: {**d, "q_feats": d["q_feats"][:0], "q_pids": d["q_pids"][:0], "q_cams": d["q_cams"][:0]}, "q_feats"),
        (lambda d: {**d, "q_feats": d["q_feats"][:, :3]}, "dimension"),
        (lambda d: {**d, "q_pids": d["q_pids"].astype(float)}, "q_pids"),
        (lambda d: {**d, "max_rank": 0}, "max_rank"),
        (lambda d: {**d, "q_pids": d["q_pids"] + 1000}, "no query has a true match"),
    ],
)
def test_bad_input_raises_naming_the_argument(change, message):
    names = ("q_feats", "q_pids", "q_cams", "g_feats", "g_pids", "g_cams")
    kwargs = change(dict(zip(names, market_like(0), strict=True)))
    with pytest.raises(ValueError, match=message):
        evaluate(**kwargs)


# ---------------------------------------------------------------------------------------------
# Options: flip, average query expansion, re-ranking


def loop_aqe(q_feats, g_feats, k, alpha, times=1):
    """fast-reid's aqe one row at a time: mean of the k nearest features (self included) times sim ** alpha."""
    feats = np.r_[q_feats, g_feats]
    for _ in range(times):
        sim = unit(feats) @ unit(feats).T
        expanded = []
        for row in sim:
            nearest = np.argsort(-row, kind="stable")[:k]
            expanded.append((feats[nearest] * row[nearest, None] ** alpha).mean(axis=0))
        feats = np.array(expanded)
    return feats[: len(q_feats)], feats[len(q_feats) :]


def flipped_copies(data, seed=0):
    rng = np.random.default_rng(seed)
    q_feats, _, _, g_feats, _, _ = data
    return q_feats + rng.normal(size=q_feats.shape), g_feats + rng.normal(size=g_feats.shape)


def test_flip_average_is_the_mean_and_evaluate_uses_it():
    data = market_like(0)
    q_flip, g_flip = flipped_copies(data)
    np.testing.assert_array_equal(flip_average(data[0], q_flip).numpy(), (data[0] + q_flip) / 2)
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = data
    result = evaluate(*data, q_flipped_feats=q_flip, g_flipped_feats=g_flip)
    assert_same(result, reference(q_feats + q_flip, q_pids, q_cams, g_feats + g_flip, g_pids, g_cams))


@pytest.mark.parametrize(("k", "alpha", "times"), [(5, 3.0, 1), (1, 3.0, 1), (10, 0.0, 1), (3, 2.0, 2)])
def test_query_expansion_matches_per_row_loop(k, alpha, times):
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = market_like(1, n_q=30, n_g=120, n_distractors=10)
    expected = loop_aqe(q_feats, g_feats, k, alpha, times)
    expanded = average_query_expansion(q_feats, g_feats, k, alpha, times)
    for ours, theirs in zip(expanded, expected, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-10, atol=1e-12)
    result = evaluate(q_feats, q_pids, q_cams, g_feats, g_pids, g_cams, query_expansion=QueryExpansion(k, alpha, times))
    assert_same(result, reference(expected[0], q_pids, q_cams, expected[1], g_pids, g_cams))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_reranking_ranks_by_the_re_ranked_distances(chunk_size):
    data = market_like(2, n_q=30, n_g=120, n_distractors=10)
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = data
    q, g = unit(q_feats), unit(g_feats)
    distance = re_ranking(1 - q @ g.T, 1 - q @ q.T, 1 - g @ g.T, 10, 4, 0.3)
    result = evaluate(*data, chunk_size=chunk_size, reranking=Reranking(10, 4, 0.3))
    assert_same(result, reference_from_scores(-distance, q_pids, q_cams, g_pids, g_cams))
    assert result.mAP != evaluate(*data).mAP  # the option does change the ranking


def test_all_options_together_apply_flip_then_expansion_then_reranking():
    data = market_like(3, n_q=30, n_g=120, n_distractors=10)
    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = data
    q_flip, g_flip = flipped_copies(data, seed=1)
    q, g = (unit(x) for x in loop_aqe((q_feats + q_flip) / 2, (g_feats + g_flip) / 2, 5, 3.0))
    distance = re_ranking(1 - q @ g.T, 1 - q @ q.T, 1 - g @ g.T)
    result = evaluate(
        *data, q_flipped_feats=q_flip, g_flipped_feats=g_flip, query_expansion=QueryExpansion(), reranking=Reranking()
    )
    assert_same(result, reference_from_scores(-distance, q_pids, q_cams, g_pids, g_cams))


def test_options_have_fast_reid_defaults():
    assert QueryExpansion() == QueryExpansion(k=5, alpha=3.0, times=1)
    assert Reranking() == Reranking(k1=20, k2=6, lambda_value=0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q_flipped_feats": np.ones((60, 16))}, "q_flipped_feats and g_flipped_feats go together"),
        (
            {"q_flipped_feats": np.ones((60, 15)), "g_flipped_feats": np.ones((300, 16))},
            "q_flipped_feats must have the shape of q_feats",
        ),
        (
            {"q_flipped_feats": np.ones((60, 16)), "g_flipped_feats": np.full((300, 16), np.inf)},
            "g_flipped_feats contains NaN or infinite",
        ),
        (
            {"query_expansion": QueryExpansion(k=361)},
            "QueryExpansion.k=361 is larger than the 360 query and gallery items",
        ),
        ({"query_expansion": QueryExpansion(k=300, alpha=0.5)}, "alpha=0.5 is not an integer"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(*market_like(0), **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: QueryExpansion(k=0), "QueryExpansion.k must be a positive integer"),
        (lambda: QueryExpansion(times=1.5), "QueryExpansion.times must be a positive integer"),
        (lambda: QueryExpansion(alpha=-1.0), "QueryExpansion.alpha must be a real number >= 0"),
        (lambda: Reranking(lambda_value=True), "Reranking.lambda_value must be a real number"),
    ],
)
def test_bad_option_values(build, message):
    with pytest.raises(ValueError, match=message):
        build()
