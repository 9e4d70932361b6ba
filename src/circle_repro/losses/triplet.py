"""Batch-hard triplet loss on cosine similarity: the γ→∞ limit of the unified loss (Eq. 3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from circle_repro.losses.pair_utils import anchor_pairs, check_real, mean_over_valid
from circle_repro.losses.registry import register_loss


@register_loss("triplet")
class TripletMarginLoss(nn.Module):
    """Eq. 3 with batch-hard mining: [max_j s_n^j − min_i s_p^i + margin]_+ per anchor.

    Embeddings are L2-normalised inside. The loss is the mean over anchors having at least
    one positive and one negative, and 0 (still attached to the graph) when there is none.
    """

    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        self.margin = check_real("margin", margin)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_includes_query: bool = False,
    ) -> Tensor:
        """Scalar loss; reference-set semantics as in :class:`CircleLoss`."""
        sim, pos, neg, valid = anchor_pairs(
            embeddings, labels, ref_embeddings, ref_labels, ref_includes_query
        )
        hardest_pos = sim.masked_fill(~pos, math.inf).amin(dim=1)
        hardest_neg = sim.masked_fill(~neg, -math.inf).amax(dim=1)
        return mean_over_valid(torch.relu(hardest_neg - hardest_pos + self.margin), valid)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
