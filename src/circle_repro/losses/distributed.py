"""Cross-process gathering for the pair-wise losses (``all_gather=True``).

Semantics (shared by every pair-wise loss: Circle, triplet, Multi-Similarity, lifted):

* Every rank all-gathers the embeddings and labels of all ranks, in rank order, with
  :func:`torch.distributed.all_gather` into **detached** buffers, and puts its own local
  tensor, with its graph, back at its own position. The gathered batch of W·B samples is
  then used as both the anchor set and the reference set, so every anchor's self pair is
  excluded at its global position (the diagonal of the global similarity matrix).
* Consequently the loss value on every rank is exactly the loss one process would compute
  on the concatenated batch, and the gradient that reaches the local embeddings is exactly
  the local slice of that single-process gradient: the local embeddings take part in every
  global anchor's row, as anchors and as references, and the other ranks' embeddings are
  constants here (their own rank differentiates them). Summing the local parameter
  gradients over ranks therefore gives the single-process parameter gradient.

  Computing only the local anchors' rows against the gathered references (B × W·B) would
  not be exact with detached buffers: the gradient that a remote anchor's row sends to a
  local reference would be lost, and for row-normalised losses (log-sum-exp per anchor,
  hardest-pair mining) it is not recoverable from the local rows. The price of exactness
  is a (W·B)² similarity matrix on every rank instead of B × W·B.
* DDP *averages* parameter gradients over the W ranks. So that the DDP-averaged gradient
  equals the single-process gradient, the returned loss carries a gradient scale of W
  (:func:`scale_gradient`): its value is unchanged (the single-process loss), its gradient
  is W times the single-process gradient on each rank, and DDP's division by W undoes it.
  Without DDP, reduce parameter gradients with an all-reduce **mean** (or a sum divided by
  W) to get the same result.
* All ranks must pass the same batch size (and embedding dimension): a ValueError naming
  every rank's size is raised on all ranks otherwise (checked with one small all-gather
  before the real one, so mismatched ranks fail instead of hanging).
* Without an initialised process group, or with world size 1, nothing is gathered.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor


class GatheredBatch(NamedTuple):
    """The batch of all ranks, in rank order, with this rank's slice attached to the graph."""

    embeddings: Tensor
    labels: Tensor
    rank: int
    world_size: int


def distributed_world_size() -> int:
    """World size of the default process group; 1 when torch.distributed is not in use."""
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def _all_gather_detached(tensor: Tensor, world_size: int) -> list[Tensor]:
    local = tensor.detach().contiguous()
    buffers = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(buffers, local)
    return buffers


def check_same_batch_shape(embeddings: Tensor, labels: Tensor, world_size: int, what: str = "all_gather=True") -> None:
    """ValueError on every rank unless all ranks pass the same (B, D) and B labels.

    One small all-gather of the shapes, so that mismatched ranks fail instead of hanging in
    the real gather.
    """
    shape = torch.tensor(
        [embeddings.shape[0], embeddings.shape[1], labels.shape[0]],
        dtype=torch.long,
        device=embeddings.device,
    )
    shapes = [tuple(s.tolist()) for s in _all_gather_detached(shape, world_size)]
    if any(s != shapes[0] for s in shapes):
        sizes = ", ".join(f"rank {r}: B={s[0]}, D={s[1]}" for r, s in enumerate(shapes))
        raise ValueError(
            f"{what} needs the same batch size and embedding dimension on every "
            f"rank (pad or drop the last batch); got {sizes}"
        )


def gather_labels(labels: Tensor) -> Tensor:
    """``labels`` of all ranks concatenated in rank order (no gradient); the input itself
    without a process group. The ranks' sizes must agree (see :func:`check_same_batch_shape`)."""
    world_size = distributed_world_size()
    if world_size == 1:
        return labels
    return torch.cat(_all_gather_detached(labels, world_size))


class _AllGatherRows(torch.autograd.Function):
    """All-gather of equal-sized row blocks; the backward sums the gathered gradient over
    ranks and returns this rank's block of it, times ``gradient_scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, gradient_scale: float) -> Tensor:  # type: ignore[override]
        world_size, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows, ctx.gradient_scale = rank, x.shape[0], gradient_scale
        return torch.cat(_all_gather_detached(x, world_size))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's contribution to every gathered row
        local = grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]
        return local * ctx.gradient_scale, None


def all_gather_rows(x: Tensor, gradient_scale: float = 1.0) -> Tensor:
    """``x`` (B, ...) of all ranks concatenated in rank order (W·B, ...), differentiable.

    Unlike :func:`gather_batch`, the gradient that reaches ``x`` is the gradient of the
    gathered tensor **summed over ranks** (an all-reduce in back-prop), restricted to this
    rank's rows and multiplied by ``gradient_scale``. That is what model-parallel heads need:
    each rank computes only part of the loss (its class shard) from all rows, so every rank
    sends gradient to every row. All ranks must pass the same shape, and every rank must run
    the backward (it is a collective). Without a process group, ``x`` is returned as is.
    """
    if distributed_world_size() == 1:
        return x
    return _AllGatherRows.apply(x, gradient_scale)


def gather_batch(embeddings: Tensor, labels: Tensor) -> GatheredBatch:
    """All-gather ``embeddings`` (B, D) and ``labels`` (B,) over the default process group.

    The result is the concatenation over ranks in rank order; this rank's rows are the
    original ``embeddings`` tensor (gradients flow into it), the other rows are detached
    copies. ValueError on every rank if the ranks' (B, D) differ.
    """
    world_size = distributed_world_size()
    if world_size == 1:
        return GatheredBatch(embeddings, labels, 0, 1)
    rank = dist.get_rank()
    check_same_batch_shape(embeddings, labels, world_size)
    emb_buffers = _all_gather_detached(embeddings, world_size)
    label_buffers = _all_gather_detached(labels, world_size)
    emb_buffers[rank] = embeddings
    label_buffers[rank] = labels
    return GatheredBatch(torch.cat(emb_buffers), torch.cat(label_buffers), rank, world_size)


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` unchanged in value, with its gradient multiplied by ``factor`` in back-prop."""
    return _ScaleGradient.apply(x, factor)
