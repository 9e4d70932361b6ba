"""Batch-hard triplet loss on cosine similarity: the γ→∞ limit of the unified loss (Eq. 3)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from circle_repro.losses.pair_utils import AnchorPairs, PairwiseLoss, check_real
from circle_repro.losses.registry import register_loss


@register_loss("triplet")
class TripletMarginLoss(PairwiseLoss):
    """Eq. 3 with batch-hard mining: [max_j s_n^j − min_i s_p^i + margin]_+ per anchor.

    Embeddings are L2-normalised inside. The loss is the mean over anchors having at least
    one positive and one negative, and 0 (still attached to the graph, with one
    ``EmptyBatchWarning`` per instance) when there is none. Call signature, reference-set
    and ``all_gather`` semantics: :class:`~circle_repro.losses.pair_utils.PairwiseLoss`.
    """

    paper_loss = "triplet"
    sweepable = ()
    arguments: ClassVar[dict[str, dict]] = {
        "margin": {"type": "number", "minimum": 0},
    }

    def __init__(self, margin: float = 0.1, all_gather: bool = False) -> None:
        super().__init__(all_gather=all_gather)
        self.margin = check_real("margin", margin)

    def per_anchor_loss(self, pairs: AnchorPairs) -> Tensor:
        """Hinge on the hardest negative minus the hardest positive of every anchor."""
        hardest_pos = pairs.sim.masked_fill(~pairs.pos, math.inf).amin(dim=1)
        hardest_neg = pairs.sim.masked_fill(~pairs.neg, -math.inf).amax(dim=1)
        # Rows lacking a positive or a negative hold ±inf here; they are not valid anchors.
        hinge = torch.relu(hardest_neg - hardest_pos + self.margin)
        return torch.where(pairs.valid, hinge, 0.0)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, all_gather={self.all_gather}"
