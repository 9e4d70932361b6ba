"""Circle loss (Sun et al., CVPR 2020): pair-wise and class-level forms of Eq. 6."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from circle_repro.losses.pair_utils import (
    anchor_pairs,
    check_batch,
    check_real,
    cosine_similarity_matrix,
    masked_logsumexp,
    mean_over_valid,
)
from circle_repro.losses.registry import register_loss


def circle_logits(sim: Tensor, m: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Eq. 6 terms of every similarity read as a positive and as a negative.

    Returns (z_p, z_n) = (γ α_p (s − Δ_p), γ α_n (s − Δ_n)) with the reduced parameters
    O_p = 1+m, O_n = −m, Δ_p = 1−m, Δ_n = m (Eq. 8) and the self-paced weights of Eq. 5,
    α_p = [O_p − s]_+ and α_n = [s − O_n]_+, treated as constants in back-prop (§3.1).
    """
    alpha_p = torch.relu(1 + m - sim).detach()
    alpha_n = torch.relu(sim + m).detach()
    return gamma * alpha_p * (sim - (1 - m)), gamma * alpha_n * (sim - m)


def circle_loss_per_anchor(
    sim: Tensor, pos: Tensor, neg: Tensor, m: float, gamma: float
) -> Tensor:
    """Eq. 6 for each row of ``sim``, with positives ``pos`` and negatives ``neg`` (bool masks).

    Uses the stable form softplus(LSE_n(z_n) + LSE_p(−z_p)); rows lacking positives or
    negatives give 0.
    """
    z_p, z_n = circle_logits(sim, m, gamma)
    return F.softplus(masked_logsumexp(z_n, neg) + masked_logsumexp(-z_p, pos))


@register_loss("circle")
class CircleLoss(nn.Module):
    """Pair-wise Circle loss (Eq. 6) over a mini-batch, each sample serving as an anchor.

    Embeddings are L2-normalised inside; similarities and logits are computed in float32
    (float64 for float64 inputs). The loss is the mean over anchors having at least one
    positive and one negative, and 0 (still attached to the graph) when there is none.
    """

    def __init__(self, m: float = 0.25, gamma: float = 256) -> None:
        super().__init__()
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)

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
        pairs = anchor_pairs(embeddings, labels, ref_embeddings, ref_labels, ref_includes_query)
        per_anchor = circle_loss_per_anchor(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)
        return mean_over_valid(per_anchor, pairs.valid)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"


@register_loss("circle_classifier")
class CircleClassifier(nn.Module):
    """Class-level Circle loss: Eq. 6 with K=1 target proxy and L=N−1 non-target proxies.

    Equals softmax cross-entropy over the modified cosine logits of ``logits`` (spec §1.6).
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, m: float = 0.25, gamma: float = 256
    ) -> None:
        super().__init__()
        for name, value in (("embedding_dim", embedding_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.m = check_real("m", m)
        self.gamma = check_real("gamma", gamma, positive=True)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Modified logits (N, num_classes) of spec §1.6.

        γ α_p (s_p − Δ_p) at the label column and γ α_n (s_n − Δ_n) in the others.
        """
        check_batch(embeddings, labels)
        cos = cosine_similarity_matrix(embeddings, self.weight)
        z_p, z_n = circle_logits(cos, self.m, self.gamma)
        target = F.one_hot(labels.long(), self.weight.shape[0]).bool()
        return torch.where(target, z_p, z_n)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over the modified logits."""
        return F.cross_entropy(self.logits(embeddings, labels), labels.long())

    def extra_repr(self) -> str:
        num_classes, embedding_dim = self.weight.shape
        return (
            f"embedding_dim={embedding_dim}, num_classes={num_classes}, "
            f"m={self.m}, gamma={self.gamma}"
        )
