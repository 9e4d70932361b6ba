"""Shared helpers for the metric losses: cosine similarities, label masks, masked reductions."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class AnchorPairs(NamedTuple):
    """Similarities of every anchor to the reference set, with its positive/negative masks.

    ``valid`` marks anchors with at least one positive and one negative; the pair losses
    average over those anchors only.
    """

    sim: Tensor
    pos: Tensor
    neg: Tensor
    valid: Tensor


def check_real(name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as a float; ValueError naming ``name`` if not finite (or not > 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def cosine_similarity_matrix(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarities between the rows of ``x`` and ``y``.

    Computed in float64 if either input is float64, else in float32 (fp16/bf16 are cast up),
    with autocast disabled so that large scale factors never overflow.
    """
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return F.normalize(x.to(dtype), dim=1) @ F.normalize(y.to(dtype), dim=1).T


def check_batch(embeddings: Tensor, labels: Tensor, what: str = "embeddings") -> None:
    """ValueError unless ``embeddings`` is (N, D) and ``labels`` is (N,)."""
    if embeddings.dim() != 2:
        raise ValueError(f"{what} must have shape (N, D), got {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"labels for {what} must have shape ({embeddings.shape[0]},), "
            f"got {tuple(labels.shape)}"
        )


def anchor_pairs(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    ref_includes_query: bool = False,
) -> AnchorPairs:
    """Cosine similarities and label masks of each anchor against the reference set.

    Without a reference set the batch is its own reference and self pairs are excluded.
    With one, no pair counts as a self pair unless ``ref_includes_query`` says that
    ``ref_embeddings[i]`` is anchor ``i`` for ``i < len(embeddings)``.
    """
    check_batch(embeddings, labels)
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError("ref_embeddings and ref_labels must be given together")
    if ref_embeddings is None or ref_labels is None:
        ref_embeddings, ref_labels, exclude_self = embeddings, labels, True
    else:
        check_batch(ref_embeddings, ref_labels, "ref_embeddings")
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError("embeddings and ref_embeddings must have the same dimension")
        if ref_includes_query and ref_embeddings.shape[0] < embeddings.shape[0]:
            raise ValueError("ref_includes_query needs at least as many refs as queries")
        exclude_self = ref_includes_query
    same = labels[:, None] == ref_labels[None, :]
    pos = same.clone()
    if exclude_self:
        idx = torch.arange(labels.shape[0], device=labels.device)
        pos[idx, idx] = False
    neg = ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    return AnchorPairs(cosine_similarity_matrix(embeddings, ref_embeddings), pos, neg, valid)


def masked_logsumexp(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """log Σ exp(x) over the entries where ``mask`` is True; −inf for rows with none."""
    return torch.logsumexp(x.masked_fill(~mask, -math.inf), dim=dim)


def mean_over_valid(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_anchor`` over ``valid`` anchors; 0 with a gradient graph if none."""
    total = torch.where(valid, per_anchor, torch.zeros_like(per_anchor)).sum()
    return total / valid.sum().clamp_min(1)
