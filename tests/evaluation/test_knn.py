"""topk_cosine: brute-force agreement, chunking, tie order, torch vs faiss backends and input errors."""

import sys

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


def needs_faiss(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")


BACKENDS = ["torch", "faiss"]


@pytest.mark.parametrize(("backend", "chunk_function"), [("torch", "_chunk_topk"), ("faiss", "_faiss_chunk_topk")])
def test_chunk_rows_follow_byte_budget(data, monkeypatch, backend, chunk_function):
    needs_faiss(backend)
    queries, gallery = data
    x, g = torch.from_numpy(queries).float(), torch.from_numpy(gallery).float()
    blocks = []
    original = getattr(knn, chunk_function)

    def recording(*args):
        block = args[0] if backend == "torch" else args[1]
        blocks.append((len(block), len(g)))
        return original(*args)

    monkeypatch.setattr(knn, chunk_function, recording)
    budget = 4 * 4 * len(g) + 5  # room for four float32 rows of similarities
    topk_cosine(x, g, 3, max_chunk_bytes=budget, backend=backend)
    assert blocks == [(4, 53)] * 9 + [(1, 53)]
    assert all(rows * cols * 4 <= budget for rows, cols in blocks)

    blocks.clear()
    topk_cosine(x, g, 3, max_chunk_bytes=1, backend=backend)  # below one row: still one row at a time
    assert blocks == [(1, 53)] * 37

    blocks.clear()
    topk_cosine(x, g, 3, chunk_size=16, max_chunk_bytes=1, backend=backend)  # chunk_size wins
    assert blocks == [(16, 53), (16, 53), (5, 53)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_ties_lower_index_first(backend):
    needs_faiss(backend)
    # Axis-aligned vectors give exactly representable similarities, so the ties are exact.
    axis = torch.eye(4)
    gallery = torch.cat([axis[[1, 0, 0, 2, 0, 3, 0]], axis[[0]].repeat(40, 1)])  # 0-rows tie
    query = axis[[0]]
    tied = [i for i in range(len(gallery)) if gallery[i, 0] == 1]
    for k in (1, 3, 10, len(tied)):
        sims, idx = topk_cosine(query, gallery, k, backend=backend)
        assert idx[0].tolist() == tied[:k]
        assert torch.all(sims == 1)
    sims, idx = topk_cosine(query, gallery, len(tied) + 3, backend=backend)
    assert idx[0].tolist() == [*tied, 0, 3, 5]
    assert torch.all(sims[0, -3:] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_ties_with_exclude_self(backend):
    needs_faiss(backend)
    x = torch.eye(3)[[0, 0, 1, 0, 0]]
    _, idx = topk_cosine(x, x, 2, exclude_self=True, backend=backend)
    assert idx.tolist() == [[1, 3], [0, 3], [0, 1], [0, 1], [0, 1]]


def tie_heavy(n, seed, dim=8):
    """float32 rows with four entries of ±1 from a small pool, many repeated: every cosine is a multiple of 1/4, exact."""
    rng = np.random.default_rng(seed)
    pool = np.zeros((12, dim), dtype=np.float32)
    for row in pool:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    return torch.from_numpy(pool[rng.integers(0, len(pool), n)])


@pytest.mark.parametrize("chunk_size", [None, 1, 6, 19, 40])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_faiss_and_torch_agree_on_random_data(data, chunk_size, exclude_self):
    pytest.importorskip("faiss")
    queries, gallery = (torch.from_numpy(x).float() for x in data)
    if exclude_self:
        queries = gallery
    for k in (1, 5, 52):
        by_torch = topk_cosine(queries, gallery, k, exclude_self=exclude_self, chunk_size=chunk_size, backend="torch")
        by_faiss = topk_cosine(queries, gallery, k, exclude_self=exclude_self, chunk_size=chunk_size, backend="faiss")
        torch.testing.assert_close(by_faiss[1], by_torch[1], rtol=0, atol=0)
        torch.testing.assert_close(by_faiss[0], by_torch[0], rtol=0, atol=1e-6)  # float32 rounding of the dot products
        _, expected_idx = brute_force(queries.double().numpy(), gallery.double().numpy(), k, exclude_self)
        np.testing.assert_array_equal(by_faiss[1].numpy(), expected_idx)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64])
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("k", [1, 4, 23, 63])
def test_faiss_and_torch_identical_with_ties_and_duplicates(chunk_size, exclude_self, k):
    pytest.importorskip("faiss")
    gallery = tie_heavy(64, seed=k)
    queries = gallery if exclude_self else tie_heavy(30, seed=k + 100)
    by_torch = topk_cosine(queries, gallery, k, exclude_self=exclude_self, chunk_size=chunk_size, backend="torch")
    by_faiss = topk_cosine(queries, gallery, k, exclude_self=exclude_self, chunk_size=chunk_size, backend="faiss")
    expected_sims, expected_idx = brute_force(queries.double().numpy(), gallery.double().numpy(), k, exclude_self)
    for sims, idx in (by_torch, by_faiss):
        np.testing.assert_array_equal(idx.numpy(), expected_idx)
        np.testing.assert_array_equal(sims.numpy(), expected_sims.astype(np.float32))


def test_auto_uses_faiss_for_float32_on_the_cpu_only(data, monkeypatch):
    pytest.importorskip("faiss")
    calls = []
    original = knn._faiss_chunk_topk
    monkeypatch.setattr(knn, "_faiss_chunk_topk", lambda *args: calls.append(1) or original(*args))
    queries, gallery = data
    topk_cosine(queries, gallery, 3)  # float64
    assert not calls
    float32 = topk_cosine(queries.astype(np.float32), gallery.astype(np.float32), 3)
    assert calls
    torch.testing.assert_close(float32[1], topk_cosine(queries, gallery, 3)[1], rtol=0, atol=0)


def test_without_faiss_auto_falls_back_and_faiss_is_a_clear_error(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    x = torch.from_numpy(data[1]).float()
    _, idx = topk_cosine(x, x, 4, backend="auto")
    np.testing.assert_array_equal(idx.numpy(), brute_force(data[1], data[1], 4)[1])
    with pytest.raises(ImportError, match=r"backend='faiss' needs the faiss package: `pip install faiss-cpu`"):
        topk_cosine(x, x, 4, backend="faiss")


def test_faiss_backend_takes_float32_on_the_cpu():
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match=r"backend='faiss' takes float32 features on the CPU, got torch.float64"):
        topk_cosine(torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3), 2, backend="faiss")


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
        (torch.randn(4, 3), torch.randn(5, 3), {"backend": "gpu"}, "backend must be one of"),
        (torch.randn(0, 3), torch.randn(5, 3), {}, "queries is empty"),
        (torch.randn(4, 3), torch.full((5, 3), float("nan")), {}, "gallery contains NaN"),
        (np.array([["a", "b"]]), torch.randn(5, 2), {}, "queries must be a numeric array"),
    ],
)
def test_bad_inputs(queries, gallery, kwargs, message):
    kwargs = {"k": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        topk_cosine(queries, gallery, **kwargs)
