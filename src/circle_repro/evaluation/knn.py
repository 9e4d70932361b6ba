"""Exact cosine k-nearest-neighbour search with a bounded similarity matrix."""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray


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


def _normalised_rows(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n × dim), got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return F.normalize(t, dim=1)


def _chunk_topk(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k columns of each row of ``sim``, descending, exact ties in ascending column order."""
    values, indices = torch.topk(sim, k, dim=1)
    # torch.topk picks arbitrarily among items tied with the k-th value; redo those rows stably.
    kth = values[:, -1:]
    left_out = (sim == kth).sum(dim=1) > (values == kth).sum(dim=1)
    rows = left_out.nonzero().squeeze(1)
    if rows.numel():
        row_values, row_indices = torch.sort(sim[rows], dim=1, descending=True, stable=True)
        values[rows], indices[rows] = row_values[:, :k], row_indices[:, :k]
    indices, order = torch.sort(indices, dim=1)
    values, order2 = torch.sort(values.gather(1, order), dim=1, descending=True, stable=True)
    return values, indices.gather(1, order2)


def topk_cosine(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    exclude_self: bool = False,
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 * 2**20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k gallery items most cosine-similar to each query.

    Returns ``(similarities, indices)``, both ``(n_queries, k)``, sorted by descending
    similarity. Rows are L2-normalised inside. With ``exclude_self=True`` queries and
    gallery are the same set and query ``i`` never retrieves gallery item ``i``.

    Exact ties are broken by the lower gallery index first, so results are deterministic
    and independent of the chunking. Queries are processed ``chunk_size`` rows at a time
    (default: as many as keep one similarity block within ``max_chunk_bytes``, at least
    one row); the block plus a boolean mask of the same shape are alive at once, more only
    for rows with ties at the k-th place.
    """
    q = _normalised_rows(queries, "queries")
    g = _normalised_rows(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries and gallery must have the same dimension, got {q.shape[1]} and {g.shape[1]}"
        )
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

    similarities = torch.empty(n_queries, k, dtype=dtype, device=q.device)
    indices = torch.empty(n_queries, k, dtype=torch.long, device=q.device)
    for start in range(0, n_queries, rows):
        stop = min(start + rows, n_queries)
        sim = q[start:stop] @ g.T
        if exclude_self:
            own = torch.arange(start, stop, device=q.device)
            sim[own - start, own] = -torch.inf
        similarities[start:stop], indices[start:stop] = _chunk_topk(sim, k)
    return similarities, indices
