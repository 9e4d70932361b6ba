"""Shared helpers for the metric losses: cosine similarities, label masks, masked reductions,
the common forward pass of the pair-wise losses, and the empty-batch warning."""

from __future__ import annotations

import math
import numbers
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from circle_repro.losses.distributed import distributed_world_size, gather_batch, scale_gradient


class EmptyBatchWarning(UserWarning):
    """A pair-wise loss saw a batch in which no anchor has both a positive and a negative."""


@dataclass(frozen=True, eq=False)
class AnchorPairs:
    """Similarities of every anchor to the reference set, with its label masks.

    ``same`` (N, M) is label equality, computed at the self pairs too; ``self_cols`` (N,)
    holds the column of each anchor's self pair, or is None when the reference set does not
    contain the anchors. A self pair is neither a positive nor a negative (``pos``/``neg``).
    ``valid`` marks anchors with at least one positive and one negative; the pair losses
    average over those only.
    """

    sim: Tensor
    same: Tensor
    self_cols: Tensor | None
    valid: Tensor

    @cached_property
    def pos(self) -> Tensor:
        """Positives (N, M): same label, self pair excluded."""
        pos = self.same.clone()
        if self.self_cols is not None:
            pos[torch.arange(pos.shape[0], device=pos.device), self.self_cols] = False
        return pos

    @cached_property
    def neg(self) -> Tensor:
        """Negatives (N, M): different label, self pair excluded."""
        neg = ~self.same
        if self.self_cols is not None:
            neg[torch.arange(neg.shape[0], device=neg.device), self.self_cols] = False
        return neg


