"""topk_cosine: brute-force agreement, chunking, tie order and input errors."""

import numpy as np
import pytest
import torch

from circle_repro.evaluation import knn
from circle_repro.evaluation.knn import topk_cosine


def brute_force(queries, gallery, k, exclude_self=False):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    sim = q @ g.T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, order, axis=1), order


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(37, 8)), rng.normal(size=(53, 8))


@pytest.mark.parametrize("k", [1, 5, 53])
def test_matches_brute_force(data, k):
    queries, gallery = data
    sims, idx = topk_cosine(queries, gallery, k)
    expected_sims, expected_idx = brute_force(queries, gallery, k)
    assert sims.shape == idx.shape == (37, k)
    np.testing.assert_array_equal(idx.numpy(), expected_idx)
    np.testing.assert_allclose(sims.numpy(), expected_sims, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 7, 52])
def test_matches_brute_force_exclude_self(data, k):
    _, gallery = data
    sims, idx = topk_cosine(torch.from_numpy(gallery), gallery, k, exclude_self=True)
    expected_sims, expected_idx = brute_force(gallery, gallery, k, exclude_self=True)
    np.testing.assert_array_equal(idx.numpy(), expected_idx)
    np.testing.assert_allclose(sims.numpy(), expected_sims, rtol=0, atol=1e-12)
    assert not (idx == torch.arange(53)[:, None]).any()


@pytest.mark.parametrize("exclude_self", [False, True])
def test_many_chunks_equal_one_chunk(data, exclude_self):
    _, gallery = data
    x = torch.from_numpy(gallery).float()
    one = topk_cosine(x, x, 10, exclude_self=exclude_self, chunk_size=len(x))
    tiny_budget = topk_cosine(x, x, 10, exclude_self=exclude_self, max_chunk_bytes=3 * 4 * len(x))
    explicit = topk_cosine(x, x, 10, exclude_self=exclude_self, chunk_size=1)
    for many in (tiny_budget, explicit):
        torch.testing.assert_close(many[1], one[1], rtol=0, atol=0)
        torch.testing.assert_close(many[0], one[0], rtol=0, atol=1e-6)


def test_chunk_rows_follow_byte_budget(data, monkeypatch):
    queries, gallery = data
    x, g = torch.from_numpy(queries).float(), torch.from_numpy(gallery).float()
    blocks = []
    original = knn._chunk_topk

    def recording(sim, k):
        blocks.append(tuple(sim.shape))
        return original(sim, k)

    monkeypatch.setattr(knn, "_chunk_topk", recording)
    budget = 4 * 4 * len(g) + 5  # room for four float32 rows of similarities
    topk_cosine(x, g, 3, max_chunk_bytes=budget)
    assert blocks == [(4, 53)] * 9 + [(1, 53)]
    assert all(rows * cols * 4 <= budget for rows, cols in blocks)

    blocks.clear()
    topk_cosine(x, g, 3, max_chunk_bytes=1)  # below one row: still one row at a time
    assert blocks == [(1, 53)] * 37

    blocks.clear()
    topk_cosine(x, g, 3, chunk_size=16, max_chunk_bytes=1)  # chunk_size wins
    assert blocks == [(16, 53), (16, 53), (5, 53)]


def test_exact_ties_lower_index_first():
    # Axis-aligned vectors give exactly representable similarities, so the ties are exact.
    axis = torch.eye(4)
    gallery = torch.cat([axis[[1, 0, 0, 2, 0, 3, 0]], axis[[0]].repeat(40, 1)])  # 0-rows tie
    query = axis[[0]]
    tied = [i for i in range(len(gallery)) if gallery[i, 0] == 1]
    for k in (1, 3, 10, len(tied)):
        sims, idx = topk_cosine(query, gallery, k)
        assert idx[0].tolist() == tied[:k]
        assert torch.all(sims == 1)
    sims, idx = topk_cosine(query, gallery, len(tied) + 3)
    assert idx[0].tolist() == tied + [0, 3, 5]
    assert torch.all(sims[0, -3:] == 0)


def test_exact_ties_with_exclude_self():
    x = torch.eye(3)[[0, 0, 1, 0, 0]]
    _, idx = topk_cosine(x, x, 2, exclude_self=True)
    assert idx.tolist() == [[1, 3], [0, 3], [0, 1], [0, 1], [0, 1]]


def test_inputs_are_normalised():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(20, 5))
    scaled = g * rng.uniform(0.1, 50.0, size=(20, 1))
    a = topk_cosine(g, g, 4, exclude_self=True)
    b = topk_cosine(scaled, scaled, 4, exclude_self=True)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    torch.testing.assert_close(a[0], b[0])


def test_k_larger_than_gallery():
    x = torch.randn(6, 3)
    topk_cosine(x, x, 6)
    with pytest.raises(ValueError, match="k=7 is larger than the 6 gallery items"):
        topk_cosine(x, x, 7)
    topk_cosine(x, x, 5, exclude_self=True)
    with pytest.raises(ValueError, match=r"k=6 is larger than the 5 .*self excluded"):
        topk_cosine(x, x, 6, exclude_self=True)


@pytest.mark.parametrize(
    ("queries", "gallery", "kwargs", "message"),
    [
        (torch.randn(4), torch.randn(5, 3), {}, "queries must be 2-D"),
        (torch.randn(4, 3), torch.randn(2, 5, 3), {}, "gallery must be 2-D"),
        (torch.randn(4, 3), torch.randn(5, 2), {}, "same dimension"),
        (torch.randn(4, 3), torch.randn(5, 3), {"exclude_self": True}, "same set"),
        (torch.randn(4, 3), torch.randn(5, 3), {"k": 0}, "k must be a positive integer"),
        (torch.randn(4, 3), torch.randn(5, 3), {"k": 1.5}, "k must be a positive integer"),
        (torch.randn(4, 3), torch.randn(5, 3), {"chunk_size": 0}, "chunk_size"),
        (torch.randn(4, 3), torch.randn(5, 3), {"max_chunk_bytes": 0}, "max_chunk_bytes"),
    ],
)
def test_bad_inputs(queries, gallery, kwargs, message):
    kwargs = {"k": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        topk_cosine(queries, gallery, **kwargs)
