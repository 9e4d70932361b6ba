"""Model-parallel class-level heads: each rank holds the proxies of one class shard (PartialFC).

A face-recognition head has one proxy per training identity (85,742 × 512 for MS1MV2), too
large to replicate and to average over ranks. As in insightface's PartialFC (An et al., 2021),
:class:`ShardedClassifier` wraps any class-level head (:class:`ProxyClassifier`: softmax,
normface, am_softmax, arcface, circle_classifier) so that

* the classes are split into contiguous ranges, one per rank (:func:`shard_range`); each rank
  holds only the proxy rows (weight, and the bias of ``softmax``) of its range;
* the embeddings and labels of all ranks are all-gathered; every rank computes the head's
  logits of the whole gathered batch against its own classes (the margin goes to the target
  column on the rank that holds the target class; other ranks see :data:`NO_TARGET`);
* the softmax cross-entropy over all classes is computed exactly with an all-reduced row
  maximum, sum of exponentials and target logit (:class:`_ShardedCrossEntropy`); its
  backward needs no communication;
* the gradient reaching the gathered embeddings is all-reduced (summed) over ranks, and this
  rank's rows of it, times the world size W, flow back into the local embeddings
  (:func:`~circle_repro.losses.distributed.all_gather_rows`). DDP's average over ranks of the
  backbone gradient is then exactly the single-process gradient on the concatenated batch.
  The proxies get exactly their single-process gradient rows and must **not** be averaged by
  DDP: :meth:`ShardedClassifier.rank_local_state_names` lists them, and the engine tells DDP
  to ignore them.

Optional negative-class sampling (``sample_rate`` < 1): per training step, every class of the
gathered batch is kept, plus randomly drawn other classes up to ``round(sample_rate · C)``
classes in all. The draw depends only on (``seed``, step): it is made over all C classes with
the same generator on every rank, and each rank keeps the drawn classes of its shard, so the
selection (and the loss) does not depend on the number of ranks. The step counter is a buffer
(``sampling_step``), so a resumed run continues the sequence.

Without a process group (or with world size 1) and ``sample_rate=1`` the head is the plain head:
same initialisation (the full matrix is drawn on every rank from the same RNG state and each
rank keeps its rows) and the very same loss computation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from circle_repro.losses.distributed import (
    all_gather_rows,
    check_same_batch_shape,
    distributed_world_size,
    gather_labels,
)
from circle_repro.losses.pair_utils import autocast_off, check_batch
from circle_repro.losses.proxy import NO_TARGET, ProxyClassifier
from circle_repro.losses.registry import LOSSES, construct


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """The classes [start, end) of ``rank``'s shard: contiguous, sizes differ by at most 1
    (the first ``num_classes % world_size`` ranks hold one more)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _rank() -> int:
    return dist.get_rank() if distributed_world_size() > 1 else 0


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of logits whose columns are split over ranks.

    ``logits`` (N, C_r) are this rank's columns; ``target`` (N,) the target column within
    them, or −1 where the target column lives on another rank (every row's target is on
    exactly one rank). The row maximum, the sum of exponentials and the target logit are
    all-reduced, so every rank returns the same loss, which is the loss over all columns. The
    gradient with respect to the local columns is (softmax − onehot) / N; no communication.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        distributed = distributed_world_size() > 1
        n_rows = logits.shape[0]
        row_max = logits.detach().amax(dim=1) if logits.shape[1] else logits.new_full((n_rows,), -math.inf)
        if distributed:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
        exp = (logits.detach() - row_max[:, None]).exp_()
        sum_exp = exp.sum(dim=1)
        has_target = target >= 0
        index = target.clamp_min(0)[:, None]
        target_logit = (
            torch.where(has_target, logits.detach().gather(1, index)[:, 0], 0.0)
            if logits.shape[1]
            else logits.new_zeros(n_rows)
        )
        if distributed:
            dist.all_reduce(sum_exp)
            dist.all_reduce(target_logit)
        ctx.save_for_backward(exp, sum_exp, target)
        return (sum_exp.log() + row_max - target_logit).mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        exp, sum_exp, target = ctx.saved_tensors
        n_rows = exp.shape[0]
        grad_logits = exp.div_(sum_exp[:, None])
        if grad_logits.shape[1]:
            has_target = target >= 0
            index = target.clamp_min(0)[:, None]
            grad_logits.scatter_add_(1, index, -has_target.to(grad_logits.dtype)[:, None])
        return grad_logits.mul_(grad / max(n_rows, 1)), None


