"""Base class of the class-level ("proxy") heads: one weight vector per class, then CE.

Sun et al. (CVPR 2020) §2: with class-level labels the similarities are taken between the
embedding x and the classifier weights w_j, so K=1 (target proxy) and L=N−1 (non-target
proxies); Softmax, NormFace, AM-Softmax, ArcFace and class-level Circle loss then all read
as softmax cross-entropy over some modified logits (paper §2, the unified loss, and §3, Eq. 6).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from circle_repro.losses.pair_utils import check_batch, cosine_similarity_matrix
from circle_repro.losses.registry import LOSSES


def _check_dim(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ProxyClassifier(nn.Module, abc.ABC):
    """A class-level loss head: ``weight`` (num_classes, embedding_dim) and CE over ``logits``.

    Subclasses implement :meth:`logits`; :meth:`forward` is the mean softmax cross-entropy
    of those logits. The weight is initialised Xavier-normal.
    """

    weight: nn.Parameter
    takes_unit_embeddings: bool = True
    """Whether the model hands this head unit-norm embeddings (False: the backbone's raw features)."""
    arguments: ClassVar[dict[str, dict[str, Any]]] = {
        "sharded": {
            "type": "boolean",
            "description": "model-parallel proxies: each rank holds a class shard (PartialFC)",
        },
        "sample_rate": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "fraction of classes in each step's softmax (needs sharded: true)",
        },
    }
    dependent_required: ClassVar[dict[str, list[str]]] = {"sample_rate": ["sharded"]}

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        _check_dim("embedding_dim", embedding_dim)
        _check_dim("num_classes", num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)

    @property
    def embedding_dim(self) -> int:
        """Embedding dimension D (the weight's second axis)."""
        return self.weight.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of classes C (the weight's first axis)."""
        return self.weight.shape[0]

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """ValueError unless ``embeddings`` is (N, D) and ``labels`` is (N,)."""
        check_batch(embeddings, labels)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"embeddings must have dimension {self.embedding_dim}, got {embeddings.shape[1]}")

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosines (N, C) between the embeddings and the class weights.

        Float32 (float64 if either side is float64), with autocast off, so the scaled
        logits built from them never lose precision or overflow under fp16/bf16 autocast.
        """
        return cosine_similarity_matrix(embeddings, self.weight)

    @abc.abstractmethod
    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Logits (N, num_classes) whose softmax cross-entropy with ``labels`` is the loss.

        A label of :data:`NO_TARGET` (−1) means the sample's class is none of these columns:
        its row carries no margin (used by the sharded head for classes held elsewhere).
        """

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of :meth:`logits` against ``labels``."""
        return F.cross_entropy(self.logits(embeddings, labels), labels.long())

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"


NO_TARGET = -1
"""A label meaning "this sample's class is not among these logits' columns": the row gets no
target modification. The sharded head (:mod:`circle_repro.losses.partial_fc`) passes it for the
samples whose class lives on another rank's shard, or was not sampled."""


def replace_target(logits: Tensor, labels: Tensor, target: Tensor) -> Tensor:
    """``logits`` (N, C) with entry (i, labels[i]) replaced by ``target[i]`` (out of place).

    Rows labelled :data:`NO_TARGET` (−1) are left unchanged (``target[i]`` is ignored there).
    """
    labels = labels.long()
    index = labels.clamp_min(0)[:, None]
    if logits.shape[1] == 0:
        return logits
    target = target[:, None].to(logits.dtype)
    # Rows without a target write their own column-0 value back: same value, same gradient path.
    target = torch.where(labels[:, None] >= 0, target, logits.gather(1, index))
    return logits.scatter(1, index, target)


def target_values(values: Tensor, labels: Tensor) -> Tensor:
    """Entries (i, labels[i]) of ``values`` (N, C), as a vector (N,).

    For rows labelled :data:`NO_TARGET` (−1) the entry is ``values[i, 0]``, a real (finite)
    value that :func:`replace_target` then discards; with no column at all it is 0.
    """
    if values.shape[1] == 0:
        return values.new_zeros(values.shape[0])
    return values.gather(1, labels.long().clamp_min(0)[:, None])[:, 0]


def is_class_level(loss_config: Mapping[str, Any]) -> bool:
    """Whether a loss config names a class-level head, which needs ``embedding_dim`` and ``num_classes``."""
    cls = LOSSES.get(loss_config.get("type"))
    return isinstance(cls, type) and issubclass(cls, ProxyClassifier)
