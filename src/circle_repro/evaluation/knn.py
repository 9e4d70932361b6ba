"""Exact cosine k-nearest-neighbour search with a bounded similarity matrix (torch or faiss)."""

from __future__ import annotations

import operator
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from circle_repro.evaluation.inputs import unit_rows

ArrayLike = torch.Tensor | np.ndarray
Backend = Literal["auto", "torch", "faiss"]
BACKENDS = ("auto", "torch", "faiss")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if as_int < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def _faiss() -> ModuleType | None:
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _chunk_topk(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k columns of each row of ``sim``, descending, exact ties in ascending column order."""
    spare = min(k + 1, sim.shape[1])  # one spare column shows whether the k-th place is tied
    values, indices = torch.topk(sim, spare, dim=1)
    # torch.topk picks arbitrarily among items tied with the k-th value; redo those rows stably.
    tied = (values[:, k] == values[:, k - 1]) if spare > k else torch.zeros(len(sim), dtype=torch.bool)
    values, indices = values[:, :k], indices[:, :k]
    rows = tied.nonzero().squeeze(1)
    if rows.numel():
        row_values, row_indices = torch.sort(sim[rows], dim=1, descending=True, stable=True)
        values[rows], indices[rows] = row_values[:, :k], row_indices[:, :k]
    return _sorted_by_value_then_index(values, indices)


def _sorted_by_value_then_index(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row reordered by descending value, equal values by ascending index."""
    indices, order = torch.sort(indices, dim=1)
    values, order2 = torch.sort(values.gather(1, order), dim=1, descending=True, stable=True)
    return values, indices.gather(1, order2)


def _faiss_search(
    index: Any, queries: np.ndarray, fetch: int, own: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``fetch`` best gallery items of each query (minus the query itself if ``own`` is given), in tie order.

    ``own`` holds the gallery index of each query when queries and gallery are the same set; the
    result then has ``fetch - 1`` columns: the query's own item, or else the last one, is dropped.
    """
    values, indices = index.search(queries, fetch)
    if own is not None:
        is_own = indices == own[:, None]
        keep = ~is_own
        keep[~is_own.any(axis=1), -1] = False
        values = values[keep].reshape(len(queries), fetch - 1)
        indices = indices[keep].reshape(len(queries), fetch - 1)
    return _sorted_by_value_then_index(torch.from_numpy(values), torch.from_numpy(indices))


def _faiss_chunk_topk(
    index: Any, queries: np.ndarray, k: int, n_gallery: int, own: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`_chunk_topk` for one chunk of queries, searched with a faiss index."""
    excluded = int(own is not None)
    fetch = min(n_gallery, k + 1 + excluded)  # one spare item shows whether the k-th place is tied
    values, indices = _faiss_search(index, queries, fetch, own)
    if fetch < n_gallery:
        # faiss picks arbitrarily among items tied with the k-th value; redo those rows in full.
        rows = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
        if rows.numel():
            rows_own = None if own is None else own[rows.numpy()]
            full_values, full_indices = _faiss_search(index, queries[rows.numpy()], n_gallery, rows_own)
            values[rows, :k], indices[rows, :k] = full_values[:, :k], full_indices[:, :k]
    return values[:, :k], indices[:, :k]


def topk_cosine(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    exclude_self: bool = False,
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 * 2**20,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k gallery items most cosine-similar to each query.

    Returns ``(similarities, indices)``, both ``(n_queries, k)``, sorted by descending
    similarity. Rows are L2-normalised inside. With ``exclude_self=True`` queries and
    gallery are the same set and query ``i`` never retrieves gallery item ``i``.

    Exact ties are broken by the lower gallery index first, so results are deterministic
    and independent of the chunking. Queries are processed ``chunk_size`` rows at a time
    (default: as many as keep one similarity block within ``max_chunk_bytes``, at least
    one row). With the torch backend the block plus a boolean mask of the same shape are
    alive at once; faiss works in its own fixed-size tiles and keeps (rows x k) results.
    Either holds a full (rows x n_gallery) block more only for rows with ties at the k-th
    place.

    ``backend``: ``"torch"`` (matrix product + ``torch.topk``), ``"faiss"`` (an exact flat
    inner-product index; float32 CPU input only, faiss needed), or ``"auto"``: faiss when it
    is installed and the input is float32 on the CPU, else torch. Both follow the same tie
    rule. Their similarities agree to float32 rounding (about 1e-7): they compute the dot
    products with different kernels, as does torch for different chunk shapes. So the
    indices are identical except where two similarities differ by less than that rounding;
    such near-equal neighbours may swap places.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    q = unit_rows(queries, "queries")
    g = unit_rows(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries and gallery must have the same dimension, got {q.shape[1]} and {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(device=q.device, dtype=dtype)
    n_queries, n_gallery = q.shape[0], g.shape[0]
    if exclude_self and n_queries != n_gallery:
        raise ValueError(
            "exclude_self=True needs queries and gallery to be the same set, "
            f"got {n_queries} queries and {n_gallery} gallery items"
        )
    k = _positive_int(k, "k")
    available = n_gallery - int(exclude_self)
    if k > available:
        detail = " (self excluded)" if exclude_self else ""
        raise ValueError(f"k={k} is larger than the {available} gallery items available{detail}")
    if chunk_size is None:
        budget = _positive_int(max_chunk_bytes, "max_chunk_bytes")
        rows = max(1, budget // (q.element_size() * n_gallery))
    else:
        rows = _positive_int(chunk_size, "chunk_size")

    faiss = _faiss() if backend != "torch" else None
    fits_faiss = dtype == torch.float32 and q.device.type == "cpu"
    if backend == "faiss":
        if faiss is None:
            raise ImportError(
                "backend='faiss' needs the faiss package: `pip install faiss-cpu`, "
                "or use backend='torch' (same results) or 'auto'"
            )
        if not fits_faiss:
            raise ValueError(
                f"backend='faiss' takes float32 features on the CPU, got {dtype} on {q.device}; "
                "convert them, or use backend='torch' or 'auto'"
            )
    use_faiss = faiss is not None and fits_faiss
    if use_faiss:
        index = faiss.IndexFlatIP(g.shape[1])
        index.add(np.ascontiguousarray(g.numpy()))
        q_array = np.ascontiguousarray(q.numpy())

    similarities = torch.empty(n_queries, k, dtype=dtype, device=q.device)
    indices = torch.empty(n_queries, k, dtype=torch.long, device=q.device)
    for start in range(0, n_queries, rows):
        stop = min(start + rows, n_queries)
        if use_faiss:
            own = np.arange(start, stop) if exclude_self else None
            block = _faiss_chunk_topk(index, q_array[start:stop], k, n_gallery, own)
        else:
            sim = q[start:stop] @ g.T
            if exclude_self:
                own = torch.arange(start, stop, device=q.device)
                sim[own - start, own] = -torch.inf
            block = _chunk_topk(sim, k)
        similarities[start:stop], indices[start:stop] = block
    return similarities, indices