def sharded_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean softmax cross-entropy over columns split across ranks (see :class:`_ShardedCrossEntropy`).

    Without a process group it is ``F.cross_entropy(logits, target)`` up to rounding.
    """
    with autocast_off(logits.device):
        return _ShardedCrossEntropy.apply(logits, target.long())


class _LogitsView(nn.Module):
    """``head.logits`` as a forward, so that ``functional_call`` can run it with other proxies."""

    def __init__(self, head: ProxyClassifier) -> None:
        super().__init__()
        self.head = head

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.head.logits(embeddings, labels)


class ShardedClassifier(nn.Module):
    """A class-level head whose proxies are split over the ranks (module docstring).

    ``head`` names a registered :class:`ProxyClassifier`; ``head_kwargs`` are its own
    arguments (m, gamma, ...). ``sample_rate`` in (0, 1] is the fraction of classes each
    step's softmax runs over (1: all). ``seed`` seeds that sampling. Called as
    ``(embeddings, labels) -> scalar`` like the plain head; every rank returns the loss of
    the gathered batch (the same value on every rank).
    """

    sampling_step: Tensor

    def __init__(
        self,
        head: str,
        embedding_dim: int,
        num_classes: int,
        sample_rate: float = 1.0,
        seed: int = 0,
        **head_kwargs: Any,
    ) -> None:
        super().__init__()
        head_cls = LOSSES.get(head)
        if not (isinstance(head_cls, type) and issubclass(head_cls, ProxyClassifier)):
            allowed = sorted(n for n, c in LOSSES.items() if isinstance(c, type) and issubclass(c, ProxyClassifier))
            raise ValueError(f"a sharded head wraps a class-level loss; got {head!r}, allowed: {allowed}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        # The full head, drawn exactly as the plain head would be (same RNG consumption) ...
        self.head = construct(head, {"embedding_dim": embedding_dim, "num_classes": num_classes, **head_kwargs})
        self.head_type = head
        self.total_classes = num_classes
        self.sample_rate = float(sample_rate)
        self.seed = seed
        self.world_size = distributed_world_size()
        self.rank = _rank()
        self.class_start, self.class_end = shard_range(num_classes, self.rank, self.world_size)
        # ... then cut down to this rank's rows: every direct parameter of the head indexed by class.
        self.sharded_names = tuple(
            name for name, p in self.head.named_parameters(recurse=False) if p.dim() >= 1 and p.shape[0] == num_classes
        )
        if self.world_size > 1:
            for name in self.sharded_names:
                full = getattr(self.head, name)
                setattr(self.head, name, nn.Parameter(full.detach()[self.class_start : self.class_end].clone()))
        self.register_buffer("sampling_step", torch.zeros((), dtype=torch.long))

    @property
    def embedding_dim(self) -> int:
        return self.head.embedding_dim

    @property
    def takes_unit_embeddings(self) -> bool:
        """The wrapped head's declaration (raw features for Softmax, unit vectors otherwise)."""
        return self.head.takes_unit_embeddings

    @property
    def num_classes(self) -> int:
        """All classes C (the shards together)."""
        return self.total_classes

    @property
    def local_classes(self) -> int:
        """Classes held by this rank."""
        return self.class_end - self.class_start

    def rank_local_state_names(self) -> list[str]:
        """Names (relative to this module) of the state that differs between ranks: the proxy
        shards. DDP must neither broadcast nor average them."""
        return [f"head.{name}" for name in self.sharded_names]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.total_classes}, shard=[{self.class_start}, {self.class_end}), "
            f"world_size={self.world_size}, sample_rate={self.sample_rate}, seed={self.seed}"
        )

    # -- sampling --------------------------------------------------------------------------

    def sampled_classes(self, labels: Tensor, step: int) -> Tensor:
        """The classes (global ids, sorted) of one step's softmax: every class in ``labels``
        plus random others, ``max(round(sample_rate·C), #classes in labels)`` in all.
        Depends only on (seed, step, labels), not on the rank or world size."""
        n_keep = max(1, round(self.sample_rate * self.total_classes))
        state = np.random.SeedSequence([self.seed, step]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        scores = torch.rand(self.total_classes, generator=generator)
        scores[labels.detach().cpu().long()] = 2.0  # positives first
        n_keep = max(n_keep, int((scores == 2.0).sum()))
        return scores.topk(n_keep).indices.sort().values.to(labels.device)

    # -- forward ---------------------------------------------------------------------------

    def _check_labels(self, labels: Tensor) -> None:
        if labels.numel() and bool(((labels < 0) | (labels >= self.total_classes)).any()):
            bad = labels[(labels < 0) | (labels >= self.total_classes)][:5].tolist()
            raise ValueError(f"labels must be class indices in [0, {self.total_classes}), got e.g. {bad}")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of the head's logits over all classes, on the gathered batch."""
        sampling = self.training and self.sample_rate < 1
        world_size = distributed_world_size()
        if world_size != self.world_size:
            raise RuntimeError(
                f"ShardedClassifier was built for world size {self.world_size} but runs with {world_size}; "
                "build the model after the process group is initialised"
            )
        if world_size == 1 and not sampling:
            return self.head(embeddings, labels)  # exactly the plain head
        check_batch(embeddings, labels)
        if world_size > 1:
            check_same_batch_shape(embeddings, labels, world_size, what="a sharded head")
            # Gradient ×W: DDP's average over ranks then gives the single-process gradient.
            embeddings = all_gather_rows(embeddings, gradient_scale=float(world_size))
            labels = gather_labels(labels)
        labels = labels.long()
        self._check_labels(labels)
        params: dict[str, Tensor] = {}
        local_ids = None  # positions of the used classes within the shard; None: all
        if sampling:
            step = int(self.sampling_step)
            self.sampling_step.add_(1)
            chosen = self.sampled_classes(labels, step)
            chosen = chosen[(chosen >= self.class_start) & (chosen < self.class_end)]
            local_ids = chosen - self.class_start
            params = {name: getattr(self.head, name)[local_ids] for name in self.sharded_names}
        in_shard = (labels >= self.class_start) & (labels < self.class_end)
        position = labels - self.class_start
        if local_ids is not None:
            lookup = torch.full((self.local_classes,), NO_TARGET, dtype=torch.long, device=labels.device)
            lookup[local_ids] = torch.arange(len(local_ids), device=labels.device)
            position = lookup[position.clamp(0, max(self.local_classes - 1, 0))] if self.local_classes else position
        target = torch.where(in_shard, position, NO_TARGET)
        if params:  # the head's own logits, with its proxies replaced by the sampled rows
            view = _LogitsView(self.head)
            logits = functional_call(view, {f"head.{k}": v for k, v in params.items()}, (embeddings, target))
        else:
            logits = self.head.logits(embeddings, target)
        if world_size == 1:
            return F.cross_entropy(logits, target)  # every target is a kept class here
        return sharded_cross_entropy(logits, target)

    # -- full (unsharded) state: for checkpoints and exported weights ----------------------

    def gather_rows(self, local: Tensor) -> Tensor:
        """The full (C, ...) tensor from every rank's shard rows (C_r, ...); a collective:
        every rank must call it, and every rank gets the result. The input itself without a
        process group."""
        if self.world_size == 1:
            return local
        sizes = [shard_range(self.total_classes, r, self.world_size) for r in range(self.world_size)]
        longest = max(end - start for start, end in sizes)
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[: local.shape[0]] = local.detach()
        buffers = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(buffers, padded.contiguous())
        return torch.cat([buf[: end - start] for buf, (start, end) in zip(buffers, sizes, strict=True)])

    def local_rows(self, full: Tensor) -> Tensor:
        """This rank's rows of a full (C, ...) tensor (a copy)."""
        return full[self.class_start : self.class_end].clone()

    def is_full(self, name: str, tensor: Tensor) -> bool:
        """Whether ``tensor`` is the full (all classes) version of sharded parameter ``name``."""
        local = getattr(self.head, name)
        return tuple(tensor.shape) == (self.total_classes, *local.shape[1:])


def full_state_names(module: nn.Module) -> dict[str, tuple[ShardedClassifier, str]]:
    """Every sharded parameter inside ``module``: state-dict key -> (sharded head, name in its head)."""
    found = {}
    for prefix, sub in module.named_modules():
        if isinstance(sub, ShardedClassifier):
            for name in sub.sharded_names:
                key = f"{prefix}.head.{name}" if prefix else f"head.{name}"
                found[key] = (sub, name)
    return found


def build_sharded(cfg: Mapping[str, Any]) -> ShardedClassifier:
    """A :class:`ShardedClassifier` from a loss config with ``sharded: true`` (the registry's path)."""
    kwargs = dict(cfg)
    kwargs.pop("sharded", None)
    head = kwargs.pop("type")
    return ShardedClassifier(head, **kwargs)