def check_real(name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as a float; ValueError naming ``name`` if not finite (or not > 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value``; ValueError naming ``name`` unless it is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


_NORM_EPS = 1e-12  # as F.normalize


def normalize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Unit rows x̂ = x / max(‖x‖, ε), as ``F.normalize``, and the clamped norms (N, 1)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
    return x / norm, norm


def gram_grad_matrix(grad_sym: Tensor, sim: Tensor, norm: Tensor) -> Tensor:
    """For sim = x̂ x̂ᵀ (x̂, norm from :func:`normalize_rows`) and the symmetrised gradient
    G + Gᵀ w.r.t. ``sim`` (``grad_sym``, overwritten and returned): the matrix A with
    gradient A x̂ / ‖x‖ w.r.t. x.

    With g = (G + Gᵀ) x̂ the normalisation's Jacobian gives (g − x̂⟨x̂, g⟩) / ‖x‖, and
    ⟨x̂ᵢ, gᵢ⟩ = Σⱼ (G + Gᵀ)ᵢⱼ sᵢⱼ = rᵢ, so A = G + Gᵀ − diag(r). Rows with ‖x‖ ≤ ε get
    g / ε (rᵢ = 0), as ``F.normalize``.
    """
    radial = torch.linalg.vecdot(grad_sym, sim)
    grad_sym.diagonal().sub_(torch.where(norm[:, 0] > _NORM_EPS, radial, 0.0))
    return grad_sym


def similarity_dtype(*tensors: Tensor) -> torch.dtype:
    """Float64 if any of ``tensors`` is float64, else float32 (fp16/bf16 are cast up)."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def autocast_off(device: torch.device) -> AbstractContextManager:
    """A context with autocast disabled on ``device``'s type (a no-op when it is not on)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


class _CosineGram(torch.autograd.Function):
    """Cosines x̂ x̂ᵀ of the rows of ``x`` (:func:`normalize_rows`).

    The backward uses the symmetry of the product: one matmul, :func:`gram_grad_matrix`.
    Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        unit, norm = normalize_rows(x)
        sim = unit @ unit.T
        ctx.save_for_backward(sim, unit, norm)
        return sim

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        sim, unit, norm = ctx.saved_tensors
        return (gram_grad_matrix(grad + grad.T, sim, norm) @ unit).div_(norm)


def _normalize_backward(grad_unit: Tensor, unit: Tensor, norm: Tensor) -> Tensor:
    """Gradient w.r.t. x of x̂ = x / max(‖x‖, ε) (:func:`normalize_rows`), given the gradient
    w.r.t. x̂ (``grad_unit``, overwritten and returned): (g − x̂⟨x̂, g⟩) / ‖x‖, and g / ε on
    rows with ‖x‖ ≤ ε, as ``F.normalize``."""
    radial = torch.linalg.vecdot(grad_unit, unit)
    radial = torch.where(norm[:, 0] > _NORM_EPS, radial, 0.0)
    return grad_unit.addcmul_(unit, radial[:, None], value=-1).div_(norm)


class _Cosine(torch.autograd.Function):
    """Cosines x̂ ŷᵀ between the rows of ``x`` and ``y`` (:func:`normalize_rows`).

    The backward takes three passes over each input for its normalisation, where the
    autograd graph of ``F.normalize`` takes about eight: with the class weights as ``y``,
    that cost is of the order of the matmuls. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        unit_x, norm_x = normalize_rows(x)
        unit_y, norm_y = normalize_rows(y)
        ctx.save_for_backward(unit_x, norm_x, unit_y, norm_y)
        return unit_x @ unit_y.T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        unit_x, norm_x, unit_y, norm_y = ctx.saved_tensors
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = _normalize_backward(grad @ unit_y, unit_x, norm_x)
        if ctx.needs_input_grad[1]:
            grad_y = _normalize_backward(grad.T @ unit_x, unit_y, norm_y)
        return grad_x, grad_y


def cosine_similarity_matrix(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarities between the rows of ``x`` and ``y``.

    Computed in :func:`similarity_dtype`, with autocast disabled so that large scale
    factors never overflow. When ``y is x`` the rows are normalised once and the fused
    :class:`_CosineGram` is used; otherwise :class:`_Cosine`.
    """
    dtype = similarity_dtype(x, y)
    with autocast_off(x.device):
        if y is x:
            return _CosineGram.apply(x.to(dtype))
        return _Cosine.apply(x.to(dtype), y.to(dtype))


def check_batch(embeddings: Tensor, labels: Tensor, what: str = "embeddings") -> None:
    """ValueError unless ``embeddings`` is (N, D) and ``labels`` is (N,)."""
    if embeddings.dim() != 2:
        raise ValueError(f"{what} must have shape (N, D), got {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels for {what} must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")


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
    n_same = same.sum(dim=1)
    n_other = ref_labels.shape[0] - n_same
    self_cols = None
    if exclude_self:
        self_cols = torch.arange(labels.shape[0], device=labels.device)
        # The self pair is neither a positive nor a negative.
        if ref_labels is labels:  # it carries the anchor's own label
            n_same = n_same - 1
        else:
            self_same = same[self_cols, self_cols].long()
            n_same = n_same - self_same
            n_other = n_other - (1 - self_same)
    valid = (n_same > 0) & (n_other > 0)
    sim = cosine_similarity_matrix(embeddings, ref_embeddings)
    return AnchorPairs(sim, same, self_cols, valid)


def masked_logsumexp(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """log Σ exp(x) over the entries where ``mask`` is True; −inf for rows with none."""
    return torch.logsumexp(x.masked_fill(~mask, -math.inf), dim=dim)


def mean_over_valid(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_anchor`` over ``valid`` anchors; 0 with a gradient graph if none."""
    total = torch.where(valid, per_anchor, 0.0).sum()
    return total / valid.sum().clamp_min(1)


def warn_if_no_valid_anchor(loss: nn.Module, valid: Tensor) -> None:
    """Warn (once per ``loss`` instance, not per step) when no anchor is ``valid``.

    Reads ``valid.any()``, a device sync on GPU, until the instance has warned once.
    """
    if getattr(loss, "_warned_no_valid_anchor", False):
        return
    if not bool(valid.any()):
        loss._warned_no_valid_anchor = True
        warnings.warn(
            f"{type(loss).__name__}: no anchor in the batch has both a positive and a "
            "negative, so the loss is 0 (zero gradient); check the P×K sampler. "
            "Warned once per loss instance.",
            EmptyBatchWarning,
            stacklevel=5,  # warn_if… ← forward ← Module._call_impl ← __call__ ← caller
        )


class PairwiseLoss(nn.Module):
    """Common forward pass of the pair-wise losses (every batch sample is an anchor).

    Subclasses implement :meth:`per_anchor_loss` (and may override :meth:`batch_loss` with
    a fused equivalent). The loss is the mean of it over anchors having at least one
    positive and one negative; 0 (attached to the graph) when there is none, with one
    :class:`EmptyBatchWarning` per instance. With ``all_gather=True`` and an
    initialised process group of world size > 1, the batch of all ranks is the anchor and
    reference set (see :mod:`circle_repro.losses.distributed` for the exact semantics).
    Similarities and everything after them run in float32 (float64 for float64 inputs) with
    autocast off.
    """

    takes_unit_embeddings: bool = True
    """Whether the model hands this loss unit-norm embeddings (it normalises inside in any case)."""
    arguments: ClassVar[dict[str, dict[str, Any]]] = {
        "all_gather": {
            "type": "boolean",
            "description": "under DDP, use the batch of all ranks (exact single-process loss)",
        },
    }

    def __init__(self, all_gather: bool = False) -> None:
        super().__init__()
        self.all_gather = check_bool("all_gather", all_gather)
        self._warned_no_valid_anchor = False

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """Loss of every anchor (N,); rows that are not ``pairs.valid`` may hold anything
        finite (they are masked out of the mean)."""
        raise NotImplementedError

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_includes_query: bool = False,
    ) -> Tensor:
        """Scalar loss of ``embeddings`` (N, D) against themselves or a reference set.

        Without a reference set, self pairs are excluded. With one, every reference is a
        candidate pair unless ``ref_includes_query`` is set, meaning ``ref_embeddings[i]``
        is anchor ``i`` for ``i < N``, whose self pair is then excluded.
        """
        world_size = distributed_world_size() if self.all_gather else 1
        if world_size > 1:
            if ref_embeddings is not None or ref_labels is not None:
                raise ValueError(
                    "all_gather=True uses the batch gathered from all ranks as the "
                    "reference set; ref_embeddings/ref_labels cannot be given"
                )
            check_batch(embeddings, labels)
            embeddings, labels, _, _ = gather_batch(embeddings, labels)
        loss, valid = self.batch_loss(embeddings, labels, ref_embeddings, ref_labels, ref_includes_query)
        warn_if_no_valid_anchor(self, valid)
        if world_size > 1:
            loss = scale_gradient(loss, world_size)
        return loss

    def batch_loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None,
        ref_labels: Tensor | None,
        ref_includes_query: bool,
    ) -> tuple[Tensor, Tensor]:
        """Mean of :meth:`per_anchor_loss` over the valid anchors, and the valid mask (N,).

        Arguments as :meth:`forward`, after any all-gather; subclasses may override it
        with a fused computation of the same value.
        """
        pairs = anchor_pairs(embeddings, labels, ref_embeddings, ref_labels, ref_includes_query)
        with autocast_off(pairs.sim.device):
            per_anchor = self.per_anchor_loss(pairs)
        return mean_over_valid(per_anchor, pairs.valid), pairs.valid
