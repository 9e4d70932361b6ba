"""Multi-Similarity loss and miner (Wang et al., CVPR 2019), the retrieval baseline of Table 5.

Per anchor i, with cosine similarities S_ik, positives P_i and negatives N_i (self pair
excluded), the MS miner keeps

* negatives with S_in + ε > min_{k∈P_i} S_ik  (harder than the easiest positive), and
* positives with S_ip − ε < max_{k∈N_i} S_ik  (harder than the hardest negative),

both thresholds taken over the *unmined* sets, and the loss of the anchor is

    (1/α) log[1 + Σ_{p∈P'_i} e^{−α(S_ip − λ)}] + (1/β) log[1 + Σ_{n∈N'_i} e^{β(S_in − λ)}]

over the mined sets P'_i, N'_i (an empty sum gives log 1 = 0), with α = ``alpha``,
β = ``beta``, λ = ``base``. This is the per-anchor loss of pytorch-metric-learning's
``MultiSimilarityLoss`` + ``MultiSimilarityMiner`` (and of msight-tech/research-ms-loss,
which keeps the positive term only when both mined sets are non-empty: with thresholds on the
unmined sets, a mined positive exists iff a mined negative does, so the two agree).

Reduction: the mean over anchors having at least one positive and one negative *before*
mining, like every pair-wise loss here. pytorch-metric-learning's default ``MeanReducer``
instead averages over all N anchors (anchors with no pair contribute 0), and
research-ms-loss divides the sum by the batch size too, so
``ours · n_valid == PML · N``; the two coincide when every anchor is valid (P×K, K ≥ 2).
research-ms-loss also drops positives with S ≥ 1 − 1e-5 to remove the self pair, which also
drops exact duplicates; here the self pair is removed by index.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from circle_repro.losses.pair_utils import (
    AnchorPairs,
    PairwiseLoss,
    anchor_pairs,
    check_bool,
    check_real,
    masked_logsumexp,
)
from circle_repro.losses.registry import register_loss


class MultiSimilarityMiner(nn.Module):
    """The MS pair miner: keeps the hard positives and hard negatives of each anchor.

    :meth:`mine` works on a similarity matrix and its masks; calling the module mines a
    batch (same arguments as the pair-wise losses) and returns the ``(pos, neg)`` masks.
    The masks carry no gradient.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = check_real("epsilon", epsilon)

    @torch.no_grad()
    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        """Mined ``(pos, neg)`` bool masks, subsets of the given ones."""
        sim = sim.detach()
        easiest_pos = sim.masked_fill(~pos, math.inf).amin(dim=1, keepdim=True)
        hardest_neg = sim.masked_fill(~neg, -math.inf).amax(dim=1, keepdim=True)
        hard_pos = pos & (sim - self.epsilon < hardest_neg)
        hard_neg = neg & (sim + self.epsilon > easiest_pos)
        return hard_pos, hard_neg

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_includes_query: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Mined ``(pos, neg)`` masks (N, M) of a batch against itself or a reference set."""
        with torch.no_grad():
            pairs = anchor_pairs(
                embeddings.detach(),
                labels,
                None if ref_embeddings is None else ref_embeddings.detach(),
                ref_labels,
                ref_includes_query,
            )
        return self.mine(pairs.sim, pairs.pos, pairs.neg)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


@register_loss("multi_similarity")
class MultiSimilarityLoss(PairwiseLoss):
    """Multi-Similarity loss on cosine similarity, with the MS miner if ``miner`` (default).

    Defaults α=2, β=50, λ=0.5, ε=0.1 as in pytorch-metric-learning. Call signature,
    reference-set and ``all_gather`` semantics: :class:`~circle_repro.losses.pair_utils.
    PairwiseLoss`; the reduction is described in :mod:`circle_repro.losses.multi_similarity`.
    """

    paper_loss = "multi_similarity"
    sweepable = ()
    arguments: ClassVar[dict[str, dict]] = {
        "alpha": {"type": "number", "exclusiveMinimum": 0},
        "beta": {"type": "number", "exclusiveMinimum": 0},
        "base": {"type": "number", "minimum": -1, "maximum": 1, "description": "similarity offset lambda"},
        "miner": {"type": "boolean"},
        "epsilon": {"type": "number", "minimum": 0},
    }

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        miner: bool = True,
        epsilon: float = 0.1,
        all_gather: bool = False,
    ) -> None:
        super().__init__(all_gather=all_gather)
        self.alpha = check_real("alpha", alpha, positive=True)
        self.beta = check_real("beta", beta, positive=True)
        self.base = check_real("base", base)
        self.miner = check_bool("miner", miner)
        self.epsilon = check_real("epsilon", epsilon)
        self.pair_miner = MultiSimilarityMiner(epsilon) if miner else None

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """Positive and negative soft-weighted terms of every anchor over its mined pairs."""
        pos, neg = pairs.pos, pairs.neg
        if self.pair_miner is not None:
            pos, neg = self.pair_miner.mine(pairs.sim, pos, neg)
        shifted = pairs.sim - self.base
        pos_term = F.softplus(masked_logsumexp(shifted * -self.alpha, pos)) / self.alpha
        neg_term = F.softplus(masked_logsumexp(shifted * self.beta, neg)) / self.beta
        return pos_term + neg_term

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, base={self.base}, miner={self.miner}, "
            f"epsilon={self.epsilon}, all_gather={self.all_gather}"
        )
